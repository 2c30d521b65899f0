//! What releases before JSON text stored (workers-rs's `Storage::put` and `Queue::send`, through
//! serde-wasm-bindgen's default encoding: structs as objects, maps as `Map`s, `None` as
//! `undefined`) still reads as the same value, and what this release stores reads back as it was.
//! In Node, through wasm-bindgen-test-runner (scripts/test).
#![cfg(target_arch = "wasm32")]

use keaplink_api::ConnectionEventKind;
use keaplink_core::connection::{ConnectionRecord, FailureKind, RecordedFailure};
use keaplink_core::partner::PartnerRecord;
use keaplink_core::timeline::Timeline;
use keaplink_js_json::{from_js, legacy_json, to_js};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

/// `value` as an earlier release stored it reads back as the same JSON; so does what this
/// release stores.
fn reads_back<T: Serialize + DeserializeOwned>(value: &T) {
    let json = serde_json::to_string(value).unwrap();
    let old = serde_wasm_bindgen::to_value(value).unwrap();
    assert!(
        !old.is_string(),
        "the earlier encoding is a JS value, not text"
    );
    let back: T = from_js(&old).unwrap_or_else(|e| panic!("{e}: {:?}", legacy_json(&old)));
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
    let new = to_js(value).unwrap();
    assert_eq!(new.as_string().as_deref(), Some(json.as_str()));
    let back: T = from_js(&new).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
}

fn connection() -> ConnectionRecord {
    // As the first release wrote it, then with the later optional fields set.
    let mut rec: ConnectionRecord = serde_json::from_str(
        r#"{"id":"AwMDAwMDAwMDAwMDAwMDAw","partner":"acme","user":"u1","keap_app":"ab123","keap_email":"ann@example.com","keap_name":"Ann \"the baker\" Ø","status":"active","connected_at":1000,"refreshed_at":null,"access_expires_at":87400,"refresh_issued_at":1000,"last_error":null,"failures":0,"tokens":"v1.sealed"}"#,
    )
    .unwrap();
    rec.keap_sub = Some("17".into());
    rec.keap_app_name = Some("Ann's Bakery".into());
    rec.refreshed_at = Some(2000);
    rec.last_error = Some(RecordedFailure {
        kind: FailureKind::KeapTimeout,
        at: 1_900_000_000,
    });
    rec.failures = 2;
    rec
}

#[wasm_bindgen_test]
fn a_connection_record_stored_as_a_js_object_reads_as_it_was() {
    reads_back(&connection());
    // And as the first release wrote it: optional fields absent, nulls present.
    let first: ConnectionRecord = serde_json::from_str(
        &serde_json::to_string(&connection())
            .unwrap()
            .replace(r#","keap_sub":"17""#, ""),
    )
    .unwrap();
    reads_back(&first);
}

#[wasm_bindgen_test]
fn a_partner_record_and_a_timeline_read_as_they_were() {
    let partner: PartnerRecord = serde_json::from_str(
        r#"{"partner_id":"acme","name":"Acme","allowed_origins":["https://app.acme.example"],"return_urls":[],"api_key_hash":"h","session_secret":"v1.s","webhook_url":null,"created_at":1,"updated_at":2,"webhook_repair_links":true}"#,
    )
    .unwrap();
    reads_back(&partner);
    let mut timeline = Timeline::default();
    timeline.push(1000, ConnectionEventKind::Created, None, None);
    timeline.push(
        2000,
        ConnectionEventKind::RefreshFailed,
        Some("keap_timeout"),
        Some("Keap did not answer in time.\n(10 s)".into()),
    );
    reads_back(&timeline);
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Refresh { key: String },
    Sweep,
}

#[derive(Debug, Serialize, Deserialize)]
struct Shapes {
    text: String,
    /// The largest integer a JS number keeps exactly (serde-wasm-bindgen refused larger ones,
    /// so no earlier release stored one).
    large: u64,
    negative: i64,
    float: f64,
    bytes: Vec<u8>,
    absent: Option<u32>,
    present: Option<u32>,
    by_name: HashMap<String, u32>,
    /// Hourly buckets are kept by number (stats): a `Map` with number keys.
    by_hour: BTreeMap<i64, u32>,
    jobs: Vec<Kind>,
    pair: (u8, String),
}

#[wasm_bindgen_test]
fn every_shape_we_store_reads_back() {
    reads_back(&Shapes {
        text: "quote \" backslash \\ newline \n control \u{1} line sep \u{2028} é 😀".into(),
        large: (1 << 53) - 1,
        negative: -5,
        float: 0.1,
        bytes: vec![0, 1, 255],
        absent: None,
        present: Some(3),
        by_name: [("a".to_owned(), 1)].into_iter().collect(),
        by_hour: [(-1, 1), (493_000, 2)].into_iter().collect(),
        jobs: vec![Kind::Refresh { key: "k".into() }, Kind::Sweep],
        pair: (1, "z".into()),
    });
}

#[wasm_bindgen_test]
fn what_is_not_a_stored_value_is_an_error_not_a_panic() {
    // A cycle (as no value of ours is) stops at the depth limit.
    let cyclic = js_sys::Object::new();
    js_sys::Reflect::set(&cyclic, &JsValue::from_str("me"), &cyclic).unwrap();
    assert!(from_js::<Shapes>(&cyclic.into()).is_err());
    // A value of another shape says where, without quoting it.
    let other = serde_wasm_bindgen::to_value(&("ann@example.com", 1)).unwrap();
    let err = from_js::<Shapes>(&other).unwrap_err();
    assert!(!err.contains("ann@example.com"), "{err}");
}
