//! What the sandbox's integration tests share: a router, one-shot requests, and the OAuth walk
//! from sign-in to tokens, as a browser and the Worker would make them.
#![allow(dead_code)] // each test file uses its own subset

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use http_body_util::BodyExt;
use keaplink_sandbox::{router, Config};
use serde_json::Value;
use std::collections::HashMap;
use tower::ServiceExt;

pub const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";

pub fn app() -> Router {
    router(Config {
        client_id: "cid".into(),
        client_secret: "csecret".into(),
        redirect_uris: vec![REDIRECT.into()],
        expires_in: 3600,
        state_file: None,
    })
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn num(&self, name: &str) -> u64 {
        self.header(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .parse()
            .unwrap_or_else(|_| panic!("{name} is not a number"))
    }
}

pub async fn send(app: &Router, req: Request<Body>) -> Answer {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        text: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub fn urlenc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn form_post(path: &str, body: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

pub fn authorize_path() -> String {
    format!(
        "/app/oauth/authorize?client_id=cid&redirect_uri={}&response_type=code&scope=full&state=st1",
        urlenc(REDIRECT)
    )
}

pub async fn get_page(app: &Router, path: &str, cookie: Option<&str>) -> Answer {
    let mut b = Request::get(path);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    send(app, b.body(Body::empty()).unwrap()).await
}

/// Signs in; returns the SSO cookie (`name=value`).
pub async fn login(app: &Router, email: &str) -> String {
    let a = send(
        app,
        form_post(
            "/app/oauth/login",
            &format!(
                "email={}&password=keap&client_id=cid&redirect_uri={}&state=st1",
                urlenc(email),
                urlenc(REDIRECT)
            ),
            None,
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text);
    a.header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// Posts the consent form (with `app=` when given); returns the redirect's query.
pub async fn consent(app: &Router, cookie: &str, chosen: Option<&str>) -> Answer {
    let mut body = format!(
        "client_id=cid&redirect_uri={}&state=st1&decision=allow",
        urlenc(REDIRECT)
    );
    if let Some(a) = chosen {
        body.push_str(&format!("&app={a}"));
    }
    send(app, form_post("/app/oauth/consent", &body, Some(cookie))).await
}

pub fn redirect_query(a: &Answer) -> HashMap<String, String> {
    let loc = url::Url::parse(a.header("location").expect("a redirect")).unwrap();
    loc.query_pairs().into_owned().collect()
}

pub async fn exchange(app: &Router, code: &str) -> Answer {
    send(
        app,
        form_post(
            "/token",
            &format!(
                "client_id=cid&client_secret=csecret&code={code}&grant_type=authorization_code&redirect_uri={}",
                urlenc(REDIRECT)
            ),
            None,
        ),
    )
    .await
}

pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub scope: String,
}

/// The whole link: sign in, consent (choosing `chosen` if given), exchange the code.
pub async fn link(app: &Router, email: &str, chosen: Option<&str>) -> Tokens {
    let cookie = login(app, email).await;
    let q = redirect_query(&consent(app, &cookie, chosen).await);
    let t = exchange(app, &q["code"]).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    let t = t.json();
    Tokens {
        access: t["access_token"].as_str().unwrap().to_owned(),
        refresh: t["refresh_token"].as_str().unwrap().to_owned(),
        scope: t["scope"].as_str().unwrap().to_owned(),
    }
}

/// A refresh as Keap's SDK makes it.
pub async fn refresh(app: &Router, rt: &str) -> Answer {
    let creds = base64::engine::general_purpose::STANDARD.encode("cid:csecret");
    let req = Request::post("/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, format!("Basic {creds}"))
        .body(Body::from(format!(
            "grant_type=refresh_token&refresh_token={rt}"
        )))
        .unwrap();
    send(app, req).await
}

/// A REST call: bearer `token` if given, a JSON body if given.
pub async fn api(
    app: &Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = match body {
        Some(json) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(json.to_owned())
        }
        None => Body::empty(),
    };
    send(app, b.body(body).unwrap()).await
}

pub async fn get(app: &Router, path: &str, token: &str) -> Answer {
    api(app, Method::GET, path, Some(token), None).await
}

/// A `/__sandbox/` control: POST with a JSON body, or GET without one.
pub async fn control(app: &Router, path: &str, body: Option<&str>) -> Answer {
    let uri = format!("/__sandbox/{path}");
    let req = match body {
        Some(b) => Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_owned())),
        None => Request::get(uri).body(Body::empty()),
    };
    send(app, req.unwrap()).await
}

pub async fn stats(app: &Router) -> Value {
    control(app, "stats", None).await.json()
}

pub const INVALID_TOKEN: &str = r#"{"fault":{"faultstring":"Invalid Access Token","detail":{"errorcode":"keymanagement.service.invalid_access_token"}}}"#;
pub const QUOTA_FAULT: &str = r#"{"fault":{"faultstring":"Rate limit quota violation. Quota limit  exceeded.","detail":{"errorcode":"policies.ratelimit.QuotaViolation"}}}"#;

/// The answer's body is exactly this JSON (key order aside).
pub fn assert_body(a: &Answer, expected: &str) {
    let want: Value = serde_json::from_str(expected).expect("the expected body is JSON");
    assert_eq!(a.json(), want, "status {}", a.status);
}
