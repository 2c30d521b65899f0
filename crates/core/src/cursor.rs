//! Listing cursors we hand out: the store's own cursor plus the listing it belongs to, tagged with
//! an HMAC, so a mangled, forged or foreign cursor is refused (400 `invalid_cursor`) instead of
//! silently reading as the end of the list, and a cursor of one partner's listing never walks
//! another's.
//!
//! Shape: `<base64url(inner)>.<base64url(16-byte tag)>`, where the tag covers the scope (which
//! listing, for whom) and the inner cursor. Tags are made under the first `TOKEN_KEYS` key and
//! checked under all of them, so a key rotation does not break a walk in progress.

use crate::error::{ApiError, ErrorCode};
use crate::seal::Keyring;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

const TAG_BYTES: usize = 16;
/// Longer than any cursor we issue (KV's are a few hundred characters).
pub const MAX_CURSOR_CHARS: usize = 2048;

fn message(scope: &str, inner: &str) -> Vec<u8> {
    format!("keaplink-cursor-v1\n{scope}\n{inner}").into_bytes()
}

/// The cursor to hand out for `inner` (a KV cursor, or a walk's position) of the listing `scope`.
pub fn issue(keys: &Keyring, scope: &str, inner: &str) -> String {
    let tag = keys.tag(&message(scope, inner));
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(inner),
        URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES])
    )
}

pub fn invalid() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidCursor,
        "cursor is not one this listing gave out: pass the `cursor` of the previous page exactly as it came, or leave it out to start again.",
    )
}

/// The inner cursor of a cursor we issued for `scope`; anything else is `invalid_cursor`.
pub fn open(keys: &Keyring, scope: &str, raw: &str) -> Result<String, ApiError> {
    if raw.len() > MAX_CURSOR_CHARS {
        return Err(invalid());
    }
    let (inner, tag) = raw.split_once('.').ok_or_else(invalid)?;
    let inner = URL_SAFE_NO_PAD.decode(inner).map_err(|_| invalid())?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
    let inner = String::from_utf8(inner).map_err(|_| invalid())?;
    // Checked under every key (a rotation mid-walk).
    if tag.len() != TAG_BYTES || !keys.verify_tag(&message(scope, &inner), &tag) {
        return Err(invalid());
    }
    Ok(inner)
}

/// Where the key-rotation walk (`POST /v1/admin/reseal`) stands: partners first (their session
/// secrets), then connections; each with the store's cursor within that listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResealAt {
    Partners(Option<String>),
    Connections(Option<String>),
}

impl ResealAt {
    pub const SCOPE: &'static str = "reseal";

    /// `p` / `p:<kv cursor>` / `c` / `c:<kv cursor>`.
    pub fn parse(inner: &str) -> Option<ResealAt> {
        let (phase, kv) = match inner.split_once(':') {
            Some((p, kv)) if !kv.is_empty() => (p, Some(kv.to_owned())),
            Some(_) => return None,
            None => (inner, None),
        };
        match phase {
            "p" => Some(ResealAt::Partners(kv)),
            "c" => Some(ResealAt::Connections(kv)),
            _ => None,
        }
    }

    pub fn inner(&self) -> String {
        let (phase, kv) = match self {
            ResealAt::Partners(kv) => ("p", kv),
            ResealAt::Connections(kv) => ("c", kv),
        };
        match kv {
            Some(kv) => format!("{phase}:{kv}"),
            None => phase.to_owned(),
        }
    }

    /// Where the walk goes after a page of this phase whose listing continues at `next`.
    pub fn after(&self, next: Option<String>) -> Option<ResealAt> {
        match (self, next) {
            (ResealAt::Partners(_), Some(kv)) => Some(ResealAt::Partners(Some(kv))),
            (ResealAt::Partners(_), None) => Some(ResealAt::Connections(None)),
            (ResealAt::Connections(_), Some(kv)) => Some(ResealAt::Connections(Some(kv))),
            (ResealAt::Connections(_), None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    const K2: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

    #[test]
    fn a_cursor_opens_only_for_its_listing() {
        let keys = Keyring::parse(K1).unwrap();
        let c = issue(&keys, "connections:acme", "kv-cursor-123");
        assert_eq!(
            open(&keys, "connections:acme", &c).unwrap(),
            "kv-cursor-123"
        );
        assert_eq!(
            open(&keys, "connections:other", &c).unwrap_err().code,
            ErrorCode::InvalidCursor
        );
        for bad in ["garbage", "", ".", "a.b", &"x".repeat(5000), &c[1..]] {
            assert_eq!(
                open(&keys, "connections:acme", bad).unwrap_err().code,
                ErrorCode::InvalidCursor,
                "{bad}"
            );
        }
        // Another deployment's keys did not issue it.
        let other = Keyring::parse(K2).unwrap();
        assert!(open(&other, "connections:acme", &c).is_err());
    }

    #[test]
    fn a_walk_survives_a_key_rotation() {
        let old = Keyring::parse(K1).unwrap();
        let c = issue(&old, "reseal", "p:abc");
        let rotated = Keyring::parse(&format!("{K2},{K1}")).unwrap();
        assert_eq!(open(&rotated, "reseal", &c).unwrap(), "p:abc");
    }

    #[test]
    fn any_changed_character_is_refused() {
        let keys = Keyring::parse(K1).unwrap();
        let c = issue(&keys, "s", "inner-cursor");
        for i in 0..c.len() {
            let mut b = c.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(b).unwrap();
            if changed != c {
                assert!(open(&keys, "s", &changed).is_err(), "{changed}");
            }
        }
    }

    #[test]
    fn the_reseal_walk_goes_partners_then_connections() {
        let start = ResealAt::Partners(None);
        assert_eq!(ResealAt::parse(&start.inner()), Some(start.clone()));
        let mid = start.after(Some("kv1".into())).unwrap();
        assert_eq!(mid.inner(), "p:kv1");
        assert_eq!(ResealAt::parse("p:kv1"), Some(mid.clone()));
        let conns = mid.after(None).unwrap();
        assert_eq!(conns, ResealAt::Connections(None));
        assert_eq!(conns.after(None), None, "done");
        for bad in ["", "q", "p:", "x:abc"] {
            assert_eq!(ResealAt::parse(bad), None, "{bad}");
        }
    }
}
