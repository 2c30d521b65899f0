//! The contract's JSON, read in the browser with `Reflect` instead of serde: the widget has a
//! 40 KB budget and serde's deserializers alone cost more than a third of it. The values land in
//! `keaplink-api`'s own types, so the widget still speaks the same contract as the Worker; the
//! browser tests check the two against each other. One exception: a link's assistants are shown
//! from their JSON as it came (`view::assistant` reads the fields by the contract's names, which a
//! unit test pins), since nothing but the render reads them.

use js_sys::{Array, Object, Reflect};
use keaplink_api::{
    CallbackMessage, CallbackStatus, Connection, ConnectionStatus, KeapUser, LastError,
};
use wasm_bindgen::JsValue;

pub fn field(o: &JsValue, key: &str) -> JsValue {
    Reflect::get(o, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

pub fn text(o: &JsValue, key: &str) -> Option<String> {
    field(o, key).as_string()
}

fn last_error(v: JsValue) -> Option<LastError> {
    Some(LastError {
        code: text(&v, "code")?,
        message: text(&v, "message")?,
        at: text(&v, "at")?,
    })
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
        status: match text(v, "status")?.as_str() {
            "active" => ConnectionStatus::Active,
            "needs_reauth" => ConnectionStatus::NeedsReauth,
            "exported" => ConnectionStatus::Exported,
            _ => return None,
        },
        connected_at: text(v, "connected_at")?,
        refreshed_at: text(v, "refreshed_at"),
        reconnected_at: text(v, "reconnected_at"),
        access_expires_at: text(v, "access_expires_at")?,
        refresh_expires_at: text(v, "refresh_expires_at").unwrap_or_default(),
        reconnect_before: text(v, "reconnect_before"),
        last_error: last_error(field(v, "last_error")),
    })
}

/// `{"connections": [Connection]}`.
pub fn connections(v: &JsValue) -> Option<Vec<Connection>> {
    let list: Array = field(v, "connections").dyn_into().ok()?;
    list.iter().map(|c| connection(&c)).collect()
}

/// `{"error": {"code", "message"}}`.
pub fn error(v: &JsValue) -> Option<(String, String)> {
    let e = field(v, "error");
    Some((text(&e, "code")?, text(&e, "message")?))
}

/// `{"authorize_url"}`.
pub fn authorize_url(v: &JsValue) -> Option<String> {
    text(v, "authorize_url")
}

/// The callback page's `postMessage`.
pub fn callback_message(v: &JsValue) -> Option<CallbackMessage> {
    Some(CallbackMessage {
        kind: text(v, "type")?,
        status: match text(v, "status")?.as_str() {
            "connected" => CallbackStatus::Connected,
            "error" => CallbackStatus::Error,
            _ => return None,
        },
        connection_id: text(v, "connection_id"),
        error: text(v, "error"),
        signed_in: text(v, "signed_in"),
        expected: text(v, "expected"),
    })
}

/// `ConnectRequest` as a JSON body; `connection_id` makes it a reconnect of that link.
pub fn connect_body(
    sign_out_first: bool,
    return_to: Option<&str>,
    connection_id: Option<&str>,
) -> Option<String> {
    let o = Object::new();
    Reflect::set(
        &o,
        &"sign_out_first".into(),
        &JsValue::from_bool(sign_out_first),
    )
    .ok()?;
    for (key, value) in [("return_to", return_to), ("connection_id", connection_id)] {
        if let Some(v) = value {
            Reflect::set(&o, &key.into(), &JsValue::from_str(v)).ok()?;
        }
    }
    js_sys::JSON::stringify(&o).ok()?.as_string()
}

use wasm_bindgen::JsCast;
