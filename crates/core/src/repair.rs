//! Repair links: a page hosted by keaplink where a user who is not on the partner's page restores
//! their link. The link is spent by the restore it brings about (its guard marks it spent, strongly
//! consistent), not by a try that signed in as someone else or was cancelled at Keap: those may be
//! tried again, [`MAX_ATTEMPTS`] times in all, each counted by the guard and noted on the link's
//! timeline. It is stored only as a hash, expires, and is tried by the page's button (a POST), never
//! by a GET: mail scanners open links. This module holds the link's token and record, its lifetime
//! and attempt rules, and the pages.

use crate::clock::{rfc3339, UnixTime};
use crate::error::{ApiError, ErrorCode};
use crate::identity::Mismatch;
use crate::ids::{ConnectionId, PartnerId};
use crate::keys::{self, ConnectionKey};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const DEFAULT_TTL_SECS: u64 = 7 * 86_400;
pub const MIN_TTL_SECS: u64 = 300;
pub const MAX_TTL_SECS: u64 = 30 * 86_400;
/// KV keeps a link this long past its expiry, so its page can say "expired", not "unknown".
pub const KEEP_AFTER_EXPIRY_SECS: u64 = 7 * 86_400;
pub const TOKEN_BYTES: usize = 32;
/// How many times a link's button may send its user to Keap before a restore spends it.
pub const MAX_ATTEMPTS: u32 = 5;

/// `ttl_secs` of a repair-link request.
pub fn ttl(requested: Option<u64>) -> Result<u64, ApiError> {
    match requested {
        None => Ok(DEFAULT_TTL_SECS),
        Some(t) if (MIN_TTL_SECS..=MAX_TTL_SECS).contains(&t) => Ok(t),
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "ttl_secs must be from 300 (5 minutes) to 2592000 (30 days).",
        )),
    }
}

/// The secret part of a repair link's URL: 256 random bits.
pub struct RepairToken(String);

impl RepairToken {
    pub fn from_random(bytes: [u8; TOKEN_BYTES]) -> Self {
        RepairToken(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts exactly the shape `from_random` makes.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = raw.len() == 43
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| RepairToken(raw.to_owned()))
    }

    /// Where the link's record lives (only the hash is stored).
    pub fn storage_key(&self) -> String {
        keys::repair_link(&self.0)
    }

    /// The link by its hash: what a repair attempt carries through Keap and back.
    pub fn handle(&self) -> RepairHandle {
        RepairHandle(crate::ids::storage_hash(&self.0))
    }

    /// `<PUBLIC_URL>/link/<token>`.
    pub fn url(&self, public_url: &str) -> String {
        format!("{}/link/{}", public_url.trim_end_matches('/'), self.0)
    }
}

/// A repair link by the hash of its token: enough to find its record and count its attempts, and
/// no use to anyone who reads it (the page takes the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RepairHandle(String);

impl RepairHandle {
    /// Where the link's record lives.
    pub fn storage_key(&self) -> String {
        keys::repair_link_hashed(&self.0)
    }

    /// The name the connection's guard spends it under (set by a restore).
    pub fn spend_key(&self) -> String {
        format!("spent/{}", self.0)
    }

    /// The name the connection's guard counts its attempts under.
    pub fn attempts_key(&self) -> String {
        format!("tries/{}", self.0)
    }
}

/// A repair attempt under way: which link, and which try this is (1-based).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairAttempt {
    pub link: RepairHandle,
    pub attempt: u32,
}

impl RepairAttempt {
    /// Whether a refused or cancelled attempt may offer another.
    pub fn may_try_again(&self) -> bool {
        self.attempt < MAX_ATTEMPTS
    }
}

/// What the guard decides when the button is pressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Try {
    /// Go to Keap: this is attempt `n` (1-based).
    Go(u32),
    /// A restore already spent it.
    Spent,
    /// Every attempt was used without a restore.
    Exhausted,
}

/// The next attempt of a link that was `spent` (by a restore) or not, after `tries` attempts.
pub fn next_try(spent: bool, tries: u32) -> Try {
    if spent {
        Try::Spent
    } else if tries >= MAX_ATTEMPTS {
        Try::Exhausted
    } else {
        Try::Go(tries + 1)
    }
}

/// The timeline's words for attempt `n`.
pub fn attempt_note(n: u32) -> String {
    format!("Attempt {n} of {MAX_ATTEMPTS}: sent to Keap to sign in. The link is spent only when it restores the connection.")
}

/// A repair link as stored (by the hash of its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairLinkRecord {
    pub partner: PartnerId,
    pub connection: ConnectionId,
    pub key: ConnectionKey,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    /// Set when it restored the connection (the guard's record is the one that counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<UnixTime>,
}

/// What a link's page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Usable,
    Used,
    Expired,
}

impl RepairLinkRecord {
    pub fn state(&self, now: UnixTime) -> LinkState {
        if self.used_at.is_some() {
            LinkState::Used
        } else if now >= self.expires_at {
            LinkState::Expired
        } else {
            LinkState::Usable
        }
    }

    /// How long KV keeps it.
    pub fn kv_ttl_secs(&self, now: UnixTime) -> u64 {
        (self.expires_at - now).max(60) as u64 + KEEP_AFTER_EXPIRY_SECS
    }
}

/// The pages of `/link/<token>`.
pub enum Page<'a> {
    /// The link works: one button.
    Ready {
        partner: &'a str,
        app: &'a str,
        email: &'a str,
        expires_at: UnixTime,
    },
    Unknown,
    Used,
    Expired,
    /// Tried [`MAX_ATTEMPTS`] times, never restored.
    Exhausted,
    /// Back from Keap: the link works again.
    Restored {
        partner: &'a str,
        app: &'a str,
    },
    /// Back from Keap: refused, and why; `again` is where the Try again button posts (a fresh
    /// attempt of the same link), while attempts are left.
    Refused {
        partner: &'a str,
        mismatch: Option<&'a Mismatch>,
        code: ErrorCode,
        again: Option<&'a str>,
    },
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;padding:2rem 1rem;background:#f5f6f8;color:#1d2330}\
main{max-width:30rem;margin:0 auto;background:#fff;border:1px solid #d5d9e0;border-radius:10px;padding:1.5rem}\
h1{font-size:1.3rem;margin:0 0 .75rem}p{margin:.5rem 0}.muted{color:#5b6473;font-size:.9rem}\
button{font:inherit;font-weight:600;background:#2f6fdd;color:#fff;border:0;border-radius:8px;padding:.7rem 1.2rem;margin-top:.75rem;cursor:pointer;width:100%}\
button:focus-visible{outline:3px solid #2f6fdd;outline-offset:3px}.ok{color:#1f7a3d}.warn{color:#a15c00}\
@media (prefers-color-scheme:dark){body{background:#12151b;color:#e8ebf0}main{background:#1b1f27;border-color:#3a4150}.muted{color:#a3acba}.ok{color:#58c27d}.warn{color:#f0a84a}}";

/// The pages' CSP: no script runs, nothing loads but this page's own style and the site's icon.
/// No `form-action`: browsers apply it to every redirect after the form is sent, and the button's
/// answer redirects to Keap's sign-out hop and sign-in, hosts keaplink cannot all name. The form
/// carries no data and no outside text reaches the page unescaped.
pub fn csp() -> String {
    let hash = STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
}

/// A time as people read it on the page: `2026-12-08 08:45 UTC`.
fn readable(t: UnixTime) -> String {
    let iso = rfc3339(t);
    format!("{} {} UTC", &iso[..10], &iso[11..16])
}

fn esc(s: &str) -> String {
    html_escape::encode_safe(s).into_owned()
}

/// The status and HTML of `page`.
pub fn render(page: &Page<'_>) -> (u16, String) {
    let (status, title, body) = match page {
        Page::Ready {
            partner,
            app,
            email,
            expires_at,
        } => (
            200,
            "Reconnect your Keap account".to_owned(),
            format!(
                "<p>{partner} needs you to sign in to Keap again to keep its connection to <strong>{app}</strong> working.</p>\
<p>Sign in as <strong>{email}</strong>. You will be signed out of Keap first, so you sign in as yourself.</p>\
<form method=\"post\"><button type=\"submit\">Reconnect Keap</button></form>\
<p class=\"muted\">This link works until it has reconnected your account (at most {MAX_ATTEMPTS} tries), until {}.</p>",
                readable(*expires_at),
                partner = esc(partner),
                app = esc(app),
                email = esc(email),
            ),
        ),
        Page::Unknown => (
            404,
            "This link is not valid".to_owned(),
            "<p>This reconnect link is not one we know. Check that you opened the whole link, or ask for a new one.</p>".to_owned(),
        ),
        Page::Used => (
            410,
            "This link was already used".to_owned(),
            "<p>This reconnect link has already been used. If your Keap connection still needs you, ask for a new link.</p>".to_owned(),
        ),
        Page::Exhausted => (
            410,
            "This link was tried too many times".to_owned(),
            format!("<p>This reconnect link was tried {MAX_ATTEMPTS} times without reconnecting your Keap account. Nothing was changed. Ask for a new link.</p>"),
        ),
        Page::Expired => (
            410,
            "This link has expired".to_owned(),
            "<p>This reconnect link has expired. Ask for a new one.</p>".to_owned(),
        ),
        Page::Restored { partner, app } => (
            200,
            "Your Keap account is reconnected".to_owned(),
            format!(
                "<p class=\"ok\">{} works with <strong>{}</strong> again. You can close this page.</p>",
                esc(partner),
                esc(app)
            ),
        ),
        Page::Refused {
            partner,
            mismatch,
            code,
            again,
        } => {
            let why = match mismatch {
                Some(m) => format!(
                    "You signed in to Keap as <strong>{}</strong>, but this connection belongs to <strong>{}</strong>{}. Nothing was changed.",
                    esc(&m.signed_in),
                    esc(&m.expected),
                    match &m.expected_app {
                        Some(app) => format!(" in {}", esc(app.as_str())),
                        None => String::new(),
                    }
                ),
                None => match code {
                    ErrorCode::AccessDenied => "You cancelled the connection. Nothing was changed.".to_owned(),
                    _ => "Keap did not complete the sign-in. Nothing was changed.".to_owned(),
                },
            };
            (
                code.status(),
                "Your Keap account was not reconnected".to_owned(),
                match again {
                    // No `action` host: the form posts to this Worker, whatever it is called.
                    Some(again) => format!(
                        "<p class=\"warn\">{why}</p><p>This link still works: try again, and sign in to Keap as the connection's owner. You will be signed out of Keap first.</p>\
<form method=\"post\" action=\"{}\"><button type=\"submit\">Try again</button></form>",
                        html_escape::encode_double_quoted_attribute(again)
                    ),
                    None => format!(
                        "<p class=\"warn\">{why}</p><p>This link has been tried {MAX_ATTEMPTS} times. Ask {} for a new link to try again.</p>",
                        esc(partner)
                    ),
                },
            )
        }
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"referrer\" content=\"no-referrer\"><title>{title}</title><style>{STYLE}</style></head>\
<body><main><h1>{title}</h1>{body}</main></body></html>"
    );
    (status, html)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keap::KeapApp;

    #[test]
    fn tokens_are_random_shaped_and_stored_hashed() {
        let t = RepairToken::from_random([7; TOKEN_BYTES]);
        assert!(RepairToken::parse(&t.0).is_some());
        assert!(!t.storage_key().contains(&t.0));
        let h = t.handle();
        assert!(!h.spend_key().contains(&t.0));
        assert!(!h.attempts_key().contains(&t.0));
        assert_ne!(h.spend_key(), h.attempts_key());
        // The handle finds the same record the token does, and says nothing of the token.
        assert_eq!(h.storage_key(), t.storage_key());
        assert!(!serde_json::to_string(&h).unwrap().contains(&t.0));
        assert_eq!(
            t.url("https://k.example/"),
            format!("https://k.example/link/{}", t.0)
        );
        for bad in [
            "",
            "short",
            &"a".repeat(44),
            &format!("{}/", "a".repeat(42)),
        ] {
            assert!(RepairToken::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn ttl_is_bounded() {
        assert_eq!(ttl(None).unwrap(), DEFAULT_TTL_SECS);
        assert_eq!(ttl(Some(300)).unwrap(), 300);
        assert_eq!(ttl(Some(2_592_000)).unwrap(), 2_592_000);
        for bad in [0, 299, 2_592_001, u64::MAX] {
            assert_eq!(ttl(Some(bad)).unwrap_err().code, ErrorCode::InvalidRequest);
        }
    }

    #[test]
    fn a_link_is_usable_until_used_or_expired() {
        let id = ConnectionId::from_random([1; 16]);
        let key = ConnectionKey::parse(&format!("c/acme/{}/ab123", "h".repeat(43))).unwrap();
        let mut r = RepairLinkRecord {
            partner: PartnerId::parse("acme").unwrap(),
            connection: id,
            key,
            created_at: 100,
            expires_at: 400,
            used_at: None,
        };
        assert_eq!(r.state(399), LinkState::Usable);
        assert_eq!(r.state(400), LinkState::Expired);
        assert!(r.kv_ttl_secs(100) >= 300 + KEEP_AFTER_EXPIRY_SECS);
        r.used_at = Some(200);
        assert_eq!(r.state(300), LinkState::Used);
    }

    #[test]
    fn pages_escape_what_others_wrote_and_pin_their_style() {
        let (status, html) = render(&Page::Ready {
            partner: "<script>alert(1)</script> Co",
            app: "Ann's Bakery (ab123)",
            email: "ann@ab123.example",
            expires_at: 0,
        });
        assert_eq!(status, 200);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(
            html.contains("<form method=\"post\">"),
            "the button POSTs; a GET spends nothing"
        );
        assert!(csp().contains("default-src 'none'") && csp().contains("frame-ancestors 'none'"));
        assert!(!csp().contains("unsafe-inline"));
        assert!(
            !csp().contains("form-action"),
            "the button's redirect to Keap must not be blocked"
        );
        assert_eq!(readable(1_795_370_400), "2026-11-22 18:00 UTC");
        assert_eq!(render(&Page::Used).0, 410);
        assert_eq!(render(&Page::Expired).0, 410);
        assert_eq!(render(&Page::Unknown).0, 404);
        let m = Mismatch {
            signed_in: "amy@ab123.example".into(),
            expected: "ann@ab123.example".into(),
            signed_in_app: None,
            expected_app: Some(KeapApp::parse("ab123").unwrap()),
        };
        let (status, html) = render(&Page::Refused {
            partner: "Acme",
            mismatch: Some(&m),
            code: ErrorCode::IdentityMismatch,
            again: Some("/link/again/abc\"x"),
        });
        assert_eq!(status, 409);
        assert!(html.contains("amy@ab123.example") && html.contains("ann@ab123.example"));
        assert!(
            html.contains(r#"<form method="post" action="/link/again/abc&quot;x"><button type="submit">Try again</button></form>"#),
            "{html}"
        );
        let (_, last) = render(&Page::Refused {
            partner: "Acme",
            mismatch: None,
            code: ErrorCode::AccessDenied,
            again: None,
        });
        assert!(last.contains("You cancelled") && last.contains("Ask Acme for a new link"));
        assert!(!last.contains("<form"), "no attempts left: no button");
        assert_eq!(render(&Page::Exhausted).0, 410);
    }

    #[test]
    fn a_link_is_spent_by_a_restore_and_tried_a_few_times_at_most() {
        assert_eq!(next_try(false, 0), Try::Go(1));
        assert_eq!(next_try(false, MAX_ATTEMPTS - 1), Try::Go(MAX_ATTEMPTS));
        assert_eq!(next_try(false, MAX_ATTEMPTS), Try::Exhausted);
        assert_eq!(next_try(true, 0), Try::Spent);
        assert_eq!(next_try(true, MAX_ATTEMPTS), Try::Spent, "a restore wins");
        let h = RepairToken::from_random([3; TOKEN_BYTES]).handle();
        let at = |attempt| RepairAttempt {
            link: h.clone(),
            attempt,
        };
        assert!(at(1).may_try_again());
        assert!(!at(MAX_ATTEMPTS).may_try_again());
        assert!(attempt_note(2).starts_with("Attempt 2 of 5"));
    }
}
