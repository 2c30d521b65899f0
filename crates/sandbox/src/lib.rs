//! A stand-in Keap on loopback, modelled on what platform-notes.md §3 says of the real one:
//! the authorize page with its single-sign-on cookie, the logout hop, a token endpoint that takes
//! form bodies only and rotates refresh tokens, userinfo, and Keap's error bodies.
//!
//! Tests steer it through `/__sandbox/*`: inject faults into the next token calls, count calls,
//! change token lifetimes, revoke a user's tokens.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use url::Url;

/// A Keap user of the sandbox; each owns one Keap app.
#[derive(Debug, Clone)]
pub struct SeedUser {
    pub email: &'static str,
    pub given_name: &'static str,
    pub family_name: &'static str,
    pub app: &'static str,
}

pub const USERS: &[SeedUser] = &[
    SeedUser {
        email: "ann@ab123.example",
        given_name: "Ann",
        family_name: "Bee",
        app: "ab123",
    },
    SeedUser {
        email: "bob@cd456.example",
        given_name: "Bob",
        family_name: "Cee",
        app: "cd456",
    },
    SeedUser {
        email: "cat@ef789.example",
        given_name: "Cat",
        family_name: "Dee",
        app: "ef789",
    },
];
/// Every seeded user's password. It is a sandbox: the login page says so.
pub const PASSWORD: &str = "keap";
const SSO_COOKIE: &str = "keap_sso";
const CODE_TTL_SECS: u64 = 120;

#[derive(Debug, Clone)]
pub struct Config {
    pub client_id: String,
    pub client_secret: String,
    /// Exact redirect URIs the OAuth client registered. Empty: any http(s) URI.
    pub redirect_uris: Vec<String>,
    pub expires_in: u64,
}

/// What the next token calls do instead of (or on top of) answering normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// HTTP 500.
    ServerError,
    /// HTTP 429 with Keap's quota fault body.
    Throttle,
    /// HTTP 400 `invalid_request`.
    BadRequest,
    /// HTTP 200 with a body that is not JSON.
    Garbage,
    /// No answer for `hang_ms`, then a 500; nothing is done.
    Hang,
    /// The call is carried out (codes spent, tokens rotated), then the answer is lost: no
    /// answer for `hang_ms`, then a 500.
    Drop,
    /// A normal answer without `refresh_token`.
    OmitRefreshToken,
    /// A normal answer whose `scope` lacks the `|app` part.
    OmitApp,
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    kind: FaultKind,
    hang: Duration,
}

#[derive(Debug)]
struct CodeGrant {
    user: usize,
    client_id: String,
    redirect_uri: String,
    expires_at: u64,
}

#[derive(Debug)]
struct AccessGrant {
    user: usize,
    expires_at: u64,
    alive: bool,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<String, usize>,
    codes: HashMap<String, CodeGrant>,
    access: HashMap<String, AccessGrant>,
    /// refresh token → (user, alive)
    refresh: HashMap<String, (usize, bool)>,
    faults: VecDeque<Fault>,
    calls: HashMap<&'static str, u64>,
    /// Refresh calls by a short hash of the refresh token presented.
    refresh_calls: HashMap<String, u64>,
    /// When each refresh call arrived (unix ms), the latest 100,000: to measure pacing.
    refresh_times_ms: VecDeque<u64>,
    expires_in: Option<u64>,
}

pub struct Sandbox {
    config: Config,
    inner: Mutex<Inner>,
}

type Shared = Arc<Sandbox>;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS has randomness");
    URL_SAFE_NO_PAD.encode(buf)
}

fn short_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(token.as_bytes())[..6])
}

impl Sandbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, what: &'static str) {
        *self.lock().calls.entry(what).or_default() += 1;
    }
}

pub fn router(config: Config) -> Router {
    let state: Shared = Arc::new(Sandbox {
        config,
        inner: Mutex::new(Inner::default()),
    });
    Router::new()
        .route("/app/oauth/authorize", get(authorize))
        .route("/app/oauth/login", post(login))
        .route("/app/oauth/consent", post(consent))
        .route("/logout", get(logout))
        .route("/token", post(token))
        .route("/crm/rest/v1/oauth/connect/userinfo", get(userinfo))
        .route("/__sandbox/faults", post(add_faults))
        .route("/__sandbox/stats", get(stats))
        .route("/__sandbox/issued", get(issued))
        .route("/__sandbox/config", post(set_config))
        .route("/__sandbox/revoke", post(revoke))
        .route("/__sandbox/reset", post(reset))
        .route("/__sandbox/seed", post(seed))
        .with_state(state)
}

// ---- pages -------------------------------------------------------------------------------

fn page(title: &str, kind: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}}\
label,input,button{{display:block;margin:.4rem 0}}.banner{{background:#ffe;border:1px solid #cc9;padding:.5rem}}</style></head>\
<body data-page=\"{kind}\"><p class=\"banner\">Keap sandbox: a stand-in for Keap, for local runs and tests.</p>\
<h1>{title}</h1>{body}</body></html>"
    ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn bad_request_page(why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        page(
            "Invalid request",
            "error",
            &format!("<p>{}</p>", escape(why)),
        ),
    )
        .into_response()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

#[derive(Debug, Deserialize)]
struct AuthorizeParams {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    scope: Option<String>,
    state: Option<String>,
}

impl Sandbox {
    fn check_client(
        &self,
        client_id: Option<&str>,
        redirect_uri: Option<&str>,
    ) -> Result<(), &'static str> {
        if client_id != Some(self.config.client_id.as_str()) {
            return Err("Unknown client_id.");
        }
        let Some(uri) = redirect_uri else {
            return Err("redirect_uri is required.");
        };
        let parsed = Url::parse(uri).map_err(|_| "redirect_uri is not a URL.")?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("redirect_uri must be http(s).");
        }
        if !self.config.redirect_uris.is_empty()
            && !self.config.redirect_uris.iter().any(|r| r == uri)
        {
            return Err("redirect_uri is not registered for this client.");
        }
        Ok(())
    }

    fn session_user(&self, headers: &HeaderMap) -> Option<usize> {
        let sid = cookie(headers, SSO_COOKIE)?;
        self.lock().sessions.get(&sid).copied()
    }
}

async fn authorize(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(p): Query<AuthorizeParams>,
) -> Response {
    s.count("authorize");
    if let Err(why) = s.check_client(p.client_id.as_deref(), p.redirect_uri.as_deref()) {
        return bad_request_page(why);
    }
    if p.response_type.as_deref() != Some("code") {
        return bad_request_page("response_type must be code.");
    }
    if p.scope.as_deref() != Some("full") {
        return bad_request_page("scope must be full.");
    }
    let hidden = |name: &str, v: &Option<String>| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(v.as_deref().unwrap_or(""))
        )
    };
    let carried = [
        hidden("client_id", &p.client_id),
        hidden("redirect_uri", &p.redirect_uri),
        hidden("state", &p.state),
    ]
    .concat();
    match s.session_user(&headers) {
        None => {
            let users: String = USERS
                .iter()
                .map(|u| format!("<li>{}</li>", u.email))
                .collect();
            page(
                "Sign in to Keap",
                "login",
                &format!(
                    "<form method=\"post\" action=\"/app/oauth/login\">{carried}\
<label>Email <input name=\"email\" type=\"email\" autocomplete=\"username\"></label>\
<label>Password <input name=\"password\" type=\"password\"></label>\
<button type=\"submit\">Sign in</button></form>\
<p>Sandbox users (password <code>{PASSWORD}</code>):</p><ul>{users}</ul>"
                ),
            )
            .into_response()
        }
        Some(u) => {
            let user = &USERS[u];
            page(
                "Allow access",
                "consent",
                &format!(
                    "<p>Signed in as <strong id=\"who\">{} {}</strong> (<span id=\"email\">{}</span>), app <code>{}</code>.</p>\
<p>The app wants full access to your Keap account.</p>\
<form method=\"post\" action=\"/app/oauth/consent\">{carried}\
<button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
                    user.given_name, user.family_name, user.email, user.app
                ),
            )
            .into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
}

fn authorize_path(client_id: &str, redirect_uri: &str, state: &str) -> String {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", "full")
        .append_pair("state", state)
        .finish();
    format!("/app/oauth/authorize?{q}")
}

async fn login(State(s): State<Shared>, Form(f): Form<LoginForm>) -> Response {
    s.count("login");
    let user = USERS
        .iter()
        .position(|u| u.email.eq_ignore_ascii_case(f.email.trim()))
        .filter(|_| f.password == PASSWORD);
    let Some(u) = user else {
        let body = page(
            "Sign in to Keap",
            "login-failed",
            "<p>Unknown email or wrong password.</p>",
        );
        return (StatusCode::UNAUTHORIZED, body).into_response();
    };
    let sid = random_token(24);
    s.lock().sessions.insert(sid.clone(), u);
    let back = authorize_path(
        f.client_id.as_deref().unwrap_or(""),
        f.redirect_uri.as_deref().unwrap_or(""),
        f.state.as_deref().unwrap_or(""),
    );
    let mut resp = Redirect::to(&back).into_response();
    let c = format!("{SSO_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax");
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

#[derive(Debug, Deserialize)]
struct ConsentForm {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    decision: String,
}

async fn consent(
    State(s): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<ConsentForm>,
) -> Response {
    s.count("consent");
    if let Err(why) = s.check_client(f.client_id.as_deref(), f.redirect_uri.as_deref()) {
        return bad_request_page(why);
    }
    let Some(u) = s.session_user(&headers) else {
        return bad_request_page("Your Keap session ended; start again.");
    };
    let redirect_uri = f.redirect_uri.unwrap_or_default();
    let Ok(mut target) = Url::parse(&redirect_uri) else {
        return bad_request_page("redirect_uri is not a URL.");
    };
    {
        let mut q = target.query_pairs_mut();
        if f.decision == "allow" {
            let code = random_token(24);
            s.lock().codes.insert(
                code.clone(),
                CodeGrant {
                    user: u,
                    client_id: f.client_id.unwrap_or_default(),
                    redirect_uri: redirect_uri.clone(),
                    expires_at: now() + CODE_TTL_SECS,
                },
            );
            q.append_pair("code", &code)
                .append_pair("scope", &format!("full|{}.infusionsoft.com", USERS[u].app));
        } else {
            q.append_pair("error", "access_denied");
        }
        if let Some(state) = &f.state {
            q.append_pair("state", state);
        }
    }
    Redirect::to(target.as_str()).into_response()
}

#[derive(Debug, Deserialize)]
struct LogoutParams {
    service: Option<String>,
}

async fn logout(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(p): Query<LogoutParams>,
) -> Response {
    s.count("logout");
    if let Some(sid) = cookie(&headers, SSO_COOKIE) {
        s.lock().sessions.remove(&sid);
    }
    let expire = HeaderValue::from_static("keap_sso=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
    let mut resp = match p.service.as_deref().map(Url::parse) {
        Some(Ok(u)) if matches!(u.scheme(), "http" | "https") => {
            Redirect::to(u.as_str()).into_response()
        }
        Some(_) => bad_request_page("service must be an http(s) URL."),
        None => page(
            "Signed out",
            "logged-out",
            "<p>You are signed out of Keap.</p>",
        )
        .into_response(),
    };
    resp.headers_mut().append(header::SET_COOKIE, expire);
    resp
}

// ---- API ---------------------------------------------------------------------------------

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn quota_fault() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        Json(
            json!({"fault": {"faultstring": "Rate limit quota violation. Quota limit  exceeded.",
            "detail": {"errorcode": "policies.ratelimit.QuotaViolation"}}}),
        ),
    )
        .into_response()
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ")?;
    let raw = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (id, secret) = raw.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

impl Sandbox {
    fn issue_tokens(&self, user: usize, omit_refresh: bool, omit_app: bool) -> serde_json::Value {
        let access = random_token(21);
        let refresh = random_token(21);
        let mut g = self.lock();
        let expires_in = g.expires_in.unwrap_or(self.config.expires_in);
        g.access.insert(
            access.clone(),
            AccessGrant {
                user,
                expires_at: now() + expires_in,
                alive: true,
            },
        );
        let scope = if omit_app {
            "full".to_owned()
        } else {
            format!("full|{}.infusionsoft.com", USERS[user].app)
        };
        let mut body = json!({
            "access_token": access, "token_type": "bearer", "expires_in": expires_in, "scope": scope,
        });
        if !omit_refresh {
            g.refresh.insert(refresh.clone(), (user, true));
            body["refresh_token"] = json!(refresh);
        }
        body
    }
}

async fn token(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    s.count("token");
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let form: HashMap<String, String> = if is_form {
        url::form_urlencoded::parse(&body).into_owned().collect()
    } else {
        HashMap::new()
    };
    let field = |k: &str| form.get(k).map(String::as_str);
    // Counted before faults apply: a refresh that got a 500 was still a refresh call.
    match field("grant_type") {
        Some("authorization_code") => s.count("token_code"),
        Some("refresh_token") => {
            s.count("token_refresh");
            let at = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let mut g = s.lock();
            if g.refresh_times_ms.len() >= 100_000 {
                g.refresh_times_ms.pop_front();
            }
            g.refresh_times_ms.push_back(at);
        }
        _ => {}
    }
    let fault = s.lock().faults.pop_front();
    match fault.map(|f| f.kind) {
        Some(FaultKind::ServerError) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": "server_error"})),
            )
                .into_response()
        }
        Some(FaultKind::Throttle) => return quota_fault(),
        Some(FaultKind::BadRequest) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The request is malformed.",
            )
        }
        Some(FaultKind::Garbage) => {
            return (StatusCode::OK, "<html>upstream error</html>").into_response()
        }
        Some(FaultKind::Hang) => {
            tokio::time::sleep(fault.map_or(Duration::ZERO, |f| f.hang)).await;
            return (StatusCode::INTERNAL_SERVER_ERROR, "timed out").into_response();
        }
        _ => {}
    }
    if !is_form {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "response_type or grant_type is required",
        );
    }
    let answer = match field("grant_type") {
        Some("authorization_code") => {
            let client_ok = field("client_id") == Some(s.config.client_id.as_str())
                && field("client_secret") == Some(s.config.client_secret.as_str());
            if !client_ok {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "Invalid client credentials",
                );
            }
            let grant = field("code").and_then(|c| s.lock().codes.remove(c));
            let user = match grant {
                Some(g)
                    if g.expires_at > now()
                        && Some(g.client_id.as_str()) == field("client_id")
                        && Some(g.redirect_uri.as_str()) == field("redirect_uri") =>
                {
                    g.user
                }
                _ => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "Invalid authorization code",
                    )
                }
            };
            user
        }
        Some("refresh_token") => {
            if basic_credentials(&headers)
                != Some((s.config.client_id.clone(), s.config.client_secret.clone()))
            {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "Invalid client credentials",
                );
            }
            let presented = field("refresh_token").unwrap_or("");
            let mut g = s.lock();
            *g.refresh_calls.entry(short_hash(presented)).or_default() += 1;
            match g.refresh.get_mut(presented) {
                // Rotation: the presented token dies at once, even if the answer is then lost.
                Some((user, alive)) if *alive => {
                    *alive = false;
                    *user
                }
                _ => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "Invalid Refresh Token",
                    )
                }
            }
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "response_type or grant_type is required",
            )
        }
    };
    let kind = fault.map(|f| f.kind);
    let body = s.issue_tokens(
        answer,
        kind == Some(FaultKind::OmitRefreshToken),
        kind == Some(FaultKind::OmitApp),
    );
    if let Some(Fault {
        kind: FaultKind::Drop,
        hang,
    }) = fault
    {
        tokio::time::sleep(hang).await;
        return (StatusCode::INTERNAL_SERVER_ERROR, "connection lost").into_response();
    }
    (StatusCode::OK, Json(body)).into_response()
}

async fn userinfo(State(s): State<Shared>, headers: HeaderMap) -> Response {
    s.count("userinfo");
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let user = {
        let g = s.lock();
        g.access
            .get(token)
            .filter(|a| a.alive && a.expires_at > now())
            .map(|a| a.user)
    };
    match user {
        Some(u) => {
            let user = &USERS[u];
            Json(json!({
                "sub": (u + 1).to_string(), "email": user.email, "given_name": user.given_name,
                "family_name": user.family_name, "preferred_name": user.given_name,
            }))
            .into_response()
        }
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"fault": {"faultstring": "Invalid Access Token",
                "detail": {"errorcode": "keymanagement.service.invalid_access_token"}}})),
        )
            .into_response(),
    }
}

// ---- test controls -----------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct FaultRequest {
    kind: FaultKind,
    #[serde(default = "one")]
    count: usize,
    #[serde(default = "default_hang_ms")]
    hang_ms: u64,
}

fn one() -> usize {
    1
}

fn default_hang_ms() -> u64 {
    30_000
}

async fn add_faults(State(s): State<Shared>, Json(r): Json<FaultRequest>) -> Response {
    let mut g = s.lock();
    for _ in 0..r.count.min(10_000) {
        g.faults.push_back(Fault {
            kind: r.kind,
            hang: Duration::from_millis(r.hang_ms),
        });
    }
    Json(json!({"queued": g.faults.len()})).into_response()
}

async fn stats(State(s): State<Shared>) -> Response {
    let g = s.lock();
    Json(json!({
        "calls": g.calls,
        "refresh_calls_by_token": g.refresh_calls,
        "refresh_times_ms": g.refresh_times_ms,
        "faults_queued": g.faults.len(),
        "live_refresh_tokens": g.refresh.values().filter(|(_, alive)| *alive).count(),
    }))
    .into_response()
}

/// Every token and SSO session this sandbox ever issued: what the tests' secrets check looks for
/// in the Worker's answers and logs.
async fn issued(State(s): State<Shared>) -> Response {
    let g = s.lock();
    Json(json!({
        "access_tokens": g.access.keys().collect::<Vec<_>>(),
        "refresh_tokens": g.refresh.keys().collect::<Vec<_>>(),
        "sso_sessions": g.sessions.keys().collect::<Vec<_>>(),
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct ConfigRequest {
    expires_in: Option<u64>,
}

async fn set_config(State(s): State<Shared>, Json(r): Json<ConfigRequest>) -> Response {
    s.lock().expires_in = r.expires_in;
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, Deserialize)]
struct RevokeRequest {
    email: String,
}

/// Kills every token of one Keap user, as when they remove the app in Account Central.
async fn revoke(State(s): State<Shared>, Json(r): Json<RevokeRequest>) -> Response {
    let Some(u) = USERS.iter().position(|x| x.email == r.email) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut g = s.lock();
    g.refresh
        .values_mut()
        .filter(|(user, _)| *user == u)
        .for_each(|(_, alive)| *alive = false);
    g.access
        .values_mut()
        .filter(|a| a.user == u)
        .for_each(|a| a.alive = false);
    StatusCode::NO_CONTENT.into_response()
}

async fn reset(State(s): State<Shared>) -> Response {
    let mut g = s.lock();
    g.faults.clear();
    g.calls.clear();
    g.refresh_calls.clear();
    g.refresh_times_ms.clear();
    g.expires_in = None;
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, Deserialize)]
struct SeedRequest {
    email: String,
    count: usize,
}

/// Mints `count` live token pairs for one Keap user, as if they had linked that many times: for
/// tests that seed many connections without walking the flow for each.
async fn seed(State(s): State<Shared>, Json(r): Json<SeedRequest>) -> Response {
    let Some(u) = USERS.iter().position(|x| x.email == r.email) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let tokens: Vec<serde_json::Value> = (0..r.count.min(100_000))
        .map(|_| {
            let t = s.issue_tokens(u, false, false);
            json!({"access_token": t["access_token"], "refresh_token": t["refresh_token"]})
        })
        .collect();
    Json(json!({ "tokens": tokens })).into_response()
}
