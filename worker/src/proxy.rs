//! `/v1/keap/<path>`: calling Keap through keaplink. (Being built: until then every call is
//! answered 404 `not_found`, and nothing is sent to Keap.)

use crate::config::Config;
use crate::store::Store;
use keaplink_core::{ApiError, ApiResult, ErrorCode};
use worker::{Env, Request, Response};

/// Answers one proxied call. `path` is the raw path after `/v1/keap`, starting with `/`.
pub async fn handle(
    _req: &mut Request,
    _env: &Env,
    _cfg: &Config,
    _store: &Store,
    _path: &str,
) -> ApiResult<Response> {
    Err(ApiError::new(
        ErrorCode::NotFound,
        "Calling Keap through keaplink is not available in this deployment yet.",
    ))
}
