//! Keap's OAuth 2.0 profile (RFC 6749 authorization-code grant), sans I/O.
//!
//! Builds the requests the Worker sends to Keap and reads what comes back, including Keap's
//! quirks: the token endpoint takes form bodies only, a dead refresh token is answered with
//! `invalid_request` (not `invalid_grant`), and the linked app is named in `scope` after a `|`.

use crate::error::{ApiError, ErrorCode};
use crate::secret::Secret;
use base64::Engine as _;
use serde::Deserialize;
use url::Url;

/// Where Keap lives. Every URL is configuration, so the sandbox can stand in for Keap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeapEndpoints {
    pub authorize_url: Url,
    pub token_url: Url,
    pub userinfo_url: Url,
    /// The sign-out-first hop; `None` turns it off everywhere.
    pub logout_url: Option<Url>,
}

/// The OAuth client registered with Keap.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: Secret,
}

/// A Keap app (tenant), such as `xx123`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeapApp(String);

impl KeapApp {
    /// Accepts 1-64 of `[a-z0-9-]`: the host label Keap gives an app. Case is folded.
    pub fn parse(raw: &str) -> Option<KeapApp> {
        let app = raw.to_ascii_lowercase();
        let ok = (1..=64).contains(&app.len())
            && app
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        ok.then_some(KeapApp(app))
    }

    /// Takes the app from a token response's `scope`: `full|xx123.infusionsoft.com`.
    pub fn from_scope(scope: &str) -> Option<KeapApp> {
        let (_, host) = scope.split_once('|')?;
        let label = host.split('.').next()?;
        KeapApp::parse(label)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::ids::string_id_serde!(KeapApp, "a Keap app id");

/// An HTTP request for the adapter to send, exactly as built here.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    pub method: &'static str,
    pub url: Url,
    pub headers: Vec<(&'static str, Secret)>,
    pub body: Option<String>,
}

/// The URL the user's browser goes to: Keap's consent screen, optionally behind the logout hop
/// (`logout?service=<authorize URL>`), so that the person at the keyboard has to sign in.
pub fn authorize_url(
    endpoints: &KeapEndpoints,
    client_id: &str,
    redirect_uri: &str,
    state: &str,
    sign_out_first: bool,
) -> Url {
    let mut authorize = endpoints.authorize_url.clone();
    authorize
        .query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", "full")
        .append_pair("state", state);
    match (&endpoints.logout_url, sign_out_first) {
        (Some(logout), true) => {
            let mut hop = logout.clone();
            hop.query_pairs_mut()
                .append_pair("service", authorize.as_str());
            hop
        }
        _ => authorize,
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    ser.finish()
}

const FORM: &str = "application/x-www-form-urlencoded";

/// RFC 6749 §4.1.3: trade the code for tokens. Keap wants the client credentials in the body.
pub fn code_exchange_request(
    endpoints: &KeapEndpoints,
    client: &ClientCredentials,
    code: &str,
    redirect_uri: &str,
) -> OutboundRequest {
    token_post(
        endpoints,
        None,
        &[
            ("client_id", &client.client_id),
            ("client_secret", client.client_secret.expose()),
            ("code", code),
            ("grant_type", "authorization_code"),
            ("redirect_uri", redirect_uri),
        ],
    )
}

/// A form POST to Keap's token endpoint (it takes no JSON).
fn token_post(
    endpoints: &KeapEndpoints,
    authorization: Option<Secret>,
    pairs: &[(&str, &str)],
) -> OutboundRequest {
    let mut headers = vec![
        ("content-type", Secret::new(FORM)),
        ("accept", Secret::new("application/json")),
    ];
    headers.extend(authorization.map(|a| ("authorization", a)));
    OutboundRequest {
        method: "POST",
        url: endpoints.token_url.clone(),
        headers,
        body: Some(form(pairs)),
    }
}

/// RFC 6749 §6: refresh, with HTTP Basic client authentication as Keap's own SDK does.
pub fn refresh_request(
    endpoints: &KeapEndpoints,
    client: &ClientCredentials,
    refresh_token: &Secret,
) -> OutboundRequest {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        client.client_id,
        client.client_secret.expose()
    ));
    token_post(
        endpoints,
        Some(Secret::new(format!("Basic {basic}"))),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ],
    )
}

/// Who linked: `GET userinfo` with the new access token.
pub fn userinfo_request(endpoints: &KeapEndpoints, access_token: &Secret) -> OutboundRequest {
    OutboundRequest {
        method: "GET",
        url: endpoints.userinfo_url.clone(),
        headers: vec![
            ("accept", Secret::new("application/json")),
            (
                "authorization",
                Secret::new(format!("Bearer {}", access_token.expose())),
            ),
        ],
        body: None,
    }
}

/// The business behind the linked app: `GET <KEAP_API_URL>/crm/rest/v2/businessProfile` with the
/// new access token. Its `name` is what people recognise ("Ann's Bakery").
pub fn business_profile_request(api_url: &Url, access_token: &Secret) -> OutboundRequest {
    let mut url = api_url.clone();
    url.set_path("/crm/rest/v2/businessProfile");
    url.set_query(None);
    OutboundRequest {
        method: "GET",
        url,
        headers: vec![
            ("accept", Secret::new("application/json")),
            (
                "authorization",
                Secret::new(format!("Bearer {}", access_token.expose())),
            ),
        ],
        body: None,
    }
}

/// Longest business name kept (it is shown, and travels in KV metadata).
pub const MAX_BUSINESS_NAME: usize = 120;

/// The business name, if Keap gave one. A failure here never fails a link: the name is a
/// courtesy, the app id stays the identity.
pub fn parse_business_profile(status: u16, body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Profile {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        business_name: Option<String>,
    }
    if status != 200 {
        return None;
    }
    let p: Profile = serde_json::from_slice(body).ok()?;
    let name = p.name.or(p.business_name)?;
    let name: String = name
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_BUSINESS_NAME)
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Keap names the linked app twice: in the token's `scope` and (v2 userinfo) as `tenant_id`.
/// Two different answers mean we cannot tell which app was linked: refuse the link.
pub fn check_tenant(who: &KeapIdentity, app: &KeapApp) -> Result<(), KeapFailure> {
    match who.tenant_id.as_deref() {
        Some(t) if t != app.as_str() => Err(KeapFailure::BadResponse {
            status: 200,
            detail: "userinfo's tenant_id names another app than the token's scope",
        }),
        _ => Ok(()),
    }
}

/// What a successful token call gave us.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub access_token: Secret,
    /// Keap rotates it on every refresh; `None` when a response left it out.
    pub refresh_token: Option<Secret>,
    pub expires_in: i64,
    /// `None` when `scope` lacked the `|app` part.
    pub keap_app: Option<KeapApp>,
}

/// Why a call to Keap failed, sorted by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeapFailure {
    /// The refresh token (or code) is dead: only the user can restore the link.
    InvalidGrant,
    /// 429: Keap's quota. Back off.
    Throttled,
    /// 5xx or a network failure: transient, try again later.
    Unavailable { status: u16 },
    /// Keap refused the request itself (a 4xx other than a dead grant): for a refresh, not the
    /// link's fault (wrong client credentials, say), so it is retried and reported.
    Rejected { status: u16 },
    /// Keap answered, but not in a shape we understand.
    BadResponse { status: u16, detail: &'static str },
    /// No answer in time.
    Timeout,
}

impl KeapFailure {
    /// What our caller is told when a call to Keap failed this way.
    pub fn api_error(&self) -> ApiError {
        match self {
            KeapFailure::InvalidGrant => ApiError::new(
                ErrorCode::NeedsReauth,
                "Keap no longer accepts this link; the user must reconnect.",
            ),
            KeapFailure::Throttled => ApiError::new(
                ErrorCode::KeapThrottled,
                "Keap is throttling requests; try again in a minute.",
            ),
            KeapFailure::Timeout => ApiError::new(
                ErrorCode::KeapTimeout,
                "Keap did not answer in time; try again.",
            ),
            KeapFailure::Unavailable { .. } => {
                ApiError::new(ErrorCode::KeapError, "Keap failed to answer; try again.")
            }
            KeapFailure::Rejected { status } => ApiError::new(
                ErrorCode::KeapError,
                format!("Keap refused the request (HTTP {status})."),
            ),
            KeapFailure::BadResponse { detail, .. } => ApiError::new(
                ErrorCode::KeapBadResponse,
                format!("Keap answered unexpectedly: {detail}."),
            ),
        }
    }

    /// Whether trying again later may help (the link is not dead).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            KeapFailure::Throttled | KeapFailure::Unavailable { .. } | KeapFailure::Timeout
        )
    }
}

#[derive(Deserialize)]
struct RawToken {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
struct RawOAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Reads the token endpoint's answer (code exchange or refresh).
pub fn parse_token_response(status: u16, body: &[u8]) -> Result<TokenGrant, KeapFailure> {
    match status {
        200 => {
            let raw: RawToken = json(body, "the token response is not the JSON Keap documents")?;
            if raw.access_token.is_empty() {
                return Err(KeapFailure::BadResponse {
                    status,
                    detail: "the token response has an empty access_token",
                });
            }
            let expires_in = match raw.expires_in {
                Some(s) if s > 0 && s <= 10 * 365 * 86_400 => s,
                _ => {
                    return Err(KeapFailure::BadResponse {
                        status,
                        detail: "the token response has no usable expires_in",
                    })
                }
            };
            Ok(TokenGrant {
                access_token: Secret::new(raw.access_token),
                refresh_token: raw.refresh_token.filter(|t| !t.is_empty()).map(Secret::new),
                expires_in,
                keap_app: raw.scope.as_deref().and_then(KeapApp::from_scope),
            })
        }
        400 | 401 => match serde_json::from_slice::<RawOAuthError>(body) {
            // Keap answers a dead refresh token with `invalid_request` + "Invalid Refresh Token";
            // RFC 6749 says `invalid_grant`. Both mean the same thing here.
            Ok(e)
                if e.error == "invalid_grant"
                    || (e.error == "invalid_request"
                        && e.error_description
                            .as_deref()
                            .is_some_and(|d| d.to_ascii_lowercase().contains("refresh token"))) =>
            {
                Err(KeapFailure::InvalidGrant)
            }
            _ => Err(KeapFailure::Rejected { status }),
        },
        _ => Err(failure_for_status(status)),
    }
}

/// A 200 answer's body, or `BadResponse` saying what it should have been.
fn json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    detail: &'static str,
) -> Result<T, KeapFailure> {
    serde_json::from_slice(body).map_err(|_| KeapFailure::BadResponse {
        status: 200,
        detail,
    })
}

/// A non-200 answer that says nothing more than its status.
fn failure_for_status(status: u16) -> KeapFailure {
    match status {
        429 => KeapFailure::Throttled,
        500..=599 => KeapFailure::Unavailable { status },
        400..=499 => KeapFailure::Rejected { status },
        _ => KeapFailure::BadResponse {
            status,
            detail: "Keap answered an unexpected status",
        },
    }
}

/// The Keap user behind an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeapIdentity {
    pub email: String,
    pub name: String,
    /// Keap's stable id of the user (`sub`): what identity-locked reconnects compare.
    pub sub: Option<String>,
    /// The Keap app the token is for, where userinfo says it (v2's `tenant_id`).
    pub tenant_id: Option<String>,
}

#[derive(Deserialize)]
struct RawUserinfo {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    given_name: Option<String>,
    #[serde(default)]
    family_name: Option<String>,
    #[serde(default)]
    preferred_name: Option<String>,
    /// A string in v2; some Keap answers have carried it as a number.
    #[serde(default)]
    sub: Option<serde_json::Value>,
    #[serde(default)]
    tenant_id: Option<String>,
}

/// Longest `sub` or `tenant_id` kept: Keap's are short ids; anything longer is not one.
const MAX_ID_FIELD: usize = 128;

fn short_id(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && s.len() <= MAX_ID_FIELD && !s.chars().any(char::is_control))
}

/// Longest email or name kept: they are shown, and they travel in KV metadata (1024 B).
pub const MAX_IDENTITY_FIELD: usize = 254;

fn clip(s: &str) -> String {
    let s = s.trim();
    if s.len() <= MAX_IDENTITY_FIELD {
        return s.to_owned();
    }
    let mut end = MAX_IDENTITY_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

pub fn parse_userinfo(status: u16, body: &[u8]) -> Result<KeapIdentity, KeapFailure> {
    match status {
        200 => {
            let raw: RawUserinfo = json(body, "the userinfo response is not JSON")?;
            let email = raw
                .email
                .filter(|e| e.contains('@'))
                .ok_or(KeapFailure::BadResponse {
                    status,
                    detail: "the userinfo response has no email",
                })?;
            let full = [raw.given_name, raw.family_name]
                .into_iter()
                .flatten()
                .filter(|s| !s.trim().is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            let name = if full.is_empty() {
                raw.preferred_name.unwrap_or_default()
            } else {
                full
            };
            let sub = match raw.sub {
                Some(serde_json::Value::String(s)) => Some(s),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            Ok(KeapIdentity {
                email: clip(&email),
                name: clip(&name),
                sub: short_id(sub),
                tenant_id: short_id(raw.tenant_id).map(|t| t.to_ascii_lowercase()),
            })
        }
        _ => Err(failure_for_status(status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(logout: Option<&str>) -> KeapEndpoints {
        KeapEndpoints {
            authorize_url: Url::parse("https://accounts.example/app/oauth/authorize").unwrap(),
            token_url: Url::parse("https://api.example/token").unwrap(),
            userinfo_url: Url::parse("https://api.example/userinfo").unwrap(),
            logout_url: logout.map(|l| Url::parse(l).unwrap()),
        }
    }

    fn client() -> ClientCredentials {
        ClientCredentials {
            client_id: "cid".into(),
            client_secret: Secret::new("csecret"),
        }
    }

    #[test]
    fn authorize_url_carries_every_param() {
        let u = authorize_url(
            &endpoints(None),
            "cid",
            "https://w.example/oauth/callback",
            "st",
            true,
        );
        let q: Vec<(String, String)> = u.query_pairs().into_owned().collect();
        assert_eq!(u.path(), "/app/oauth/authorize");
        assert!(q.contains(&("client_id".into(), "cid".into())));
        assert!(q.contains(&(
            "redirect_uri".into(),
            "https://w.example/oauth/callback".into()
        )));
        assert!(q.contains(&("response_type".into(), "code".into())));
        assert!(q.contains(&("scope".into(), "full".into())));
        assert!(q.contains(&("state".into(), "st".into())));
    }

    #[test]
    fn sign_out_first_wraps_the_authorize_url_in_the_logout_hop() {
        let e = endpoints(Some("https://signin.example/logout"));
        let hop = authorize_url(&e, "cid", "https://w/cb", "st", true);
        assert_eq!(hop.path(), "/logout");
        let service = hop.query_pairs().find(|(k, _)| k == "service").unwrap().1;
        let inner = Url::parse(&service).unwrap();
        assert_eq!(inner.path(), "/app/oauth/authorize");
        assert!(inner.query_pairs().any(|(k, v)| k == "state" && v == "st"));
        // Off: the authorize URL itself.
        let direct = authorize_url(&e, "cid", "https://w/cb", "st", false);
        assert_eq!(direct.path(), "/app/oauth/authorize");
    }

    #[test]
    fn code_exchange_is_form_encoded_with_credentials_in_body() {
        let r = code_exchange_request(&endpoints(None), &client(), "c&de", "https://w/cb");
        assert_eq!(r.method, "POST");
        let body = r.body.unwrap();
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        assert!(pairs.contains(&("code".into(), "c&de".into())));
        assert!(pairs.contains(&("grant_type".into(), "authorization_code".into())));
        assert!(pairs.contains(&("client_secret".into(), "csecret".into())));
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| *k == "content-type" && v.expose() == FORM));
    }

    #[test]
    fn refresh_uses_basic_auth() {
        let r = refresh_request(&endpoints(None), &client(), &Secret::new("rt"));
        let auth = r
            .headers
            .iter()
            .find(|(k, _)| *k == "authorization")
            .unwrap();
        assert_eq!(auth.1.expose(), "Basic Y2lkOmNzZWNyZXQ=");
        assert_eq!(r.body.unwrap(), "grant_type=refresh_token&refresh_token=rt");
    }

    #[test]
    fn parses_a_token_response_and_its_app() {
        let body = br#"{"access_token":"at","token_type":"bearer","expires_in":86400,"refresh_token":"rt","scope":"full|xx123.infusionsoft.com"}"#;
        let g = parse_token_response(200, body).unwrap();
        assert_eq!(g.access_token.expose(), "at");
        assert_eq!(g.refresh_token.unwrap().expose(), "rt");
        assert_eq!(g.expires_in, 86400);
        assert_eq!(g.keap_app.unwrap().as_str(), "xx123");
    }

    #[test]
    fn token_response_without_app_or_refresh_token_says_so() {
        let body = br#"{"access_token":"at","expires_in":86400,"scope":"full"}"#;
        let g = parse_token_response(200, body).unwrap();
        assert!(g.keap_app.is_none());
        assert!(g.refresh_token.is_none());
    }

    #[test]
    fn classifies_failures() {
        let dead = br#"{"error":"invalid_request","error_description":"Invalid Refresh Token"}"#;
        assert_eq!(
            parse_token_response(400, dead).unwrap_err(),
            KeapFailure::InvalidGrant
        );
        let grant = br#"{"error":"invalid_grant"}"#;
        assert_eq!(
            parse_token_response(400, grant).unwrap_err(),
            KeapFailure::InvalidGrant
        );
        let json_body = br#"{"error":"invalid_request","error_description":"response_type or grant_type is required"}"#;
        assert_eq!(
            parse_token_response(400, json_body).unwrap_err(),
            KeapFailure::Rejected { status: 400 }
        );
        assert_eq!(
            parse_token_response(401, br#"{"error":"invalid_client"}"#).unwrap_err(),
            KeapFailure::Rejected { status: 401 }
        );
        let quota = br#"{"fault":{"faultstring":"Rate limit quota violation","detail":{"errorcode":"policies.ratelimit.QuotaViolation"}}}"#;
        assert_eq!(
            parse_token_response(429, quota).unwrap_err(),
            KeapFailure::Throttled
        );
        assert_eq!(
            parse_token_response(503, b"").unwrap_err(),
            KeapFailure::Unavailable { status: 503 }
        );
        assert!(matches!(
            parse_token_response(200, b"<html>").unwrap_err(),
            KeapFailure::BadResponse { .. }
        ));
        assert!(matches!(
            parse_token_response(200, br#"{"access_token":"a","expires_in":-5}"#).unwrap_err(),
            KeapFailure::BadResponse { .. }
        ));
        assert!(KeapFailure::Timeout.is_transient());
        assert!(!KeapFailure::InvalidGrant.is_transient());
    }

    #[test]
    fn business_profile_names_the_app_or_nothing() {
        let api = Url::parse("https://api.example/x?y=1").unwrap();
        let r = business_profile_request(&api, &Secret::new("tok"));
        assert_eq!(
            r.url.as_str(),
            "https://api.example/crm/rest/v2/businessProfile"
        );
        assert_eq!(
            parse_business_profile(200, br#"{"name":" Ann's Bakery ","email":"a@b"}"#).as_deref(),
            Some("Ann's Bakery")
        );
        assert_eq!(parse_business_profile(200, br#"{"name":""}"#), None);
        assert_eq!(parse_business_profile(403, br#"{"name":"x"}"#), None);
        assert_eq!(parse_business_profile(200, b"<html>"), None);
        let long = format!(r#"{{"name":"{}"}}"#, "B".repeat(500));
        assert_eq!(
            parse_business_profile(200, long.as_bytes()).unwrap().len(),
            MAX_BUSINESS_NAME
        );
    }

    #[test]
    fn scope_and_tenant_must_agree() {
        let app = KeapApp::parse("ab123").unwrap();
        let mut who = KeapIdentity {
            email: "a@b".into(),
            name: String::new(),
            sub: None,
            tenant_id: None,
        };
        assert!(check_tenant(&who, &app).is_ok(), "v1 has no tenant_id");
        who.tenant_id = Some("ab123".into());
        assert!(check_tenant(&who, &app).is_ok());
        who.tenant_id = Some("cd456".into());
        assert!(matches!(
            check_tenant(&who, &app),
            Err(KeapFailure::BadResponse { .. })
        ));
    }

    #[test]
    fn app_parsing_is_strict() {
        assert_eq!(
            KeapApp::from_scope("full|AB123.infusionsoft.com")
                .unwrap()
                .as_str(),
            "ab123"
        );
        assert!(KeapApp::from_scope("full").is_none());
        assert!(KeapApp::from_scope("full|").is_none());
        assert!(KeapApp::from_scope("full|a/b.x").is_none());
        assert!(KeapApp::parse(&"a".repeat(65)).is_none());
    }

    #[test]
    fn userinfo_names_the_keap_user() {
        let body =
            br#"{"email":"ann@example.com","given_name":"Ann","family_name":"Bee","sub":"1"}"#;
        let who = parse_userinfo(200, body).unwrap();
        assert_eq!(who.email, "ann@example.com");
        assert_eq!(who.name, "Ann Bee");
        assert_eq!(who.sub.as_deref(), Some("1"));
        assert_eq!(who.tenant_id, None);
        let v2 = br#"{"email":"ann@example.com","sub":42,"tenant_id":"AB123","is_admin":true}"#;
        let who = parse_userinfo(200, v2).unwrap();
        assert_eq!(who.sub.as_deref(), Some("42"));
        assert_eq!(who.tenant_id.as_deref(), Some("ab123"));
        assert!(parse_userinfo(200, br#"{"given_name":"x"}"#).is_err());
        assert!(parse_userinfo(401, br#"{"fault":{}}"#).is_err());
        let long = format!(r#"{{"email":"a@b","given_name":"{}"}}"#, "é".repeat(300));
        assert!(parse_userinfo(200, long.as_bytes()).unwrap().name.len() <= MAX_IDENTITY_FIELD);
    }
}
