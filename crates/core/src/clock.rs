//! Time as the core sees it: unix seconds handed in by the caller, RFC 3339 UTC on the wire.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Seconds since the unix epoch. The core never reads a clock; the adapter passes `now`.
pub type UnixTime = i64;

/// `2026-11-22T18:00:00Z`. Out-of-range values (not produced by any real clock) clamp to the epoch.
pub fn rfc3339(t: UnixTime) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_with_z() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_370_400), "2026-11-22T18:00:00Z");
    }
}
