//! A link's timeline, kept by its guard: the last 100 things that happened to it, for the
//! console's "what happened to this one, and when". No entry ever holds a token or secret: kinds,
//! codes, and sentences made from emails and app ids.

use crate::clock::{rfc3339, UnixTime};
use crate::refresh::Attempt;
use crate::stats::RefreshOutcome;
use keaplink_api::{ConnectionEvent, ConnectionEventKind};
use serde::{Deserialize, Serialize};

pub const MAX_EVENTS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    at: UnixTime,
    kind: ConnectionEventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    /// Oldest first. A `Vec`, not a `VecDeque`: at most `MAX_EVENTS` entries, and a `VecDeque`
    /// was its own few KB of wasm for this one type (both read and write the same JSON array).
    entries: Vec<Entry>,
}

impl Timeline {
    pub fn push(
        &mut self,
        at: UnixTime,
        kind: ConnectionEventKind,
        code: Option<&str>,
        detail: Option<String>,
    ) {
        self.entries.push(Entry {
            at,
            kind,
            code: code.map(str::to_owned),
            detail,
        });
        if self.entries.len() > MAX_EVENTS {
            let over = self.entries.len() - MAX_EVENTS;
            self.entries.drain(..over);
        }
    }

    /// The entries one refresh attempt adds.
    pub fn record_attempt(&mut self, attempt: &Attempt, at: UnixTime) {
        let code = attempt.failure.map(|f| f.code());
        let kind = match attempt.outcome {
            RefreshOutcome::Succeeded => ConnectionEventKind::Refreshed,
            RefreshOutcome::Failed => ConnectionEventKind::RefreshFailed,
            RefreshOutcome::NeedsReauth => ConnectionEventKind::NeedsReauth,
        };
        let detail = attempt.failure.map(|f| f.message().to_owned());
        // A link that was already dead is not "newly" dead: announce only the change, count the try.
        if kind != ConnectionEventKind::NeedsReauth
            || attempt
                .announce
                .contains(&crate::webhook::EventKind::NeedsReauth)
        {
            self.push(at, kind, code, detail);
        }
        if attempt
            .announce
            .contains(&crate::webhook::EventKind::Expiring)
        {
            self.push(
                at,
                ConnectionEventKind::Expiring,
                code,
                Some("Refreshes keep failing and the refresh token has under a week left.".into()),
            );
        }
    }

    /// Newest first, as the API answers it.
    pub fn newest_first(&self) -> Vec<ConnectionEvent> {
        self.entries
            .iter()
            .rev()
            .map(|e| ConnectionEvent {
                at: rfc3339(e.at),
                kind: e.kind,
                code: e.code.clone(),
                detail: e.detail.clone(),
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::FailureKind;
    use crate::webhook::EventKind;

    #[test]
    fn keeps_the_last_hundred_newest_first() {
        let mut t = Timeline::default();
        t.push(1, ConnectionEventKind::Created, None, None);
        for i in 0..150 {
            t.push(10 + i, ConnectionEventKind::Refreshed, None, None);
        }
        assert_eq!(t.len(), MAX_EVENTS);
        let api = t.newest_first();
        assert_eq!(api[0].at, rfc3339(159));
        assert!(
            api.iter().all(|e| e.kind == ConnectionEventKind::Refreshed),
            "created fell off"
        );
    }

    #[test]
    fn an_attempt_records_what_happened_with_its_code() {
        let mut t = Timeline::default();
        t.record_attempt(
            &Attempt {
                outcome: RefreshOutcome::Failed,
                failure: Some(FailureKind::KeapTimeout),
                announce: vec![EventKind::Expiring],
            },
            5,
        );
        let api = t.newest_first();
        assert_eq!(api.len(), 2);
        assert_eq!(api[1].kind, ConnectionEventKind::RefreshFailed);
        assert_eq!(api[1].code.as_deref(), Some("keap_timeout"));
        assert_eq!(api[0].kind, ConnectionEventKind::Expiring);
        t.record_attempt(
            &Attempt {
                outcome: RefreshOutcome::NeedsReauth,
                failure: Some(FailureKind::RefreshTokenInvalid),
                announce: vec![EventKind::NeedsReauth],
            },
            6,
        );
        assert_eq!(t.newest_first()[0].kind, ConnectionEventKind::NeedsReauth);
        assert_eq!(
            t.newest_first()[0].code.as_deref(),
            Some("refresh_token_invalid")
        );
    }
}
