//! `/v1/keap/<path>`: a partner's call to Keap's REST API on behalf of one of its users, sent
//! with the connection's access token, healed once after Keap's 401, and held while Keap's
//! quota says so. The rules are `keaplink_core::{proxy, quota}`; this module reads, asks, sends
//! and applies.

use crate::auth;
use crate::clock::{now_ms, unix_now};
use crate::config::Config;
use crate::guard;
use crate::http::read_bytes_within;
use crate::keap_client;
use crate::limits;
use crate::links::{find_connection, usable};
use crate::log::{self, Level};
use crate::quota;
use crate::stats;
use crate::store::Store;
use keaplink_core::connection::{ConnectionKey, ConnectionRecord};
use keaplink_core::limits::Endpoint;
use keaplink_core::proxy::{self, AfterHeal, ProxyOutcome, ProxyRequest, MAX_BODY_BYTES};
use keaplink_core::quota::{Hold, HoldReason};
use keaplink_core::refresh::{fingerprint, Purpose};
use keaplink_core::{ApiError, ApiResult, ErrorCode, Secret};
use std::cell::RefCell;
use std::collections::HashMap;
use worker::{Env, Headers, Request, Response, ResponseBody};

/// What a call came to before it ended: the connection it named, and how to count a refusal
/// when its error code alone does not say (Keap's own 429).
#[derive(Default)]
pub struct Known {
    connection: Option<String>,
    pub outcome: Option<ProxyOutcome>,
}

/// Answers one proxied call. (`_path` is the router's reading of the path; the proxy reads the
/// request's URL itself, by its own stricter rules.)
pub async fn handle(
    req: &mut Request,
    env: &Env,
    cfg: &Config,
    store: &Store,
    _path: &str,
) -> ApiResult<Response> {
    let mut known = Known::default();
    let result = call(req, env, cfg, store, &mut known).await;
    let answer = match result {
        Ok((resp, outcome)) => {
            quota::count(outcome);
            Ok(resp)
        }
        Err(e) => {
            quota::count(
                known
                    .outcome
                    .unwrap_or_else(|| ProxyOutcome::of_error(e.code)),
            );
            // The answer's `keaplink-error` (and `allow` on a 405) are the router's, as for
            // every refusal of this path; the request's log line keeps the code and cause.
            Err(e)
        }
    };
    // Answers made without calling Keap still report now and then, so their counts arrive.
    exchange(env, quota::report_due(cfg.quota_reserve, now_ms())).await;
    answer
}

/// The methods `/v1/keap/` answers, as the router's `Allow` lists them.
const ALLOW: &str = "GET, HEAD, POST, PUT, PATCH, DELETE";

async fn call(
    req: &mut Request,
    env: &Env,
    cfg: &Config,
    store: &Store,
    known: &mut Known,
) -> ApiResult<(Response, ProxyOutcome)> {
    // The runtime reads a method it does not know (QUERY, say) as GET: the proxy goes by the
    // request's own, so nothing is ever sent to Keap under another method than the caller's.
    let method = proxy::method(&req.inner().method()).ok_or_else(|| {
        ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("This endpoint answers {ALLOW} only."),
        )
    })?;
    // The address is counted while the key is checked; the partner once it is known.
    let ip = limits::client_ip(req);
    let (by_ip, key) = futures_util::join!(
        limits::enforce(env, Endpoint::Proxy.per_ip(ip.as_deref())),
        auth::partner_key_id(req, store, cfg)
    );
    by_ip?;
    let partner = key?;
    let headers: Vec<(String, String)> = req.headers().entries().collect();
    let caller = proxy::caller(&headers)?;
    let target = proxy::target(&req.inner().url(), &cfg.proxy_paths)?;
    proxy::check_declared(
        req.headers()
            .get("content-length")
            .ok()
            .flatten()
            .as_deref(),
    )?;
    let body = proxy::check_body(method, read_body(req).await?)?;
    let reserve = cfg.quota_reserve;
    // While Keap's quota is known to be spent, nothing else is read either.
    let named_app = caller.app.as_ref().map(|a| a.as_str());
    if let Some(h) = quota::hold(named_app, reserve, now_ms()) {
        return Err(h.error(now_ms()));
    }
    let (admitted, found) = futures_util::join!(
        limits::enforce(env, Endpoint::Proxy.per_partner(&partner)),
        find_connection(store, &partner, &caller.user, caller.app.as_ref())
    );
    admitted?;
    let (key, record) = found?;
    let url = proxy::upstream_url(&cfg.keap_api_url, &target);
    let forwarded = proxy::forwarded(&headers);
    let (status, answer_headers, answer, outcome) =
        through_link(env, cfg, &key, record, method, url, &forwarded, body, known).await?;
    let resp = relayed(status, &answer_headers, answer, known)?;
    Ok((resp, outcome))
}

/// One MCP tool's call to Keap (`path_and_query` from `/`): through the link exactly as the
/// proxy sends a call ([`through_link`]), and counted with the proxied calls. Answers Keap's
/// status and body.
pub async fn tool_call(
    env: &Env,
    cfg: &Config,
    key: &ConnectionKey,
    record: ConnectionRecord,
    method: &'static str,
    path_and_query: &str,
    body: Option<Vec<u8>>,
) -> ApiResult<(u16, Vec<u8>)> {
    let mut known = Known::default();
    let base = cfg
        .keap_api_url
        .as_str()
        .split(['?', '#'])
        .next()
        .unwrap_or("");
    let url = format!("{}{path_and_query}", base.trim_end_matches('/'));
    let forwarded = [
        ("accept", "application/json".to_owned()),
        ("content-type", "application/json".to_owned()),
    ];
    let sent = through_link(
        env, cfg, key, record, method, url, &forwarded, body, &mut known,
    )
    .await;
    match sent {
        Ok((status, _, mut answer, outcome)) => {
            quota::count(outcome);
            let bytes = answer.bytes().await.map_err(ApiError::internal)?;
            Ok((status, bytes))
        }
        Err(e) => {
            quota::count(
                known
                    .outcome
                    .unwrap_or_else(|| ProxyOutcome::of_error(e.code)),
            );
            Err(e)
        }
    }
}

/// A call to Keap with the link's access token, exactly as the proxy sends one: the healed copy
/// of the link if this isolate has one, a refresh first if its token needs one, quota holds, one
/// heal and retry after Keap's 401, Keap's 429 answered as ours. Answers Keap's status, headers
/// and answer, and whether a heal was needed. Shared by the proxy and the MCP tools.
#[allow(clippy::too_many_arguments)]
pub async fn through_link(
    env: &Env,
    cfg: &Config,
    key: &ConnectionKey,
    record: ConnectionRecord,
    method: &'static str,
    url: String,
    forwarded: &[(&'static str, String)],
    body: Option<Vec<u8>>,
    known: &mut Known,
) -> ApiResult<(u16, Vec<(String, String)>, Response, ProxyOutcome)> {
    known.connection = Some(record.id.as_str().to_owned());
    let reserve = cfg.quota_reserve;
    let record = healed_copy(key, record);
    let record = usable(env, cfg, key, record, Purpose::Token, unix_now()).await?;
    let app = record.keap_app.as_str().to_owned();
    if let Some(h) = quota::hold(Some(&app), reserve, now_ms()) {
        return Err(h.error(now_ms()));
    }
    let mut token = open_access(cfg, key, &record)?;
    let mut outcome = ProxyOutcome::Relayed;
    // The regular exchange with the shared quota picture rides along with the call to Keap.
    let mut report = quota::report_due(reserve, now_ms());
    // At most two sends: the call, and once more after a heal.
    let (status, answer_headers, mut answer) = loop {
        let req = proxy::outbound(method, url.clone(), forwarded, &token, body.clone());
        let (sent, ()) = futures_util::join!(relay(cfg, &req, &app), exchange(env, report.take()));
        let (status, answer_headers, mut answer) = sent?;
        if status != 401 || outcome == ProxyOutcome::Healed {
            break (status, answer_headers, answer);
        }
        // Keap refused the token (revoked, or a KV copy older than a refresh): one heal through
        // the connection's guard, which refreshes only if no one did since, then one retry.
        let refused_body = answer.bytes().await.unwrap_or_default();
        let failed = fingerprint(&token);
        let latest = guard::refresh(
            env,
            key,
            Purpose::Heal {
                failed: failed.clone(),
            },
        )
        .await?
        .ok_or_else(crate::links::no_connection)?
        .record;
        let current = open_access(cfg, key, &latest)?;
        match proxy::after_heal(&latest, &failed, &fingerprint(&current)) {
            AfterHeal::NeedsReauth => {
                return Err(ApiError::new(
                    ErrorCode::NeedsReauth,
                    "Keap no longer accepts this link; the user must reconnect.",
                ))
            }
            AfterHeal::Unchanged(Some(e)) => return Err(e),
            AfterHeal::Unchanged(None) => {
                answer = Response::from_bytes(refused_body).map_err(ApiError::internal)?;
                break (status, answer_headers, answer);
            }
            AfterHeal::Retry => {
                remember_healed(key, &latest);
                if let Some(h) = quota::hold(Some(&app), reserve, now_ms()) {
                    return Err(h.error(now_ms()));
                }
                token = current;
                outcome = ProxyOutcome::Healed;
            }
        }
    };
    if status == 429 {
        // Keap's own "slow down" is answered as ours: 429 `keap_quota` with the wait its
        // headers imply, so a caller meets one shape of 429 whoever refused.
        let _ = answer.bytes().await;
        known.outcome = Some(ProxyOutcome::KeapThrottled);
        let now = now_ms();
        let hold = quota::hold(Some(&app), reserve, now).unwrap_or(Hold {
            reason: HoldReason::Spike,
            until_ms: now + keaplink_core::quota::SPIKE_HOLD_MS,
        });
        exchange(env, quota::report_due(reserve, now)).await;
        return Err(hold.error(now));
    }
    // Spent or nearly spent windows are news for every isolate: told now, not in a few seconds.
    exchange(env, quota::report_due(reserve, now_ms())).await;
    Ok((status, answer_headers, answer, outcome))
}

/// Sends to Keap and learns from the answer's quota headers: (status, headers, the answer).
async fn relay(
    cfg: &Config,
    req: &ProxyRequest,
    app: &str,
) -> ApiResult<(u16, Vec<(String, String)>, Response)> {
    let answer = keap_client::relay(req, cfg.keap_timeout_ms)
        .await
        .map_err(|f| {
            let e = f.api_error();
            ApiError::new(
                e.code,
                match e.code {
                    ErrorCode::KeapTimeout => "Keap did not answer in time; try again.",
                    _ => "Keap could not be reached; try again.",
                },
            )
        })?;
    let status = answer.status_code();
    let headers: Vec<(String, String)> = answer.headers().entries().collect();
    quota::learn(&headers, status, app, now_ms());
    Ok((status, headers, answer))
}

/// Keap's answer as the caller gets it: its status and body (streamed on), its `content-type`
/// and `x-keap-*` headers, and the connection it was made for.
fn relayed(
    status: u16,
    keap_headers: &[(String, String)],
    answer: Response,
    known: &Known,
) -> ApiResult<Response> {
    let h = Headers::new();
    for (name, value) in keap_headers.iter().filter(|(n, _)| proxy::relayed(n)) {
        h.append(name, value).map_err(ApiError::internal)?;
    }
    if let Some(id) = &known.connection {
        h.set("keaplink-connection-id", id)
            .map_err(ApiError::internal)?;
    }
    let (_, body) = answer.into_parts();
    // These statuses carry no body; the runtime refuses one even if empty.
    let body = if matches!(status, 204 | 205 | 304) {
        ResponseBody::Empty
    } else {
        body
    };
    Ok(Response::builder()
        .with_status(status)
        .with_headers(h)
        .body(body))
}

/// The deferred report `quota::deferred_report` asked for, `wait_ms` from now (run after the
/// answer, with the request's `waitUntil`).
pub async fn deferred_report(env: Env, wait_ms: u64) {
    worker::Delay::from(std::time::Duration::from_millis(wait_ms)).await;
    exchange(&env, quota::take_deferred(now_ms())).await;
}

/// Trades this isolate's quota picture and counts for the shared one. A failure is logged and
/// costs nothing but freshness (the counts wait for the next exchange).
async fn exchange(env: &Env, report: Option<quota::Report>) {
    let Some(report) = report else { return };
    let answer = stats::proxy_sync(env, &report.seen, &report.counts).await;
    if let Err(e) = &answer {
        log::failure(Level::Warn, "quota_sync_failed", e);
    }
    quota::absorb(report, answer.map_err(|_| ()), now_ms());
}

fn open_access(cfg: &Config, key: &ConnectionKey, record: &ConnectionRecord) -> ApiResult<Secret> {
    record
        .open_tokens(&cfg.keys, key)
        .map(|t| t.access_token)
        .map_err(|e| ApiError::internal(format!("the connection's tokens do not open ({e:?})")))
}

/// The request body, at most `MAX_BODY_BYTES` (read in chunks, so a larger one is refused
/// without being held whole).
async fn read_body(req: &mut Request) -> ApiResult<Vec<u8>> {
    read_bytes_within(req, MAX_BODY_BYTES, proxy::too_large).await
}

/// Records an earlier heal in this isolate answered, by connection key: KV may go on serving
/// the copy whose token Keap refused for up to a minute, and each such read would cost a 401
/// and a guard call.
const HEALED_MAX: usize = 512;

thread_local! {
    static HEALED: RefCell<HashMap<String, ConnectionRecord>> = RefCell::new(HashMap::new());
}

fn healed_copy(key: &ConnectionKey, kv: ConnectionRecord) -> ConnectionRecord {
    HEALED.with(|h| {
        let mut h = h.borrow_mut();
        match h.get(key.as_str()) {
            Some(healed) if proxy::prefer_healed(&kv, healed) => healed.clone(),
            Some(_) => {
                // KV caught up (or the link changed): the KV copy is the truth again.
                h.remove(key.as_str());
                kv
            }
            None => kv,
        }
    })
}

fn remember_healed(key: &ConnectionKey, record: &ConnectionRecord) {
    HEALED.with(|h| {
        let mut h = h.borrow_mut();
        if h.len() >= HEALED_MAX {
            h.clear();
        }
        h.insert(key.as_str().to_owned(), record.clone());
    });
}
