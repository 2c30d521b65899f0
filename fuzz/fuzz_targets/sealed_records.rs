//! What comes back from storage: sealed blobs, records and metadata as JSON, and `TOKEN_KEYS`.
//! Opening must refuse anything it did not seal itself, without panicking.
#![no_main]
use keaplink_core::connection::{ConnectionKey, ConnectionMeta, ConnectionRecord};
use keaplink_core::flow::PendingLink;
use keaplink_core::ids::{PartnerId, UserId};
use keaplink_core::keap::KeapApp;
use keaplink_core::partner::PartnerRecord;
use keaplink_core::seal::Keyring;
use libfuzzer_sys::fuzz_target;

const KEYS: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fuzz_target!(|data: &[u8]| {
    let keys = Keyring::parse(KEYS).unwrap();
    let _ = Keyring::parse(&String::from_utf8_lossy(data));
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(
            keys.open("c/acme/u/app", text).is_err(),
            "opened a blob it never sealed"
        );
        let _ = keys.needs_reseal(text);
    }
    if let Ok(r) = serde_json::from_slice::<ConnectionRecord>(data) {
        // Typed ids: a record that deserialized holds ids that parse again as themselves.
        assert_eq!(
            PartnerId::parse(r.partner.as_str()).as_ref(),
            Some(&r.partner)
        );
        assert_eq!(UserId::parse(r.user.as_str()).as_ref(), Some(&r.user));
        assert_eq!(
            KeapApp::parse(r.keap_app.as_str()).as_ref(),
            Some(&r.keap_app)
        );
        // The committed seed was sealed with KEYS for its own key, so it may open there; under
        // any other connection's key, sealed tokens never open (they are bound to their key).
        let key = ConnectionKey::new(&r.partner, &r.user, &r.keap_app);
        let _ = r.open_tokens(&keys, &key);
        let someone = UserId::parse("someone-else").unwrap();
        if r.user != someone {
            let other = ConnectionKey::new(&r.partner, &someone, &r.keap_app);
            assert!(
                r.open_tokens(&keys, &other).is_err(),
                "opened tokens under another connection's key"
            );
        }
        let _ = r.reconnect_before();
        let _ = r.metadata();
        let _ = r.to_api();
    }
    if let Ok(m) = serde_json::from_slice::<ConnectionMeta>(data) {
        let _ = m.to_api();
    }
    let _ = serde_json::from_slice::<PendingLink>(data);
    if let Ok(p) = serde_json::from_slice::<PartnerRecord>(data) {
        assert!(p.session_secret(&keys).is_err());
        let _ = p.view();
    }
});
