//! Keap for AI agents: each partner's MCP server (`/mcp/{partner_id}`, Streamable HTTP with JSON
//! answers) and the OAuth 2.1 authorization server its clients sign in with (discovery,
//! registration, authorize with the partner's sign-in hop and keaplink's consent page, token,
//! revocation). The rules are `keaplink_core::mcp`; grants live in each link's guard; tool calls
//! go to Keap through the proxy's own path (`proxy::tool_call`).
//!
//! Written on the crates the Worker already links: the MCP Rust SDK (rmcp) needs tokio and
//! cannot run in a wasm32 Worker.

use crate::clock::unix_now;
use crate::config::Config;
use crate::guard;
use crate::http::{empty, json, json_text, read_bytes_within, redirect};
use crate::limits;
use crate::log::{self, Field, Level};
use crate::pages::secure_page_headers;
use crate::proxy;
use crate::random;
use crate::store::Store;
use futures_util::future::LocalBoxFuture;
use keaplink_api::{ConnectionStatus, McpTools};
use keaplink_core::connection::{ConnectionKey, ConnectionMeta, ConnectionRecord};
use keaplink_core::ids::{PartnerId, UserId};
use keaplink_core::limits::Endpoint;
use keaplink_core::mcp::oauth::{
    self, client_hash, param, params, Client, Consent, Kind, Pending, Token,
};
use keaplink_core::mcp::page::{self, LinkChoice};
use keaplink_core::mcp::rpc::{self, Message, INVALID_PARAMS, METHOD_NOT_FOUND};
use keaplink_core::mcp::tools::{self, Tool};
use keaplink_core::partner::PartnerRecord;
use keaplink_core::session::{unverified_issuer, verify};
use keaplink_core::{ApiError, ApiResult, ErrorCode};
use serde::Serialize;
use serde_json::{json, Value};
use worker::{Env, Method, Request, Response};

/// The paths of the MCP server and its authorization server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpRoute<'a> {
    /// `/mcp/{partner_id}`.
    Server(&'a str),
    /// `/.well-known/oauth-protected-resource/mcp/{partner_id}`.
    ResourceMetadata(&'a str),
    /// `/.well-known/oauth-authorization-server`.
    ServerMetadata,
    Register,
    Authorize,
    Continue,
    Consent,
    Token,
    Revoke,
}

impl<'a> McpRoute<'a> {
    pub fn resolve(segments: &[&'a str]) -> Option<McpRoute<'a>> {
        Some(match segments {
            ["mcp", "oauth", "register"] => McpRoute::Register,
            ["mcp", "oauth", "authorize"] => McpRoute::Authorize,
            ["mcp", "oauth", "continue"] => McpRoute::Continue,
            ["mcp", "oauth", "consent"] => McpRoute::Consent,
            ["mcp", "oauth", "token"] => McpRoute::Token,
            ["mcp", "oauth", "revoke"] => McpRoute::Revoke,
            ["mcp", partner] => McpRoute::Server(partner),
            [".well-known", "oauth-protected-resource", "mcp", partner] => {
                McpRoute::ResourceMetadata(partner)
            }
            [".well-known", "oauth-authorization-server"] => McpRoute::ServerMetadata,
            _ => return None,
        })
    }

    pub fn methods(&self) -> &'static [Method] {
        match self {
            McpRoute::ResourceMetadata(_) | McpRoute::ServerMetadata | McpRoute::Authorize => {
                &[Method::Get]
            }
            _ => &[Method::Post],
        }
    }

    /// Authorize reads its query (and ignores parameters it does not know, as OAuth says).
    pub fn takes_query(&self) -> bool {
        *self == McpRoute::Authorize
    }
}

/// This deployment as the issuer: `PUBLIC_URL` without a trailing slash.
fn issuer(cfg: &Config) -> String {
    cfg.public_url.as_str().trim_end_matches('/').to_owned()
}

fn resource(cfg: &Config, partner: &str) -> String {
    format!("{}/mcp/{partner}", issuer(cfg))
}

/// Answers one of the MCP routes: its answer, and the error behind it for the log line. The
/// rate limit and the body (authorize's query) are read here once for every route, so that each
/// handler is one small future (each `await` of the same future in several handlers was its own
/// copy in the wasm).
pub async fn answer(
    req: &mut Request,
    env: &Env,
    cfg: &Config,
    store: &Store,
    route: &McpRoute<'_>,
) -> (ApiResult<Response>, Option<ApiError>) {
    let now = unix_now();
    match route {
        McpRoute::ServerMetadata => return (server_metadata(cfg), None),
        McpRoute::ResourceMetadata(p) => return (resource_metadata(cfg, store, p).await, None),
        _ => {}
    }
    let check = match route {
        McpRoute::Register => Endpoint::McpRegister,
        McpRoute::Server(_) => Endpoint::Mcp,
        _ => Endpoint::McpOAuth,
    };
    let bearer = crate::http::bearer(req).ok();
    let url = req.inner().url();
    let limited = limits::enforce(env, check.per_ip(limits::client_ip(req).as_deref())).await;
    let body = match limited {
        Ok(()) if *route == McpRoute::Authorize => {
            let query = url.split_once('?').map_or("", |(_, q)| q);
            Ok(query.split('#').next().unwrap_or("").as_bytes().to_vec())
        }
        Ok(()) => read_bytes_within(req, 64 * 1024, too_large).await,
        Err(e) => Err(e),
    };
    let result = match (body, route) {
        (Err(e), McpRoute::Server(_)) => return (Err(e), None),
        (Err(e), _) => Err(e),
        (Ok(body), McpRoute::Server(p)) => return server(env, cfg, store, p, bearer, &body).await,
        (Ok(body), McpRoute::Register) => register(cfg, &body, now),
        (Ok(body), McpRoute::Token) => token(env, cfg, store, &body).await,
        (Ok(body), McpRoute::Revoke) => revoke(env, &body).await,
        (Ok(body), McpRoute::Authorize) => authorize(cfg, store, &body, now).await,
        (Ok(body), McpRoute::Continue) => continue_flow(cfg, store, &body, now).await,
        (Ok(body), _) => consent(env, cfg, store, &body, now).await,
    };
    match result {
        Ok(r) => (Ok(r), None),
        Err(e) => {
            let resp = match route {
                // RFC 6749's error shape for its own errors; the rest (413, 429, 500) as every
                // endpoint answers them.
                McpRoute::Register | McpRoute::Token | McpRoute::Revoke if e.status() > 401 => {
                    return (Err(e), None)
                }
                McpRoute::Register | McpRoute::Token | McpRoute::Revoke => oauth_error(&e),
                // A refusal that cannot go back to the client: a page of ours.
                _ => refused_page(&e.message, e.status()),
            };
            (Ok(resp), Some(e))
        }
    }
}

/// A partner's record, as one future for every caller here.
fn partner_record<'a>(
    store: &'a Store,
    id: &'a PartnerId,
) -> LocalBoxFuture<'a, ApiResult<Option<PartnerRecord>>> {
    Box::pin(store.partner(id))
}

/// A partner user's links, as one future for every caller here.
fn user_links<'a>(
    store: &'a Store,
    partner: &'a PartnerId,
    user: &'a UserId,
) -> LocalBoxFuture<'a, ApiResult<Vec<(ConnectionKey, ConnectionMeta)>>> {
    Box::pin(store.list_user_connections(partner, user, 50))
}

/// A link's record, as one future for every caller here.
fn link<'a>(
    store: &'a Store,
    key: &'a ConnectionKey,
) -> LocalBoxFuture<'a, ApiResult<Option<ConnectionRecord>>> {
    Box::pin(store.connection(key))
}

/// An OAuth endpoint's error (RFC 6749 §5.2): `{"error", "error_description"}`, never cached.
fn oauth_error(e: &ApiError) -> Response {
    let body = json!({"error": e.code.as_str(), "error_description": e.message});
    let mut resp = match json(&body, e.status()) {
        Ok(r) => r,
        Err(_) => crate::http::bare(e.status()),
    };
    if let Some(secs) = e.retry_after {
        let _ = resp.headers_mut().set("retry-after", &secs.to_string());
    }
    resp
}

fn page(status: u16, html: String) -> Response {
    let mut resp = match Response::from_html(html) {
        Ok(r) => r.with_status(status),
        Err(_) => crate::http::bare(500),
    };
    let h = resp.headers_mut();
    let _ = h.set("content-security-policy", &page::csp());
    secure_page_headers(h);
    resp
}

fn refused_page(message: &str, status: u16) -> Response {
    page(status, page::refused(message))
}

fn server_metadata(cfg: &Config) -> ApiResult<Response> {
    let iss = serde_json::to_string(&issuer(cfg)).map_err(ApiError::internal)?;
    let at = |path: &str| format!("{}{path}\"", &iss[..iss.len() - 1]);
    json_text(
        format!(
            "{{\"issuer\":{iss},\"authorization_endpoint\":{},\"token_endpoint\":{},\"registration_endpoint\":{},\"revocation_endpoint\":{},\
\"response_types_supported\":[\"code\"],\"grant_types_supported\":[\"authorization_code\",\"refresh_token\"],\
\"code_challenge_methods_supported\":[\"S256\"],\"token_endpoint_auth_methods_supported\":[\"none\"],\
\"revocation_endpoint_auth_methods_supported\":[\"none\"],\"scopes_supported\":[\"keap.read\",\"keap.write\"],\
\"authorization_response_iss_parameter_supported\":true}}",
            at("/mcp/oauth/authorize"),
            at("/mcp/oauth/token"),
            at("/mcp/oauth/register"),
            at("/mcp/oauth/revoke"),
        ),
        200,
    )
}

/// An enabled partner's record, or 404 (an MCP server that is off is no MCP server).
async fn enabled_partner(store: &Store, raw: &str) -> ApiResult<(PartnerId, PartnerRecord)> {
    let missing = || {
        ApiError::new(
            ErrorCode::NotFound,
            "No MCP server here: the partner does not offer one.",
        )
    };
    let id = PartnerId::parse(raw).ok_or_else(missing)?;
    match partner_record(store, &id).await? {
        Some(p) if p.mcp.enabled => Ok((id, p)),
        _ => Err(missing()),
    }
}

async fn resource_metadata(cfg: &Config, store: &Store, raw: &str) -> ApiResult<Response> {
    let (id, partner) = enabled_partner(store, raw).await?;
    let scopes = match partner.mcp.tools {
        McpTools::Read => "[\"keap.read\"]",
        McpTools::ReadWrite => "[\"keap.read\",\"keap.write\"]",
    };
    let text = |v: &str| serde_json::to_string(v).unwrap_or_default();
    json_text(
        format!(
            "{{\"resource\":{},\"authorization_servers\":[{}],\"scopes_supported\":{scopes},\"bearer_methods_supported\":[\"header\"],\"resource_name\":{}}}",
            text(&resource(cfg, id.as_str())),
            text(&issuer(cfg)),
            text(&format!("Keap for {}", partner.name)),
        ),
        200,
    )
}

/// `POST /mcp/oauth/register`'s answer (RFC 7591 §3.2.1).
#[derive(Serialize)]
struct Registered<'a> {
    client_id: String,
    client_id_issued_at: i64,
    client_name: &'a str,
    redirect_uris: &'a [String],
    grant_types: [&'static str; 2],
    response_types: [&'static str; 1],
    token_endpoint_auth_method: &'static str,
}

/// The token endpoint's answer.
#[derive(Serialize)]
struct Tokens {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    refresh_token: String,
    scope: String,
}

fn register(cfg: &Config, body: &[u8], now: i64) -> ApiResult<Response> {
    let registration = serde_json::from_slice(body).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidClientMetadata,
            "The body must be a JSON object of client metadata (RFC 7591).",
        )
    })?;
    let client = oauth::register(registration, now)?;
    let answer = Registered {
        client_id: client.id(&cfg.keys, random::bytes()),
        client_id_issued_at: now,
        client_name: &client.name,
        redirect_uris: &client.redirect_uris,
        grant_types: ["authorization_code", "refresh_token"],
        response_types: ["code"],
        token_endpoint_auth_method: "none",
    };
    json(&answer, 201)
}

fn too_large() -> ApiError {
    ApiError::new(ErrorCode::BodyTooLarge, "The body is too large.")
}

fn form(body: &[u8], names: &[&str]) -> ApiResult<Vec<(String, String)>> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "The form is not UTF-8."))?;
    params(text, names)
}

fn required<'a>(p: &'a [(String, String)], name: &str) -> ApiResult<&'a str> {
    param(p, name)
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, format!("{name} is required.")))
}

/// The client a `client_id` names, or 401 `invalid_client`.
fn client(cfg: &Config, client_id: &str) -> ApiResult<Client> {
    Client::open(&cfg.keys, client_id).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidClient,
            "Unknown client_id: register at the registration_endpoint.",
        )
    })
}

async fn token(env: &Env, cfg: &Config, store: &Store, body: &[u8]) -> ApiResult<Response> {
    let p = form(
        body,
        &[
            "grant_type",
            "code",
            "redirect_uri",
            "code_verifier",
            "client_id",
            "refresh_token",
            "resource",
        ],
    )?;
    let client_id = required(&p, "client_id")?;
    client(cfg, client_id)?;
    let resource = param(&p, "resource").map(str::to_owned);
    if let Some(r) = &resource {
        // The partner must still offer its server: a partner that turned it off issues nothing.
        let partner = oauth::resource_partner(&issuer(cfg), r).ok_or_else(bad_target)?;
        enabled_partner(store, partner.as_str())
            .await
            .map_err(|_| bad_target())?;
    }
    let invalid = || ApiError::new(ErrorCode::InvalidGrant, "The code or token is not valid.");
    // (the tokens, whether a code was redeemed: the registration authorized something)
    let (tokens, redeemed) = match param(&p, "grant_type") {
        Some("authorization_code") => {
            let code = Token::parse(Kind::Code, required(&p, "code")?).ok_or_else(invalid)?;
            let tokens = guard::mcp_redeem(
                env,
                &code,
                client_hash(client_id),
                required(&p, "redirect_uri")?.to_owned(),
                required(&p, "code_verifier")?.to_owned(),
                resource,
            )
            .await?;
            (tokens, true)
        }
        Some("refresh_token") => {
            let t =
                Token::parse(Kind::Refresh, required(&p, "refresh_token")?).ok_or_else(invalid)?;
            let tokens = guard::mcp_refresh(env, &t, client_hash(client_id), resource).await?;
            (tokens, false)
        }
        _ => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedGrantType,
                "grant_type must be authorization_code or refresh_token.",
            ))
        }
    };
    if redeemed {
        // The registration is in use: it stays current (`Client::current`) a lifetime from now.
        // Best effort: the code is spent and the tokens are issued, so a failed mark (KV takes
        // one write a second per key) must not lose them; the next authorization marks again.
        if let Err(e) = store
            .mark_mcp_client_used(&client_hash(client_id), unix_now())
            .await
        {
            log::event(
                Level::Warn,
                "mcp_registration_mark_failed",
                &[("cause", Field::Str(&e.to_string()))],
            );
        }
    }
    let answer = Tokens {
        access_token: tokens.access_token,
        token_type: "Bearer",
        expires_in: tokens.expires_in,
        refresh_token: tokens.refresh_token,
        scope: tokens.scope,
    };
    json(&answer, 200)
}

fn bad_target() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidTarget,
        "resource is not an MCP server this deployment offers.",
    )
}

/// RFC 7009: 200 whether or not the token was known.
async fn revoke(env: &Env, body: &[u8]) -> ApiResult<Response> {
    let p = form(body, &["token", "token_type_hint", "client_id"])?;
    let raw = required(&p, "token")?;
    let t = Token::parse(Kind::Refresh, raw).or_else(|| Token::parse(Kind::Access, raw));
    if let Some(t) = t {
        guard::mcp_revoke_token(env, &t).await?;
    }
    empty(200)
}

/// The authorization request: checked, sealed, and the browser sent to the partner's sign-in.
async fn authorize(cfg: &Config, store: &Store, query: &[u8], now: i64) -> ApiResult<Response> {
    let p = form(
        query,
        &[
            "response_type",
            "client_id",
            "redirect_uri",
            "state",
            "code_challenge",
            "code_challenge_method",
            "resource",
            "scope",
        ],
    )?;
    let page_error = |m: &str| ApiError::new(ErrorCode::InvalidRequest, m);
    let client_id = required(&p, "client_id")?;
    let client = client(cfg, client_id)?;
    let redirect_uri = match param(&p, "redirect_uri") {
        Some(r) => r,
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].as_str(),
        None => return Err(page_error("redirect_uri is required.")),
    };
    if !client.allows_redirect(redirect_uri) {
        return Err(page_error(
            "redirect_uri is not one this client registered; nothing was sent to it.",
        ));
    }
    // A registration older than its lifetime still counts if it authorized something since.
    let last_authorized = if client.current(None, now) {
        None
    } else {
        store.mcp_client_used(&client_hash(client_id)).await?
    };
    if !client.current(last_authorized, now) {
        return Err(ApiError::new(
            ErrorCode::InvalidClient,
            "This client's registration has expired: the assistant must register again.",
        ));
    }
    let state = param(&p, "state");
    if state.is_some_and(|s| s.len() > oauth::MAX_STATE_BYTES) {
        return Err(page_error("state is over 512 bytes."));
    }
    let iss = issuer(cfg);
    // From here on, refusals go back to the client.
    let back = |error: &str, description: &str| -> ApiResult<Response> {
        let mut q = vec![("error", error), ("error_description", description)];
        if let Some(s) = state {
            q.push(("state", s));
        }
        redirect(&oauth::redirect_to(redirect_uri, &q, &iss), 302)
    };
    if param(&p, "response_type") != Some("code") {
        return back("unsupported_response_type", "response_type must be code.");
    }
    let challenge = match oauth::check_challenge(
        param(&p, "code_challenge"),
        param(&p, "code_challenge_method"),
    ) {
        Ok(c) => c,
        Err(e) => return back("invalid_request", &e.message),
    };
    let Some(resource) = param(&p, "resource") else {
        return back(
            "invalid_target",
            "resource is required: the MCP server's URL (RFC 8707).",
        );
    };
    let partner = match oauth::resource_partner(&iss, resource) {
        Some(id) => match partner_record(store, &id).await? {
            Some(rec) if rec.mcp.enabled => rec,
            _ => {
                return back(
                    "invalid_target",
                    "resource is not an MCP server this deployment offers.",
                )
            }
        },
        None => {
            return back(
                "invalid_target",
                "resource is not an MCP server this deployment offers.",
            )
        }
    };
    let Some(access) = oauth::requested_access(param(&p, "scope"), partner.mcp.tools) else {
        return back(
            "invalid_scope",
            "scope may name keap.read and keap.write only.",
        );
    };
    let pending = Pending {
        partner: partner.partner_id.clone(),
        client_hash: client_hash(client_id),
        client_name: client.name,
        redirect_uri: redirect_uri.to_owned(),
        state: state.map(str::to_owned),
        challenge,
        resource: resource.to_owned(),
        access,
        expires_at: now + oauth::REQUEST_TTL_SECS,
    };
    let sealed = oauth::seal_request(&cfg.keys, &pending, random::bytes());
    let sign_in = partner.mcp.sign_in_url.unwrap_or_default();
    let mut to = worker::Url::parse(&sign_in).map_err(ApiError::internal)?;
    to.query_pairs_mut()
        .append_pair("keaplink_request", &sealed);
    let mut resp = redirect(to.as_str(), 302)?;
    secure_page_headers(resp.headers_mut());
    Ok(resp)
}

/// The partner's sign-in came back: the session must be for this request; then the consent page.
async fn continue_flow(cfg: &Config, store: &Store, body: &[u8], now: i64) -> ApiResult<Response> {
    let p = form(body, &["request", "session"])?;
    let expired = || {
        ApiError::new(
            ErrorCode::InvalidState,
            "This sign-in took too long or did not come from keaplink; start again from your assistant.",
        )
    };
    let raw = required(&p, "request")?;
    let pending = oauth::open_request(&cfg.keys, raw, now).ok_or_else(expired)?;
    let session = required(&p, "session")?;
    let refused = |m: &str| ApiError::new(ErrorCode::InvalidSession, m.to_owned());
    if unverified_issuer(session).ok().as_ref() != Some(&pending.partner) {
        return Err(refused("The session is not the partner's."));
    }
    let partner = partner_record(store, &pending.partner)
        .await?
        .filter(|p| p.mcp.enabled)
        .ok_or_else(expired)?;
    let secret = partner.session_secret(&cfg.keys).map_err(|e| {
        ApiError::internal(format!(
            "the partner's session secret does not open ({e:?})"
        ))
    })?;
    let claims = verify(session, &pending.partner, secret.expose().as_bytes(), now)
        .map_err(|e| refused(e.message()))?;
    if claims.request.as_deref() != Some(raw) {
        return Err(refused(
            "The session was not minted for this request: its keaplink_request claim must be the request's.",
        ));
    }
    let links = user_links(store, &pending.partner, &claims.user).await?;
    let active: Vec<_> = links
        .iter()
        .filter(|(_, m)| m.status == ConnectionStatus::Active)
        .collect();
    let choices: Vec<LinkChoice<'_>> = active
        .iter()
        .map(|(_, m)| LinkChoice {
            connection_id: m.id.as_str(),
            business: m.app_name.as_deref().unwrap_or(m.app.as_str()),
            email: &m.email,
        })
        .collect();
    let ticket = oauth::seal_consent(
        &cfg.keys,
        &Consent {
            pending: pending.clone(),
            user: claims.user.clone(),
        },
        random::bytes(),
    );
    let (status, html) = page::consent(&page::Consent {
        client_name: &pending.client_name,
        partner_name: &partner.name,
        links: &choices,
        access: pending.access,
        ticket: &ticket,
    });
    Ok(page(status, html))
}

/// Allow or Deny.
async fn consent(
    env: &Env,
    cfg: &Config,
    store: &Store,
    body: &[u8],
    now: i64,
) -> ApiResult<Response> {
    let p = form(body, &["consent", "decision", "connection", "access"])?;
    let mut c = oauth::open_consent(&cfg.keys, required(&p, "consent")?, now).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidState,
            "This page has expired; start again from your assistant.",
        )
    })?;
    let iss = issuer(cfg);
    let back = |q: &[(&str, &str)], state: &Option<String>, uri: &str| {
        let mut q = q.to_vec();
        if let Some(s) = state {
            q.push(("state", s.as_str()));
        }
        redirect(&oauth::redirect_to(uri, &q, &iss), 303)
    };
    if param(&p, "decision") != Some("allow") {
        return back(
            &[
                ("error", "access_denied"),
                ("error_description", "The user declined."),
            ],
            &c.pending.state,
            &c.pending.redirect_uri,
        );
    }
    let partner = partner_record(store, &c.pending.partner)
        .await?
        .filter(|p| p.mcp.enabled)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                "The partner no longer offers its MCP server.",
            )
        })?;
    let chosen = required(&p, "connection")?;
    let links = user_links(store, &c.pending.partner, &c.user).await?;
    let key = links
        .into_iter()
        .find(|(_, m)| m.id.as_str() == chosen)
        .map(|(k, _)| k)
        .ok_or_else(|| {
            ApiError::new(ErrorCode::NoConnection, "Choose one of your Keap accounts.")
        })?;
    c.pending.access = match param(&p, "access") {
        Some("read_write")
            if c.pending.access == McpTools::ReadWrite
                && partner.mcp.tools == McpTools::ReadWrite =>
        {
            McpTools::ReadWrite
        }
        _ => McpTools::Read,
    };
    let (state, uri) = (c.pending.state.clone(), c.pending.redirect_uri.clone());
    let code = guard::mcp_grant(env, &key, c).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::NoConnection,
            "That Keap account is no longer linked or working; reconnect it first.",
        )
    })?;
    back(&[("code", &code)], &state, &uri)
}

/// 401 with the resource metadata's URL, as MCP clients discover the authorization server.
fn unauthorized(
    cfg: &Config,
    partner: &str,
    e: ApiError,
) -> (ApiResult<Response>, Option<ApiError>) {
    let mut resp = oauth_error(&e);
    let meta = format!(
        "{}/.well-known/oauth-protected-resource/mcp/{partner}",
        issuer(cfg)
    );
    let _ = resp.headers_mut().set(
        "www-authenticate",
        &format!("Bearer resource_metadata=\"{meta}\", error=\"invalid_token\""),
    );
    (Ok(resp), Some(e))
}

async fn server(
    env: &Env,
    cfg: &Config,
    store: &Store,
    raw: &str,
    presented: Option<String>,
    body: &[u8],
) -> (ApiResult<Response>, Option<ApiError>) {
    let (partner_id, partner) = match enabled_partner(store, raw).await {
        Ok(p) => p,
        Err(e) => return (Err(e), None),
    };
    let invalid = |m: &str| ApiError::new(ErrorCode::InvalidToken, m.to_owned());
    let Some(token) = presented
        .as_deref()
        .and_then(|t| Token::parse(Kind::Access, t))
    else {
        return unauthorized(
            cfg,
            raw,
            invalid("Sign in: this MCP server takes an OAuth access token."),
        );
    };
    let bound = match guard::mcp_check(env, &token, &resource(cfg, partner_id.as_str())).await {
        Ok(Some((b, key))) if b.partner == partner_id && b.current(partner.mcp_since) => (b, key),
        Ok(_) => {
            return unauthorized(
                cfg,
                raw,
                invalid(
                    "The access token is not valid here (expired, revoked, or for another server).",
                ),
            )
        }
        Err(e) => return (Err(e), None),
    };
    let answer = match rpc::read(body) {
        Err(a) => a,
        Ok(Message::NoAnswer) => return (empty(202), None),
        Ok(Message::Request { id, method, params }) => {
            let (b, key) = &bound;
            match method.as_str() {
                "initialize" => {
                    let business = link(store, key)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|r| r.keap_app_name)
                        .unwrap_or_else(|| key.app().as_str().to_owned());
                    rpc::result(id, rpc::initialized(&params, &partner.name, &business))
                }
                "ping" => rpc::result(id, json!({})),
                "tools/list" => {
                    return (
                        json_text(rpc::result_text(&id, &tools::list(b.access)), 200),
                        None,
                    )
                }
                "tools/call" => {
                    call_tool(
                        env, cfg, store, &partner, &token, b.access, key, id, &params,
                    )
                    .await
                }
                _ => rpc::error(
                    id,
                    METHOD_NOT_FOUND,
                    &format!("Method not found: {method}."),
                ),
            }
        }
    };
    (json(&answer, 200), None)
}

#[allow(clippy::too_many_arguments)]
async fn call_tool(
    env: &Env,
    cfg: &Config,
    store: &Store,
    partner: &PartnerRecord,
    token: &Token,
    access: McpTools,
    key: &ConnectionKey,
    id: Value,
    params: &Value,
) -> Value {
    let name = params.get("name").and_then(Value::as_str).unwrap_or("");
    let Some(tool) = Tool::parse(name).filter(|t| t.granted(access)) else {
        return rpc::error(
            id,
            INVALID_PARAMS,
            &format!("Unknown tool {name:?}: tools/list names the tools this grant may call."),
        );
    };
    let args = params.get("arguments").cloned().unwrap_or(Value::Null);
    let (result, outcome) = match tools::plan(tool, &args) {
        Err(m) => (tools::result(m, true), "bad_arguments"),
        Ok(call) => match link(store, key).await {
            Ok(Some(record)) => {
                let sent = proxy::tool_call(
                    env,
                    cfg,
                    key,
                    record,
                    call.method,
                    &call.path_and_query,
                    call.body,
                )
                .await;
                match sent {
                    Ok((status, body)) => tools::answer(tool, &args, status, &body),
                    Err(e) => match e.code {
                        ErrorCode::NeedsReauth => {
                            (tools::needs_reauth(&partner.name), "needs_reauth")
                        }
                        _ => (tools::result(e.message.clone(), true), e.code.as_str()),
                    },
                }
            }
            Ok(None) => (
                tools::result(
                    "The Keap link is gone; the user must connect Keap again.".into(),
                    true,
                ),
                "no_connection",
            ),
            Err(e) => (tools::result(e.message.clone(), true), e.code.as_str()),
        },
    };
    if let Err(e) = guard::mcp_note(env, token, tool.name(), outcome).await {
        log::failure(Level::Warn, "mcp_note_failed", &e);
    }
    rpc::result(id, result)
}
