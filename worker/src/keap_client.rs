//! Sends the requests `keaplink_core::keap` builds, each bounded by a timeout.

use futures_util::future::{select, Either};
use keaplink_core::keap::{KeapFailure, OutboundRequest};
use std::pin::pin;
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

/// What came back: a status and the body.
pub struct KeapAnswer {
    pub status: u16,
    pub body: Vec<u8>,
}

pub async fn send(req: &OutboundRequest, timeout_ms: u32) -> Result<KeapAnswer, KeapFailure> {
    let headers = Headers::new();
    for (name, value) in &req.headers {
        headers
            .set(name, value.expose())
            .map_err(|_| unavailable())?;
    }
    let mut init = RequestInit::new();
    init.with_method(if req.method == "POST" {
        Method::Post
    } else {
        Method::Get
    })
    .with_headers(headers);
    if let Some(body) = &req.body {
        init.with_body(Some(body.as_str().into()));
    }
    let request = Request::new_with_init(req.url.as_str(), &init).map_err(|_| unavailable())?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let call = async {
        let mut resp = Fetch::Request(request)
            .send_with_signal(&signal)
            .await
            .map_err(|_| unavailable())?;
        let status = resp.status_code();
        let body = resp.bytes().await.map_err(|_| unavailable())?;
        Ok(KeapAnswer { status, body })
    };
    let timer = Delay::from(std::time::Duration::from_millis(timeout_ms.into()));
    let call = pin!(call);
    let timer = pin!(timer);
    let result = match select(call, timer).await {
        Either::Left((answer, _)) => answer,
        Either::Right(_) => {
            controller.abort();
            Err(KeapFailure::Timeout)
        }
    };
    result
}

/// A network failure: no status came back.
fn unavailable() -> KeapFailure {
    KeapFailure::Unavailable { status: 0 }
}
