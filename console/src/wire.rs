//! The console's side of the contract: JSON answers read with `Reflect` into `keaplink-api`'s own
//! types, and request bodies written with `JSON.stringify`. serde_json's deserializers for these
//! types measured 44 KB gzip on their own (the whole console is about 57 KB, its budget 80 KB);
//! this way the values still land in the very structs the Worker serializes, so a field renamed
//! or retyped there fails to compile here.

use js_sys::{Array, Object, Reflect};
use keaplink_api::proxy::{KeapQuota, QuotaWindow};
use keaplink_api::{
    AdminStats, Connection, ConnectionCounts, ConnectionDetail, ConnectionEvent,
    ConnectionEventKind, ConnectionStatus, DeliveryState, ErrorDetail, Hook, HookStatus, Hooks,
    KeapEventCounts, KeapUser, LastError, PartnerConnection, PartnerConnections, PartnerList,
    PartnerStats, PartnerView, ReconnectIdentity, RefreshCounts, RepairLink, WebhookCounts,
    WebhookDelivery,
};
use wasm_bindgen::{JsCast, JsValue};

fn field(o: &JsValue, key: &str) -> JsValue {
    if o.is_object() {
        Reflect::get(o, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    } else {
        JsValue::UNDEFINED
    }
}

fn text(o: &JsValue, key: &str) -> Option<String> {
    field(o, key).as_string()
}

fn num(o: &JsValue, key: &str) -> Option<u64> {
    field(o, key)
        .as_f64()
        .filter(|n| *n >= 0.0)
        .map(|n| n as u64)
}

fn list<T>(o: &JsValue, key: &str, each: impl Fn(&JsValue) -> Option<T>) -> Option<Vec<T>> {
    let a: Array = field(o, key).dyn_into().ok()?;
    a.iter().map(|v| each(&v)).collect()
}

fn strings(o: &JsValue, key: &str) -> Option<Vec<String>> {
    list(o, key, |v| v.as_string())
}

/// `{"error": {"code", "message"}}`.
pub fn error(v: &JsValue) -> Option<(String, String)> {
    let e = field(v, "error");
    Some((text(&e, "code")?, text(&e, "message")?))
}

fn last_error(v: &JsValue) -> Option<LastError> {
    Some(LastError {
        code: text(v, "code")?,
        message: text(v, "message")?,
        at: text(v, "at")?,
    })
}

pub fn status(s: &str) -> Option<ConnectionStatus> {
    match s {
        "active" => Some(ConnectionStatus::Active),
        "needs_reauth" => Some(ConnectionStatus::NeedsReauth),
        "exported" => Some(ConnectionStatus::Exported),
        _ => None,
    }
}

/// A status as the API spells it (the inverse of [`status`]).
pub fn status_name(s: ConnectionStatus) -> &'static str {
    match s {
        ConnectionStatus::Active => "active",
        ConnectionStatus::NeedsReauth => "needs_reauth",
        ConnectionStatus::Exported => "exported",
    }
}

fn connection(v: &JsValue) -> Option<Connection> {
    let user = field(v, "keap_user");
    Some(Connection {
        id: text(v, "id")?,
        keap_app: text(v, "keap_app")?,
        keap_app_name: text(v, "keap_app_name"),
        keap_user: KeapUser {
            email: text(&user, "email")?,
            name: text(&user, "name").unwrap_or_default(),
        },
        status: status(&text(v, "status")?)?,
        connected_at: text(v, "connected_at")?,
        refreshed_at: text(v, "refreshed_at"),
        reconnected_at: text(v, "reconnected_at"),
        access_expires_at: text(v, "access_expires_at")?,
        refresh_expires_at: text(v, "refresh_expires_at").unwrap_or_default(),
        reconnect_before: text(v, "reconnect_before"),
        last_error: last_error(&field(v, "last_error")),
    })
}

pub fn partner_connection(v: &JsValue) -> Option<PartnerConnection> {
    Some(PartnerConnection {
        connection: connection(v)?,
        user: text(v, "user")?,
    })
}

/// `GET /v1/connections`.
pub fn partner_connections(v: &JsValue) -> Option<PartnerConnections> {
    Some(PartnerConnections {
        connections: list(v, "connections", partner_connection)?,
        cursor: text(v, "cursor"),
    })
}

pub fn event_kind(s: &str) -> Option<ConnectionEventKind> {
    use ConnectionEventKind::*;
    Some(match s {
        "created" => Created,
        "reconnected" => Reconnected,
        "refreshed" => Refreshed,
        "refresh_failed" => RefreshFailed,
        "needs_reauth" => NeedsReauth,
        "recovered" => Recovered,
        "expiring" => Expiring,
        "identity_mismatch" => IdentityMismatch,
        "repair_link_created" => RepairLinkCreated,
        "repair_link_tried" => RepairLinkTried,
        "repair_link_used" => RepairLinkUsed,
        "deleted" => Deleted,
        "imported" => Imported,
        "exported" => Exported,
        "mcp_granted" => McpGranted,
        "mcp_revoked" => McpRevoked,
        "mcp_tool_call" => McpToolCall,
        "hooks_set" => HooksSet,
        "hook_restored" => HookRestored,
        "hook_restore_failed" => HookRestoreFailed,
        "hooks_removed" => HooksRemoved,
        _ => return None,
    })
}

/// `GET /v1/connections/{id}`. An event of a kind this build does not know (a newer Worker) is
/// left out of `events` and counted in the second value, so the page can say so.
pub fn connection_detail(v: &JsValue) -> Option<(ConnectionDetail, usize)> {
    let raw: Array = field(v, "events").dyn_into().ok()?;
    let mut events = Vec::new();
    let mut unknown = 0;
    for e in raw.iter() {
        let kind = text(&e, "type")?;
        let Some(kind) = event_kind(&kind) else {
            unknown += 1;
            continue;
        };
        events.push(ConnectionEvent {
            at: text(&e, "at")?,
            kind,
            code: text(&e, "code"),
            detail: text(&e, "detail"),
        });
    }
    Some((
        ConnectionDetail {
            connection: partner_connection(v)?,
            events,
        },
        unknown,
    ))
}

pub fn partner(v: &JsValue) -> Option<PartnerView> {
    Some(PartnerView {
        partner_id: text(v, "partner_id")?,
        name: text(v, "name")?,
        allowed_origins: strings(v, "allowed_origins")?,
        return_urls: strings(v, "return_urls")?,
        webhook_url: text(v, "webhook_url"),
        reconnect_identity: match text(v, "reconnect_identity").as_deref() {
            Some("app") => ReconnectIdentity::App,
            _ => ReconnectIdentity::User,
        },
        webhook_repair_links: field(v, "webhook_repair_links").as_bool() == Some(true),
        export_enabled: field(v, "export_enabled").as_bool() == Some(true),
        mcp: {
            let m = field(v, "mcp");
            keaplink_api::McpSettings {
                enabled: field(&m, "enabled").as_bool() == Some(true),
                sign_in_url: text(&m, "sign_in_url"),
                tools: match text(&m, "tools").as_deref() {
                    Some("read_write") => keaplink_api::McpTools::ReadWrite,
                    _ => keaplink_api::McpTools::Read,
                },
            }
        },
        session_secret: text(v, "session_secret"),
        api_key: text(v, "api_key"),
    })
}

/// `GET /v1/admin/partners`.
pub fn partner_list(v: &JsValue) -> Option<PartnerList> {
    Some(PartnerList {
        partners: list(v, "partners", partner)?,
        cursor: text(v, "cursor"),
    })
}

fn window(v: &JsValue) -> Option<QuotaWindow> {
    Some(QuotaWindow {
        limit: num(v, "limit")?,
        available: num(v, "available")?,
        resets_at: text(v, "resets_at"),
    })
}

fn quota(v: &JsValue) -> Option<KeapQuota> {
    Some(KeapQuota {
        as_of: text(v, "as_of")?,
        quota: window(&field(v, "quota")),
        throttle: window(&field(v, "throttle")),
        // The console shows the shared windows; per-app throttles are the operator's stats.
        app_throttles: Vec::new(),
        reserve: num(v, "reserve").unwrap_or(0),
        paused_until: text(v, "paused_until"),
    })
}

fn connection_counts(c: &JsValue) -> Option<ConnectionCounts> {
    Some(ConnectionCounts {
        total: num(c, "total")?,
        active: num(c, "active")?,
        needs_reauth: num(c, "needs_reauth")?,
        exported: num(c, "exported").unwrap_or(0),
    })
}

fn refresh_counts(r: &JsValue) -> Option<RefreshCounts> {
    Some(RefreshCounts {
        succeeded: num(r, "succeeded")?,
        failed: num(r, "failed")?,
        needs_reauth: num(r, "needs_reauth")?,
    })
}

/// `GET /v1/admin/stats`: the deployment's counts (its proxy counts are not shown, so not read).
pub fn admin_stats(v: &JsValue) -> Option<AdminStats> {
    Some(AdminStats {
        as_of: text(v, "as_of")?,
        partners: num(v, "partners")?,
        connections: connection_counts(&field(v, "connections"))?,
        refreshes_last_24h: refresh_counts(&field(v, "refreshes_last_24h"))?,
        keap_quota: quota(&field(v, "keap_quota")),
        ..AdminStats::default()
    })
}

/// `GET /v1/stats`.
pub fn stats(v: &JsValue) -> Option<PartnerStats> {
    let w = field(v, "webhooks");
    Some(PartnerStats {
        as_of: text(v, "as_of")?,
        connections: connection_counts(&field(v, "connections"))?,
        refreshes_last_24h: refresh_counts(&field(v, "refreshes_last_24h"))?,
        keap_quota: quota(&field(v, "keap_quota")),
        webhooks: WebhookCounts {
            pending: num(&w, "pending")?,
            failed: num(&w, "failed")?,
            delivered_last_24h: num(&w, "delivered_last_24h")?,
        },
        keap_events_last_24h: keap_counts(&field(v, "keap_events_last_24h")).unwrap_or_default(),
    })
}

fn keap_counts(k: &JsValue) -> Option<KeapEventCounts> {
    Some(KeapEventCounts {
        received: num(k, "received")?,
        deduplicated: num(k, "deduplicated")?,
        delivered: num(k, "delivered")?,
    })
}

/// `GET /v1/connections/{id}/hooks`.
pub fn hooks(v: &JsValue) -> Option<Hooks> {
    Some(Hooks {
        hooks: list(v, "hooks", |h| {
            let e = field(h, "error");
            Some(Hook {
                event_key: text(h, "event_key")?,
                status: match text(h, "status")?.as_str() {
                    "verified" => HookStatus::Verified,
                    "pending" => HookStatus::Pending,
                    "inactive" => HookStatus::Inactive,
                    "failed" => HookStatus::Failed,
                    _ => return None,
                },
                error: error_detail(&e),
                last_event_at: text(h, "last_event_at"),
            })
        })?,
        hydrate: field(v, "hydrate").as_bool()?,
        checked_at: text(v, "checked_at"),
    })
}

fn error_detail(e: &JsValue) -> Option<ErrorDetail> {
    Some(ErrorDetail {
        code: text(e, "code")?,
        message: text(e, "message")?,
    })
}

pub fn delivery(v: &JsValue) -> Option<WebhookDelivery> {
    Some(WebhookDelivery {
        id: text(v, "id")?,
        event_type: text(v, "type")?,
        created_at: text(v, "created_at")?,
        connection_id: text(v, "connection_id"),
        user: text(v, "user"),
        state: match text(v, "state")?.as_str() {
            "pending" => DeliveryState::Pending,
            "delivered" => DeliveryState::Delivered,
            "failed" => DeliveryState::Failed,
            _ => return None,
        },
        attempts: num(v, "attempts")? as u32,
        last_status: num(v, "last_status").map(|s| s as u16),
        last_attempt_at: text(v, "last_attempt_at"),
        next_retry_at: text(v, "next_retry_at"),
    })
}

/// `GET /v1/webhooks/deliveries`.
pub fn deliveries(v: &JsValue) -> Option<Vec<WebhookDelivery>> {
    list(v, "deliveries", delivery)
}

/// `POST /v1/connections/{id}/repair-link`.
pub fn repair_link(v: &JsValue) -> Option<RepairLink> {
    Some(RepairLink {
        url: text(v, "url")?,
        expires_at: text(v, "expires_at")?,
    })
}

/// A JSON body from `(key, value)` pairs.
pub fn body(pairs: &[(&str, JsValue)]) -> String {
    js_sys::JSON::stringify(&object(pairs))
        .ok()
        .and_then(|s| s.as_string())
        .unwrap_or_else(|| "{}".into())
}

/// A JS object of `pairs` (a field of a body that is itself an object).
pub fn object(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o.into()
}

/// A form field's text for the wire: `null` when it is empty (the setting is cleared).
pub fn text_or_null(text: &str) -> JsValue {
    if text.is_empty() {
        JsValue::NULL
    } else {
        JsValue::from_str(text)
    }
}

/// A JS array of strings.
pub fn string_array(items: &[String]) -> JsValue {
    items
        .iter()
        .map(|s| JsValue::from_str(s))
        .collect::<Array>()
        .into()
}
