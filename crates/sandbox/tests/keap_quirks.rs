//! The sandbox behaves like Keap where it matters to keaplink.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use http_body_util::BodyExt;
use keaplink_sandbox::{router, Config};
use serde_json::Value;
use tower::ServiceExt;

const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";

fn app() -> Router {
    router(Config {
        client_id: "cid".into(),
        client_secret: "csecret".into(),
        redirect_uris: vec![REDIRECT.into()],
        expires_in: 3600,
        state_file: None,
    })
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn form_post(path: &str, body: &str, cookie: Option<&str>, basic: bool) -> Request<Body> {
    let mut b =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    if basic {
        let creds = base64::engine::general_purpose::STANDARD.encode("cid:csecret");
        b = b.header(header::AUTHORIZATION, format!("Basic {creds}"));
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

fn authorize_query() -> String {
    format!(
        "client_id=cid&redirect_uri={}&response_type=code&scope=full&state=st1",
        urlenc(REDIRECT)
    )
}

fn urlenc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Logs in as `email` and approves; returns (sso cookie, code, scope).
async fn approve(app: &Router, email: &str) -> (String, String, String) {
    let (status, headers, _) = send(
        app,
        form_post(
            "/app/oauth/login",
            &format!(
                "email={}&password=keap&client_id=cid&redirect_uri={}&state=st1",
                urlenc(email),
                urlenc(REDIRECT)
            ),
            None,
            false,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let set_cookie = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let (status, headers, _) = send(
        app,
        form_post(
            "/app/oauth/consent",
            &format!(
                "client_id=cid&redirect_uri={}&state=st1&decision=allow",
                urlenc(REDIRECT)
            ),
            Some(&cookie),
            false,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let loc = url::Url::parse(headers.get(header::LOCATION).unwrap().to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "st1");
    (cookie, q["code"].clone(), q["scope"].clone())
}

async fn exchange(app: &Router, code: &str) -> (StatusCode, Value) {
    let (status, _, body) = send(
        app,
        form_post(
            "/token",
            &format!("client_id=cid&client_secret=csecret&code={code}&grant_type=authorization_code&redirect_uri={}", urlenc(REDIRECT)),
            None,
            false,
        ),
    )
    .await;
    (status, serde_json::from_str(&body).unwrap())
}

/// A refresh call as Keap's SDK makes it; the body as text (a dropped answer is not JSON).
async fn refresh_text(app: &Router, rt: &str) -> (StatusCode, String) {
    let (status, _, body) = send(
        app,
        form_post(
            "/token",
            &format!("grant_type=refresh_token&refresh_token={rt}"),
            None,
            true,
        ),
    )
    .await;
    (status, body)
}

async fn refresh(app: &Router, rt: &str) -> (StatusCode, Value) {
    let (status, body) = refresh_text(app, rt).await;
    (status, serde_json::from_str(&body).unwrap())
}

#[tokio::test]
async fn sso_session_skips_login_until_logout() {
    let app = app();
    let q = authorize_query();
    let (_, _, page) = send(
        &app,
        Request::get(format!("/app/oauth/authorize?{q}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(page.contains("data-page=\"login\""));
    let (cookie, _, scope) = approve(&app, "ann@ab123.example").await;
    assert_eq!(scope, "full|ab123.infusionsoft.com");
    let with_cookie = |path: String| {
        Request::get(path)
            .header(header::COOKIE, cookie.clone())
            .body(Body::empty())
            .unwrap()
    };
    let (_, _, page) = send(&app, with_cookie(format!("/app/oauth/authorize?{q}"))).await;
    assert!(page.contains("data-page=\"consent\"") && page.contains("ann@ab123.example"));
    let (status, headers, _) = send(
        &app,
        with_cookie(format!(
            "/logout?service={}",
            urlenc("http://127.0.0.1:9/next")
        )),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers.get(header::LOCATION).unwrap(),
        "http://127.0.0.1:9/next"
    );
    let (_, _, page) = send(&app, with_cookie(format!("/app/oauth/authorize?{q}"))).await;
    assert!(
        page.contains("data-page=\"login\""),
        "the old cookie no longer signs in"
    );
}

#[tokio::test]
async fn authorize_validates_the_client() {
    let app = app();
    for q in [
        "client_id=nope&redirect_uri=x&response_type=code&scope=full".to_owned(),
        format!(
            "client_id=cid&redirect_uri={}&response_type=code&scope=full",
            urlenc("http://evil.example/cb")
        ),
        format!(
            "client_id=cid&redirect_uri={}&response_type=token&scope=full",
            urlenc(REDIRECT)
        ),
    ] {
        let (status, _, _) = send(
            &app,
            Request::get(format!("/app/oauth/authorize?{q}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
    }
}

#[tokio::test]
async fn codes_are_single_use_and_refresh_rotates() {
    let app = app();
    let (_, code, _) = approve(&app, "bob@cd456.example").await;
    let (status, tokens) = exchange(&app, &code).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tokens["scope"], "full|cd456.infusionsoft.com");
    assert_eq!(tokens["expires_in"], 3600);
    let (status, again) = exchange(&app, &code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(again["error"], "invalid_grant");

    let rt1 = tokens["refresh_token"].as_str().unwrap();
    let (status, t2) = refresh(&app, rt1).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(t2["refresh_token"], tokens["refresh_token"]);
    let (status, dead) = refresh(&app, rt1).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        dead,
        serde_json::json!({"error": "invalid_request", "error_description": "Invalid Refresh Token"})
    );

    let at = t2["access_token"].as_str().unwrap();
    let (status, _, who) = send(
        &app,
        Request::get("/crm/rest/v1/oauth/connect/userinfo")
            .header(header::AUTHORIZATION, format!("Bearer {at}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(who.contains("bob@cd456.example"));
    let (status, _, fault) = send(
        &app,
        Request::get("/crm/rest/v1/oauth/connect/userinfo")
            .header(header::AUTHORIZATION, "Bearer nope")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(fault.contains("\"fault\""));
}

#[tokio::test]
async fn token_endpoint_takes_forms_only() {
    let app = app();
    let req = Request::post("/token")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"grant_type":"refresh_token"}"#))
        .unwrap();
    let (status, _, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        serde_json::json!({"error": "invalid_request", "error_description": "response_type or grant_type is required"})
    );
}

#[tokio::test]
async fn faults_apply_to_the_next_calls_and_are_counted() {
    let app = app();
    let (_, code, _) = approve(&app, "ann@ab123.example").await;
    let (_, tokens) = exchange(&app, &code).await;
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    let fault = |body: &str| {
        Request::post("/__sandbox/faults")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    send(&app, fault(r#"{"kind":"throttle","count":1}"#)).await;
    send(&app, fault(r#"{"kind":"server_error","count":1}"#)).await;
    let (status, body) = refresh(&app, &rt).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        body["fault"]["detail"]["errorcode"],
        "policies.ratelimit.QuotaViolation"
    );
    let (status, _) = refresh(&app, &rt).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    // The faults spent nothing: the refresh token still works.
    let (status, _) = refresh(&app, &rt).await;
    assert_eq!(status, StatusCode::OK);

    // A dropped answer still rotated the token.
    let (_, code, _) = approve(&app, "cat@ef789.example").await;
    let (_, t) = exchange(&app, &code).await;
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    send(&app, fault(r#"{"kind":"drop","hang_ms":10}"#)).await;
    let (status, _) = refresh_text(&app, &rt).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let (status, _) = refresh(&app, &rt).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (_, _, stats) = send(
        &app,
        Request::get("/__sandbox/stats")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["calls"]["token_refresh"], 5);
    assert_eq!(stats["calls"]["token"], 7);
}
