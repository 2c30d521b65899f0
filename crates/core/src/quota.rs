//! Keap's quota for this deployment's OAuth client, as Keap's own answers report it: reading the
//! `x-keap-*` headers, keeping the latest picture of each window (the day quota, the per-minute
//! throttle, each Keap app's own throttle), and deciding whether a proxied call may go to Keap
//! now or must wait, how long, and whether what was just learned is news for other isolates.
//!
//! Every moment here is epoch milliseconds. A window carries two: when it ends on Keap's clock
//! (read from Keap's `date` header; it names the window, so every isolate agrees which one a
//! report is about) and the same moment on ours (what a wait is computed from).

use crate::clock::rfc3339;
use crate::error::{ApiError, ErrorCode};
use crate::vec_map::VecMap;
use keaplink_api::proxy::{AppThrottle, KeapQuota, QuotaWindow};
use serde::{Deserialize, Serialize};

const SECOND_MS: u64 = 1_000;
const MINUTE_MS: u64 = 60 * SECOND_MS;
const DAY_MS: u64 = 24 * 60 * MINUTE_MS;

/// How long nothing goes to Keap after a 429 whose headers show no spent window: Keap's
/// unreported 25 calls/second spike limit, most likely, which clears within a second.
pub const SPIKE_HOLD_MS: u64 = SECOND_MS;
/// How often an isolate trades what it saw for what the others saw (`OpsStats`): an exhausted
/// window reaches every isolate within about this long.
pub const SYNC_EVERY_MS: u64 = 2 * SECOND_MS;
/// A window with at most this share of its limit left is news worth spreading.
const NEAR_DIVISOR: u64 = 20;
/// An isolate remembers at most this many Keap apps' throttles (the busiest few matter).
pub const MAX_APPS: usize = 256;

/// One of Keap's windows as last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub limit: u64,
    pub available: u64,
    /// When the window starts over, on Keap's clock: the window's identity.
    pub ends_keap_ms: u64,
    /// The same moment on our clock, as estimated when it was reported.
    pub resets_at_ms: u64,
    /// When it was reported (our clock).
    pub seen_at_ms: u64,
}

impl Window {
    /// Takes in another report. A later window replaces this one, and so does a later report
    /// of a changed limit; a report of the same window keeps the lower count (answers arrive out
    /// of order, and a count only falls within a window) and the later reset estimate (waiting
    /// a little long is safe, too short is not).
    pub(crate) fn merge(&mut self, other: &Window) {
        let relimited = other.limit != self.limit && other.seen_at_ms >= self.seen_at_ms;
        if other.ends_keap_ms > self.ends_keap_ms
            || (other.ends_keap_ms == self.ends_keap_ms && relimited)
        {
            *self = *other;
        } else if other.ends_keap_ms == self.ends_keap_ms {
            self.available = self.available.min(other.available);
            self.resets_at_ms = self.resets_at_ms.max(other.resets_at_ms);
            self.seen_at_ms = self.seen_at_ms.max(other.seen_at_ms);
        }
    }

    fn live(&self, now_ms: u64) -> bool {
        now_ms < self.resets_at_ms
    }

    fn spent(&self, now_ms: u64) -> bool {
        self.live(now_ms) && self.available == 0
    }

    /// Spent, or close enough that other isolates should hear of it.
    fn near(&self, floor: u64, now_ms: u64) -> bool {
        self.live(now_ms) && self.available <= floor.saturating_add(self.limit / NEAR_DIVISOR)
    }

    fn to_api(self) -> QuotaWindow {
        QuotaWindow {
            limit: self.limit,
            available: self.available,
            resets_at: Some(rfc3339((self.resets_at_ms / SECOND_MS) as i64)),
        }
    }
}

/// Takes what is now known of `app`'s throttle into `apps`.
fn merge_app(apps: &mut VecMap<String, Window>, app: &str, w: &Window) {
    match apps.get_mut(app) {
        Some(known) => known.merge(w),
        None => {
            apps.insert(app.to_owned(), *w);
        }
    }
}

pub(crate) fn merge_slot(slot: &mut Option<Window>, other: &Option<Window>) {
    match (slot.as_mut(), other) {
        (Some(w), Some(o)) => w.merge(o),
        (None, Some(o)) => *slot = Some(*o),
        _ => {}
    }
}

/// What one Keap answer said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// `x-keap-product-quota-*`: the client's calls of the day.
    pub day: Option<Window>,
    /// `x-keap-product-throttle-*`: the client's calls of the minute.
    pub throttle: Option<Window>,
    /// `x-keap-tenant-throttle-*`: the Keap app's own calls of the minute.
    pub app: Option<Window>,
    /// Keap answered 429.
    pub refused: bool,
}

/// Reads Keap's quota headers off an answer. `headers` holds (lower-case name, value) pairs;
/// any header may be missing or malformed, and then that window is simply not reported.
pub fn observe(headers: &[(String, String)], status: u16, now_ms: u64) -> Observation {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
    };
    // Keap's clock, to the second, when its `date` is sane; else ours.
    let keap_now = get("date")
        .and_then(http_date_ms)
        .filter(|t| t.abs_diff(now_ms) < DAY_MS)
        .unwrap_or(now_ms);
    let window = |prefix: &str, default_period_ms: u64, expiry: bool| -> Option<Window> {
        let number = |field: &str| get(&format!("{prefix}-{field}"))?.parse::<u64>().ok();
        let limit = number("limit")?;
        let available = number("available")
            .or_else(|| number("used").map(|u| limit.saturating_sub(u)))?
            .min(limit);
        let unit_ms = get(&format!("{prefix}-time-unit")).and_then(unit_ms);
        let period_ms = unit_ms
            .map(|u| u.saturating_mul(number("interval").unwrap_or(1).clamp(1, 1_000)))
            .unwrap_or(default_period_ms);
        // Keap's fixed windows start on the epoch's boundaries (a day at 00:00 UTC, a minute on
        // the minute); the day quota also says when it ends, in epoch milliseconds.
        let boundary = (keap_now / period_ms + 1).saturating_mul(period_ms);
        let stated = expiry
            .then(|| number("expiry-time"))
            .flatten()
            .map(|e| {
                if e < 100_000_000_000 {
                    e * SECOND_MS
                } else {
                    e
                }
            })
            .filter(|e| *e > keap_now && *e <= keap_now.saturating_add(period_ms + MINUTE_MS));
        let ends_keap_ms = stated.unwrap_or(boundary);
        Some(Window {
            limit,
            available,
            ends_keap_ms,
            resets_at_ms: now_ms.saturating_add(ends_keap_ms - keap_now),
            seen_at_ms: now_ms,
        })
    };
    Observation {
        day: window("x-keap-product-quota", DAY_MS, true),
        throttle: window("x-keap-product-throttle", MINUTE_MS, false),
        app: window("x-keap-tenant-throttle", MINUTE_MS, false),
        refused: status == 429,
    }
}

/// An HTTP `date` (`Tue, 01 Dec 2026 08:00:10 GMT`, the one form servers send) in epoch ms.
pub(crate) fn http_date_ms(date: &str) -> Option<u64> {
    let parts: Vec<&str> = date.split_whitespace().collect();
    let [_, day, month, year, clock, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? as i64 + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = clock.split(':').filter_map(|n| n.parse().ok()).collect();
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || !(1970..=9999).contains(&year) || *h > 23 || *m > 59 || *sec > 60
    {
        return None;
    }
    // Days since the epoch of a proleptic Gregorian date (the "days from civil" algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(((days * 24 + h) * 60 + m) * 60 + sec)
        .ok()
        .map(|s| s * SECOND_MS)
}

fn unit_ms(unit: &str) -> Option<u64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "second" | "seconds" => SECOND_MS,
        "minute" | "minutes" => MINUTE_MS,
        "hour" | "hours" => 60 * MINUTE_MS,
        "day" | "days" => DAY_MS,
        "week" | "weeks" => 7 * DAY_MS,
        _ => return None,
    })
}

/// Why a call waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldReason {
    /// The client's calls of the day are spent.
    Day,
    /// What is left of the day is kept for refreshes (`KEAP_QUOTA_RESERVE`).
    Reserve,
    /// The client's calls of the minute are spent.
    Throttle,
    /// The Keap app's own calls of the minute are spent.
    App,
    /// Keap refused without saying which limit (its per-second spike limit, most likely).
    Spike,
}

/// A call that must not go to Keap before `until_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub reason: HoldReason,
    pub until_ms: u64,
}

impl Hold {
    /// Whole seconds to wait, rounded up, at least 1 (`retry-after`).
    pub fn retry_after_secs(&self, now_ms: u64) -> u32 {
        let ms = self.until_ms.saturating_sub(now_ms);
        u32::try_from(ms.div_ceil(SECOND_MS).max(1)).unwrap_or(u32::MAX)
    }

    /// The 429 `keap_quota` a held call is answered.
    pub fn error(&self, now_ms: u64) -> ApiError {
        let secs = self.retry_after_secs(now_ms);
        let why = match self.reason {
            HoldReason::Day => "Keap's daily API quota for this deployment is spent",
            HoldReason::Reserve => {
                "What is left of Keap's daily API quota is kept for keeping links alive"
            }
            HoldReason::Throttle => "Keap's per-minute API limit for this deployment is reached",
            HoldReason::App => "Keap's per-minute API limit for this Keap app is reached",
            HoldReason::Spike => "Keap is refusing calls for a moment (too many at once)",
        };
        ApiError::new(
            ErrorCode::KeapQuota,
            format!("{why}; try again in {secs} seconds."),
        )
        .with_retry_after(secs)
    }
}

/// The latest picture of Keap's windows: one isolate's, or the one all isolates share.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaView {
    pub day: Option<Window>,
    pub throttle: Option<Window>,
    /// Keap apps' own throttles, by app.
    #[serde(default, skip_serializing_if = "VecMap::is_empty")]
    pub apps: VecMap<String, Window>,
    /// After a 429 that named no window: nothing goes to Keap before this. This isolate's own
    /// (a spike clears in a second; by the time it spread it would be over).
    #[serde(skip)]
    pub spike_until_ms: u64,
}

impl QuotaView {
    /// Takes in what one answer said for a call on behalf of Keap app `app`.
    pub fn learn(&mut self, obs: &Observation, app: &str, now_ms: u64) {
        merge_slot(&mut self.day, &obs.day);
        merge_slot(&mut self.throttle, &obs.throttle);
        if let Some(w) = &obs.app {
            merge_app(&mut self.apps, app, w);
        }
        if obs.refused && self.hold(Some(app), 0, now_ms).is_none() {
            self.spike_until_ms = now_ms + SPIKE_HOLD_MS;
        }
        self.prune(now_ms);
    }

    /// Takes in another view (the shared one, or an isolate's report).
    pub fn merge(&mut self, other: &QuotaView, now_ms: u64) {
        merge_slot(&mut self.day, &other.day);
        merge_slot(&mut self.throttle, &other.throttle);
        for (app, w) in &other.apps {
            merge_app(&mut self.apps, app, w);
        }
        self.prune(now_ms);
    }

    /// Forgets apps' windows that have started over, and the least pressing beyond `MAX_APPS`.
    fn prune(&mut self, now_ms: u64) {
        self.apps.retain(|_, w| w.live(now_ms));
        while self.apps.len() > MAX_APPS {
            let roomiest = self
                .apps
                .iter()
                .max_by_key(|(_, w)| (w.available, w.resets_at_ms))
                .map(|(app, _)| app.clone());
            match roomiest {
                Some(app) => self.apps.remove(&app),
                None => break,
            };
        }
    }

    /// Whether a proxied call (on behalf of `app`, when known) must wait, keeping `reserve`
    /// calls of the day for refreshes. When several limits apply, the call waits for the last.
    pub fn hold(&self, app: Option<&str>, reserve: u64, now_ms: u64) -> Option<Hold> {
        let mut holds = Vec::new();
        if let Some(d) = self.day.filter(|d| d.live(now_ms)) {
            if d.available == 0 {
                holds.push((HoldReason::Day, d.resets_at_ms));
            } else if d.available < reserve {
                holds.push((HoldReason::Reserve, d.resets_at_ms));
            }
        }
        if let Some(t) = self.throttle.filter(|t| t.spent(now_ms)) {
            holds.push((HoldReason::Throttle, t.resets_at_ms));
        }
        if let Some(w) = app
            .and_then(|a| self.apps.get(a))
            .filter(|w| w.spent(now_ms))
        {
            holds.push((HoldReason::App, w.resets_at_ms));
        }
        if self.spike_until_ms > now_ms {
            holds.push((HoldReason::Spike, self.spike_until_ms));
        }
        // On a tie, the first named: the client's own limits say more than an app's.
        holds
            .into_iter()
            .rev()
            .max_by_key(|(_, until)| *until)
            .map(|(reason, until_ms)| Hold { reason, until_ms })
    }

    /// What this isolate tells the others: the client's windows, and the apps whose throttle
    /// is spent or nearly so (the rest matter to no one else).
    pub fn report(&self, now_ms: u64) -> QuotaView {
        let mut apps = VecMap::default();
        for (a, w) in self.apps.iter().filter(|(_, w)| w.near(0, now_ms)) {
            apps.insert(a.clone(), *w);
        }
        QuotaView {
            day: self.day,
            throttle: self.throttle,
            apps,
            spike_until_ms: 0,
        }
    }

    /// Whether this view holds news the shared view `shared` lacks: a window spent or nearly so
    /// (for the day: near the reserve) that the shared view does not show at least as low. Such
    /// news is told at once instead of at the next regular exchange.
    pub fn news_for(&self, shared: &QuotaView, reserve: u64, now_ms: u64) -> bool {
        let fresh = |mine: &Window, theirs: Option<&Window>, floor: u64| {
            mine.near(floor, now_ms)
                && !theirs.is_some_and(|t| {
                    t.ends_keap_ms > mine.ends_keap_ms
                        || (t.ends_keap_ms == mine.ends_keap_ms && t.available <= mine.available)
                })
        };
        self.day
            .is_some_and(|d| fresh(&d, shared.day.as_ref(), reserve))
            || self
                .throttle
                .is_some_and(|t| fresh(&t, shared.throttle.as_ref(), 0))
            || self
                .apps
                .iter()
                .any(|(a, w)| fresh(w, shared.apps.get(a), 0))
    }

    /// As `GET /v1/admin/stats` shows it (`None` before Keap reported anything).
    pub fn to_api(&self, reserve: u64, now_ms: u64) -> Option<KeapQuota> {
        let seen = [self.day, self.throttle]
            .into_iter()
            .flatten()
            .chain(self.apps.values().copied())
            .map(|w| w.seen_at_ms)
            .max()?;
        // Fewest calls left first; apps with as many in name order (the map's). Each is put in
        // its place as it comes (a handful at most), rather than sorted after: a sort would be
        // compiled for this one type (~3 KB of wasm).
        let mut apps: Vec<AppThrottle> = Vec::new();
        for (app, w) in self.apps.iter().filter(|(_, w)| w.near(0, now_ms)) {
            let window = w.to_api();
            let at = apps.partition_point(|a| a.window.available <= window.available);
            let throttle = AppThrottle {
                keap_app: app.clone(),
                window,
            };
            apps.insert(at, throttle);
        }
        let paused_until = self
            .hold(None, reserve, now_ms)
            .map(|h| rfc3339(h.until_ms.div_ceil(SECOND_MS) as i64));
        Some(KeapQuota {
            as_of: rfc3339((seen / SECOND_MS) as i64),
            quota: self.day.map(Window::to_api),
            throttle: self.throttle.map(Window::to_api),
            app_throttles: apps,
            reserve,
            paused_until,
        })
    }
}

/// Whether an isolate that last traded views at `last_ms` should do so now.
pub fn sync_due(last_ms: u64, news: bool, now_ms: u64) -> bool {
    news || now_ms.saturating_sub(last_ms) >= SYNC_EVERY_MS
}

/// How long an isolate that last traded views at `last_ms`, and holds counts it has not told
/// yet, waits before telling them without a call to ride along with: until a regular exchange
/// would be due. (Its next call to Keap may tell them first; a quiet isolate's last calls are
/// then still counted within seconds.)
pub fn deferred_report_wait_ms(last_ms: u64, now_ms: u64) -> u64 {
    (last_ms + SYNC_EVERY_MS).saturating_sub(now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-01T08:00:10Z, in ms.
    const NOW: u64 = 1_796_112_010_000;
    const MIDNIGHT: u64 = 1_796_169_600_000;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn keap_headers(day_available: u64, throttle_available: u64) -> Vec<(String, String)> {
        let day = day_available.to_string();
        let throttle = throttle_available.to_string();
        let expiry = MIDNIGHT.to_string();
        h(&[
            ("date", "Tue, 01 Dec 2026 08:00:10 GMT"),
            ("x-keap-product-quota-limit", "150000"),
            ("x-keap-product-quota-time-unit", "day"),
            ("x-keap-product-quota-interval", "1"),
            ("x-keap-product-quota-available", &day),
            ("x-keap-product-quota-used", "0"),
            ("x-keap-product-quota-expiry-time", &expiry),
            ("x-keap-product-throttle-limit", "1500"),
            ("x-keap-product-throttle-time-unit", "minute"),
            ("x-keap-product-throttle-interval", "1"),
            ("x-keap-product-throttle-available", &throttle),
            ("x-keap-product-throttle-used", "0"),
        ])
    }

    #[test]
    fn reads_keaps_headers() {
        let o = observe(&keap_headers(149_000, 1_400), 200, NOW);
        let day = o.day.unwrap();
        assert_eq!((day.limit, day.available), (150_000, 149_000));
        assert_eq!(day.ends_keap_ms, MIDNIGHT);
        assert_eq!(day.resets_at_ms, MIDNIGHT);
        let t = o.throttle.unwrap();
        assert_eq!((t.limit, t.available), (1_500, 1_400));
        // No expiry for the throttle: the next minute on Keap's clock.
        assert_eq!(t.ends_keap_ms, NOW - 10_000 + MINUTE_MS);
        assert!(o.app.is_none());
        assert!(!o.refused);
    }

    #[test]
    fn waits_are_computed_on_keaps_clock() {
        // Keap's clock is 3 s behind ours: the minute ends 50 s after its date, so 50 s from now.
        let headers = h(&[
            ("date", "Tue, 01 Dec 2026 08:00:07 GMT"),
            ("x-keap-product-throttle-limit", "1500"),
            ("x-keap-product-throttle-available", "0"),
        ]);
        let t = observe(&headers, 429, NOW).throttle.unwrap();
        assert_eq!(t.resets_at_ms, NOW + 53_000);
        // Without a date, our own clock stands in.
        let t = observe(&headers[1..], 429, NOW).throttle.unwrap();
        assert_eq!(t.resets_at_ms, NOW + 50_000);
        // A date a week off is not believed.
        let mut odd = headers.clone();
        odd[0].1 = "Tue, 24 Nov 2026 08:00:07 GMT".into();
        assert_eq!(
            observe(&odd, 429, NOW).throttle.unwrap().resets_at_ms,
            NOW + 50_000
        );
    }

    #[test]
    fn http_dates() {
        assert_eq!(http_date_ms("Tue, 01 Dec 2026 08:00:10 GMT"), Some(NOW));
        assert_eq!(http_date_ms("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            http_date_ms("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777_000)
        );
        assert_eq!(
            http_date_ms("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(1_835_481_599_000)
        );
        for bad in [
            "",
            "yesterday",
            "Tue, 01 Dec 2026 08:00:10 PST",
            "Tue, 01 Foo 2026 08:00:10 GMT",
            "Tue, 32 Dec 2026 08:00:10 GMT",
            "Tue, 01 Dec 2026 24:00:10 GMT",
            "Tue, 01 Dec 2026 08:00 GMT",
            "Tuesday, 01-Dec-26 08:00:10 GMT",
        ] {
            assert_eq!(http_date_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bad_or_missing_headers_report_nothing() {
        let none = observe(&h(&[("content-type", "application/json")]), 200, NOW);
        assert_eq!(none, Observation::default());
        let bad = observe(
            &h(&[
                ("x-keap-product-quota-limit", "lots"),
                ("x-keap-product-throttle-limit", "1500"),
            ]),
            200,
            NOW,
        );
        assert!(bad.day.is_none(), "an unreadable limit");
        assert!(bad.throttle.is_none(), "neither available nor used");
        // `used` stands in for a missing `available`; available never exceeds the limit.
        let used = observe(
            &h(&[
                ("x-keap-product-throttle-limit", "100"),
                ("x-keap-product-throttle-used", "98"),
                ("x-keap-tenant-throttle-limit", "10"),
                ("x-keap-tenant-throttle-available", "5000"),
            ]),
            200,
            NOW,
        );
        assert_eq!(used.throttle.unwrap().available, 2);
        assert_eq!(used.app.unwrap().available, 10);
    }

    #[test]
    fn an_implausible_expiry_falls_back_to_the_boundary() {
        for expiry in ["0", "86400000", "99999999999999", "-5", "soon"] {
            let mut headers = keap_headers(10, 10);
            headers[6].1 = expiry.into();
            let day = observe(&headers, 200, NOW).day.unwrap();
            assert_eq!(day.ends_keap_ms, MIDNIGHT, "expiry {expiry}");
        }
        // Seconds instead of milliseconds are understood.
        let mut headers = keap_headers(10, 10);
        headers[6].1 = (MIDNIGHT / 1000).to_string();
        assert_eq!(
            observe(&headers, 200, NOW).day.unwrap().ends_keap_ms,
            MIDNIGHT
        );
        // A shortened window (the sandbox's) that ends in 3 s is taken as stated.
        headers[6].1 = (NOW + 3_000).to_string();
        headers[0].1 = "Tue, 01 Dec 2026 08:00:10 GMT".into();
        assert_eq!(
            observe(&headers, 200, NOW).day.unwrap().resets_at_ms,
            NOW + 3_000
        );
    }

    #[test]
    fn periods_follow_unit_and_interval() {
        let headers = h(&[
            ("x-keap-product-throttle-limit", "25"),
            ("x-keap-product-throttle-available", "0"),
            ("x-keap-product-throttle-time-unit", "second"),
            ("x-keap-product-throttle-interval", "10"),
        ]);
        let t = observe(&headers, 200, NOW).throttle.unwrap();
        assert_eq!(t.ends_keap_ms, NOW + 10_000, "NOW is on a 10 s boundary");
    }

    #[test]
    fn a_spent_window_holds_calls_until_it_resets() {
        let mut v = QuotaView::default();
        v.learn(&observe(&keap_headers(5_000, 0), 200, NOW), "ab123", NOW);
        let hold = v.hold(Some("ab123"), 100, NOW).unwrap();
        assert_eq!(hold.reason, HoldReason::Throttle);
        assert_eq!(hold.until_ms, NOW + 50_000);
        assert_eq!(hold.retry_after_secs(NOW), 50);
        assert_eq!(hold.retry_after_secs(NOW + 49_001), 1);
        let e = hold.error(NOW);
        assert_eq!((e.status(), e.code), (429, ErrorCode::KeapQuota));
        assert_eq!(e.retry_after, Some(50));
        assert!(e.message.contains("50 seconds"), "{}", e.message);
        // Once the minute is over, calls go again.
        assert_eq!(v.hold(Some("ab123"), 100, NOW + 50_000), None);
    }

    #[test]
    fn the_reserve_stops_proxied_calls_first() {
        let mut v = QuotaView::default();
        v.learn(&observe(&keap_headers(10_000, 900), 200, NOW), "ab123", NOW);
        assert_eq!(v.hold(None, 10_000, NOW), None, "exactly the reserve left");
        v.learn(&observe(&keap_headers(9_999, 899), 200, NOW), "ab123", NOW);
        let hold = v.hold(None, 10_000, NOW).unwrap();
        assert_eq!(hold.reason, HoldReason::Reserve);
        assert_eq!(hold.until_ms, MIDNIGHT);
        assert!(hold.error(NOW).message.contains("keeping links alive"));
        assert_eq!(v.hold(None, 0, NOW), None, "no reserve kept");
        v.learn(&observe(&keap_headers(0, 899), 200, NOW), "ab123", NOW);
        assert_eq!(v.hold(None, 0, NOW).unwrap().reason, HoldReason::Day);
    }

    #[test]
    fn an_apps_throttle_holds_that_app_only() {
        let headers = h(&[
            ("date", "Tue, 01 Dec 2026 08:00:10 GMT"),
            ("x-keap-tenant-throttle-limit", "10000"),
            ("x-keap-tenant-throttle-available", "0"),
        ]);
        let mut v = QuotaView::default();
        v.learn(&observe(&headers, 200, NOW), "ab123", NOW);
        assert_eq!(
            v.hold(Some("ab123"), 0, NOW).map(|h| h.reason),
            Some(HoldReason::App)
        );
        assert_eq!(v.hold(Some("cd456"), 0, NOW), None);
        assert_eq!(v.hold(None, 0, NOW), None);
        // Forgotten once it started over.
        v.learn(&Observation::default(), "cd456", NOW + MINUTE_MS);
        assert!(v.apps.is_empty());
    }

    #[test]
    fn several_limits_wait_for_the_last() {
        let mut v = QuotaView::default();
        v.learn(&observe(&keap_headers(0, 0), 429, NOW), "ab123", NOW);
        let hold = v.hold(Some("ab123"), 0, NOW).unwrap();
        assert_eq!((hold.reason, hold.until_ms), (HoldReason::Day, MIDNIGHT));
        // Ending together, the client's throttle is named before the app's.
        let mut both = keap_headers(5_000, 0);
        both.push(("x-keap-tenant-throttle-limit".into(), "10000".into()));
        both.push(("x-keap-tenant-throttle-available".into(), "0".into()));
        let mut v = QuotaView::default();
        v.learn(&observe(&both, 429, NOW), "ab123", NOW);
        assert_eq!(
            v.hold(Some("ab123"), 0, NOW).unwrap().reason,
            HoldReason::Throttle
        );
    }

    #[test]
    fn a_changed_limit_is_taken_from_the_later_report() {
        let with_limit = |limit: &str, available: &str| {
            h(&[
                ("date", "Tue, 01 Dec 2026 08:00:10 GMT"),
                ("x-keap-tenant-throttle-limit", limit),
                ("x-keap-tenant-throttle-available", available),
            ])
        };
        let mut v = QuotaView::default();
        v.learn(
            &observe(&with_limit("10000", "9990"), 200, NOW),
            "ab123",
            NOW,
        );
        v.learn(
            &observe(&with_limit("3", "0"), 200, NOW + 5),
            "ab123",
            NOW + 5,
        );
        let w = v.apps["ab123"];
        assert_eq!((w.limit, w.available), (3, 0));
        // An older report of the old limit arriving late changes nothing.
        v.learn(
            &observe(&with_limit("10000", "9989"), 200, NOW + 1),
            "ab123",
            NOW + 1,
        );
        let mut late = QuotaView::default();
        late.merge(&v, NOW + 6);
        late.apps.get_mut("ab123").unwrap().seen_at_ms = NOW + 1;
        late.apps.get_mut("ab123").unwrap().limit = 10_000;
        v.merge(&late, NOW + 6);
        assert_eq!(v.apps["ab123"].limit, 3);
    }

    #[test]
    fn a_429_that_names_no_window_holds_for_a_second() {
        let mut v = QuotaView::default();
        v.learn(&observe(&keap_headers(5_000, 700), 429, NOW), "ab123", NOW);
        let hold = v.hold(Some("ab123"), 0, NOW).unwrap();
        assert_eq!(hold.reason, HoldReason::Spike);
        assert_eq!(hold.until_ms, NOW + SPIKE_HOLD_MS);
        assert_eq!(v.hold(Some("ab123"), 0, NOW + SPIKE_HOLD_MS), None);
        // Without any headers, the same.
        let mut bare = QuotaView::default();
        bare.learn(&observe(&[], 429, NOW), "ab123", NOW);
        assert_eq!(bare.hold(None, 0, NOW).unwrap().reason, HoldReason::Spike);
        // The spike is this isolate's own: it does not travel.
        let wire: QuotaView = serde_json::from_str(&serde_json::to_string(&bare).unwrap()).unwrap();
        assert_eq!(wire.hold(None, 0, NOW), None);
    }

    #[test]
    fn reports_merge_by_window() {
        let mut v = QuotaView::default();
        v.learn(&observe(&keap_headers(900, 50), 200, NOW), "ab123", NOW);
        // An older answer of the same window arrives late: the lower count stays.
        v.learn(
            &observe(&keap_headers(950, 60), 200, NOW + 5),
            "ab123",
            NOW + 5,
        );
        assert_eq!(v.day.unwrap().available, 900);
        assert_eq!(v.throttle.unwrap().available, 50);
        // The next minute starts over, whatever its count.
        let next = h(&[
            ("date", "Tue, 01 Dec 2026 08:01:00 GMT"),
            ("x-keap-product-throttle-limit", "1500"),
            ("x-keap-product-throttle-available", "1499"),
        ]);
        v.learn(&observe(&next, 200, NOW + 50_000), "ab123", NOW + 50_000);
        assert_eq!(v.throttle.unwrap().available, 1499);
        // A straggler from the previous minute changes nothing.
        v.learn(
            &observe(&keap_headers(900, 0), 200, NOW + 50_001),
            "ab123",
            NOW + 50_001,
        );
        assert_eq!(v.throttle.unwrap().available, 1499);
    }

    #[test]
    fn news_is_what_the_shared_view_lacks() {
        let mut mine = QuotaView::default();
        let shared = QuotaView::default();
        mine.learn(
            &observe(&keap_headers(100_000, 1_000), 200, NOW),
            "ab123",
            NOW,
        );
        assert!(!mine.news_for(&shared, 10_000, NOW), "plenty left");
        mine.learn(&observe(&keap_headers(100_000, 70), 200, NOW), "ab123", NOW);
        assert!(mine.news_for(&shared, 10_000, NOW), "throttle within 5%");
        let mut told = shared.clone();
        told.merge(&mine.report(NOW), NOW);
        assert!(!mine.news_for(&told, 10_000, NOW), "already told");
        mine.learn(&observe(&keap_headers(100_000, 0), 200, NOW), "ab123", NOW);
        assert!(mine.news_for(&told, 10_000, NOW), "now spent");
        // The day is news near the reserve.
        let mut day = QuotaView::default();
        day.learn(
            &observe(&keap_headers(17_000, 1_000), 200, NOW),
            "ab123",
            NOW,
        );
        assert!(day.news_for(&shared, 10_000, NOW));
        assert!(!day.news_for(&shared, 0, NOW));
    }

    #[test]
    fn only_pressed_apps_are_reported() {
        let app = |available: &str| {
            h(&[
                ("x-keap-tenant-throttle-limit", "10000"),
                ("x-keap-tenant-throttle-available", available),
            ])
        };
        let mut v = QuotaView::default();
        v.learn(&observe(&app("9000"), 200, NOW), "ab123", NOW);
        v.learn(&observe(&app("10"), 200, NOW), "cd456", NOW);
        let report = v.report(NOW);
        assert_eq!(report.apps.keys().collect::<Vec<_>>(), vec!["cd456"]);
        let mut shared = QuotaView::default();
        shared.merge(&report, NOW);
        assert!(shared.apps.contains_key("cd456"));
    }

    #[test]
    fn apps_beyond_the_cap_are_forgotten_roomiest_first() {
        let mut v = QuotaView::default();
        for i in 0..(MAX_APPS + 5) {
            let available = if i == 3 {
                "0".to_owned()
            } else {
                (5_000 + i).to_string()
            };
            let headers = h(&[
                ("x-keap-tenant-throttle-limit", "10000"),
                ("x-keap-tenant-throttle-available", &available),
            ]);
            v.learn(&observe(&headers, 200, NOW), &format!("app{i}"), NOW);
        }
        assert_eq!(v.apps.len(), MAX_APPS);
        assert!(v.apps.contains_key("app3"), "the spent one is kept");
        assert!(!v.apps.contains_key(&format!("app{}", MAX_APPS + 4)));
    }

    #[test]
    fn the_admin_view() {
        assert_eq!(QuotaView::default().to_api(100, NOW), None);
        let mut v = QuotaView::default();
        v.learn(&observe(&keap_headers(50, 0), 200, NOW), "ab123", NOW);
        let api = v.to_api(100, NOW).unwrap();
        assert_eq!(api.as_of, "2026-12-01T08:00:10Z");
        let q = api.quota.unwrap();
        assert_eq!((q.limit, q.available), (150_000, 50));
        assert_eq!(q.resets_at.as_deref(), Some("2026-12-02T00:00:00Z"));
        assert_eq!(api.throttle.unwrap().available, 0);
        assert_eq!(api.reserve, 100);
        assert_eq!(api.paused_until.as_deref(), Some("2026-12-02T00:00:00Z"));
        assert!(api.app_throttles.is_empty());
    }

    #[test]
    fn syncs_are_spaced_unless_there_is_news() {
        assert!(!sync_due(NOW, false, NOW + SYNC_EVERY_MS - 1));
        assert!(sync_due(NOW, false, NOW + SYNC_EVERY_MS));
        assert!(sync_due(NOW, true, NOW));
        assert!(sync_due(0, false, NOW));
    }

    #[test]
    fn a_deferred_report_waits_until_a_regular_exchange_would_be_due() {
        assert_eq!(deferred_report_wait_ms(NOW, NOW), SYNC_EVERY_MS);
        assert_eq!(deferred_report_wait_ms(NOW, NOW + 500), SYNC_EVERY_MS - 500);
        assert_eq!(
            deferred_report_wait_ms(NOW, NOW + SYNC_EVERY_MS + 1),
            0,
            "already due"
        );
        assert_eq!(deferred_report_wait_ms(0, NOW), 0, "never traded: at once");
    }
}
