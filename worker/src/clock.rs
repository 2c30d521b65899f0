//! The Worker's clock: the one place that reads the runtime's time. (Inside a request, Workers
//! advance it only across I/O, which is all the precision keaplink needs.)

use keaplink_core::clock::UnixTime;

/// Milliseconds since the unix epoch.
pub fn now_ms() -> u64 {
    // `Date.now()`: one call into the runtime, where workers-rs's `Date::now()` makes a `Date`
    // and then asks it (two).
    worker::js_sys::Date::now() as u64
}

/// Seconds since the unix epoch: what `keaplink_core` takes as `now`.
pub fn unix_now() -> UnixTime {
    (now_ms() / 1000) as UnixTime
}
