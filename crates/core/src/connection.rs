//! A connection: one partner user linked to one Keap app. Its stored record, the KV metadata
//! that listings and sweeps read instead of the value, and the rules of its status.

use crate::clock::{rfc3339, UnixTime};
use crate::error::{ApiError, ErrorCode};
use crate::ids::{ConnectionId, PartnerId, UserId};
use crate::keap::{KeapApp, KeapFailure, KeapIdentity, TokenGrant};
use crate::seal::{Keyring, OpenError, Reseal, NONCE_LEN};
use crate::secret::Secret;
use keaplink_api::{Connection, ConnectionStatus, KeapUser, LastError};
use serde::{Deserialize, Serialize};

/// KV metadata holds at most this many bytes (Cloudflare's limit is 1024).
pub const MAX_METADATA_BYTES: usize = 1024;
/// A token handed out is good for at least this long (the contract).
pub const MIN_TOKEN_VALIDITY_SECS: i64 = 60;

/// Where a connection lives: the KV key `c/<partner>/<user hash>/<app>`. Deterministic, so a
/// token request that names its app costs one read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionKey(String);

impl ConnectionKey {
    pub fn new(partner: &PartnerId, user: &UserId, app: &KeapApp) -> Self {
        ConnectionKey(format!("{}{}", user_prefix(partner, user), app.as_str()))
    }

    /// Accepts any well-formed connection key (from a list page or a queue message); the
    /// partner is the one the key names.
    pub fn parse(raw: &str) -> Option<Self> {
        let partner = PartnerId::parse(raw.split('/').nth(1)?)?;
        ConnectionKey::parse_under(&partner, raw)
    }

    /// Accepts a stored pointer only if it is a well-formed key under `partner`.
    pub fn parse_under(partner: &PartnerId, raw: &str) -> Option<Self> {
        let rest = raw.strip_prefix(&partner_prefix(partner))?;
        let (user_key, app) = rest.split_once('/')?;
        let ok = user_key.len() == 43 && KeapApp::parse(app).is_some_and(|a| a.as_str() == app);
        ok.then(|| ConnectionKey(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The KV key of the id → connection pointer.
    pub fn index_key(id: &ConnectionId) -> String {
        format!("i/{}", id.as_str())
    }
}

/// Every connection of every partner: the sweep's `list()` prefix.
pub const ALL_CONNECTIONS_PREFIX: &str = "c/";

/// All connections of one partner: `GET /v1/connections`.
pub fn partner_prefix(partner: &PartnerId) -> String {
    format!("c/{}/", partner.as_str())
}

/// All connections of one partner user: `GET /v1/me/connections`.
pub fn user_prefix(partner: &PartnerId, user: &UserId) -> String {
    format!("c/{}/{}/", partner.as_str(), user.storage_key())
}

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    pub id: String,
    pub partner: String,
    pub user: String,
    pub keap_app: String,
    pub keap_email: String,
    pub keap_name: String,
    pub status: ConnectionStatus,
    pub connected_at: UnixTime,
    pub refreshed_at: Option<UnixTime>,
    pub access_expires_at: UnixTime,
    /// When Keap issued the refresh token we hold (it ages out after about 45 days).
    pub refresh_issued_at: UnixTime,
    pub last_error: Option<RecordedFailure>,
    /// Consecutive transient refresh failures, for backoff.
    #[serde(default)]
    pub failures: u32,
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
    pub partner: &'a PartnerId,
    pub user: &'a UserId,
    pub app: &'a KeapApp,
    pub who: KeapIdentity,
    pub access_token: Secret,
    pub refresh_token: Secret,
    pub expires_in: i64,
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
            id: n.id.as_str().to_owned(),
            partner: n.partner.as_str().to_owned(),
            user: n.user.as_str().to_owned(),
            keap_app: n.app.as_str().to_owned(),
            keap_email: n.who.email,
            keap_name: n.who.name,
            status: ConnectionStatus::Active,
            connected_at: n.now,
            refreshed_at: None,
            access_expires_at: n.now + n.expires_in,
            refresh_issued_at: n.now,
            last_error: None,
            failures: 0,
            tokens: seal_tokens(keys, n.key, n.access_token, n.refresh_token, n.nonce),
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

    /// Fresh enough to hand out without refreshing: at least the refresh margin left, and never
    /// less than the contract's 60 s.
    pub fn is_fresh(&self, now: UnixTime, margin_secs: i64) -> bool {
        self.status == ConnectionStatus::Active
            && self.access_expires_at - now >= margin_secs.max(MIN_TOKEN_VALIDITY_SECS)
    }

    /// Whether the access token may still be handed out at all (a transient refresh failure
    /// falls back to it).
    pub fn access_still_usable(&self, now: UnixTime) -> bool {
        self.status == ConnectionStatus::Active
            && self.access_expires_at - now >= MIN_TOKEN_VALIDITY_SECS
    }

    /// A refresh succeeded: new tokens, Keap's rotation kept (or the old refresh token when the
    /// response left it out).
    pub fn refreshed(
        &self,
        keys: &Keyring,
        key: &ConnectionKey,
        current: &OpenTokens,
        grant: TokenGrant,
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
            last_error: None,
            failures: 0,
            tokens: seal_tokens(keys, key, grant.access_token, refresh, nonce),
            ..self.clone()
        }
    }

    /// A refresh failed. A dead refresh token ends the link until the user reconnects; anything
    /// else keeps the tokens and is retried later.
    pub fn refresh_failed(&self, failure: &KeapFailure, now: UnixTime) -> Self {
        let kind = FailureKind::from_failure(failure);
        ConnectionRecord {
            // Only a dead refresh token ends the link; everything else is retried.
            status: if kind.is_dead() {
                ConnectionStatus::NeedsReauth
            } else {
                self.status
            },
            last_error: Some(RecordedFailure { kind, at: now }),
            failures: self.failures.saturating_add(1),
            ..self.clone()
        }
    }

    /// Keap refused the refresh token and the authoritative record still holds it: the link is
    /// dead until its user reconnects. `lost` says the previous attempt timed out, so Keap had
    /// most likely rotated the token and the answer was lost.
    pub fn refresh_dead(&self, lost: bool, now: UnixTime) -> Self {
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
            access_expires_at: self.access_expires_at,
            refresh_issued_at: self.refresh_issued_at,
            last_error: self.last_error,
            failures: self.failures,
            email: self.keap_email.clone(),
            name: self.keap_name.clone(),
        }
    }
}

/// What KV metadata holds for each connection: enough for listings and the refresh sweep, so
/// neither reads values. Short field names: it must fit in 1024 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionMeta {
    #[serde(rename = "i")]
    pub id: String,
    #[serde(rename = "u")]
    pub user: String,
    #[serde(rename = "a")]
    pub app: String,
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
}

impl ConnectionMeta {
    /// Shortens the display fields (name first, then email) until the JSON fits the limit. The
    /// user id is at most 256 characters without control characters, so the rest always fits.
    fn fit(mut self) -> Self {
        let too_big = |m: &ConnectionMeta| {
            serde_json::to_vec(m).map_or(true, |v| v.len() > MAX_METADATA_BYTES)
        };
        while too_big(&self) && !self.name.is_empty() {
            self.name.pop();
        }
        while too_big(&self) && !self.email.is_empty() {
            self.email.pop();
        }
        self
    }

    pub fn to_api(&self) -> Connection {
        Connection {
            id: self.id.clone(),
            keap_app: self.app.clone(),
            keap_user: KeapUser {
                email: self.email.clone(),
                name: self.name.clone(),
            },
            status: self.status,
            connected_at: rfc3339(self.connected_at),
            refreshed_at: self.refreshed_at.map(rfc3339),
            access_expires_at: rfc3339(self.access_expires_at),
            // Interim: the lifetime and the warning rule land with issue 14's lifetimes.
            refresh_expires_at: rfc3339(self.refresh_issued_at + 45 * 86_400),
            reconnect_before: None,
            keap_app_name: None,
            last_error: self.last_error.map(|e| LastError {
                code: e.kind.code().to_owned(),
                message: e.kind.message().to_owned(),
                at: rfc3339(e.at),
            }),
        }
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
                partner: &partner,
                user: &user,
                app: &app,
                who: KeapIdentity {
                    email: "ann@example.com".into(),
                    name: name.into(),
                },
                access_token: Secret::new("AT-1"),
                refresh_token: Secret::new("RT-1"),
                expires_in: 86_400,
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
    fn freshness_uses_the_margin_but_never_less_than_60s() {
        let (_, rec) = record("u1", "Ann");
        let exp = rec.access_expires_at;
        assert!(rec.is_fresh(exp - 21_600, 21_600));
        assert!(!rec.is_fresh(exp - 21_599, 21_600));
        assert!(rec.is_fresh(exp - 60, 10));
        assert!(!rec.is_fresh(exp - 59, 10));
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
        let r2 = rec.refreshed(&keys(), &key, &cur, grant, 2000, [2; NONCE_LEN]);
        let t2 = r2.open_tokens(&keys(), &key).unwrap();
        assert_eq!(t2.access_token.expose(), "AT-2");
        assert_eq!(
            t2.refresh_token.expose(),
            "RT-1",
            "kept when Keap leaves it out"
        );
        assert_eq!(r2.refresh_issued_at, rec.refresh_issued_at);
        assert_eq!(r2.access_expires_at, 2100);
        assert_eq!(r2.refreshed_at, Some(2000));

        let busy = r2.refresh_failed(&KeapFailure::Throttled, 2001);
        assert_eq!(busy.status, ConnectionStatus::Active);
        assert_eq!(busy.failures, 1);
        let dead = busy.refresh_failed(&KeapFailure::InvalidGrant, 2002);
        assert_eq!(dead.status, ConnectionStatus::NeedsReauth);
        assert!(!dead.is_fresh(0, 0));
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
        assert_eq!(meta.user, long_user);
        let (_, small) = record("u1", "Ann");
        assert_eq!(small.metadata().to_api(), small.to_api());
    }

    #[test]
    fn pointers_must_stay_under_their_partner() {
        let (key, _) = record("u1", "Ann");
        let acme = PartnerId::parse("acme").unwrap();
        let other = PartnerId::parse("other").unwrap();
        assert!(ConnectionKey::parse_under(&acme, key.as_str()).is_some());
        assert!(ConnectionKey::parse_under(&other, key.as_str()).is_none());
        assert!(ConnectionKey::parse_under(&acme, "c/acme/../x/ab123").is_none());
        assert_eq!(ConnectionKey::parse(key.as_str()), Some(key.clone()));
        for bad in [
            "",
            "c/",
            "c/ACME/x/ab123",
            "i/abc",
            "c/acme/short/ab123",
            "p/acme",
        ] {
            assert!(ConnectionKey::parse(bad).is_none(), "{bad}");
        }
    }
}
