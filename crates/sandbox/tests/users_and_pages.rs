//! The sign-in and consent pages with the seeded users: a wrong password keeps the person on
//! the form, two-app users choose an app and everything after follows that choice, and every
//! user has a stable identity.

mod common;

use axum::http::StatusCode;
use common::*;
use keaplink_sandbox::USERS;

#[tokio::test]
async fn a_wrong_password_shows_the_form_again_with_the_email_kept() {
    let app = app();
    let a = send(
        &app,
        form_post(
            "/app/oauth/login",
            &format!(
                "email={}&password=nope&client_id=cid&redirect_uri={}&state=st%22%3E1",
                urlenc("ann@ab123.example"),
                urlenc(REDIRECT)
            ),
            None,
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.text.contains(r#"data-page="login""#), "{}", a.text);
    assert!(a.text.contains(r#"role="alert""#));
    assert!(a.text.contains("wrong password"));
    assert!(a.text.contains(
        r#"name="email" type="email" autocomplete="username" value="ann@ab123.example""#
    ));
    assert!(a
        .text
        .contains(r#"<input type="hidden" name="client_id" value="cid">"#));
    assert!(a.text.contains(&format!(
        r#"<input type="hidden" name="redirect_uri" value="{REDIRECT}">"#
    )));
    // The carried state is escaped, not injected into the page.
    assert!(a
        .text
        .contains(r#"<input type="hidden" name="state" value="st&quot;&gt;1">"#));
    assert!(
        a.header("set-cookie").is_none(),
        "no session for a failed sign-in"
    );

    // The same form, filled in right, signs in and goes back to authorize with the same state.
    let a = send(
        &app,
        form_post(
            "/app/oauth/login",
            &format!(
                "email={}&password=keap&client_id=cid&redirect_uri={}&state=st%22%3E1",
                urlenc("ann@ab123.example"),
                urlenc(REDIRECT)
            ),
            None,
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert!(a.header("location").unwrap().contains("state=st%22%3E1"));
}

#[tokio::test]
async fn an_unknown_user_or_missing_fields_get_the_form_too() {
    let app = app();
    for body in [
        "email=nobody%40x.example&password=keap&client_id=cid".to_owned(),
        "client_id=cid".to_owned(),
        format!("email={}&client_id=cid", urlenc("amy@ab123.example")),
    ] {
        let a = send(&app, form_post("/app/oauth/login", &body, None)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(a.text.contains(r#"role="alert""#), "{body}");
    }
}

#[tokio::test]
async fn the_login_page_lists_every_sandbox_user() {
    let app = app();
    let page = get_page(&app, &authorize_path(), None).await;
    assert_eq!(page.status, StatusCode::OK);
    for u in USERS {
        assert!(page.text.contains(u.email), "{} is listed", u.email);
    }
    assert!(page.text.contains("dan@gh012.example (app gh012, ij345)"));
    assert!(
        !page.text.contains(r#"role="alert""#),
        "no error before a try"
    );
}

#[tokio::test]
async fn a_two_app_user_chooses_and_everything_follows_the_choice() {
    let app = app();
    let cookie = login(&app, "dan@gh012.example").await;
    let page = get_page(&app, &authorize_path(), Some(&cookie)).await;
    assert!(page.text.contains(r#"data-page="consent""#));
    assert!(page.text.contains(r#"<label>Keap app <select name="app">"#));
    assert!(page
        .text
        .contains(r#"<option value="gh012" selected>Dan's Deli (gh012)</option>"#));
    assert!(page
        .text
        .contains(r#"<option value="ij345">Dan's Dive Shop (ij345)</option>"#));

    // The second app, chosen.
    let t = link(&app, "dan@gh012.example", Some("ij345")).await;
    assert_eq!(t.scope, "full|ij345.infusionsoft.com");
    let who = get(&app, "/crm/rest/v2/oauth/connect/userinfo", &t.access).await;
    assert_eq!(who.json()["tenant_id"], "ij345");
    assert_eq!(who.json()["sub"], "5");
    let biz = get(&app, "/crm/rest/v2/businessProfile", &t.access).await;
    assert_eq!(biz.json()["name"], "Dan's Dive Shop");
    assert_eq!(biz.header("x-keap-tenant-id"), Some("ij345"));
    let list = get(&app, "/crm/rest/v2/contacts", &t.access).await.json();
    let names: Vec<&str> = list["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["given_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Pia", "Quin", "Rae"]);

    // No choice sent: the first (preselected) app.
    let t = link(&app, "dan@gh012.example", None).await;
    assert_eq!(t.scope, "full|gh012.infusionsoft.com");
    let biz = get(&app, "/crm/rest/v2/businessProfile", &t.access).await;
    assert_eq!(biz.json()["name"], "Dan's Deli");
}

#[tokio::test]
async fn an_app_the_user_cannot_reach_is_refused_and_one_app_users_see_no_chooser() {
    let app = app();
    let cookie = login(&app, "dan@gh012.example").await;
    let a = consent(&app, &cookie, Some("ab123")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.header("location").is_none(),
        "no code for someone else's app"
    );

    let cookie = login(&app, "ann@ab123.example").await;
    let page = get_page(&app, &authorize_path(), Some(&cookie)).await;
    assert!(page.text.contains(r#"data-page="consent""#));
    assert!(!page.text.contains("<select"), "{}", page.text);
    assert!(page.text.contains("app <code>Ann's Bakery (ab123)</code>"));
    // A one-app user naming their own app is fine; naming another is not.
    assert_eq!(
        consent(&app, &cookie, Some("ab123")).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        consent(&app, &cookie, Some("cd456")).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn a_second_user_of_the_same_app_is_another_person_in_the_same_tenant() {
    let app = app();
    let ann = link(&app, "ann@ab123.example", None).await;
    let amy = link(&app, "amy@ab123.example", None).await;
    assert_eq!(amy.scope, ann.scope);
    let a = get(&app, "/crm/rest/v2/oauth/connect/userinfo", &amy.access)
        .await
        .json();
    let b = get(&app, "/crm/rest/v2/oauth/connect/userinfo", &ann.access)
        .await
        .json();
    assert_eq!(
        (a["tenant_id"].as_str(), b["tenant_id"].as_str()),
        (Some("ab123"), Some("ab123"))
    );
    assert_ne!(a["sub"], b["sub"]);
    assert_eq!(a["email"], "amy@ab123.example");
    assert_eq!(a["given_name"], "Amy");
    assert_eq!(a["family_name"], "Ash");
    assert_eq!(a["is_admin"], false);
    assert_eq!(b["is_admin"], true);
    // Same tenant, same contacts.
    let la = get(&app, "/crm/rest/v1/contacts", &amy.access).await.json();
    let lb = get(&app, "/crm/rest/v1/contacts", &ann.access).await.json();
    assert_eq!(la["contacts"], lb["contacts"]);
}

#[tokio::test]
async fn every_user_has_a_stable_distinct_sub_in_both_userinfos() {
    let app = app();
    let mut subs = Vec::new();
    for u in USERS {
        let t = link(&app, u.email, None).await;
        let v1 = get(&app, "/crm/rest/v1/oauth/connect/userinfo", &t.access)
            .await
            .json();
        let v2 = get(&app, "/crm/rest/v2/oauth/connect/userinfo", &t.access)
            .await
            .json();
        assert_eq!(v1["sub"], u.sub);
        assert_eq!(v2["sub"], u.sub);
        assert_eq!(v1["email"], u.email);
        subs.push(u.sub);
    }
    // The first three keep the ids they always had.
    assert_eq!(&subs[..3], ["1", "2", "3"]);
    let mut distinct = subs.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), subs.len());
}
