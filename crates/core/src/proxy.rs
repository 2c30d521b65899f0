//! Calling Keap through keaplink (`/v1/keap/<path>`): which paths may reach Keap, which request
//! headers go with them and which answer headers come back, the body limit, the request that is
//! sent, what a 401 and the heal after it lead to, and proxied calls counted by outcome.
//!
//! The path rules refuse anything that could make Keap (or anything between us and it) read a
//! different path than the one checked: dot segments raw or encoded at any depth, empty
//! segments, encoded slashes, backslashes, `?` and `#`, control characters.

use crate::clock::UnixTime;
use crate::connection::ConnectionRecord;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::ids::UserId;
use crate::keap::KeapApp;
use crate::secret::Secret;
use crate::vec_map::VecMap;
use keaplink_api::proxy::ProxyCounts;
use keaplink_api::ConnectionStatus;
use serde::{Deserialize, Serialize};
use url::Url;

/// The largest request body relayed to Keap.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Where the proxy's paths start on our side.
pub const ROUTE_PREFIX: &str = "/v1/keap";
/// The only request headers that go to Keap.
pub const FORWARDED_HEADERS: [&str; 3] = ["content-type", "accept", "accept-language"];
/// Percent-decoding deeper than this is refused: no real path is encoded three times over.
const MAX_DECODES: usize = 3;

pub fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::BodyTooLarge,
        "The body is over the 1 MiB limit for calls to Keap.",
    )
}

fn bad_path(why: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidKeapPath, format!("The Keap path {why}."))
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

/// Where a proxied call goes on Keap's side: the path (checked) and the query, exactly as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeapTarget {
    pub path: String,
    pub query: Option<String>,
}

/// The Keap path and query of a request to `/v1/keap/<path>`, from the request's URL as the
/// runtime hands it over, checked against `prefixes` (`KEAP_PROXY_PATHS`).
pub fn target(request_url: &str, prefixes: &[String]) -> ApiResult<KeapTarget> {
    let after_scheme = request_url
        .split_once("://")
        .map_or(request_url, |(_, rest)| rest);
    let from_path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    let without_fragment = from_path.split('#').next().unwrap_or_default();
    let (path, query) = match without_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (without_fragment, None),
    };
    let keap_path = path
        .strip_prefix(ROUTE_PREFIX)
        .filter(|p| p.starts_with('/'))
        .ok_or_else(|| bad_path("must follow /v1/keap/"))?;
    check_path(keap_path, prefixes)?;
    if let Some(q) = query {
        check_query(q)?;
    }
    Ok(KeapTarget {
        path: keap_path.to_owned(),
        query: query.map(str::to_owned),
    })
}

fn raw_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b)
}

/// One round of percent-decoding; `None` when there was nothing to decode.
fn decode_once(s: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut changed = false;
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                changed = true;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    changed.then_some(out)
}

/// Checks a Keap path (from its first `/`) by the rules at the top of this module.
pub fn check_path(path: &str, prefixes: &[String]) -> ApiResult<()> {
    let bytes = path.as_bytes();
    if !bytes.iter().all(|&b| raw_path_byte(b)) {
        return Err(bad_path(
            "may hold only letters, digits, -._~!$&'()*+,;=:@/ and %XX escapes",
        ));
    }
    for (i, _) in path.match_indices('%') {
        let escape = bytes.get(i + 1..i + 3).unwrap_or_default();
        if escape.len() != 2 || !escape.iter().all(u8::is_ascii_hexdigit) {
            return Err(bad_path("holds a % that is not a %XX escape"));
        }
    }
    for segment in path.split('/').skip(1) {
        let mut plain = segment.as_bytes().to_vec();
        let mut rounds = 0;
        while let Some(next) = decode_once(&plain) {
            rounds += 1;
            if rounds > MAX_DECODES {
                return Err(bad_path("is percent-encoded too many times over"));
            }
            plain = next;
        }
        if plain
            .iter()
            .any(|&b| matches!(b, b'/' | b'\\' | b'?' | b'#') || b < 0x20 || b == 0x7f)
        {
            return Err(bad_path(
                "may not hold encoded slashes, backslashes, ? or # (%2F, %5C, %3F, %23) or control characters",
            ));
        }
        // `..;x` is `..` to servers that drop path parameters.
        let name = plain.split(|&b| b == b';').next().unwrap_or_default();
        if name.is_empty() {
            return Err(bad_path(
                "may not hold an empty segment (// or a trailing /)",
            ));
        }
        if name.iter().all(|&b| b == b'.') {
            return Err(bad_path("may not hold . or .. segments, raw or encoded"));
        }
    }
    if !prefixes.iter().any(|p| path.starts_with(p.as_str())) {
        return Err(bad_path(&format!(
            "must start with one of: {}",
            prefixes.join(", ")
        )));
    }
    Ok(())
}

fn check_query(query: &str) -> ApiResult<()> {
    if query.bytes().all(|b| b.is_ascii_graphic() && b != b'#') {
        Ok(())
    } else {
        Err(bad_request(
            "The query string holds characters that must be percent-encoded.",
        ))
    }
}

/// Keap's URL for `target`: `KEAP_API_URL`'s origin and path, then the Keap path and query.
pub fn upstream_url(base: &Url, target: &KeapTarget) -> String {
    let mut url = base[..url::Position::AfterPath]
        .trim_end_matches('/')
        .to_owned();
    url.push_str(&target.path);
    if let Some(q) = &target.query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// A header value as text. Headers are bytes, which the runtime hands over one character per
/// byte: a value sent as UTF-8 (a user id outside Latin-1) is read back as UTF-8.
pub fn header_text(raw: &str) -> String {
    let latin1: Option<Vec<u8>> = raw.chars().map(|c| u8::try_from(c).ok()).collect();
    match latin1 {
        Some(bytes) if !raw.is_ascii() => String::from_utf8(bytes).unwrap_or_else(|_| raw.into()),
        _ => raw.to_owned(),
    }
}

/// Whom a proxied call is for: the partner's user and, when named, the Keap app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user: UserId,
    pub app: Option<KeapApp>,
}

/// Reads `keaplink-user` (required) and `keaplink-app` from the request's headers (lower-case
/// names). Every `keaplink-*` header must be free of control characters (CR, LF, tab...).
pub fn caller(headers: &[(String, String)]) -> ApiResult<Caller> {
    for (name, value) in headers {
        if name.starts_with("keaplink-") && value.chars().any(char::is_control) {
            return Err(bad_request(format!(
                "The {name} header holds control characters."
            )));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| header_text(v.trim()))
    };
    let user = get("keaplink-user")
        .and_then(|u| UserId::parse(&u))
        .ok_or_else(|| {
            bad_request(
                "Name the user in the keaplink-user header (1-256 characters, no control characters).",
            )
        })?;
    let app = match get("keaplink-app").filter(|a| !a.is_empty()) {
        None => None,
        Some(raw) => Some(KeapApp::parse(&raw).ok_or_else(|| {
            bad_request("The keaplink-app header must be 1-64 of a-z, 0-9 and -.")
        })?),
    };
    Ok(Caller { user, app })
}

/// The request headers that go to Keap, of the caller's (lower-case names): never its
/// credentials, cookies, `keaplink-*` or hop-by-hop headers.
pub fn forwarded(headers: &[(String, String)]) -> Vec<(&'static str, String)> {
    FORWARDED_HEADERS
        .iter()
        .filter_map(|&name| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| (name, v.clone()))
        })
        .collect()
}

/// Whether a header of Keap's answer is passed on: its `content-type` and every `x-keap-*`.
pub fn relayed(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-type")
        || name
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("x-keap-"))
}

/// The method sent to Keap for the request's method (`HEAD` is answered as `GET`).
pub fn method(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_uppercase().as_str() {
        "GET" | "HEAD" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        _ => return None,
    })
}

/// Refuses a body declared (`content-length`) over the limit before it is read.
pub fn check_declared(content_length: Option<&str>) -> ApiResult<()> {
    match content_length.and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(n) if n > MAX_BODY_BYTES as u64 => Err(too_large()),
        _ => Ok(()),
    }
}

/// The body as read: over the limit, or a body on a `GET`, is refused. An empty body sends none.
pub fn check_body(method: &str, body: Vec<u8>) -> ApiResult<Option<Vec<u8>>> {
    if body.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    if body.is_empty() {
        return Ok(None);
    }
    if method == "GET" || method == "HEAD" {
        return Err(bad_request(format!("A {method} to Keap carries no body.")));
    }
    Ok(Some(body))
}

/// A request for the adapter to send to Keap, exactly as built here.
#[derive(Debug, Clone)]
pub struct ProxyRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(&'static str, Secret)>,
    pub body: Option<Vec<u8>>,
}

/// The call to Keap: the caller's method, URL, forwarded headers and body, with the
/// connection's access token as the only credential.
pub fn outbound(
    method: &'static str,
    url: String,
    forwarded: &[(&'static str, String)],
    access_token: &Secret,
    body: Option<Vec<u8>>,
) -> ProxyRequest {
    let mut headers: Vec<(&'static str, Secret)> = forwarded
        .iter()
        .map(|(n, v)| (*n, Secret::new(v.clone())))
        .collect();
    headers.push((
        "authorization",
        Secret::new(format!("Bearer {}", access_token.expose())),
    ));
    ProxyRequest {
        method,
        url,
        headers,
        body,
    }
}

/// What a heal (a refresh through the connection's guard after Keap's 401) came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterHeal {
    /// The guard holds another token than the one that failed: send again with it.
    Retry,
    /// Keap refused the refresh token: the link needs its user.
    NeedsReauth,
    /// No other token: the refresh failed (with this error, if it said), or was not allowed
    /// yet (a throttled backoff). Sending again would meet the same 401.
    Unchanged(Option<ApiError>),
}

/// Decides from the guard's answer (`record`, whose access token has fingerprint
/// `current_fp`) and the fingerprint of the token Keap refused.
pub fn after_heal(record: &ConnectionRecord, failed_fp: &str, current_fp: &str) -> AfterHeal {
    if record.status == ConnectionStatus::NeedsReauth {
        AfterHeal::NeedsReauth
    } else if current_fp != failed_fp {
        AfterHeal::Retry
    } else {
        AfterHeal::Unchanged(record.last_error.map(|e| e.kind.api_error()))
    }
}

/// Whether a record an earlier heal in this isolate answered is newer than the KV copy just
/// read (KV may serve a copy up to a minute old, whose access token Keap already refused).
pub fn prefer_healed(kv: &ConnectionRecord, healed: &ConnectionRecord) -> bool {
    kv.id == healed.id
        && kv.status == ConnectionStatus::Active
        && healed.status == ConnectionStatus::Active
        && healed.access_expires_at > kv.access_expires_at
}

/// How one proxied call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyOutcome {
    Relayed,
    /// Relayed after a 401 and a heal.
    Healed,
    HeldForQuota,
    KeapThrottled,
    KeapFailed,
    NeedsReauth,
    Refused,
}

impl ProxyOutcome {
    /// The outcome of a call keaplink answered itself with `code`.
    pub fn of_error(code: ErrorCode) -> Self {
        match code {
            ErrorCode::KeapQuota => ProxyOutcome::HeldForQuota,
            ErrorCode::KeapThrottled => ProxyOutcome::KeapThrottled,
            ErrorCode::KeapError | ErrorCode::KeapTimeout | ErrorCode::KeapBadResponse => {
                ProxyOutcome::KeapFailed
            }
            ErrorCode::NeedsReauth => ProxyOutcome::NeedsReauth,
            _ => ProxyOutcome::Refused,
        }
    }

    pub fn count_into(self, c: &mut ProxyCounts) {
        match self {
            ProxyOutcome::Relayed => c.relayed += 1,
            ProxyOutcome::Healed => {
                c.relayed += 1;
                c.healed += 1;
            }
            ProxyOutcome::HeldForQuota => c.held_for_quota += 1,
            ProxyOutcome::KeapThrottled => c.keap_throttled += 1,
            ProxyOutcome::KeapFailed => c.keap_failed += 1,
            ProxyOutcome::NeedsReauth => c.needs_reauth += 1,
            ProxyOutcome::Refused => c.refused += 1,
        }
    }
}

/// Adds `more` into `into`.
pub fn add_counts(into: &mut ProxyCounts, more: &ProxyCounts) {
    into.relayed += more.relayed;
    into.healed += more.healed;
    into.held_for_quota += more.held_for_quota;
    into.keap_throttled += more.keap_throttled;
    into.keap_failed += more.keap_failed;
    into.needs_reauth += more.needs_reauth;
    into.refused += more.refused;
}

const HOUR: i64 = 3600;
const WINDOW_HOURS: i64 = 24;

/// Proxied calls by hour; keeps only the buckets the 24-hour window can still see.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyTally {
    buckets: VecMap<i64, ProxyCounts>,
}

impl ProxyTally {
    pub fn add(&mut self, now: UnixTime, counts: &ProxyCounts) {
        let hour = now.div_euclid(HOUR);
        add_counts(
            self.buckets.get_or_insert_with(hour, ProxyCounts::default),
            counts,
        );
        self.buckets.retain(|h, _| *h > hour - WINDOW_HOURS);
    }

    /// The sums over the current hour and the 23 before it.
    pub fn last_24h(&self, now: UnixTime) -> ProxyCounts {
        let hour = now.div_euclid(HOUR);
        let mut sum = ProxyCounts::default();
        for c in self.buckets.range(hour - WINDOW_HOURS + 1..=hour) {
            add_counts(&mut sum, c);
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixes() -> Vec<String> {
        vec!["/crm/rest/".to_owned()]
    }

    fn url(path: &str) -> String {
        format!("http://127.0.0.1:8787/v1/keap{path}")
    }

    fn refused(path: &str) -> ApiError {
        target(&url(path), &prefixes()).expect_err(path)
    }

    #[test]
    fn allowed_paths_pass_with_their_query_as_sent() {
        let t = target(
            &url("/crm/rest/v1/contacts?limit=5&email=a%40b.example&x=%2e%2e/../"),
            &prefixes(),
        )
        .unwrap();
        assert_eq!(t.path, "/crm/rest/v1/contacts");
        assert_eq!(
            t.query.as_deref(),
            Some("limit=5&email=a%40b.example&x=%2e%2e/../")
        );
        let t = target(&url("/crm/rest/v2/contacts/42#frag"), &prefixes()).unwrap();
        assert_eq!(
            (t.path.as_str(), t.query),
            ("/crm/rest/v2/contacts/42", None)
        );
        // Encoded characters that change nothing about the path's shape are fine.
        for ok in [
            "/crm/rest/v2/contacts/a%20b",
            "/crm/rest/v2/contacts/a.b",
            "/crm/rest/v2/contacts/%2541",
            "/crm/rest/v2/contacts/...x",
            "/crm/rest/v2/contacts:search",
        ] {
            assert!(target(&url(ok), &prefixes()).is_ok(), "{ok}");
        }
        // Another prefix configured.
        let two = vec!["/crm/rest/v2/".to_owned(), "/crm/xmlrpc/".to_owned()];
        assert!(target(&url("/crm/xmlrpc/v1"), &two).is_ok());
        assert!(target(&url("/crm/rest/v1/contacts"), &two).is_err());
    }

    #[test]
    fn every_path_trick_is_refused() {
        let tricks = [
            // outside the prefixes
            "/",
            "/crm/restricted",
            "/crm/rest",
            "/CRM/REST/v1/contacts",
            "/token",
            "/crm/%72est/v1/contacts",
            // dot segments, raw and encoded in any case, double-encoded, with parameters
            "/crm/rest/../token",
            "/crm/rest/./v1",
            "/crm/rest/%2e%2e/token",
            "/crm/rest/%2E%2E/token",
            "/crm/rest/.%2E/token",
            "/crm/rest/%2e/v1",
            "/crm/rest/%252e%252e/token",
            "/crm/rest/%25252e%25252e/token",
            "/crm/rest/..;/token",
            "/crm/rest/v1/..",
            // empty segments, //host, absolute URLs
            "/crm/rest//v1",
            "/crm/rest/v1/contacts/",
            "//evil.example/crm/rest/v1",
            "/crm/rest/;x/v1",
            "/http://evil.example/crm/rest/",
            "/https:/evil.example",
            // encoded slashes and backslashes, raw backslashes, encoded ? and #
            "/crm/rest/v1%2f..%2ftoken",
            "/crm/rest/v1%2Fcontacts",
            "/crm/rest/v1%5ccontacts",
            "/crm/rest/v1%5Ccontacts",
            "/crm/rest/v1%252fcontacts",
            "/crm/rest/v1\\contacts",
            "/crm/rest/v1%3fx=1",
            "/crm/rest/v1%23x",
            // control characters, raw or encoded; NUL
            "/crm/rest/v1%00",
            "/crm/rest/v1%0d%0aHost:%20evil",
            "/crm/rest/v1%09x",
            "/crm/rest/v1%7f",
            "/crm/rest/v1\u{1}x",
            "/crm/rest/v1\rx",
            "/crm/rest/v1 x",
            "/crm/rest/v1/é",
            // broken escapes
            "/crm/rest/v1%",
            "/crm/rest/v1%zz",
            "/crm/rest/v1%4",
        ];
        for trick in tricks {
            let e = refused(trick);
            assert_eq!(
                e.code,
                ErrorCode::InvalidKeapPath,
                "{trick:?}: {}",
                e.message
            );
            assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn refusals_say_why_without_echoing_the_path() {
        assert!(refused("/crm/rest/../x").message.contains(". or .."));
        assert!(refused("/crm/rest//x").message.contains("empty segment"));
        assert!(refused("/crm/rest/a%2fb").message.contains("%2F"));
        assert!(refused("/nowhere/secretish").message.contains("/crm/rest/"));
        assert!(!refused("/nowhere/secretish").message.contains("secretish"));
        assert!(refused("/crm/rest/%25252525")
            .message
            .contains("too many times"));
    }

    #[test]
    fn the_query_must_arrive_encoded() {
        for q in ["a=b c", "a=\u{1}", "a=é"] {
            let e = target(&url(&format!("/crm/rest/v1/contacts?{q}")), &prefixes()).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{q:?}");
        }
    }

    #[test]
    fn not_a_proxy_url() {
        assert!(target("http://x/v1/keapx/crm/rest/v1", &prefixes()).is_err());
        assert!(target("http://x/v1/token", &prefixes()).is_err());
        assert!(target("", &prefixes()).is_err());
    }

    #[test]
    fn the_upstream_url_is_keaps_origin_plus_path_and_query() {
        let t = KeapTarget {
            path: "/crm/rest/v1/contacts".into(),
            query: Some("limit=5".into()),
        };
        let base = Url::parse("https://api.infusionsoft.com").unwrap();
        assert_eq!(
            upstream_url(&base, &t),
            "https://api.infusionsoft.com/crm/rest/v1/contacts?limit=5"
        );
        let mounted = Url::parse("http://127.0.0.1:8788/keap/?ignored=1").unwrap();
        assert_eq!(
            upstream_url(&mounted, &KeapTarget { query: None, ..t }),
            "http://127.0.0.1:8788/keap/crm/rest/v1/contacts"
        );
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_caller_is_named_by_keaplink_headers() {
        let c = caller(&h(&[("keaplink-user", " u1 "), ("keaplink-app", "AB123")])).unwrap();
        assert_eq!(c.user.as_str(), "u1");
        assert_eq!(c.app.unwrap().as_str(), "ab123");
        let c = caller(&h(&[("keaplink-user", "u1"), ("keaplink-app", "")])).unwrap();
        assert_eq!(c.app, None, "an empty app names none");
        for bad in [
            h(&[]),
            h(&[("keaplink-user", "")]),
            h(&[("keaplink-user", &"x".repeat(257))]),
            h(&[("keaplink-user", "u1"), ("keaplink-app", "ab_123")]),
            h(&[("keaplink-user", "u1\r\nx-evil: 1")]),
            h(&[("keaplink-user", "u1"), ("keaplink-app", "ab123\t")]),
            h(&[("keaplink-user", "u1"), ("keaplink-anything", "a\u{7f}")]),
        ] {
            let e = caller(&bad).unwrap_err();
            assert_eq!(
                (e.status(), e.code),
                (400, ErrorCode::InvalidRequest),
                "{bad:?}"
            );
        }
        let e = caller(&h(&[("keaplink-user", "u\n1")])).unwrap_err();
        assert!(e.message.contains("keaplink-user"));
    }

    #[test]
    fn header_values_sent_as_utf8_are_read_as_utf8() {
        // "josé" sent as UTF-8 bytes arrives as one character per byte.
        assert_eq!(header_text("jos\u{c3}\u{a9}"), "josé");
        // Sent as Latin-1, it arrives as it is.
        assert_eq!(header_text("jos\u{e9}"), "josé");
        assert_eq!(header_text("plain"), "plain");
        assert_eq!(header_text("日本"), "日本");
    }

    #[test]
    fn only_three_headers_go_to_keap_and_only_keaps_come_back() {
        let sent = h(&[
            ("authorization", "Bearer klk.acme.secret"),
            ("cookie", "session=1"),
            ("keaplink-user", "u1"),
            ("connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("accept-language", "en"),
            ("x-forwarded-for", "10.0.0.1"),
            ("host", "keaplink.example"),
        ]);
        let names: Vec<&str> = forwarded(&sent).iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["content-type", "accept", "accept-language"]);
        for yes in [
            "content-type",
            "X-Keap-Product-Quota-Limit",
            "x-keap-tenant-id",
        ] {
            assert!(relayed(yes), "{yes}");
        }
        for no in [
            "set-cookie",
            "x-keapish",
            "location",
            "server",
            "content-length",
            "x-",
        ] {
            assert!(!relayed(no), "{no}");
        }
    }

    #[test]
    fn the_request_to_keap_carries_our_token_only() {
        let token = Secret::new("at-123");
        let fwd = vec![("content-type", "application/json".to_owned())];
        let r = outbound(
            "POST",
            "https://k/x".into(),
            &fwd,
            &token,
            Some(b"{}".to_vec()),
        );
        let auth: Vec<_> = r
            .headers
            .iter()
            .filter(|(n, _)| *n == "authorization")
            .collect();
        assert_eq!(auth.len(), 1);
        assert_eq!(auth[0].1.expose(), "Bearer at-123");
        assert_eq!(r.headers.len(), 2);
        assert_eq!(r.body.as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn methods_and_bodies() {
        assert_eq!(method("head"), Some("GET"));
        assert_eq!(method("PATCH"), Some("PATCH"));
        assert_eq!(method("TRACE"), None);
        assert!(check_declared(Some("1048576")).is_ok());
        assert_eq!(check_declared(Some("1048577")).unwrap_err().status(), 413);
        assert!(
            check_declared(Some("nonsense")).is_ok(),
            "the read is checked too"
        );
        assert_eq!(
            check_body("POST", vec![0; MAX_BODY_BYTES + 1])
                .unwrap_err()
                .status(),
            413
        );
        assert_eq!(check_body("POST", vec![]).unwrap(), None);
        assert_eq!(check_body("GET", vec![]).unwrap(), None);
        assert_eq!(check_body("GET", b"x".to_vec()).unwrap_err().status(), 400);
        // The runtime cannot send a HEAD with a body either: refused here, with the method named.
        let head = check_body("HEAD", b"x".to_vec()).unwrap_err();
        assert_eq!(head.status(), 400);
        assert_eq!(head.message, "A HEAD to Keap carries no body.");
        assert_eq!(
            check_body("DELETE", b"x".to_vec()).unwrap(),
            Some(b"x".to_vec())
        );
    }

    fn record(expires: i64, status: &str, last_error: &str) -> ConnectionRecord {
        serde_json::from_str(&format!(
            r#"{{"id": "{id}", "partner": "acme", "user": "u1", "keap_app": "ab123",
            "keap_email": "a@b.c", "keap_name": "A", "status": "{status}", "connected_at": 0,
            "refreshed_at": null, "access_expires_at": {expires}, "refresh_issued_at": 0,
            "last_error": {last_error}, "tokens": "sealed"}}"#,
            id = "A".repeat(22),
        ))
        .unwrap()
    }

    #[test]
    fn a_heal_retries_only_with_another_token() {
        let fresh = record(1_000, "active", "null");
        assert_eq!(after_heal(&fresh, "old", "new"), AfterHeal::Retry);
        assert_eq!(after_heal(&fresh, "old", "old"), AfterHeal::Unchanged(None));
        let failing = record(1_000, "active", r#"{"kind": "keap_unavailable", "at": 5}"#);
        match after_heal(&failing, "old", "old") {
            AfterHeal::Unchanged(Some(e)) => assert_eq!(e.code, ErrorCode::KeapError),
            other => panic!("{other:?}"),
        }
        let dead = record(
            1_000,
            "needs_reauth",
            r#"{"kind": "refresh_token_invalid", "at": 5}"#,
        );
        assert_eq!(after_heal(&dead, "old", "new"), AfterHeal::NeedsReauth);
    }

    #[test]
    fn a_healed_record_wins_over_an_older_kv_copy_only() {
        let kv = record(1_000, "active", "null");
        assert!(prefer_healed(&kv, &record(2_000, "active", "null")));
        assert!(!prefer_healed(&kv, &record(1_000, "active", "null")));
        assert!(!prefer_healed(
            &record(3_000, "active", "null"),
            &record(2_000, "active", "null")
        ));
        let dead = record(
            1_000,
            "needs_reauth",
            r#"{"kind": "refresh_token_invalid", "at": 5}"#,
        );
        assert!(
            !prefer_healed(&dead, &record(2_000, "active", "null")),
            "KV says it died"
        );
        let mut other = record(2_000, "active", "null");
        other.id = crate::ids::ConnectionId::from_random([9; 16]);
        assert!(!prefer_healed(&kv, &other), "a reconnect or another link");
    }

    #[test]
    fn outcomes_are_counted_by_hour_for_a_day() {
        let mut c = ProxyCounts::default();
        ProxyOutcome::Healed.count_into(&mut c);
        ProxyOutcome::Relayed.count_into(&mut c);
        ProxyOutcome::of_error(ErrorCode::KeapQuota).count_into(&mut c);
        ProxyOutcome::of_error(ErrorCode::KeapTimeout).count_into(&mut c);
        ProxyOutcome::of_error(ErrorCode::NeedsReauth).count_into(&mut c);
        ProxyOutcome::of_error(ErrorCode::InvalidKeapPath).count_into(&mut c);
        ProxyOutcome::KeapThrottled.count_into(&mut c);
        assert_eq!(
            c,
            ProxyCounts {
                relayed: 2,
                healed: 1,
                held_for_quota: 1,
                keap_throttled: 1,
                keap_failed: 1,
                needs_reauth: 1,
                refused: 1,
            }
        );
        let mut t = ProxyTally::default();
        let hour0 = 1_800_000_000 - 1_800_000_000 % HOUR;
        t.add(hour0, &c);
        t.add(hour0 + 2 * HOUR, &c);
        assert_eq!(t.last_24h(hour0 + 2 * HOUR).relayed, 4);
        assert_eq!(
            t.last_24h(hour0 + 24 * HOUR).relayed,
            2,
            "the first hour left"
        );
        assert_eq!(t.last_24h(hour0 + 26 * HOUR).relayed, 0);
    }
}
