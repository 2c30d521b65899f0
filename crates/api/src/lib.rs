//! keaplink's HTTP contract (`api-contract.md`) as serde types.
//!
//! Shared by the Worker, which produces these bodies, and the widget, which reads them, so the
//! two can never drift apart. Types only: no rules live here (those are in `keaplink-core`).

use serde::{Deserialize, Serialize};

/// `GET /healthz` → `200 {"ok": true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub ok: bool,
}

/// Every error the Worker answers: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable `snake_case` code a program can branch on.
    pub code: String,
    /// A sentence a person can act on. Never holds a token, a secret or a stack trace.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_the_contract_shape() {
        let body = ErrorBody {
            error: ErrorDetail {
                code: "not_found".into(),
                message: "No such route.".into(),
            },
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "not_found", "message": "No such route."}})
        );
    }

    #[test]
    fn health_serializes_as_ok_true() {
        let json = serde_json::to_string(&Health { ok: true }).unwrap();
        assert_eq!(json, r#"{"ok":true}"#);
    }
}
