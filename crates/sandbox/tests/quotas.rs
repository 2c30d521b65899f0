//! Quotas as Keap reports and enforces them: the headers on every REST and token answer, one
//! client quota shared by both, a tenant throttle per app, 429 with Keap's fault once a window
//! is spent, and recovery when the (shortened) window ends.
//!
//! Timing: windows set through `/__sandbox/quota` start when set and last 2 s here. The calls
//! that must land inside one window are in-process (microseconds each), so 2 s leaves a margin
//! of three orders of magnitude even on a loaded 2-core machine; the waits for a window to end
//! sleep until its reported reset plus half a second.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WINDOW_MS: u64 = 2_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn sleep_until(resets_at_ms: u64) {
    let wait = resets_at_ms.saturating_sub(now_ms()) + 500;
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

async fn set_quota(app: &axum::Router, body: &str) -> Value {
    let a = control(app, "quota", Some(body)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.json()
}

#[tokio::test]
async fn every_rest_and_token_answer_reports_the_quotas() {
    let app = app();
    // The default minute windows are aligned to the clock's minutes; restarted now (same
    // length), the counts below cannot straddle a boundary.
    set_quota(&app, r#"{"product_throttle":{},"tenant_throttle":{}}"#).await;
    let t = link(&app, "ann@ab123.example", None).await; // one token call
    let a = get(&app, "/crm/rest/v2/contacts", &t.access).await;
    for (name, want) in [
        ("x-keap-product-quota-limit", "150000"),
        ("x-keap-product-quota-time-unit", "day"),
        ("x-keap-product-quota-interval", "1"),
        ("x-keap-product-quota-used", "2"),
        ("x-keap-product-quota-available", "149998"),
        ("x-keap-product-throttle-limit", "1500"),
        ("x-keap-product-throttle-time-unit", "minute"),
        ("x-keap-product-throttle-interval", "1"),
        ("x-keap-product-throttle-used", "2"),
        ("x-keap-product-throttle-available", "1498"),
        ("x-keap-tenant-throttle-limit", "10000"),
        ("x-keap-tenant-throttle-time-unit", "minute"),
        ("x-keap-tenant-throttle-interval", "1"),
        ("x-keap-tenant-throttle-used", "1"),
        ("x-keap-tenant-throttle-available", "9999"),
        ("x-keap-tenant-id", "ab123"),
    ] {
        assert_eq!(a.header(name), Some(want), "{name}");
    }
    // The day bucket empties at the next 00:00 UTC, in epoch milliseconds.
    let expiry = a.num("x-keap-product-quota-expiry-time");
    let day = 86_400_000;
    assert_eq!(expiry % day, 0);
    assert!(expiry > now_ms() && expiry <= now_ms() + day);

    // Errors are answers too.
    let bad = api(
        &app,
        Method::POST,
        "/crm/rest/v1/contacts",
        Some(&t.access),
        Some("{"),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.num("x-keap-product-quota-used"), 3);

    // The token endpoint spends the same client quota, and reports no tenant.
    let r = refresh(&app, &t.refresh).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.num("x-keap-product-quota-used"), 4);
    assert_eq!(r.num("x-keap-product-throttle-used"), 4);
    assert!(r.header("x-keap-tenant-throttle-used").is_none());
    assert!(r.header("x-keap-tenant-id").is_none());
    let dead = refresh(&app, &t.refresh).await; // rotated: refused, still counted
    assert_eq!(dead.status, StatusCode::BAD_REQUEST);
    assert_eq!(dead.num("x-keap-product-quota-used"), 5);

    let q = stats(&app).await["quota"].clone();
    assert_eq!(q["product_quota"]["used"], 5);
    assert_eq!(q["product_throttle"]["available"], 1495);
    assert_eq!(q["tenant_throttle"]["apps"]["ab123"]["used"], 2);
}

#[tokio::test]
async fn the_minute_throttle_refuses_when_spent_and_recovers_after_its_window() {
    let app = app();
    let t = link(&app, "bob@cd456.example", None).await;
    let set = set_quota(
        &app,
        &format!(r#"{{"product_throttle":{{"limit":2,"window_ms":{WINDOW_MS}}}}}"#),
    )
    .await;
    assert_eq!(set["product_throttle"]["used"], 0);
    let resets = set["product_throttle"]["resets_at_ms"].as_u64().unwrap();

    for expect_used in [1, 2] {
        let a = get(&app, "/crm/rest/v1/contacts", &t.access).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.num("x-keap-product-throttle-used"), expect_used);
    }
    let refused = get(&app, "/crm/rest/v1/contacts", &t.access).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_body(&refused, QUOTA_FAULT);
    assert_eq!(refused.num("x-keap-product-throttle-available"), 0);
    assert_eq!(
        refused.num("x-keap-product-throttle-used"),
        2,
        "a refused call is not counted"
    );
    assert_eq!(refused.header("x-keap-tenant-id"), Some("cd456"));
    // The token endpoint shares the client's throttle.
    let r = refresh(&app, &t.refresh).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_body(&r, QUOTA_FAULT);
    assert_eq!(r.num("x-keap-product-throttle-available"), 0);
    // ...without spending the refresh token.
    assert_eq!(stats(&app).await["live_refresh_tokens"], 1);

    sleep_until(resets).await;
    let a = get(&app, "/crm/rest/v1/contacts", &t.access).await;
    assert_eq!(a.status, StatusCode::OK, "a new window");
    assert_eq!(a.num("x-keap-product-throttle-used"), 1);
    assert_eq!(refresh(&app, &t.refresh).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_day_quota_set_near_exhaustion_runs_out_and_resets_when_it_says() {
    let app = app();
    let t = link(&app, "cat@ef789.example", None).await;
    let set = set_quota(
        &app,
        &format!(r#"{{"product_quota":{{"limit":5,"used":4,"window_ms":{WINDOW_MS}}}}}"#),
    )
    .await;
    assert_eq!(set["product_quota"]["available"], 1);
    let resets = set["product_quota"]["resets_at_ms"].as_u64().unwrap();

    let last = get(&app, "/crm/rest/v2/contacts", &t.access).await;
    assert_eq!(last.status, StatusCode::OK);
    assert_eq!(last.num("x-keap-product-quota-available"), 0);
    assert_eq!(last.num("x-keap-product-quota-expiry-time"), resets);
    let refused = get(&app, "/crm/rest/v2/contacts", &t.access).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_body(&refused, QUOTA_FAULT);
    assert_eq!(refused.num("x-keap-product-quota-expiry-time"), resets);
    assert_eq!(
        refused.header("x-keap-product-quota-time-unit"),
        Some("day")
    );

    sleep_until(resets).await;
    let a = get(&app, "/crm/rest/v2/contacts", &t.access).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.num("x-keap-product-quota-used"), 1);
    assert_eq!(
        a.num("x-keap-product-quota-expiry-time"),
        resets + WINDOW_MS,
        "windows follow each other"
    );
}

#[tokio::test]
async fn the_tenant_throttle_is_per_app() {
    let app = app();
    let ann = link(&app, "ann@ab123.example", None).await;
    let amy = link(&app, "amy@ab123.example", None).await;
    let bob = link(&app, "bob@cd456.example", None).await;
    set_quota(
        &app,
        r#"{"tenant_throttle":{"limit":3,"used":{"ab123":2}}}"#,
    )
    .await;
    assert_eq!(
        get(&app, "/crm/rest/v2/contacts", &ann.access).await.status,
        StatusCode::OK
    );
    // Another user of the same app shares the tenant's window.
    let refused = get(&app, "/crm/rest/v2/contacts", &amy.access).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_body(&refused, QUOTA_FAULT);
    assert_eq!(refused.num("x-keap-tenant-throttle-available"), 0);
    assert!(refused.num("x-keap-product-throttle-available") > 0);
    // Another app does not.
    let ok = get(&app, "/crm/rest/v2/contacts", &bob.access).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.num("x-keap-tenant-throttle-used"), 1);
    assert_eq!(ok.num("x-keap-tenant-throttle-limit"), 3);
    // Token calls are the client's, not a tenant's: still allowed.
    assert_eq!(refresh(&app, &ann.refresh).await.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_quota_settings_are_refused_and_reset_restores_keaps_limits() {
    let app = app();
    for body in [
        r#"{"product_quota":{"window_ms":0}}"#,
        r#"{"product_throttle":{"limit":-1}}"#,
        r#"{"tenant_throttle":{"used":{"zz999":1}}}"#,
        r#"{"product_quota":{"limt":5}}"#,
        r#"{"day":{}}"#,
        "not json",
    ] {
        let a = control(&app, "quota", Some(body)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(a.json()["error"].is_string(), "{body}");
    }
    set_quota(&app, r#"{"product_quota":{"limit":1,"used":1}}"#).await;
    let t = control(&app, "reset", Some("{}")).await;
    assert_eq!(t.status, StatusCode::NO_CONTENT);
    let q = stats(&app).await["quota"].clone();
    assert_eq!(q["product_quota"]["limit"], 150_000);
    assert_eq!(q["product_quota"]["window_ms"], 86_400_000);
    assert_eq!(q["product_quota"]["used"], 0);
    assert_eq!(q["product_throttle"]["limit"], 1500);
    assert_eq!(q["tenant_throttle"]["limit"], 10_000);
    assert_eq!(q["tenant_throttle"]["window_ms"], 60_000);
}
