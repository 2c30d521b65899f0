//! Keap's events, per link: `PUT/GET/DELETE /v1/connections/{id}/hooks` and the `keap.<event_key>`
//! events delivered to the partner's webhook.

#[cfg(feature = "events")]
use crate::Connection;
use crate::ErrorDetail;
use serde::{Deserialize, Serialize};

/// `PUT /v1/connections/{id}/hooks`: the Keap events this link should deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HooksRequest {
    /// Keap's event keys (`contact.add`, `invoice.payment.add`, …), each at most once; an empty
    /// list removes every hook of the link.
    #[cfg_attr(feature = "openapi", schema(example = json!(["contact.add", "contact.edit"])))]
    pub event_keys: Vec<String>,
    /// Read each object named in an event through the link's token and send it along
    /// (`keap_event.objects`). Default false.
    #[serde(default)]
    pub hydrate: Option<bool>,
}

/// Where one event key's hook at Keap stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HookStatus {
    /// Keap delivers this event key's events.
    Verified,
    /// Subscribed; Keap has not confirmed the handshake yet (verified again by the next check).
    Pending,
    /// Keap stopped delivering (after four failed tries); the next check verifies it again.
    Inactive,
    /// Keap refused the subscription (`error` says why); the next check tries again.
    Failed,
}

/// One event key of a link and its hook at Keap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Hook {
    #[cfg_attr(feature = "openapi", schema(example = "contact.add"))]
    pub event_key: String,
    pub status: HookStatus,
    /// Why the hook is `failed` (or what the last attempt to restore it met).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
    /// When Keap last posted an event of this key for the link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub last_event_at: Option<String>,
}

/// `GET/PUT /v1/connections/{id}/hooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Hooks {
    pub hooks: Vec<Hook>,
    pub hydrate: bool,
    /// When keaplink last checked the link's hooks at Keap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub checked_at: Option<String>,
}

/// What became of Keap's events over the last 24 hours (whole hours): a support person compares
/// `received - deduplicated` with `delivered` (a hydrated batch of over 50 objects is delivered as
/// several events); a gap means deliveries are failing or still retrying (see the webhook
/// deliveries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeapEventCounts {
    /// Batches Keap posted to the hook URLs of links that want them, Keap's retries included.
    pub received: u64,
    /// Of those, Keap's retries of a batch already delivered: not sent again.
    pub deduplicated: u64,
    /// `keap.*` events the partner's webhook accepted (a 2xx answer).
    pub delivered: u64,
}

/// One object Keap named: its id and when it changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeapObjectKey {
    pub id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// An object `hydrate` could not read (the event is sent all the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnreadObject {
    pub id: i64,
    /// `needs_reauth` (the link needs its user), `keap_quota` (Keap's quota is kept for link
    /// keeping), `not_found` (Keap has no such object now), `keap_error`, `unsupported` (keaplink
    /// does not know where Keap keeps this object type).
    pub code: String,
    pub message: String,
}

/// What Keap posted, as keaplink delivers it.
#[cfg(feature = "events")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeapEvent {
    #[cfg_attr(feature = "openapi", schema(example = "contact.add"))]
    pub event_key: String,
    #[cfg_attr(feature = "openapi", schema(example = "contact"))]
    pub object_type: String,
    pub object_keys: Vec<KeapObjectKey>,
    /// With `hydrate`: each object as Keap's REST API answers it, in `object_keys` order (those
    /// that could not be read are in `unread`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<Vec<UnreadObject>>,
    /// A batch too large to read in one event (more than 50 objects with `hydrate`) comes as
    /// several events: this one is part `index` (from 1) of `of`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<EventPart>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventPart {
    pub index: u32,
    pub of: u32,
}

/// `keap.<event_key>` as the partner's webhook receives it.
#[cfg(feature = "events")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeapEventDelivery {
    /// `evt_…`: the same for every delivery of this batch (Keap's own retries included).
    pub id: String,
    /// `keap.` + the event key.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(example = "keap.contact.add"))]
    pub kind: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    pub partner_id: String,
    pub user: String,
    pub connection: Connection,
    pub keap_event: KeapEvent,
}
