//! Keap's REST API in the sandbox: only a live bearer token gets in, every answer belongs to the
//! token's app, and v1 and v2 keep their own shapes and error bodies.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::{json, Value};

const GETS: &[&str] = &[
    "/crm/rest/v1/oauth/connect/userinfo",
    "/crm/rest/v1/contacts",
    "/crm/rest/v1/contacts/101",
    "/crm/rest/v2/oauth/connect/userinfo",
    "/crm/rest/v2/businessProfile",
    "/crm/rest/v2/contacts",
    "/crm/rest/v2/contacts/101",
];

#[tokio::test]
async fn only_a_live_bearer_token_gets_in() {
    let app = app();
    let ann = link(&app, "ann@ab123.example", None).await;
    for path in GETS {
        let a = get(&app, path, &ann.access).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.text);
        assert_eq!(a.header("x-keap-tenant-id"), Some("ab123"), "{path}");
        for (token, what) in [(None, "no token"), (Some("nope"), "an unknown token")] {
            let a = api(&app, Method::GET, path, token, None).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path} with {what}");
            assert_body(&a, INVALID_TOKEN);
            // Refused before any quota: the gateway cannot tell whose call it was.
            assert!(a.header("x-keap-product-quota-used").is_none(), "{path}");
            assert!(a.header("x-keap-tenant-id").is_none(), "{path}");
        }
    }
    // A refresh token is not an access token, and Basic is not Bearer.
    assert_eq!(
        get(&app, "/crm/rest/v2/contacts", &ann.refresh)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Revoked in Account Central: dead everywhere.
    control(&app, "revoke", Some(r#"{"email":"ann@ab123.example"}"#)).await;
    for path in GETS {
        let a = get(&app, path, &ann.access).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_body(&a, INVALID_TOKEN);
    }
}

#[tokio::test]
async fn an_expired_access_token_is_refused() {
    let app = app();
    control(&app, "config", Some(r#"{"expires_in":0}"#)).await;
    let t = link(&app, "bob@cd456.example", None).await;
    let a = get(&app, "/crm/rest/v2/contacts", &t.access).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_body(&a, INVALID_TOKEN);
}

#[tokio::test]
async fn v1_contacts_list_filter_page_get_and_create() {
    let app = app();
    let t = link(&app, "ann@ab123.example", None).await;
    let list = get(&app, "/crm/rest/v1/contacts", &t.access).await.json();
    assert_eq!(list["count"], 3);
    let ids: Vec<u64> = list["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [101, 102, 103]);
    let ben = &list["contacts"][0];
    assert_eq!(ben["given_name"], "Ben");
    assert_eq!(ben["family_name"], "Crumb");
    assert_eq!(
        ben["email_addresses"],
        json!([{"email": "ben.crumb@mail.example", "field": "EMAIL1"}])
    );
    assert_eq!(ben["date_created"], "2024-01-10T08:00:00.000+0000");

    let page = get(&app, "/crm/rest/v1/contacts?limit=1&offset=1", &t.access)
        .await
        .json();
    assert_eq!(page["count"], 3, "count is every match, not the page");
    assert_eq!(page["contacts"].as_array().unwrap().len(), 1);
    assert_eq!(page["contacts"][0]["id"], 102);
    assert!(page["next"]
        .as_str()
        .unwrap()
        .ends_with("/crm/rest/v1/contacts?limit=1&offset=2"));
    assert!(page["previous"]
        .as_str()
        .unwrap()
        .ends_with("limit=1&offset=0"));

    let by_email = get(
        &app,
        "/crm/rest/v1/contacts?email=DORA.DOUGH%40mail.example",
        &t.access,
    )
    .await
    .json();
    assert_eq!(by_email["count"], 1);
    assert_eq!(by_email["contacts"][0]["given_name"], "Dora");

    let one = get(&app, "/crm/rest/v1/contacts/103", &t.access).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json()["given_name"], "Eli");

    let made = api(
        &app,
        Method::POST,
        "/crm/rest/v1/contacts",
        Some(&t.access),
        Some(r#"{"given_name":"Fay","family_name":"Flour","email_addresses":[{"email":"fay@mail.example","field":"EMAIL1"}]}"#),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let id = made.json()["id"].as_u64().unwrap();
    let again = get(&app, &format!("/crm/rest/v1/contacts/{id}"), &t.access)
        .await
        .json();
    assert_eq!(again["given_name"], "Fay");
    assert_eq!(
        get(&app, "/crm/rest/v1/contacts", &t.access).await.json()["count"],
        4
    );
}

#[tokio::test]
async fn v1_bad_input_gets_keap_v1_errors() {
    let app = app();
    let t = link(&app, "ann@ab123.example", None).await;
    let cases: &[(Method, &str, Option<&str>, StatusCode)] = &[
        (
            Method::POST,
            "/crm/rest/v1/contacts",
            Some("{not json"),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/crm/rest/v1/contacts",
            Some("[1]"),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/crm/rest/v1/contacts",
            Some(r#"{"given_name":"No Email"}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/crm/rest/v1/contacts",
            Some(r#"{"email_addresses":[{"email":"not-an-email"}]}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/crm/rest/v1/contacts?limit=ten",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/crm/rest/v1/contacts?offset=-1",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/crm/rest/v1/contacts/abc",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/crm/rest/v1/contacts/999",
            None,
            StatusCode::NOT_FOUND,
        ),
    ];
    for (method, path, body, want) in cases {
        let a = api(&app, method.clone(), path, Some(&t.access), *body).await;
        assert_eq!(a.status, *want, "{method} {path} {body:?}: {}", a.text);
        let msg = a.json()["message"].as_str().unwrap_or_default().to_owned();
        assert!(!msg.is_empty(), "{path}: {}", a.text);
        // The message says what is wrong without echoing what was sent.
        assert!(
            !msg.contains("not-an-email") && !msg.contains("ten"),
            "{msg}"
        );
    }
    assert_eq!(
        get(&app, "/crm/rest/v1/contacts", &t.access).await.json()["count"],
        3,
        "nothing was created"
    );
}

#[tokio::test]
async fn v2_contacts_page_get_create_patch_delete() {
    let app = app();
    let t = link(&app, "bob@cd456.example", None).await;
    for name in ["Una", "Val"] {
        let body = json!({"given_name": name, "phone_numbers": [{"number": "555-0199", "field": "PHONE1"}]});
        let a = api(
            &app,
            Method::POST,
            "/crm/rest/v2/contacts",
            Some(&t.access),
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        assert!(a.json()["id"].is_string(), "v2 ids are strings");
    }
    // Five contacts, two at a time: 2 + 2 + 1, the last page with an empty token.
    let mut seen: Vec<String> = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let a = get(
            &app,
            &format!(
                "/crm/rest/v2/contacts?page_size=2&page_token={}",
                urlenc(&token)
            ),
            &t.access,
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        let page = a.json();
        pages += 1;
        for c in page["contacts"].as_array().unwrap() {
            seen.push(c["given_name"].as_str().unwrap().to_owned());
        }
        token = page["next_page_token"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
        assert!(pages < 5, "paging ends");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["Gus", "Hana", "Ivo", "Una", "Val"]);

    let gus = get(&app, "/crm/rest/v2/contacts/104", &t.access)
        .await
        .json();
    assert_eq!(gus["id"], "104");
    assert_eq!(gus["create_time"], "2024-01-10T11:00:00Z");
    assert_eq!(gus["email_addresses"][0]["email"], "gus.gear@mail.example");
    assert!(gus.get("middle_name").is_none());

    let patched = api(
        &app,
        Method::PATCH,
        "/crm/rest/v2/contacts/104",
        Some(&t.access),
        Some(r#"{"given_name":"Augustus","job_title":"Mechanic"}"#),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    let p = patched.json();
    assert_eq!(
        (
            p["given_name"].as_str(),
            p["job_title"].as_str(),
            p["family_name"].as_str()
        ),
        (Some("Augustus"), Some("Mechanic"), Some("Gear"))
    );
    assert_ne!(p["update_time"], gus["update_time"]);
    // A mask limits the change to what it names (and clears a named field the body lacks).
    let masked = api(
        &app,
        Method::PATCH,
        "/crm/rest/v2/contacts/104?update_mask=family_name,middle_name",
        Some(&t.access),
        Some(r#"{"given_name":"Ignored","family_name":"Cog"}"#),
    )
    .await
    .json();
    assert_eq!(
        (
            masked["given_name"].as_str(),
            masked["family_name"].as_str()
        ),
        (Some("Augustus"), Some("Cog"))
    );

    let filtered = get(
        &app,
        "/crm/rest/v2/contacts?filter=given_name%3D%3DAug%2A",
        &t.access,
    )
    .await
    .json();
    assert_eq!(filtered["contacts"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["contacts"][0]["id"], "104");

    let gone = api(
        &app,
        Method::DELETE,
        "/crm/rest/v2/contacts/104",
        Some(&t.access),
        None,
    )
    .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert!(gone.text.is_empty());
    let a = get(&app, "/crm/rest/v2/contacts/104", &t.access).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json()["status"], "NOT_FOUND");
    assert_eq!(a.json()["code"], 404);
    let a = api(
        &app,
        Method::DELETE,
        "/crm/rest/v2/contacts/104",
        Some(&t.access),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn v2_bad_input_gets_keap_v2_errors_and_changes_nothing() {
    let app = app();
    let t = link(&app, "cat@ef789.example", None).await;
    let cases: &[(Method, &str, Option<&str>)] = &[
        (
            Method::POST,
            "/crm/rest/v2/contacts",
            Some(r#"{"given_name": "#),
        ),
        (
            Method::POST,
            "/crm/rest/v2/contacts",
            Some(r#"{"given_name":"Nobody"}"#),
        ),
        (
            Method::POST,
            "/crm/rest/v2/contacts",
            Some(r#"{"email_addresses":[{"email":"a@b.example","field":"EMAIL7"}]}"#),
        ),
        (
            Method::PATCH,
            "/crm/rest/v2/contacts/107",
            Some(r#"{"given_name": 12}"#),
        ),
        (Method::PATCH, "/crm/rest/v2/contacts/107", Some("nope")),
        (
            Method::PATCH,
            "/crm/rest/v2/contacts/107?update_mask=shoe_size",
            Some("{}"),
        ),
        (Method::GET, "/crm/rest/v2/contacts?page_size=1001", None),
        (Method::GET, "/crm/rest/v2/contacts?page_size=lots", None),
        (
            Method::GET,
            "/crm/rest/v2/contacts?page_token=garbage!",
            None,
        ),
        (
            Method::GET,
            "/crm/rest/v2/contacts?filter=phone%3D%3D5",
            None,
        ),
        (Method::GET, "/crm/rest/v2/contacts/x1", None),
    ];
    for (method, path, body) in cases {
        let a = api(&app, method.clone(), path, Some(&t.access), *body).await;
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body:?}: {}",
            a.text
        );
        let e = a.json();
        assert_eq!(e["code"], 400, "{}", a.text);
        assert_eq!(e["status"], "INVALID_ARGUMENT");
        assert!(e["details"].is_array());
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    let jo = get(&app, "/crm/rest/v2/contacts/107", &t.access)
        .await
        .json();
    assert_eq!(jo["given_name"], "Jo", "the bad patches changed nothing");
    let all = get(&app, "/crm/rest/v2/contacts", &t.access).await.json();
    assert_eq!(
        all["contacts"].as_array().unwrap().len(),
        3,
        "the bad posts created nothing"
    );
}

#[tokio::test]
async fn a_token_sees_only_its_own_apps_contacts() {
    let app = app();
    let ann = link(&app, "ann@ab123.example", None).await;
    let bob = link(&app, "bob@cd456.example", None).await;
    let bobs: Vec<Value> = get(&app, "/crm/rest/v2/contacts", &bob.access).await.json()["contacts"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        bobs.iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["104", "105", "106"]
    );
    // Ann's contact 101, through Bob's token: not found, whatever the verb or version.
    for (method, path, body) in [
        (Method::GET, "/crm/rest/v1/contacts/101", None),
        (Method::GET, "/crm/rest/v2/contacts/101", None),
        (
            Method::PATCH,
            "/crm/rest/v2/contacts/101",
            Some(r#"{"given_name":"Hacked"}"#),
        ),
        (Method::DELETE, "/crm/rest/v2/contacts/101", None),
    ] {
        let a = api(&app, method.clone(), path, Some(&bob.access), body).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(a.header("x-keap-tenant-id"), Some("cd456"));
    }
    let still = get(&app, "/crm/rest/v2/contacts/101", &ann.access)
        .await
        .json();
    assert_eq!(still["given_name"], "Ben", "Ann's contact is untouched");
    // Something Bob creates stays in his app.
    let made = api(
        &app,
        Method::POST,
        "/crm/rest/v1/contacts",
        Some(&bob.access),
        Some(r#"{"email_addresses":[{"email":"new@mail.example"}]}"#),
    )
    .await
    .json();
    let id = made["id"].as_u64().unwrap();
    assert_eq!(
        get(&app, &format!("/crm/rest/v1/contacts/{id}"), &ann.access)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(
            &app,
            "/crm/rest/v1/contacts?email=new%40mail.example",
            &ann.access
        )
        .await
        .json()["count"],
        0
    );
}

#[tokio::test]
async fn v2_userinfo_and_business_profile_speak_for_the_tokens_app() {
    let app = app();
    let cat = link(&app, "cat@ef789.example", None).await;
    let who = get(&app, "/crm/rest/v2/oauth/connect/userinfo", &cat.access)
        .await
        .json();
    assert_eq!(
        who,
        json!({"sub": "3", "id": "3", "keap_id": "cat@ef789.example", "email": "cat@ef789.example",
            "given_name": "Cat", "family_name": "Dee", "preferred_name": "Cat", "is_admin": true,
            "tenant_id": "ef789"})
    );
    // v1 userinfo keeps the shape it always had.
    let v1 = get(&app, "/crm/rest/v1/oauth/connect/userinfo", &cat.access)
        .await
        .json();
    assert_eq!(
        v1,
        json!({"sub": "3", "email": "cat@ef789.example", "given_name": "Cat", "family_name": "Dee",
            "preferred_name": "Cat"})
    );
    let biz = get(&app, "/crm/rest/v2/businessProfile", &cat.access)
        .await
        .json();
    assert_eq!(biz["name"], "Cat's Cafe");
    for field in [
        "email",
        "website",
        "phone",
        "time_zone",
        "currency_code",
        "language_tag",
        "business_type",
        "logo_url",
        "business_primary_color",
        "business_secondary_color",
    ] {
        assert!(biz[field].is_string(), "{field}");
    }
    assert!(biz["business_goals"].is_array());
    for field in [
        "line1",
        "line2",
        "locality",
        "region",
        "country_code",
        "postal_code",
    ] {
        assert!(biz["address"][field].is_string(), "address.{field}");
    }
}
