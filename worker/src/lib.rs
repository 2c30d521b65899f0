//! keaplink's Cloudflare Worker: thin adapters from HTTP requests and KV to `keaplink-core`.
//!
//! Routing is one table (`route`); every failure leaves through `http::error_response`, the one
//! place an `ApiError` becomes HTTP.

mod api;
mod auth;
mod callback;
mod config;
mod durable;
mod guard;
mod http;
mod keap_client;
mod limits;
mod ops;
mod pacer;
mod partner_guard;
mod random;
mod store;
mod sweep;

use config::Config;
use http::{allow_origin, error_response, json, origin, preflight, ApiResult};
use keaplink_api::Health;
use keaplink_core::ids::hex;
use keaplink_core::limits::Endpoint;
use keaplink_core::{ApiError, ErrorCode};
use store::{unix_now, Store};
use worker::{
    event, Context, Env, MessageBatch, Method, Request, Response, Result, ScheduleContext,
    ScheduledEvent,
};

#[event(queue)]
async fn queue(batch: MessageBatch<sweep::Job>, env: Env, _ctx: Context) -> Result<()> {
    let cfg = Config::from_env(&env).map_err(|e| worker::Error::RustError(e.to_string()))?;
    sweep::consume(batch, &env, &cfg).await
}

#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let outcome = match Config::from_env(&env) {
        Ok(cfg) => sweep::sweep(&env, &cfg, None).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(report) => {
            worker::console_log!("{}", serde_json::to_string(&report).unwrap_or_default())
        }
        Err(e) => worker::console_error!(
            "{{\"event\":\"sweep_failed\",\"code\":\"{}\"}}",
            e.code.as_str()
        ),
    }
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, ctx: Context) -> Result<Response> {
    let started = worker::Date::now().as_millis();
    // Cloudflare's ray id when there is one, so our line meets Cloudflare's own logs.
    let request_id = req
        .headers()
        .get("cf-ray")
        .ok()
        .flatten()
        .filter(|r| r.len() <= 64 && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .unwrap_or_else(|| hex(&random::bytes::<8>()));
    let (mut resp, code) = match route(&mut req, &env).await {
        Ok(resp) => (resp, None),
        Err(err) => (error_response(&err), Some(err.code.as_str())),
    };
    let _ = resp.headers_mut().set("x-request-id", &request_id);
    // One line per request: the path only (never the query, which may carry an OAuth code).
    let line = RequestLog {
        event: "request",
        id: &request_id,
        method: req.method().to_string(),
        path: req.path(),
        status: resp.status_code(),
        error: code,
        ms: worker::Date::now().as_millis() - started,
    };
    // LOG_REQUESTS=errors keeps only 4xx/5xx and slow answers (see BENCHMARKS.md for the cost).
    let all = config::log_all_requests(&env);
    if all || line.status >= 400 || line.ms >= 1000 {
        let json = serde_json::to_string(&line).unwrap_or_default();
        let error = line.status >= 500;
        // Written once the answer is on its way: the log never delays it.
        ctx.wait_until(async move {
            if error {
                worker::console_error!("{json}");
            } else {
                worker::console_log!("{json}");
            }
        });
    }
    Ok(resp)
}

#[derive(serde::Serialize)]
struct RequestLog<'a> {
    event: &'static str,
    id: &'a str,
    method: String,
    path: String,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    ms: u64,
}

fn method_not_allowed(allowed: &str) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("This endpoint answers {allowed} only."),
    )
}

async fn route(req: &mut Request, env: &Env) -> ApiResult<Response> {
    let path = req.path();
    let method = req.method();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["healthz"] => match method {
            Method::Get | Method::Head => json(&Health { ok: true }, 200),
            _ => Err(method_not_allowed("GET")),
        },
        ["oauth", "callback"] => match method {
            Method::Get => {
                let (cfg, store) = setup(env)?;
                let check = Endpoint::Callback.per_ip(limits::client_ip(req).as_deref());
                if let Err(e) = limits::enforce(env, check).await {
                    return Ok(callback::refused(&e));
                }
                Ok(callback::callback(req, env, &store, &cfg, unix_now()).await)
            }
            _ => Err(method_not_allowed("GET")),
        },
        ["v1", "admin", "stats"] => {
            let (cfg, store) = setup(env)?;
            auth::admin(req, &cfg)?;
            match method {
                Method::Get => api::stats(env, &store, unix_now()).await,
                _ => Err(method_not_allowed("GET")),
            }
        }
        ["v1", "admin", "reseal"] => {
            let (cfg, store) = setup(env)?;
            auth::admin(req, &cfg)?;
            match method {
                Method::Post => api::reseal(req, env, &store).await,
                _ => Err(method_not_allowed("POST")),
            }
        }
        ["v1", "admin", "partners", raw_id] => {
            let (cfg, store) = setup(env)?;
            auth::admin(req, &cfg)?;
            let id = api::parse_partner_id(raw_id)?;
            match method {
                Method::Put => api::put_partner(req, env, &store, &id, unix_now()).await,
                Method::Get => api::get_partner(&store, &id).await,
                Method::Delete => api::delete_partner(env, &store, &id, unix_now()).await,
                _ => Err(method_not_allowed("PUT, GET and DELETE")),
            }
        }
        ["v1", "me", rest @ ..] => me(req, env, method, rest).await,
        ["v1", "token"] => {
            if method != Method::Post {
                return Err(method_not_allowed("POST"));
            }
            let (cfg, store) = setup(env)?;
            let ip = limits::client_ip(req);
            // The address is counted while the key is checked; the partner once it is known.
            let (by_ip, key) = futures_util::join!(
                limits::enforce(env, Endpoint::Token.per_ip(ip.as_deref())),
                auth::partner_key(req, &store)
            );
            by_ip?;
            let (partner, _) = key?;
            let admit = limits::enforce(env, Endpoint::Token.per_partner(&partner));
            api::token(req, env, &store, &cfg, &partner, unix_now(), admit).await
        }
        ["v1", "connections", rest @ ..] if rest.len() <= 1 => {
            let (_, store) = setup(env)?;
            match (rest, method) {
                ([] | [""], Method::Get) => {
                    let (partner, _) = auth::partner_key(req, &store).await?;
                    api::partner_connections(req, &store, &partner).await
                }
                ([id], Method::Delete) if !id.is_empty() => {
                    let (partner, _) = auth::partner_key(req, &store).await?;
                    api::partner_disconnect(env, &store, &partner, id).await
                }
                ([] | [""], _) => Err(method_not_allowed("GET")),
                _ => Err(method_not_allowed("DELETE")),
            }
        }
        _ => Err(ApiError::new(
            ErrorCode::NotFound,
            "No such endpoint; see the API reference in the README.",
        )),
    }
}

/// The configuration (once per isolate) and the store: what every route and object starts from.
pub(crate) fn setup(env: &Env) -> ApiResult<(std::rc::Rc<Config>, Store)> {
    Ok((Config::cached(env)?, Store::open(env)?))
}

/// The widget-facing endpoints: CORS, then the session, then the handler.
async fn me(req: &mut Request, env: &Env, method: Method, rest: &[&str]) -> ApiResult<Response> {
    enum Op<'a> {
        List,
        Connect,
        Disconnect(&'a str),
    }
    let op = match (rest, &method) {
        (["connections"], Method::Get) => Op::List,
        (["connect"], Method::Post) => Op::Connect,
        (["connections", id], Method::Delete) => Op::Disconnect(id),
        (["connections"] | ["connect"] | ["connections", _], Method::Options) => {
            let store = Store::open(env)?;
            return match origin(req) {
                Some(o) if store.origin_known(&o).await? => preflight(&o),
                _ => Err(ApiError::new(
                    ErrorCode::OriginNotAllowed,
                    "This page's origin is not allowed by any partner.",
                )),
            };
        }
        (["connections"], _) => return Err(method_not_allowed("GET")),
        (["connect"], _) => return Err(method_not_allowed("POST")),
        (["connections", _], _) => return Err(method_not_allowed("DELETE")),
        _ => return Err(ApiError::new(ErrorCode::NotFound, "No such endpoint.")),
    };
    let (cfg, store) = setup(env)?;
    let now = unix_now();
    let (session, cors) = auth::session(req, &store, &cfg, now).await;
    // Starting a Keap flow is counted per address whether or not the session checks out, then
    // per partner.
    let session = match op {
        Op::Connect => {
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
    let result = match session {
        Err(e) => Err(e),
        Ok(s) => match op {
            Op::List => api::my_connections(&store, &s).await,
            Op::Connect => api::connect(req, &store, &cfg, &s, now).await,
            Op::Disconnect(id) => api::my_disconnect(env, &store, &cfg, &s, id).await,
        },
    };
    let mut resp = result.unwrap_or_else(|e| error_response(&e));
    if let Some(o) = cors {
        allow_origin(&mut resp, &o);
    }
    Ok(resp)
}
