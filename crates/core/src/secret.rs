//! A string that must never be printed: tokens, client secrets, API keys, session secrets.
//!
//! `Debug` prints `[redacted]`, there is no `Display`, and the value is reached only through
//! [`Secret::expose`], so a secret reaching a log line has to be written on purpose.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Call sites are the places to audit.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the values differ.
    pub fn ct_eq(&self, other: &str) -> bool {
        self.0.as_bytes().ct_eq(other.as_bytes()).into()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("tok_live_123");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.expose(), "tok_live_123");
    }

    #[test]
    fn constant_time_equality_matches_plain_equality() {
        let s = Secret::new("abc");
        assert!(s.ct_eq("abc"));
        assert!(!s.ct_eq("abd"));
        assert!(!s.ct_eq("ab"));
    }
}
