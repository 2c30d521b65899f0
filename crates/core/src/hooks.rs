//! Keap's REST hooks, one set per link: what a partner may ask for, what keaplink must change at
//! Keap to get there, what a check of the hooks at Keap calls for, and what a batch Keap posts is
//! (and whether it was seen before). Sans I/O: the guard (`worker/src/link_hooks.rs`) asks Keap
//! and applies; the hook inbox (`worker/src/hook_inbox.rs`) reads and queues.
//!
//! Keap's facts this follows: one hook per event key per Keap app, created with `POST
//! /crm/rest/v1/hooks {"eventKey", "hookUrl"}`; Keap verifies a new hook by posting to its URL
//! with `X-Hook-Secret`, which the receiver echoes (or hands back later to `delayedVerify`);
//! events go to Verified hooks only, as `{"event_key", "object_type", "object_keys": [{"id",
//! "apiUrl", "timestamp"}]}` with up to 1,000 keys; after four failed tries (or at once on a 410)
//! a hook becomes Inactive until `POST /hooks/{key}/verify`. Payloads are not signed: the URL is
//! the only credential, so each link has its own unguessable one, stored only sealed (the guard)
//! and as a hash (the index that routes Keap's posts).

use crate::body::decode_within;
use crate::clock::UnixTime;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::ids::{hex, storage_hash};
use keaplink_api::{ErrorDetail, HookStatus, HooksRequest, KeapObjectKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Keap's event keys (its `GET /crm/rest/v1/hooks/event_keys`), the ones a link may subscribe to.
pub const EVENT_KEYS: &[&str] = &[
    "appointment.add",
    "appointment.delete",
    "appointment.edit",
    "company.add",
    "company.delete",
    "company.edit",
    "contact.add",
    "contact.delete",
    "contact.edit",
    "contact.redact",
    "contactGroup.add",
    "contactGroup.applied",
    "contactGroup.delete",
    "contactGroup.edit",
    "contactGroup.removed",
    "invoice.add",
    "invoice.delete",
    "invoice.edit",
    "invoice.payment.add",
    "invoice.payment.delete",
    "invoice.payment.edit",
    "leadsource.add",
    "leadsource.delete",
    "leadsource.edit",
    "note.add",
    "note.delete",
    "note.edit",
    "opportunity.add",
    "opportunity.delete",
    "opportunity.edit",
    "opportunity.stage_move",
    "order.add",
    "order.delete",
    "order.edit",
    "product.add",
    "product.delete",
    "product.edit",
    "subscription.add",
    "subscription.delete",
    "subscription.edit",
    "task.add",
    "task.delete",
    "task.edit",
];

/// A hooks body is small: every event key fits many times over.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// What Keap posts: up to 1,000 object keys with their `apiUrl`s.
pub const MAX_BATCH_BYTES: usize = 512 * 1024;
pub const MAX_OBJECT_KEYS: usize = 1000;
/// With `hydrate`, a batch is sent in events of at most this many objects (each read is a Keap
/// call made while the event is prepared).
pub const HYDRATE_PART: usize = 50;
/// A hook still Unverified this long after keaplink subscribed it is verified again.
pub const UNVERIFIED_GRACE_SECS: i64 = 300;
/// Batches seen are remembered this long (Keap's last retry comes about 36 minutes after the
/// first try) and at most this many per link.
pub const SEEN_KEEP_SECS: i64 = 24 * 3600;
pub const SEEN_MAX: usize = 2000;
/// Keap calls a check is paced as: the list, and room for one repair.
pub const CHECK_CALLS: u32 = 2;
/// Where Keap's posts arrive: `PUBLIC_URL` + this + the link's token.
pub const INBOX_PATH: &str = "/hooks/keap/";

/// The event keys and `hydrate` a partner asked for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub event_keys: Vec<String>,
    pub hydrate: bool,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

/// Reads `PUT /v1/connections/{id}/hooks`'s body: 400 for anything but a list of distinct known
/// event keys (naming the first unknown one, which is a key name, never a secret).
pub fn wanted(body: &[u8]) -> ApiResult<Wanted> {
    let req: HooksRequest = decode_within(
        body,
        MAX_REQUEST_BYTES,
        ApiError::new(
            ErrorCode::BodyTooLarge,
            "The body is over the 16 KiB limit.",
        ),
    )
    .map_err(|e| match e.code {
        ErrorCode::InvalidRequest => invalid(
            "The body must be {\"event_keys\": [\"contact.add\", ...], \"hydrate\": false}: event_keys a list of Keap's event keys, hydrate optional.",
        ),
        _ => e,
    })?;
    if req.event_keys.len() > EVENT_KEYS.len() {
        return Err(invalid(format!(
            "event_keys lists {} keys; Keap has {} event keys, each may be listed once.",
            req.event_keys.len(),
            EVENT_KEYS.len()
        )));
    }
    let mut keys: Vec<String> = Vec::with_capacity(req.event_keys.len());
    for k in req.event_keys {
        if !EVENT_KEYS.contains(&k.as_str()) {
            let shown: String = k.chars().take(64).filter(|c| !c.is_control()).collect();
            return Err(invalid(format!(
                "event_keys: \"{shown}\" is not one of Keap's event keys (e.g. contact.add, invoice.payment.add; the API reference lists them)."
            )));
        }
        // Kept in order as they come (a binary search, not a sort: no sort code in the Worker).
        match keys.binary_search(&k) {
            Ok(_) => return Err(invalid(format!("event_keys lists \"{k}\" twice."))),
            Err(at) => keys.insert(at, k),
        }
    }
    Ok(Wanted {
        event_keys: keys,
        hydrate: req.hydrate.unwrap_or(false),
    })
}

/// One event key's hook as keaplink keeps it (in the link's guard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookEntry {
    pub event_key: String,
    /// Keap's key of the hook, once created.
    #[serde(default)]
    pub keap_key: Option<String>,
    pub status: HookStatus,
    /// When the status last changed.
    pub since: UnixTime,
    #[serde(default)]
    pub last_event_at: Option<UnixTime>,
    #[serde(default)]
    pub error: Option<ErrorDetail>,
}

/// A link's hooks, as its guard keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkHooks {
    pub hooks: Vec<HookEntry>,
    pub hydrate: bool,
    #[serde(default)]
    pub checked_at: Option<UnixTime>,
    /// The link's hook URL token, sealed (made once, at the first subscription; kept while the
    /// link lives, so a link's URL never changes under Keap).
    #[serde(default)]
    pub url_token: Option<String>,
    /// Digests of the batches delivered lately, with when: the same batch again is not sent.
    #[serde(default)]
    pub seen: Vec<(String, UnixTime)>,
    /// Events in, delivered (accepted as new) and dropped as already seen.
    #[serde(default)]
    pub counts: HookCounts,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookCounts {
    pub received: u64,
    pub accepted: u64,
    pub duplicates: u64,
}

impl LinkHooks {
    pub fn entry(&self, event_key: &str) -> Option<&HookEntry> {
        self.hooks.iter().find(|h| h.event_key == event_key)
    }

    pub fn entry_mut(&mut self, event_key: &str) -> Option<&mut HookEntry> {
        self.hooks.iter_mut().find(|h| h.event_key == event_key)
    }

    /// Sets `event_key`'s status, noting when it changed.
    pub fn set_status(
        &mut self,
        event_key: &str,
        keap_key: Option<String>,
        status: HookStatus,
        error: Option<ErrorDetail>,
        now: UnixTime,
    ) {
        match self.entry_mut(event_key) {
            Some(e) => {
                if e.status != status {
                    e.since = now;
                }
                e.status = status;
                if keap_key.is_some() {
                    e.keap_key = keap_key;
                }
                e.error = error;
            }
            None => {
                let at = self
                    .hooks
                    .partition_point(|h| h.event_key.as_str() < event_key);
                self.hooks.insert(
                    at,
                    HookEntry {
                        event_key: event_key.to_owned(),
                        keap_key,
                        status,
                        since: now,
                        last_event_at: None,
                        error,
                    },
                );
            }
        }
    }

    pub fn remove(&mut self, event_key: &str) {
        self.hooks.retain(|h| h.event_key != event_key);
    }

    /// The API's view.
    pub fn to_api(&self) -> keaplink_api::Hooks {
        keaplink_api::Hooks {
            hooks: self
                .hooks
                .iter()
                .map(|h| keaplink_api::Hook {
                    event_key: h.event_key.clone(),
                    status: h.status,
                    error: h.error.clone(),
                    last_event_at: h.last_event_at.map(crate::clock::rfc3339),
                })
                .collect(),
            hydrate: self.hydrate,
            checked_at: self.checked_at.map(crate::clock::rfc3339),
        }
    }
}

/// A change to make at Keap so that a link's hooks are what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create {
        event_key: String,
    },
    /// Delete Keap's hook `keap_key` (an event key no longer wanted).
    Delete {
        event_key: String,
        keap_key: String,
    },
    /// No longer wanted and never created at Keap: just forget it.
    Forget {
        event_key: String,
    },
}

/// What to change at Keap so that `current` becomes `wanted`: deletions first (Keap allows one
/// hook per event key per app, so a key moved away must free its place), then creations of the
/// keys not yet subscribed or whose subscription failed.
pub fn set_plan(current: &LinkHooks, wanted: &Wanted) -> Vec<Change> {
    let mut plan = Vec::new();
    for h in &current.hooks {
        if !wanted.event_keys.contains(&h.event_key) {
            plan.push(match &h.keap_key {
                Some(k) => Change::Delete {
                    event_key: h.event_key.clone(),
                    keap_key: k.clone(),
                },
                None => Change::Forget {
                    event_key: h.event_key.clone(),
                },
            });
        }
    }
    for k in &wanted.event_keys {
        let have = current.entry(k);
        if have.is_none_or(|h| h.keap_key.is_none()) {
            plan.push(Change::Create {
                event_key: k.clone(),
            });
        }
    }
    plan
}

/// Every hook of the link to delete at Keap (disconnect, delete, export).
pub fn teardown(current: &LinkHooks) -> Vec<Change> {
    set_plan(
        current,
        &Wanted {
            event_keys: Vec::new(),
            hydrate: false,
        },
    )
}

/// A hook as Keap's REST v1 describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeapHook {
    pub key: String,
    pub event_key: String,
    pub hook_url: String,
    pub status: HookStatus,
}

#[derive(Deserialize)]
struct RawHook {
    key: serde_json::Value,
    #[serde(rename = "eventKey")]
    event_key: String,
    #[serde(rename = "hookUrl")]
    hook_url: String,
    #[serde(default)]
    status: String,
}

impl RawHook {
    fn read(self) -> Option<KeapHook> {
        let key = match self.key {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            _ => return None,
        };
        Some(KeapHook {
            key,
            event_key: self.event_key,
            hook_url: self.hook_url,
            status: keap_status(&self.status),
        })
    }
}

/// Keap's hook status words: `Verified`, `Unverified`, `Inactive`.
pub fn keap_status(s: &str) -> HookStatus {
    match s.to_ascii_lowercase().as_str() {
        "verified" => HookStatus::Verified,
        "inactive" => HookStatus::Inactive,
        _ => HookStatus::Pending,
    }
}

/// One hook (the answer to create, verify or delayedVerify); `None` if Keap answered otherwise.
pub fn parse_hook(body: &[u8]) -> Option<KeapHook> {
    serde_json::from_slice::<RawHook>(body).ok()?.read()
}

/// `GET /crm/rest/v1/hooks`: every hook of the token's Keap app.
pub fn parse_hooks(body: &[u8]) -> Option<Vec<KeapHook>> {
    let raw: Vec<RawHook> = serde_json::from_slice(body).ok()?;
    raw.into_iter().map(RawHook::read).collect()
}

/// What a check at Keap found for one wanted event key, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// Verified at Keap: nothing to do (the status is noted if it was otherwise).
    Fine { event_key: String, keap_key: String },
    /// Inactive, or Unverified past the grace: verify again.
    Verify { event_key: String, keap_key: String },
    /// Unverified within the grace: leave it.
    Wait { event_key: String, keap_key: String },
    /// Gone at Keap (deleted by someone, or never created): create again.
    Create { event_key: String },
    /// A hook at Keap with this link's URL that no event key wants (a creation whose answer was
    /// lost, say): delete it.
    Delete { keap_key: String },
}

/// Compares the link's hooks with Keap's list (`GET /hooks`, every hook of the app; only those
/// with this link's URL are its own).
pub fn check_plan(
    current: &LinkHooks,
    at_keap: &[KeapHook],
    our_url: &str,
    now: UnixTime,
) -> Vec<Repair> {
    let ours: Vec<&KeapHook> = at_keap.iter().filter(|h| h.hook_url == our_url).collect();
    let mut plan = Vec::new();
    let mut claimed: Vec<&str> = Vec::new();
    for h in &current.hooks {
        // Prefer the hook keaplink created (its key); else any of ours for that event key.
        let found = ours
            .iter()
            .find(|k| Some(&k.key) == h.keap_key.as_ref() && k.event_key == h.event_key)
            .or_else(|| ours.iter().find(|k| k.event_key == h.event_key));
        match found {
            None => plan.push(Repair::Create {
                event_key: h.event_key.clone(),
            }),
            Some(k) => {
                claimed.push(&k.key);
                let (event_key, keap_key) = (h.event_key.clone(), k.key.clone());
                plan.push(match k.status {
                    HookStatus::Verified => Repair::Fine {
                        event_key,
                        keap_key,
                    },
                    HookStatus::Pending
                        if h.status == HookStatus::Pending
                            && now - h.since < UNVERIFIED_GRACE_SECS =>
                    {
                        Repair::Wait {
                            event_key,
                            keap_key,
                        }
                    }
                    _ => Repair::Verify {
                        event_key,
                        keap_key,
                    },
                });
            }
        }
    }
    for k in ours {
        if !claimed.contains(&k.key.as_str()) {
            plan.push(Repair::Delete {
                keap_key: k.key.clone(),
            });
        }
    }
    plan
}

/// Whether the sweep should have a link's hooks checked: hooks checked (or set) at
/// `checked_at`, at most every `every_secs` (0: at every sweep). `None`: the link has no hooks.
pub fn check_due(checked_at: Option<UnixTime>, now: UnixTime, every_secs: i64) -> bool {
    match checked_at {
        None => false,
        // A sweep runs hourly: a minute's slack keeps an hourly check from slipping a whole hour
        // because the last one finished a few seconds after the hour.
        Some(t) => every_secs <= 0 || now - t >= every_secs - 60,
    }
}

/// The KV key that routes a hook URL's posts to its link: a hash of the URL's token, so the
/// index reveals no URL.
pub fn index_key(url_token: &str) -> String {
    format!("hk/{}", storage_hash(url_token))
}

/// Where the inbox leaves a handshake's `X-Hook-Secret` for `delayedVerify`, briefly.
pub fn secret_key(url_token: &str) -> String {
    format!("hs/{}", storage_hash(url_token))
}

pub fn hook_url(public_url: &str, url_token: &str) -> String {
    format!(
        "{}{INBOX_PATH}{url_token}",
        public_url.trim_end_matches('/')
    )
}

/// A new hook URL token from 32 random bytes (256 bits, 43 base64url characters).
pub fn new_url_token(random: [u8; 32]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
}

/// A URL token as it may appear in a path: 43 base64url characters (256 bits).
pub fn url_token(path_segment: &str) -> Option<&str> {
    (path_segment.len() == 43
        && path_segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then_some(path_segment)
}

/// What the hook URL's index holds: the link, named by its connection key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEntry {
    pub key: crate::connection::ConnectionKey,
}

/// A batch Keap posted, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub event_key: String,
    pub object_type: String,
    pub object_keys: Vec<KeapObjectKey>,
}

#[derive(Deserialize)]
struct RawBatch {
    event_key: String,
    #[serde(default)]
    object_type: Option<String>,
    object_keys: Vec<RawObjectKey>,
}

#[derive(Deserialize)]
struct RawObjectKey {
    id: serde_json::Value,
    #[serde(default)]
    timestamp: Option<String>,
}

/// Reads what Keap posted to a hook URL. 400 for a body that is not Keap's shape (Keap never
/// sends one; someone else holding the URL might).
pub fn batch(body: &[u8]) -> ApiResult<Batch> {
    if body.len() > MAX_BATCH_BYTES {
        return Err(ApiError::new(
            ErrorCode::BodyTooLarge,
            "The body is over the 512 KiB limit.",
        ));
    }
    let raw: RawBatch = serde_json::from_slice(body).map_err(|_| {
        invalid("The body is not a Keap hook event ({\"event_key\", \"object_type\", \"object_keys\": [{\"id\"}]}).")
    })?;
    if !EVENT_KEYS.contains(&raw.event_key.as_str()) {
        return Err(invalid("event_key is not one of Keap's event keys."));
    }
    if raw.object_keys.len() > MAX_OBJECT_KEYS {
        return Err(invalid("object_keys lists more than 1,000 objects."));
    }
    let mut keys = Vec::with_capacity(raw.object_keys.len());
    for k in raw.object_keys {
        let id = match &k.id {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| invalid("object_keys: each id must be a whole number."))?;
        let timestamp = k
            .timestamp
            .filter(|t| t.len() <= 64 && !t.chars().any(char::is_control));
        keys.push(KeapObjectKey { id, timestamp });
    }
    // Keap names the type in the body; older hooks left it out: it is the event key's first part.
    let object_type = raw
        .object_type
        .filter(|t| {
            !t.is_empty()
                && t.len() <= 64
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
        .unwrap_or_else(|| {
            raw.event_key
                .split('.')
                .next()
                .unwrap_or_default()
                .to_owned()
        });
    Ok(Batch {
        event_key: raw.event_key,
        object_type,
        object_keys: keys,
    })
}

impl Batch {
    /// The batch's identity: Keap sends the same event key, objects and timestamps again when
    /// it retries, whenever that is, so this (not the arrival time) tells a retry from news.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.event_key.as_bytes());
        h.update([0]);
        h.update(self.object_type.as_bytes());
        for k in &self.object_keys {
            h.update([0]);
            h.update(k.id.to_string().as_bytes());
            h.update([1]);
            h.update(k.timestamp.as_deref().unwrap_or("").as_bytes());
        }
        hex(&h.finalize()[..16])
    }

    /// The object key ranges of the events this batch is sent as: one, or with `hydrate` parts
    /// of at most [`HYDRATE_PART`].
    pub fn parts(&self, hydrate: bool) -> Vec<std::ops::Range<usize>> {
        let n = self.object_keys.len();
        if !hydrate || n <= HYDRATE_PART {
            #[allow(clippy::single_range_in_vec_init)]
            return vec![0..n];
        }
        (0..n)
            .step_by(HYDRATE_PART)
            .map(|s| s..(s + HYDRATE_PART).min(n))
            .collect()
    }
}

/// Notes `digest` as delivered: `false` if it was already (a retry by Keap). Forgets what is
/// older than a day, and the oldest past [`SEEN_MAX`].
pub fn first_time(seen: &mut Vec<(String, UnixTime)>, digest: &str, now: UnixTime) -> bool {
    seen.retain(|(_, at)| now - *at < SEEN_KEEP_SECS);
    if seen.iter().any(|(d, _)| d == digest) {
        return false;
    }
    if seen.len() >= SEEN_MAX {
        seen.remove(0);
    }
    seen.push((digest.to_owned(), now));
    true
}

/// The event id of part `part` of a batch for a link: the same on every delivery of it, so even
/// a receiver that missed keaplink's dedupe can tell.
pub fn event_id(connection_id: &str, digest: &str, part: usize) -> String {
    let d = Sha256::digest(format!("{connection_id}\n{digest}\n{part}").as_bytes());
    format!("evt_{}", hex(&d[..16]))
}

/// Where Keap's REST API keeps an object of `object_type`, for `hydrate`.
pub fn object_path(object_type: &str, id: i64) -> Option<String> {
    let base = match object_type {
        "contact" => "/crm/rest/v2/contacts",
        "company" => "/crm/rest/v2/companies",
        "opportunity" => "/crm/rest/v2/opportunities",
        "order" | "invoice" => "/crm/rest/v2/orders",
        "product" => "/crm/rest/v2/products",
        "subscription" => "/crm/rest/v2/subscriptions",
        "task" => "/crm/rest/v2/tasks",
        "note" => "/crm/rest/v2/notes",
        "appointment" => "/crm/rest/v1/appointments",
        _ => return None,
    };
    (id > 0).then(|| format!("{base}/{id}"))
}

/// What became of one hydrate read, as the event says it.
pub fn unread(id: i64, code: &str) -> keaplink_api::UnreadObject {
    let message = match code {
        "needs_reauth" => "The link needs its user to reconnect; the object was not read.",
        "keap_quota" => {
            "Keap's quota is kept for keeping links alive just now; read the object later through the proxy."
        }
        "not_found" => "Keap has no such object now (it may have been deleted since).",
        "unsupported" => "keaplink does not read this object type; read it through the proxy.",
        "keap_timeout" => "Keap did not answer in time.",
        _ => "Keap did not answer with the object.",
    };
    keaplink_api::UnreadObject {
        id,
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

/// The code an object read comes to, from Keap's status (`None`: no answer in time).
pub fn read_outcome(status: Option<u16>) -> Result<(), &'static str> {
    match status {
        Some(200..=299) => Ok(()),
        Some(401) => Err("needs_reauth"),
        Some(404) => Err("not_found"),
        Some(429) => Err("keap_quota"),
        None => Err("keap_timeout"),
        Some(_) => Err("keap_error"),
    }
}

/// A Keap answer's status as a hook's error (for `failed` and a restore that failed).
pub fn keap_refusal(status: Option<u16>) -> ErrorDetail {
    let (code, message) = match status {
        Some(401) => (
            "needs_reauth",
            "Keap no longer accepts the link's token; the user must reconnect.",
        ),
        Some(429) => (
            "keap_quota",
            "Keap's quota was spent; the next check tries again.",
        ),
        None => (
            "keap_timeout",
            "Keap did not answer in time; the next check tries again.",
        ),
        Some(s) if s >= 500 => (
            "keap_error",
            "Keap failed to answer; the next check tries again.",
        ),
        Some(_) => (
            "keap_error",
            "Keap refused the subscription; the next check tries again.",
        ),
    };
    ErrorDetail {
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

/// Part `part` (of `of`) of a batch as the partner receives it: `objects`/`unread` are what
/// `hydrate` read (none without it).
#[allow(clippy::too_many_arguments)]
pub fn delivery(
    record: &crate::connection::ConnectionRecord,
    batch: &Batch,
    digest: &str,
    part: usize,
    of: usize,
    range: std::ops::Range<usize>,
    hydrated: Option<(Vec<serde_json::Value>, Vec<keaplink_api::UnreadObject>)>,
    now: UnixTime,
) -> crate::webhook::QueuedEvent {
    let (objects, unread) = match hydrated {
        Some((o, u)) => (Some(o), (!u.is_empty()).then_some(u)),
        None => (None, None),
    };
    let event = keaplink_api::KeapEventDelivery {
        id: event_id(record.id.as_str(), digest, part),
        kind: format!("keap.{}", batch.event_key),
        created_at: crate::clock::rfc3339(now),
        partner_id: record.partner.as_str().to_owned(),
        user: record.user.as_str().to_owned(),
        connection: record.to_api(),
        keap_event: keaplink_api::KeapEvent {
            event_key: batch.event_key.clone(),
            object_type: batch.object_type.clone(),
            object_keys: batch.object_keys[range].to_vec(),
            objects,
            unread,
            part: (of > 1).then_some(keaplink_api::EventPart {
                index: part as u32 + 1,
                of: of as u32,
            }),
        },
    };
    crate::webhook::QueuedEvent {
        id: event.id.clone(),
        kind: crate::webhook::EventKind::Keap,
        partner: record.partner.clone(),
        user: Some(record.user.clone()),
        connection_id: Some(record.id.as_str().to_owned()),
        created_at: event.created_at.clone(),
        body: serde_json::to_string(&event).unwrap_or_default(),
        keap_type: Some(event.kind),
    }
}

/// A call to Keap's REST API with the link's access token (`path` from `KEAP_API_URL`).
pub fn keap_request(
    api_url: &url::Url,
    method: &'static str,
    path: &str,
    access_token: &crate::Secret,
    body: Option<String>,
    hook_secret: Option<&crate::Secret>,
) -> crate::keap::OutboundRequest {
    let mut url = api_url.clone();
    url.set_path(path);
    url.set_query(None);
    let mut headers = vec![
        ("accept", crate::Secret::new("application/json")),
        (
            "authorization",
            crate::Secret::new(format!("Bearer {}", access_token.expose())),
        ),
    ];
    if body.is_some() {
        headers.push(("content-type", crate::Secret::new("application/json")));
    }
    if let Some(s) = hook_secret {
        headers.push(("x-hook-secret", s.clone()));
    }
    crate::keap::OutboundRequest {
        method,
        url,
        headers,
        body,
    }
}

/// Keap's `POST /hooks` body.
pub fn create_body(event_key: &str, hook_url: &str) -> String {
    serde_json::json!({"eventKey": event_key, "hookUrl": hook_url}).to_string()
}

/// Keap's hook path: `/crm/rest/v1/hooks[/<key>[/<action>]]`.
pub fn hooks_path(keap_key: Option<&str>, action: Option<&str>) -> String {
    let mut p = String::from("/crm/rest/v1/hooks");
    if let Some(k) = keap_key {
        p.push('/');
        p.extend(url::form_urlencoded::byte_serialize(k.as_bytes()));
        if let Some(a) = action {
            p.push('/');
            p.push_str(a);
        }
    }
    p
}

/// What a hooks session is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `PUT`/`DELETE .../hooks`: make the link's hooks these.
    Set(Wanted),
    /// The sweep's check: compare with Keap's list and restore what lapsed.
    Check,
    /// The link goes (disconnect, delete, export): delete every hook at Keap.
    Teardown,
}

/// One call to Keap's hooks API a session asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: &'static str,
    pub path: String,
    pub body: Option<String>,
    /// Send the handshake secret the inbox kept (`delayedVerify`): the adapter reads it, and
    /// answers `no_secret` when there is none.
    pub with_secret: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Todo {
    List,
    Create(String),
    Delete {
        event_key: Option<String>,
        keap_key: String,
    },
    Forget(String),
    Verify {
        event_key: String,
        keap_key: String,
    },
    Delayed {
        event_key: String,
        keap_key: String,
        restore: Option<&'static str>,
    },
}

/// A timeline note a session leaves: (kind, code, detail).
pub type Note = (keaplink_api::ConnectionEventKind, Option<String>, String);

/// The changes to a link's hooks at Keap, one call at a time: the adapter sends each [`Call`]
/// `next` gives, with the link's token, and hands the answer to `answer`; `finish` gives the
/// hooks as they now stand and the timeline notes. Sans I/O, so every path is a unit test.
#[derive(Debug)]
pub struct Session {
    mode: Mode,
    hooks: LinkHooks,
    url: String,
    now: UnixTime,
    todo: std::collections::VecDeque<Todo>,
    current: Option<Todo>,
    notes: Vec<Note>,
    /// Teardown: hooks Keap did not delete, and why.
    left: usize,
    left_code: Option<String>,
    /// How many hooks the link had when the session began.
    had: usize,
    pub restored: u32,
}

impl Session {
    pub fn new(mode: Mode, hooks: LinkHooks, url: String, now: UnixTime) -> Session {
        let mut todo = std::collections::VecDeque::new();
        let plan = match &mode {
            Mode::Set(w) => set_plan(&hooks, w),
            Mode::Teardown => teardown(&hooks),
            Mode::Check => {
                if !hooks.hooks.is_empty() {
                    todo.push_back(Todo::List);
                }
                Vec::new()
            }
        };
        for c in plan {
            todo.push_back(match c {
                Change::Create { event_key } => Todo::Create(event_key),
                Change::Delete {
                    event_key,
                    keap_key,
                } => Todo::Delete {
                    event_key: Some(event_key),
                    keap_key,
                },
                Change::Forget { event_key } => Todo::Forget(event_key),
            });
        }
        Session {
            mode,
            hooks,
            url,
            now,
            todo,
            current: None,
            notes: Vec::new(),
            left: 0,
            left_code: None,
            had: 0,
            restored: 0,
        }
        .counted()
    }

    fn counted(mut self) -> Session {
        self.had = self.hooks.hooks.len();
        self
    }

    /// Whether the session calls Keap at all (else no token is needed).
    pub fn calls_keap(&self) -> bool {
        self.todo.iter().any(|t| !matches!(t, Todo::Forget(_)))
    }

    /// The next call to make, or `None`: done.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Call> {
        loop {
            let t = self.todo.pop_front()?;
            let call = match &t {
                Todo::Forget(k) => {
                    self.hooks.remove(k);
                    continue;
                }
                Todo::List => Call {
                    method: "GET",
                    path: hooks_path(None, None),
                    body: None,
                    with_secret: false,
                },
                Todo::Create(k) => Call {
                    method: "POST",
                    path: hooks_path(None, None),
                    body: Some(create_body(k, &self.url)),
                    with_secret: false,
                },
                Todo::Delete { keap_key, .. } => Call {
                    method: "DELETE",
                    path: hooks_path(Some(keap_key), None),
                    body: None,
                    with_secret: false,
                },
                Todo::Verify { keap_key, .. } => Call {
                    method: "POST",
                    path: hooks_path(Some(keap_key), Some("verify")),
                    body: None,
                    with_secret: false,
                },
                Todo::Delayed { keap_key, .. } => Call {
                    method: "POST",
                    path: hooks_path(Some(keap_key), Some("delayedVerify")),
                    body: None,
                    with_secret: true,
                },
            };
            self.current = Some(t);
            return Some(call);
        }
    }

    /// The handshake secret a `delayedVerify` needs was not kept (Keap's handshake never came,
    /// or it expired): the hook stays pending, and the next check verifies it again.
    pub fn no_secret(&mut self) {
        if let Some(Todo::Delayed {
            event_key, restore, ..
        }) = self.current.take()
        {
            self.settled(&event_key, None, HookStatus::Pending, None, restore);
        }
    }

    /// Keap's answer to the call `next` gave: its status (`None`: no answer in time) and body.
    pub fn answer(&mut self, status: Option<u16>, body: &[u8]) {
        let Some(t) = self.current.take() else { return };
        let ok = matches!(status, Some(200..=299));
        match t {
            Todo::Forget(_) => {}
            Todo::List => {
                let Some(at_keap) = ok.then(|| parse_hooks(body)).flatten() else {
                    // Checked again at the next sweep: `checked_at` is not moved.
                    self.left = 1;
                    return;
                };
                for r in check_plan(&self.hooks, &at_keap, &self.url, self.now) {
                    match r {
                        Repair::Fine {
                            event_key,
                            keap_key,
                        } => self.hooks.set_status(
                            &event_key,
                            Some(keap_key),
                            HookStatus::Verified,
                            None,
                            self.now,
                        ),
                        Repair::Wait { .. } => {}
                        Repair::Verify {
                            event_key,
                            keap_key,
                        } => self.todo.push_back(Todo::Verify {
                            event_key,
                            keap_key,
                        }),
                        Repair::Create { event_key } => {
                            self.todo.push_back(Todo::Create(event_key))
                        }
                        Repair::Delete { keap_key } => self.todo.push_back(Todo::Delete {
                            event_key: None,
                            keap_key,
                        }),
                    }
                }
            }
            Todo::Create(event_key) => {
                let restore = (self.mode == Mode::Check).then_some("gone at Keap; created again");
                match ok.then(|| parse_hook(body)).flatten() {
                    Some(h) if h.status == HookStatus::Pending => {
                        self.hooks.set_status(
                            &event_key,
                            Some(h.key.clone()),
                            HookStatus::Pending,
                            None,
                            self.now,
                        );
                        self.todo.push_front(Todo::Delayed {
                            event_key,
                            keap_key: h.key,
                            restore,
                        });
                    }
                    Some(h) => self.settled(&event_key, Some(h.key), h.status, None, restore),
                    None => {
                        let e = keap_refusal(if ok { Some(502) } else { status });
                        self.settled(&event_key, None, HookStatus::Failed, Some(e), restore)
                    }
                }
            }
            Todo::Verify {
                event_key,
                keap_key,
            } => {
                let was = self.hooks.entry(&event_key).map(|e| e.status);
                let restore = Some(if was == Some(HookStatus::Pending) {
                    "Unverified at Keap; verified again"
                } else {
                    "Inactive at Keap; verified again"
                });
                match ok.then(|| parse_hook(body)).flatten() {
                    Some(h) if h.status == HookStatus::Pending => {
                        self.todo.push_front(Todo::Delayed {
                            event_key,
                            keap_key,
                            restore,
                        })
                    }
                    Some(h) => self.settled(&event_key, Some(keap_key), h.status, None, restore),
                    None => {
                        let e = keap_refusal(if ok { Some(502) } else { status });
                        let status = was.unwrap_or(HookStatus::Inactive);
                        self.settled(&event_key, Some(keap_key), status, Some(e), restore)
                    }
                }
            }
            Todo::Delayed {
                event_key,
                keap_key,
                restore,
            } => {
                let status = match ok.then(|| parse_hook(body)).flatten() {
                    Some(h) => h.status,
                    None => HookStatus::Pending,
                };
                self.settled(&event_key, Some(keap_key), status, None, restore);
            }
            Todo::Delete { event_key, .. } => {
                if !ok && status != Some(404) {
                    self.left += 1;
                    self.left_code = Some(keap_refusal(status).code);
                }
                // Gone for the partner either way: one Keap failed to delete is still ours by
                // its URL, and the next check deletes it.
                if let Some(k) = event_key {
                    self.hooks.remove(&k);
                }
            }
        }
    }

    /// Notes where `event_key`'s hook ended, and for a check whether it was restored.
    fn settled(
        &mut self,
        event_key: &str,
        keap_key: Option<String>,
        status: HookStatus,
        error: Option<ErrorDetail>,
        restore: Option<&'static str>,
    ) {
        if let Some(what) = restore {
            if status == HookStatus::Verified {
                self.restored += 1;
                self.notes.push((
                    keaplink_api::ConnectionEventKind::HookRestored,
                    None,
                    format!("{event_key}: {what}."),
                ));
            } else {
                let (first, _) = what.split_once(';').unwrap_or((what, ""));
                self.notes.push((
                    keaplink_api::ConnectionEventKind::HookRestoreFailed,
                    error.as_ref().map(|e| e.code.clone()),
                    format!("{event_key}: {first}; restoring it failed."),
                ));
            }
        }
        self.hooks
            .set_status(event_key, keap_key, status, error, self.now);
    }

    /// The session could not call Keap at all (no usable token): `code` says why. What was to
    /// be deleted is forgotten here all the same (its URL answers Keap 410 once the link has no
    /// hook left, which makes Keap stop); what was to be created is `failed`.
    pub fn without_keap(&mut self, code: &str) {
        self.left = self.todo.len();
        self.left_code = Some(code.to_owned());
        let error = ErrorDetail {
            code: code.to_owned(),
            message: "keaplink could not call Keap for this link (it needs its user to reconnect); the next check tries again.".to_owned(),
        };
        for t in std::mem::take(&mut self.todo) {
            match t {
                Todo::Delete {
                    event_key: Some(k), ..
                }
                | Todo::Forget(k) => self.hooks.remove(&k),
                Todo::Create(k) => self.hooks.set_status(
                    &k,
                    None,
                    HookStatus::Failed,
                    Some(error.clone()),
                    self.now,
                ),
                _ => {}
            }
        }
    }

    /// The hooks as they now stand, and the timeline's notes.
    pub fn finish(mut self) -> (LinkHooks, Vec<Note>) {
        match &self.mode {
            Mode::Set(w) => {
                self.hooks.hydrate = w.hydrate;
                self.hooks.checked_at = (!self.hooks.hooks.is_empty()).then_some(self.now);
                let detail = if w.event_keys.is_empty() {
                    "None.".to_owned()
                } else {
                    format!(
                        "{}{}.",
                        w.event_keys.join(", "),
                        if w.hydrate { " (hydrate)" } else { "" }
                    )
                };
                self.notes
                    .push((keaplink_api::ConnectionEventKind::HooksSet, None, detail));
            }
            Mode::Check => {
                // A list Keap did not answer is checked again at the next sweep.
                if self.left == 0 {
                    self.hooks.checked_at = Some(self.now);
                }
            }
            Mode::Teardown => {
                let had = self.had;
                if had > 0 {
                    let detail = if self.left == 0 {
                        format!("{had} deleted at Keap.")
                    } else {
                        format!(
                            "{} of {had} deleted at Keap; the others' posts are answered 410, which makes Keap stop.",
                            had.saturating_sub(self.left)
                        )
                    };
                    self.notes.push((
                        keaplink_api::ConnectionEventKind::HooksRemoved,
                        self.left_code.take(),
                        detail,
                    ));
                }
                self.hooks.hooks.clear();
                self.hooks.checked_at = None;
            }
        }
        (self.hooks, self.notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(entries: &[(&str, Option<&str>, HookStatus, i64)]) -> LinkHooks {
        LinkHooks {
            hooks: entries
                .iter()
                .map(|(k, key, s, since)| HookEntry {
                    event_key: (*k).into(),
                    keap_key: key.map(Into::into),
                    status: *s,
                    since: *since,
                    last_event_at: None,
                    error: None,
                })
                .collect(),
            ..LinkHooks::default()
        }
    }

    fn keap(key: &str, event: &str, url: &str, status: HookStatus) -> KeapHook {
        KeapHook {
            key: key.into(),
            event_key: event.into(),
            hook_url: url.into(),
            status,
        }
    }

    #[test]
    fn a_body_names_the_unknown_key_and_refuses_lists_and_repeats() {
        let w =
            wanted(br#"{"event_keys": ["invoice.add", "contact.add"], "hydrate": true}"#).unwrap();
        assert_eq!(w.event_keys, vec!["contact.add", "invoice.add"]);
        assert!(w.hydrate);
        assert!(!wanted(br#"{"event_keys": []}"#).unwrap().hydrate);
        let e = wanted(br#"{"event_keys": ["contact.add", "contact.explode"]}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.message.contains("contact.explode"), "{}", e.message);
        let e = wanted(br#"{"event_keys": ["contact.add", "contact.add"]}"#).unwrap_err();
        assert!(e.message.contains("twice"));
        let e = wanted(br#"{"event_keys": "contact.add"}"#).unwrap_err();
        assert!(e.message.contains("event_keys"), "{}", e.message);
        assert!(wanted(br#"["contact.add"]"#).is_err());
        assert!(wanted(br#"{}"#).is_err());
        let many: Vec<String> = (0..100).map(|i| format!("\"k{i}\"")).collect();
        let body = format!("{{\"event_keys\": [{}]}}", many.join(","));
        let e = wanted(body.as_bytes()).unwrap_err();
        assert!(e.message.contains("100 keys"), "{}", e.message);
        // A control character in an unknown key is not echoed.
        let e = wanted(b"{\"event_keys\": [\"a\\u0007b\"]}").unwrap_err();
        assert!(!e.message.contains('\u{7}'));
    }

    #[test]
    fn setting_deletes_first_then_creates_what_is_missing() {
        let cur = hooks(&[
            ("contact.add", Some("1"), HookStatus::Verified, 0),
            ("contact.edit", Some("2"), HookStatus::Verified, 0),
            ("invoice.add", None, HookStatus::Failed, 0),
            ("order.add", None, HookStatus::Failed, 0),
        ]);
        let plan = set_plan(
            &cur,
            &Wanted {
                event_keys: vec![
                    "contact.add".into(),
                    "invoice.add".into(),
                    "task.add".into(),
                ],
                hydrate: false,
            },
        );
        assert_eq!(
            plan,
            vec![
                Change::Delete {
                    event_key: "contact.edit".into(),
                    keap_key: "2".into()
                },
                Change::Forget {
                    event_key: "order.add".into()
                },
                Change::Create {
                    event_key: "invoice.add".into()
                },
                Change::Create {
                    event_key: "task.add".into()
                },
            ]
        );
        assert_eq!(teardown(&cur).len(), 4);
        assert!(teardown(&LinkHooks::default()).is_empty());
    }

    #[test]
    fn a_check_verifies_inactive_and_stale_unverified_and_recreates_the_vanished() {
        let url = "https://k.example/hooks/keap/T";
        let cur = hooks(&[
            ("contact.add", Some("1"), HookStatus::Verified, 0),
            ("contact.edit", Some("2"), HookStatus::Verified, 0),
            ("invoice.add", Some("3"), HookStatus::Pending, 1000),
            ("order.add", Some("4"), HookStatus::Pending, 0),
            ("task.add", Some("5"), HookStatus::Verified, 0),
        ]);
        let at_keap = vec![
            keap("1", "contact.add", url, HookStatus::Verified),
            keap("2", "contact.edit", url, HookStatus::Inactive),
            keap("3", "invoice.add", url, HookStatus::Pending),
            keap("4", "order.add", url, HookStatus::Pending),
            // Another link's (or the partner's own) hook for the same key is not ours.
            keap(
                "9",
                "task.add",
                "https://elsewhere.example/h",
                HookStatus::Verified,
            ),
            // Ours, but no key wants it: a creation whose answer was lost.
            keap("7", "note.add", url, HookStatus::Verified),
        ];
        let plan = check_plan(&cur, &at_keap, url, 1000 + UNVERIFIED_GRACE_SECS - 1);
        assert_eq!(
            plan,
            vec![
                Repair::Fine {
                    event_key: "contact.add".into(),
                    keap_key: "1".into()
                },
                Repair::Verify {
                    event_key: "contact.edit".into(),
                    keap_key: "2".into()
                },
                Repair::Wait {
                    event_key: "invoice.add".into(),
                    keap_key: "3".into()
                },
                Repair::Verify {
                    event_key: "order.add".into(),
                    keap_key: "4".into()
                },
                Repair::Create {
                    event_key: "task.add".into()
                },
                Repair::Delete {
                    keap_key: "7".into()
                },
            ]
        );
        // Past the grace, the unverified one is verified again too.
        let later = check_plan(&cur, &at_keap, url, 1000 + UNVERIFIED_GRACE_SECS);
        assert!(later.contains(&Repair::Verify {
            event_key: "invoice.add".into(),
            keap_key: "3".into()
        }));
        // A hook Keap re-keyed (deleted and made again by hand) is adopted, not duplicated.
        let rekeyed = vec![keap("42", "contact.add", url, HookStatus::Verified)];
        let cur = hooks(&[("contact.add", Some("1"), HookStatus::Verified, 0)]);
        assert_eq!(
            check_plan(&cur, &rekeyed, url, 0),
            vec![Repair::Fine {
                event_key: "contact.add".into(),
                keap_key: "42".into()
            }]
        );
    }

    #[test]
    fn keap_hooks_read_with_numeric_or_string_keys() {
        let one = parse_hook(
            br#"{"key": 17, "eventKey": "contact.add", "hookUrl": "u", "status": "Verified"}"#,
        )
        .unwrap();
        assert_eq!(one.key, "17");
        assert_eq!(one.status, HookStatus::Verified);
        let list = parse_hooks(br#"[{"key": "3", "eventKey": "a", "hookUrl": "u", "status": "Unverified"}, {"key": 4, "eventKey": "b", "hookUrl": "u", "status": "Inactive"}]"#).unwrap();
        assert_eq!(list[0].status, HookStatus::Pending);
        assert_eq!(list[1].status, HookStatus::Inactive);
        assert!(parse_hook(b"{}").is_none());
        assert!(parse_hooks(b"{}").is_none());
    }

    #[test]
    fn checks_are_due_by_the_interval_and_zero_means_every_sweep() {
        assert!(!check_due(None, 10_000, 0));
        assert!(check_due(Some(10_000), 10_000, 0));
        assert!(!check_due(Some(10_000), 10_000 + 3000, 3600));
        assert!(check_due(Some(10_000), 10_000 + 3545, 3600));
        assert!(check_due(Some(10_000), 10_000 + 7200, 3600));
    }

    #[test]
    fn tokens_urls_and_index_keys() {
        let t = "A".repeat(43);
        assert_eq!(url_token(&t), Some(t.as_str()));
        assert_eq!(url_token("short"), None);
        assert_eq!(url_token(&format!("{}/", "A".repeat(42))), None);
        assert_eq!(
            hook_url("https://k.example/", &t),
            format!("https://k.example/hooks/keap/{t}")
        );
        let idx = index_key(&t);
        assert!(idx.starts_with("hk/") && !idx.contains(&t));
        assert_ne!(idx[3..], secret_key(&t)[3..].to_owned() + "x");
    }

    #[test]
    fn batches_read_keaps_shape_and_digest_by_content() {
        let body = br#"{"event_key": "contact.add", "object_type": "contact", "object_keys": [{"id": 5, "apiUrl": "https://api.infusionsoft.com/crm/rest/v1/contacts/5", "timestamp": "2026-12-07T10:00:00Z"}, {"id": "6", "timestamp": "2026-12-07T10:00:01Z"}]}"#;
        let b = batch(body).unwrap();
        assert_eq!(b.object_keys.len(), 2);
        assert_eq!(b.object_keys[1].id, 6);
        // The same content again (a retry), whatever its spacing: the same digest.
        let again = batch(br#"{"object_keys":[{"id":5,"timestamp":"2026-12-07T10:00:00Z"},{"id":6,"timestamp":"2026-12-07T10:00:01Z"}],"event_key":"contact.add","object_type":"contact"}"#).unwrap();
        assert_eq!(b.digest(), again.digest());
        // A later change to the same object is news.
        let later = batch(br#"{"event_key": "contact.add", "object_type": "contact", "object_keys": [{"id": 5, "timestamp": "2026-12-07T11:00:00Z"}, {"id": 6, "timestamp": "2026-12-07T10:00:01Z"}]}"#).unwrap();
        assert_ne!(b.digest(), later.digest());
        // Without object_type, the event key says it.
        let t = batch(br#"{"event_key": "invoice.payment.add", "object_keys": []}"#).unwrap();
        assert_eq!(t.object_type, "invoice");
        assert!(batch(b"not json").is_err());
        assert!(batch(br#"{"event_key": "nope.add", "object_keys": []}"#).is_err());
        assert!(batch(br#"{"event_key": "contact.add", "object_keys": [{"id": "x"}]}"#).is_err());
        let many: Vec<String> = (0..1001).map(|i| format!("{{\"id\":{i}}}")).collect();
        let body = format!(
            "{{\"event_key\":\"contact.add\",\"object_keys\":[{}]}}",
            many.join(",")
        );
        assert!(batch(body.as_bytes()).is_err());
    }

    #[test]
    fn a_batch_is_delivered_once_whenever_keap_sends_it_again() {
        let mut seen = Vec::new();
        assert!(first_time(&mut seen, "d1", 100));
        assert!(!first_time(&mut seen, "d1", 100 + 36 * 60));
        assert!(first_time(&mut seen, "d2", 200));
        // A day later it is forgotten (Keap's retries are long over).
        assert!(first_time(&mut seen, "d1", 100 + SEEN_KEEP_SECS));
        let mut full: Vec<(String, i64)> = (0..SEEN_MAX).map(|i| (format!("x{i}"), 1)).collect();
        assert!(first_time(&mut full, "new", 2));
        assert_eq!(full.len(), SEEN_MAX);
        assert_eq!(full[0].0, "x1");
        assert_eq!(event_id("c1", "d", 0), event_id("c1", "d", 0));
        assert_ne!(event_id("c1", "d", 0), event_id("c2", "d", 0));
        assert_ne!(event_id("c1", "d", 0), event_id("c1", "d", 1));
    }

    #[test]
    fn hydrated_batches_go_in_parts_of_fifty() {
        let keys = |n: i64| Batch {
            event_key: "contact.add".into(),
            object_type: "contact".into(),
            object_keys: (1..=n)
                .map(|id| KeapObjectKey {
                    id,
                    timestamp: None,
                })
                .collect(),
        };
        assert_eq!(keys(1000).parts(false), vec![0..1000]);
        let p = keys(120).parts(true);
        assert_eq!(p, vec![0..50, 50..100, 100..120]);
        assert_eq!(keys(50).parts(true), vec![0..50]);
        assert_eq!(keys(0).parts(true), vec![0..0]);
    }

    #[test]
    fn objects_are_read_where_keap_keeps_them() {
        assert_eq!(
            object_path("contact", 5).as_deref(),
            Some("/crm/rest/v2/contacts/5")
        );
        assert_eq!(
            object_path("invoice", 7).as_deref(),
            Some("/crm/rest/v2/orders/7")
        );
        assert_eq!(object_path("contactGroup", 5), None);
        assert_eq!(object_path("contact", -1), None);
        assert_eq!(read_outcome(Some(200)), Ok(()));
        assert_eq!(read_outcome(Some(401)), Err("needs_reauth"));
        assert_eq!(read_outcome(Some(404)), Err("not_found"));
        assert_eq!(read_outcome(None), Err("keap_timeout"));
        assert_eq!(unread(5, "needs_reauth").code, "needs_reauth");
    }

    #[test]
    fn statuses_change_with_their_time() {
        let mut h = LinkHooks::default();
        h.set_status(
            "contact.add",
            Some("1".into()),
            HookStatus::Pending,
            None,
            10,
        );
        h.set_status("contact.add", None, HookStatus::Pending, None, 20);
        assert_eq!(h.entry("contact.add").unwrap().since, 10);
        h.set_status("contact.add", None, HookStatus::Verified, None, 30);
        let e = h.entry("contact.add").unwrap();
        assert_eq!((e.since, e.keap_key.as_deref()), (30, Some("1")));
        h.set_status(
            "a.b",
            None,
            HookStatus::Failed,
            Some(keap_refusal(Some(400))),
            40,
        );
        assert_eq!(h.hooks[0].event_key, "a.b");
        let api = h.to_api();
        assert_eq!(api.hooks.len(), 2);
        assert_eq!(api.hooks[0].error.as_ref().unwrap().code, "keap_error");
        h.remove("a.b");
        assert_eq!(h.hooks.len(), 1);
    }
    fn hook_json(key: u64, event: &str, url: &str, status: &str) -> Vec<u8> {
        serde_json::json!({"key": key, "eventKey": event, "hookUrl": url, "status": status})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn a_session_sets_hooks_and_falls_back_to_delayed_verify() {
        let url = "https://k.example/hooks/keap/T".to_owned();
        let wanted = Wanted {
            event_keys: vec![
                "contact.add".into(),
                "invoice.add".into(),
                "order.add".into(),
            ],
            hydrate: true,
        };
        let mut s = Session::new(Mode::Set(wanted), LinkHooks::default(), url.clone(), 100);
        assert!(s.calls_keap());
        let c = s.next().unwrap();
        assert_eq!((c.method, c.path.as_str()), ("POST", "/crm/rest/v1/hooks"));
        assert!(c.body.unwrap().contains(&url));
        s.answer(Some(200), &hook_json(1, "contact.add", &url, "Verified"));
        // The echo did not land: delayedVerify with the kept secret, before anything else.
        s.next().unwrap();
        s.answer(Some(200), &hook_json(2, "invoice.add", &url, "Unverified"));
        let c = s.next().unwrap();
        assert_eq!(c.path, "/crm/rest/v1/hooks/2/delayedVerify");
        assert!(c.with_secret);
        s.answer(Some(200), &hook_json(2, "invoice.add", &url, "Verified"));
        // Keap refuses the third.
        s.next().unwrap();
        s.answer(Some(400), b"{\"message\": \"no\"}");
        assert!(s.next().is_none());
        let (h, notes) = s.finish();
        let got: Vec<_> = h
            .hooks
            .iter()
            .map(|e| (e.event_key.as_str(), e.status, e.keap_key.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("contact.add", HookStatus::Verified, Some("1")),
                ("invoice.add", HookStatus::Verified, Some("2")),
                ("order.add", HookStatus::Failed, None),
            ]
        );
        assert_eq!(h.hooks[2].error.as_ref().unwrap().code, "keap_error");
        assert!(h.hydrate);
        assert_eq!(h.checked_at, Some(100));
        assert_eq!(notes.len(), 1);
        assert!(notes[0].2.contains("(hydrate)"));
    }

    #[test]
    fn a_delayed_verify_without_a_kept_secret_stays_pending() {
        let url = "u".to_owned();
        let wanted = Wanted {
            event_keys: vec!["contact.add".into()],
            hydrate: false,
        };
        let mut s = Session::new(Mode::Set(wanted), LinkHooks::default(), url.clone(), 5);
        s.next();
        s.answer(Some(201), &hook_json(9, "contact.add", &url, "Unverified"));
        assert!(s.next().unwrap().with_secret);
        s.no_secret();
        assert!(s.next().is_none());
        let (h, _) = s.finish();
        assert_eq!(h.hooks[0].status, HookStatus::Pending);
        assert_eq!(h.hooks[0].keap_key.as_deref(), Some("9"));
    }

    #[test]
    fn a_check_session_restores_and_notes_it() {
        let url = "https://k.example/hooks/keap/T".to_owned();
        let cur = hooks(&[
            ("contact.add", Some("1"), HookStatus::Verified, 0),
            ("invoice.add", Some("2"), HookStatus::Verified, 0),
        ]);
        let mut s = Session::new(Mode::Check, cur.clone(), url.clone(), 1000);
        let c = s.next().unwrap();
        assert_eq!((c.method, c.path.as_str()), ("GET", "/crm/rest/v1/hooks"));
        let list = serde_json::json!([{"key": 1, "eventKey": "contact.add", "hookUrl": url, "status": "Inactive"}]).to_string();
        s.answer(Some(200), list.as_bytes());
        assert_eq!(s.next().unwrap().path, "/crm/rest/v1/hooks/1/verify");
        s.answer(Some(200), &hook_json(1, "contact.add", &url, "Verified"));
        assert_eq!(s.next().unwrap().method, "POST");
        s.answer(Some(200), &hook_json(3, "invoice.add", &url, "Verified"));
        assert!(s.next().is_none());
        assert_eq!(s.restored, 2);
        let (h, notes) = s.finish();
        assert_eq!(h.checked_at, Some(1000));
        assert_eq!(
            h.entry("invoice.add").unwrap().keap_key.as_deref(),
            Some("3")
        );
        let details: Vec<&str> = notes.iter().map(|n| n.2.as_str()).collect();
        assert_eq!(
            details,
            vec![
                "contact.add: Inactive at Keap; verified again.",
                "invoice.add: gone at Keap; created again."
            ]
        );
        // Keap not answering the list: nothing changes, and the time is not moved.
        let mut s = Session::new(Mode::Check, cur, url, 2000);
        s.next();
        s.answer(None, b"");
        assert!(s.next().is_none());
        assert_eq!(s.finish().0.checked_at, None);
    }

    #[test]
    fn a_teardown_deletes_everything_and_says_what_it_could_not() {
        let cur = hooks(&[
            ("contact.add", Some("1"), HookStatus::Verified, 0),
            ("invoice.add", Some("2"), HookStatus::Inactive, 0),
            ("order.add", None, HookStatus::Failed, 0),
        ]);
        let mut s = Session::new(Mode::Teardown, cur.clone(), "u".into(), 0);
        assert_eq!(s.next().unwrap().method, "DELETE");
        s.answer(Some(204), b"");
        s.next();
        s.answer(Some(500), b"");
        assert!(s.next().is_none());
        let (h, notes) = s.finish();
        assert!(h.hooks.is_empty());
        assert_eq!(notes[0].1.as_deref(), Some("keap_error"));
        assert!(notes[0].2.starts_with("2 of 3 deleted"), "{}", notes[0].2);
        // A dead token: nothing can be deleted, and that is noted.
        let mut s = Session::new(Mode::Teardown, cur.clone(), "u".into(), 0);
        s.without_keap("needs_reauth");
        let (_, notes) = s.finish();
        assert_eq!(notes[0].1.as_deref(), Some("needs_reauth"));
        // `DELETE .../hooks` of a link that needs its user: forgotten here all the same.
        let none = Wanted {
            event_keys: vec![],
            hydrate: false,
        };
        let mut s = Session::new(Mode::Set(none), cur, "u".into(), 0);
        s.without_keap("needs_reauth");
        assert!(s.finish().0.hooks.is_empty());
    }
}
