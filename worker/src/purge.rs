//! Destroying a deleted partner's connections, a page at a time through the queue: their
//! tokens are destroyed through their guards, so no sweep keeps them alive at Keap.

use crate::guard;
use crate::log::{self, Field, Level};
use crate::queue::{enqueue, Job};
use crate::store::Store;
use keaplink_core::clock::UnixTime;
use keaplink_core::ids::PartnerId;
use keaplink_core::ApiResult;
use worker::Env;

/// Guard calls one purge page may make (within the free plan's 50 subrequests).
const PURGE_PAGE: u64 = 40;

/// One page of a deleted partner's connections, destroyed through their guards (KV record, id
/// index, guard storage, with a tombstone); the next page goes back on the queue. Links made
/// after the deletion (the id registered again) are left alone.
pub async fn purge_page(
    env: &Env,
    partner: &PartnerId,
    before: UnixTime,
    cursor: Option<String>,
) -> ApiResult<()> {
    let store = Store::open(env)?;
    let page = store
        .list_partner_connections(partner, PURGE_PAGE, cursor)
        .await?;
    let mut deleted = 0u64;
    for (key, meta) in page.items {
        if meta.connected_at > before {
            continue;
        }
        guard::delete(env, &key).await?;
        deleted += 1;
    }
    log::event(
        Level::Info,
        "purge",
        &[
            ("deleted", Field::Num(deleted)),
            ("more", Field::Bool(page.next.is_some())),
            ("partner", Field::Str(partner.as_str())),
        ],
    );
    if let Some(c) = page.next {
        enqueue(
            env,
            vec![Job::Purge {
                partner: partner.clone(),
                before,
                cursor: Some(c),
            }],
        )
        .await?;
    }
    Ok(())
}
