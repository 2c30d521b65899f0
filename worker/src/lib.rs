//! keaplink's Cloudflare Worker: a thin adapter from HTTP requests to `keaplink-core`.
//!
//! Routing is one table; every failure leaves through `error_response`, the one place an
//! `ApiError` becomes HTTP.

use keaplink_api::Health;
use keaplink_core::{ApiError, ErrorCode};
use worker::{event, Context, Env, Method, Request, Response, Result};

#[event(fetch)]
async fn fetch(req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    let outcome = route(&req);
    match outcome {
        Ok(resp) => Ok(resp),
        Err(err) => error_response(&err),
    }
}

fn route(req: &Request) -> std::result::Result<Response, ApiError> {
    let path = req.path();
    match (path.as_str(), req.method()) {
        ("/healthz", Method::Get | Method::Head) => {
            Response::from_json(&Health { ok: true }).map_err(internal)
        }
        ("/healthz", _) => Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            "This endpoint answers GET only.",
        )),
        _ => Err(ApiError::new(
            ErrorCode::NotFound,
            "No such endpoint; see the API reference in the README.",
        )),
    }
}

fn internal(_: worker::Error) -> ApiError {
    ApiError::new(ErrorCode::Internal, "Something went wrong on our side.")
}

fn error_response(err: &ApiError) -> Result<Response> {
    Ok(Response::from_json(&err.body())?.with_status(err.status()))
}
