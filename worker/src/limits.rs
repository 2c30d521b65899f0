//! Asks the Workers rate-limiting bindings what `keaplink_core::limits` says to ask.

use crate::kv;
use keaplink_core::limits::LimitCheck;
use keaplink_core::ApiResult;
use keaplink_core::{ApiError, ErrorCode};
use worker::js_sys::{Array, Object, Reflect};
use worker::wasm_bindgen::JsValue;
use worker::{Env, Request};

/// The client address Cloudflare's edge reports.
pub fn client_ip(req: &Request) -> Option<String> {
    req.headers().get("cf-connecting-ip").ok().flatten()
}

/// Counts one request against `check`; 429 `rate_limited` once over. A missing binding is a
/// deploy mistake (500 `misconfigured`); a limiter that fails to answer lets the request through,
/// so an outage of the limiter is not an outage of every linked account. The binding is called
/// as JS (`limit({key})`, `{success}`): worker's `RateLimiter` goes through serde-wasm-bindgen.
pub async fn enforce(env: &Env, check: LimitCheck) -> ApiResult<()> {
    let limiter = kv::binding(env, check.binding).map_err(|_| {
        ApiError::new(
            ErrorCode::Misconfigured,
            format!("The {} rate-limiting binding is missing.", check.binding),
        )
    })?;
    let options = Object::new();
    // A fresh plain object: setting a property cannot fail.
    let _ = Reflect::set(
        &options,
        &JsValue::from_str("key"),
        &JsValue::from_str(&check.key),
    );
    let answer = kv::call(&limiter, "limit", &Array::of1(&options)).await;
    let success = answer
        .ok()
        .and_then(|a| Reflect::get(&a, &JsValue::from_str("success")).ok())
        .and_then(|s| s.as_bool());
    match success {
        Some(false) => Err(check.refused()),
        _ => Ok(()),
    }
}
