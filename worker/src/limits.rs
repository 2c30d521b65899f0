//! Asks the Workers rate-limiting bindings what `keaplink_core::limits` says to ask.

use keaplink_core::limits::LimitCheck;
use keaplink_core::ApiResult;
use keaplink_core::{ApiError, ErrorCode};
use worker::{Env, Request};

/// The client address Cloudflare's edge reports.
pub fn client_ip(req: &Request) -> Option<String> {
    req.headers().get("cf-connecting-ip").ok().flatten()
}

/// Counts one request against `check`; 429 `rate_limited` once over. A missing binding is a
/// deploy mistake (500 `misconfigured`); a limiter that fails to answer lets the request through,
/// so an outage of the limiter is not an outage of every linked account.
pub async fn enforce(env: &Env, check: LimitCheck) -> ApiResult<()> {
    let limiter = env.rate_limiter(check.binding).map_err(|_| {
        ApiError::new(
            ErrorCode::Misconfigured,
            format!("The {} rate-limiting binding is missing.", check.binding),
        )
    })?;
    match limiter.limit(check.key.clone()).await {
        Ok(outcome) if !outcome.success => Err(check.refused()),
        _ => Ok(()),
    }
}
