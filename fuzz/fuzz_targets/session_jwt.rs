//! Any text presented as a session JWT: finding the issuer and verifying never panic.
#![no_main]
use keaplink_core::ids::PartnerId;
use keaplink_core::session;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let _ = session::unverified_issuer(token);
    let partner = PartnerId::parse("acme").unwrap();
    // A token that verifies from random bytes would be a forgery.
    assert!(session::verify(token, &partner, b"fuzz-session-secret", 1_800_000_000).is_err());
});
