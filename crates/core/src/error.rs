//! Error codes of the contract, and the one place they map to HTTP statuses.

use keaplink_api::{ErrorBody, ErrorDetail};

macro_rules! error_codes {
    ($($variant:ident => ($code:literal, $status:literal),)*) => {
        /// Every error code the Worker may answer. The status of each lives here and nowhere else.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            /// Every code, for docs and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The `snake_case` code sent in the body.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The HTTP status the contract pairs with this code.
            pub fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }

            pub fn from_code(code: &str) -> Option<ErrorCode> {
                match code { $($code => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}

error_codes! {
    InvalidRequest => ("invalid_request", 400),
    InvalidId => ("invalid_id", 400),
    InvalidPartner => ("invalid_partner", 400),
    ReturnUrlNotAllowed => ("return_url_not_allowed", 400),
    InvalidState => ("invalid_state", 400),
    InvalidCursor => ("invalid_cursor", 400),
    InvalidKeapPath => ("invalid_keap_path", 400),
    AccessDenied => ("access_denied", 400),
    InvalidGrant => ("invalid_grant", 400),
    InvalidTarget => ("invalid_target", 400),
    InvalidClientMetadata => ("invalid_client_metadata", 400),
    InvalidRedirectUri => ("invalid_redirect_uri", 400),
    UnsupportedGrantType => ("unsupported_grant_type", 400),
    InvalidClient => ("invalid_client", 401),
    InvalidToken => ("invalid_token", 401),
    MissingCredentials => ("missing_credentials", 401),
    InvalidSession => ("invalid_session", 401),
    InvalidApiKey => ("invalid_api_key", 401),
    InvalidAdminToken => ("invalid_admin_token", 401),
    OriginNotAllowed => ("origin_not_allowed", 403),
    ExportDisabled => ("export_disabled", 403),
    NotFound => ("not_found", 404),
    PartnerNotFound => ("partner_not_found", 404),
    NoConnection => ("no_connection", 404),
    NoImport => ("no_import", 404),
    MethodNotAllowed => ("method_not_allowed", 405),
    HookGone => ("hook_gone", 410),
    NeedsReauth => ("needs_reauth", 409),
    AmbiguousConnection => ("ambiguous_connection", 409),
    IdentityMismatch => ("identity_mismatch", 409),
    Exported => ("exported", 409),
    BodyTooLarge => ("body_too_large", 413),
    KeapThrottled => ("keap_throttled", 429),
    KeapQuota => ("keap_quota", 429),
    RateLimited => ("rate_limited", 429),
    Internal => ("internal", 500),
    Misconfigured => ("misconfigured", 500),
    KeapError => ("keap_error", 502),
    KeapBadResponse => ("keap_bad_response", 502),
    KeapTimeout => ("keap_timeout", 504),
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ErrorCode::from_code(&raw).ok_or_else(|| serde::de::Error::custom("not an error code"))
    }
}

/// What every fallible step of a request answers.
pub type ApiResult<T> = Result<T, ApiError>;

/// An error on its way to the client: a code and a message a person can act on, and for the
/// operator's log line only, what caused it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds to wait before trying again (`retry-after`), for the 429s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u32>,
    /// What went wrong underneath (a KV or Durable Object failure, say). Written to the
    /// request's log line, never into an answer: [`ApiError::body`] leaves it out. It must not
    /// hold a token or secret: causes are messages of the runtime and of our own code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cause: Option<String>,
}

/// The longest cause kept for a log line.
const MAX_CAUSE_CHARS: usize = 300;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let retry_after = (code == ErrorCode::KeapThrottled).then_some(60);
        Self {
            code,
            message: message.into(),
            retry_after,
            cause: None,
        }
    }

    /// A bug or an outage of our own: 500 `internal`, with a sentence for the caller and the
    /// cause kept for the log line.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError::new(
            ErrorCode::Internal,
            "Something went wrong on our side; try again.",
        )
        .caused_by(cause)
    }

    /// Keeps `cause` for the log line (the answer never carries it).
    pub fn caused_by(mut self, cause: impl std::fmt::Display) -> Self {
        let mut text = cause.to_string();
        if text.chars().count() > MAX_CAUSE_CHARS {
            text = text.chars().take(MAX_CAUSE_CHARS).collect::<String>() + "…";
        }
        self.cause = Some(text);
        self
    }

    /// What caused it, for the log line.
    pub fn cause(&self) -> Option<&str> {
        self.cause.as_deref()
    }

    pub fn with_retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str().to_owned(),
                message: self.message.clone(),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_contract_statuses() {
        assert_eq!(ErrorCode::NotFound.status(), 404);
        assert_eq!(ErrorCode::MethodNotAllowed.status(), 405);
        assert_eq!(ErrorCode::OriginNotAllowed.status(), 403);
        assert_eq!(ErrorCode::BodyTooLarge.status(), 413);
        assert_eq!(ErrorCode::NeedsReauth.status(), 409);
        assert_eq!(ErrorCode::KeapTimeout.status(), 504);
    }

    #[test]
    fn every_code_is_snake_case_unique_and_round_trips() {
        let mut seen = std::collections::HashSet::new();
        for &c in ErrorCode::ALL {
            let s = c.as_str();
            assert!(
                s.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'),
                "{s}"
            );
            assert!(seen.insert(s), "duplicate {s}");
            assert_eq!(ErrorCode::from_code(s), Some(c));
            assert!(matches!(c.status(), 400..=599));
        }
    }

    #[test]
    fn the_cause_is_for_the_log_not_the_answer() {
        let err = ApiError::internal("KV get failed: connection reset");
        assert_eq!(err.status(), 500);
        assert_eq!(err.cause(), Some("KV get failed: connection reset"));
        let body = serde_json::to_string(&err.body()).unwrap();
        assert!(!body.contains("connection reset"), "{body}");
        assert!(
            ApiError::internal("x".repeat(1000))
                .cause()
                .unwrap()
                .chars()
                .count()
                <= 301
        );
        // Across a Durable Object call the error travels whole.
        let wire = serde_json::to_string(&err).unwrap();
        assert_eq!(serde_json::from_str::<ApiError>(&wire).unwrap(), err);
        assert!(wire.contains(r#""code":"internal""#));
    }

    #[test]
    fn body_carries_code_and_message() {
        let err = ApiError::new(ErrorCode::MethodNotAllowed, "Use GET.");
        let body = err.body();
        assert_eq!(body.error.code, "method_not_allowed");
        assert_eq!(body.error.message, "Use GET.");
        assert_eq!(err.status(), 405);
    }
}
