//! `POST /hooks/keap/{token}`: where Keap posts a link's events. The URL is the only credential
//! Keap's posts carry (they are not signed), so it alone decides the link: its token's hash finds
//! the link in one KV read, and nothing in the body can name another. Keap's handshake
//! (`X-Hook-Secret`) is echoed at once; a batch is queued and answered 200 in the same breath,
//! so the partner's receiver, hydration or a slow Keap call never makes Keap wait (Keap marks a
//! hook Inactive after four slow or failed tries).

use crate::http::{empty, read_bytes_within};
use crate::queue::{enqueue, Job};
use crate::store::Store;
use keaplink_core::hooks;
use keaplink_core::{ApiError, ApiResult, ErrorCode, Secret};
use worker::{Env, Request, Response};

fn gone() -> ApiError {
    ApiError::new(
        ErrorCode::HookGone,
        "No link has this hook URL (it was removed); Keap stops calling it.",
    )
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::BodyTooLarge,
        "The body is over the 512 KiB limit.",
    )
}

pub async fn receive(
    req: &mut Request,
    env: &Env,
    store: &Store,
    raw: &str,
) -> ApiResult<Response> {
    let token = hooks::url_token(raw).ok_or_else(gone)?;
    match req.headers().get("x-hook-secret").ok().flatten() {
        Some(secret) => handshake(store, token, secret).await,
        None => batch(req, env, store, token).await,
    }
}

/// Keap's handshake, for a link that has this URL: the secret echoed at once.
async fn handshake(store: &Store, token: &str, secret: String) -> ApiResult<Response> {
    store
        .hook_index(&hooks::index_key(token))
        .await?
        .ok_or_else(gone)?;
    if secret.is_empty() || secret.len() > 512 || !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "X-Hook-Secret must be 1-512 printable ASCII characters.",
        ));
    }
    let secret = Secret::new(secret);
    // Kept a few minutes for `delayedVerify`, should Keap not take the echo in time.
    store
        .put_hook_secret(&hooks::secret_key(token), &secret)
        .await?;
    let resp = empty(200)?;
    resp.headers()
        .set("x-hook-secret", secret.expose())
        .map_err(ApiError::internal)?;
    Ok(resp)
}

/// An event batch: the link is looked up while the body is read (neither waits on the other),
/// and the batch is queued as posted. An unknown URL is 410 whatever its body.
async fn batch(req: &mut Request, env: &Env, store: &Store, token: &str) -> ApiResult<Response> {
    let index_key = hooks::index_key(token);
    let (entry, body) = futures_util::join!(
        store.hook_index(&index_key),
        read_bytes_within(req, hooks::MAX_BATCH_BYTES, too_large)
    );
    let entry = entry?.ok_or_else(gone)?;
    let body = body?;
    // Checked here: a body that is not Keap's shape is refused now.
    hooks::batch(&body)?;
    let body = String::from_utf8(body)
        .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "The body is not UTF-8 JSON."))?;
    enqueue(
        env,
        vec![Job::KeapEvent {
            key: entry.key,
            body,
        }],
    )
    .await?;
    empty(200)
}
