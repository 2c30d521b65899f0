//! Partner webhooks: the events, how they are signed, and when a delivery is tried again.
//!
//! Signature (like Stripe's): header `keaplink-signature: t=<unix>,v1=<hex HMAC-SHA256>` over
//! `"<t>.<raw body>"`, keyed with the partner's webhook key = HMAC-SHA256(session_secret,
//! "keaplink-webhook-v1"), so a partner derives it from the secret it already holds and no
//! second secret has to be stored or rotated. The event `id` is stable across retries: receivers
//! deduplicate on it.

use crate::clock::UnixTime;
use crate::ids::{hex, PartnerId, UserId};
use crate::secret::Secret;
use hmac::{Hmac, Mac};
use keaplink_api::Connection;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use url::Url;

pub const SIGNATURE_HEADER: &str = "keaplink-signature";
pub const EVENT_ID_HEADER: &str = "keaplink-event-id";
const KEY_LABEL: &[u8] = b"keaplink-webhook-v1";
/// A delivery that has failed for this long is dropped (and logged).
pub const GIVE_UP_AFTER_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "connection.created")]
    Created,
    #[serde(rename = "connection.deleted")]
    Deleted,
    #[serde(rename = "connection.needs_reauth")]
    NeedsReauth,
    #[serde(rename = "connection.recovered")]
    Recovered,
    /// Refreshes keep failing and the refresh token has under a week left.
    #[serde(rename = "connection.expiring")]
    Expiring,
    /// The link was handed out by `POST /v1/connections/export`.
    #[serde(rename = "connection.exported")]
    Exported,
    /// Every item of an import has its outcome (the body is [`ImportFinishedEvent`]).
    #[serde(rename = "import.finished")]
    ImportFinished,
    /// Keap posted an event to one of the link's hooks (`keap.<event_key>`; the body is
    /// `keaplink_api::KeapEventDelivery`).
    #[serde(rename = "keap")]
    Keap,
}

impl EventKind {
    /// Every event keaplink sends. The OpenAPI document describes each (`crates/openapi`'s
    /// list of events; a test there fails for a kind it does not describe).
    pub const ALL: [EventKind; 8] = [
        EventKind::Created,
        EventKind::Deleted,
        EventKind::NeedsReauth,
        EventKind::Recovered,
        EventKind::Expiring,
        EventKind::Exported,
        EventKind::ImportFinished,
        EventKind::Keap,
    ];

    /// The `type` as the partner sees it (`connection.created`, …).
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Created => "connection.created",
            EventKind::Deleted => "connection.deleted",
            EventKind::NeedsReauth => "connection.needs_reauth",
            EventKind::Recovered => "connection.recovered",
            EventKind::Expiring => "connection.expiring",
            EventKind::Exported => "connection.exported",
            EventKind::ImportFinished => "import.finished",
            EventKind::Keap => "keap.{event_key}",
        }
    }

    /// Whether a partner with `webhook_repair_links` gets a fresh repair link in this event.
    pub fn carries_repair_link(self) -> bool {
        matches!(self, EventKind::NeedsReauth | EventKind::Expiring)
    }
}

/// An event as the partner receives it. Only ever written by the Worker: it travels on as
/// [`QueuedEvent`], its JSON made once, so nothing reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookEvent {
    /// `evt_` + 128 random bits; the same on every retry.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub created_at: String,
    pub partner_id: PartnerId,
    pub user: UserId,
    pub connection: Connection,
    /// A fresh repair link for the user (`needs_reauth` and `expiring`, when the partner asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair_url: Option<String>,
}

/// An event on its way: its JSON exactly as it is signed and sent (made once, when the event
/// happened), with what deliveries and the console need to know of it without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedEvent {
    pub id: String,
    pub kind: EventKind,
    pub partner: PartnerId,
    /// The user and link the event is about (none for `import.finished`).
    #[serde(default)]
    pub user: Option<UserId>,
    #[serde(default)]
    pub connection_id: Option<String>,
    pub created_at: String,
    pub body: String,
    /// A Keap event's `type` (`keap.contact.add`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keap_type: Option<String>,
}

/// `import.finished` as the partner receives it: the import's counts, about no one link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportFinishedEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub created_at: String,
    pub partner_id: PartnerId,
    #[serde(flatten)]
    pub import: keaplink_api::ImportFinished,
}

impl ImportFinishedEvent {
    pub fn queued(&self) -> QueuedEvent {
        QueuedEvent {
            id: self.id.clone(),
            kind: self.kind,
            partner: self.partner_id.clone(),
            user: None,
            connection_id: None,
            created_at: self.created_at.clone(),
            body: serde_json::to_string(self).unwrap_or_default(),
            keap_type: None,
        }
    }
}

impl WebhookEvent {
    pub fn queued(&self) -> QueuedEvent {
        QueuedEvent {
            id: self.id.clone(),
            kind: self.kind,
            partner: self.partner_id.clone(),
            user: Some(self.user.clone()),
            connection_id: Some(self.connection.id.clone()),
            created_at: self.created_at.clone(),
            body: serde_json::to_string(self).unwrap_or_default(),
            keap_type: None,
        }
    }
}

impl QueuedEvent {
    /// The `type` as the partner sees it (`connection.created`, …).
    pub fn type_name(&self) -> &str {
        self.keap_type.as_deref().unwrap_or(self.kind.name())
    }
}

/// The partner's webhook key, derived from its session secret.
pub fn signing_key(session_secret: &Secret) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(session_secret.expose().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(KEY_LABEL);
    mac.finalize().into_bytes().to_vec()
}

/// `t=<timestamp>,v1=<signature>` for `body` sent at `timestamp`.
pub fn signature(key: &[u8], timestamp: UnixTime, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={timestamp},v1={}", hex(&mac.finalize().into_bytes()))
}

/// Where a webhook may be delivered: https, or http when the deployment allows it (local
/// development and tests).
pub fn target_allowed(url: &str, allow_http: bool) -> bool {
    match Url::parse(url) {
        Ok(u) => u.scheme() == "https" || (allow_http && u.scheme() == "http"),
        Err(_) => false,
    }
}

/// What to do after a delivery answered `status` (`None`: no answer at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    Done,
    /// Try again after this many seconds.
    Retry(u32),
    /// A 4xx other than 429, or too old: dropped and logged.
    Drop,
}

/// Backoff by age: the next try waits about as long as the event has already waited (so the
/// waits double: 5 s, 10 s, 20 s, ... capped at an hour), and gives up after a day.
pub fn after_attempt(status: Option<u16>, age_secs: i64, base_secs: u32) -> Delivery {
    let retryable = match status {
        Some(s) if (200..300).contains(&s) => return Delivery::Done,
        Some(429) | None => true,
        Some(s) => s >= 500,
    };
    if !retryable || age_secs >= GIVE_UP_AFTER_SECS {
        return Delivery::Drop;
    }
    let wait = age_secs.clamp(i64::from(base_secs.max(1)), 3600);
    Delivery::Retry(wait as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_over_timestamp_and_body() {
        let key = signing_key(&Secret::new("s3cret"));
        let sig = signature(&key, 1_800_000_000, br#"{"a":1}"#);
        assert!(sig.starts_with("t=1800000000,v1="));
        assert_eq!(sig.len(), "t=1800000000,v1=".len() + 64);
        assert_ne!(sig, signature(&key, 1_800_000_001, br#"{"a":1}"#));
        assert_ne!(sig, signature(&key, 1_800_000_000, br#"{"a":2}"#));
        assert_ne!(key, signing_key(&Secret::new("other")));
    }

    #[test]
    fn retries_429_5xx_and_silence_with_growing_waits_then_gives_up() {
        assert_eq!(after_attempt(Some(204), 0, 5), Delivery::Done);
        assert_eq!(after_attempt(Some(400), 0, 5), Delivery::Drop);
        assert_eq!(after_attempt(Some(410), 0, 5), Delivery::Drop);
        assert_eq!(after_attempt(Some(429), 0, 5), Delivery::Retry(5));
        assert_eq!(after_attempt(Some(503), 40, 5), Delivery::Retry(40));
        assert_eq!(after_attempt(None, 90_000, 5), Delivery::Drop);
        assert_eq!(after_attempt(None, 20_000, 5), Delivery::Retry(3600));
    }

    #[test]
    fn a_queued_event_carries_the_json_the_partner_gets() {
        let c: keaplink_api::Connection = serde_json::from_value(serde_json::json!({
            "id": "c1", "keap_app": "ab123", "keap_app_name": null,
            "keap_user": {"email": "a@b", "name": "A"}, "status": "active",
            "connected_at": "x", "refreshed_at": null, "access_expires_at": "x",
            "refresh_expires_at": "x", "reconnect_before": null, "last_error": null
        }))
        .unwrap();
        let e = WebhookEvent {
            id: "evt_1".into(),
            kind: EventKind::Expiring,
            created_at: "t".into(),
            partner_id: crate::ids::PartnerId::parse("acme").unwrap(),
            user: crate::ids::UserId::parse("u1").unwrap(),
            connection: c,
            repair_url: None,
        };
        let q = e.queued();
        assert_eq!(q.type_name(), "connection.expiring");
        assert_eq!(q.connection_id.as_deref(), Some("c1"));
        let sent: serde_json::Value = serde_json::from_str(&q.body).unwrap();
        assert_eq!(sent["type"], "connection.expiring");
        assert_eq!(sent["connection"]["keap_app"], "ab123");
        assert!(sent.get("repair_url").is_none());
    }

    #[test]
    fn every_kind_is_listed_once_and_named_as_it_is_sent() {
        for (i, k) in EventKind::ALL.iter().enumerate() {
            // A Keap event is queued as "keap" and sent as `keap.<its event key>`.
            let sent = if *k == EventKind::Keap {
                "keap"
            } else {
                k.name()
            };
            assert_eq!(serde_json::to_value(k).unwrap(), sent, "{k:?}");
            assert!(!EventKind::ALL[..i].contains(k), "{k:?} twice");
        }
        // Exhaustive: a kind added to the enum fails to compile here until ALL lists it.
        let listed = |k: EventKind| match k {
            EventKind::Created
            | EventKind::Deleted
            | EventKind::NeedsReauth
            | EventKind::Recovered
            | EventKind::Expiring
            | EventKind::Exported
            | EventKind::ImportFinished
            | EventKind::Keap => EventKind::ALL.contains(&k),
        };
        assert!(EventKind::ALL.into_iter().all(listed));
    }

    #[test]
    fn https_only_unless_allowed() {
        assert!(target_allowed("https://p.example/hooks", false));
        assert!(!target_allowed("http://p.example/hooks", false));
        assert!(target_allowed("http://127.0.0.1:9/hooks", true));
        assert!(!target_allowed("ftp://p.example", true));
    }
}
