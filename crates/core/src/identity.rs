//! Identity-locked reconnects: a reconnect (a Reconnect click, a repair link, or a plain connect
//! that lands on an app the user already has linked) must sign in to the same Keap app and, unless
//! the partner relaxed it to `app`, as the same Keap user. Otherwise nothing is stored: the link
//! keeps its tokens, status and id.

use crate::connection::ConnectionRecord;
use crate::keap::{KeapApp, KeapIdentity};
use keaplink_api::ReconnectIdentity;
use serde::{Deserialize, Serialize};

/// Who signed in, and who the link expects (emails, and apps when they differ): what the user is
/// told. Never a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    pub signed_in: String,
    pub expected: String,
    /// The Keap app the sign-in landed on, when it is not the link's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_in_app: Option<KeapApp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_app: Option<KeapApp>,
}

impl Mismatch {
    /// A sentence for the link's timeline and the repair page.
    pub fn describe(&self) -> String {
        match (&self.signed_in_app, &self.expected_app) {
            (Some(got), Some(want)) => format!(
                "{} signed in to Keap app {got}; this link is for {} in {want}.",
                self.signed_in, self.expected
            ),
            _ => format!(
                "{} signed in to Keap; this link belongs to {}.",
                self.signed_in, self.expected
            ),
        }
    }
}

/// Whether `who` may reconnect `existing` under `rule` (the app is the same: the link's key names
/// it). The Keap user is compared by Keap's stable `sub`; a link stored before `sub` was kept
/// falls back to the email, compared without case.
pub fn check(
    rule: ReconnectIdentity,
    existing: &ConnectionRecord,
    who: &KeapIdentity,
) -> Result<(), Mismatch> {
    if rule == ReconnectIdentity::App {
        return Ok(());
    }
    let same = match (&existing.keap_sub, &who.sub) {
        (Some(a), Some(b)) => a == b,
        _ => existing.keap_email.eq_ignore_ascii_case(&who.email),
    };
    if same {
        Ok(())
    } else {
        Err(Mismatch {
            signed_in: who.email.clone(),
            expected: existing.keap_email.clone(),
            signed_in_app: None,
            expected_app: None,
        })
    }
}

/// A reconnect of `expected` that landed on another app: refused whatever the rule.
pub fn wrong_app(expected: &ConnectionRecord, who: &KeapIdentity, landed: &KeapApp) -> Mismatch {
    Mismatch {
        signed_in: who.email.clone(),
        expected: expected.keap_email.clone(),
        signed_in_app: Some(landed.clone()),
        expected_app: Some(expected.keap_app.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{NewConnection, DEFAULT_REFRESH_LIFETIME_SECS};
    use crate::ids::{ConnectionId, PartnerId, UserId};
    use crate::keys::ConnectionKey;
    use crate::seal::Keyring;
    use crate::secret::Secret;

    fn who(email: &str, sub: Option<&str>) -> KeapIdentity {
        KeapIdentity {
            email: email.into(),
            name: "N".into(),
            sub: sub.map(Into::into),
            tenant_id: None,
        }
    }

    fn link(sub: Option<&str>) -> ConnectionRecord {
        let user = UserId::parse("u").unwrap();
        let key = ConnectionKey::new(
            &PartnerId::parse("acme").unwrap(),
            &user,
            &KeapApp::parse("ab123").unwrap(),
        );
        ConnectionRecord::create(
            NewConnection {
                key: &key,
                id: ConnectionId::from_random([2; 16]),
                user: &user,
                who: who("ann@ab123.example", sub),
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
    fn the_same_keap_user_is_let_through_another_is_not() {
        let l = link(Some("1"));
        assert!(check(
            ReconnectIdentity::User,
            &l,
            &who("ann@ab123.example", Some("1"))
        )
        .is_ok());
        // The email changed at Keap, the person did not: `sub` decides.
        assert!(check(
            ReconnectIdentity::User,
            &l,
            &who("ann.new@ab123.example", Some("1"))
        )
        .is_ok());
        let m = check(
            ReconnectIdentity::User,
            &l,
            &who("amy@ab123.example", Some("4")),
        )
        .unwrap_err();
        assert_eq!(m.signed_in, "amy@ab123.example");
        assert_eq!(m.expected, "ann@ab123.example");
        assert!(m.describe().contains("amy@ab123.example signed in"));
        // "app" lets anyone with access to the app through.
        assert!(check(
            ReconnectIdentity::App,
            &l,
            &who("amy@ab123.example", Some("4"))
        )
        .is_ok());
    }

    #[test]
    fn a_link_from_before_sub_was_kept_compares_emails() {
        let l = link(None);
        assert!(check(
            ReconnectIdentity::User,
            &l,
            &who("ANN@ab123.example", Some("1"))
        )
        .is_ok());
        assert!(check(
            ReconnectIdentity::User,
            &l,
            &who("amy@ab123.example", Some("4"))
        )
        .is_err());
    }

    #[test]
    fn another_app_is_named() {
        let m = wrong_app(
            &link(Some("1")),
            &who("dan@gh012.example", Some("5")),
            &KeapApp::parse("ij345").unwrap(),
        );
        assert!(m.describe().contains("Keap app ij345"));
        assert!(m.describe().contains("ab123"));
    }
}
