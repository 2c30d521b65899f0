//! Tokens and partner secrets sealed at rest with AES-256-GCM.
//!
//! `TOKEN_KEYS` holds one or more base64 32-byte keys: the first seals, all open. Every sealed
//! value names its key by id, so a new first key can be added, old records re-sealed, and the old
//! key dropped. The associated data binds a sealed value to where it is stored, so a value copied
//! to another record does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use keaplink_api::ResealReport;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes of randomness each seal needs (the AES-GCM nonce). The caller supplies them.
pub const NONCE_LEN: usize = 12;
const FORMAT: &str = "v1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringError {
    Empty,
    /// The n-th key (0-based) is not base64 of 32 bytes.
    BadKey(usize),
}

impl std::fmt::Display for KeyringError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyringError::Empty => f.write_str("TOKEN_KEYS is empty"),
            KeyringError::BadKey(i) => {
                write!(f, "TOKEN_KEYS entry {} is not base64 of 32 bytes", i + 1)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// Not a sealed value of a format we know.
    Malformed,
    /// Sealed with a key no longer in `TOKEN_KEYS`.
    UnknownKey,
    /// Tampered with, or bound to another place.
    Forged,
}

struct Key {
    id: String,
    cipher: Aes256Gcm,
    /// HMAC-SHA256(key, "keaplink-mac-v1"): the key's sibling for authenticating (not
    /// encrypting) what we hand out, such as listing cursors.
    mac: [u8; 32],
}

/// The keys from `TOKEN_KEYS`. Their bytes never leave this type.
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

/// HMAC-SHA256(key, label): a separate key for another purpose, so one secret never serves two.
fn derive(key: &[u8], label: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    let mut m =
        <hmac::Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(label);
    m.finalize().into_bytes().into()
}

/// A key's public name: a short hash, which tells nothing about the key.
fn key_id(key: &[u8]) -> String {
    let digest = Sha256::digest([b"keaplink-key-id:".as_slice(), key].concat());
    URL_SAFE_NO_PAD.encode(&digest[..6])
}

impl Keyring {
    /// Parses `TOKEN_KEYS`: comma-separated base64 (standard or URL-safe) 32-byte keys.
    pub fn parse(token_keys: &str) -> Result<Keyring, KeyringError> {
        let mut keys = Vec::new();
        for (i, raw) in token_keys
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
        {
            let bytes = STANDARD
                .decode(raw)
                .or_else(|_| URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')))
                .map_err(|_| KeyringError::BadKey(i))?;
            let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| KeyringError::BadKey(i))?;
            keys.push(Key {
                id: key_id(&bytes),
                cipher,
                mac: derive(&bytes, b"keaplink-mac-v1"),
            });
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(Keyring { keys })
    }

    /// The id of the key that seals.
    pub fn current_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// HMAC-SHA256 tag of `message` under the current key's MAC sibling.
    pub fn tag(&self, message: &[u8]) -> [u8; 32] {
        mac(&self.keys[0].mac, message)
    }

    /// Whether `tag` (the whole tag, or the leading bytes of it that were handed out, at least
    /// 16) is `message`'s under any key (so tags survive a rotation), compared in constant time.
    pub fn verify_tag(&self, message: &[u8], tag: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        (16..=32).contains(&tag.len())
            && self
                .keys
                .iter()
                .any(|k| bool::from(mac(&k.mac, message)[..tag.len()].ct_eq(tag)))
    }

    /// Seals `plaintext` under the first key, bound to `aad`.
    pub fn seal(&self, aad: &str, plaintext: &[u8], nonce: [u8; NONCE_LEN]) -> String {
        let key = &self.keys[0];
        let ct = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            // AES-GCM fails only past 64 GiB of plaintext.
            .unwrap_or_default();
        format!(
            "{FORMAT}.{}.{}.{}",
            key.id,
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(ct)
        )
    }

    /// Opens a sealed value bound to `aad`.
    pub fn open(&self, aad: &str, sealed: &str) -> Result<Vec<u8>, OpenError> {
        let mut parts = sealed.split('.');
        let (Some(FORMAT), Some(kid), Some(nonce), Some(ct), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(OpenError::Malformed);
        };
        let nonce = URL_SAFE_NO_PAD
            .decode(nonce)
            .map_err(|_| OpenError::Malformed)?;
        if nonce.len() != NONCE_LEN {
            return Err(OpenError::Malformed);
        }
        let ct = URL_SAFE_NO_PAD
            .decode(ct)
            .map_err(|_| OpenError::Malformed)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == kid)
            .ok_or(OpenError::UnknownKey)?;
        key.cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| OpenError::Forged)
    }

    /// Whether `sealed` is under a key other than the current one (a re-seal job's question).
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        sealed.split('.').nth(1) != Some(self.current_key_id())
    }

    /// Key rotation of one sealed value: the same plaintext under the current key, or what stands
    /// in the way. `aad` is the place the value belongs to, as for `seal`.
    pub fn reseal(&self, aad: &str, sealed: &str, nonce: [u8; NONCE_LEN]) -> Reseal<String> {
        if !self.needs_reseal(sealed) {
            return Reseal::Current;
        }
        match self.open(aad, sealed) {
            Ok(plain) => Reseal::Moved(self.seal(aad, &plain, nonce)),
            Err(_) => Reseal::Unreadable,
        }
    }
}

fn mac(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    let mut m =
        <hmac::Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(message);
    m.finalize().into_bytes().into()
}

/// What re-sealing one record under the current key came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reseal<T> {
    /// The record with its secrets under the current key: store it in place of the old one.
    Moved(T),
    /// Already under the current key: nothing to write.
    Current,
    /// No key of `TOKEN_KEYS` opens it: left as it is (see the README's key rotation).
    Unreadable,
}

impl<T> Reseal<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Reseal<U> {
        match self {
            Reseal::Moved(t) => Reseal::Moved(f(t)),
            Reseal::Current => Reseal::Current,
            Reseal::Unreadable => Reseal::Unreadable,
        }
    }

    /// The outcome without the record, once it is stored.
    pub fn outcome(&self) -> ResealOutcome {
        match self {
            Reseal::Moved(_) => ResealOutcome::Resealed,
            Reseal::Current => ResealOutcome::Current,
            Reseal::Unreadable => ResealOutcome::Unreadable,
        }
    }
}

/// `Reseal` without its record: what a walk counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResealOutcome {
    Resealed,
    Current,
    Unreadable,
}

impl ResealOutcome {
    /// Adds this outcome to a page's report.
    pub fn count_into(self, report: &mut ResealReport) {
        let n = match self {
            ResealOutcome::Resealed => &mut report.resealed,
            ResealOutcome::Current => &mut report.current,
            ResealOutcome::Unreadable => &mut report.unreadable,
        };
        *n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    const K2: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

    #[test]
    fn reseal_moves_old_values_and_reports_each_outcome() {
        let old = Keyring::parse(K1).unwrap();
        let both = Keyring::parse(&format!("{K2},{K1}")).unwrap();
        let sealed = old.seal("p/acme", b"secret", [1; NONCE_LEN]);
        let mut report = ResealReport::default();
        let moved = both.reseal("p/acme", &sealed, [2; NONCE_LEN]);
        moved.outcome().count_into(&mut report);
        let Reseal::Moved(moved) = moved else {
            panic!("not moved");
        };
        assert!(!both.needs_reseal(&moved));
        assert_eq!(both.open("p/acme", &moved).unwrap(), b"secret");
        let current = both.reseal("p/acme", &moved, [3; NONCE_LEN]);
        assert_eq!(current, Reseal::Current);
        current.outcome().count_into(&mut report);
        // Wrong place, or a key the ring lacks: unreadable, never re-sealed.
        let wrong_place = both.reseal("p/other", &sealed, [4; NONCE_LEN]);
        assert_eq!(wrong_place, Reseal::Unreadable);
        wrong_place.outcome().count_into(&mut report);
        let only_k2 = Keyring::parse(K2).unwrap();
        assert_eq!(
            only_k2.reseal("p/acme", &sealed, [5; NONCE_LEN]),
            Reseal::Unreadable
        );
        assert_eq!(
            (report.resealed, report.current, report.unreadable),
            (1, 1, 1)
        );
    }

    #[test]
    fn round_trips_and_binds_to_aad() {
        let ring = Keyring::parse(K1).unwrap();
        let s = ring.seal("c/p/u/app", b"secret", [7; NONCE_LEN]);
        assert!(!s.contains("secret"));
        assert_eq!(ring.open("c/p/u/app", &s).unwrap(), b"secret");
        assert_eq!(ring.open("c/p/u/other", &s), Err(OpenError::Forged));
    }

    #[test]
    fn rotation_old_records_open_new_ones_use_the_first_key() {
        let old = Keyring::parse(K1).unwrap();
        let sealed_old = old.seal("a", b"x", [1; NONCE_LEN]);
        let rotated = Keyring::parse(&format!("{K2},{K1}")).unwrap();
        assert_eq!(rotated.open("a", &sealed_old).unwrap(), b"x");
        assert!(rotated.needs_reseal(&sealed_old));
        let sealed_new = rotated.seal("a", b"x", [2; NONCE_LEN]);
        assert!(!rotated.needs_reseal(&sealed_new));
        let only_new = Keyring::parse(K2).unwrap();
        assert_eq!(only_new.open("a", &sealed_new).unwrap(), b"x");
        assert_eq!(only_new.open("a", &sealed_old), Err(OpenError::UnknownKey));
    }

    #[test]
    fn rejects_bad_keyrings() {
        assert_eq!(Keyring::parse("").unwrap_err(), KeyringError::Empty);
        assert_eq!(Keyring::parse(" , ").unwrap_err(), KeyringError::Empty);
        assert_eq!(
            Keyring::parse("c2hvcnQ=").unwrap_err(),
            KeyringError::BadKey(0)
        );
        assert_eq!(
            Keyring::parse(&format!("{K1},nope")).unwrap_err(),
            KeyringError::BadKey(1)
        );
    }

    #[test]
    fn rejects_malformed_values() {
        let ring = Keyring::parse(K1).unwrap();
        for bad in ["", "v1", "v1.a.b", "v2.a.b.c", "v1.a.b.c.d", "v1.x.!!.AA"] {
            assert_eq!(ring.open("a", bad), Err(OpenError::Malformed), "{bad}");
        }
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let ring = Keyring::parse(K1).unwrap();
        let dbg = format!("{ring:?}");
        assert!(dbg.contains(ring.current_key_id()));
        assert!(!dbg.contains(K1));
    }
}
