//! What the widget shows: HTML built from the state, every outside string escaped. The partner
//! themes it through CSS custom properties and rewords it through attributes.

use keaplink_api::{Connection, ConnectionStatus};
use web_sys::{HtmlElement, ShadowRoot};

pub enum View {
    Loading,
    Loaded(Vec<Connection>),
    Failed(String),
    /// Asking to confirm the disconnect of this id.
    Confirm(Vec<Connection>, String),
}

/// Every sentence the widget says; each can be replaced by an attribute `text-<name>`.
pub struct Texts {
    pub title: String,
    pub empty: String,
    pub connect: String,
    pub connect_another: String,
    pub reconnect: String,
    pub disconnect: String,
    pub why: String,
    pub hop_off: String,
    pub loading: String,
    pub retry: String,
    pub connected_badge: String,
    pub reauth_badge: String,
    pub confirm: String,
    pub cancel: String,
    pub opening: String,
    pub connected: String,
    pub not_connected: String,
    pub disconnected: String,
    pub central: String,
}

impl Texts {
    pub fn from_host(host: &HtmlElement) -> Texts {
        let t = |name: &str, default: &str| {
            host.get_attribute(&format!("text-{name}"))
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        Texts {
            title: t("title", "Keap"),
            empty: t("empty", "Link your Keap account so this app can work with your Keap contacts, even when you are away."),
            connect: t("connect", "Connect Keap"),
            connect_another: t("connect-another", "Connect another Keap account"),
            reconnect: t("reconnect", "Reconnect"),
            disconnect: t("disconnect", "Disconnect"),
            why: t("why", "You will be signed out of Keap first, so you sign in as yourself, not as whoever used this browser before."),
            hop_off: t("hop-off", "Whoever is signed in to Keap in this browser will be linked, without a sign-in screen."),
            loading: t("loading", "Loading your Keap link…"),
            retry: t("retry", "Try again"),
            connected_badge: t("connected-badge", "Connected"),
            reauth_badge: t("reauth-badge", "Needs reconnect"),
            confirm: t("confirm", "Disconnect this Keap account? This app will stop working with it."),
            cancel: t("cancel", "Cancel"),
            opening: t("opening", "Opening Keap…"),
            connected: t("connected", "Keap account connected."),
            not_connected: t("not-connected", "Keap account not connected"),
            disconnected: t("disconnected", "Disconnected."),
            central: t("central", "Also remove this app in Keap's Account Central"),
        }
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
/// CSP `style-src` does not govern, so partners need no `'unsafe-inline'`).
pub const STYLE: &str = r#"
:host{display:block;font:var(--keaplink-font,14px/1.45 system-ui,sans-serif);color:var(--keaplink-fg,#1d2330);
--kl-bg:var(--keaplink-bg,#fff);--kl-border:var(--keaplink-border,#d5d9e0);--kl-accent:var(--keaplink-accent,#2f6fdd);
--kl-muted:var(--keaplink-muted,#5b6473);--kl-ok:var(--keaplink-ok,#1f7a3d);--kl-warn:var(--keaplink-warn,#a15c00);--kl-radius:var(--keaplink-radius,8px)}
@media (prefers-color-scheme:dark){:host{color:var(--keaplink-fg,#e8ebf0);--kl-bg:var(--keaplink-bg,#1b1f27);--kl-border:var(--keaplink-border,#3a4150);
--kl-muted:var(--keaplink-muted,#a3acba);--kl-ok:var(--keaplink-ok,#58c27d);--kl-warn:var(--keaplink-warn,#f0a84a)}}
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
        format!(r#"<p class="why">{}</p>"#, escape(&t.why))
    } else {
        format!(
            r#"<p class="why warn" data-hop="off">{}</p>"#,
            escape(&t.hop_off)
        )
    };
    let connect = |label: &str, class: &str| {
        format!(
            r#"<button type="button" class="{class}" data-action="connect">{}</button>"#,
            escape(label)
        )
    };
    let body = match view {
        View::Loading => format!(
            r#"<p class="muted" data-state="loading">{}</p>"#,
            escape(&t.loading)
        ),
        View::Failed(message) => format!(
            r#"<p class="warn" data-state="error">{}</p><button type="button" data-action="retry">{}</button>"#,
            escape(message),
            escape(&t.retry)
        ),
        View::Loaded(list) if list.is_empty() => format!(
            r#"<p data-state="empty">{}</p>{}{hop}"#,
            escape(&t.empty),
            connect(&t.connect, "primary")
        ),
        View::Loaded(list) | View::Confirm(list, _) => {
            let confirming = match view {
                View::Confirm(_, id) => Some(id.as_str()),
                _ => None,
            };
            let items: String = list.iter().map(|c| item(c, t, confirming)).collect();
            format!(
                r#"<ul data-state="connected">{items}</ul>{}{hop}"#,
                connect(&t.connect_another, "")
            )
        }
    };
    format!(
        r#"<section class="kl" part="container" aria-label="{title}"><h2>{title}</h2>{body}<div class="live" role="status" aria-live="polite">{live}</div></section>"#,
        title = escape(&t.title),
        live = notice.map(escape).unwrap_or_default()
    )
}

fn item(c: &Connection, t: &Texts, confirming: Option<&str>) -> String {
    let (badge_class, badge) = match c.status {
        ConnectionStatus::Active => ("ok", &t.connected_badge),
        ConnectionStatus::NeedsReauth => ("reauth", &t.reauth_badge),
    };
    let refreshed = c
        .refreshed_at
        .as_deref()
        .map(when)
        .unwrap_or_else(|| "—".into());
    let problem = match (&c.status, &c.last_error) {
        (ConnectionStatus::NeedsReauth, Some(e)) => {
            format!(r#"<p class="warn">{}</p>"#, escape(&e.message))
        }
        _ => String::new(),
    };
    let id = escape(&c.id);
    let actions = if confirming == Some(c.id.as_str()) {
        format!(
            r#"<p>{}</p><button type="button" class="primary" data-action="confirm-disconnect" data-id="{id}">{}</button><button type="button" data-action="cancel">{}</button>"#,
            escape(&t.confirm),
            escape(&t.disconnect),
            escape(&t.cancel)
        )
    } else {
        let reconnect = if c.status == ConnectionStatus::NeedsReauth {
            format!(
                r#"<button type="button" class="primary" data-action="connect" data-id="{id}">{}</button>"#,
                escape(&t.reconnect)
            )
        } else {
            String::new()
        };
        format!(
            r#"{reconnect}<button type="button" data-action="disconnect" data-id="{id}">{}</button>"#,
            escape(&t.disconnect)
        )
    };
    format!(
        r#"<li data-connection="{id}" data-status="{status}"><div><strong>{app}</strong><span class="badge {badge_class}">{badge}</span></div><div>{name} · <span class="email">{email}</span></div><div class="muted">Connected {connected} · Last refreshed {refreshed}</div>{problem}{actions}</li>"#,
        status = if c.status == ConnectionStatus::Active {
            "active"
        } else {
            "needs_reauth"
        },
        app = escape(&c.keap_app),
        badge = escape(badge),
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
            escape(&t.central)
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
