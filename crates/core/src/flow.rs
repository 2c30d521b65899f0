//! The authorization-code flow around Keap: the `state` that ties a callback to the partner,
//! user and origin that asked for it, and how the callback answers (popup page or redirect).

use crate::clock::UnixTime;
use crate::error::ErrorCode;
use crate::identity::Mismatch;
use crate::ids::{ConnectionId, PartnerId, UserId};
use crate::repair::RepairAttempt;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use keaplink_api::{CallbackMessage, CallbackStatus, CALLBACK_MESSAGE_TYPE};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

/// A state lives this long (the contract).
pub const STATE_TTL_SECS: i64 = 600;
pub const STATE_BYTES: usize = 32;

/// The random `state` sent through Keap. Only its hash is stored, so a KV reader cannot replay it.
pub struct StateToken(String);

impl StateToken {
    pub fn from_random(bytes: [u8; STATE_BYTES]) -> Self {
        StateToken(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts exactly the shape `from_random` makes.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = raw.len() == 43
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| StateToken(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn storage_key(&self) -> String {
        crate::keys::state(&self.0)
    }
}

/// What a state is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLink {
    pub partner: PartnerId,
    pub user: UserId,
    /// The page origin that asked (the widget's); the popup result goes to it alone.
    pub origin: Option<String>,
    /// Redirect mode: an exact allow-listed URL of the partner.
    pub return_to: Option<String>,
    pub created_at: UnixTime,
    /// A reconnect of this connection (identity-locked): a Reconnect click or a repair link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect: Option<ConnectionId>,
    /// Started from a repair link: the callback answers with the repair page.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repair: bool,
    /// Which repair link, and which of its attempts: a restore spends the link, a refusal may
    /// offer another attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair_attempt: Option<RepairAttempt>,
}

impl PendingLink {
    pub fn is_expired(&self, now: UnixTime) -> bool {
        now - self.created_at >= STATE_TTL_SECS || now < self.created_at - 60
    }
}

/// What the callback learned from the query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackQuery {
    Code {
        code: String,
        state: String,
        scope: Option<String>,
    },
    Denied {
        state: String,
        error: String,
    },
}

pub const MAX_CALLBACK_QUERY_BYTES: usize = 4096;

/// Parses `?code=...&state=...&scope=...` or `?error=...&state=...`.
pub fn parse_callback_query(query: &str) -> Result<CallbackQuery, ErrorCode> {
    if query.len() > MAX_CALLBACK_QUERY_BYTES {
        return Err(ErrorCode::InvalidRequest);
    }
    let mut code = None;
    let mut state = None;
    let mut scope = None;
    let mut error = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match k.as_ref() {
            "code" => &mut code,
            "state" => &mut state,
            "scope" => &mut scope,
            "error" => &mut error,
            _ => continue,
        };
        if slot.is_some() {
            // A repeated parameter is never what Keap sends.
            return Err(ErrorCode::InvalidRequest);
        }
        *slot = Some(v.into_owned());
    }
    let state = state
        .filter(|s| !s.is_empty())
        .ok_or(ErrorCode::InvalidState)?;
    match (code, error) {
        (_, Some(error)) => Ok(CallbackQuery::Denied { state, error }),
        (Some(code), None) if !code.is_empty() && code.len() <= 1024 => {
            Ok(CallbackQuery::Code { code, state, scope })
        }
        _ => Err(ErrorCode::InvalidRequest),
    }
}

/// How the callback answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackAnswer {
    /// 302 to this URL.
    Redirect(String),
    /// 200 (or the status) with this HTML page.
    Page { status: u16, html: String },
}

/// The outcome of a link attempt whose state was valid.
pub enum LinkOutcome<'a> {
    Connected {
        connection_id: &'a str,
    },
    Failed(ErrorCode),
    /// A reconnect signed in as someone else: nothing stored.
    Mismatch(&'a Mismatch),
}

/// Answers a callback whose state checked out: redirect to `return_to`, or a popup page that
/// posts the result to the recorded origin and closes.
pub fn answer(link: &PendingLink, outcome: LinkOutcome<'_>) -> CallbackAnswer {
    let (status, connection_id, error, mismatch) = match outcome {
        LinkOutcome::Connected { connection_id } => (
            CallbackStatus::Connected,
            Some(connection_id.to_owned()),
            None,
            None,
        ),
        LinkOutcome::Failed(code) => (
            CallbackStatus::Error,
            None,
            Some(code.as_str().to_owned()),
            None,
        ),
        LinkOutcome::Mismatch(m) => (
            CallbackStatus::Error,
            None,
            Some(ErrorCode::IdentityMismatch.as_str().to_owned()),
            Some(m),
        ),
    };
    if let Some(Ok(mut url)) = link.return_to.as_deref().map(Url::parse) {
        {
            let mut q = url.query_pairs_mut();
            match &error {
                // The id is not a secret: the partner's page (and the widget's "Not you?")
                // needs to know which link it was.
                None => q.append_pair("keaplink", "connected").append_pair(
                    "connection_id",
                    connection_id.as_deref().unwrap_or_default(),
                ),
                Some(code) => q
                    .append_pair("keaplink", "error")
                    .append_pair("reason", code),
            };
        }
        return CallbackAnswer::Redirect(url.to_string());
    }
    let message = CallbackMessage {
        kind: CALLBACK_MESSAGE_TYPE.to_owned(),
        status,
        connection_id,
        error: error.clone(),
        // Emails, not tokens; posted only to the recorded origin (never put in a redirect URL).
        signed_in: mismatch.map(|m| m.signed_in.clone()),
        expected: mismatch.map(|m| m.expected.clone()),
    };
    let (title, text) = match &error {
        None => (
            "Keap connected",
            "Your Keap account is connected. You can close this window.",
        ),
        Some(_) if mismatch.is_some() => (
            "Keap not connected",
            "You signed in to Keap as someone other than this connection's owner, so nothing was changed. Close this window to see what to do.",
        ),
        Some(_) => (
            "Keap not connected",
            "Your Keap account was not connected. Close this window and try again.",
        ),
    };
    CallbackAnswer::Page {
        status: 200,
        html: popup_page(title, text, link.origin.as_deref().map(|o| (o, &message))),
    }
}

/// A page for a callback that cannot be trusted (bad, reused or expired state). It posts
/// nothing: with no trusted state there is no origin to post to.
pub fn error_page(code: ErrorCode) -> CallbackAnswer {
    let text = match code {
        ErrorCode::InvalidState => {
            "This sign-in link is invalid, was already used, or expired (links last 10 minutes). Close this window and start again from the app."
        }
        ErrorCode::RateLimited => {
            "Too many sign-in attempts came from this address. Wait a minute, then start again from the app."
        }
        _ => "The request to connect Keap was malformed. Close this window and start again from the app.",
    };
    CallbackAnswer::Page {
        status: code.status(),
        html: popup_page("Keap not connected", text, None),
    }
}

/// The one script of the popup page. Constant, so the CSP can pin its hash.
const POPUP_SCRIPT: &str = "(function(){var e=document.getElementById('keaplink-result');if(!e)return;var d=JSON.parse(e.textContent);if(window.opener){window.opener.postMessage(d.message,d.origin);}window.close();})();";

/// The callback page's CSP: nothing loads, only the pinned script runs, nothing may frame it.
pub fn popup_csp() -> String {
    let hash = STANDARD.encode(Sha256::digest(POPUP_SCRIPT.as_bytes()));
    format!(
        "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// JSON that is safe inside `<script type="application/json">`.
fn script_safe_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v)
        .unwrap_or_else(|_| "null".into())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

fn popup_page(title: &str, text: &str, post: Option<(&str, &CallbackMessage)>) -> String {
    let data = post.map(|(origin, message)| {
        #[derive(Serialize)]
        struct Data<'a> {
            origin: &'a str,
            message: &'a CallbackMessage,
        }
        format!(
            "<script type=\"application/json\" id=\"keaplink-result\">{}</script><script>{POPUP_SCRIPT}</script>",
            script_safe_json(&Data { origin, message })
        )
    });
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}</style></head>\
<body><h1>{title}</h1><p>{text}</p>{}</body></html>",
        data.unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(origin: Option<&str>, return_to: Option<&str>) -> PendingLink {
        PendingLink {
            partner: PartnerId::parse("acme").unwrap(),
            user: UserId::parse("u1").unwrap(),
            origin: origin.map(Into::into),
            return_to: return_to.map(Into::into),
            created_at: 1000,
            reconnect: None,
            repair: false,
            repair_attempt: None,
        }
    }

    #[test]
    fn state_is_random_shaped_and_stored_hashed() {
        let s = StateToken::from_random([9; STATE_BYTES]);
        assert!(StateToken::parse(s.as_str()).is_some());
        assert!(!s.storage_key().contains(s.as_str()));
        for bad in [
            "",
            "short",
            &"a".repeat(44),
            &format!("{}!", "a".repeat(42)),
        ] {
            assert!(StateToken::parse(bad).is_none());
        }
    }

    #[test]
    fn state_expires_after_ten_minutes() {
        let l = link(None, None);
        assert!(!l.is_expired(1000 + 599));
        assert!(l.is_expired(1000 + 600));
    }

    #[test]
    fn parses_callback_queries() {
        assert_eq!(
            parse_callback_query("code=c1&state=s1&scope=full%7Cab123.infusionsoft.com").unwrap(),
            CallbackQuery::Code {
                code: "c1".into(),
                state: "s1".into(),
                scope: Some("full|ab123.infusionsoft.com".into())
            }
        );
        assert_eq!(
            parse_callback_query("error=access_denied&state=s1").unwrap(),
            CallbackQuery::Denied {
                state: "s1".into(),
                error: "access_denied".into()
            }
        );
        assert_eq!(
            parse_callback_query("code=c1").unwrap_err(),
            ErrorCode::InvalidState
        );
        assert_eq!(
            parse_callback_query("state=s").unwrap_err(),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            parse_callback_query("code=a&code=b&state=s").unwrap_err(),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            parse_callback_query(&"x".repeat(5000)).unwrap_err(),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn popup_posts_only_to_the_recorded_origin() {
        let CallbackAnswer::Page { html, .. } = answer(
            &link(Some("https://acme.example"), None),
            LinkOutcome::Connected {
                connection_id: "cid",
            },
        ) else {
            panic!("expected a page")
        };
        assert!(html.contains(r#""origin":"https://acme.example""#));
        assert!(html.contains(r#""status":"connected""#));
        assert!(!html.contains("\"*\""));
        assert!(popup_csp().contains("frame-ancestors 'none'"));
    }

    #[test]
    fn hostile_values_cannot_break_out_of_the_data_block() {
        let l = link(
            Some("https://a.example</script><script>alert(1)</script>"),
            None,
        );
        let CallbackAnswer::Page { html, .. } =
            answer(&l, LinkOutcome::Connected { connection_id: "x" })
        else {
            panic!()
        };
        assert_eq!(html.matches("</script>").count(), 2);
    }

    #[test]
    fn a_mismatch_names_both_emails_to_the_opener_only() {
        let m = Mismatch {
            signed_in: "amy@ab123.example".into(),
            expected: "ann@ab123.example".into(),
            signed_in_app: None,
            expected_app: None,
        };
        let CallbackAnswer::Page { html, .. } = answer(
            &link(Some("https://acme.example"), None),
            LinkOutcome::Mismatch(&m),
        ) else {
            panic!()
        };
        assert!(html.contains(r#""error":"identity_mismatch""#));
        assert!(html.contains(r#""signed_in":"amy@ab123.example""#));
        assert!(html.contains(r#""expected":"ann@ab123.example""#));
        // Redirect mode carries the code only: no emails in a URL.
        let CallbackAnswer::Redirect(to) = answer(
            &link(Some("https://acme.example"), Some("https://acme.example/s")),
            LinkOutcome::Mismatch(&m),
        ) else {
            panic!()
        };
        assert_eq!(
            to,
            "https://acme.example/s?keaplink=error&reason=identity_mismatch"
        );
    }

    #[test]
    fn redirect_mode_appends_the_outcome() {
        let l = link(
            Some("https://acme.example"),
            Some("https://acme.example/settings?tab=1"),
        );
        assert_eq!(
            answer(&l, LinkOutcome::Connected { connection_id: "c" }),
            CallbackAnswer::Redirect(
                "https://acme.example/settings?tab=1&keaplink=connected&connection_id=c".into()
            )
        );
        assert_eq!(
            answer(&l, LinkOutcome::Failed(ErrorCode::AccessDenied)),
            CallbackAnswer::Redirect(
                "https://acme.example/settings?tab=1&keaplink=error&reason=access_denied".into()
            )
        );
    }
}
