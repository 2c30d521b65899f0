//! The console's search over a partner's links, without reading them all: a KV index kept by
//! each link's guard. Each link has one entry per term (its Keap user's email, its Keap app id,
//! its partner user id; lower-cased, cut to 128 characters), listed by prefix, and one entry
//! while it needs its user (the `needs_reauth` filter). Entries are written only when a term or
//! the status changes, never on a plain refresh.

use crate::connection::ConnectionRecord;
use crate::keys::{self, ConnectionKey};
use keaplink_api::ConnectionStatus;
use serde::{Deserialize, Serialize};

pub const MAX_TERM_CHARS: usize = 128;

/// What an index entry's KV metadata holds: the link it stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(rename = "k")]
    pub key: ConnectionKey,
}

fn term(text: &str) -> String {
    text.trim()
        .chars()
        .filter(|c| !c.is_control())
        .flat_map(char::to_lowercase)
        .take(MAX_TERM_CHARS)
        .collect()
}

/// The index entries (KV keys) of `record`.
pub fn entries(record: &ConnectionRecord) -> Vec<String> {
    // Sorted and without repeats, each term put in its place as it comes (three at most): a
    // `sort` of `String`s would be compiled for this alone (~5 KB of wasm).
    let mut terms: Vec<String> = Vec::new();
    for t in [
        record.keap_email.as_str(),
        record.keap_app.as_str(),
        record.user.as_str(),
    ] {
        let t = term(t);
        let at = terms.partition_point(|x| *x < t);
        if !t.is_empty() && terms.get(at) != Some(&t) {
            terms.insert(at, t);
        }
    }
    let mut out: Vec<String> = terms
        .iter()
        .map(|t| keys::search_term_entry(&record.partner, t, &record.id))
        .collect();
    if record.status == ConnectionStatus::NeedsReauth {
        out.push(keys::needs_reauth_entry(&record.partner, &record.id));
    }
    out
}

/// What to change in the index when a link goes from `old` to `new` (either may be absent):
/// entries to write, entries to delete.
pub fn diff(
    old: Option<&ConnectionRecord>,
    new: Option<&ConnectionRecord>,
) -> (Vec<String>, Vec<String>) {
    let before = old.map(entries).unwrap_or_default();
    let after = new.map(entries).unwrap_or_default();
    let put = after
        .iter()
        .filter(|e| !before.contains(e))
        .cloned()
        .collect();
    let delete = before
        .iter()
        .filter(|e| !after.contains(e))
        .cloned()
        .collect();
    (put, delete)
}

/// The listing prefix for a search `q` (a prefix of any term), or `None` when `q` is empty
/// after trimming.
pub fn prefix(partner: &crate::ids::PartnerId, q: &str) -> Option<String> {
    let t = term(q);
    (!t.is_empty()).then(|| keys::search_term_prefix(partner, &t))
}

/// The listing prefix of the links that need their user.
pub fn needs_reauth_prefix(partner: &crate::ids::PartnerId) -> String {
    keys::needs_reauth_prefix(partner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{NewConnection, DEFAULT_REFRESH_LIFETIME_SECS};
    use crate::ids::{ConnectionId, PartnerId, UserId};
    use crate::keap::{KeapApp, KeapFailure, KeapIdentity};
    use crate::seal::Keyring;
    use crate::secret::Secret;

    fn link(email: &str, user: &str) -> ConnectionRecord {
        let user = UserId::parse(user).unwrap();
        let key = ConnectionKey::new(
            &PartnerId::parse("acme").unwrap(),
            &user,
            &KeapApp::parse("ab123").unwrap(),
        );
        ConnectionRecord::create(
            NewConnection {
                key: &key,
                id: ConnectionId::from_random([5; 16]),
                user: &user,
                who: KeapIdentity {
                    email: email.into(),
                    name: "N".into(),
                    sub: None,
                    tenant_id: None,
                },
                app_name: None,
                access_token: Secret::new("a"),
                refresh_token: Secret::new("r"),
                expires_in: 100,
                refresh_lifetime_secs: DEFAULT_REFRESH_LIFETIME_SECS,
                now: 0,
                nonce: [0; 12],
            },
            &Keyring::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap(),
        )
    }

    #[test]
    fn a_link_is_found_by_any_term_prefix() {
        let l = link("Ann@AB123.example", "User-1001");
        let e = entries(&l);
        assert_eq!(e.len(), 3);
        let acme = PartnerId::parse("acme").unwrap();
        for q in ["ann", "ANN@ab", "ab1", "user-10", "  user-1001 "] {
            let p = prefix(&acme, q).unwrap();
            assert!(e.iter().any(|k| k.starts_with(&p)), "{q}");
        }
        for q in ["bob", "ab124"] {
            let p = prefix(&acme, q).unwrap();
            assert!(!e.iter().any(|k| k.starts_with(&p)), "{q}");
        }
        assert_eq!(prefix(&acme, "   "), None);
        // Another partner's prefix never reaches these.
        let other = prefix(&PartnerId::parse("other").unwrap(), "ann").unwrap();
        assert!(!e.iter().any(|k| k.starts_with(&other)));
    }

    #[test]
    fn only_changes_touch_the_index() {
        let l = link("ann@ab123.example", "u1");
        assert_eq!(diff(None, Some(&l)).0.len(), 3);
        // A refresh changes no term: nothing to write.
        let refreshed = l.refresh_failed(&KeapFailure::Timeout, 10);
        assert_eq!(diff(Some(&l), Some(&refreshed)), (vec![], vec![]));
        // Dying adds the needs_reauth entry; recovering removes it.
        let dead = l.refresh_refused(20);
        let (put, del) = diff(Some(&l), Some(&dead));
        assert_eq!(put.len(), 1);
        assert!(put[0].contains("/s/needs_reauth/"));
        assert!(del.is_empty());
        assert!(dead
            .metadata()
            .to_api()
            .status
            .eq(&ConnectionStatus::NeedsReauth));
        assert_eq!(diff(Some(&dead), Some(&l)).1.len(), 1);
        // A reconnect as another email moves the email entry.
        let mut other = l.clone();
        other.keap_email = "amy@ab123.example".into();
        let (put, del) = diff(Some(&l), Some(&other));
        assert!(put[0].contains("/t/amy@"));
        assert!(del[0].contains("/t/ann@"));
        // Deleted: every entry goes.
        assert_eq!(diff(Some(&dead), None).1.len(), 4);
    }
}
