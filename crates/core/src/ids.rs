//! The identifiers that arrive from outside, each checked once at the edge.
//!
//! Stored records and queue messages hold these types too: serde reads them through the same
//! `parse` (a stored value that no longer parses is refused on read, not used), and writes the
//! plain string, so the JSON is exactly what a `String` field would have written.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Serde for a string newtype with a `parse(&str) -> Option<Self>` and an `as_str()`: the JSON is
/// the bare string, and reading it applies `parse`.
macro_rules! string_id_serde {
    ($t:ty, $what:literal) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                <$t>::parse(&raw).ok_or_else(|| serde::de::Error::custom(concat!("not ", $what)))
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use string_id_serde;

/// A partner: 1-64 of `[a-z0-9-]` (the contract).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartnerId(String);

impl PartnerId {
    pub fn parse(raw: &str) -> Option<PartnerId> {
        let ok = (1..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        ok.then(|| PartnerId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_id_serde!(PartnerId, "a partner id");

/// A partner's own id for one of its users: 1-256 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

pub const MAX_USER_ID_CHARS: usize = 256;

impl UserId {
    pub fn parse(raw: &str) -> Option<UserId> {
        let n = raw.chars().count();
        let ok = (1..=MAX_USER_ID_CHARS).contains(&n) && !raw.chars().any(char::is_control);
        ok.then(|| UserId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A fixed-length, key-safe stand-in for the id, used inside storage keys (which cap at
    /// 512 bytes and must not contain the partner's raw text).
    pub fn storage_key(&self) -> String {
        storage_hash(&self.0)
    }
}

string_id_serde!(UserId, "a user id");

/// A fixed-length (43 characters), key-safe digest (base64url SHA-256) of outside text that must
/// appear in a storage key, or of a high-entropy secret stored only as its hash (API keys, repair
/// link tokens).
pub fn storage_hash(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes()))
}

/// Lower-case hex: request, sweep and event ids, webhook signatures.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An opaque connection id: 128 random bits, base64url (22 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectionId(String);

pub const RANDOM_ID_BYTES: usize = 16;

impl ConnectionId {
    pub fn from_random(bytes: [u8; RANDOM_ID_BYTES]) -> ConnectionId {
        ConnectionId(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts exactly what `from_random` makes; anything else is not an id of ours.
    pub fn parse(raw: &str) -> Option<ConnectionId> {
        let ok = raw.len() == 22
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && URL_SAFE_NO_PAD
                .decode(raw)
                .is_ok_and(|b| b.len() == RANDOM_ID_BYTES);
        ok.then(|| ConnectionId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_id_serde!(ConnectionId, "a connection id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partner_ids() {
        assert!(PartnerId::parse("acme-1").is_some());
        for bad in ["", "Acme", "a/b", "..", "a_b", &"a".repeat(65)] {
            assert!(PartnerId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn user_ids() {
        assert!(UserId::parse("user@example.com").is_some());
        assert!(UserId::parse(&"é".repeat(256)).is_some());
        assert!(UserId::parse(&"é".repeat(257)).is_none());
        assert!(UserId::parse("").is_none());
        assert!(UserId::parse("a\nb").is_none());
        let k = UserId::parse("u/../x").unwrap().storage_key();
        assert_eq!(k.len(), 43);
        assert!(!k.contains('/'));
    }

    #[test]
    fn connection_ids() {
        let id = ConnectionId::from_random([0xab; RANDOM_ID_BYTES]);
        assert_eq!(id.as_str().len(), 22);
        assert_eq!(ConnectionId::parse(id.as_str()), Some(id));
        for bad in [
            "",
            "../../etc/passwd",
            "a/b",
            &"x".repeat(10_000),
            "AAAAAAAAAAAAAAAAAAAAA!",
        ] {
            assert!(ConnectionId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn ids_serialize_as_their_plain_string_and_parse_on_read() {
        let id = ConnectionId::from_random([7; RANDOM_ID_BYTES]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, serde_json::to_string(id.as_str()).unwrap());
        assert_eq!(serde_json::from_str::<ConnectionId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<ConnectionId>(r#""../x""#).is_err());
        assert!(serde_json::from_str::<PartnerId>(r#""Acme""#).is_err());
        let u: UserId = serde_json::from_str(r#""anné""#).unwrap();
        assert_eq!(u.as_str(), "anné");
        assert!(serde_json::from_str::<UserId>(
            r#""a
b""#
        )
        .is_err());
    }
}
