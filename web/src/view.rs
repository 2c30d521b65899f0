//! What the widget shows: HTML built from the state, every outside string escaped. The partner
//! themes it through CSS custom properties and rewords it through attributes.

use keaplink_api::{Connection, ConnectionStatus};
use web_sys::{HtmlElement, ShadowRoot};

pub enum View {
    Loading,
    Loaded(Vec<Connection>),
    /// Could not load; the name of the sentence that says why (`Texts::get`).
    Failed(&'static str),
    /// Asking to confirm the disconnect of this id.
    Confirm(Vec<Connection>, String),
}

/// Every sentence of the widget's own, by name; the attribute `text-<name>` replaces any of them.
const TEXTS: &[(&str, &str)] = &[
    ("title", "Keap"),
    ("empty", "Link your Keap account so this app can work with your Keap contacts, even when you are away."),
    ("connect", "Connect Keap"),
    ("connect-another", "Connect another Keap account"),
    ("reconnect", "Reconnect"),
    ("disconnect", "Disconnect"),
    ("why", "You will be signed out of Keap first, so you sign in as yourself, not as whoever used this browser before."),
    ("hop-off", "Whoever is signed in to Keap in this browser will be linked, without a sign-in screen."),
    ("loading", "Loading your Keap link…"),
    ("retry", "Try again"),
    ("connected-badge", "Connected"),
    ("reauth-badge", "Needs reconnect"),
    ("confirm", "Disconnect this Keap account? This app will stop working with it."),
    ("cancel", "Cancel"),
    ("opening", "Opening Keap…"),
    ("connected", "Keap account connected."),
    ("disconnected", "Disconnected."),
    ("central", "Also remove this app in Keap's Account Central"),
];

/// The one place codes become what an end user reads: the name is the code with dashes (the API's
/// codes, `last_error` codes, the callback's, and the widget's own), and `text-<name>` rewords it.
/// The code itself goes to the developer (`keaplink:error`, the console), never to the user.
const SAYS: &[(&str, &str)] = &[
    (
        "refresh-token-invalid",
        "Keap needs you to sign in again to keep this connection working.",
    ),
    (
        "refresh-lost",
        "The connection to Keap was interrupted. Sign in to Keap again to keep it working.",
    ),
    ("access-denied", "You cancelled the connection."),
    (
        "keap-error",
        "Keap could not complete the connection. Please try again.",
    ),
    (
        "keap-timeout",
        "Keap took too long to answer. Please try again.",
    ),
    (
        "keap-throttled",
        "Keap is busy right now. Please try again in a minute.",
    ),
    (
        "keap-bad-response",
        "Keap's answer could not be used. Please try again.",
    ),
    (
        "invalid-state",
        "This connection attempt has expired. Please start again.",
    ),
    (
        "rate-limited",
        "Too many attempts. Please wait a minute and try again.",
    ),
    (
        "identity-mismatch",
        "You signed in to Keap as {signed_in}, but this connection belongs to {expected}.",
    ),
    (
        "session-expired",
        "Your session has expired. Reload the page to sign in again.",
    ),
    (
        "session-invalid",
        "This page's keaplink session is not valid.",
    ),
    (
        "network",
        "Could not reach the Keap link service. Check your connection and try again.",
    ),
    (
        "popup-closed",
        "The Keap window was closed before the connection was made.",
    ),
    ("not-connected", "Keap account not connected."),
    ("error", "Something went wrong. Please try again."),
];

/// The sentence name for `code`, or `fallback` for a code without one of its own.
pub fn known(code: &str, fallback: &'static str) -> &'static str {
    let name = code.replace('_', "-");
    SAYS.iter()
        .find(|(n, _)| *n == name)
        .map_or(fallback, |(n, _)| n)
}

/// The sentences, read from the host's `text-*` attributes when it has them (read at each use, so
/// a page may reword the widget at any time).
pub struct Texts(pub HtmlElement);

impl Texts {
    pub fn get(&self, name: &str) -> String {
        self.0
            .get_attribute(&format!("text-{name}"))
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| {
                let found = TEXTS.iter().chain(SAYS).find(|(n, _)| *n == name);
                found.map_or("", |(_, d)| d).to_owned()
            })
    }
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A timestamp in the reader's locale.
fn when(rfc3339: &str) -> String {
    let d = js_sys::Date::new(&rfc3339.into());
    if d.get_time().is_nan() {
        return escape(rfc3339);
    }
    escape(&String::from(
        d.to_locale_string("default", &js_sys::Object::new()),
    ))
}

/// The widget's stylesheet, adopted by its shadow root (a constructed stylesheet, which a page's
/// CSP `style-src` does not govern, so partners need no `'unsafe-inline'`). Colours come from
/// `light-dark()`, which follows the `color-scheme` the host inherits from the partner's page (a
/// light page keeps a light widget even when the OS is dark); `theme` on the host forces one.
pub const STYLE: &str = r#"
:host{display:block;font:var(--keaplink-font,14px/1.45 system-ui,sans-serif);color:var(--keaplink-fg,light-dark(#1d2330,#e8ebf0));
--kl-bg:var(--keaplink-bg,light-dark(#fff,#1b1f27));--kl-border:var(--keaplink-border,light-dark(#d5d9e0,#3a4150));--kl-accent:var(--keaplink-accent,#2f6fdd);
--kl-muted:var(--keaplink-muted,light-dark(#5b6473,#a3acba));--kl-ok:var(--keaplink-ok,light-dark(#1f7a3d,#58c27d));--kl-warn:var(--keaplink-warn,light-dark(#a15c00,#f0a84a));--kl-radius:var(--keaplink-radius,8px)}
:host([theme=light]){color-scheme:light}:host([theme=dark]){color-scheme:dark}:host([theme=auto]){color-scheme:light dark}
.kl{background:var(--kl-bg);border:1px solid var(--kl-border);border-radius:var(--kl-radius);padding:14px 16px}
h2{font-size:1.05em;margin:0 0 8px}ul{list-style:none;margin:0;padding:0}
li{border-top:1px solid var(--kl-border);padding:10px 0}li:first-child{border-top:0;padding-top:0}
.muted,.why{color:var(--kl-muted);font-size:.92em}.why{margin:8px 0 0}.warn{color:var(--kl-warn)}
.badge{display:inline-block;border-radius:99px;padding:1px 8px;font-size:.8em;margin-left:6px;border:1px solid currentColor}
.ok{color:var(--kl-ok)}.reauth{color:var(--kl-warn)}
button{font:inherit;cursor:pointer;border-radius:6px;padding:5px 12px;margin:8px 8px 0 0;border:1px solid var(--kl-border);background:transparent;color:inherit;transition:background .15s}
button.primary{background:var(--kl-accent);border-color:var(--kl-accent);color:#fff}
button:hover{filter:brightness(1.08)}
button:focus-visible,a:focus-visible{outline:3px solid var(--kl-accent);outline-offset:2px}
a{color:var(--kl-accent)}.live:empty{display:none}.live{margin-top:8px}
@media (prefers-reduced-motion:reduce){*{transition:none!important;animation:none!important}}
"#;

pub fn render(view: &View, notice: Option<&str>, t: &Texts, sign_out_first: bool) -> String {
    let hop = if sign_out_first {
        format!(r#"<p class="why">{}</p>"#, escape(&t.get("why")))
    } else {
        format!(
            r#"<p class="why warn" data-hop="off">{}</p>"#,
            escape(&t.get("hop-off"))
        )
    };
    let connect = |label: &str, class: &str| {
        format!(
            r#"<button type="button" class="{class}" data-action="connect">{}</button>"#,
            escape(&t.get(label))
        )
    };
    let body = match view {
        View::Loading => format!(
            r#"<p class="muted" data-state="loading">{}</p>"#,
            escape(&t.get("loading"))
        ),
        // A refused session is the page's to mend (a reload, a new JWT): no retry would help.
        View::Failed(says) if says.starts_with("session") => format!(
            r#"<p class="warn" data-state="error">{}</p>"#,
            escape(&t.get(says))
        ),
        View::Failed(says) => format!(
            r#"<p class="warn" data-state="error">{}</p><button type="button" data-action="retry">{}</button>"#,
            escape(&t.get(says)),
            escape(&t.get("retry"))
        ),
        View::Loaded(list) if list.is_empty() => format!(
            r#"<p data-state="empty">{}</p>{}{hop}"#,
            escape(&t.get("empty")),
            connect("connect", "primary")
        ),
        View::Loaded(list) | View::Confirm(list, _) => {
            let confirming = match view {
                View::Confirm(_, id) => Some(id.as_str()),
                _ => None,
            };
            let items: String = list.iter().map(|c| item(c, t, confirming)).collect();
            format!(
                r#"<ul data-state="connected">{items}</ul>{}{hop}"#,
                connect("connect-another", "")
            )
        }
    };
    format!(
        r#"<section class="kl" part="container" aria-label="{title}"><h2>{title}</h2>{body}<div class="live" role="status" aria-live="polite">{live}</div></section>"#,
        title = escape(&t.get("title")),
        live = notice.map(escape).unwrap_or_default()
    )
}

fn item(c: &Connection, t: &Texts, confirming: Option<&str>) -> String {
    let reauth = c.status == ConnectionStatus::NeedsReauth;
    let (badge_class, badge) = if reauth {
        ("reauth", "reauth-badge")
    } else {
        ("ok", "connected-badge")
    };
    let refreshed = c
        .refreshed_at
        .as_deref()
        .map(when)
        .unwrap_or_else(|| "—".into());
    // A link that needs its user says why in plain words; any cause the widget has no sentence
    // for still means the same to the user: sign in again.
    let problem = if reauth {
        let code = c.last_error.as_ref().map_or("", |e| e.code.as_str());
        format!(
            r#"<p class="warn">{}</p>"#,
            escape(&t.get(known(code, "refresh-token-invalid")))
        )
    } else {
        String::new()
    };
    let id = escape(&c.id);
    let actions = if confirming == Some(c.id.as_str()) {
        format!(
            r#"<p>{}</p><button type="button" class="primary" data-action="confirm-disconnect" data-id="{id}">{}</button><button type="button" data-action="cancel">{}</button>"#,
            escape(&t.get("confirm")),
            escape(&t.get("disconnect")),
            escape(&t.get("cancel"))
        )
    } else {
        let reconnect = if reauth {
            format!(
                r#"<button type="button" class="primary" data-action="connect" data-id="{id}">{}</button>"#,
                escape(&t.get("reconnect"))
            )
        } else {
            String::new()
        };
        format!(
            r#"{reconnect}<button type="button" data-action="disconnect" data-id="{id}">{}</button>"#,
            escape(&t.get("disconnect"))
        )
    };
    format!(
        r#"<li data-connection="{id}" data-status="{status}"><div><strong>{app}</strong><span class="badge {badge_class}">{badge}</span></div><div>{name} · <span class="email">{email}</span></div><div class="muted">Connected {connected} · Last refreshed {refreshed}</div>{problem}{actions}</li>"#,
        status = if reauth { "needs_reauth" } else { "active" },
        app = escape(&c.keap_app),
        badge = escape(&t.get(badge)),
        name = escape(&c.keap_user.name),
        email = escape(&c.keap_user.email),
        connected = when(&c.connected_at),
    )
}

/// After a disconnect: where to remove the app on Keap's side (there is no revoke API).
pub fn append_central_link(root: &ShadowRoot, url: &str, t: &Texts) {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return;
    }
    if let Ok(Some(live)) = root.query_selector(".live") {
        let html = format!(
            r#"{} <a href="{}" target="_blank" rel="noopener noreferrer" data-central>{}</a>"#,
            live.inner_html(),
            escape(url),
            escape(&t.get("central"))
        );
        live.set_inner_html(&html);
    }
}

pub fn focus(root: &ShadowRoot, selector: &str) {
    use wasm_bindgen::JsCast;
    if let Ok(Some(el)) = root.query_selector(selector) {
        if let Ok(el) = el.dyn_into::<HtmlElement>() {
            let _ = el.focus();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_an_end_user_may_meet_has_a_plain_sentence() {
        for code in [
            "refresh_token_invalid",
            "refresh_lost",
            "access_denied",
            "keap_error",
            "keap_timeout",
            "keap_throttled",
            "keap_bad_response",
            "invalid_state",
            "rate_limited",
            "identity_mismatch",
        ] {
            let name = known(code, "error");
            assert_eq!(
                name,
                code.replace('_', "-"),
                "{code} has a sentence of its own"
            );
            let (_, sentence) = SAYS.iter().find(|(n, _)| *n == name).unwrap();
            let words = sentence
                .replace("{signed_in}", "")
                .replace("{expected}", "");
            assert!(
                !words.contains('_'),
                "{code}: no codes in what the user reads"
            );
            assert!(
                !sentence.to_lowercase().contains("token"),
                "{code}: no jargon"
            );
            assert!(sentence.ends_with('.'), "{code}: a sentence");
        }
    }

    #[test]
    fn an_unknown_code_falls_back() {
        assert_eq!(known("something_new", "error"), "error");
        assert_eq!(known("", "not-connected"), "not-connected");
        // Only codes reach the sentences of SAYS: a code named like a button text does not.
        assert_eq!(known("connect", "error"), "error");
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = TEXTS.iter().chain(SAYS).map(|(n, _)| *n).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before);
    }

    #[test]
    fn identity_mismatch_names_both_users() {
        let (_, s) = SAYS
            .iter()
            .find(|(n, _)| *n == "identity-mismatch")
            .unwrap();
        assert!(s.contains("{signed_in}") && s.contains("{expected}"));
    }
}
