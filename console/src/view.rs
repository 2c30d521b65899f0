//! What the console shows: HTML built from the API's types, every string from the API escaped on
//! its way in (`escape`, or `when` for times). Nothing here talks to the Worker; `lib.rs` decides
//! what to show and puts these strings into the page.

use crate::route::Route;
use keaplink_api::proxy::{KeapQuota, QuotaWindow};
use keaplink_api::{
    AdminStats, Connection, ConnectionDetail, ConnectionEvent, ConnectionEventKind,
    ConnectionStatus, DeliveryState, HookStatus, Hooks, PartnerConnection, PartnerStats,
    PartnerView, ReconnectIdentity, RepairLink, WebhookDelivery,
};
use std::fmt::Write;

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

/// "in 5 h", "3 d ago": how far `secs` (positive: future) is from now, in its largest unit.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub fn relative(secs: f64) -> String {
    let a = secs.abs();
    let (n, unit) = if a < 90.0 {
        return if secs >= 0.0 {
            "in a minute"
        } else {
            "just now"
        }
        .into();
    } else if a < 5400.0 {
        (a / 60.0, "min")
    } else if a < 129_600.0 {
        (a / 3600.0, "h")
    } else {
        (a / 86400.0, "d")
    };
    let n = n.round() as u64;
    if secs >= 0.0 {
        format!("in {n} {unit}")
    } else {
        format!("{n} {unit} ago")
    }
}

/// A timestamp as `<time>`: the reader's locale, with how far it is from now beside it.
#[cfg(target_arch = "wasm32")]
pub fn when(rfc3339: &str) -> String {
    let d = js_sys::Date::new(&rfc3339.into());
    let t = d.get_time();
    if t.is_nan() {
        return escape(rfc3339);
    }
    let opts = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&opts, &"dateStyle".into(), &"medium".into());
    let _ = js_sys::Reflect::set(&opts, &"timeStyle".into(), &"short".into());
    let local = String::from(d.to_locale_string("default", &opts));
    format!(
        r#"<time datetime="{}">{}</time> <span class="muted">({})</span>"#,
        escape(rfc3339),
        escape(&local),
        relative((t - js_sys::Date::now()) / 1000.0)
    )
}

/// Off the browser (unit tests) a time is shown as it came.
#[cfg(not(target_arch = "wasm32"))]
pub fn when(rfc3339: &str) -> String {
    format!(r#"<time datetime="{0}">{0}</time>"#, escape(rfc3339))
}

/// The first link's time, and the last restore's under it when there was one.
fn connected(c: &Connection) -> String {
    match &c.reconnected_at {
        Some(t) => format!(
            r#"{}<span class="sub" data-reconnected>Reconnected {}</span>"#,
            when(&c.connected_at),
            when(t)
        ),
        None => when(&c.connected_at),
    }
}

/// A timeline event's words, escaped, with each RFC 3339 time in them (`2026-12-08T08:45:00Z`,
/// as the Worker writes "Expires …") shown like every other time: local.
fn local_times(detail: &str) -> String {
    let mut out = String::new();
    for (i, word) in detail.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let (bare, tail) = match word.strip_suffix(['.', ',', ';']) {
            Some(b) => (b, &word[b.len()..]),
            None => (word, ""),
        };
        let b = bare.as_bytes();
        let is_time = b.len() >= 20
            && b.len() <= 35
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && (bare.ends_with('Z') || bare.contains('+'))
            && b[..4].iter().all(u8::is_ascii_digit);
        if is_time {
            out += &when(bare);
            out += &escape(tail);
        } else {
            out += &escape(word);
        }
    }
    out
}

fn when_or_dash(t: Option<&str>) -> String {
    t.filter(|s| !s.is_empty())
        .map(when)
        .unwrap_or_else(|| "—".into())
}

/// A thousands-grouped count ("12,345"): the numbers of the overview run to six digits.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn status_badge(s: ConnectionStatus) -> &'static str {
    match s {
        ConnectionStatus::Active => r#"<span class="badge ok">Active</span>"#,
        ConnectionStatus::NeedsReauth => r#"<span class="badge warn">Needs its user</span>"#,
        ConnectionStatus::Exported => {
            r#"<span class="badge" title="Handed out by an export: keaplink no longer refreshes or hands out its tokens">Exported</span>"#
        }
    }
}

pub fn event_label(k: ConnectionEventKind) -> &'static str {
    use ConnectionEventKind::*;
    match k {
        Created => "Linked",
        Reconnected => "Reconnected",
        Refreshed => "Refreshed",
        RefreshFailed => "Refresh failed",
        NeedsReauth => "Needs its user",
        Recovered => "Recovered",
        Expiring => "Expiring",
        IdentityMismatch => "Identity mismatch refused",
        RepairLinkCreated => "Repair link made",
        RepairLinkTried => "Repair link tried",
        RepairLinkUsed => "Repair link used",
        Deleted => "Disconnected",
        Imported => "Imported",
        Exported => "Exported",
        HooksSet => "Keap hooks set",
        HookRestored => "Keap hook restored",
        HookRestoreFailed => "Keap hook not restored",
        HooksRemoved => "Keap hooks removed",
        McpGranted => "AI assistant allowed",
        McpRevoked => "AI assistant revoked",
        McpToolCall => "AI assistant tool call",
    }
}

fn event_class(k: ConnectionEventKind) -> &'static str {
    use ConnectionEventKind::*;
    match k {
        RefreshFailed | NeedsReauth | Expiring | IdentityMismatch | Deleted | HookRestoreFailed => {
            "warn"
        }
        Created | Reconnected | Refreshed | Recovered | RepairLinkUsed | Imported
        | HookRestored => "ok",
        RepairLinkCreated | RepairLinkTried | Exported | HooksSet | HooksRemoved | McpGranted
        | McpRevoked | McpToolCall => "",
    }
}

/// The event's type as the API names it (`data-event`, for scripts and tests).
fn event_type(k: ConnectionEventKind) -> &'static str {
    use ConnectionEventKind::*;
    match k {
        Created => "created",
        Reconnected => "reconnected",
        Refreshed => "refreshed",
        RefreshFailed => "refresh_failed",
        NeedsReauth => "needs_reauth",
        Recovered => "recovered",
        Expiring => "expiring",
        IdentityMismatch => "identity_mismatch",
        RepairLinkCreated => "repair_link_created",
        RepairLinkTried => "repair_link_tried",
        RepairLinkUsed => "repair_link_used",
        Imported => "imported",
        Exported => "exported",
        Deleted => "deleted",
        HooksSet => "hooks_set",
        HookRestored => "hook_restored",
        HookRestoreFailed => "hook_restore_failed",
        HooksRemoved => "hooks_removed",
        McpGranted => "mcp_granted",
        McpRevoked => "mcp_revoked",
        McpToolCall => "mcp_tool_call",
    }
}

pub fn sign_in(error: Option<&str>) -> String {
    let (described, err) = match error {
        Some(e) => (
            "key-hint key-error",
            format!(
                r#"<p id="key-error" class="error" role="alert">{}</p>"#,
                escape(e)
            ),
        ),
        None => ("key-hint", String::new()),
    };
    format!(
        r#"<main id="main" class="signin" tabindex="-1"><h1>keaplink console</h1>
<form class="card" data-form="sign-in" novalidate>
<label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="off" spellcheck="false" aria-describedby="{described}"{invalid}>
<p id="key-hint" class="hint">Your partner API key (<code>klk.…</code>). Operators: the admin token, then pick a partner.</p>
{err}<button type="submit" class="primary">Sign in</button>
</form>
<p class="hint">The key stays in this browser tab only, and is forgotten when you sign out or close the tab.</p></main>"#,
        invalid = if error.is_some() {
            r#" aria-invalid="true""#
        } else {
            ""
        },
    )
}

const NAV: &[(&str, &str)] = &[
    ("links", "Links"),
    ("overview", "Overview"),
    ("webhooks", "Webhooks"),
    ("settings", "Settings"),
];

/// The frame of every signed-in view: who, where, and the view's own `body`.
pub fn shell(
    route: &Route,
    partner_name: &str,
    partner_id: &str,
    admin: bool,
    body: &str,
) -> String {
    let current = route.section();
    let mut nav = String::new();
    if !matches!(route, Route::Partners) {
        for (key, label) in NAV {
            let cur = if *key == current {
                r#" aria-current="page""#
            } else {
                ""
            };
            let _ = write!(nav, r##"<li><a href="#{key}"{cur}>{label}</a></li>"##);
        }
    }
    let who = if partner_id.is_empty() {
        "Operator: pick a partner".to_owned()
    } else {
        format!(
            "{}{} <span class=\"muted\">({})</span>",
            if admin { "Acting for " } else { "" },
            escape(partner_name),
            escape(partner_id)
        )
    };
    let change = if admin && !partner_id.is_empty() {
        r#"<button type="button" data-action="change-partner">Change partner</button>"#
    } else {
        ""
    };
    format!(
        r#"<header class="top"><p class="brand">keaplink console</p><p class="who">{who}</p><div class="session">{change}<button type="button" data-action="sign-out">Sign out</button></div></header>
<nav aria-label="Console"><ul>{nav}</ul></nav>
<main id="main" tabindex="-1">{body}</main>"#
    )
}

pub fn loading(what: &str) -> String {
    format!(r#"<p class="muted" data-state="loading">Loading {what}…</p>"#)
}

/// Why a view has no data: with Try again where asking again may help, else a way back.
pub fn failure(code: &str, message: &str, retryable: bool) -> String {
    let next = if retryable {
        r#"<button type="button" data-action="retry">Try again</button>"#
    } else {
        r##"<a href="#links">All links</a>"##
    };
    format!(
        r#"<div class="error" role="alert" data-state="error" data-code="{}"><p>{}</p>{next}</div>"#,
        escape(code),
        escape(message)
    )
}

pub fn links_frame(q: &str, status: Option<ConnectionStatus>) -> String {
    let sel = |s: Option<ConnectionStatus>| if s == status { " selected" } else { "" };
    format!(
        r#"<h1 tabindex="-1">Links</h1>
<form class="toolbar" role="search" data-form="search">
<div><label for="q">Search</label><input id="q" name="q" type="search" value="{q}" maxlength="128" autocomplete="off" spellcheck="false" aria-describedby="q-hint"></div>
<div><label for="status">Status</label><select id="status" name="status"><option value=""{all}>All</option><option value="active"{active}>Active</option><option value="needs_reauth"{reauth}>Needs its user</option></select></div>
<button type="submit">Search</button>
<p id="q-hint" class="hint">Finds links by the start of the Keap user's email, the Keap app id or your user id.</p>
</form>
<div id="results">{loading}</div>"#,
        q = escape(q),
        all = sel(None),
        active = sel(Some(ConnectionStatus::Active)),
        reauth = sel(Some(ConnectionStatus::NeedsReauth)),
        loading = loading("links"),
    )
}

/// `page` counts from 1.
pub fn links_table(
    rows: &[PartnerConnection],
    page: usize,
    has_prev: bool,
    has_next: bool,
    filtered: bool,
) -> String {
    if rows.is_empty() {
        let msg = if filtered {
            "No link matches."
        } else {
            "No links yet: they appear here once your users connect Keap through the widget."
        };
        return format!(
            r#"<p data-state="empty">{msg}</p>{}"#,
            pager("", page, has_prev, false)
        );
    }
    let mut body = String::new();
    for r in rows {
        let c = &r.connection;
        let id = escape(&c.id);
        let app_name = c
            .keap_app_name
            .as_deref()
            .map(|n| format!(r#"<span class="sub">{}</span>"#, escape(n)))
            .unwrap_or_default();
        let name = if c.keap_user.name.is_empty() {
            String::new()
        } else {
            format!(r#"<span class="sub">{}</span>"#, escape(&c.keap_user.name))
        };
        // The last error goes under the status it explains: a column of its own would push the
        // table past the screen.
        let err = c
            .last_error
            .as_ref()
            .map(|e| {
                format!(
                    r#"<span class="sub"><code>{}</code> {}</span>"#,
                    escape(&e.code),
                    escape(&e.message)
                )
            })
            .unwrap_or_default();
        let _ = write!(
            body,
            r##"<tr data-connection="{id}" data-status="{status}"><td data-label="Keap app"><div><a class="app" href="#link/{id}">{app}</a>{app_name}</div></td><td data-label="Partner user"><div>{user}</div></td><td data-label="Keap user"><div><span class="email">{email}</span>{name}</div></td><td data-label="Status"><div>{badge}{err}</div></td><td data-label="Connected"><div>{connected}</div></td><td data-label="Last refreshed"><div>{refreshed}</div></td><td data-label="Expires"><div><span class="line">Access: {access}</span><span class="line">Refresh: {refresh}</span></div></td></tr>"##,
            status = crate::wire::status_name(c.status),
            app = escape(&c.keap_app),
            user = escape(&r.user),
            email = escape(&c.keap_user.email),
            badge = status_badge(c.status),
            connected = connected(c),
            refreshed = when_or_dash(c.refreshed_at.as_deref()),
            access = when(&c.access_expires_at),
            refresh = when_or_dash(Some(&c.refresh_expires_at)),
        );
    }
    format!(
        r#"<div class="scroll"><table class="links"><caption class="sr">Links, page {page}</caption><thead><tr><th scope="col">Keap app</th><th scope="col">Partner user</th><th scope="col">Keap user</th><th scope="col">Status, last error</th><th scope="col">Connected</th><th scope="col">Last refreshed</th><th scope="col">Expires</th></tr></thead><tbody>{body}</tbody></table></div>{}"#,
        pager("", page, has_prev, has_next)
    )
}

/// `kind` prefixes the buttons' actions (`next`, `partners-next`).
fn pager(kind: &str, page: usize, has_prev: bool, has_next: bool) -> String {
    let dis = |b: bool| if b { "" } else { " disabled" };
    format!(
        r#"<div class="pager"><button type="button" data-action="{kind}prev"{}>Previous page</button><span>Page {page}</span><button type="button" data-action="{kind}next"{}>Next page</button></div>"#,
        dis(has_prev),
        dis(has_next)
    )
}

fn fact(label: &str, value: &str) -> String {
    format!("<dt>{label}</dt><dd>{value}</dd>")
}

/// The link's Keap events: each event key's hook at Keap, its status and Keap's last post.
/// `None`: they could not be read (`why`).
pub fn link_hooks(h: Result<&Hooks, &str>) -> String {
    let h = match h {
        Ok(h) => h,
        Err(why) => {
            return format!(
                r#"<h2>Keap events</h2><p class="hint" data-hooks-error>Could not read them: {}</p>"#,
                escape(why)
            )
        }
    };
    if h.hooks.is_empty() {
        return r#"<h2>Keap events</h2><p class="hint" data-hooks="0">None: this link delivers no Keap events (<code>PUT /v1/connections/{id}/hooks</code>).</p>"#.into();
    }
    let mut rows = String::new();
    for k in &h.hooks {
        let (class, label, name) = match k.status {
            HookStatus::Verified => ("ok", "Verified", "verified"),
            HookStatus::Pending => ("pending", "Pending", "pending"),
            HookStatus::Inactive => ("warn", "Inactive", "inactive"),
            HookStatus::Failed => ("warn", "Failed", "failed"),
        };
        let err = k
            .error
            .as_ref()
            .map(|e| {
                format!(
                    r#"<span class="sub"><code>{}</code> {}</span>"#,
                    escape(&e.code),
                    escape(&e.message)
                )
            })
            .unwrap_or_default();
        rows += &format!(
            r#"<tr data-hook="{key}" data-hook-status="{name}"><td data-label="Event"><div><code>{key}</code></div></td><td data-label="Status"><div><span class="badge {class}">{label}</span>{err}</div></td><td data-label="Last event"><div>{last}</div></td></tr>"#,
            key = escape(&k.event_key),
            last = when_or_dash(k.last_event_at.as_deref()),
        );
    }
    format!(
        r#"<h2>Keap events</h2><p class="hint">{n} hook(s) at Keap, objects {hydrate}; last checked {checked}. Inactive and failed hooks are restored by the next check.</p><div class="scroll"><table class="hooks" data-hooks="{n}"><caption class="sr">Keap events of this link</caption><thead><tr><th scope="col">Event</th><th scope="col">Status, last error</th><th scope="col">Last event</th></tr></thead><tbody>{rows}</tbody></table></div>"#,
        n = h.hooks.len(),
        hydrate = if h.hydrate {
            "read and sent along"
        } else {
            "not read (ids only)"
        },
        checked = when_or_dash(h.checked_at.as_deref()),
    )
}

/// `back`: the hash of the links view to go back to.
pub fn link_detail(d: &ConnectionDetail, unknown_events: usize, back: &str) -> String {
    let r = &d.connection;
    let c = &r.connection;
    let mut facts = String::new();
    facts += &fact("Keap app", &format!("<code>{}</code>", escape(&c.keap_app)));
    if let Some(n) = &c.keap_app_name {
        facts += &fact("Business name", &escape(n));
    }
    facts += &fact("Partner user", &escape(&r.user));
    facts += &fact(
        "Keap user",
        &format!(
            r#"{} &lt;<span class="email">{}</span>&gt;"#,
            escape(&c.keap_user.name),
            escape(&c.keap_user.email)
        ),
    );
    facts += &fact("Status", status_badge(c.status));
    facts += &fact("Connected", &when(&c.connected_at));
    if let Some(t) = &c.reconnected_at {
        facts += &fact("Reconnected", &when(t));
    }
    facts += &fact("Last refreshed", &when_or_dash(c.refreshed_at.as_deref()));
    facts += &fact("Access token expires", &when(&c.access_expires_at));
    facts += &fact(
        "Refresh token expires",
        &when_or_dash(Some(&c.refresh_expires_at)),
    );
    if let Some(t) = &c.reconnect_before {
        facts += &fact(
            "Reconnect before",
            &format!(r#"<span class="warn-text">{}</span>"#, when(t)),
        );
    }
    if let Some(e) = &c.last_error {
        facts += &fact(
            "Last error",
            &format!(
                "<code>{}</code> {} · {}",
                escape(&e.code),
                escape(&e.message),
                when(&e.at)
            ),
        );
    }
    facts += &fact("Link id", &format!("<code>{}</code>", escape(&c.id)));
    let mut events = String::new();
    for e in &d.events {
        events += &event(e);
    }
    if events.is_empty() {
        events = "<li>No events recorded.</li>".into();
    }
    let unknown = if unknown_events > 0 {
        format!(
            r#"<p class="hint">{unknown_events} event(s) of a kind this console does not know are not shown.</p>"#
        )
    } else {
        String::new()
    };
    // An exported link is the partner's to keep now: keaplink neither refreshes nor repairs it;
    // what is left to do is delete it once the cut-over is done.
    let actions = if c.status == ConnectionStatus::Exported {
        r#"<p class="hint" data-exported>Handed out by an export: keaplink no longer refreshes this link or hands out its tokens. Delete it once your cut-over is done.</p><div class="actions"><button type="button" class="danger" data-action="disconnect">Delete…</button></div>"#
    } else {
        r#"<div class="actions"><button type="button" data-action="refresh">Refresh now</button><button type="button" data-action="repair">Make a repair link</button><button type="button" class="danger" data-action="disconnect">Disconnect…</button></div>"#
    };
    format!(
        r##"<p><a href="{back}">← All links</a></p>
<h1 tabindex="-1"><code>{app}</code> · {email}</h1>
<dl class="facts" data-connection="{id}" data-status="{status}">{facts}</dl>
{actions}
<div id="action-out"></div>
<div id="link-hooks"><p class="muted">Loading Keap events…</p></div>
<h2>Timeline</h2><p class="hint">Newest first; the link's last 100 events.</p>
<ol class="timeline">{events}</ol>{unknown}"##,
        app = escape(&c.keap_app),
        email = escape(&c.keap_user.email),
        id = escape(&c.id),
        status = crate::wire::status_name(c.status),
        back = escape(back),
    )
}

fn event(e: &ConnectionEvent) -> String {
    let code = e
        .code
        .as_deref()
        .map(|c| format!(" <code>{}</code>", escape(c)))
        .unwrap_or_default();
    let detail = e
        .detail
        .as_deref()
        .map(|d| format!(r#"<p class="sub">{}</p>"#, local_times(d)))
        .unwrap_or_default();
    format!(
        r#"<li data-event="{ty}"><span class="dot {class}"></span><div><strong>{label}</strong>{code} <span class="muted">{at}</span>{detail}</div></li>"#,
        ty = event_type(e.kind),
        class = event_class(e.kind),
        label = event_label(e.kind),
        at = when(&e.at),
    )
}

pub fn confirm_disconnect() -> String {
    r#"<div class="confirm" role="group" aria-labelledby="confirm-q"><p id="confirm-q">Disconnect this link? keaplink forgets its tokens at once and your back-end can no longer get a Keap token for this user and app. The user can connect again from the widget.</p><button type="button" class="danger" data-action="confirm-disconnect">Disconnect</button><button type="button" data-action="cancel">Cancel</button></div>"#.into()
}

/// A secret shown in a read-only field with a copy button (`name` is the field's id).
fn secret_field(id: &str, label: &str, value: &str) -> String {
    format!(
        r#"<label for="{id}">{label}</label><div class="copyrow"><input id="{id}" type="text" readonly value="{v}" spellcheck="false" autocomplete="off"><button type="button" data-action="copy" data-from="{id}">Copy</button></div>"#,
        v = escape(value)
    )
}

pub fn repair_link(r: &RepairLink) -> String {
    format!(
        r#"<div class="panel" data-repair><p>A repair link for this link's user, valid until {}. It works once. Send it to the user only: anyone who opens it can sign in to Keap for this link.</p>{}</div>"#,
        when(&r.expires_at),
        secret_field("repair-url", "Repair link", &r.url)
    )
}

pub fn deliveries(list: &[WebhookDelivery]) -> String {
    if list.is_empty() {
        return r#"<p data-state="empty">No webhook deliveries yet.</p>"#.into();
    }
    let mut rows = String::new();
    for d in list {
        let (state, class) = match d.state {
            DeliveryState::Pending => ("Pending", "pending"),
            DeliveryState::Delivered => ("Delivered", "ok"),
            DeliveryState::Failed => ("Failed", "warn"),
        };
        let action = if d.state == DeliveryState::Pending {
            String::new()
        } else {
            format!(
                r#"<button type="button" data-action="redeliver" data-id="{0}">Redeliver<span class="sr"> {0}</span></button>"#,
                escape(&d.id)
            )
        };
        // A deleted link has no page to open: the event is the last of it.
        let link = match d.connection_id.as_deref() {
            Some(id) if !id.is_empty() && d.event_type != "connection.deleted" => format!(
                r##"<a href="#link/{}" class="sub">Open the link</a>"##,
                escape(id)
            ),
            _ => String::new(),
        };
        let attempts = match d.attempts {
            0 => "not tried yet".to_owned(),
            1 => "1 attempt".to_owned(),
            n => format!("{n} attempts"),
        };
        let last = match (d.attempts, d.last_status) {
            (0, _) => String::new(),
            (_, Some(s)) => format!(", last answered {s}"),
            (_, None) => ", last had no answer".to_owned(),
        };
        let _ = write!(
            rows,
            r#"<tr data-delivery="{id}" data-state="{st}"><td data-label="Event"><div><code>{ty}</code><span class="sub">{id}</span></div></td><td data-label="Created"><div>{created}</div></td><td data-label="Partner user"><div>{user}{link}</div></td><td data-label="State"><div><span class="badge {class}">{state}</span><span class="sub">{attempts}{last}</span></div></td><td data-label="Last attempt"><div>{at}</div></td><td data-label="Next retry"><div>{next}</div></td><td data-label="Action"><div>{action}</div></td></tr>"#,
            id = escape(&d.id),
            st = match d.state {
                DeliveryState::Pending => "pending",
                DeliveryState::Delivered => "delivered",
                DeliveryState::Failed => "failed",
            },
            ty = escape(&d.event_type),
            created = when(&d.created_at),
            user = escape(d.user.as_deref().unwrap_or("—")),
            at = when_or_dash(d.last_attempt_at.as_deref()),
            next = when_or_dash(d.next_retry_at.as_deref()),
        );
    }
    format!(
        r#"<div class="scroll"><table class="deliveries"><caption class="sr">Webhook deliveries, newest first</caption><thead><tr><th scope="col">Event</th><th scope="col">Created</th><th scope="col">Partner user</th><th scope="col">State</th><th scope="col">Last attempt</th><th scope="col">Next retry</th><th scope="col"><span class="sr">Action</span></th></tr></thead><tbody>{rows}</tbody></table></div>"#
    )
}

/// An overview card: its title, one big figure with what it counts, and the facts under it.
fn card(id: &str, title: &str, big: &str, counts: &str, facts: &str) -> String {
    format!(
        r#"<section class="card" aria-labelledby="ov-{id}" data-card="{id}"><h2 id="ov-{id}">{title}</h2><p class="big">{big}</p><p class="big-label">{counts}</p><dl class="facts">{facts}</dl></section>"#
    )
}

fn window_line(w: &QuotaWindow) -> String {
    let resets = w
        .resets_at
        .as_deref()
        .map(|t| format!(", starts over {}", when(t)))
        .unwrap_or_default();
    format!(
        r#"<meter min="0" max="{l}" value="{a}" aria-label="available">{a} of {l}</meter> {} of {} left{resets}"#,
        count(w.available),
        count(w.limit),
        l = w.limit,
        a = w.available,
    )
}

fn quota(q: Option<&KeapQuota>) -> String {
    let Some(q) = q else {
        return card(
            "quota",
            "Keap quota",
            "—",
            "calls left today",
            &fact("Last seen", "Keap has not reported it yet: it shows once calls go through keaplink's Keap proxy."),
        );
    };
    let mut facts = fact("Last seen", &when(&q.as_of));
    if let Some(w) = &q.quota {
        facts += &fact("Today", &window_line(w));
    }
    if let Some(w) = &q.throttle {
        facts += &fact("This minute", &window_line(w));
    }
    if let Some(p) = &q.paused_until {
        facts += &fact(
            "Paused until",
            &format!(r#"<span class="warn-text">{}</span>"#, when(p)),
        );
    }
    let big = q
        .quota
        .as_ref()
        .map(|w| count(w.available))
        .unwrap_or_else(|| "—".into());
    card(
        "quota",
        "Keap quota (shared)",
        &big,
        "calls left today",
        &facts,
    )
}

pub fn overview(s: &PartnerStats) -> String {
    let c = &s.connections;
    let r = &s.refreshes_last_24h;
    let w = &s.webhooks;
    let k = &s.keap_events_last_24h;
    let reauth = if c.needs_reauth > 0 {
        format!(
            r##"<a href="#links?status=needs_reauth">{}</a>"##,
            count(c.needs_reauth)
        )
    } else {
        "0".into()
    };
    let failed = if w.failed > 0 {
        format!(r##"<a href="#webhooks">{}</a>"##, count(w.failed))
    } else {
        "0".into()
    };
    format!(
        r#"<p class="muted">As of {}</p><div class="cards">{}{}{}{}</div>"#,
        when(&s.as_of),
        card(
            "links",
            "Links",
            &count(c.total),
            "in all",
            &(fact("Active", &count(c.active)) + &fact("Need their user", &reauth))
        ),
        card(
            "refreshes",
            "Refreshes, last 24 h",
            &count(r.succeeded),
            "succeeded",
            &(fact("Succeeded", &count(r.succeeded))
                + &fact("Failed (retried)", &count(r.failed))
                + &fact("Lost (need the user)", &count(r.needs_reauth)))
        ),
        quota(s.keap_quota.as_ref()),
        card(
            "webhooks",
            "Webhooks",
            &count(w.failed),
            "failed deliveries",
            &(fact("Failed (can be redelivered)", &failed)
                + &fact("Pending", &count(w.pending))
                + &fact("Delivered, last 24 h", &count(w.delivered_last_24h))
                + &fact(
                    "Keap events, last 24 h",
                    &format!(
                        r#"<span data-keap-events="{}/{}/{}">{} in, {} repeated by Keap, {} delivered</span>"#,
                        k.received,
                        k.deduplicated,
                        k.delivered,
                        count(k.received),
                        count(k.deduplicated),
                        count(k.delivered)
                    )
                ))
        ),
    )
}

pub fn settings(p: &PartnerView) -> String {
    let checked = |b: bool| if b { " checked" } else { "" };
    format!(
        r#"<form class="card settings" data-form="settings" novalidate>
<h2>Where the widget may run</h2>
<label for="origins">Allowed origins</label>
<textarea id="origins" name="origins" rows="3" spellcheck="false" aria-describedby="origins-hint">{origins}</textarea>
<p id="origins-hint" class="hint">One per line, as <code>https://app.example.com</code> (scheme, host, port if any): the pages that embed the widget. At most 20.</p>
<label for="returns">Return URLs</label>
<textarea id="returns" name="returns" rows="3" spellcheck="false" aria-describedby="returns-hint">{returns}</textarea>
<p id="returns-hint" class="hint">One per line: where a connect without a popup may come back to. At most 20.</p>
<h2>Webhooks</h2>
<label for="webhook">Webhook URL</label>
<input id="webhook" name="webhook" type="url" value="{webhook}" spellcheck="false" aria-describedby="webhook-hint">
<p id="webhook-hint" class="hint">https; leave empty for no webhooks.</p>
<div class="check"><input id="repair-links" name="repair-links" type="checkbox"{repair}><label for="repair-links">Put a fresh repair link in <code>connection.needs_reauth</code> and <code>connection.expiring</code> events</label></div>
<fieldset><legend>Who may reconnect a link</legend>
<div class="check"><input id="identity-user" name="identity" type="radio" value="user"{user}><label for="identity-user">Only the same Keap user (recommended)</label></div>
<div class="check"><input id="identity-app" name="identity" type="radio" value="app"{app}><label for="identity-app">Anyone who can sign in to the same Keap app</label></div>
</fieldset>
<h2>Keap for AI agents</h2>
<p data-mcp>{mcp}</p>
<div class="check"><input id="mcp-on" name="mcp-on" type="checkbox"{mcp_on}><label for="mcp-on">Offer an MCP server: your users connect AI assistants to their Keap link</label></div>
<label for="mcp-sign-in">MCP sign-in URL</label>
<input id="mcp-sign-in" name="mcp-sign-in" type="url" value="{sign_in}" spellcheck="false" aria-describedby="mcp-sign-in-hint">
<p id="mcp-sign-in-hint" class="hint">https: your page where keaplink sends a user to sign in before they allow an assistant. Required while the server is on. Turning it off ends every assistant's access for good.</p>
<fieldset><legend>What an assistant may be allowed</legend>
<div class="check"><input id="mcp-read" name="mcp-tools" type="radio" value="read"{read}><label for="mcp-read">Read only</label></div>
<div class="check"><input id="mcp-read-write" name="mcp-tools" type="radio" value="read_write"{read_write}><label for="mcp-read-write">Read and write (create contacts, apply tags, add notes)</label></div>
</fieldset>
<div id="settings-error"></div>
<button type="submit" class="primary">Save settings</button>
</form>
<section class="card" aria-labelledby="secrets-h"><h2 id="secrets-h">Secrets</h2>
<p>Rotating makes a new API key and a new session secret. The old ones stop working at once: your back-end must switch to the new ones before it calls keaplink or mints a session again. Webhook signatures change with the session secret.</p>
<div id="rotate-out"><button type="button" class="danger" data-action="rotate">Rotate secrets…</button></div></section>"#,
        origins = escape(&p.allowed_origins.join("\n")),
        returns = escape(&p.return_urls.join("\n")),
        webhook = escape(p.webhook_url.as_deref().unwrap_or("")),
        repair = checked(p.webhook_repair_links),
        user = checked(p.reconnect_identity == ReconnectIdentity::User),
        app = checked(p.reconnect_identity == ReconnectIdentity::App),
        mcp = mcp_line(&p.mcp),
        mcp_on = checked(p.mcp.enabled),
        sign_in = escape(p.mcp.sign_in_url.as_deref().unwrap_or("")),
        read = checked(p.mcp.tools == keaplink_api::McpTools::Read),
        read_write = checked(p.mcp.tools == keaplink_api::McpTools::ReadWrite),
    )
}

/// The partner's MCP server, as the settings page shows it (changed with `PATCH /v1/partner`'s
/// `mcp`).
fn mcp_line(m: &keaplink_api::McpSettings) -> String {
    if !m.enabled {
        return "Off: no MCP server for your users. (<code>PATCH /v1/partner</code>'s <code>mcp</code> changes it too.)".into();
    }
    let tools = match m.tools {
        keaplink_api::McpTools::Read => "read only",
        keaplink_api::McpTools::ReadWrite => "read and write",
    };
    format!(
        "On ({tools}): your users sign in at <code>{}</code> to connect an AI assistant to their Keap link.",
        escape(m.sign_in_url.as_deref().unwrap_or(""))
    )
}

pub fn confirm_rotate() -> String {
    r#"<div class="confirm" role="group" aria-labelledby="rotate-q"><p id="rotate-q">Rotate now? The current API key and session secret stop working at once, for your back-end too.</p><button type="button" class="danger" data-action="confirm-rotate">Rotate secrets</button><button type="button" data-action="cancel-rotate">Cancel</button></div>"#.into()
}

/// The new secrets, shown this once. `switched`: the console itself moved to the new key.
pub fn rotated(api_key: &str, session_secret: &str, switched: bool) -> String {
    let note = if switched {
        "This console now uses the new API key; the old one is refused."
    } else {
        "The old API key is refused from now on."
    };
    format!(
        r#"<div class="panel warn-panel" role="alert" data-rotated><p><strong>Copy these now: they are shown only once.</strong> {note}</p>{}{}</div>"#,
        secret_field("new-api-key", "New API key", api_key),
        secret_field("new-session-secret", "New session secret", session_secret)
    )
}

/// The operator's page of partners: each with its links and webhooks, which arrive per row
/// (`partner_counts` fills the cells marked `data-stats`).
pub fn partners(list: &[PartnerView], page: usize, has_prev: bool, has_next: bool) -> String {
    if list.is_empty() {
        return r#"<p data-state="empty">No partners registered yet.</p>"#.into();
    }
    let mut rows = String::new();
    for p in list {
        let _ = write!(
            rows,
            r#"<tr data-partner="{id}"><td data-label="Name"><div>{name}<span class="sub"><code>{id}</code></span></div></td><td data-label="Links" data-stats="links"><div class="muted">…</div></td><td data-label="Webhooks" data-stats="webhooks"><div class="muted">…</div></td><td data-label="Allowed origins"><div class="sub">{origins}</div></td><td data-label="Action"><div><button type="button" data-action="pick-partner" data-id="{id}" data-name="{name}">Open {name}</button></div></td></tr>"#,
            id = escape(&p.partner_id),
            name = escape(&p.name),
            origins = escape(&p.allowed_origins.join(", ")),
        );
    }
    format!(
        r#"<div class="scroll"><table class="partners"><caption class="sr">Partners, page {page}</caption><thead><tr><th scope="col">Partner</th><th scope="col">Links</th><th scope="col">Webhooks</th><th scope="col">Allowed origins</th><th scope="col"><span class="sr">Action</span></th></tr></thead><tbody>{rows}</tbody></table></div>{}"#,
        pager("partners-", page, has_prev, has_next)
    )
}

/// One partner's cells of the operator's table: its links (and how many need their user) and
/// its webhook deliveries (failed ones stand out).
pub fn partner_counts(s: &PartnerStats) -> (String, String) {
    let c = &s.connections;
    let w = &s.webhooks;
    let links = format!(
        r#"<div><strong>{}</strong> <span class="sub">{} active · {}</span></div>"#,
        count(c.total),
        count(c.active),
        if c.needs_reauth > 0 {
            format!(
                r#"<span class="warn-text" data-needs-reauth="{n}">{} need their user</span>"#,
                count(c.needs_reauth),
                n = c.needs_reauth
            )
        } else {
            "none need their user".into()
        }
    );
    let hooks = if w.failed > 0 {
        format!(
            r#"<div><span class="badge warn" data-failed="{n}">{} failed</span><span class="sub">{} pending · {} delivered, 24 h</span></div>"#,
            count(w.failed),
            count(w.pending),
            count(w.delivered_last_24h),
            n = w.failed
        )
    } else {
        format!(
            r#"<div><span data-failed="0">None failing</span><span class="sub">{} pending · {} delivered, 24 h</span></div>"#,
            count(w.pending),
            count(w.delivered_last_24h)
        )
    };
    (links, hooks)
}

/// The deployment as a whole, above the partners: every partner's links, refreshes, and the
/// Keap quota they share.
pub fn deployment(s: &AdminStats) -> String {
    let c = &s.connections;
    let r = &s.refreshes_last_24h;
    format!(
        r#"<p class="muted">The whole deployment, as of {}</p><div class="cards">{}{}{}{}</div>"#,
        when(&s.as_of),
        card("partners", "Partners", &count(s.partners), "registered", ""),
        card(
            "all-links",
            "Links",
            &count(c.total),
            "in all",
            &(fact("Active", &count(c.active)) + &fact("Need their user", &count(c.needs_reauth)))
        ),
        card(
            "all-refreshes",
            "Refreshes, last 24 h",
            &count(r.succeeded),
            "succeeded",
            &(fact("Failed (retried)", &count(r.failed))
                + &fact("Lost (need the user)", &count(r.needs_reauth)))
        ),
        quota(s.keap_quota.as_ref()),
    )
}

/// `<h1>` of a view that has a simple title.
pub fn titled(title: &str, body: &str) -> String {
    format!(r#"<h1 tabindex="-1">{title}</h1>{body}"#)
}

/// Lines of a textarea: trimmed, empty ones dropped.
pub fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keaplink_api::{Connection, KeapUser, LastError};

    fn link(email: &str) -> PartnerConnection {
        PartnerConnection {
            connection: Connection {
                id: "c1<".into(),
                keap_app: "ab123".into(),
                keap_app_name: Some("Ann's <b>Bakery</b>".into()),
                keap_user: KeapUser {
                    email: email.into(),
                    name: "Ann \"A\" Baker".into(),
                },
                status: ConnectionStatus::NeedsReauth,
                connected_at: "2026-01-01T00:00:00Z".into(),
                refreshed_at: None,
                reconnected_at: None,
                access_expires_at: "2026-01-02T00:00:00Z".into(),
                refresh_expires_at: "2026-02-15T00:00:00Z".into(),
                reconnect_before: None,
                last_error: Some(LastError {
                    code: "refresh_token_invalid".into(),
                    message: "<script>alert(1)</script>".into(),
                    at: "2026-01-01T01:00:00Z".into(),
                }),
            },
            user: "user-<1>".into(),
        }
    }

    #[test]
    fn everything_from_the_api_is_escaped() {
        let html = links_table(
            &[link("x@y.z\"><img src=x onerror=alert(1)>")],
            1,
            false,
            true,
            false,
        );
        for bad in ["<script", "<img", "<b>", "z\"><", "user-<1>", "c1<\""] {
            assert!(!html.contains(bad), "{bad} escaped in {html}");
        }
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("Ann&#39;s &lt;b&gt;Bakery&lt;/b&gt;"));
        assert!(html.contains(r##"href="#link/c1&lt;""##));
    }

    #[test]
    fn a_row_shows_app_id_and_email_as_text() {
        let html = links_table(&[link("ann@ab123.example")], 1, false, false, false);
        assert!(html.contains(">ab123</a>"));
        assert!(html.contains(r#"<span class="email">ann@ab123.example</span>"#));
        assert!(html.contains(r#"data-status="needs_reauth""#));
        assert!(html.contains("Needs its user"));
    }

    #[test]
    fn a_delivery_links_to_its_connection_unless_the_event_deleted_it() {
        let delivery = |id: &str, ty: &str| WebhookDelivery {
            id: id.into(),
            event_type: ty.into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            connection_id: Some("c1".into()),
            user: Some("user-1".into()),
            state: DeliveryState::Delivered,
            attempts: 1,
            last_status: Some(200),
            last_attempt_at: Some("2026-01-01T00:00:01Z".into()),
            next_retry_at: None,
        };
        let html = deliveries(&[
            delivery("evt_created", "connection.created"),
            delivery("evt_deleted", "connection.deleted"),
        ]);
        let row = |id: &str| {
            let start = html.find(&format!(r#"data-delivery="{id}""#)).unwrap();
            let end = html[start..].find("</tr>").unwrap();
            html[start..start + end].to_owned()
        };
        assert!(row("evt_created").contains(r##"href="#link/c1""##));
        assert!(
            !row("evt_deleted").contains("Open the link"),
            "a deleted link has no page"
        );
    }

    #[test]
    fn a_failure_offers_try_again_only_where_it_may_help() {
        let busy = failure("internal", "Something went wrong.", true);
        assert!(busy.contains(r#"data-action="retry""#));
        let gone = failure("invalid_id", "That is not a connection id of ours.", false);
        assert!(!gone.contains("retry"), "{gone}");
        assert!(gone.contains(r##"<a href="#links">All links</a>"##));
    }

    #[test]
    fn the_pager_disables_what_cannot_be_followed() {
        let html = links_table(&[link("a@b.c")], 1, false, true, false);
        assert!(html.contains(r#"data-action="prev" disabled"#));
        assert!(html.contains(r#"data-action="next">"#));
        let last = links_table(&[link("a@b.c")], 3, true, false, false);
        assert!(last.contains(r#"data-action="next" disabled"#));
        assert!(last.contains("Page 3"));
    }

    #[test]
    fn an_empty_page_says_why() {
        assert!(links_table(&[], 1, false, false, true).contains("No link matches."));
        assert!(links_table(&[], 1, false, false, false).contains("No links yet"));
    }

    #[test]
    fn a_reconnected_link_says_when_beside_its_first_time() {
        let mut l = link("ann@ab123.example");
        assert!(!links_table(&[l.clone()], 1, false, false, false).contains("Reconnected"));
        l.connection.reconnected_at = Some("2026-03-04T05:06:07Z".into());
        let html = links_table(&[l], 1, false, false, false);
        assert!(
            html.contains(r#"Reconnected <time datetime="2026-03-04T05:06:07Z">"#),
            "{html}"
        );
    }

    #[test]
    fn a_links_hooks_show_status_last_event_and_error() {
        let h = Hooks {
            hooks: vec![
                keaplink_api::Hook {
                    event_key: "contact.add".into(),
                    status: HookStatus::Verified,
                    error: None,
                    last_event_at: Some("2026-03-04T05:06:07Z".into()),
                },
                keaplink_api::Hook {
                    event_key: "<b>".into(),
                    status: HookStatus::Failed,
                    error: Some(keaplink_api::ErrorDetail {
                        code: "keap_error".into(),
                        message: "Keap said no".into(),
                    }),
                    last_event_at: None,
                },
            ],
            hydrate: true,
            checked_at: None,
        };
        let html = link_hooks(Ok(&h));
        assert!(html.contains(r#"data-hooks="2""#), "{html}");
        assert!(
            html.contains(r#"data-hook="contact.add" data-hook-status="verified""#),
            "{html}"
        );
        assert!(
            html.contains(r#"<time datetime="2026-03-04T05:06:07Z">"#),
            "{html}"
        );
        assert!(
            html.contains("&lt;b&gt;") && !html.contains("<b>"),
            "{html}"
        );
        assert!(
            html.contains("<code>keap_error</code> Keap said no"),
            "{html}"
        );
        let none = Hooks {
            hooks: vec![],
            hydrate: false,
            checked_at: None,
        };
        assert!(link_hooks(Ok(&none)).contains(r#"data-hooks="0""#));
        assert!(link_hooks(Err("down")).contains("data-hooks-error"));
    }

    #[test]
    fn a_partners_row_says_its_links_and_failing_webhooks() {
        let mut s = PartnerStats {
            as_of: "2026-01-01T00:00:00Z".into(),
            connections: keaplink_api::ConnectionCounts {
                total: 1200,
                active: 1197,
                needs_reauth: 3,
                exported: 0,
            },
            refreshes_last_24h: Default::default(),
            keap_quota: None,
            webhooks: keaplink_api::WebhookCounts {
                pending: 1,
                failed: 2,
                delivered_last_24h: 40,
            },
            ..Default::default()
        };
        let (links, hooks) = partner_counts(&s);
        assert!(links.contains("<strong>1,200</strong>"), "{links}");
        assert!(
            links.contains(r#"data-needs-reauth="3">3 need their user"#),
            "{links}"
        );
        assert!(
            hooks.contains(r#"class="badge warn" data-failed="2">2 failed"#),
            "{hooks}"
        );
        s.webhooks.failed = 0;
        s.connections.needs_reauth = 0;
        let (links, hooks) = partner_counts(&s);
        assert!(links.contains("none need their user"));
        assert!(hooks.contains(r#"data-failed="0">None failing"#), "{hooks}");
        let list = [PartnerView {
            partner_id: "acme".into(),
            name: "Acme <Co>".into(),
            allowed_origins: vec!["https://acme.example".into()],
            return_urls: vec![],
            webhook_url: None,
            reconnect_identity: ReconnectIdentity::default(),
            webhook_repair_links: false,
            export_enabled: false,
            mcp: Default::default(),
            session_secret: None,
            api_key: None,
        }];
        let html = partners(&list, 1, false, false);
        assert!(
            html.contains(r#"data-stats="links""#) && html.contains(r#"data-stats="webhooks""#)
        );
        assert!(html.contains("Acme &lt;Co&gt;") && !html.contains("<Co>"));
    }

    #[test]
    fn times_in_an_events_words_are_shown_as_times() {
        assert_eq!(
            local_times("Expires 2026-12-08T08:45:00Z."),
            r#"Expires <time datetime="2026-12-08T08:45:00Z">2026-12-08T08:45:00Z</time>."#
        );
        // Anything else is escaped words, times-like or not.
        assert_eq!(
            local_times("ann@x <b> 2026-12-08"),
            "ann@x &lt;b&gt; 2026-12-08"
        );
        assert_eq!(local_times("2026-12-08T08:45:00Q"), "2026-12-08T08:45:00Q");
    }

    #[test]
    fn relative_times_pick_one_unit() {
        assert_eq!(relative(30.0), "in a minute");
        assert_eq!(relative(-30.0), "just now");
        assert_eq!(relative(600.0), "in 10 min");
        assert_eq!(relative(-7200.0), "2 h ago");
        assert_eq!(relative(86400.0 * 3.0), "in 3 d");
        assert_eq!(relative(-86400.0 * 45.0), "45 d ago");
    }

    #[test]
    fn counts_are_grouped() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(100_000), "100,000");
        assert_eq!(count(1_234_567), "1,234,567");
    }

    #[test]
    fn textarea_lines_are_trimmed_and_blank_ones_dropped() {
        assert_eq!(
            lines(" https://a.example \n\n\thttps://b.example\r\n  "),
            vec!["https://a.example", "https://b.example"]
        );
        assert!(lines("").is_empty());
    }

    #[test]
    fn the_sign_in_error_is_announced_and_tied_to_the_field() {
        let html = sign_in(Some("The API key is not valid. <b>"));
        assert!(html.contains(r#"role="alert""#));
        assert!(html.contains(r#"aria-describedby="key-hint key-error""#));
        assert!(html.contains(r#"aria-invalid="true""#));
        assert!(html.contains("&lt;b&gt;"));
        assert!(!sign_in(None).contains("alert"));
    }

    #[test]
    fn secrets_are_shown_escaped_in_read_only_fields() {
        let html = rotated("klk.acme.\"x", "s<e>", true);
        assert!(html.contains(r#"readonly value="klk.acme.&quot;x""#));
        assert!(html.contains("s&lt;e&gt;"));
        assert!(html.contains("shown only once"));
    }

    #[test]
    fn every_event_kind_has_a_label_and_its_api_name() {
        use ConnectionEventKind::*;
        for k in [
            Created,
            Reconnected,
            Refreshed,
            RefreshFailed,
            NeedsReauth,
            Recovered,
            Expiring,
            IdentityMismatch,
            RepairLinkCreated,
            RepairLinkTried,
            RepairLinkUsed,
            Deleted,
            Imported,
            Exported,
            HooksSet,
            HookRestored,
            HookRestoreFailed,
            HooksRemoved,
        ] {
            assert_eq!(crate::wire::event_kind(event_type(k)), Some(k));
            assert!(!event_label(k).is_empty());
        }
    }
}
