//! The three credentials: the admin token, a partner's API key, a partner user's session JWT.
//! A credential sent to an endpoint that takes another kind is told so by name.

use crate::config::Config;
use crate::http::{bearer, origin};
use crate::store::Store;
use keaplink_core::clock::UnixTime;
use keaplink_core::ids::{PartnerId, UserId};
use keaplink_core::partner::{api_key_partner, PartnerRecord};
use keaplink_core::session::{unverified_issuer, verify, SessionError};
use keaplink_core::{ApiError, ApiResult, ErrorCode};
use worker::Request;

/// What a bearer credential looks like, before it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    ApiKey,
    Jwt,
    Other,
}

fn shape(token: &str) -> Shape {
    if token.starts_with("klk.") {
        Shape::ApiKey
    } else if token.starts_with("eyJ") && token.matches('.').count() == 2 {
        Shape::Jwt
    } else {
        Shape::Other
    }
}

pub fn admin(req: &Request, cfg: &Config) -> ApiResult<()> {
    let token = bearer(req)?;
    if cfg.admin_token.ct_eq(&token) {
        return Ok(());
    }
    let message = match shape(&token) {
        Shape::ApiKey => "This endpoint takes the admin token, not a partner's API key.",
        Shape::Jwt => "This endpoint takes the admin token, not a session JWT.",
        Shape::Other => "The admin token is not valid.",
    };
    Err(ApiError::new(ErrorCode::InvalidAdminToken, message))
}

/// The partner whose API key this is (the endpoints that act for one of the partner's users:
/// `/v1/token` and the Keap proxy; the admin token does not act there). The check copies
/// nothing: a partner record is trusted for 30 s per isolate (`Store::partner`), so a revoked or
/// rotated key stops working within 30 s everywhere, at once in the isolate that changed it.
pub async fn partner_key_id(req: &Request, store: &Store, cfg: &Config) -> ApiResult<PartnerId> {
    let key = bearer(req)?;
    let refused = || {
        let message = match shape(&key) {
            Shape::Jwt => "This endpoint takes your API key (klk.…), not a session JWT: session JWTs are for the widget's /v1/me endpoints.",
            Shape::Other if cfg.admin_token.ct_eq(&key) => "This endpoint takes the partner's API key (klk.…), not the admin token: it acts for one of the partner's users, and the admin token does not act there.",
            _ => "The API key is not valid.",
        };
        ApiError::new(ErrorCode::InvalidApiKey, message)
    };
    let id = api_key_partner(&key).ok_or_else(refused)?;
    let matches = |p: Option<&PartnerRecord>| p.is_some_and(|p| p.api_key_matches(&key));
    let known = match store.partner_cached(&id, matches) {
        Some(m) => m,
        None => matches(store.partner(&id).await?.as_ref()),
    };
    if known {
        Ok(id)
    } else {
        Err(refused())
    }
}

/// The header an operator names the partner with when it acts for one with the admin token (the
/// console's admin view).
pub const PARTNER_HEADER: &str = "keaplink-partner";

/// The partner a back-end call acts for: the partner whose API key this is, or, with the admin
/// token, the partner named in `keaplink-partner`.
pub async fn partner(
    req: &Request,
    store: &Store,
    cfg: &Config,
) -> ApiResult<(PartnerId, PartnerRecord)> {
    let token = bearer(req)?;
    if !cfg.admin_token.ct_eq(&token) {
        let id = partner_key_id(req, store, cfg).await?;
        let record = store
            .partner(&id)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidApiKey, "The API key is not valid."))?;
        return Ok((id, record));
    }
    let named = req.headers().get(PARTNER_HEADER).ok().flatten();
    let id = named
        .as_deref()
        .and_then(PartnerId::parse)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                "With the admin token, name the partner to act for in the keaplink-partner header (1-64 of a-z, 0-9 and -).",
            )
        })?;
    let record = store
        .partner(&id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::PartnerNotFound, "No such partner."))?;
    Ok((id, record))
}

/// A signed-in partner user, as the widget presents them.
pub struct Session {
    pub partner_id: PartnerId,
    pub partner: PartnerRecord,
    pub user: UserId,
    /// The request's `Origin`, checked against the partner's `allowed_origins`.
    pub origin: Option<String>,
}

fn invalid(e: SessionError) -> ApiError {
    ApiError::new(ErrorCode::InvalidSession, e.message())
}

/// Checks the session JWT and the request's origin. Also returns the origin to echo in CORS
/// headers, known as soon as the partner is (so the widget can read a 401 and re-mint).
pub async fn session(
    req: &Request,
    store: &Store,
    cfg: &Config,
    now: UnixTime,
) -> (ApiResult<Session>, Option<String>) {
    let origin = origin(req);
    let token = match bearer(req) {
        Ok(t) => t,
        Err(e) => return (Err(e), None),
    };
    if shape(&token) == Shape::ApiKey {
        return (
            Err(ApiError::new(
                ErrorCode::InvalidSession,
                "This endpoint takes a session JWT minted by your back-end (HS256, signed with your session_secret), not your API key: API keys stay on your servers.",
            )),
            None,
        );
    }
    let partner_id = match unverified_issuer(&token) {
        Ok(p) => p,
        Err(e) => return (Err(invalid(e)), None),
    };
    let partner = match store.partner(&partner_id).await {
        Ok(Some(p)) => p,
        Ok(None) => return (Err(invalid(SessionError::UnknownIssuer)), None),
        Err(e) => return (Err(e), None),
    };
    let cors = match &origin {
        None => None,
        Some(o) if partner.allows_origin(o) => Some(o.clone()),
        Some(_) => {
            return (
                Err(ApiError::new(
                    ErrorCode::OriginNotAllowed,
                    "This page's origin is not in the partner's allowed_origins.",
                )),
                None,
            )
        }
    };
    let secret = match partner.session_secret(&cfg.keys) {
        Ok(s) => s,
        Err(e) => {
            return (
                Err(ApiError::internal(format!(
                    "the partner's session secret does not open ({e:?})"
                ))),
                cors,
            )
        }
    };
    match verify(&token, &partner_id, secret.expose().as_bytes(), now) {
        Ok(claims) => (
            Ok(Session {
                partner_id,
                partner,
                user: claims.user,
                origin: cors.clone(),
            }),
            cors,
        ),
        Err(e) => (Err(invalid(e)), cors),
    }
}
