//! A partner's webhook deliveries as its console shows them: each event with its attempts, last
//! status and next retry, the last 200, held by the partner's guard. Redelivering puts the same
//! event (same id: receivers deduplicate on it) back on the queue.

use crate::clock::{rfc3339, UnixTime};
use crate::webhook::{Delivery, QueuedEvent};
use keaplink_api::{DeliveryState, WebhookCounts, WebhookDelivery};
use serde::{Deserialize, Serialize};

/// Deliveries kept per partner.
pub const MAX_DELIVERIES: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryEntry {
    pub event: QueuedEvent,
    pub state: DeliveryState,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_attempt_at: Option<UnixTime>,
    pub next_retry_at: Option<UnixTime>,
    pub delivered_at: Option<UnixTime>,
}

impl DeliveryEntry {
    pub fn new(event: QueuedEvent) -> Self {
        DeliveryEntry {
            event,
            state: DeliveryState::Pending,
            attempts: 0,
            last_status: None,
            last_attempt_at: None,
            next_retry_at: None,
            delivered_at: None,
        }
    }

    /// One attempt answered `status` (`None`: no answer) and the retry rule said `outcome`.
    pub fn attempted(&mut self, status: Option<u16>, outcome: Delivery, at: UnixTime) {
        self.attempts = self.attempts.saturating_add(1);
        self.last_status = status;
        self.last_attempt_at = Some(at);
        match outcome {
            Delivery::Done => {
                self.state = DeliveryState::Delivered;
                self.next_retry_at = None;
                self.delivered_at = Some(at);
            }
            Delivery::Retry(secs) => {
                self.state = DeliveryState::Pending;
                self.next_retry_at = Some(at + i64::from(secs));
            }
            Delivery::Drop => {
                self.state = DeliveryState::Failed;
                self.next_retry_at = None;
            }
        }
    }

    /// Sent again on request: pending until its next attempt.
    pub fn redelivered(&mut self) {
        self.state = DeliveryState::Pending;
        self.next_retry_at = None;
    }

    pub fn to_api(&self) -> WebhookDelivery {
        WebhookDelivery {
            id: self.event.id.clone(),
            event_type: self.event.type_name().to_owned(),
            created_at: self.event.created_at.clone(),
            connection_id: self.event.connection_id.clone(),
            user: self.event.user.as_ref().map(|u| u.as_str().to_owned()),
            state: self.state,
            attempts: self.attempts,
            last_status: self.last_status,
            last_attempt_at: self.last_attempt_at.map(rfc3339),
            next_retry_at: self.next_retry_at.map(rfc3339),
        }
    }
}

/// Pending, failed, and delivered in the last 24 hours.
pub fn counts<'a>(
    entries: impl IntoIterator<Item = &'a DeliveryEntry>,
    now: UnixTime,
) -> WebhookCounts {
    let mut c = WebhookCounts::default();
    for e in entries {
        match e.state {
            DeliveryState::Pending => c.pending += 1,
            DeliveryState::Failed => c.failed += 1,
            DeliveryState::Delivered => {
                if e.delivered_at.is_some_and(|at| now - at < 86_400) {
                    c.delivered_last_24h += 1;
                }
            }
        }
    }
    c
}

/// The order of a partner's deliveries, newest last, capped: pushing a new id answers the ids
/// that fell off (their entries are deleted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryOrder {
    ids: Vec<String>,
}

impl DeliveryOrder {
    /// Notes `id` (if new); answers the ids that no longer fit.
    pub fn push(&mut self, id: &str) -> Vec<String> {
        if self.ids.iter().any(|i| i == id) {
            return Vec::new();
        }
        self.ids.push(id.to_owned());
        let over = self.ids.len().saturating_sub(MAX_DELIVERIES);
        self.ids.drain(..over).collect()
    }

    /// Newest first, at most `limit`.
    pub fn newest(&self, limit: usize) -> Vec<String> {
        self.ids.iter().rev().take(limit).cloned().collect()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids.iter().any(|i| i == id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{PartnerId, UserId};
    use crate::webhook::{EventKind, WebhookEvent};
    use keaplink_api::{Connection, ConnectionStatus, KeapUser};

    fn event(id: &str) -> QueuedEvent {
        WebhookEvent {
            id: id.into(),
            kind: EventKind::NeedsReauth,
            created_at: rfc3339(0),
            partner_id: PartnerId::parse("acme").unwrap(),
            user: UserId::parse("u1").unwrap(),
            connection: Connection {
                id: "c1".into(),
                keap_app: "ab123".into(),
                keap_app_name: None,
                keap_user: KeapUser {
                    email: "a@b".into(),
                    name: "A".into(),
                },
                status: ConnectionStatus::NeedsReauth,
                connected_at: rfc3339(0),
                refreshed_at: None,
                reconnected_at: None,
                access_expires_at: rfc3339(0),
                refresh_expires_at: rfc3339(0),
                reconnect_before: None,
                last_error: None,
            },
            repair_url: Some("https://k.example/link/secret".into()),
        }
        .queued()
    }

    #[test]
    fn attempts_move_a_delivery_along() {
        let mut d = DeliveryEntry::new(event("evt_1"));
        d.attempted(Some(500), Delivery::Retry(5), 100);
        assert_eq!(d.state, DeliveryState::Pending);
        assert_eq!(
            d.to_api().next_retry_at.as_deref(),
            Some(rfc3339(105).as_str())
        );
        d.attempted(Some(400), Delivery::Drop, 110);
        assert_eq!(d.state, DeliveryState::Failed);
        assert_eq!(d.to_api().last_status, Some(400));
        assert_eq!(d.attempts, 2);
        d.redelivered();
        assert_eq!(d.state, DeliveryState::Pending);
        d.attempted(Some(204), Delivery::Done, 120);
        let api = d.to_api();
        assert_eq!(api.state, DeliveryState::Delivered);
        assert_eq!(api.event_type, "connection.needs_reauth");
        assert_eq!(api.connection_id.as_deref(), Some("c1"));
        assert!(
            !serde_json::to_string(&api).unwrap().contains("secret"),
            "the listing never shows the event's repair link"
        );
        assert_eq!(counts([&d], 120).delivered_last_24h, 1);
        assert_eq!(counts([&d], 120 + 86_400).delivered_last_24h, 0);
    }

    #[test]
    fn the_order_keeps_the_newest_two_hundred() {
        let mut o = DeliveryOrder::default();
        let mut dropped = Vec::new();
        for i in 0..250 {
            dropped.extend(o.push(&format!("evt_{i}")));
        }
        assert_eq!(o.len(), MAX_DELIVERIES);
        assert_eq!(dropped.len(), 50);
        assert_eq!(dropped[0], "evt_0");
        assert_eq!(o.newest(2), vec!["evt_249", "evt_248"]);
        assert!(
            o.push("evt_249").is_empty(),
            "an id already there is not added twice"
        );
        assert!(!o.contains("evt_0"));
    }
}
