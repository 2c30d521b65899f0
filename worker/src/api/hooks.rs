//! `PUT/GET/DELETE /v1/connections/{id}/hooks`: the Keap events a link delivers. The body is
//! checked whole before anything is asked of Keap; the link's guard then makes Keap's hooks so.

use super::{no_connection, resolve};
use crate::guard;
use crate::http::{empty, json_text, read_bytes_within};
use crate::store::Store;
use keaplink_core::hooks::{self, Wanted};
use keaplink_core::ids::PartnerId;
use keaplink_core::{ApiError, ApiResult, ErrorCode};
use worker::{Env, Method, Request, Response};

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::BodyTooLarge,
        "The body is over the 16 KiB limit.",
    )
}

pub async fn handle(
    req: &mut Request,
    env: &Env,
    store: &Store,
    partner: &PartnerId,
    raw_id: &str,
    method: &Method,
) -> ApiResult<Response> {
    let key = resolve(store, partner, raw_id).await?;
    match method {
        Method::Put => {
            let body = read_bytes_within(req, hooks::MAX_REQUEST_BYTES, too_large).await?;
            let wanted = hooks::wanted(&body)?;
            let set = guard::set_hooks(env, &key, wanted)
                .await?
                .ok_or_else(no_connection)?;
            json_text(set, 200)
        }
        Method::Delete => {
            let none = Wanted {
                event_keys: Vec::new(),
                hydrate: false,
            };
            guard::set_hooks(env, &key, none)
                .await?
                .ok_or_else(no_connection)?;
            empty(204)
        }
        _ => json_text(
            guard::hooks(env, &key).await?.ok_or_else(no_connection)?,
            200,
        ),
    }
}
