//! Correctly signed HS256 tokens around fuzzed header and claims JSON: whatever the claims say,
//! verification never panics, and what it accepts obeys the contract.
#![no_main]
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use keaplink_core::ids::PartnerId;
use keaplink_core::session::{self, MAX_CLOCK_SKEW_SECS, MAX_SESSION_SECS};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: &[u8] = b"fuzz-session-secret";
const NOW: i64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    // header JSON, 0x00, claims JSON; without a separator the header is HS256's.
    let (header, claims) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (br#"{"alg":"HS256","typ":"JWT"}"#.as_slice(), data),
    };
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(signing_input.as_bytes());
    let token = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    let partner = PartnerId::parse("acme").unwrap();
    let _ = session::unverified_issuer(&token);
    if let Ok(c) = session::verify(&token, &partner, SECRET, NOW) {
        // serde_json skips UTF-8 checks inside ignored fields, so a signed token may carry
        // invalid UTF-8 in a claim nobody reads (found by this target): read it lossily.
        let v: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(claims)).unwrap();
        assert_eq!(c.partner, partner);
        assert_eq!(v["aud"], "keaplink");
        assert!(c.expires_at > NOW, "expired token accepted");
        let iat = v["iat"].as_i64().unwrap_or(NOW);
        assert!(iat <= NOW + MAX_CLOCK_SKEW_SECS, "future iat accepted");
        assert!(
            c.expires_at - iat <= MAX_SESSION_SECS,
            "too long-lived accepted"
        );
        let h: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(header)).unwrap();
        assert_eq!(h["alg"], "HS256");
    }
});
