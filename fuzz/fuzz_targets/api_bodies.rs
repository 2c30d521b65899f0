//! Request bodies and the ids, origins and keys inside them and in paths.
#![no_main]
use keaplink_api::{ConnectRequest, PartnerUpsert, TokenRequest};
use keaplink_core::body::{decode, MAX_BODY_BYTES};
use keaplink_core::connection::ConnectionKey;
use keaplink_core::ids::{ConnectionId, PartnerId, UserId};
use keaplink_core::keap::KeapApp;
use keaplink_core::partner::{api_key_partner, normalize_origin};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = decode::<ConnectRequest>(data, Some(ConnectRequest::default())) {
        assert!(e.message.len() < 300, "{}", e.message);
    }
    if let Ok(t) = decode::<TokenRequest>(data, None) {
        let _ = UserId::parse(&t.user);
        if let Some(app) = t.keap_app.as_deref() {
            let _ = KeapApp::parse(app);
        }
    }
    if let Ok(p) = decode::<PartnerUpsert>(data, None) {
        for o in &p.allowed_origins {
            if let Some(n) = normalize_origin(o) {
                assert_eq!(normalize_origin(&n).as_deref(), Some(n.as_str()));
            }
        }
    }
    assert!(data.len() <= MAX_BODY_BYTES || decode::<TokenRequest>(data, None).is_err());
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(p) = PartnerId::parse(text) {
        assert!(!p.as_str().contains('/'));
    }
    if let Some(u) = UserId::parse(text) {
        let _ = u.storage_key();
    }
    let _ = ConnectionId::parse(text);
    if let Some(k) = ConnectionKey::parse(text) {
        assert_eq!(
            ConnectionKey::parse(k.as_str()).map(|k| k.as_str().to_owned()),
            Some(k.as_str().to_owned())
        );
    }
    let _ = api_key_partner(text);
    let _ = normalize_origin(text);
});
