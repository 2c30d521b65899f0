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

/// Reads an RFC 3339 time (any offset) as unix seconds; `None` when it is not one.
pub fn parse_rfc3339(text: &str) -> Option<UnixTime> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_formats_and_other_offsets() {
        assert_eq!(parse_rfc3339("2026-11-22T18:00:00Z"), Some(1_795_370_400));
        assert_eq!(
            parse_rfc3339("2026-11-22T19:00:00+01:00"),
            Some(1_795_370_400)
        );
        assert_eq!(parse_rfc3339("2026-11-22"), None);
        assert_eq!(parse_rfc3339("1795370400"), None);
    }

    #[test]
    fn formats_utc_with_z() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_370_400), "2026-11-22T18:00:00Z");
    }
}
