//! Sends the requests `keaplink_core` builds, each bounded by a timeout: OAuth and webhook calls
//! (`send`, the whole body read) and proxied calls (`relay`, the body left to stream).

use crate::http::subrequest;
use futures_util::future::{select, Either};
use keaplink_core::keap::{KeapFailure, OutboundRequest};
use keaplink_core::proxy::ProxyRequest;
use std::future::Future;
use std::pin::pin;
use worker::wasm_bindgen::JsValue;
use worker::{js_sys, AbortController, Delay, Fetch, Headers, Response};

/// What came back: a status, the headers the pace reads (`date`, `retry-after`, `x-keap-*`)
/// and the body.
pub struct KeapAnswer {
    pub status: u16,
    pub quota_headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub async fn send(req: &OutboundRequest, timeout_ms: u32) -> Result<KeapAnswer, KeapFailure> {
    let headers = Headers::new();
    for (name, value) in &req.headers {
        headers
            .set(name, value.expose())
            .map_err(|_| unavailable())?;
    }
    let method = match req.method {
        "POST" => "POST",
        "DELETE" => "DELETE",
        _ => "GET",
    };
    let body = req.body.as_deref().map(JsValue::from_str);
    let request = subrequest(req.url.as_str(), method, &headers, body.as_ref(), false)
        .map_err(|_| unavailable())?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let call = async {
        let mut resp = Fetch::Request(request)
            .send_with_signal(&signal)
            .await
            .map_err(|_| unavailable())?;
        let status = resp.status_code();
        let quota_headers = resp
            .headers()
            .entries()
            .filter(|(n, _)| n == "date" || n == "retry-after" || n.starts_with("x-keap-"))
            .collect();
        let body = resp.bytes().await.map_err(|_| unavailable())?;
        Ok(KeapAnswer {
            status,
            quota_headers,
            body,
        })
    };
    within(call, controller, timeout_ms).await
}

/// Sends a proxied call and answers Keap's response as it arrives, its body not yet read (the
/// caller streams it on). The timeout bounds the wait for Keap's status and headers. Redirects
/// are not followed: the token must never travel anywhere but the URL built for it.
pub async fn relay(req: &ProxyRequest, timeout_ms: u32) -> Result<Response, KeapFailure> {
    let headers = Headers::new();
    for (name, value) in &req.headers {
        headers
            .set(name, value.expose())
            .map_err(|_| unavailable())?;
    }
    let body = req
        .body
        .as_ref()
        .map(|b| JsValue::from(js_sys::Uint8Array::from(b.as_slice())));
    let request = subrequest(&req.url, req.method, &headers, body.as_ref(), true)
        .map_err(|_| unavailable())?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let call = async {
        Fetch::Request(request)
            .send_with_signal(&signal)
            .await
            .map_err(|_| unavailable())
    };
    within(call, controller, timeout_ms).await
}

/// `call`, or `Timeout` (and the call aborted) once `timeout_ms` has passed.
async fn within<T>(
    call: impl Future<Output = Result<T, KeapFailure>>,
    controller: AbortController,
    timeout_ms: u32,
) -> Result<T, KeapFailure> {
    let timer = Delay::from(std::time::Duration::from_millis(timeout_ms.into()));
    let call = pin!(call);
    let timer = pin!(timer);
    match select(call, timer).await {
        Either::Left((answer, _)) => answer,
        Either::Right(_) => {
            controller.abort();
            Err(KeapFailure::Timeout)
        }
    }
}

/// A network failure: no status came back.
fn unavailable() -> KeapFailure {
    KeapFailure::Unavailable { status: 0 }
}
