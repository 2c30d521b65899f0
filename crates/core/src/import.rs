//! Bringing links a partner already holds (`POST /v1/imports`): the body's rules, each item's
//! life from pending to its outcome, and the import's counts.
//!
//! Keap rotates a refresh token on every use and the old one dies at once, so the hand-over is
//! where links die. The rules here make it safe: a refresh is marked before it is sent, and a
//! mark its worker never cleared (it died) means the answer was lost: `lost`, never a second
//! refresh that would find the token dead and call a good link `dead`; the rotated tokens are
//! stored before anything else is asked of Keap; Keap's 429s and 5xx make an item wait, never
//! end it (after a 5xx, which may come after a rotation, a token found dead was `lost`); and
//! every step names the worker's lease, so a stalled worker changes nothing once another holds
//! the item. The Worker's import job (one Durable Object per import)
//! stores what this module decides; the queue's consumer sends what it says to Keap.

use crate::body;
use crate::clock::{parse_rfc3339, rfc3339, UnixTime};
use crate::connection::{ConnectionKey, ConnectionRecord, NewConnection};
use crate::error::{ApiError, ErrorCode};
use crate::ids::{hex, string_id_serde, ConnectionId, PartnerId, UserId};
use crate::keap::{KeapApp, KeapFailure, KeapIdentity, TokenGrant};
use crate::seal::{Keyring, NONCE_LEN};
use crate::secret::Secret;
use keaplink_api::{
    ErrorDetail, ImportCounts, ImportItem, ImportOutcome, ImportRequest, ImportStatus, ImportView,
    KeapUser,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// An import body may be this large (other bodies: 16 KiB).
pub const MAX_IMPORT_BODY_BYTES: usize = 1024 * 1024;
/// Links in one import.
pub const MAX_IMPORT_ITEMS: usize = 1000;
/// A token longer than this is not a Keap token (Keap's are a few dozen characters).
pub const MAX_TOKEN_CHARS: usize = 2048;
/// Items per page of `GET /v1/imports/{id}`.
pub const PAGE_ITEMS: u32 = 100;
/// The same `idempotency-key` within this long answers the same import.
pub const IDEMPOTENCY_WINDOW_SECS: i64 = 86_400;
/// A worker holds an item at most this long (longer than a Keap timeout and the calls after
/// it); past it, another may take the item over.
pub const LEASE_SECS: i64 = 120;
/// An access token with less than this left is not used: the item is refreshed instead.
pub const USABLE_ACCESS_SECS: i64 = 600;
/// Keap's access tokens live 24 h: one that expires at `t` came with a refresh token issued at
/// `t - 24 h` (Keap issues the two together).
pub const KEAP_ACCESS_LIFETIME_SECS: i64 = 86_400;
/// Keap calls an item is paced for: a refresh and userinfo (the business name is read once per
/// app, and a usable access token saves the refresh).
pub const KEAP_CALLS_PER_ITEM: u32 = 2;

/// How long import items wait before trying Keap, given the deployment's picture of Keap's
/// quota: they keep links alive no more than proxied calls do, so below the reserve (kept for
/// the refreshes of links already here) or in a spent window they wait like a proxied call.
pub fn quota_wait(
    view: Option<&crate::quota::QuotaView>,
    reserve: u64,
    now_ms: u64,
) -> Option<u32> {
    view?
        .hold(None, reserve, now_ms)
        .map(|h| h.retry_after_secs(now_ms))
}

/// A finished import's record is kept this long, then deleted.
pub const KEEP_FINISHED_SECS: i64 = 30 * 86_400;

/// An import: `imp_` and 128 random bits in hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImportId(String);

impl ImportId {
    pub fn from_random(bytes: [u8; 16]) -> ImportId {
        ImportId(format!("imp_{}", hex(&bytes)))
    }

    /// Accepts exactly what `from_random` makes.
    pub fn parse(raw: &str) -> Option<ImportId> {
        let ok = raw.len() == 36
            && raw.starts_with("imp_")
            && raw[4..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| ImportId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_id_serde!(ImportId, "an import id");

/// The `idempotency-key` header: 1-128 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<IdempotencyKey, ApiError> {
        let ok = (1..=128).contains(&raw.len()) && raw.bytes().all(|b| (0x20..0x7f).contains(&b));
        ok.then(|| IdempotencyKey(raw.to_owned())).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                "idempotency-key must be 1-128 printable ASCII characters.",
            )
        })
    }

    /// The name of the object that remembers this key for `partner` (a hash: the key is the
    /// partner's and may mean something to it).
    pub fn object_name(&self, partner: &PartnerId) -> String {
        let digest = Sha256::digest(format!("{}\n{}", partner.as_str(), self.0).as_bytes());
        format!("idem/{}", hex(&digest))
    }
}

/// What the key's object remembers: the import it started and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claimed {
    pub import: ImportId,
    pub at: UnixTime,
}

/// The import a request with this key belongs to: the remembered one while it is younger than
/// the window, else `fresh` (then remembered).
pub fn idempotent_import(remembered: Option<&Claimed>, fresh: ImportId, now: UnixTime) -> Claimed {
    match remembered {
        Some(c) if now - c.at < IDEMPOTENCY_WINDOW_SECS => c.clone(),
        _ => Claimed {
            import: fresh,
            at: now,
        },
    }
}

/// An item's tokens, sealed while it is pending (and deleted once it has its outcome).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemTokens {
    pub refresh_token: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<UnixTime>,
    /// Whether these are keaplink's own, from a refresh (the partner's are dead then).
    #[serde(default)]
    pub rotated: bool,
    /// The app the refresh's `scope` named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<KeapApp>,
}

impl ItemTokens {
    /// Whether the access token can be used as it is (else the item is refreshed first).
    pub fn access_usable(&self, now: UnixTime) -> bool {
        self.access_token.is_some()
            && self
                .access_expires_at
                .is_some_and(|t| t - now >= USABLE_ACCESS_SECS)
    }

    /// The tokens after a refresh: Keap's rotation, or the same refresh token when the answer
    /// left it out.
    pub fn refreshed(&self, grant: TokenGrant, now: UnixTime) -> ItemTokens {
        ItemTokens {
            refresh_token: grant
                .refresh_token
                .unwrap_or_else(|| self.refresh_token.clone()),
            access_token: Some(grant.access_token),
            access_expires_at: Some(now + grant.expires_in),
            rotated: true,
            app: grant.keap_app,
        }
    }

    pub fn seal(&self, keys: &Keyring, aad: &str, nonce: [u8; NONCE_LEN]) -> String {
        keys.seal(aad, &serde_json::to_vec(self).unwrap_or_default(), nonce)
    }

    pub fn open(keys: &Keyring, aad: &str, sealed: &str) -> Option<ItemTokens> {
        let plain = keys.open(aad, sealed).ok()?;
        serde_json::from_slice(&plain).ok()
    }
}

/// What the sealed tokens of item `index` of `import` are bound to.
pub fn item_aad(import: &ImportId, index: u32) -> String {
    format!("import/{}/{index}", import.as_str())
}

/// The outcome of a settled item, with what the partner is told of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settled {
    pub outcome: ImportOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<ConnectionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keap_app: Option<KeapApp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keap_user: Option<KeapUser>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

impl Settled {
    fn only(outcome: ImportOutcome, code: &str, message: impl Into<String>) -> Settled {
        Settled {
            outcome,
            connection_id: None,
            keap_app: None,
            keap_user: None,
            error: Some(ErrorDetail {
                code: code.to_owned(),
                message: message.into(),
            }),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Settled {
        Settled::only(ImportOutcome::Invalid, "invalid_request", message)
    }

    pub fn duplicate() -> Settled {
        Settled::only(
            ImportOutcome::Duplicate,
            "duplicate",
            "The same refresh token appeared earlier in this import.",
        )
    }

    pub fn dead(message: impl Into<String>) -> Settled {
        Settled::only(ImportOutcome::Dead, "refresh_token_invalid", message)
    }

    pub fn lost(message: impl Into<String>) -> Settled {
        Settled::only(ImportOutcome::Lost, "refresh_lost", message)
    }

    /// A link made (`imported`) or found (`already_linked`).
    pub fn linked(outcome: ImportOutcome, record: &ConnectionRecord) -> Settled {
        Settled {
            outcome,
            connection_id: Some(record.id.clone()),
            keap_app: Some(record.keap_app.clone()),
            keap_user: Some(KeapUser {
                email: record.keap_email.clone(),
                name: record.keap_name.clone(),
            }),
            error: None,
        }
    }
}

/// Where an item is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    Pending {
        /// [`ItemTokens`], sealed to the item.
        tokens: String,
        /// A worker holds the item until then.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leased_until: Option<UnixTime>,
        /// A refresh was sent and its answer is not stored yet.
        #[serde(default)]
        refresh_sent: bool,
        /// A refresh failed at Keap in a way that may have rotated the token (a 5xx, or no
        /// status): if the next one finds the token dead, the answer was lost, not the link.
        #[serde(default)]
        doubtful: bool,
        /// Leases given so far; the current lease's number.
        #[serde(default)]
        attempts: u32,
    },
    Settled(Settled),
}

/// One item as the import job stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRecord {
    pub index: u32,
    /// The partner's user id as sent (cut to 256 characters, control characters replaced, for
    /// an invalid one).
    pub user: String,
    /// The Keap app the partner named, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<KeapApp>,
    pub state: ItemState,
}

/// A worker's hold on an item: its number (every step names it), the item's sealed tokens, and
/// whether an earlier refresh may have rotated them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub number: u32,
    pub tokens: String,
    #[serde(default)]
    pub doubtful: bool,
}

/// What a worker may do with an item now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Claim {
    /// Work on it, holding it until the lease ends.
    Go(Lease),
    /// Another worker holds it: come back in this many seconds.
    Busy(u32),
    /// It has its outcome (now or before): nothing to do.
    Done,
}

/// How a worker lets go of an item, by what became of a refresh it sent (if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Released {
    /// No refresh was sent, or its answer is stored: the item is as it was.
    Untouched,
    /// Keap refused before using the token (a 429, a 4xx of the request): it may be sent again.
    NotTaken,
    /// Keap failed (a 5xx, or no status): the token may or may not have been rotated.
    MaybeTaken,
}

/// A worker's step on an item it holds, applied by the import's single writer. Each names the
/// lease it was taken under: a worker whose lease ran out (and was given to another) changes
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The refresh is about to be sent.
    MarkRefresh(u32),
    /// The refresh's answer, sealed.
    StoreRotated(u32, String),
    /// Let go, to try later.
    Release(u32, Released),
}

impl ItemRecord {
    pub fn is_pending(&self) -> bool {
        matches!(self.state, ItemState::Pending { .. })
    }

    /// A worker asks for the item. A refresh marked as sent whose worker's lease ran out was
    /// lost: the item settles `lost` (answered `Done`) rather than refresh a token Keap may
    /// already have rotated. Returns whether the item settled now.
    pub fn claim(&mut self, now: UnixTime) -> (Claim, bool) {
        let ItemState::Pending {
            tokens,
            leased_until,
            refresh_sent,
            doubtful,
            attempts,
        } = &mut self.state
        else {
            return (Claim::Done, false);
        };
        if let Some(until) = *leased_until {
            if now < until {
                let retry_secs = u32::try_from(until - now).unwrap_or(u32::MAX).max(1);
                return (Claim::Busy(retry_secs), false);
            }
        }
        if *refresh_sent {
            self.state = ItemState::Settled(Settled::lost(
                "The refresh was sent to Keap and its answer never arrived; Keap may have rotated the token, so the user has to connect again.",
            ));
            return (Claim::Done, true);
        }
        *leased_until = Some(now + LEASE_SECS);
        *attempts = attempts.saturating_add(1);
        let lease = Lease {
            number: *attempts,
            tokens: tokens.clone(),
            doubtful: *doubtful,
        };
        (Claim::Go(lease), false)
    }

    /// Whether `lease` is the item's current one, still running at `now`.
    fn holds(&self, lease: u32, now: UnixTime) -> bool {
        matches!(
            self.state,
            ItemState::Pending { leased_until: Some(until), attempts, .. } if attempts == lease && now < until
        )
    }

    /// Applies a worker's step; answers whether it took. A mark refused means the worker no
    /// longer holds the item: it sends nothing.
    pub fn apply(&mut self, step: Step, now: UnixTime) -> bool {
        let lease = match step {
            Step::MarkRefresh(l) | Step::StoreRotated(l, _) | Step::Release(l, _) => l,
        };
        // A stored answer is kept even from a worker whose lease just ran out: the rotated
        // token is the only live one. Every other step needs the lease.
        let current =
            matches!(self.state, ItemState::Pending { attempts, .. } if attempts == lease);
        if !current || (!matches!(step, Step::StoreRotated(..)) && !self.holds(lease, now)) {
            return false;
        }
        let ItemState::Pending {
            tokens,
            leased_until,
            refresh_sent,
            doubtful,
            ..
        } = &mut self.state
        else {
            return false;
        };
        match step {
            Step::MarkRefresh(_) if *refresh_sent => false,
            Step::MarkRefresh(_) => {
                *refresh_sent = true;
                true
            }
            Step::StoreRotated(_, sealed) => {
                *tokens = sealed;
                *refresh_sent = false;
                *doubtful = false;
                true
            }
            Step::Release(_, released) => {
                *leased_until = None;
                match released {
                    Released::Untouched => {}
                    Released::NotTaken => *refresh_sent = false,
                    Released::MaybeTaken => {
                        *refresh_sent = false;
                        *doubtful = true;
                    }
                }
                true
            }
        }
    }

    /// Gives the item its outcome (once: a settled item keeps its first). Returns whether it
    /// settled now.
    pub fn settle(&mut self, settled: Settled) -> bool {
        if self.is_pending() {
            self.state = ItemState::Settled(settled);
            true
        } else {
            false
        }
    }

    /// Whether the item waits for a worker: pending and held by none at `now`.
    pub fn waiting(&self, now: UnixTime) -> bool {
        matches!(self.state, ItemState::Pending { leased_until, .. } if leased_until.is_none_or(|u| u <= now))
    }

    pub fn outcome(&self) -> Option<ImportOutcome> {
        match &self.state {
            ItemState::Settled(s) => Some(s.outcome),
            ItemState::Pending { .. } => None,
        }
    }

    pub fn to_api(&self) -> ImportItem {
        let settled = match &self.state {
            ItemState::Settled(s) => Some(s),
            ItemState::Pending { .. } => None,
        };
        ImportItem {
            index: self.index,
            user: self.user.clone(),
            outcome: settled.map(|s| s.outcome),
            connection_id: settled
                .and_then(|s| s.connection_id.as_ref())
                .map(|c| c.as_str().to_owned()),
            keap_app: settled
                .and_then(|s| s.keap_app.as_ref())
                .map(|a| a.as_str().to_owned()),
            keap_user: settled.and_then(|s| s.keap_user.clone()),
            error: settled.and_then(|s| s.error.clone()),
        }
    }
}

/// The import as its job stores it (the items apart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRecord {
    pub id: ImportId,
    pub partner: PartnerId,
    pub created_at: UnixTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<UnixTime>,
    pub total: u32,
    pub counts: ImportCounts,
    /// `import.finished` was queued for the partner.
    #[serde(default)]
    pub notified: bool,
}

/// What the import's alarm does when it rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// Queue again the items no worker holds (a message lost, or spent on retries, never leaves
    /// an item pending for ever); ring again later.
    Requeue { next_at: UnixTime },
    /// Send `import.finished`, then ring again when the record is due for deletion.
    Notify { next_at: UnixTime },
    /// The record's time is up (or there is no import here): delete everything.
    Delete,
    /// Nothing yet: ring again then.
    Sleep { next_at: UnixTime },
}

/// How often a running import looks for items no worker holds.
pub const WATCHDOG_SECS: i64 = 600;

/// The import's alarm, decided from its record alone (`None`: an object that holds no import,
/// such as an idempotency key's, whose alarm rings when its day is over).
pub fn wake(record: Option<&ImportRecord>, now: UnixTime) -> Wake {
    let Some(r) = record else {
        return Wake::Delete;
    };
    match r.finished_at {
        None => Wake::Requeue {
            next_at: now + WATCHDOG_SECS,
        },
        Some(done) if !r.notified => Wake::Notify {
            next_at: done + KEEP_FINISHED_SECS,
        },
        Some(done) if now >= done + KEEP_FINISHED_SECS => Wake::Delete,
        Some(done) => Wake::Sleep {
            next_at: done + KEEP_FINISHED_SECS,
        },
    }
}

impl ImportRecord {
    /// A new import of `items` (some already settled by the body's rules).
    pub fn new(id: ImportId, partner: PartnerId, items: &[ItemRecord], now: UnixTime) -> Self {
        let mut r = ImportRecord {
            id,
            partner,
            created_at: now,
            finished_at: None,
            total: items.len() as u32,
            counts: ImportCounts {
                pending: items.len() as u32,
                ..ImportCounts::default()
            },
            notified: false,
        };
        for item in items {
            if let Some(o) = item.outcome() {
                r.count(o, now);
            }
        }
        r
    }

    /// One more item settled as `outcome`. Returns whether that finished the import (true
    /// once: the caller sends `import.finished` then).
    pub fn count(&mut self, outcome: ImportOutcome, now: UnixTime) -> bool {
        self.counts.pending = self.counts.pending.saturating_sub(1);
        let c = &mut self.counts;
        *match outcome {
            ImportOutcome::Imported => &mut c.imported,
            ImportOutcome::AlreadyLinked => &mut c.already_linked,
            ImportOutcome::Dead => &mut c.dead,
            ImportOutcome::Lost => &mut c.lost,
            ImportOutcome::Duplicate => &mut c.duplicate,
            ImportOutcome::Invalid => &mut c.invalid,
        } += 1;
        if self.counts.pending == 0 && self.finished_at.is_none() {
            self.finished_at = Some(now);
            return true;
        }
        false
    }

    pub fn status(&self) -> ImportStatus {
        if self.finished_at.is_some() {
            ImportStatus::Done
        } else {
            ImportStatus::Running
        }
    }

    /// The API's view, with one page of items (`next`: the index the next page starts at).
    pub fn to_api(&self, items: &[ItemRecord], next: Option<u32>) -> ImportView {
        ImportView {
            import_id: self.id.as_str().to_owned(),
            status: self.status(),
            created_at: rfc3339(self.created_at),
            finished_at: self.finished_at.map(rfc3339),
            total: self.total,
            counts: self.counts.clone(),
            items: items.iter().map(ItemRecord::to_api).collect(),
            cursor: next.map(|n| n.to_string()),
        }
    }
}

/// The page of items that starts at `cursor` (an index, as the last page's `cursor` said):
/// `(first index, last index + 1, next page's start)`.
pub fn page(cursor: Option<&str>, total: u32) -> Result<(u32, u32, Option<u32>), ApiError> {
    let start = match cursor {
        None => 0,
        Some(c) => c
            .parse::<u32>()
            .ok()
            .filter(|n| *n < total.max(1))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidCursor,
                    "cursor is not one this import gave.",
                )
            })?,
    };
    let end = (start + PAGE_ITEMS).min(total);
    Ok((start, end, (end < total).then_some(end)))
}

/// The user id as the item shows it: what was sent, cut to 256 characters with control
/// characters replaced (an id that broke the rules is still recognisable to the partner).
fn shown_user(raw: &str) -> String {
    raw.chars()
        .take(crate::ids::MAX_USER_ID_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// Reads an import body: the whole is refused (400 or 413, naming the rule) unless it is the
/// shape and within the limits; then each item is either pending (with its tokens to seal) or
/// already settled (`invalid` with the reason, or `duplicate`).
pub fn read_request(bytes: &[u8]) -> Result<Vec<Planned>, ApiError> {
    let req: ImportRequest = body::decode_within(
        bytes,
        MAX_IMPORT_BODY_BYTES,
        ApiError::new(
            ErrorCode::BodyTooLarge,
            "The body is over the 1 MiB limit of an import: send at most 1,000 links a call.",
        ),
    )?;
    let n = req.links.len();
    if !(1..=MAX_IMPORT_ITEMS).contains(&n) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("links must hold 1 to 1,000 items ({n} sent): split a larger import into several calls."),
        ));
    }
    for (i, l) in req.links.iter().enumerate() {
        let long = |t: &str| t.chars().count() > MAX_TOKEN_CHARS;
        let field = if long(&l.refresh_token) {
            Some("refresh_token")
        } else if l.access_token.as_deref().is_some_and(long) {
            Some("access_token")
        } else {
            None
        };
        if let Some(field) = field {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("links[{i}].{field} is over 2,048 characters; a Keap token is far shorter (is it the right column?)."),
            ));
        }
    }
    // A BTreeSet, not a HashSet: the Worker links BTreeMap already, and no hasher besides.
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut planned = Vec::with_capacity(n);
    for l in &req.links {
        planned.push(plan(l, &mut seen));
    }
    Ok(planned)
}

/// One item of a request, as read.
#[derive(Debug)]
pub enum Planned {
    Pending {
        user: UserId,
        hint: Option<KeapApp>,
        tokens: ItemTokens,
    },
    Settled {
        user: String,
        settled: Settled,
    },
}

impl Planned {
    /// The stored item (`seal` seals a pending item's tokens to it).
    pub fn into_record(self, index: u32, seal: impl FnOnce(&ItemTokens) -> String) -> ItemRecord {
        match self {
            Planned::Pending { user, hint, tokens } => ItemRecord {
                index,
                user: user.as_str().to_owned(),
                hint,
                state: ItemState::Pending {
                    tokens: seal(&tokens),
                    leased_until: None,
                    refresh_sent: false,
                    doubtful: false,
                    attempts: 0,
                },
            },
            Planned::Settled { user, settled } => ItemRecord {
                index,
                user,
                hint: None,
                state: ItemState::Settled(settled),
            },
        }
    }
}

fn plan<'a>(l: &'a keaplink_api::ImportLink, seen: &mut BTreeSet<&'a str>) -> Planned {
    let invalid = |why: &str| Planned::Settled {
        user: shown_user(&l.user),
        settled: Settled::invalid(why),
    };
    let Some(user) = UserId::parse(&l.user) else {
        return invalid("user must be 1-256 characters without control characters.");
    };
    let refresh = l.refresh_token.trim();
    if refresh.is_empty() {
        return invalid("refresh_token is empty.");
    }
    if l.access_token
        .as_deref()
        .is_some_and(|t| t.trim().is_empty())
    {
        return invalid("access_token is empty: leave it out instead.");
    }
    let expires = match l.expires_at.as_deref() {
        None => None,
        Some(t) => match parse_rfc3339(t) {
            Some(t) => Some(t),
            None => return invalid("expires_at is not an RFC 3339 time (2026-01-01T00:00:00Z)."),
        },
    };
    if expires.is_some() && l.access_token.is_none() {
        return invalid("expires_at is given without access_token.");
    }
    let hint = match l.keap_app.as_deref() {
        None => None,
        Some(a) => match KeapApp::parse(a) {
            Some(a) => Some(a),
            None => return invalid("keap_app must be 1-64 of a-z, 0-9 and -."),
        },
    };
    if !seen.insert(refresh) {
        return Planned::Settled {
            user: user.as_str().to_owned(),
            settled: Settled::duplicate(),
        };
    }
    Planned::Pending {
        user,
        hint,
        tokens: ItemTokens {
            refresh_token: Secret::new(refresh),
            access_token: l.access_token.as_deref().map(|t| Secret::new(t.trim())),
            access_expires_at: expires,
            rotated: false,
            app: None,
        },
    }
}

/// What to do after Keap answered an item's refresh.
#[derive(Debug)]
pub enum AfterRefresh {
    /// Store these (before anything else), then go on.
    Rotated(Box<ItemTokens>),
    /// Try again later, letting go as this says.
    Wait(Released),
    Settle(Settled),
}

/// Keap's answer to an item's refresh, and what it means for the item. `doubtful`: an earlier
/// refresh of it failed in a way that may have rotated the token.
pub fn after_refresh(
    tokens: &ItemTokens,
    answer: Result<TokenGrant, KeapFailure>,
    doubtful: bool,
    now: UnixTime,
) -> AfterRefresh {
    match answer {
        Ok(grant) => AfterRefresh::Rotated(Box::new(tokens.refreshed(grant, now))),
        // Keap's quota turns a call away before it is carried out.
        Err(KeapFailure::Throttled) => AfterRefresh::Wait(Released::NotTaken),
        // A 5xx (or no status at all) may come after Keap rotated the token: tried again, and a
        // dead token then means the answer was lost.
        Err(KeapFailure::Unavailable { .. }) => AfterRefresh::Wait(Released::MaybeTaken),
        Err(KeapFailure::BadResponse { status, .. }) if status >= 500 => {
            AfterRefresh::Wait(Released::MaybeTaken)
        }
        Err(KeapFailure::InvalidGrant) if doubtful => AfterRefresh::Settle(Settled::lost(
            "An earlier refresh of this token failed at Keap, and Keap now refuses it: Keap had rotated it and its answer was lost, so the user has to connect again. Nothing was stored.",
        )),
        Err(KeapFailure::InvalidGrant) => AfterRefresh::Settle(Settled::dead(
            "Keap refused the refresh token (expired, revoked, or already used elsewhere). Nothing was stored; the user has to connect again.",
        )),
        Err(KeapFailure::Timeout) => AfterRefresh::Settle(Settled::lost(
            "Keap did not answer the refresh in time; it may have rotated the token, so the user has to connect again. Nothing was stored.",
        )),
        Err(KeapFailure::BadResponse { status, .. }) if (200..300).contains(&status) => {
            AfterRefresh::Settle(Settled::lost(
                "Keap's answer to the refresh could not be read; it may have rotated the token, so the user has to connect again. Nothing was stored.",
            ))
        }
        // Keap refused the request itself (the OAuth client's credentials, say): the token was
        // not used; the item waits while the deployment is put right (the log says why).
        Err(KeapFailure::BadResponse { .. } | KeapFailure::Rejected { .. }) => {
            AfterRefresh::Wait(Released::NotTaken)
        }
    }
}

/// Whether the item's tokens need a refresh before Keap is asked who they belong to: asked for
/// (`force`: the access token was refused, or no answer named the app), or no access token good
/// for a while. keaplink's own rotated tokens may be refreshed again (a long quota hold can
/// outlast their access token): the item's mark-and-store keeps that single too.
pub fn should_refresh(tokens: &ItemTokens, force: bool, now: UnixTime) -> bool {
    force || !tokens.access_usable(now)
}

/// The id an item's link gets: derived from the import and the item, so a worker that made the
/// link and died before settling the item finds it again as its own (`imported`), not as one
/// that was there before (`already_linked`).
pub fn link_id(import: &ImportId, index: u32) -> [u8; 16] {
    let digest = Sha256::digest(item_aad(import, index).as_bytes());
    let mut id = [0; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

/// The outcome of putting an item's link through its guard: the link found under the user and
/// app is the item's own (`link_id`) or one that was there before.
pub fn linked_outcome(own: &ConnectionId, found: &ConnectionRecord) -> Settled {
    let outcome = if found.id == *own {
        ImportOutcome::Imported
    } else {
        ImportOutcome::AlreadyLinked
    };
    Settled::linked(outcome, found)
}

/// What to do after Keap answered userinfo (who the token belongs to).
#[derive(Debug)]
pub enum AfterUserinfo {
    Known(KeapIdentity),
    /// Try again later (429, 5xx, no answer: userinfo only reads).
    Wait,
    /// The partner's access token was refused: refresh instead.
    Refresh,
    Settle(Settled),
}

pub fn after_userinfo(
    tokens: &ItemTokens,
    answer: Result<KeapIdentity, KeapFailure>,
) -> AfterUserinfo {
    match answer {
        Ok(who) => AfterUserinfo::Known(who),
        Err(f) if f.is_transient() => AfterUserinfo::Wait,
        Err(KeapFailure::BadResponse { status, .. }) if status >= 500 => AfterUserinfo::Wait,
        Err(_) if !tokens.rotated => AfterUserinfo::Refresh,
        Err(_) => AfterUserinfo::Settle(Settled::lost(
            "Keap refused the access token it had just issued; the user has to connect again. Nothing was stored.",
        )),
    }
}

/// The app the link belongs to: the refresh's `scope`, else userinfo's `tenant_id`, else the
/// partner's hint. Two different answers from Keap refuse the item; no answer at all asks for a
/// refresh (whose `scope` names it) when the tokens are still the partner's.
#[derive(Debug, PartialEq, Eq)]
pub enum WhichApp {
    Known(KeapApp),
    Refresh,
    Settle(Settled),
}

pub fn which_app(tokens: &ItemTokens, who: &KeapIdentity, hint: Option<&KeapApp>) -> WhichApp {
    let tenant = who.tenant_id.as_deref().and_then(KeapApp::parse);
    match (&tokens.app, tenant) {
        (Some(a), Some(t)) if *a != t => WhichApp::Settle(Settled::lost(
            "Keap named two different apps for this token (scope and userinfo); nothing was stored.",
        )),
        (Some(a), _) => WhichApp::Known(a.clone()),
        (None, Some(t)) => WhichApp::Known(t),
        (None, None) => match hint {
            Some(h) => WhichApp::Known(h.clone()),
            None if !tokens.rotated => WhichApp::Refresh,
            None => WhichApp::Settle(Settled::lost(
                "Keap did not say which app the token is for; nothing was stored.",
            )),
        },
    }
}

/// The link an item becomes: tokens sealed to its key, the refresh token's age from what Keap
/// said (a refresh now; else the access token's expiry less Keap's 24 h, when they were issued
/// together).
pub struct NewImported<'a> {
    pub key: &'a ConnectionKey,
    pub user: &'a UserId,
    pub who: KeapIdentity,
    pub app_name: Option<String>,
    pub tokens: ItemTokens,
    pub refresh_lifetime_secs: i64,
    pub now: UnixTime,
    pub id: [u8; 16],
    pub nonce: [u8; NONCE_LEN],
}

pub fn imported_link(n: NewImported<'_>, keys: &Keyring) -> Option<ConnectionRecord> {
    let access = n.tokens.access_token?;
    let expires_at = n.tokens.access_expires_at?;
    let issued = if n.tokens.rotated {
        n.now
    } else {
        (expires_at - KEAP_ACCESS_LIFETIME_SECS).min(n.now)
    };
    let mut record = ConnectionRecord::create(
        NewConnection {
            key: n.key,
            id: ConnectionId::from_random(n.id),
            user: n.user,
            who: n.who,
            app_name: n.app_name,
            access_token: access,
            refresh_token: n.tokens.refresh_token,
            expires_in: expires_at - n.now,
            refresh_lifetime_secs: n.refresh_lifetime_secs,
            now: n.now,
            nonce: n.nonce,
        },
        keys,
    );
    record.refresh_issued_at = issued;
    record.refresh_expires_at = Some(issued + n.refresh_lifetime_secs);
    Some(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: UnixTime = 1_800_000_000;

    fn read(v: serde_json::Value) -> Result<Vec<Planned>, ApiError> {
        read_request(v.to_string().as_bytes())
    }

    fn keys() -> Keyring {
        Keyring::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap()
    }

    fn pending(tokens: &ItemTokens) -> ItemRecord {
        Planned::Pending {
            user: UserId::parse("u1").unwrap(),
            hint: None,
            tokens: tokens.clone(),
        }
        .into_record(0, |t| t.seal(&keys(), "aad", [1; NONCE_LEN]))
    }

    fn partner_tokens() -> ItemTokens {
        ItemTokens {
            refresh_token: Secret::new("RT"),
            access_token: None,
            access_expires_at: None,
            rotated: false,
            app: None,
        }
    }

    fn grant(app: Option<&str>) -> TokenGrant {
        TokenGrant {
            access_token: Secret::new("AT2"),
            refresh_token: Some(Secret::new("RT2")),
            expires_in: 86_400,
            keap_app: app.and_then(KeapApp::parse),
        }
    }

    fn who(tenant: Option<&str>) -> KeapIdentity {
        KeapIdentity {
            email: "ann@ab123.example".into(),
            name: "Ann".into(),
            sub: Some("7".into()),
            tenant_id: tenant.map(str::to_owned),
        }
    }

    #[test]
    fn the_whole_body_is_refused_when_it_breaks_a_limit() {
        let code = |r: Result<Vec<Planned>, ApiError>| r.unwrap_err().code;
        assert_eq!(code(read(json!({"links": []}))), ErrorCode::InvalidRequest);
        let many: Vec<_> = (0..1001)
            .map(|i| json!({"user": format!("u{i}"), "refresh_token": format!("r{i}")}))
            .collect();
        let e = read(json!({ "links": many })).unwrap_err();
        assert!(e.message.contains("(1001 sent)"), "{}", e.message);
        let e = read(json!({"links": [{"user": "u", "refresh_token": "x".repeat(10_000)}]}))
            .unwrap_err();
        assert!(
            e.message.contains("links[0].refresh_token"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("xxx"), "the value is never echoed");
        assert_eq!(
            code(read(json!([{"user": "u"}]))),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(read(json!({"links": [{"user": 5, "refresh_token": "r"}]}))),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(read(
                json!({"links": [{"user": "u", "refresh_token": "r", "refreshToken": "r"}]})
            )),
            ErrorCode::InvalidRequest
        );
        let big = format!(
            r#"{{"links": [{{"user": "u", "refresh_token": "{}"}}]}}"#,
            "r".repeat(MAX_IMPORT_BODY_BYTES)
        );
        assert_eq!(
            read_request(big.as_bytes()).unwrap_err().code,
            ErrorCode::BodyTooLarge
        );
        // 1,000 items of the largest tokens allowed still fit the body limit's purpose.
        assert!(read(json!({"links": [{"user": "u", "refresh_token": "r".repeat(2048)}]})).is_ok());
    }

    #[test]
    fn items_wrong_on_their_own_are_invalid_and_repeats_are_duplicates() {
        let items = read(json!({"links": [
            {"user": "u1", "refresh_token": "A"},
            {"user": "", "refresh_token": "B"},
            {"user": "u\u{7}x", "refresh_token": "C"},
            {"user": "u4", "refresh_token": "  "},
            {"user": "u5", "refresh_token": "E", "access_token": ""},
            {"user": "u6", "refresh_token": "F", "access_token": "a", "expires_at": "tomorrow"},
            {"user": "u7", "refresh_token": "G", "expires_at": "2026-01-01T00:00:00Z"},
            {"user": "u8", "refresh_token": "H", "keap_app": "AB 123"},
            {"user": "u9", "refresh_token": "A"},
            {"user": "", "refresh_token": "J"},
            {"user": "u11", "refresh_token": "J"},
            {"user": "u12", "refresh_token": "L", "access_token": "a", "expires_at": "2027-01-01T00:00:00+01:00", "keap_app": "ab123"},
        ]}))
        .unwrap();
        let outcome = |p: &Planned| match p {
            Planned::Pending { .. } => None,
            Planned::Settled { settled, .. } => Some(settled.outcome),
        };
        use ImportOutcome::{Duplicate, Invalid};
        let got: Vec<_> = items.iter().map(outcome).collect();
        assert_eq!(
            got,
            vec![
                None,
                Some(Invalid),
                Some(Invalid),
                Some(Invalid),
                Some(Invalid),
                Some(Invalid),
                Some(Invalid),
                Some(Invalid),
                Some(Duplicate),
                Some(Invalid),
                None,
                None
            ]
        );
        // An invalid item's user is shown as sent, made printable.
        let Planned::Settled { user, settled } = &items[2] else {
            panic!()
        };
        assert_eq!(user, "u\u{fffd}x");
        assert!(settled
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("control characters"));
        let Planned::Pending { tokens, hint, .. } = &items[11] else {
            panic!()
        };
        assert_eq!(tokens.access_expires_at, Some(1_798_758_000));
        assert_eq!(hint.as_ref().unwrap().as_str(), "ab123");
    }

    fn go(item: &mut ItemRecord, now: UnixTime) -> Lease {
        match item.claim(now) {
            (Claim::Go(lease), false) => lease,
            other => panic!("not given: {other:?}"),
        }
    }

    #[test]
    fn an_item_is_refreshed_at_most_once_even_across_a_crash() {
        let mut item = pending(&partner_tokens());
        let lease = go(&mut item, NOW);
        assert_eq!(lease.number, 1);
        // Another worker (a redelivered message) waits while the lease holds.
        assert!(
            matches!(item.claim(NOW + 1).0, Claim::Busy(secs) if secs as i64 == LEASE_SECS - 1)
        );
        assert!(item.apply(Step::MarkRefresh(lease.number), NOW + 2));
        assert!(
            !item.apply(Step::MarkRefresh(lease.number), NOW + 3),
            "marked once"
        );
        // The worker dies here: after the lease, the item is lost, not refreshed again.
        assert_eq!(item.claim(NOW + LEASE_SECS + 5), (Claim::Done, true));
        assert_eq!(item.outcome(), Some(ImportOutcome::Lost));
        assert_eq!(item.claim(NOW + 10_000), (Claim::Done, false));
    }

    #[test]
    fn a_lease_that_ran_out_is_taken_over_and_its_old_holder_changes_nothing() {
        let mut item = pending(&partner_tokens());
        let first = go(&mut item, NOW);
        assert!(
            !item.apply(Step::MarkRefresh(first.number), NOW + LEASE_SECS),
            "the lease is over: do not send"
        );
        assert!(item.waiting(NOW + LEASE_SECS), "no one holds it");
        let second = go(&mut item, NOW + LEASE_SECS);
        assert_eq!(second.number, 2);
        assert!(!item.waiting(NOW + LEASE_SECS + 1));
        assert!(item.apply(Step::MarkRefresh(second.number), NOW + LEASE_SECS + 1));
        // The stalled first worker wakes up: its release cannot clear the second's mark.
        assert!(!item.apply(
            Step::Release(first.number, Released::NotTaken),
            NOW + LEASE_SECS + 2
        ));
        assert!(!item.apply(Step::MarkRefresh(first.number), NOW + LEASE_SECS + 2));
        let ItemState::Pending { refresh_sent, .. } = item.state else {
            panic!()
        };
        assert!(refresh_sent, "the second worker's mark stands");
    }

    #[test]
    fn a_throttled_refresh_waits_and_a_stored_answer_is_never_refreshed_again() {
        let t = partner_tokens();
        let mut item = pending(&t);
        let lease = go(&mut item, NOW);
        assert!(item.apply(Step::MarkRefresh(lease.number), NOW));
        let AfterRefresh::Wait(released) =
            after_refresh(&t, Err(KeapFailure::Throttled), false, NOW)
        else {
            panic!()
        };
        assert_eq!(released, Released::NotTaken);
        assert!(item.apply(Step::Release(lease.number, released), NOW));
        let lease = go(&mut item, NOW + 1);
        assert!(!lease.doubtful, "a 429 leaves no doubt");
        assert!(item.apply(Step::MarkRefresh(lease.number), NOW + 1));
        let AfterRefresh::Rotated(next) =
            after_refresh(&t, Ok(grant(Some("ab123"))), false, NOW + 2)
        else {
            panic!()
        };
        assert!(next.rotated && next.access_usable(NOW + 2));
        assert_eq!(next.refresh_token.expose(), "RT2");
        assert!(item.apply(
            Step::StoreRotated(lease.number, next.seal(&keys(), "aad", [2; NONCE_LEN])),
            NOW + 2
        ));
        // A later failure (userinfo throttled) lets go; the next claim works with the rotated
        // tokens and is not lost.
        assert!(item.apply(Step::Release(lease.number, Released::Untouched), NOW + 2));
        let lease = go(&mut item, NOW + 3);
        let opened = ItemTokens::open(&keys(), "aad", &lease.tokens).unwrap();
        assert!(opened.rotated);
        assert!(!should_refresh(&opened, false, NOW + 3));
        assert!(
            should_refresh(&opened, false, NOW + 86_400),
            "its access token aged: refreshed again"
        );
    }

    #[test]
    fn after_a_5xx_a_dead_token_was_lost_not_dead() {
        let t = partner_tokens();
        let mut item = pending(&t);
        let lease = go(&mut item, NOW);
        assert!(item.apply(Step::MarkRefresh(lease.number), NOW));
        for failure in [
            KeapFailure::Unavailable { status: 502 },
            KeapFailure::Unavailable { status: 0 },
        ] {
            assert!(matches!(
                after_refresh(&t, Err(failure), false, NOW),
                AfterRefresh::Wait(Released::MaybeTaken)
            ));
        }
        assert!(item.apply(Step::Release(lease.number, Released::MaybeTaken), NOW));
        let lease = go(&mut item, NOW + 30);
        assert!(lease.doubtful);
        let AfterRefresh::Settle(s) =
            after_refresh(&t, Err(KeapFailure::InvalidGrant), lease.doubtful, NOW + 30)
        else {
            panic!()
        };
        assert_eq!(s.outcome, ImportOutcome::Lost);
        // Without a doubt, a dead token is dead.
        let AfterRefresh::Settle(s) = after_refresh(&t, Err(KeapFailure::InvalidGrant), false, NOW)
        else {
            panic!()
        };
        assert_eq!(s.outcome, ImportOutcome::Dead);
        // A stored answer clears the doubt.
        assert!(item.apply(Step::StoreRotated(lease.number, "sealed".into()), NOW + 31));
        let ItemState::Pending { doubtful, .. } = item.state else {
            panic!()
        };
        assert!(!doubtful);
    }

    #[test]
    fn keaps_answers_to_a_refresh_map_to_outcomes() {
        let t = partner_tokens();
        let outcome = |f| match after_refresh(&t, Err(f), false, NOW) {
            AfterRefresh::Settle(s) => Some(s.outcome),
            _ => None,
        };
        assert_eq!(
            outcome(KeapFailure::InvalidGrant),
            Some(ImportOutcome::Dead)
        );
        assert_eq!(outcome(KeapFailure::Timeout), Some(ImportOutcome::Lost));
        assert_eq!(
            outcome(KeapFailure::BadResponse {
                status: 200,
                detail: "x"
            }),
            Some(ImportOutcome::Lost)
        );
        assert_eq!(
            outcome(KeapFailure::BadResponse {
                status: 502,
                detail: "x"
            }),
            None
        );
        // Keap refused the request itself (the client's credentials): waits, never `dead`.
        assert!(matches!(
            after_refresh(&t, Err(KeapFailure::Rejected { status: 401 }), false, NOW),
            AfterRefresh::Wait(Released::NotTaken)
        ));
        assert_eq!(outcome(KeapFailure::Throttled), None);
    }

    #[test]
    fn an_items_link_is_known_as_its_own_after_a_crash() {
        let id = ImportId::from_random([1; 16]);
        assert_eq!(link_id(&id, 3), link_id(&id, 3));
        assert_ne!(link_id(&id, 3), link_id(&id, 4));
        assert_ne!(link_id(&id, 3), link_id(&ImportId::from_random([2; 16]), 3));
        let partner = PartnerId::parse("acme").unwrap();
        let user = UserId::parse("u1").unwrap();
        let key = ConnectionKey::new(&partner, &user, &KeapApp::parse("ab123").unwrap());
        let mk = |bytes| {
            imported_link(
                NewImported {
                    key: &key,
                    user: &user,
                    who: who(None),
                    app_name: None,
                    tokens: partner_tokens().refreshed(grant(Some("ab123")), NOW),
                    refresh_lifetime_secs: 1,
                    now: NOW,
                    id: bytes,
                    nonce: [4; NONCE_LEN],
                },
                &keys(),
            )
            .unwrap()
        };
        let own = mk(link_id(&id, 3));
        assert_eq!(
            linked_outcome(&own.id, &own).outcome,
            ImportOutcome::Imported
        );
        let before = mk([9; 16]);
        let settled = linked_outcome(&own.id, &before);
        assert_eq!(settled.outcome, ImportOutcome::AlreadyLinked);
        assert_eq!(settled.connection_id, Some(before.id));
    }

    #[test]
    fn the_alarm_requeues_a_running_import_notifies_once_then_deletes() {
        let items: Vec<ItemRecord> = Vec::new();
        let mut r = ImportRecord::new(
            ImportId::from_random([3; 16]),
            PartnerId::parse("acme").unwrap(),
            &items,
            NOW,
        );
        r.counts.pending = 1;
        r.total = 1;
        r.finished_at = None;
        assert_eq!(
            wake(Some(&r), NOW),
            Wake::Requeue {
                next_at: NOW + WATCHDOG_SECS
            }
        );
        assert!(r.count(ImportOutcome::Imported, NOW + 5));
        assert_eq!(
            wake(Some(&r), NOW + 6),
            Wake::Notify {
                next_at: NOW + 5 + KEEP_FINISHED_SECS
            }
        );
        r.notified = true;
        assert_eq!(
            wake(Some(&r), NOW + 7),
            Wake::Sleep {
                next_at: NOW + 5 + KEEP_FINISHED_SECS
            }
        );
        assert_eq!(wake(Some(&r), NOW + 5 + KEEP_FINISHED_SECS), Wake::Delete);
        assert_eq!(
            wake(None, NOW),
            Wake::Delete,
            "an idempotency key's day is over"
        );
    }

    #[test]
    fn a_refused_access_token_is_refreshed_and_a_refused_new_one_is_lost() {
        let t = partner_tokens();
        assert!(matches!(
            after_userinfo(&t, Err(KeapFailure::Rejected { status: 401 })),
            AfterUserinfo::Refresh
        ));
        assert!(matches!(
            after_userinfo(&t, Err(KeapFailure::Throttled)),
            AfterUserinfo::Wait
        ));
        assert!(matches!(
            after_userinfo(&t, Err(KeapFailure::Timeout)),
            AfterUserinfo::Wait
        ));
        let rotated = t.refreshed(grant(None), NOW);
        assert!(matches!(
            after_userinfo(&rotated, Err(KeapFailure::Rejected { status: 401 })),
            AfterUserinfo::Settle(Settled {
                outcome: ImportOutcome::Lost,
                ..
            })
        ));
        assert!(matches!(
            after_userinfo(&rotated, Ok(who(None))),
            AfterUserinfo::Known(_)
        ));
    }

    #[test]
    fn the_app_comes_from_keap_before_the_hint() {
        let t = partner_tokens();
        let ab = KeapApp::parse("ab123").unwrap();
        let cd = KeapApp::parse("cd456").unwrap();
        assert_eq!(
            which_app(&t, &who(Some("ab123")), Some(&cd)),
            WhichApp::Known(ab.clone())
        );
        assert_eq!(
            which_app(&t, &who(None), Some(&cd)),
            WhichApp::Known(cd.clone())
        );
        assert_eq!(which_app(&t, &who(None), None), WhichApp::Refresh);
        let rotated = t.refreshed(grant(Some("ab123")), NOW);
        assert_eq!(
            which_app(&rotated, &who(None), Some(&cd)),
            WhichApp::Known(ab)
        );
        assert!(matches!(
            which_app(&rotated, &who(Some("cd456")), None),
            WhichApp::Settle(_)
        ));
        let no_scope = t.refreshed(grant(None), NOW);
        assert!(matches!(
            which_app(&no_scope, &who(None), None),
            WhichApp::Settle(_)
        ));
    }

    #[test]
    fn counts_add_up_and_the_import_finishes_once() {
        let items: Vec<ItemRecord> = read(json!({"links": [
            {"user": "u1", "refresh_token": "A"},
            {"user": "u2", "refresh_token": "A"},
            {"user": "", "refresh_token": "C"},
        ]}))
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(i, p)| p.into_record(i as u32, |t| t.seal(&keys(), "aad", [1; NONCE_LEN])))
        .collect();
        let id = ImportId::from_random([7; 16]);
        let mut r = ImportRecord::new(id, PartnerId::parse("acme").unwrap(), &items, NOW);
        assert_eq!(
            (r.counts.pending, r.counts.duplicate, r.counts.invalid),
            (1, 1, 1)
        );
        assert_eq!(r.status(), ImportStatus::Running);
        assert!(r.count(ImportOutcome::Imported, NOW + 5));
        assert_eq!(r.status(), ImportStatus::Done);
        assert_eq!(r.finished_at, Some(NOW + 5));
        let api = r.to_api(&items, None);
        assert_eq!(api.items.len(), 3);
        assert_eq!(api.items[1].outcome, Some(ImportOutcome::Duplicate));
        assert_eq!(api.items[0].outcome, None);
    }

    #[test]
    fn pages_are_a_hundred_items_in_index_order() {
        assert_eq!(page(None, 250).unwrap(), (0, 100, Some(100)));
        assert_eq!(page(Some("200"), 250).unwrap(), (200, 250, None));
        assert_eq!(page(None, 1).unwrap(), (0, 1, None));
        assert_eq!(
            page(Some("250"), 250).unwrap_err().code,
            ErrorCode::InvalidCursor
        );
        assert_eq!(
            page(Some("x"), 250).unwrap_err().code,
            ErrorCode::InvalidCursor
        );
    }

    #[test]
    fn items_wait_below_the_reserve_like_proxied_calls() {
        use crate::quota::{QuotaView, Window};
        let now_ms = 1_000_000;
        let day = |available| QuotaView {
            day: Some(Window {
                limit: 150_000,
                available,
                ends_keap_ms: now_ms + 60_000,
                resets_at_ms: now_ms + 60_000,
                seen_at_ms: now_ms,
            }),
            ..QuotaView::default()
        };
        assert_eq!(quota_wait(None, 10_000, now_ms), None, "nothing known: go");
        assert_eq!(quota_wait(Some(&day(20_000)), 10_000, now_ms), None);
        assert_eq!(quota_wait(Some(&day(9_999)), 10_000, now_ms), Some(60));
        assert_eq!(quota_wait(Some(&day(0)), 0, now_ms), Some(60));
    }

    #[test]
    fn ids_and_keys_are_checked() {
        let id = ImportId::from_random([0xab; 16]);
        assert_eq!(ImportId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(ImportId::parse("imp_XYZ"), None);
        assert_eq!(ImportId::parse(&id.as_str().to_uppercase()), None);
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(129)).is_err());
        assert!(IdempotencyKey::parse("k\u{e9}").is_err());
        let k = IdempotencyKey::parse("sunday-migration #1").unwrap();
        let acme = PartnerId::parse("acme").unwrap();
        let other = PartnerId::parse("other").unwrap();
        assert_ne!(k.object_name(&acme), k.object_name(&other));
        assert!(!k.object_name(&acme).contains("sunday"));
    }

    #[test]
    fn the_same_key_within_a_day_names_the_same_import() {
        let first = idempotent_import(None, ImportId::from_random([1; 16]), NOW);
        let again = idempotent_import(Some(&first), ImportId::from_random([2; 16]), NOW + 86_399);
        assert_eq!(again, first);
        let later = idempotent_import(Some(&first), ImportId::from_random([2; 16]), NOW + 86_400);
        assert_ne!(later.import, first.import);
        assert_eq!(later.at, NOW + 86_400);
    }

    #[test]
    fn an_imported_link_dates_its_refresh_token_from_what_keap_said() {
        let partner = PartnerId::parse("acme").unwrap();
        let user = UserId::parse("u1").unwrap();
        let app = KeapApp::parse("ab123").unwrap();
        let key = ConnectionKey::new(&partner, &user, &app);
        let mk = |tokens: ItemTokens| {
            imported_link(
                NewImported {
                    key: &key,
                    user: &user,
                    who: who(Some("ab123")),
                    app_name: Some("Ann's Bakery".into()),
                    tokens,
                    refresh_lifetime_secs: 45 * 86_400,
                    now: NOW,
                    id: [3; 16],
                    nonce: [4; NONCE_LEN],
                },
                &keys(),
            )
            .unwrap()
        };
        let held = ItemTokens {
            access_token: Some(Secret::new("AT")),
            access_expires_at: Some(NOW + 3600),
            ..partner_tokens()
        };
        let r = mk(held);
        assert_eq!(r.refresh_issued_at, NOW + 3600 - 86_400);
        assert_eq!(r.access_expires_at, NOW + 3600);
        assert_eq!(
            r.open_tokens(&keys(), &key).unwrap().refresh_token.expose(),
            "RT"
        );
        let r = mk(partner_tokens().refreshed(grant(Some("ab123")), NOW));
        assert_eq!(r.refresh_issued_at, NOW);
        assert_eq!(
            r.open_tokens(&keys(), &key).unwrap().refresh_token.expose(),
            "RT2"
        );
        assert_eq!(r.keap_app_name.as_deref(), Some("Ann's Bakery"));
        assert!(
            imported_link(
                NewImported {
                    key: &key,
                    user: &user,
                    who: who(None),
                    app_name: None,
                    tokens: partner_tokens(),
                    refresh_lifetime_secs: 1,
                    now: NOW,
                    id: [3; 16],
                    nonce: [4; NONCE_LEN]
                },
                &keys()
            )
            .is_none(),
            "no access token: refresh first"
        );
    }

    #[test]
    fn sealed_tokens_are_bound_to_their_item() {
        let id = ImportId::from_random([5; 16]);
        let sealed = partner_tokens().seal(&keys(), &item_aad(&id, 3), [9; NONCE_LEN]);
        assert!(!sealed.contains("RT"));
        assert!(ItemTokens::open(&keys(), &item_aad(&id, 3), &sealed).is_some());
        assert!(ItemTokens::open(&keys(), &item_aad(&id, 4), &sealed).is_none());
    }
}
