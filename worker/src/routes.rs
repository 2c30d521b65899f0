//! The route table: which paths exist, which methods each answers, and the rules every route
//! shares. Paths are exact (no trailing slash, no empty segment). `HEAD` is answered wherever
//! `GET` is, as `GET` without a body. A wrong method gets 405 with `Allow`.

use crate::api::admin::{self, AdminRoute};
use crate::api::{console, hooks, imports, partner, widget};
use crate::auth;
use crate::callback;
use crate::clock::unix_now;
use crate::config::{self, setup, Config};
use crate::hook_inbox;
use crate::http::{allow_origin, error_response, json, origin, preflight};
use crate::limits;
use crate::mcp::{self, McpRoute};
use crate::proxy;
use crate::repair;
use crate::store::Store;
use keaplink_api::Health;
use keaplink_core::limits::Endpoint;
use keaplink_core::query;
use keaplink_core::{ApiError, ApiResult, ErrorCode};
use worker::{Env, Method, Request, Response};

/// Every endpoint. Path parameters are borrowed raw; handlers parse them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    Health,
    Callback,
    Admin(AdminRoute<'a>),
    MeConnections,
    MeConnect,
    MeConnection(&'a str),
    /// `/v1/me/connections/{id}/assistants`.
    MeAssistants(&'a str),
    /// `/v1/me/connections/{id}/assistants/{assistant_id}`.
    MeAssistant(&'a str, &'a str),
    Token,
    Connections,
    Connection(&'a str),
    /// `/v1/keap/<path>`: the raw rest of the path (from its `/`), checked by the proxy itself.
    Keap(&'a str),
    /// `/v1/connections/{id}/repair-link`.
    RepairLink(&'a str),
    /// `/v1/connections/{id}/refresh`.
    RefreshNow(&'a str),
    /// `/link/{token}`: a repair link's page.
    Link(&'a str),
    /// `/link/again/{state}`: Try again on a repair link's refused attempt.
    LinkAgain(&'a str),
    /// `/v1/partner`: the partner's own settings.
    Partner,
    /// `/v1/partner/rotate-secrets`.
    RotateSecrets,
    /// `/v1/stats`: the partner's overview.
    PartnerStats,
    /// `/v1/webhooks/deliveries`.
    Deliveries,
    /// `/v1/webhooks/deliveries/{id}/redeliver`.
    Redeliver(&'a str),
    /// `/v1/imports`.
    Imports,
    /// `/v1/imports/{id}`.
    Import(&'a str),
    /// `/v1/connections/export`.
    Export,
    /// `/v1/connections/{id}/hooks`.
    Hooks(&'a str),
    /// `/hooks/keap/{token}`: where Keap posts a link's events.
    HookInbox(&'a str),
    /// A partner's MCP server and the OAuth endpoints of its clients.
    Mcp(McpRoute<'a>),
}

use Method::{Delete, Get, Options, Patch, Post, Put};

impl<'a> Route<'a> {
    /// Whether the route's handler reads no query parameter, so that any sent is refused by
    /// name (the listings read theirs; the callback, the repair pages and the proxy take
    /// what Keap, a mailer's link rewriting or Keap's API bring; a health check may add any).
    fn takes_no_query(&self) -> bool {
        match self {
            Route::Health
            | Route::Callback
            | Route::Connections
            | Route::Keap(_)
            | Route::Link(_)
            | Route::Import(_)
            | Route::Deliveries => false,
            Route::Admin(a) => a.takes_no_query(),
            Route::Mcp(m) => !m.takes_query(),
            _ => true,
        }
    }

    /// The route of `path`, if there is one. A trailing slash or an empty segment is no route.
    pub fn resolve(path: &'a str) -> Option<Route<'a>> {
        // The proxy's paths are Keap's: the proxy checks them by its own stricter rules.
        if let Some(keap_path) = path.strip_prefix("/v1/keap") {
            if keap_path.starts_with('/') {
                return Some(Route::Keap(keap_path));
            }
        }
        let rest = path.strip_prefix('/')?;
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return None;
        }
        Some(match segments.as_slice() {
            ["healthz"] => Route::Health,
            ["oauth", "callback"] => Route::Callback,
            ["v1", "admin", rest @ ..] => Route::Admin(AdminRoute::resolve(rest)?),
            ["v1", "me", "connections"] => Route::MeConnections,
            ["v1", "me", "connect"] => Route::MeConnect,
            ["v1", "me", "connections", id] => Route::MeConnection(id),
            ["v1", "me", "connections", id, "assistants"] => Route::MeAssistants(id),
            ["v1", "me", "connections", id, "assistants", a] => Route::MeAssistant(id, a),
            ["v1", "token"] => Route::Token,
            ["v1", "connections"] => Route::Connections,
            ["v1", "connections", "export"] => Route::Export,
            ["v1", "connections", id] => Route::Connection(id),
            ["v1", "imports"] => Route::Imports,
            ["v1", "imports", id] => Route::Import(id),
            ["v1", "connections", id, "repair-link"] => Route::RepairLink(id),
            ["v1", "connections", id, "refresh"] => Route::RefreshNow(id),
            ["v1", "connections", id, "hooks"] => Route::Hooks(id),
            ["hooks", "keap", token] => Route::HookInbox(token),
            ["link", token] => Route::Link(token),
            ["link", "again", state] => Route::LinkAgain(state),
            ["v1", "partner"] => Route::Partner,
            ["v1", "partner", "rotate-secrets"] => Route::RotateSecrets,
            ["v1", "stats"] => Route::PartnerStats,
            ["v1", "webhooks", "deliveries"] => Route::Deliveries,
            ["v1", "webhooks", "deliveries", id, "redeliver"] => Route::Redeliver(id),
            other => Route::Mcp(McpRoute::resolve(other)?),
        })
    }

    /// The methods this route answers (`HEAD` goes with `GET`; `OPTIONS` is the widget's
    /// preflight).
    pub fn methods(&self) -> &'static [Method] {
        match self {
            Route::Health | Route::Connections | Route::Callback => &[Get],
            Route::Token => &[Post],
            Route::Admin(a) => a.methods(),
            Route::MeConnections => &[Get, Options],
            Route::MeConnect => &[Post, Options],
            Route::MeConnection(_) | Route::MeAssistant(..) => &[Delete, Options],
            Route::MeAssistants(_) => &[Get, Options],
            Route::Connection(_) => &[Get, Delete],
            Route::Keap(_) => &[Get, Post, Put, Patch, Delete],
            Route::RepairLink(_) | Route::RefreshNow(_) => &[Post],
            Route::Link(_) => &[Get, Post],
            Route::LinkAgain(_) => &[Post],
            Route::Partner => &[Get, Patch],
            Route::RotateSecrets | Route::Redeliver(_) => &[Post],
            Route::Imports | Route::Export => &[Post],
            Route::Import(_) => &[Get],
            Route::Hooks(_) => &[Get, Put, Delete],
            Route::HookInbox(_) => &[Post],
            Route::PartnerStats | Route::Deliveries => &[Get],
            Route::Mcp(m) => m.methods(),
        }
    }

    fn answers(&self, method: &Method) -> bool {
        self.methods().contains(method) || (*method == Method::Head && self.answers(&Get))
    }

    /// The `Allow` header's value.
    pub fn allow(&self) -> String {
        let mut names: Vec<&str> = Vec::new();
        for m in self.methods() {
            names.push(m.as_ref());
            if *m == Get {
                names.push("HEAD");
            }
        }
        names.join(", ")
    }
}

/// The path as the request's log line may carry it: a repair link's token and a hook URL's are
/// secrets (each is the credential), so they are left out.
pub fn loggable(path: &str) -> std::borrow::Cow<'_, str> {
    if path
        .strip_prefix("/hooks/keap/")
        .is_some_and(|t| !t.is_empty())
    {
        return "/hooks/keap/[token]".into();
    }
    match path.strip_prefix("/link/") {
        Some(rest) if !rest.is_empty() => "/link/[token]".into(),
        _ => path.into(),
    }
}

fn not_found(path: &str) -> ApiError {
    let trimmed = path.trim_end_matches('/');
    let message = if trimmed.len() < path.len() && Route::resolve(trimmed).is_some() {
        format!("No such endpoint: paths take no trailing slash (try {trimmed}).")
    } else {
        "No such endpoint; every endpoint is in the API reference at GET /v1/openapi.json."
            .to_owned()
    };
    ApiError::new(ErrorCode::NotFound, message)
}

/// What a request was answered, and the error behind it (for the request's log line: its code
/// and cause).
pub struct Answer {
    pub resp: Response,
    pub error: Option<ApiError>,
}

impl From<ApiResult<Response>> for Answer {
    fn from(r: ApiResult<Response>) -> Self {
        match r {
            Ok(resp) => Answer { resp, error: None },
            Err(e) => Answer {
                resp: error_response(&e),
                error: Some(e),
            },
        }
    }
}

/// Answers a request: the route, the method check, then the handler. Every refusal of a
/// `/v1/keap` path also carries `keaplink-error: <code>`, so a caller of the proxy can tell
/// keaplink's answers from Keap's; every 405 carries `Allow`.
pub async fn answer(req: &mut Request, env: &Env, request_id: &str) -> Answer {
    // A deploy that kept the loopback PUBLIC_URL answers nothing but that.
    if let Err(e) = config::may_serve(env, req) {
        return Err(e).into();
    }
    let path = req.path();
    let route = Route::resolve(&path);
    let mut out = match &route {
        Some(route) => answer_route(req, env, route, request_id).await,
        None => Err(not_found(&path)).into(),
    };
    if let Some(e) = &out.error {
        let headers = out.resp.headers_mut();
        if e.code == ErrorCode::MethodNotAllowed {
            if let Some(route) = &route {
                let _ = headers.set("allow", &route.allow());
            }
        }
        if path == "/v1/keap" || matches!(route, Some(Route::Keap(_))) {
            let _ = headers.set("keaplink-error", e.code.as_str());
        }
    }
    out
}

async fn answer_route(req: &mut Request, env: &Env, route: &Route<'_>, request_id: &str) -> Answer {
    // workers-rs reads a method it does not know (QUERY, say) as GET: ask the request itself.
    let raw = req.inner().method();
    let known = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    let method = req.method();
    if !known.contains(&raw.to_ascii_uppercase().as_str()) || !route.answers(&method) {
        let e = ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("This endpoint answers {} only.", route.allow()),
        );
        return Err(e).into();
    }
    if method == Method::Head {
        // The GET answer's status and headers, without its body.
        let got = dispatch(req, env, route, &Get, request_id).await;
        let mut head = match Response::empty() {
            Ok(r) => r.with_status(got.resp.status_code()),
            Err(e) => return Err(ApiError::internal(e)).into(),
        };
        for (name, value) in got.resp.headers().entries() {
            let _ = head.headers_mut().set(&name, &value);
        }
        return Answer {
            resp: head,
            error: got.error,
        };
    }
    dispatch(req, env, route, &method, request_id).await
}

async fn dispatch(
    req: &mut Request,
    env: &Env,
    route: &Route<'_>,
    method: &Method,
    request_id: &str,
) -> Answer {
    match route {
        Route::MeConnections
        | Route::MeConnect
        | Route::MeConnection(_)
        | Route::MeAssistants(_)
        | Route::MeAssistant(..) => me(req, env, route, method).await,
        Route::Mcp(m) => {
            let setup = no_query(req, route).and_then(|()| setup(env));
            let (cfg, store) = match setup {
                Ok(s) => s,
                Err(e) => return Err(e).into(),
            };
            match mcp::answer(req, env, &cfg, &store, m).await {
                (Ok(resp), error) => Answer { resp, error },
                (Err(e), _) => Err(e).into(),
            }
        }
        _ => handle(req, env, route, method, request_id).await.into(),
    }
}

/// Refuses any query parameter on a route that reads none (named, as `query::parse` does).
fn no_query(req: &Request, route: &Route<'_>) -> ApiResult<()> {
    if !route.takes_no_query() {
        return Ok(());
    }
    // The raw URL, not a parsed one: the token path pays no URL parse for this.
    let url = req.inner().url();
    let before_fragment = url.split('#').next().unwrap_or("");
    match before_fragment.split_once('?') {
        Some((_, q)) => query::parse(q, &[]).map(|_| ()),
        None => Ok(()),
    }
}

async fn handle(
    req: &mut Request,
    env: &Env,
    route: &Route<'_>,
    method: &Method,
    request_id: &str,
) -> ApiResult<Response> {
    no_query(req, route)?;
    if *route == Route::Health {
        return json(&Health { ok: true }, 200);
    }
    let (cfg, store) = setup(env)?;
    match route {
        Route::Callback => {
            let check = Endpoint::Callback.per_ip(limits::client_ip(req).as_deref());
            if let Err(e) = limits::enforce(env, check).await {
                return Ok(callback::refused(&e));
            }
            Ok(callback::callback(req, env, &store, &cfg, unix_now()).await)
        }
        Route::Admin(a) => admin::handle(req, env, &cfg, &store, a, method).await,
        Route::Token => {
            let ip = limits::client_ip(req);
            // The address is counted while the key is checked; the partner once it is known.
            let (by_ip, key) = futures_util::join!(
                limits::enforce(env, Endpoint::Token.per_ip(ip.as_deref())),
                auth::partner_key_id(req, &store, &cfg)
            );
            by_ip?;
            let partner = key?;
            let admit = limits::enforce(env, Endpoint::Token.per_partner(&partner));
            partner::token(req, env, &store, &cfg, &partner, unix_now(), admit).await
        }
        Route::Keap(path) => proxy::handle(req, env, &cfg, &store, path).await,
        Route::Link(token) => {
            repair::handle(req, env, &cfg, &store, token, method, unix_now()).await
        }
        Route::LinkAgain(state) => repair::again(req, env, &cfg, &store, state, unix_now()).await,
        Route::HookInbox(token) => hook_inbox::receive(req, env, &store, token).await,
        _ => partner_route(req, env, &cfg, &store, route, method, request_id).await,
    }
}

/// The routes a partner calls with its API key. The key is checked here, once for all of them:
/// one await of `auth::partner` in the router's state machine rather than one per route.
async fn partner_route(
    req: &mut Request,
    env: &Env,
    cfg: &Config,
    store: &Store,
    route: &Route<'_>,
    method: &Method,
    request_id: &str,
) -> ApiResult<Response> {
    if matches!(
        route,
        Route::MeConnections
            | Route::MeConnect
            | Route::MeConnection(_)
            | Route::MeAssistants(_)
            | Route::MeAssistant(..)
    ) {
        return Err(ApiError::internal(
            "a /v1/me route outside the CORS wrapper",
        ));
    }
    let (partner, record) = auth::partner(req, store, cfg).await?;
    match (route, method) {
        (Route::Connections, _) => partner::partner_connections(req, store, cfg, &partner).await,
        (Route::RepairLink(id), _) => partner::repair_link(req, env, store, &partner, id).await,
        (Route::RefreshNow(id), _) => partner::refresh_now(env, store, &partner, id).await,
        (Route::Partner, Method::Patch) => console::change(req, env, store, &partner).await,
        (Route::Partner, _) => console::view(&record),
        (Route::RotateSecrets, _) => console::rotate(env, store, &partner).await,
        (Route::PartnerStats, _) => console::overview(env, &partner).await,
        (Route::Deliveries, _) => console::deliveries(req, env, &partner).await,
        (Route::Redeliver(id), _) => console::redeliver(env, &partner, id).await,
        (Route::Imports, _) => imports::start(req, env, cfg, &partner).await,
        (Route::Import(id), _) => imports::view(req, env, &partner, id).await,
        (Route::Hooks(id), m) => hooks::handle(req, env, store, &partner, id, m).await,
        (Route::Export, _) => imports::export(req, env, store, &partner, &record, request_id).await,
        (Route::Connection(id), Method::Delete) => {
            partner::partner_disconnect(env, store, &partner, id).await
        }
        (Route::Connection(id), _) => partner::connection_detail(env, store, &partner, id).await,
        _ => Err(ApiError::internal("a partner route without a handler")),
    }
}

/// The widget-facing endpoints: CORS, then the session, then the handler. Errors carry the CORS
/// grant too, so the widget can read them (a 401 makes it renew its session).
async fn me(req: &mut Request, env: &Env, route: &Route<'_>, method: &Method) -> Answer {
    if *method == Method::Options {
        return preflight_answer(req, env).await.into();
    }
    let (cfg, store) = match setup(env) {
        Ok(s) => s,
        Err(e) => return Err(e).into(),
    };
    let now = unix_now();
    let (session, cors) = auth::session(req, &store, &cfg, now).await;
    // Starting a Keap flow is counted per address whether or not the session checks out, then
    // per partner.
    let session = match route {
        Route::MeConnect => {
            let check = Endpoint::Connect.per_ip(limits::client_ip(req).as_deref());
            match limits::enforce(env, check).await {
                Ok(()) => match session {
                    Ok(s) => limits::enforce(env, Endpoint::Connect.per_partner(&s.partner_id))
                        .await
                        .map(|()| s),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        }
        _ => session,
    };
    let result = match session.and_then(|s| no_query(req, route).map(|()| s)) {
        Err(e) => Err(e),
        Ok(s) => match route {
            Route::MeConnections => widget::my_connections(&store, &s).await,
            Route::MeConnect => widget::connect(req, &store, &cfg, &s, now).await,
            Route::MeConnection(id) => widget::my_disconnect(env, &store, &cfg, &s, id).await,
            Route::MeAssistants(id) => widget::my_assistants(env, &store, &s, id).await,
            Route::MeAssistant(id, a) => widget::revoke_assistant(env, &store, &s, id, a).await,
            _ => Err(ApiError::internal("a /v1/me route without a handler")),
        },
    };
    let mut answer = Answer::from(result);
    // A session refused before its partner was known (an unknown `iss`, a malformed token)
    // still lets the page read why, if some partner allows the page's origin: the widget can
    // then say the session is not valid instead of "could not reach the service".
    let cors = match (cors, &answer.error, origin(req)) {
        (Some(o), _, _) => Some(o),
        (None, Some(e), Some(o))
            if e.status() == 401 && store.origin_known(&o).await.unwrap_or(false) =>
        {
            Some(o)
        }
        _ => None,
    };
    if let Some(o) = cors {
        allow_origin(&mut answer.resp, &o);
    }
    answer
}

async fn preflight_answer(req: &Request, env: &Env) -> ApiResult<Response> {
    let store = Store::open(env)?;
    match origin(req) {
        Some(o) if store.origin_known(&o).await? => preflight(&o),
        _ => Err(ApiError::new(
            ErrorCode::OriginNotAllowed,
            "This page's origin is not allowed by any partner.",
        )),
    }
}
