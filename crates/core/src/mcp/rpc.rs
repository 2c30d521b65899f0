//! JSON-RPC 2.0 as MCP's Streamable HTTP transport carries it: one message per POST, answered
//! with `application/json` (never a stream). A notification or a response from the client is
//! answered 202 with no body.

use serde_json::{json, Value};

/// The handshake versions spoken, newest first (`initialize` answers the client's if listed,
/// else the newest).
pub const PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;

/// A message as read.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request: answered with a result or an error.
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    /// A notification, or the client's response to a request of ours: 202, nothing else.
    NoAnswer,
}

/// Reads one message; a malformed one is its error answer.
pub fn read(body: &[u8]) -> Result<Message, Value> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| error(Value::Null, PARSE_ERROR, "The body is not JSON."))?;
    let Value::Object(mut o) = v else {
        return Err(error(
            Value::Null,
            INVALID_REQUEST,
            "Send one JSON-RPC 2.0 message per request (no batches).",
        ));
    };
    let id = o.remove("id");
    if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(error(
            id.unwrap_or(Value::Null),
            INVALID_REQUEST,
            "jsonrpc must be \"2.0\".",
        ));
    }
    let method = match o.remove("method") {
        Some(Value::String(m)) => m,
        // A response to a request of ours (we send none), or no method at all.
        None if o.contains_key("result") || o.contains_key("error") => {
            return Ok(Message::NoAnswer)
        }
        _ => {
            return Err(error(
                id.unwrap_or(Value::Null),
                INVALID_REQUEST,
                "method must be a string.",
            ))
        }
    };
    let Some(id) = id else {
        return Ok(Message::NoAnswer);
    };
    if !(id.is_string() || id.is_i64() || id.is_u64()) {
        return Err(error(
            Value::Null,
            INVALID_REQUEST,
            "id must be a string or an integer.",
        ));
    }
    let params = o.remove("params").unwrap_or(Value::Null);
    if !(params.is_object() || params.is_null()) {
        return Err(error(id, INVALID_PARAMS, "params must be an object."));
    }
    Ok(Message::Request { id, method, params })
}

pub fn result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// A result already written as JSON text (`tools/list`'s).
pub fn result_text(id: &Value, result: &str) -> String {
    format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{result}}}")
}

pub fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// The version `initialize` answers: the client's, if spoken, else the newest.
pub fn negotiate(params: &Value) -> &'static str {
    let asked = params.get("protocolVersion").and_then(Value::as_str);
    PROTOCOL_VERSIONS
        .iter()
        .find(|v| Some(**v) == asked)
        .copied()
        .unwrap_or(PROTOCOL_VERSIONS[0])
}

/// `initialize`'s result for the partner named `partner_name`.
pub fn initialized(params: &Value, partner_name: &str, business: &str) -> Value {
    json!({
        "protocolVersion": negotiate(params),
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": "keaplink", "title": format!("Keap for {partner_name}"), "version": env!("CARGO_PKG_VERSION")},
        "instructions": format!("Tools for the Keap account \"{business}\", linked by its user in {partner_name}. Contacts and tags are named by Keap ids (strings of digits): search first, then act on the ids found."),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_requests_notifications_and_refuses_the_rest() {
        let r = read(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).unwrap();
        assert_eq!(
            r,
            Message::Request {
                id: json!(1),
                method: "ping".into(),
                params: Value::Null
            }
        );
        assert_eq!(
            read(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap(),
            Message::NoAnswer
        );
        assert_eq!(
            read(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap(),
            Message::NoAnswer
        );
        let code = |b: &[u8]| read(b).unwrap_err()["error"]["code"].as_i64().unwrap();
        assert_eq!(code(b"nope"), PARSE_ERROR);
        assert_eq!(
            code(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#),
            INVALID_REQUEST
        );
        assert_eq!(
            code(br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#),
            INVALID_REQUEST
        );
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#),
            INVALID_REQUEST
        );
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#),
            INVALID_PARAMS
        );
        // The request's id comes back in its error.
        assert_eq!(
            read(br#"{"jsonrpc":"2.0","id":7,"method":3}"#).unwrap_err()["id"],
            json!(7)
        );
    }

    #[test]
    fn a_written_result_is_a_response() {
        let v: Value = serde_json::from_str(&result_text(&json!("a\"b"), "{\"x\":1}")).unwrap();
        assert_eq!(v, result(json!("a\"b"), json!({"x": 1})));
    }

    #[test]
    fn negotiates_the_client_version_when_spoken() {
        for v in ["2025-06-18", "2025-11-25"] {
            assert_eq!(negotiate(&json!({"protocolVersion": v})), v);
        }
        assert_eq!(
            negotiate(&json!({"protocolVersion": "1999-01-01"})),
            "2025-11-25"
        );
        let i = initialized(&json!({"protocolVersion": "2025-06-18"}), "Acme", "Shop");
        assert_eq!(i["protocolVersion"], "2025-06-18");
        assert!(i["capabilities"]["tools"].is_object());
    }
}
