//! Whatever Keap (or something in its place) answers to the token and userinfo calls, and the
//! scope it reports: a grant, an identity or a classified failure, never a panic.
#![no_main]
use keaplink_core::keap::{self, KeapApp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let statuses = [200u16, 201, 400, 401, 403, 404, 429, 500, 502, 503];
    let status = statuses[usize::from(selector) % statuses.len()];
    match keap::parse_token_response(status, body) {
        Ok(grant) => assert!(
            (200..300).contains(&status),
            "grant from status {status}: {grant:?}"
        ),
        Err(f) => {
            let e = f.api_error();
            assert!(e.status() >= 400);
        }
    }
    let _ = keap::parse_userinfo(status, body);
    if let Ok(scope) = std::str::from_utf8(body) {
        if let Some(app) = KeapApp::from_scope(scope) {
            assert!(KeapApp::parse(app.as_str()).is_some());
        }
    }
});
