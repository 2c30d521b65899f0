//! The sandbox as a rehearsal stage: its landing page says who can sign in and what for, its apps
//! and every control; Account Central removes an app (and kills its tokens); with a state file,
//! links survive a restart.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use keaplink_sandbox::{router, try_router, Config, APPS, CONTROLS, USERS};

#[tokio::test]
async fn the_landing_page_names_every_user_app_and_control() {
    let app = app();
    let a = get_page(&app, "/", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.header("content-type").unwrap().starts_with("text/html"));
    assert!(a.text.contains(r#"data-page="sandbox""#));
    for u in USERS {
        assert!(
            a.text.contains(&format!(r#"<tr data-user="{}">"#, u.email)),
            "{}",
            u.email
        );
        assert!(!u.for_trying.is_empty());
        assert!(
            a.text.contains(&u.for_trying.replace('"', "&quot;")),
            "{}",
            u.for_trying
        );
    }
    for x in APPS {
        assert!(a.text.contains(&format!(r#"<tr data-app="{}">"#, x.id)));
        assert!(a.text.contains(x.name));
    }
    for c in CONTROLS {
        assert!(a
            .text
            .contains(&format!(r#"data-control="{} {}""#, c.method, c.path)));
    }
    assert!(a.text.contains(r#"href="/app/central/home""#));
    assert!(a.text.contains("memory"), "says its state is not kept");
}

#[tokio::test]
async fn every_listed_control_is_a_route_of_that_method() {
    let app = app();
    for c in CONTROLS {
        // The other method: a route that exists answers 405; a path that does not, 404.
        let other = if c.method == "GET" {
            Method::DELETE
        } else {
            Method::GET
        };
        let a = api(&app, other, c.path, None, None).await;
        assert_eq!(
            a.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{} {}",
            c.method,
            c.path
        );
    }
    let a = api(&app, Method::GET, "/__sandbox/nope", None, None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn removing_the_app_in_account_central_kills_its_tokens_and_no_others() {
    let app = app();
    let ann = link(&app, "ann@ab123.example", None).await;
    let amy = link(&app, "amy@ab123.example", None).await;
    let dan = link(&app, "dan@gh012.example", Some("gh012")).await;
    let dan2 = link(&app, "dan@gh012.example", Some("ij345")).await;

    // Signed out: the sign-in form.
    let a = get_page(&app, "/app/central/home", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.text.contains(r#"data-page="central-login""#));
    let bad = send(
        &app,
        form_post(
            "/app/central/login",
            "email=ann%40ab123.example&password=nope",
            None,
        ),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.header("set-cookie").is_none());

    let central_login = |email: &str| {
        form_post(
            "/app/central/login",
            &format!("email={}&password=keap", urlenc(email)),
            None,
        )
    };
    let a = send(&app, central_login("ann@ab123.example")).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.header("location"), Some("/app/central/home"));
    let cookie = a
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let home = get_page(&app, "/app/central/home", Some(&cookie)).await;
    assert!(home.text.contains(r#"data-page="central""#));
    assert!(home.text.contains("ann@ab123.example"));
    assert!(home.text.contains(r#"<section data-app="ab123">"#));
    assert!(home.text.contains("data-connected"));
    assert!(home.text.contains(r#"name="app" value="ab123""#));

    let removed = send(
        &app,
        form_post("/app/central/remove", "app=ab123", Some(&cookie)),
    )
    .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER);
    let home = get_page(&app, "/app/central/home", Some(&cookie)).await;
    assert!(!home.text.contains("data-connected"), "{}", home.text);
    assert!(home.text.contains("No connected apps"));
    // Ann's tokens are dead, as after a removal in Keap; Amy's (same app) live on.
    let r = refresh(&app, &ann.refresh).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("Invalid Refresh Token"));
    let who = |t: &str| {
        let t = t.to_owned();
        let app = app.clone();
        async move {
            api(
                &app,
                Method::GET,
                "/crm/rest/v1/oauth/connect/userinfo",
                Some(&t),
                None,
            )
            .await
            .status
        }
    };
    assert_eq!(who(&ann.access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(who(&amy.access).await, StatusCode::OK);
    assert_eq!(refresh(&app, &amy.refresh).await.status, StatusCode::OK);

    // Dan removes one of his two apps: the other stays connected.
    let a = send(&app, central_login("dan@gh012.example")).await;
    let dan_cookie = a
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let removed = send(
        &app,
        form_post("/app/central/remove", "app=ij345", Some(&dan_cookie)),
    )
    .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER);
    assert_eq!(who(&dan2.access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(who(&dan.access).await, StatusCode::OK);
    // An app Dan cannot reach is refused; no session, the sign-in form.
    let a = send(
        &app,
        form_post("/app/central/remove", "app=ab123", Some(&dan_cookie)),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = send(&app, form_post("/app/central/remove", "app=gh012", None)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(who(&dan.access).await, StatusCode::OK);
}

fn with_state(path: &std::path::Path) -> Config {
    Config {
        client_id: "cid".into(),
        client_secret: "csecret".into(),
        redirect_uris: vec![REDIRECT.into()],
        expires_in: 3600,
        state_file: Some(path.to_owned()),
    }
}

#[tokio::test]
async fn with_a_state_file_links_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("keaplink-stage-{}", std::process::id()));
    let path = dir.join("state").join("keap-sandbox.json");
    let _ = std::fs::remove_dir_all(&dir);

    let first = router(with_state(&path));
    let ann = link(&first, "ann@ab123.example", None).await;
    let bob = link(&first, "bob@cd456.example", None).await;
    // Bob's refresh token is spent: its successor is what must survive.
    let r = refresh(&first, &bob.refresh).await;
    assert_eq!(r.status, StatusCode::OK);
    let bob_next = r.json()["refresh_token"].as_str().unwrap().to_owned();
    let landing = get_page(&first, "/", None).await;
    assert!(landing.text.contains("keap-sandbox.json"), "names its file");
    // Written a moment after the change (every 250 ms): wait for the file to hold bob's new token.
    let mut saved = String::new();
    for _ in 0..80 {
        saved = std::fs::read_to_string(&path).unwrap_or_default();
        if saved.contains(&bob_next) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(saved.contains(&bob_next), "the state file was not written");
    assert!(!saved.contains(&bob.refresh), "a dead token is not kept");

    // A new sandbox on the same file: the tokens work as before the restart.
    let second = router(with_state(&path));
    let a = api(
        &second,
        Method::GET,
        "/crm/rest/v1/oauth/connect/userinfo",
        Some(&ann.access),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["email"], "ann@ab123.example");
    assert_eq!(refresh(&second, &ann.refresh).await.status, StatusCode::OK);
    assert_eq!(refresh(&second, &bob_next).await.status, StatusCode::OK);
    assert_eq!(
        refresh(&second, &bob.refresh).await.status,
        StatusCode::BAD_REQUEST
    );

    // A file it cannot read stops it, saying which and why; it is not overwritten.
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{not json").unwrap();
    let err = try_router(with_state(&broken)).err().unwrap();
    assert!(err.contains("broken.json") && err.contains("not a sandbox state file"));
    assert_eq!(std::fs::read_to_string(&broken).unwrap(), "{not json");
    std::fs::remove_dir_all(&dir).unwrap();
}
