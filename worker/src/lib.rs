//! keaplink's Cloudflare Worker: thin adapters from HTTP requests, cron, the queue, KV and
//! Durable Objects to `keaplink-core`.
//!
//! The house, top to bottom (a module only calls the ones below it; `scripts/check-layers`
//! checks it in CI):
//! - entry points (this file): `fetch` (with the request's log line) and `scheduled` (the front),
//!   `queue` (the objects);
//! - `routes` (the route table) → `callback`, `repair` (repair pages), `proxy` (`/v1/keap/`)
//!   and `api::{admin, widget, partner, console}` (handlers by audience), with `links` (a
//!   partner's connection by user), `auth` (credentials) and `limits` (rate limits);
//! - `consumer` (the queue's consumer) → `sweep`, `purge`;
//! - the Durable Objects and their clients: `guard` (one per connection), `partner_guard` (one
//!   per partner), `pacer`, `stats`; `webhooks` (emit, deliver);
//! - plumbing: `quota` (this isolate's picture of Keap's quota), `queue` (messages, producer),
//!   `store` (KV), `keap_client` (outbound fetch), `pages` (HTML), `durable` (object calls),
//!   `config`, `http`, `log`, `kv` (the KV binding, and calls into the runtime's other JS
//!   bindings), `js_json` (what the runtime stores for us, as JSON text), `clock`, `random`.
//!
//! keaplink deploys as two Workers built from this crate (`scripts/build worker`): `front` (the
//! `fetch` entry point and the cron's sweep; wrangler.toml) and `objects` (the Durable Object
//! classes and the queue's consumer; wrangler.objects.toml), which the front reaches through its
//! Durable Object bindings. Each ships only its own half (the front 278 KB gzip, the objects
//! 325 KB); both together (the default features, `scripts/build whole`) are built for the
//! benchmarks and linted, and leave nothing unused.

#![cfg_attr(
    not(all(feature = "front", feature = "objects")),
    allow(dead_code, unused_imports)
)]

mod api;
mod auth;
mod callback;
mod clock;
mod config;
mod consumer;
mod durable;
mod guard;
mod hook_events;
mod hook_inbox;
mod http;
mod import_run;
mod imports;
mod js_json;
mod keap_client;
mod kv;
mod limits;
#[cfg(feature = "objects")]
mod link_hooks;
mod links;
mod log;
mod mcp;
mod pacer;
mod pages;
mod partner_guard;
mod proxy;
mod purge;
mod queue;
mod quota;
mod random;
mod repair;
mod routes;
mod stats;
mod store;
mod sweep;
mod webhooks;

use config::Config;
use keaplink_core::ids::hex;
use log::Level;
use worker::{
    event, Context, Env, MessageBatch, Request, Response, Result, ScheduleContext, ScheduledEvent,
};

#[cfg(feature = "objects")]
#[event(queue)]
async fn queue(batch: MessageBatch<serde_json::Value>, env: Env, _ctx: Context) -> Result<()> {
    let cfg = Config::from_env(&env).map_err(|e| worker::Error::RustError(e.to_string()))?;
    consumer::consume(batch, &env, &cfg).await
}

// The cron fires the front (the Worker `wrangler dev --test-scheduled` and the dashboard's cron
// triggers reach): the sweep reads KV metadata and hands due links to their guards, which live in
// the objects' Worker.
#[cfg(feature = "front")]
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let outcome = match Config::from_env(&env) {
        Ok(cfg) => sweep::sweep(&env, &cfg, None).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(report) => log::write(Level::Info, &report),
        Err(e) => log::failure(Level::Error, "sweep_failed", &e),
    }
}

#[cfg(feature = "front")]
#[event(fetch)]
async fn fetch(mut req: Request, env: Env, ctx: Context) -> Result<Response> {
    let started = clock::now_ms();
    // Cloudflare's ray id when there is one, so our line meets Cloudflare's own logs.
    let request_id = req
        .headers()
        .get("cf-ray")
        .ok()
        .flatten()
        .filter(|r| r.len() <= 64 && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .unwrap_or_else(|| hex(&random::request_id().to_be_bytes()));
    let routes::Answer { mut resp, error } = routes::answer(&mut req, &env, &request_id).await;
    // Proxied calls this isolate has not reported yet are reported soon even if no call follows
    // (the admin stats and the console count them).
    if let Some(wait_ms) = quota::deferred_report(clock::now_ms()) {
        ctx.wait_until(proxy::deferred_report(env.clone(), wait_ms));
    }
    let _ = resp.headers_mut().set("x-request-id", &request_id);
    // One line per request: the path only (never the query, which may carry an OAuth code).
    let (path, method) = (req.path(), req.method());
    let line = RequestLog {
        event: "request",
        id: &request_id,
        method: method.as_ref(),
        path: routes::loggable(&path),
        status: resp.status_code(),
        error: error.as_ref().map(|e| e.code.as_str()),
        cause: error.as_ref().and_then(|e| e.cause()).map(str::to_owned),
        ms: clock::now_ms().saturating_sub(started),
    };
    // LOG_REQUESTS=errors keeps only 4xx/5xx and slow answers (see BENCHMARKS.md for the cost).
    let log_line =
        (config::log_all_requests(&env) || line.status >= 400 || line.ms >= 1000).then(|| {
            let level = if line.status >= 500 {
                Level::Error
            } else {
                Level::Info
            };
            (level, serde_json::to_string(&line).unwrap_or_default())
        });
    // Uses of links the answer asked to record (at most once per window per link).
    let uses = links::take_uses();
    if log_line.is_some() || !uses.is_empty() {
        // Once the answer is on its way: neither the log nor the uses ever delay it. (One
        // deferred task, not two: each kind of task handed to waitUntil costs wasm bytes.)
        ctx.wait_until(async move {
            if let Some((level, text)) = log_line {
                log::raw(level, &text);
            }
            if !uses.is_empty() {
                links::record_uses(env, uses).await;
            }
        });
    }
    Ok(resp)
}

#[derive(serde::Serialize)]
struct RequestLog<'a> {
    event: &'static str,
    id: &'a str,
    method: &'a str,
    path: std::borrow::Cow<'a, str>,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    /// What caused a failure (a 500's underlying error): for the operator, never in the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<String>,
    ms: u64,
}

/// talc instead of std's dlmalloc: about 7 KB smaller in the wasm (3 KB gzip).
#[cfg(all(not(target_feature = "atomics"), target_family = "wasm"))]
#[global_allocator]
static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
