//! The signed-in partner user: a compact JWS (HS256) minted by the partner's back-end with its
//! `session_secret`, checked as the README's API reference says (iss, sub, aud, iat, exp; HS256 only).

use crate::clock::UnixTime;
use crate::ids::{PartnerId, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

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
}

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
        }
    }
}

/// jsonwebtoken's crypto, reduced to what sessions use: HMAC-SHA256 from RustCrypto's `hmac`.
/// Every other algorithm is refused before any key is touched.
mod hs256 {
    use hmac::{Hmac, Mac};
    use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
    use jsonwebtoken::errors::{Error, ErrorKind};
    use jsonwebtoken::signature::{self, Signer, Verifier};
    use jsonwebtoken::{Algorithm, AlgorithmFamily};
    use sha2::Sha256;

    struct Hs256(Hmac<Sha256>);

    fn mac(family: AlgorithmFamily, key: &[u8]) -> Result<Hs256, Error> {
        if family != AlgorithmFamily::Hmac {
            return Err(ErrorKind::InvalidKeyFormat.into());
        }
        Hmac::<Sha256>::new_from_slice(key)
            .map(Hs256)
            .map_err(|_| ErrorKind::InvalidKeyFormat.into())
    }

    impl Signer<Vec<u8>> for Hs256 {
        fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
            let mut m = self.0.clone();
            m.update(msg);
            Ok(m.finalize().into_bytes().to_vec())
        }
    }

    impl Verifier<Vec<u8>> for Hs256 {
        fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
            let mut m = self.0.clone();
            m.update(msg);
            // Constant-time comparison inside `hmac`.
            m.verify_slice(sig).map_err(signature::Error::from_source)
        }
    }

    impl JwtSigner for Hs256 {
        fn algorithm(&self) -> Algorithm {
            Algorithm::HS256
        }
    }

    impl JwtVerifier for Hs256 {
        fn algorithm(&self) -> Algorithm {
            Algorithm::HS256
        }
    }

    static PROVIDER: CryptoProvider = CryptoProvider {
        signer_factory: |alg, key| match alg {
            Algorithm::HS256 => Ok(Box::new(mac(key.family(), key.as_bytes())?)),
            _ => Err(ErrorKind::InvalidAlgorithm.into()),
        },
        verifier_factory: |alg, key| match alg {
            Algorithm::HS256 => Ok(Box::new(mac(key.family(), key.try_get_as_bytes()?)?)),
            _ => Err(ErrorKind::InvalidAlgorithm.into()),
        },
        key_utils: KeyUtils::new_unimplemented(),
    };

    /// Installs the provider once per process (or isolate); later calls are no-ops.
    pub fn install() {
        let _ = PROVIDER.install_default();
    }
}

/// For code that signs session tokens (tests, the partner examples written in Rust).
pub fn install_crypto() {
    hs256::install();
}

#[derive(Deserialize)]
struct RawClaims {
    iss: String,
    sub: String,
    exp: i64,
    iat: i64,
}

#[derive(Deserialize)]
struct IssuerOnly {
    iss: String,
}

/// Reads `iss` without trusting anything, to find whose secret verifies the token. Nothing else
/// may be taken from the token before [`verify`] succeeds.
pub fn unverified_issuer(token: &str) -> Result<PartnerId, SessionError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(SessionError::Malformed);
    }
    let claims: IssuerOnly = jsonwebtoken::dangerous::insecure_decode_claims(token)
        .map_err(|_| SessionError::Malformed)?;
    PartnerId::parse(&claims.iss).ok_or(SessionError::UnknownIssuer)
}

/// Verifies `token` with the partner's `secret` at time `now`.
pub fn verify(
    token: &str,
    partner: &PartnerId,
    secret: &[u8],
    now: UnixTime,
) -> Result<SessionClaims, SessionError> {
    use jsonwebtoken::errors::ErrorKind;
    if token.len() > MAX_TOKEN_BYTES {
        return Err(SessionError::Malformed);
    }
    hs256::install();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[SESSION_AUDIENCE]);
    validation.set_issuer(&[partner.as_str()]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    // Time is checked below against the caller's clock, without leeway.
    validation.validate_exp = false;
    validation.leeway = 0;
    let data =
        jsonwebtoken::decode::<RawClaims>(token, &DecodingKey::from_secret(secret), &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => SessionError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    SessionError::WrongAlgorithm
                }
                ErrorKind::InvalidAudience => SessionError::WrongAudience,
                ErrorKind::InvalidIssuer => SessionError::UnknownIssuer,
                _ => SessionError::Malformed,
            })?;
    let c = data.claims;
    if c.iss != partner.as_str() {
        return Err(SessionError::UnknownIssuer);
    }
    if c.exp <= now {
        return Err(SessionError::Expired);
    }
    if c.iat > now + MAX_CLOCK_SKEW_SECS {
        return Err(SessionError::IssuedInFuture);
    }
    if c.exp - c.iat > MAX_SESSION_SECS {
        return Err(SessionError::TooLongLived);
    }
    let user = UserId::parse(&c.sub).ok_or(SessionError::BadSubject)?;
    Ok(SessionClaims {
        partner: partner.clone(),
        user,
        expires_at: c.exp,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{json, Value};

    pub const SECRET: &[u8] = b"partner-session-secret-0123456789";
    pub const NOW: i64 = 1_800_000_000;

    pub fn mint(alg: Algorithm, claims: &Value, secret: &[u8]) -> String {
        if alg != Algorithm::HS256 {
            return mint_foreign(alg, claims, secret);
        }
        install_crypto();
        jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    /// A token signed with another HMAC algorithm, assembled by hand, since the provider here
    /// signs HS256 only.
    fn mint_foreign(alg: Algorithm, claims: &Value, secret: &[u8]) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        use hmac::{Hmac, Mac};
        assert_eq!(alg, Algorithm::HS512);
        let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let mut m = Hmac::<sha2::Sha512>::new_from_slice(secret).unwrap();
        m.update(format!("{head}.{body}").as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
        format!("{head}.{body}.{sig}")
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
        let mut no_iat = good();
        no_iat.as_object_mut().unwrap().remove("iat");
        assert_eq!(
            check(&mint(Algorithm::HS256, &no_iat, SECRET)),
            Err(SessionError::Malformed)
        );
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
