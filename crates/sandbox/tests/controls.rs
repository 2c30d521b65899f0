//! The `/__sandbox/` controls added for the REST API: access-only revocation, revocation on
//! refresh, injected API faults, per-route counts and the request log (which must never hold a
//! token), and reset.

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn revoke_access_kills_access_tokens_and_a_refresh_heals() {
    let app = app();
    let ann = link(&app, "ann@ab123.example", None).await;
    let bob = link(&app, "bob@cd456.example", None).await;
    let a = control(
        &app,
        "revoke-access",
        Some(r#"{"email":"ann@ab123.example"}"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["revoked"], 1);
    let dead = get(&app, "/crm/rest/v2/contacts", &ann.access).await;
    assert_eq!(dead.status, StatusCode::UNAUTHORIZED);
    assert_body(&dead, INVALID_TOKEN);
    assert_eq!(
        get(&app, "/crm/rest/v2/contacts", &bob.access).await.status,
        StatusCode::OK,
        "Bob is untouched"
    );
    // The refresh token lives on; what it brings works.
    let r = refresh(&app, &ann.refresh).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let fresh = r.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        get(&app, "/crm/rest/v2/contacts", &fresh).await.status,
        StatusCode::OK
    );

    // Everyone's, with no email (an empty body too).
    let a = control(&app, "revoke-access", Some("")).await;
    assert_eq!(a.json()["revoked"], 2);
    for t in [&fresh, &bob.access] {
        assert_eq!(
            get(&app, "/crm/rest/v2/contacts", t).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(refresh(&app, &bob.refresh).await.status, StatusCode::OK);

    let a = control(
        &app,
        "revoke-access",
        Some(r#"{"email":"nobody@x.example"}"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = control(
        &app,
        "revoke-access",
        Some(r#"{"mail":"ann@ab123.example"}"#),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::BAD_REQUEST,
        "a typo is an error, not a revoke-all"
    );
}

#[tokio::test]
async fn revoke_access_on_refresh_is_off_until_configured() {
    let app = app();
    let t = link(&app, "ann@ab123.example", None).await;
    let r = refresh(&app, &t.refresh).await.json();
    assert_eq!(
        get(&app, "/crm/rest/v1/contacts", &t.access).await.status,
        StatusCode::OK,
        "off by default: the old token lives"
    );

    let a = control(&app, "config", Some(r#"{"revoke_access_on_refresh":true}"#)).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let second = r["access_token"].as_str().unwrap().to_owned();
    let r2 = refresh(&app, r["refresh_token"].as_str().unwrap())
        .await
        .json();
    let third = r2["access_token"].as_str().unwrap();
    for old in [&t.access, &second] {
        let a = get(&app, "/crm/rest/v1/contacts", old).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_body(&a, INVALID_TOKEN);
    }
    assert_eq!(
        get(&app, "/crm/rest/v1/contacts", third).await.status,
        StatusCode::OK
    );

    // Only that user's (and app's) tokens.
    let dan_deli = link(&app, "dan@gh012.example", Some("gh012")).await;
    let dan_dive = link(&app, "dan@gh012.example", Some("ij345")).await;
    assert_eq!(
        refresh(&app, &dan_deli.refresh).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/crm/rest/v1/contacts", &dan_deli.access)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&app, "/crm/rest/v1/contacts", &dan_dive.access)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/crm/rest/v1/contacts", third).await.status,
        StatusCode::OK
    );

    // Other settings are left as they are; unknown ones are refused.
    let a = control(&app, "config", Some(r#"{"expires_in":5}"#)).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let r3 = refresh(&app, r2["refresh_token"].as_str().unwrap())
        .await
        .json();
    assert_eq!(r3["expires_in"], 5);
    assert_eq!(
        get(&app, "/crm/rest/v1/contacts", third).await.status,
        StatusCode::UNAUTHORIZED,
        "still revoking"
    );
    let a = control(&app, "config", Some(r#"{"revoke_on_refresh":true}"#)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // Reset turns it off again.
    control(&app, "reset", Some("{}")).await;
    let r4 = refresh(&app, r3["refresh_token"].as_str().unwrap())
        .await
        .json();
    assert_eq!(r4["expires_in"], 3600, "reset restores the lifetime");
    assert_eq!(
        get(
            &app,
            "/crm/rest/v1/contacts",
            r3["access_token"].as_str().unwrap()
        )
        .await
        .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn api_faults_apply_to_the_next_rest_calls_in_order() {
    let app = app();
    let t = link(&app, "cat@ef789.example", None).await;
    for body in [
        r#"{"kind":"server_error"}"#,
        r#"{"kind":"unauthorized"}"#,
        r#"{"kind":"throttle","count":1}"#,
        r#"{"kind":"hang","hang_ms":300}"#,
    ] {
        let a = control(&app, "api-faults", Some(body)).await;
        assert_eq!(a.status, StatusCode::OK, "{body}: {}", a.text);
    }
    assert_eq!(stats(&app).await["api_faults_queued"], 4);
    // A dead token is refused before any fault is used.
    assert_eq!(
        get(&app, "/crm/rest/v2/contacts", "dead").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(stats(&app).await["api_faults_queued"], 4);

    let a = get(&app, "/crm/rest/v2/contacts", &t.access).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(a.header("x-keap-product-quota-used").is_some());
    let a = get(&app, "/crm/rest/v2/contacts", &t.access).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_body(&a, INVALID_TOKEN);
    let a = get(&app, "/crm/rest/v2/contacts", &t.access).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_body(&a, QUOTA_FAULT);
    assert_eq!(a.num("x-keap-product-throttle-available"), 0);
    let started = Instant::now();
    let a = get(&app, "/crm/rest/v2/contacts", &t.access).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "it hung first"
    );
    let a = get(&app, "/crm/rest/v2/contacts", &t.access).await;
    assert_eq!(a.status, StatusCode::OK, "the queue is spent");
    // Token calls never see API faults.
    control(&app, "api-faults", Some(r#"{"kind":"server_error"}"#)).await;
    assert_eq!(refresh(&app, &t.refresh).await.status, StatusCode::OK);
    assert_eq!(stats(&app).await["api_faults_queued"], 1);

    for body in [
        r#"{"kind":"explode"}"#,
        r#"{"count":1}"#,
        r#"{"kind":"hang","hang":5}"#,
    ] {
        let a = control(&app, "api-faults", Some(body)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(a.json()["error"].is_string());
    }
}

#[tokio::test]
async fn a_wrong_tenant_fault_makes_v2_userinfo_contradict_the_token_once() {
    let app = app();
    let t = link(&app, "ann@ab123.example", None).await;
    let info = "/crm/rest/v2/oauth/connect/userinfo";
    assert_eq!(
        get(&app, info, &t.access).await.json()["tenant_id"],
        "ab123"
    );
    let a = control(&app, "api-faults", Some(r#"{"kind":"wrong_tenant"}"#)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = get(&app, info, &t.access).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.json()["tenant_id"],
        "zz999",
        "another tenant than the token's app"
    );
    assert_eq!(
        a.json()["email"],
        "ann@ab123.example",
        "the rest of the answer is as ever"
    );
    assert_eq!(
        get(&app, info, &t.access).await.json()["tenant_id"],
        "ab123",
        "once"
    );
}

#[tokio::test]
async fn stats_count_rest_calls_by_route_pattern() {
    let app = app();
    let t = link(&app, "ann@ab123.example", None).await;
    get(&app, "/crm/rest/v1/contacts/101", &t.access).await;
    get(&app, "/crm/rest/v1/contacts/102", &t.access).await;
    get(&app, "/crm/rest/v1/contacts/101", "dead").await; // refused calls reached "Keap" too
    get(&app, "/crm/rest/v1/oauth/connect/userinfo", &t.access).await;
    api(
        &app,
        Method::DELETE,
        "/crm/rest/v2/contacts/101",
        Some(&t.access),
        None,
    )
    .await;
    let s = stats(&app).await;
    assert_eq!(s["api_calls"]["GET /crm/rest/v1/contacts/{id}"], 3);
    assert_eq!(s["api_calls"]["GET /crm/rest/v1/oauth/connect/userinfo"], 1);
    assert_eq!(s["api_calls"]["DELETE /crm/rest/v2/contacts/{id}"], 1);
    assert_eq!(s["api_calls_total"], 5);
    assert_eq!(s["calls"]["userinfo"], 1, "the old count is kept");
    assert_eq!(s["calls"]["token_code"], 1);
}

#[tokio::test]
async fn the_api_log_names_headers_and_never_holds_a_token() {
    let app = app();
    let t = link(&app, "bob@cd456.example", None).await;
    let body = r#"{"email_addresses":[{"email":"log@mail.example"}]}"#;
    let req = Request::post(format!(
        "/crm/rest/v1/contacts?access_token={}&x=1",
        t.access
    ))
    .header(header::AUTHORIZATION, format!("Bearer {}", t.access))
    .header(header::CONTENT_TYPE, "application/json")
    .header("x-request-id", "r-1")
    .body(Body::from(body))
    .unwrap();
    assert_eq!(send(&app, req).await.status, StatusCode::CREATED);
    get(&app, "/crm/rest/v2/contacts", &t.refresh).await; // a refresh token, refused

    let log = control(&app, "api-log", None).await;
    assert_eq!(log.status, StatusCode::OK);
    for secret in [&t.access, &t.refresh] {
        assert!(
            !log.text.contains(secret.as_str()),
            "the log holds a token: {}",
            log.text
        );
    }
    let entries = log.json()["requests"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 2);
    let first = &entries[0];
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], "/crm/rest/v1/contacts");
    assert_eq!(first["query"], "access_token=[hidden]&x=1");
    assert_eq!(first["authorized"], true);
    assert_eq!(first["body_bytes"], body.len());
    let names: Vec<&str> = first["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    for h in ["authorization", "content-type", "x-request-id"] {
        assert!(names.contains(&h), "{h} in {names:?}");
    }
    assert_eq!(entries[1]["authorized"], false);
    assert_eq!(entries[1]["body_bytes"], 0);
}

#[tokio::test]
async fn the_api_log_keeps_the_last_200_and_reset_clears_it_and_restores_contacts() {
    let app = app();
    let t = link(&app, "ann@ab123.example", None).await;
    for i in 0..205 {
        get(
            &app,
            &format!("/crm/rest/v1/contacts?offset={i}"),
            &t.access,
        )
        .await;
    }
    let entries = control(&app, "api-log", None).await.json()["requests"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(entries.len(), 200);
    assert_eq!(entries[0]["query"], "offset=5", "the oldest went first");
    assert_eq!(entries[199]["query"], "offset=204");

    api(
        &app,
        Method::DELETE,
        "/crm/rest/v2/contacts/101",
        Some(&t.access),
        None,
    )
    .await;
    assert_eq!(
        get(&app, "/crm/rest/v1/contacts", &t.access).await.json()["count"],
        2
    );
    control(&app, "reset", Some("{}")).await;
    assert_eq!(
        control(&app, "api-log", None).await.json()["requests"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(stats(&app).await["api_calls_total"], 0);
    assert_eq!(
        get(&app, "/crm/rest/v1/contacts", &t.access).await.json()["count"],
        3,
        "seeded contacts are back; the token still works"
    );
}

#[tokio::test]
async fn an_api_gate_holds_calls_until_all_have_arrived() {
    let app = app();
    let t = link(&app, "ann@ab123.example", None).await;
    let a = control(&app, "api-gate", Some(r#"{"count":2,"timeout_ms":20000}"#)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(stats(&app).await["api_gate_waiting_for"], 2);
    let first = tokio::spawn({
        let (app, access) = (app.clone(), t.access.clone());
        async move { get(&app, "/crm/rest/v2/contacts", &access).await.status }
    });
    // Only a lower bound on time: the first call cannot be answered before the second arrives
    // (the gate's 20 s deadline is far off), however slow the machine.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!first.is_finished(), "held until the second call arrives");
    assert_eq!(stats(&app).await["api_gate_waiting_for"], 1);
    let second = get(&app, "/crm/rest/v2/contacts", &t.access).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    assert!(stats(&app).await["api_gate_waiting_for"].is_null(), "spent");

    // Callers that never come: those waiting go on at the deadline.
    control(&app, "api-gate", Some(r#"{"count":5,"timeout_ms":300}"#)).await;
    let started = Instant::now();
    let a = get(&app, "/crm/rest/v2/contacts", &t.access).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(stats(&app).await["api_gate_waiting_for"].is_null());
    let started = Instant::now();
    assert_eq!(
        get(&app, "/crm/rest/v2/contacts", &t.access).await.status,
        StatusCode::OK
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no gate after it opened"
    );

    for body in [r#"{"count":-1}"#, r#"{"count":20000}"#, r#"{"cnt":2}"#] {
        let a = control(&app, "api-gate", Some(body)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}");
    }
}

/// Tokens "issued elsewhere" are Keap's own token answers for that user and app: live, and
/// rotated (the old one dead) by the first refresh, like any other.
#[tokio::test]
async fn mint_hands_out_live_tokens_as_another_integration_holds_them() {
    let app = app();
    let a = control(
        &app,
        "mint",
        Some(r#"{"email":"dan@gh012.example","app":"ij345","count":2}"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let tokens = a.json()["tokens"].as_array().unwrap().clone();
    assert_eq!(tokens.len(), 2);
    let t = &tokens[0];
    assert_eq!(t["scope"], "full|ij345.infusionsoft.com");
    assert_eq!(t["keap_app"], "ij345");
    assert!(t["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_ne!(t["refresh_token"], tokens[1]["refresh_token"]);
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(
        get(&app, "/crm/rest/v2/contacts", access).await.status,
        StatusCode::OK
    );
    let old = t["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(&app, old).await.status, StatusCode::OK);
    assert_eq!(
        refresh(&app, old).await.status,
        StatusCode::BAD_REQUEST,
        "rotated: the old one is dead"
    );
    for bad in [
        r#"{"email":"nobody@x.example"}"#,
        r#"{"email":"ann@ab123.example","app":"cd456"}"#,
        r#"{"email":"ann@ab123.example","count":0}"#,
    ] {
        assert_eq!(
            control(&app, "mint", Some(bad)).await.status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}
