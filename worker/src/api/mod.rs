//! The v1 endpoints, by audience: `admin` (the operator's token), `widget` (`/v1/me`, a partner
//! user's session JWT), `partner` (a partner's back-end, its API key). Shared here: reading ids
//! from paths, and finding a connection by id within a partner.

pub mod admin;
pub mod console;
pub mod hooks;
pub mod imports;
pub mod partner;
pub mod widget;

use crate::store::Store;
use keaplink_core::connection::ConnectionKey;
use keaplink_core::ids::{ConnectionId, PartnerId};
use keaplink_core::{ApiError, ApiResult, ErrorCode};

pub fn parse_partner_id(raw: &str) -> ApiResult<PartnerId> {
    PartnerId::parse(raw).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidId,
            "partner_id must be 1-64 of a-z, 0-9 and -.",
        )
    })
}

fn parse_connection_id(raw: &str) -> ApiResult<ConnectionId> {
    ConnectionId::parse(raw)
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidId, "That is not a connection id of ours."))
}

pub use crate::links::no_connection;

/// The connection an id from a path names, if it is this partner's.
pub async fn resolve(store: &Store, partner: &PartnerId, raw_id: &str) -> ApiResult<ConnectionKey> {
    let id = parse_connection_id(raw_id)?;
    store
        .resolve_id(partner, &id)
        .await?
        .ok_or_else(no_connection)
}
