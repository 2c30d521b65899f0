//! A connection: one partner user linked to one Keap app. Its stored record, the KV metadata
//! that listings and sweeps read instead of the value, and the rules of its status.

use crate::clock::{rfc3339, UnixTime};
use crate::error::{ApiError, ErrorCode};
use crate::ids::{ConnectionId, PartnerId, UserId};
use crate::keap::{KeapApp, KeapFailure, KeapIdentity, TokenGrant};
pub use crate::keys::ConnectionKey;
use crate::seal::{Keyring, OpenError, Reseal, NONCE_LEN};
use crate::secret::Secret;
use keaplink_api::{Connection, ConnectionStatus, KeapUser, LastError};
use serde::{Deserialize, Serialize};

/// KV metadata holds at most this many bytes (Cloudflare's limit is 1024).
pub const MAX_METADATA_BYTES: usize = 1024;
/// A token handed out is good for at least this long (the contract).
pub const MIN_TOKEN_VALIDITY_SECS: i64 = 60;
/// How long Keap keeps a refresh token alive after issuing it, unless configured
/// (`KEAP_REFRESH_TOKEN_LIFETIME_SECS`): 45 days, per Keap's staff.
pub const DEFAULT_REFRESH_LIFETIME_SECS: i64 = 45 * 86_400;
/// A link whose refreshes fail with less than this left on its refresh token is at risk: the
/// partner is warned (`connection.expiring`) and the user asked to reconnect before it dies.
pub const EXPIRY_WARNING_SECS: i64 = 7 * 86_400;

/// Why the last refresh failed (kept until a refresh succeeds or the user reconnects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    RefreshTokenInvalid,
    /// A refresh timed out, Keap had rotated the token, and the answer never arrived.
    RefreshLost,
    KeapThrottled,
    KeapUnavailable,
    KeapTimeout,
    KeapRejected,
    KeapBadResponse,
}

impl FailureKind {
    pub fn from_failure(f: &KeapFailure) -> Self {
        match f {
            KeapFailure::InvalidGrant => FailureKind::RefreshTokenInvalid,
            KeapFailure::Throttled => FailureKind::KeapThrottled,
            KeapFailure::Unavailable { .. } => FailureKind::KeapUnavailable,
            KeapFailure::Timeout => FailureKind::KeapTimeout,
            KeapFailure::Rejected { .. } => FailureKind::KeapRejected,
            KeapFailure::BadResponse { .. } => FailureKind::KeapBadResponse,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            FailureKind::RefreshTokenInvalid => "refresh_token_invalid",
            FailureKind::RefreshLost => "refresh_lost",
            FailureKind::KeapThrottled => "keap_throttled",
            FailureKind::KeapUnavailable => "keap_unavailable",
            FailureKind::KeapTimeout => "keap_timeout",
            FailureKind::KeapRejected => "keap_rejected",
            FailureKind::KeapBadResponse => "keap_bad_response",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            FailureKind::RefreshTokenInvalid => {
                "Keap no longer accepts this link's refresh token; the user must reconnect."
            }
            FailureKind::RefreshLost => {
                "Keap's answer to a refresh was lost and Keap no longer accepts the previous refresh token; the user must reconnect."
            }
            FailureKind::KeapThrottled => "Keap throttled the refresh; it will be retried.",
            FailureKind::KeapUnavailable => "Keap failed to refresh the token; it will be retried.",
            FailureKind::KeapTimeout => {
                "Keap did not answer the refresh in time; it will be retried."
            }
            FailureKind::KeapRejected => {
                "Keap refused the refresh request (check the OAuth client's credentials); it will be retried."
            }
            FailureKind::KeapBadResponse => {
                "Keap answered the refresh in an unexpected way; it will be retried."
            }
        }
    }
}

impl FailureKind {
    /// Whether the link needs its user.
    pub fn is_dead(self) -> bool {
        matches!(
            self,
            FailureKind::RefreshTokenInvalid | FailureKind::RefreshLost
        )
    }

    /// What a token request answers when a refresh it needed failed this way and no usable
    /// token is left.
    pub fn api_error(self) -> ApiError {
        let code = match self {
            FailureKind::RefreshTokenInvalid | FailureKind::RefreshLost => ErrorCode::NeedsReauth,
            FailureKind::KeapThrottled => ErrorCode::KeapThrottled,
            FailureKind::KeapTimeout => ErrorCode::KeapTimeout,
            FailureKind::KeapUnavailable | FailureKind::KeapRejected => ErrorCode::KeapError,
            FailureKind::KeapBadResponse => ErrorCode::KeapBadResponse,
        };
        ApiError::new(code, self.message())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedFailure {
    pub kind: FailureKind,
    pub at: UnixTime,
}

/// The tokens, only ever stored sealed.
#[derive(Serialize, Deserialize)]
struct Tokens {
    access_token: Secret,
    refresh_token: Secret,
}

/// A connection as stored in KV (the value). Tokens are sealed and bound to the record's key.
/// Fields added after the first release are left out of the JSON while empty, so a record
/// written before them reads and writes back byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    pub id: ConnectionId,
    pub partner: PartnerId,
    pub user: UserId,
    pub keap_app: KeapApp,
    pub keap_email: String,
    pub keap_name: String,
    /// Keap's stable id of the user who linked (userinfo `sub`): what a reconnect must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keap_sub: Option<String>,
    /// The app's business name, as Keap gave it at the last link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keap_app_name: Option<String>,
    pub status: ConnectionStatus,
    pub connected_at: UnixTime,
    pub refreshed_at: Option<UnixTime>,
    /// When its user last restored it (a reconnect or a repair link); `connected_at` stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnected_at: Option<UnixTime>,
    pub access_expires_at: UnixTime,
    /// When Keap issued the refresh token we hold (it ages out after about 45 days).
    pub refresh_issued_at: UnixTime,
    /// When that refresh token is expected to die (issued + the configured lifetime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<UnixTime>,
    pub last_error: Option<RecordedFailure>,
    /// Consecutive transient refresh failures, for backoff.
    #[serde(default)]
    pub failures: u32,
    /// The last two recorded uses (token or proxied calls, at most one per window; see
    /// `crate::keep`): what tells a link in use from an idle one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<UnixTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_used_at: Option<UnixTime>,
    /// When the link's Keap hooks were last checked (or set) at Keap; `None`: it has none. The
    /// sweep reads it from the metadata (`crate::hooks::check_due`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks_checked_at: Option<UnixTime>,
    /// `Tokens`, sealed.
    pub tokens: String,
}

/// The tokens of a record, opened.
#[derive(Debug, Clone)]
pub struct OpenTokens {
    pub access_token: Secret,
    pub refresh_token: Secret,
}

/// Everything a new or replaced connection needs from the callback.
pub struct NewConnection<'a> {
    pub key: &'a ConnectionKey,
    pub id: ConnectionId,
    /// The partner user the key was made for (the key holds only its hash).
    pub user: &'a UserId,
    pub who: KeapIdentity,
    pub app_name: Option<String>,
    pub access_token: Secret,
    pub refresh_token: Secret,
    pub expires_in: i64,
    /// How long Keap keeps the refresh token alive (`KEAP_REFRESH_TOKEN_LIFETIME_SECS`).
    pub refresh_lifetime_secs: i64,
    pub now: UnixTime,
    pub nonce: [u8; NONCE_LEN],
}

fn seal_tokens(
    keys: &Keyring,
    key: &ConnectionKey,
    access_token: Secret,
    refresh_token: Secret,
    nonce: [u8; NONCE_LEN],
) -> String {
    let plain = serde_json::to_vec(&Tokens {
        access_token,
        refresh_token,
    })
    .unwrap_or_default();
    keys.seal(key.as_str(), &plain, nonce)
}

impl ConnectionRecord {
    pub fn create(n: NewConnection<'_>, keys: &Keyring) -> Self {
        ConnectionRecord {
            id: n.id,
            partner: n.key.partner(),
            user: n.user.clone(),
            keap_app: n.key.app(),
            keap_email: n.who.email,
            keap_name: n.who.name,
            keap_sub: n.who.sub,
            keap_app_name: n.app_name,
            status: ConnectionStatus::Active,
            connected_at: n.now,
            refreshed_at: None,
            reconnected_at: None,
            access_expires_at: n.now + n.expires_in,
            refresh_issued_at: n.now,
            refresh_expires_at: Some(n.now + n.refresh_lifetime_secs),
            last_error: None,
            failures: 0,
            // Linking is a use: a new link is in use until its calls say otherwise.
            used_at: Some(n.now),
            prev_used_at: None,
            hooks_checked_at: None,
            tokens: seal_tokens(keys, n.key, n.access_token, n.refresh_token, n.nonce),
        }
    }

    /// The recorded uses, for the refresh rule.
    pub fn uses(&self) -> crate::keep::Uses {
        crate::keep::Uses {
            last: self.used_at,
            prev: self.prev_used_at,
        }
    }

    /// The record with `uses` recorded.
    pub fn with_uses(&self, uses: crate::keep::Uses) -> Self {
        ConnectionRecord {
            used_at: uses.last,
            prev_used_at: uses.prev,
            ..self.clone()
        }
    }

    pub fn open_tokens(
        &self,
        keys: &Keyring,
        key: &ConnectionKey,
    ) -> Result<OpenTokens, OpenError> {
        let plain = keys.open(key.as_str(), &self.tokens)?;
        let t: Tokens = serde_json::from_slice(&plain).map_err(|_| OpenError::Malformed)?;
        Ok(OpenTokens {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
        })
    }

    /// Key rotation: the record with its tokens sealed under the current key. Nothing else
    /// changes.
    pub fn resealed(
        &self,
        keys: &Keyring,
        key: &ConnectionKey,
        nonce: [u8; NONCE_LEN],
    ) -> Reseal<Self> {
        keys.reseal(key.as_str(), &self.tokens, nonce)
            .map(|tokens| ConnectionRecord {
                tokens,
                ..self.clone()
            })
    }

    /// Whether the access token may still be handed out at all (a transient refresh failure
    /// falls back to it).
    pub fn access_still_usable(&self, now: UnixTime) -> bool {
        self.status == ConnectionStatus::Active
            && self.access_expires_at - now >= MIN_TOKEN_VALIDITY_SECS
    }

    /// When the refresh token is expected to die (records from before the field existed: the
    /// default lifetime after it was issued).
    pub fn refresh_expires_at(&self) -> UnixTime {
        self.refresh_expires_at
            .unwrap_or(self.refresh_issued_at + DEFAULT_REFRESH_LIFETIME_SECS)
    }

    /// A refresh succeeded: new tokens, Keap's rotation kept (or the old refresh token when the
    /// response left it out).
    #[allow(clippy::too_many_arguments)]
    pub fn refreshed(
        &self,
        keys: &Keyring,
        key: &ConnectionKey,
        current: &OpenTokens,
        grant: TokenGrant,
        refresh_lifetime_secs: i64,
        now: UnixTime,
        nonce: [u8; NONCE_LEN],
    ) -> Self {
        let rotated = grant.refresh_token.is_some();
        let refresh = grant
            .refresh_token
            .unwrap_or_else(|| current.refresh_token.clone());
        ConnectionRecord {
            status: ConnectionStatus::Active,
            refreshed_at: Some(now),
            access_expires_at: now + grant.expires_in,
            refresh_issued_at: if rotated { now } else { self.refresh_issued_at },
            refresh_expires_at: if rotated {
                Some(now + refresh_lifetime_secs)
            } else {
                self.refresh_expires_at
            },
            last_error: None,
            failures: 0,
            tokens: seal_tokens(keys, key, grant.access_token, refresh, nonce),
            ..self.clone()
        }
    }

    /// A refresh failed transiently: the tokens are kept and it is retried later. (A dead refresh
    /// token is [`ConnectionRecord::refresh_refused`].)
    pub fn refresh_failed(&self, failure: &KeapFailure, now: UnixTime) -> Self {
        if *failure == KeapFailure::InvalidGrant {
            return self.refresh_refused(now);
        }
        ConnectionRecord {
            last_error: Some(RecordedFailure {
                kind: FailureKind::from_failure(failure),
                at: now,
            }),
            failures: self.failures.saturating_add(1),
            ..self.clone()
        }
    }

    /// Keap refused the refresh token the authoritative record holds: the link is dead until
    /// its user reconnects. When the previous attempt timed out, Keap had most likely rotated
    /// the token and its answer was lost (`refresh_lost`).
    pub fn refresh_refused(&self, now: UnixTime) -> Self {
        let lost = self
            .last_error
            .is_some_and(|e| e.kind == FailureKind::KeapTimeout);
        let kind = if lost {
            FailureKind::RefreshLost
        } else {
            FailureKind::RefreshTokenInvalid
        };
        ConnectionRecord {
            status: ConnectionStatus::NeedsReauth,
            last_error: Some(RecordedFailure { kind, at: now }),
            failures: self.failures.saturating_add(1),
            ..self.clone()
        }
    }

    /// The API's view of the link (the same as a listing's, from metadata).
    pub fn to_api(&self) -> Connection {
        self.summary().to_api()
    }

    /// What KV metadata carries, fitted to its size limit.
    pub fn metadata(&self) -> ConnectionMeta {
        self.summary().fit()
    }

    fn summary(&self) -> ConnectionMeta {
        ConnectionMeta {
            id: self.id.clone(),
            user: self.user.clone(),
            app: self.keap_app.clone(),
            status: self.status,
            connected_at: self.connected_at,
            refreshed_at: self.refreshed_at,
            reconnected_at: self.reconnected_at,
            access_expires_at: self.access_expires_at,
            refresh_issued_at: self.refresh_issued_at,
            last_error: self.last_error,
            failures: self.failures,
            email: self.keap_email.clone(),
            name: self.keap_name.clone(),
            app_name: self.keap_app_name.clone(),
            refresh_expires_at: self.refresh_expires_at,
            used_at: self.used_at,
            prev_used_at: self.prev_used_at,
            hooks_checked_at: self.hooks_checked_at,
        }
    }
}

/// What KV metadata holds for each connection: enough for listings and the refresh sweep, so
/// neither reads values. Short field names: it must fit in 1024 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionMeta {
    #[serde(rename = "i")]
    pub id: ConnectionId,
    #[serde(rename = "u")]
    pub user: UserId,
    #[serde(rename = "a")]
    pub app: KeapApp,
    #[serde(rename = "s")]
    pub status: ConnectionStatus,
    #[serde(rename = "c")]
    pub connected_at: UnixTime,
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    pub refreshed_at: Option<UnixTime>,
    #[serde(rename = "x")]
    pub access_expires_at: UnixTime,
    #[serde(rename = "r")]
    pub refresh_issued_at: UnixTime,
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<RecordedFailure>,
    #[serde(rename = "n", default)]
    pub failures: u32,
    #[serde(rename = "e", default)]
    pub email: String,
    #[serde(rename = "m", default)]
    pub name: String,
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    pub app_name: Option<String>,
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<UnixTime>,
    #[serde(rename = "g", default, skip_serializing_if = "Option::is_none")]
    pub reconnected_at: Option<UnixTime>,
    #[serde(rename = "w", default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<UnixTime>,
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    pub prev_used_at: Option<UnixTime>,
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    pub hooks_checked_at: Option<UnixTime>,
}

impl ConnectionMeta {
    /// Shortens the display fields (business name, then person's name, then email) until the
    /// JSON fits the limit. The user id is at most 256 characters without control characters,
    /// so the rest always fits.
    fn fit(mut self) -> Self {
        let too_big = |m: &ConnectionMeta| {
            serde_json::to_vec(m).map_or(true, |v| v.len() > MAX_METADATA_BYTES)
        };
        while too_big(&self) && self.app_name.as_deref().is_some_and(|n| !n.is_empty()) {
            if let Some(n) = self.app_name.as_mut() {
                n.pop();
            }
        }
        while too_big(&self) && !self.name.is_empty() {
            self.name.pop();
        }
        while too_big(&self) && !self.email.is_empty() {
            self.email.pop();
        }
        self
    }

    /// When the refresh token is expected to die.
    pub fn refresh_expires_at(&self) -> UnixTime {
        self.refresh_expires_at
            .unwrap_or(self.refresh_issued_at + DEFAULT_REFRESH_LIFETIME_SECS)
    }

    /// The recorded uses, for the sweep's rule.
    pub fn uses(&self) -> crate::keep::Uses {
        crate::keep::Uses {
            last: self.used_at,
            prev: self.prev_used_at,
        }
    }

    /// The time the user must reconnect by, when the link is at risk: still active, its last
    /// refresh failed, and at that failure less than [`EXPIRY_WARNING_SECS`] were left on the
    /// refresh token. Decided from stored fields alone, so listings and the guard agree.
    pub fn reconnect_before(&self) -> Option<UnixTime> {
        let expires = self.refresh_expires_at();
        match (self.status, self.last_error) {
            (ConnectionStatus::Active, Some(e)) if expires - e.at < EXPIRY_WARNING_SECS => {
                Some(expires)
            }
            _ => None,
        }
    }

    pub fn to_api(&self) -> Connection {
        Connection {
            id: self.id.as_str().to_owned(),
            keap_app: self.app.as_str().to_owned(),
            keap_app_name: self.app_name.clone().filter(|n| !n.is_empty()),
            keap_user: KeapUser {
                email: self.email.clone(),
                name: self.name.clone(),
            },
            status: self.status,
            connected_at: rfc3339(self.connected_at),
            refreshed_at: self.refreshed_at.map(rfc3339),
            reconnected_at: self.reconnected_at.map(rfc3339),
            access_expires_at: rfc3339(self.access_expires_at),
            refresh_expires_at: rfc3339(self.refresh_expires_at()),
            reconnect_before: self.reconnect_before().map(rfc3339),
            last_error: self.last_error.map(|e| LastError {
                code: e.kind.code().to_owned(),
                message: e.kind.message().to_owned(),
                at: rfc3339(e.at),
            }),
        }
    }
}

impl ConnectionRecord {
    /// See [`ConnectionMeta::reconnect_before`].
    pub fn reconnect_before(&self) -> Option<UnixTime> {
        self.summary().reconnect_before()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keyring {
        Keyring::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap()
    }

    fn record(user: &str, name: &str) -> (ConnectionKey, ConnectionRecord) {
        let partner = PartnerId::parse("acme").unwrap();
        let user = UserId::parse(user).unwrap();
        let app = KeapApp::parse("ab123").unwrap();
        let key = ConnectionKey::new(&partner, &user, &app);
        let rec = ConnectionRecord::create(
            NewConnection {
                key: &key,
                id: ConnectionId::from_random([3; 16]),
                user: &user,
                who: KeapIdentity {
                    email: "ann@example.com".into(),
                    name: name.into(),
                    sub: Some("17".into()),
                    tenant_id: None,
                },
                app_name: None,
                access_token: Secret::new("AT-1"),
                refresh_token: Secret::new("RT-1"),
                expires_in: 86_400,
                refresh_lifetime_secs: DEFAULT_REFRESH_LIFETIME_SECS,
                now: 1000,
                nonce: [1; NONCE_LEN],
            },
            &keys(),
        );
        (key, rec)
    }

    #[test]
    fn reseal_moves_tokens_to_the_new_first_key_and_nothing_else() {
        let (key, old) = record("u1", "Ann");
        let new_key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        let both = Keyring::parse(&format!(
            "{new_key},AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        ))
        .unwrap();
        let Reseal::Moved(moved) = old.resealed(&both, &key, [9; NONCE_LEN]) else {
            panic!("not moved");
        };
        assert_ne!(moved.tokens, old.tokens);
        assert_eq!(
            ConnectionRecord {
                tokens: old.tokens.clone(),
                ..moved.clone()
            },
            old
        );
        // The new key alone opens it; the old alone no longer does.
        let only_new = Keyring::parse(new_key).unwrap();
        let t = moved.open_tokens(&only_new, &key).unwrap();
        assert_eq!(t.refresh_token.expose(), "RT-1");
        assert!(moved.open_tokens(&keys(), &key).is_err());
        // Already current: nothing to do.
        assert_eq!(moved.resealed(&both, &key, [9; NONCE_LEN]), Reseal::Current);
        // A record no key opens is reported, not rewritten.
        assert_eq!(
            old.resealed(&only_new, &key, [9; NONCE_LEN]),
            Reseal::Unreadable
        );
    }

    #[test]
    fn tokens_are_sealed_and_bound_to_the_key() {
        let (key, rec) = record("u1", "Ann");
        let stored = serde_json::to_string(&rec).unwrap();
        assert!(!stored.contains("AT-1") && !stored.contains("RT-1"));
        let t = rec.open_tokens(&keys(), &key).unwrap();
        assert_eq!(t.access_token.expose(), "AT-1");
        let (other_key, _) = record("u2", "Ann");
        assert!(rec.open_tokens(&keys(), &other_key).is_err());
    }

    #[test]
    fn refresh_rotates_and_failures_are_classified() {
        let (key, rec) = record("u1", "Ann");
        let cur = rec.open_tokens(&keys(), &key).unwrap();
        let grant = TokenGrant {
            access_token: Secret::new("AT-2"),
            refresh_token: None,
            expires_in: 100,
            keap_app: None,
        };
        let r2 = rec.refreshed(&keys(), &key, &cur, grant, 600, 2000, [2; NONCE_LEN]);
        let t2 = r2.open_tokens(&keys(), &key).unwrap();
        assert_eq!(t2.access_token.expose(), "AT-2");
        assert_eq!(
            t2.refresh_token.expose(),
            "RT-1",
            "kept when Keap leaves it out"
        );
        assert_eq!(r2.refresh_issued_at, rec.refresh_issued_at);
        assert_eq!(
            r2.refresh_expires_at(),
            rec.refresh_expires_at(),
            "the refresh token kept keeps its expiry"
        );
        assert_eq!(r2.access_expires_at, 2100);
        assert_eq!(r2.refreshed_at, Some(2000));

        let busy = r2.refresh_failed(&KeapFailure::Throttled, 2001);
        assert_eq!(busy.status, ConnectionStatus::Active);
        assert_eq!(busy.failures, 1);
        let dead = busy.refresh_failed(&KeapFailure::InvalidGrant, 2002);
        assert_eq!(dead.status, ConnectionStatus::NeedsReauth);
        let api = dead.to_api();
        assert_eq!(api.last_error.unwrap().code, "refresh_token_invalid");
    }

    #[test]
    fn metadata_fits_and_lists_like_the_value() {
        let long_user: String = "\"".repeat(256);
        let (_, rec) = record(&long_user, &"N".repeat(254));
        let mut rec = rec;
        rec.keap_email = format!("{}@x.example", "e".repeat(240));
        rec.last_error = Some(RecordedFailure {
            kind: FailureKind::KeapTimeout,
            at: 5,
        });
        let meta = rec.metadata();
        assert!(serde_json::to_vec(&meta).unwrap().len() <= MAX_METADATA_BYTES);
        assert_eq!(meta.user.as_str(), long_user);
        let (_, small) = record("u1", "Ann");
        assert_eq!(small.metadata().to_api(), small.to_api());
    }

    /// A record and its metadata as the first release wrote them (string ids, none of the
    /// later fields): they read into the typed record and write back byte for byte.
    #[test]
    fn records_written_before_typed_ids_read_and_write_back_identically() {
        let (_, rec) = record("u1", "Ann");
        let id = rec.id.as_str().to_owned();
        let old = format!(
            r#"{{"id":"{id}","partner":"acme","user":"u1","keap_app":"ab123","keap_email":"ann@example.com","keap_name":"Ann","status":"active","connected_at":1000,"refreshed_at":null,"access_expires_at":87400,"refresh_issued_at":1000,"last_error":null,"failures":0,"tokens":"{}"}}"#,
            rec.tokens
        );
        let read: ConnectionRecord = serde_json::from_str(&old).unwrap();
        assert_eq!(read.user.as_str(), "u1");
        assert_eq!(read.keap_app.as_str(), "ab123");
        assert_eq!(serde_json::to_string(&read).unwrap(), old);
        assert_eq!(
            read.refresh_expires_at(),
            1000 + DEFAULT_REFRESH_LIFETIME_SECS
        );
        let old_meta = format!(
            r#"{{"i":"{id}","u":"u1","a":"ab123","s":"active","c":1000,"x":87400,"r":1000,"n":0,"e":"ann@example.com","m":"Ann"}}"#
        );
        let meta: ConnectionMeta = serde_json::from_str(&old_meta).unwrap();
        assert_eq!(serde_json::to_string(&meta).unwrap(), old_meta);
        // A stored id that is not one of ours is refused on read, not used.
        let forged = old.replace(&format!(r#""id":"{id}""#), r#""id":"../x""#);
        assert!(serde_json::from_str::<ConnectionRecord>(&forged).is_err());
    }

    #[test]
    fn a_link_is_at_risk_when_refreshes_fail_in_its_last_week() {
        let (_, rec) = record("u1", "Ann");
        let dies = rec.refresh_expires_at();
        assert_eq!(rec.reconnect_before(), None, "no failure, no warning");
        let early = rec.refresh_failed(&KeapFailure::Throttled, dies - EXPIRY_WARNING_SECS - 1);
        assert_eq!(early.reconnect_before(), None, "more than a week left");
        let late = rec.refresh_failed(&KeapFailure::Timeout, dies - EXPIRY_WARNING_SECS + 1);
        assert_eq!(late.reconnect_before(), Some(dies));
        assert_eq!(
            late.to_api().reconnect_before.as_deref(),
            Some(rfc3339(dies).as_str())
        );
        assert_eq!(late.metadata().reconnect_before(), Some(dies));
        // Dead: nothing to reconnect "before".
        assert_eq!(late.refresh_refused(dies - 10).reconnect_before(), None);
    }

    #[test]
    fn a_refused_refresh_after_a_timeout_was_lost() {
        let (_, rec) = record("u1", "Ann");
        let dead = rec.refresh_refused(5000);
        assert_eq!(dead.status, ConnectionStatus::NeedsReauth);
        assert_eq!(
            dead.last_error.unwrap().kind,
            FailureKind::RefreshTokenInvalid
        );
        let lost = rec
            .refresh_failed(&KeapFailure::Timeout, 5000)
            .refresh_refused(5100);
        assert_eq!(lost.last_error.unwrap().kind, FailureKind::RefreshLost);
        assert_eq!(lost.failures, 2);
    }
}
