//! The OAuth callback's query string and the state in it.
#![no_main]
use keaplink_core::flow::{self, StateToken};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let _ = flow::parse_callback_query(query);
    if let Some(s) = StateToken::parse(query) {
        assert_eq!(s.as_str().len(), 43);
        assert!(s.storage_key().starts_with("s/"));
    }
});
