//! The signed-in partner user: a compact JWS (HS256) minted by the partner's back-end with its
//! `session_secret`, checked as the README's API reference says (iss, sub, aud, iat, exp; HS256 only).
//!
//! Read here with the crates the core links anyway (base64, RustCrypto's hmac, serde_json)
//! instead of a JWT library: with one algorithm and one key per partner there is nothing to
//! negotiate, and jsonwebtoken's header and key types cost the Worker ~26 KB of its gzip. What the
//! library gave is kept: strict base64url, `alg` exactly "HS256", a constant-time signature check
//! (hmac's `verify_slice`) before any claim is read, `aud` as a string or a list. The parsing is
//! fuzzed (`session_jwt`, `signed_session_claims`) and property-tested.

use crate::clock::UnixTime;
use crate::ids::{PartnerId, UserId};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

pub const SESSION_AUDIENCE: &str = "keaplink";
/// Longest session a partner may mint (`exp - iat`).
pub const MAX_SESSION_SECS: i64 = 3600;
/// How far in the future `iat` may be (the partner's clock may run ahead).
pub const MAX_CLOCK_SKEW_SECS: i64 = 60;
/// Longer than any honest token; checked before any parsing.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Who is signed in, once the token checks out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionClaims {
    pub partner: PartnerId,
    pub user: UserId,
    pub expires_at: UnixTime,
    /// `keaplink_request`: the MCP authorization request this session was minted for (the
    /// partner's sign-in hop, `crate::mcp`); absent in the widget's sessions.
    pub request: Option<String>,
}

/// Why a session token was refused. All are 401 `invalid_session`; the message differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    Malformed,
    BadSignature,
    WrongAlgorithm,
    WrongAudience,
    UnknownIssuer,
    Expired,
    TooLongLived,
    IssuedInFuture,
    BadSubject,
    /// A claim the contract requires is absent.
    MissingClaim(Claim),
    /// `exp` or `iat` has a fraction (`Date.now() / 1000` not rounded down).
    NotWholeSeconds,
    /// `exp` or `iat` reads as milliseconds (JavaScript's `Date.now()`), not seconds.
    Milliseconds(Claim),
}

/// The claims a session token must carry, to name the one at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Iss,
    Sub,
    Aud,
    Exp,
    Iat,
}

/// Above this a NumericDate is taken for milliseconds: 10^11 seconds is the year 5138, while
/// today in milliseconds is about 1.8 x 10^12.
pub const MAX_SECONDS: i64 = 100_000_000_000;

impl SessionError {
    pub fn message(self) -> &'static str {
        match self {
            SessionError::Malformed => "The session token is not a well-formed JWT.",
            SessionError::BadSignature => "The session token's signature does not verify.",
            SessionError::WrongAlgorithm => "The session token must be signed with HS256.",
            SessionError::WrongAudience => "The session token's aud must be \"keaplink\".",
            SessionError::UnknownIssuer => "The session token's iss names no known partner.",
            SessionError::Expired => "The session token has expired; mint a new one.",
            SessionError::TooLongLived => "The session token lives longer than 3600 s.",
            SessionError::IssuedInFuture => "The session token's iat is in the future.",
            SessionError::BadSubject => "The session token's sub must be 1-256 characters.",
            SessionError::MissingClaim(c) => match c {
                Claim::Iss => "The session token has no iss claim: set it to your partner id.",
                Claim::Sub => "The session token has no sub claim: set it to your user's id.",
                Claim::Aud => "The session token has no aud claim: set it to \"keaplink\".",
                Claim::Exp => "The session token has no exp claim: set it to when it expires, in seconds since 1970.",
                Claim::Iat => "The session token has no iat claim: set it to when it was minted, in seconds since 1970.",
            },
            SessionError::NotWholeSeconds => "The session token's iat and exp must be whole numbers of seconds since 1970, without a fraction.",
            SessionError::Milliseconds(c) => match c {
                Claim::Iat => "The session token's iat is in milliseconds: it must be seconds since 1970 (Date.now() / 1000, rounded down).",
                _ => "The session token's exp is in milliseconds: it must be seconds since 1970 (Date.now() / 1000, rounded down).",
            },
        }
    }
}

/// The JWS compact form's three parts, still base64url: the signing input is `header.claims`.
struct Parts<'a> {
    signing_input: &'a str,
    header: &'a str,
    claims: &'a str,
    signature: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, SessionError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(SessionError::Malformed);
    }
    let (signing_input, signature) = token.rsplit_once('.').ok_or(SessionError::Malformed)?;
    let (header, claims) = signing_input
        .split_once('.')
        .ok_or(SessionError::Malformed)?;
    if claims.contains('.') {
        return Err(SessionError::Malformed);
    }
    Ok(Parts {
        signing_input,
        header,
        claims,
        signature,
    })
}

/// base64url without padding, strictly (padding and non-canonical trailing bits refused), then
/// JSON.
fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, SessionError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| SessionError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| SessionError::Malformed)
}

/// The claims, as [`decode_json`] reads them, except that a number with a fraction where `exp` or
/// `iat` (the only numbers read) should be is named: serde_json says "floating point" for it.
fn decode_claims(part: &str) -> Result<RawClaims, SessionError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| SessionError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        if e.to_string().starts_with("invalid type: floating point") {
            SessionError::NotWholeSeconds
        } else {
            SessionError::Malformed
        }
    })
}

/// Only `alg` matters: the key is the partner's HMAC secret, so no header field may choose
/// another algorithm or key. Other fields (`typ`, `kid`, ...) are ignored.
#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// Each claim optional here, so an absent one is named rather than called malformed; a claim of
/// the wrong type is still malformed.
#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    iat: Option<i64>,
    keaplink_request: Option<String>,
}

fn present<T>(claim: Option<T>, name: Claim) -> Result<T, SessionError> {
    claim.ok_or(SessionError::MissingClaim(name))
}

/// A NumericDate in seconds: milliseconds are named as such.
fn seconds(claim: Option<i64>, name: Claim) -> Result<i64, SessionError> {
    let secs = present(claim, name)?;
    if secs > MAX_SECONDS {
        return Err(SessionError::Milliseconds(name));
    }
    Ok(secs)
}

/// Whether `aud`, a string or an array of strings (RFC 7519 section 4.1.3), names keaplink.
struct Audience(bool);

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> serde::de::Visitor<'de> for Names {
            type Value = Audience;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: serde::de::Error>(self, aud: &str) -> Result<Audience, E> {
                Ok(Audience(aud == SESSION_AUDIENCE))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut all: A,
            ) -> Result<Audience, A::Error> {
                let mut ours = false;
                while let Some(aud) = all.next_element::<String>()? {
                    ours |= aud == SESSION_AUDIENCE;
                }
                Ok(Audience(ours))
            }
        }
        d.deserialize_any(Names)
    }
}

#[derive(Deserialize)]
struct IssuerOnly {
    iss: Option<String>,
}

/// Reads `iss` without trusting anything, to find whose secret verifies the token. Nothing else
/// may be taken from the token before [`verify`] succeeds.
pub fn unverified_issuer(token: &str) -> Result<PartnerId, SessionError> {
    let claims: IssuerOnly = decode_json(split(token)?.claims)?;
    PartnerId::parse(&present(claims.iss, Claim::Iss)?).ok_or(SessionError::UnknownIssuer)
}

/// Verifies `token` with the partner's `secret` at time `now`: the algorithm, then the
/// signature (constant time), and only then the claims.
pub fn verify(
    token: &str,
    partner: &PartnerId,
    secret: &[u8],
    now: UnixTime,
) -> Result<SessionClaims, SessionError> {
    let parts = split(token)?;
    let header: Header = decode_json(parts.header)?;
    if header.alg != "HS256" {
        return Err(SessionError::WrongAlgorithm);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(parts.signature)
        .map_err(|_| SessionError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SessionError::BadSignature)?;
    mac.update(parts.signing_input.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| SessionError::BadSignature)?;
    let c: RawClaims = decode_claims(parts.claims)?;
    if !present(c.aud, Claim::Aud)?.0 {
        return Err(SessionError::WrongAudience);
    }
    if present(c.iss, Claim::Iss)? != partner.as_str() {
        return Err(SessionError::UnknownIssuer);
    }
    let sub = present(c.sub, Claim::Sub)?;
    let exp = seconds(c.exp, Claim::Exp)?;
    let iat = seconds(c.iat, Claim::Iat)?;
    if exp <= now {
        return Err(SessionError::Expired);
    }
    if iat > now + MAX_CLOCK_SKEW_SECS {
        return Err(SessionError::IssuedInFuture);
    }
    if exp - iat > MAX_SESSION_SECS {
        return Err(SessionError::TooLongLived);
    }
    let user = UserId::parse(&sub).ok_or(SessionError::BadSubject)?;
    Ok(SessionClaims {
        partner: partner.clone(),
        user,
        expires_at: exp,
        request: c.keaplink_request,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::{json, Value};

    pub const SECRET: &[u8] = b"partner-session-secret-0123456789";
    pub const NOW: i64 = 1_800_000_000;

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum Algorithm {
        HS256,
        HS512,
    }

    /// A token signed with `alg`, assembled by hand (header, claims, HMAC over both).
    pub fn mint(alg: Algorithm, claims: &Value, secret: &[u8]) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let head = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg:?}","typ":"JWT"}}"#));
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{head}.{body}");
        let sig = match alg {
            Algorithm::HS256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(secret).unwrap();
                m.update(input.as_bytes());
                m.finalize().into_bytes().to_vec()
            }
            Algorithm::HS512 => {
                let mut m = Hmac::<sha2::Sha512>::new_from_slice(secret).unwrap();
                m.update(input.as_bytes());
                m.finalize().into_bytes().to_vec()
            }
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn good() -> Value {
        json!({"iss": "acme", "sub": "user-1", "aud": "keaplink", "iat": NOW - 10, "exp": NOW + 600})
    }

    fn check(token: &str) -> Result<SessionClaims, SessionError> {
        let p = unverified_issuer(token)?;
        verify(token, &p, SECRET, NOW)
    }

    #[test]
    fn accepts_a_good_token() {
        let c = check(&mint(Algorithm::HS256, &good(), SECRET)).unwrap();
        assert_eq!(c.partner.as_str(), "acme");
        assert_eq!(c.user.as_str(), "user-1");
    }

    #[test]
    fn rejects_each_contract_violation() {
        let with = |k: &str, v: Value| {
            let mut c = good();
            c[k] = v;
            mint(Algorithm::HS256, &c, SECRET)
        };
        assert_eq!(
            check(&mint(Algorithm::HS256, &good(), b"other")),
            Err(SessionError::BadSignature)
        );
        assert_eq!(
            check(&mint(Algorithm::HS512, &good(), SECRET)),
            Err(SessionError::WrongAlgorithm)
        );
        assert_eq!(
            check(&with("aud", json!("other"))),
            Err(SessionError::WrongAudience)
        );
        assert_eq!(check(&with("exp", json!(NOW))), Err(SessionError::Expired));
        assert_eq!(
            check(&with("exp", json!(NOW + 4000))),
            Err(SessionError::TooLongLived)
        );
        assert_eq!(
            check(&with("iat", json!(NOW + 61))),
            Err(SessionError::IssuedInFuture)
        );
        assert_eq!(
            check(&with("sub", json!(""))),
            Err(SessionError::BadSubject)
        );
        assert_eq!(
            check(&with("iss", json!("Not A Partner"))),
            Err(SessionError::UnknownIssuer)
        );
    }

    #[test]
    fn names_a_missing_claim() {
        for (name, claim) in [
            ("iss", Claim::Iss),
            ("sub", Claim::Sub),
            ("aud", Claim::Aud),
            ("exp", Claim::Exp),
            ("iat", Claim::Iat),
        ] {
            let mut c = good();
            c.as_object_mut().unwrap().remove(name);
            let t = mint(Algorithm::HS256, &c, SECRET);
            // Without iss the issuer cannot be found (check stops there, naming it too).
            let got = verify(&t, &PartnerId::parse("acme").unwrap(), SECRET, NOW);
            assert_eq!(got, Err(SessionError::MissingClaim(claim)), "{name}");
            assert_eq!(check(&t), Err(SessionError::MissingClaim(claim)), "{name}");
            let msg = SessionError::MissingClaim(claim).message();
            assert!(msg.contains(&format!("no {name} claim")), "{msg}");
        }
    }

    #[test]
    fn tells_milliseconds_from_seconds() {
        let with = |k: &str, v: Value| {
            let mut c = good();
            c[k] = v;
            check(&mint(Algorithm::HS256, &c, SECRET))
        };
        // Date.now() in both, as a JavaScript back-end writes by mistake.
        let mut ms = good();
        ms["iat"] = json!((NOW - 10) * 1000);
        ms["exp"] = json!((NOW + 600) * 1000);
        assert_eq!(
            check(&mint(Algorithm::HS256, &ms, SECRET)),
            Err(SessionError::Milliseconds(Claim::Exp))
        );
        assert_eq!(
            with("iat", json!((NOW - 10) * 1000)),
            Err(SessionError::Milliseconds(Claim::Iat))
        );
        // The boundary: the largest value still read as seconds is merely too far out.
        assert_eq!(
            with("exp", json!(MAX_SECONDS)),
            Err(SessionError::TooLongLived)
        );
        assert_eq!(
            with("exp", json!(MAX_SECONDS + 1)),
            Err(SessionError::Milliseconds(Claim::Exp))
        );
        assert_eq!(
            with("iat", json!(NOW as f64 - 0.5)),
            Err(SessionError::NotWholeSeconds)
        );
        assert_eq!(
            with("exp", json!(NOW as f64 + 600.25)),
            Err(SessionError::NotWholeSeconds)
        );
        // A fraction elsewhere (a claim nobody reads) is no concern.
        assert!(with("nbf_note", json!(0.5)).is_ok());
        assert_eq!(
            with("exp", json!("1800000600")),
            Err(SessionError::Malformed)
        );
        assert!(SessionError::Milliseconds(Claim::Iat)
            .message()
            .contains("iat is in milliseconds: it must be seconds"));
        assert!(SessionError::Milliseconds(Claim::Exp)
            .message()
            .contains("exp is in milliseconds"));
    }

    #[test]
    fn rejects_alg_none_and_garbage() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(good().to_string());
        let none = format!("{header}.{body}.");
        let p = unverified_issuer(&none).unwrap();
        assert!(verify(&none, &p, SECRET, NOW).is_err());
        for junk in ["", "a.b.c", "not a jwt", &"x".repeat(10_000)] {
            assert!(check(junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn reads_the_compact_form_strictly() {
        let t = mint(Algorithm::HS256, &good(), SECRET);
        let (input, sig) = t.rsplit_once('.').unwrap();
        let p = PartnerId::parse("acme").unwrap();
        for bad in [
            format!("{t}."),                // a fourth, empty part
            format!("{input}.{sig}.{sig}"), // a fourth part
            format!("{input}.{sig}="),      // padding
            input.to_string(),              // no signature part
            format!("{input}.{}", &sig[..sig.len() - 1]),
        ] {
            assert!(verify(&bad, &p, SECRET, NOW).is_err(), "{bad}");
        }
        // 32 bytes take 43 characters, whose last carries 2 unused bits: setting one spells the
        // same signature another way, and that is refused too (as jsonwebtoken refused it).
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        assert!(verify(&t, &p, SECRET, NOW).is_ok());
        let last = ALPHABET
            .iter()
            .position(|&c| c == *sig.as_bytes().last().unwrap());
        let twin = char::from(ALPHABET[last.unwrap() ^ 1]);
        let twin = format!("{input}.{}{twin}", &sig[..sig.len() - 1]);
        assert_eq!(verify(&twin, &p, SECRET, NOW), Err(SessionError::Malformed));
    }

    #[test]
    fn audience_may_be_a_list() {
        let with_aud = |aud: Value| {
            let mut c = good();
            c["aud"] = aud;
            check(&mint(Algorithm::HS256, &c, SECRET))
        };
        assert!(with_aud(json!(["other", "keaplink"])).is_ok());
        assert_eq!(with_aud(json!(["other"])), Err(SessionError::WrongAudience));
        assert_eq!(with_aud(json!(7)), Err(SessionError::Malformed));
        let mut none = good();
        none.as_object_mut().unwrap().remove("aud");
        assert_eq!(
            check(&mint(Algorithm::HS256, &none, SECRET)),
            Err(SessionError::MissingClaim(Claim::Aud))
        );
    }

    #[test]
    fn only_hs256_by_exact_name() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = URL_SAFE_NO_PAD.encode(good().to_string());
        let p = PartnerId::parse("acme").unwrap();
        for header in [
            r#"{"alg":"hs256"}"#,
            r#"{"alg":"none"}"#,
            r#"{"typ":"JWT"}"#,
        ] {
            let input = format!("{}.{body}", URL_SAFE_NO_PAD.encode(header));
            let mut m = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
            m.update(input.as_bytes());
            let t = format!(
                "{input}.{}",
                URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
            );
            let want = if header.contains("alg") {
                SessionError::WrongAlgorithm
            } else {
                SessionError::Malformed
            };
            assert_eq!(verify(&t, &p, SECRET, NOW), Err(want), "{header}");
        }
    }

    #[test]
    fn issuer_must_match_the_key_owner() {
        // A token minted by partner "acme" is checked against partner "other": refused even if
        // the secrets happened to be equal.
        let t = mint(Algorithm::HS256, &good(), SECRET);
        let other = PartnerId::parse("other").unwrap();
        assert_eq!(
            verify(&t, &other, SECRET, NOW),
            Err(SessionError::UnknownIssuer)
        );
    }
}
