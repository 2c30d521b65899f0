//! What the widget shows: HTML built from the state, every outside string escaped. The partner
//! themes it through CSS custom properties and rewords it through attributes.

use crate::wire::text;
use js_sys::Array;
use keaplink_api::{Connection, ConnectionStatus};
use wasm_bindgen::JsValue;
use web_sys::{HtmlElement, ShadowRoot};

pub enum View {
    Loading,
    /// Could not load; the name of the sentence that says why (`Texts::get`).
    Failed(&'static str),
    /// The user's links, and what one of them shows besides its status.
    Loaded(Vec<Connection>, Note),
}

/// What one link shows beyond its status, until the next action: at most one at a time.
pub enum Note {
    None,
    /// Asking to confirm the disconnect of this id.
    Confirm(String),
    /// Asking to confirm "disconnect and link anew" of this id.
    ConfirmAnew(String),
    /// Just linked: whom it linked, and (a new link) the undo.
    LinkedAs(String, bool),
    /// A reconnect of this id signed in as someone else (`signed_in` empty when the same-tab
    /// return did not say who): nothing was stored.
    Mismatch {
        id: String,
        signed_in: String,
    },
    /// The link's Connected assistants, open: `Assistants.assistants` as the API sent it (fetched
    /// when opened, so a closed list costs nothing; read only to be shown).
    Assistants(String, Array),
}

impl Note {
    fn id(&self) -> Option<&str> {
        match self {
            Note::None => None,
            Note::Confirm(id)
            | Note::ConfirmAnew(id)
            | Note::LinkedAs(id, _)
            | Note::Assistants(id, _) => Some(id),
            Note::Mismatch { id, .. } => Some(id),
        }
    }
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
    ("exported-badge", "Managed elsewhere"),
    ("exported", "This link is now managed by the app directly, not through this panel."),
    ("confirm", "Disconnect this Keap account? This app will stop working with it."),
    ("cancel", "Cancel"),
    ("opening", "Opening Keap…"),
    ("connected", "Keap account connected."),
    ("reconnected", "Keap account reconnected."),
    ("disconnected", "Disconnected."),
    ("central", "Also remove this app in Keap's Account Central"),
    ("linked-as", "Linked as {email} in {app}."),
    ("not-you", "Not you?"),
    ("undo", "Disconnect it"),
    ("reconnect-before", "Reconnect before {date} to keep this connection working."),
    ("mismatch-help", "Nothing was changed. Try again and sign in as {expected}, or disconnect this link and link the Keap account you want instead."),
    ("try-again", "Try again"),
    ("link-anew", "Disconnect and link anew"),
    ("confirm-anew", "Disconnect {expected} from this app and link another Keap account?"),
    ("assistants", "Connected assistants"),
    ("unverified", "name not verified"),
    ("read", "Can read"),
    ("read-write", "Can read and write"),
    ("revoke", "Revoke"),
    ("revoked", "Assistant's access revoked."),
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
    // The same Keap user picked another app on Keap's chooser.
    (
        "identity-mismatch-app",
        "You signed in to Keap as {signed_in} but chose another Keap app; this connection is for {app}.",
    ),
    // Back from a same-tab redirect, which does not say who signed in.
    (
        "identity-mismatch-other",
        "You signed in to Keap as someone other than the owner of this connection.",
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

/// `template` with each `{key}` replaced by its value, all escaped; `strong` sets the values in
/// bold. JS's split and join do the replacing: Rust's substring search would cost the widget
/// more than 2 KB, and JS's `replace` would read `$&` in an email as a pattern.
pub fn fill(template: &str, values: &[(&str, &str)], strong: bool) -> String {
    let mut out = js_sys::JsString::from(escape(template));
    for (key, value) in values {
        let value = escape(value);
        let value = if strong {
            format!("<strong>{value}</strong>")
        } else {
            value
        };
        out = out.split(&format!("{{{key}}}")).join(&value);
    }
    out.into()
}

/// `template` filled for a reader of plain text (an event's message): nothing escaped.
pub fn fill_text(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = js_sys::JsString::from(template);
    for (key, value) in values {
        out = out.split(&format!("{{{key}}}")).join(value);
    }
    out.into()
}

/// The name people know a Keap app by: "Ann's Bakery (ab123)", or the bare id when Keap gave no
/// business name.
pub fn app_label(c: &Connection) -> String {
    match c.keap_app_name.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => format!("{name} ({})", c.keap_app),
        _ => c.keap_app.clone(),
    }
}

/// A timestamp in the reader's locale (date and time, medium and short).
fn local_time(rfc3339: &str) -> String {
    let d = js_sys::Date::new(&rfc3339.into());
    if d.get_time().is_nan() {
        return rfc3339.to_owned();
    }
    let style = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&style, &"dateStyle".into(), &"medium".into());
    let _ = js_sys::Reflect::set(&style, &"timeStyle".into(), &"short".into());
    d.to_locale_string("default", &style).into()
}

fn when(rfc3339: &str) -> String {
    escape(&local_time(rfc3339))
}

/// The widget's stylesheet, adopted by its shadow root (a constructed stylesheet, which a page's
/// CSP `style-src` does not govern, so partners need no `'unsafe-inline'`). Colours come from
/// `light-dark()`, which follows the `color-scheme` the host inherits from the partner's page (a
/// light page keeps a light widget even when the OS is dark); `theme` on the host forces one.
pub const STYLE: &str = r#"
:host{display:block;font:var(--keaplink-font,14px/1.45 system-ui,sans-serif);color:var(--keaplink-fg,light-dark(#1d2330,#e8ebf0));
--kl-bg:var(--keaplink-bg,light-dark(#fff,#1b1f27));--kl-border:var(--keaplink-border,light-dark(#d5d9e0,#3a4150));--kl-accent:var(--keaplink-accent,#2f6fdd);
--kl-muted:var(--keaplink-muted,light-dark(#5b6473,#a3acba));--kl-ok:var(--keaplink-ok,light-dark(#1f7a3d,#58c27d));--kl-warn:var(--keaplink-warn,light-dark(#a15c00,#f0a84a));--kl-danger:var(--keaplink-danger,light-dark(#c62828,#c0392b));--kl-radius:var(--keaplink-radius,8px)}
:host([theme=light]){color-scheme:light}:host([theme=dark]){color-scheme:dark}:host([theme=auto]){color-scheme:light dark}
.kl{background:var(--kl-bg);border:1px solid var(--kl-border);border-radius:var(--kl-radius);padding:14px 16px}
h2{font-size:1.05em;margin:0 0 8px}ul{list-style:none;margin:0;padding:0}
li{border-top:1px solid var(--kl-border);padding:10px 0}li:first-child{border-top:0;padding-top:0}
.muted,.why{color:var(--kl-muted);font-size:.92em}.why{margin:8px 0 0}.warn{color:var(--kl-warn)}
.badge{display:inline-block;border-radius:99px;padding:1px 8px;font-size:.8em;margin-left:6px;border:1px solid currentColor}
.ok{color:var(--kl-ok)}.reauth{color:var(--kl-warn)}
button{font:inherit;cursor:pointer;border-radius:6px;padding:5px 12px;margin:8px 8px 0 0;border:1px solid var(--kl-border);background:transparent;color:inherit;transition:background .15s}
button.primary{background:var(--kl-accent);border-color:var(--kl-accent);color:#fff}button.danger{background:var(--kl-danger);border-color:var(--kl-danger);color:#fff}
button:hover{filter:brightness(1.08)}
button:focus-visible,a:focus-visible{outline:3px solid var(--kl-accent);outline-offset:2px}
a{color:var(--kl-accent)}.live:empty{display:none}.live{margin-top:8px}
.soon{border-left:3px solid var(--kl-warn);padding-left:8px}.linked button{margin:2px 0 0}
.asst{margin:8px 0 0 12px}.mismatch{border:1px solid var(--kl-warn);border-radius:6px;padding:2px 10px 10px;margin-top:8px}
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
        View::Loaded(list, _) if list.is_empty() => format!(
            r#"<p data-state="empty">{}</p>{}{hop}"#,
            escape(&t.get("empty")),
            connect("connect", "primary")
        ),
        View::Loaded(list, note) => {
            let items: String = list
                .iter()
                .map(|c| {
                    item(
                        c,
                        t,
                        Some(&c.id[..])
                            .filter(|id| note.id() == Some(id))
                            .map(|_| note),
                    )
                })
                .collect();
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

fn button(action: &str, id: &str, class: &str, label: &str) -> String {
    format!(
        r#"<button type="button" class="{class}" data-action="{action}" data-id="{id}">{label}</button>"#
    )
}

/// One link: its app, who, when, its state; `note` when it is the link the widget's note is about.
fn item(c: &Connection, t: &Texts, note: Option<&Note>) -> String {
    let reauth = c.status == ConnectionStatus::NeedsReauth;
    let exported = c.status == ConnectionStatus::Exported;
    let (badge_class, badge) = if reauth {
        ("reauth", "reauth-badge")
    } else if exported {
        ("", "exported-badge")
    } else {
        ("ok", "connected-badge")
    };
    // After a reconnect the first link's time stays, and the restore is said beside it; its
    // fresh tokens are the last refresh until the next one.
    let refreshed = match (&c.refreshed_at, &c.reconnected_at) {
        (Some(at), _) => format!(" · Last refreshed {}", when(at)),
        (None, Some(_)) => String::new(),
        (None, None) => " · Last refreshed not yet".into(),
    };
    let reconnected = c
        .reconnected_at
        .as_deref()
        .map(|at| {
            format!(
                r#" · <span data-reconnected>Reconnected {}</span>"#,
                when(at)
            )
        })
        .unwrap_or_default();
    let app = app_label(c);
    let id = escape(&c.id);
    let email = &c.keap_user.email[..];
    let disconnect = button("disconnect", &id, "", &escape(&t.get("disconnect")));
    let reconnect = |class| button("reconnect", &id, class, &escape(&t.get("reconnect")));
    // A link that needs its user says why in plain words; any cause the widget has no sentence
    // for still means the same to the user: sign in again. A link at risk (refreshes failing in
    // its refresh token's last week) still works: it says by when, calmly, not as an error.
    // An exported link is the app's to keep now: nothing to reconnect here; it can still be
    // disconnected (that deletes keaplink's copy only).
    let state = if exported {
        format!(r#"<p>{}</p>{disconnect}"#, escape(&t.get("exported")))
    } else if reauth {
        let code = c.last_error.as_ref().map_or("", |e| e.code.as_str());
        format!(
            r#"<p class="warn">{}</p>{}{disconnect}"#,
            escape(&t.get(known(code, "refresh-token-invalid"))),
            reconnect("primary")
        )
    } else if let Some(before) = &c.reconnect_before {
        format!(
            r#"<p class="soon" data-reconnect-before="{}">{}</p>{}{disconnect}"#,
            escape(before),
            fill(
                &t.get("reconnect-before"),
                &[("date", &local_time(before))],
                true
            ),
            reconnect("")
        )
    } else {
        disconnect.clone()
    };
    let actions = match note {
        Some(Note::Confirm(_)) => format!(
            r#"<p>{}</p>{}<button type="button" data-action="cancel">{}</button>"#,
            escape(&t.get("confirm")),
            button(
                "confirm-disconnect",
                &id,
                "danger",
                &escape(&t.get("disconnect"))
            ),
            escape(&t.get("cancel"))
        ),
        Some(Note::ConfirmAnew(_)) => format!(
            r#"<p>{}</p>{}<button type="button" data-action="cancel">{}</button>"#,
            fill(&t.get("confirm-anew"), &[("expected", email)], true),
            button("confirm-anew", &id, "danger", &escape(&t.get("link-anew"))),
            escape(&t.get("cancel"))
        ),
        // A new link's undo is its disconnect (no second Disconnect beside it); a restored one
        // keeps its usual buttons.
        Some(Note::LinkedAs(_, new)) => {
            let linked = fill(
                &t.get("linked-as"),
                &[("email", email), ("app", &app)],
                true,
            );
            if *new {
                format!(
                    r#"<p class="linked" data-linked>{linked} {} {}</p>"#,
                    escape(&t.get("not-you")),
                    button("undo", &id, "", &escape(&t.get("undo")))
                )
            } else {
                format!(r#"<p class="linked" data-linked>{linked}</p>{state}"#)
            }
        }
        Some(Note::Mismatch { signed_in, .. }) => format!(
            r#"<div class="mismatch" role="alert" data-mismatch><p class="warn">{}</p><p>{}</p>{}{}</div>"#,
            fill(
                &t.get(mismatch_says(signed_in, email)),
                &[("signed_in", signed_in), ("expected", email), ("app", &app)],
                true
            ),
            fill(&t.get("mismatch-help"), &[("expected", email)], true),
            button("try-again", &id, "primary", &escape(&t.get("try-again"))),
            button("link-anew", &id, "", &escape(&t.get("link-anew")))
        ),
        _ => state,
    };
    // The MCP clients acting in the link: a disclosure, listed once open. The name is the one the
    // client registered with, which nobody verified. An exported link has none (exporting ended
    // them).
    let open = match note {
        Some(Note::Assistants(_, list)) => Some(list),
        _ => None,
    };
    let assistants = if exported {
        String::new()
    } else {
        format!(
            r#"<button type="button" data-action="assistants" data-id="{id}" aria-expanded="{}">{}{}</button>{}"#,
            open.is_some(),
            escape(&t.get("assistants")),
            open.map(|l| format!(" ({})", l.length()))
                .unwrap_or_default(),
            open.map(|l| format!(
                r#"<ul class="asst" data-assistants>{}</ul>"#,
                l.iter().map(|a| assistant(&a, t)).collect::<String>()
            ))
            .unwrap_or_default()
        )
    };
    format!(
        r#"<li data-connection="{id}" data-status="{status}"><div><strong class="app">{app}</strong><span class="badge {badge_class}">{badge}</span></div><div>{name} · <span class="email">{email}</span></div><div class="muted">Connected {connected}{reconnected}{refreshed}</div>{actions}{assistants}</li>"#,
        status = match c.status {
            ConnectionStatus::Active => "active",
            ConnectionStatus::NeedsReauth => "needs_reauth",
            ConnectionStatus::Exported => "exported",
        },
        app = escape(&app),
        badge = escape(&t.get(badge)),
        name = escape(&c.keap_user.name),
        email = escape(email),
        connected = when(&c.connected_at),
    )
}

/// One assistant: its registered name (marked unverified), what it may do, since when and when
/// last, and its Revoke (named for it, for a screen reader's list of buttons).
fn assistant(a: &JsValue, t: &Texts) -> String {
    let field = |key| text(a, key).unwrap_or_default();
    let name = escape(&field("client_name"));
    let id = escape(&field("id"));
    let revoke = escape(&t.get("revoke"));
    format!(
        r#"<li data-assistant="{id}"><strong>{name}</strong> <span class="muted">({unverified})</span><div class="muted">{access} · Allowed {allowed} · Last used {used}</div><button type="button" data-action="revoke" data-id="{id}" aria-label="{revoke} {name}">{revoke}</button></li>"#,
        unverified = escape(&t.get("unverified")),
        access = escape(&t.get(if field("access") == "read_write" {
            "read-write"
        } else {
            "read"
        })),
        allowed = when(&field("created_at")),
        used = when(&field("used_at")),
    )
}

/// Which sentence tells of a mismatch: who signed in when the callback said so; the same email
/// means the right person picked another app on Keap's chooser.
pub fn mismatch_says(signed_in: &str, expected: &str) -> &'static str {
    if signed_in.is_empty() {
        "identity-mismatch-other"
    } else if signed_in.eq_ignore_ascii_case(expected) {
        "identity-mismatch-app"
    } else {
        "identity-mismatch"
    }
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

    fn text(name: &str) -> &'static str {
        TEXTS
            .iter()
            .chain(SAYS)
            .find(|(n, _)| *n == name)
            .unwrap()
            .1
    }

    #[test]
    fn sentences_carry_the_placeholders_they_are_filled_with() {
        for (name, keys) in [
            ("linked-as", &["{email}", "{app}"][..]),
            ("reconnect-before", &["{date}"]),
            ("mismatch-help", &["{expected}"]),
            ("confirm-anew", &["{expected}"]),
            ("identity-mismatch-app", &["{signed_in}", "{app}"]),
        ] {
            for key in keys {
                assert!(text(name).contains(key), "{name} has {key}");
            }
        }
        assert!(
            !text("identity-mismatch-other").contains('{'),
            "says nobody's name"
        );
    }

    #[test]
    fn a_mismatch_reads_by_what_the_callback_said() {
        assert_eq!(
            mismatch_says("amy@ab123.example", "ann@ab123.example"),
            "identity-mismatch"
        );
        // Same Keap user, another app on Keap's chooser.
        assert_eq!(
            mismatch_says("Dan@gh012.example", "dan@gh012.example"),
            "identity-mismatch-app"
        );
        // The same-tab return names nobody.
        assert_eq!(
            mismatch_says("", "ann@ab123.example"),
            "identity-mismatch-other"
        );
    }

    #[test]
    fn an_app_is_shown_by_its_business_name_and_id() {
        let mut c = Connection {
            id: "c1".into(),
            keap_app: "ab123".into(),
            keap_app_name: Some("Ann's Bakery".into()),
            keap_user: keaplink_api::KeapUser {
                email: "ann@ab123.example".into(),
                name: "Ann".into(),
            },
            status: ConnectionStatus::Active,
            connected_at: String::new(),
            refreshed_at: None,
            reconnected_at: None,
            access_expires_at: String::new(),
            refresh_expires_at: String::new(),
            reconnect_before: None,
            last_error: None,
        };
        assert_eq!(app_label(&c), "Ann's Bakery (ab123)");
        c.keap_app_name = Some("  ".into());
        assert_eq!(app_label(&c), "ab123", "a blank name is no name");
        c.keap_app_name = None;
        assert_eq!(app_label(&c), "ab123");
    }

    #[test]
    fn an_assistant_is_read_by_the_contracts_own_field_names() {
        // `assistant` reads the API's JSON as it came (no parsing into the type, for size): these
        // are the names and the value it reads, as keaplink-api writes them.
        let a = keaplink_api::Assistant {
            id: "g1".into(),
            client_name: "Claude".into(),
            access: keaplink_api::McpTools::ReadWrite,
            created_at: "2026-12-07T06:00:00Z".into(),
            used_at: "2026-12-07T06:05:00Z".into(),
        };
        let v = serde_json::to_value(&a).unwrap();
        for key in ["id", "client_name", "access", "created_at", "used_at"] {
            assert!(v.get(key).is_some_and(|v| v.is_string()), "{key}");
        }
        assert_eq!(v["access"], "read_write");
        let list = serde_json::to_value(keaplink_api::Assistants {
            assistants: vec![a],
        })
        .unwrap();
        assert!(list["assistants"].is_array());
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
