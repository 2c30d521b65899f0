//! HTTP plumbing: JSON answers, the one place an `ApiError` becomes a response, bodies with a
//! size limit, bearer credentials, CORS headers.

use keaplink_core::body::{self, MAX_BODY_BYTES};
use keaplink_core::{ApiError, ApiResult, ErrorCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::wasm_bindgen::JsValue;
use worker::{web_sys, Headers, Request, Response};

pub fn json<T: Serialize>(value: &T, status: u16) -> ApiResult<Response> {
    let text = serde_json::to_string(value)
        .map_err(|e| ApiError::internal(format!("serializing an answer: {e}")))?;
    json_text(text, status)
}

/// A JSON answer already written (`json`'s part that is the same for every type, and the way
/// to relay JSON a Durable Object wrote without decoding it).
pub fn json_text(text: String, status: u16) -> ApiResult<Response> {
    let mut resp = Response::ok(text)
        .map_err(|e| ApiError::internal(format!("an answer: {e}")))?
        .with_status(status);
    let h = resp.headers_mut();
    let _ = h.set("content-type", "application/json");
    no_store(h);
    Ok(resp)
}

pub fn empty(status: u16) -> ApiResult<Response> {
    Ok(Response::empty()
        .map_err(|e| ApiError::internal(format!("an empty answer: {e}")))?
        .with_status(status))
}

/// A redirect whose headers can still be set: workers-rs's `Response::redirect*` makes a
/// response with immutable headers, so `x-request-id` and the page headers would be lost.
pub fn redirect(to: &str, status: u16) -> ApiResult<Response> {
    let mut resp = empty(status)?;
    resp.headers_mut()
        .set("location", to)
        .map_err(|e| ApiError::internal(format!("a redirect's location: {e}")))?;
    Ok(resp)
}

/// Answers carry tokens or per-user state: no shared cache may keep them.
fn no_store(h: &mut Headers) {
    let _ = h.set("cache-control", "no-store");
}

/// A body-less answer, for when even building a body failed. The failure is not printed: its
/// `Debug` text would link `worker::Error`'s whole debug formatting into the wasm.
pub fn bare(status: u16) -> Response {
    match Response::empty() {
        Ok(r) => r.with_status(status),
        Err(_) => panic!("the runtime cannot build an empty response"),
    }
}

/// The one place an error becomes an answer: its status, the contract's body (code and
/// message, never the cause), `retry-after` for the 429s.
pub fn error_response(err: &ApiError) -> Response {
    let body = serde_json::to_string(&err.body()).unwrap_or_else(|_| "{}".into());
    let mut resp = Response::ok(body)
        .map(|r| r.with_status(err.status()))
        .unwrap_or_else(|_| bare(err.status()));
    let h = resp.headers_mut();
    let _ = h.set("content-type", "application/json");
    no_store(h);
    if let Some(secs) = err.retry_after {
        let _ = h.set("retry-after", &secs.to_string());
    }
    resp
}

/// Reads a JSON body of at most 16 KiB (the rules are `keaplink_core::body`). An empty body reads
/// as `default` when one is given.
pub async fn read_json<T: DeserializeOwned>(req: &mut Request, default: Option<T>) -> ApiResult<T> {
    let bytes = read_body(req).await?;
    body::decode(&bytes, default)
}

/// The body's length as its `content-length` declares it.
fn declared_length(req: &Request) -> Option<usize> {
    req.headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<usize>().ok())
}

/// `read_json`'s reading, apart from the type read: compiled once, not once per body type.
async fn read_body(req: &mut Request) -> ApiResult<Vec<u8>> {
    if declared_length(req).is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(body::too_large());
    }
    req.bytes().await.map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "The request body could not be read.",
        )
    })
}

/// A body of at most `limit` bytes, read in chunks so that a larger one is refused (`too_large`)
/// without being held whole. No body reads as empty.
pub async fn read_bytes_within(
    req: &mut Request,
    limit: usize,
    too_large: fn() -> ApiError,
) -> ApiResult<Vec<u8>> {
    if req.inner().body().is_none() {
        return Ok(Vec::new());
    }
    // Refused as declared, unread.
    if declared_length(req).is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let unreadable = |_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "The request body could not be read.",
        )
    };
    let mut stream = req.stream().map_err(unreadable)?;
    let mut body = Vec::new();
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        let chunk = chunk.map_err(unreadable)?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The raw `Authorization: Bearer` credential, or 401 `missing_credentials`.
pub fn bearer(req: &Request) -> ApiResult<String> {
    let value = req
        .headers()
        .get("authorization")
        .ok()
        .flatten()
        .unwrap_or_default();
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim().to_owned())
        }
        _ => Err(ApiError::new(
            ErrorCode::MissingCredentials,
            "Send your credential as `Authorization: Bearer <token>`.",
        )),
    }
}

pub fn origin(req: &Request) -> Option<String> {
    req.headers().get("origin").ok().flatten()
}

/// Adds the CORS headers for an allowed origin. Never `*`.
pub fn allow_origin(resp: &mut Response, origin: &str) {
    let h = resp.headers_mut();
    let _ = h.set("access-control-allow-origin", origin);
    let _ = h.set("vary", "Origin");
    let _ = h.set("access-control-expose-headers", "link, x-request-id");
}

pub fn preflight(origin: &str) -> ApiResult<Response> {
    let mut resp = empty(204)?;
    allow_origin(&mut resp, origin);
    let h = resp.headers_mut();
    let _ = h.set("access-control-allow-methods", "GET, POST, DELETE");
    let _ = h.set(
        "access-control-allow-headers",
        "authorization, content-type",
    );
    let _ = h.set("access-control-max-age", "600");
    Ok(resp)
}

/// An outbound request, built on `web_sys` directly: `worker::RequestInit` also links the
/// serializer of its Cloudflare `cf` options, about 7 KB of wasm, that no call of ours sets.
/// `manual_redirect`: a redirect comes back as the answer instead of being followed.
pub fn subrequest(
    url: &str,
    method: &str,
    headers: &Headers,
    body: Option<&JsValue>,
    manual_redirect: bool,
) -> worker::Result<Request> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    init.set_headers(&headers.0);
    if let Some(body) = body {
        init.set_body(body);
    }
    if manual_redirect {
        init.set_redirect(web_sys::RequestRedirect::Manual);
    }
    Ok(web_sys::Request::new_with_str_and_init(url, &init)?.into())
}
