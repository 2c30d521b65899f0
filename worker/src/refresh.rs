//! Refreshing one connection's tokens. Plain for now: the refresh engine serializes it.

use crate::config::Config;
use crate::http::{internal, ApiResult};
use crate::keap_client::send;
use crate::random;
use crate::store::Store;
use keaplink_core::clock::UnixTime;
use keaplink_core::connection::{ConnectionKey, ConnectionRecord, OpenTokens};
use keaplink_core::keap::{parse_token_response, refresh_request, KeapFailure};
use keaplink_core::{ApiError, ErrorCode};

/// What a failed call to Keap means for the caller of our API.
pub fn keap_error(f: &KeapFailure) -> ApiError {
    match f {
        KeapFailure::InvalidGrant => ApiError::new(
            ErrorCode::NeedsReauth,
            "Keap no longer accepts this link; the user must reconnect.",
        ),
        KeapFailure::Throttled => ApiError::new(
            ErrorCode::KeapThrottled,
            "Keap is throttling requests; try again in a minute.",
        ),
        KeapFailure::Timeout => ApiError::new(
            ErrorCode::KeapTimeout,
            "Keap did not answer in time; try again.",
        ),
        KeapFailure::Unavailable { .. } => {
            ApiError::new(ErrorCode::KeapError, "Keap failed to answer; try again.")
        }
        KeapFailure::Rejected { status } => ApiError::new(
            ErrorCode::KeapError,
            format!("Keap refused the request (HTTP {status})."),
        ),
        KeapFailure::BadResponse { detail, .. } => ApiError::new(
            ErrorCode::KeapBadResponse,
            format!("Keap answered unexpectedly: {detail}."),
        ),
    }
}

/// Refreshes `record` and stores the outcome before returning the tokens to hand out.
pub async fn refresh(
    store: &Store,
    cfg: &Config,
    key: &ConnectionKey,
    record: &ConnectionRecord,
    now: UnixTime,
) -> ApiResult<(ConnectionRecord, OpenTokens)> {
    let current = record.open_tokens(&cfg.keys, key).map_err(internal)?;
    let req = refresh_request(&cfg.keap, &cfg.client, &current.refresh_token);
    let outcome = match send(&req, cfg.keap_timeout_ms).await {
        Ok(answer) => parse_token_response(answer.status, &answer.body),
        Err(f) => Err(f),
    };
    match outcome {
        Ok(grant) => {
            let next = record.refreshed(&cfg.keys, key, &current, grant, now, random::bytes());
            store.put_connection(key, &next, false).await?;
            let tokens = next.open_tokens(&cfg.keys, key).map_err(internal)?;
            Ok((next, tokens))
        }
        Err(failure) => {
            let failed = record.refresh_failed(&failure, now);
            store.put_connection(key, &failed, false).await?;
            if failure.is_transient() && failed.access_still_usable(now) {
                Ok((failed, current))
            } else {
                Err(keap_error(&failure))
            }
        }
    }
}
