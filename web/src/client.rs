//! The widget's side of the HTTP contract: the partner's session JWT (the `session` attribute, or
//! one fetched from `session-url` and cached until shortly before it expires) and every call to
//! the Worker. It decides what a refused call means; what the user reads is `view`'s business.

use js_sys::{Reflect, JSON};
use std::cell::RefCell;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, HtmlElement, RequestInit, Response};

/// A call that did not succeed. `code` and `message` are for the developer (the API's own, or
/// the widget's: `network`, `unexpected`, `no_session`, `session_url`); `says` names the sentence
/// the user reads (`view::says`), which for a refused session differs from the API's code.
pub struct Failure {
    pub code: String,
    pub message: String,
    pub says: &'static str,
}

impl Failure {
    fn new(code: &str, message: &str, says: &'static str) -> Self {
        Failure {
            code: code.into(),
            message: message.into(),
            says,
        }
    }

    fn network() -> Self {
        Failure::new(
            "network",
            "The keaplink Worker could not be reached.",
            "network",
        )
    }
}

pub struct Client {
    host: HtmlElement,
    api: String,
    /// A session fetched from `session-url`, and its `exp`.
    cached: RefCell<Option<(String, f64)>>,
}

pub fn now_secs() -> f64 {
    js_sys::Date::now() / 1000.0
}

/// `exp` of a JWT, read without verifying: the Worker verifies; this only schedules renewal and
/// tells an expired session from one refused for another reason.
fn jwt_exp(token: &str) -> Option<f64> {
    let payload = token.split('.').nth(1)?;
    let mut b64 = payload.replace('-', "+").replace('_', "/");
    while b64.len() % 4 != 0 {
        b64.push('=');
    }
    let json = crate::window().atob(&b64).ok()?;
    Reflect::get(&JSON::parse(&json).ok()?, &"exp".into())
        .ok()?
        .as_f64()
}

/// A settled promise's value; a rejection is handled here (it never reaches the page as an
/// unhandled rejection) and reported as a network failure.
async fn settle(p: Result<js_sys::Promise, JsValue>) -> Result<JsValue, Failure> {
    JsFuture::from(p.map_err(|_| Failure::network())?)
        .await
        .map_err(|_| Failure::network())
}

/// One fetch, answered as (status, body text, headers). The body is read as text, never with
/// `json()`, so an empty answer (a 204) needs no special case.
async fn fetch(url: &str, init: &RequestInit) -> Result<(u16, String, Headers), Failure> {
    let resp: Response = settle(Ok(crate::window().fetch_with_str_and_init(url, init)))
        .await?
        .unchecked_into();
    let text = settle(resp.text()).await?.as_string().unwrap_or_default();
    Ok((resp.status(), text, resp.headers()))
}

impl Client {
    pub fn new(host: HtmlElement, api: String) -> Self {
        Client {
            host,
            api,
            cached: RefCell::new(None),
        }
    }

    fn attr(&self, name: &str) -> Option<String> {
        self.host
            .get_attribute(name)
            .filter(|v| !v.trim().is_empty())
    }

    /// Forgets a fetched session (the page changed its attributes).
    pub fn forget(&self) {
        self.cached.borrow_mut().take();
    }

    /// The session JWT: the `session` attribute, or one from `session-url`, reused until a
    /// minute before it expires (`renew` fetches a new one regardless).
    async fn session(&self, renew: bool) -> Result<String, Failure> {
        if let Some(s) = self.attr("session") {
            return Ok(s);
        }
        let Some(url) = self.attr("session-url") else {
            return Err(Failure::new(
                "no_session",
                "The <keap-link> element has neither a session nor a session-url attribute.",
                "session-invalid",
            ));
        };
        if let Some((token, exp)) = self.cached.borrow().clone().filter(|_| !renew) {
            if exp - now_secs() > 60.0 {
                return Ok(token);
            }
        }
        let (status, text, _) = fetch(&url, &RequestInit::new()).await?;
        // Either the bare JWT, or {"session": "..."}.
        let token = JSON::parse(&text)
            .ok()
            .and_then(|v| Reflect::get(&v, &"session".into()).ok())
            .and_then(|v| v.as_string())
            .unwrap_or_else(|| text.trim().to_owned());
        if !(200..300).contains(&status) || token.is_empty() {
            // The partner's own sign-in is gone (401/403): the user must sign in again there.
            let says = if status == 401 || status == 403 {
                "session-expired"
            } else {
                "error"
            };
            return Err(Failure {
                code: "session_url".into(),
                message: format!("session-url answered {status} without a session."),
                says,
            });
        }
        let exp = jwt_exp(&token).unwrap_or(now_secs() + 300.0);
        *self.cached.borrow_mut() = Some((token.clone(), exp));
        Ok(token)
    }

    /// One call to the Worker: JSON in, JSON out (`null` for an empty answer), the session as
    /// bearer. A 401 with `session-url` fetches a new session and tries once more.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<(JsValue, Headers), Failure> {
        let mut renewed = false;
        loop {
            let token = self.session(renewed).await?;
            let init = RequestInit::new();
            init.set_method(method);
            let headers = Headers::new().map_err(|_| Failure::network())?;
            let _ = headers.set("authorization", &format!("Bearer {token}"));
            if let Some(b) = &body {
                let _ = headers.set("content-type", "application/json");
                init.set_body(&JsValue::from_str(b));
            }
            init.set_headers(&headers);
            let (status, text, headers) = fetch(&format!("{}{path}", self.api), &init).await?;
            if status == 401 && !renewed && self.attr("session-url").is_some() {
                renewed = true;
                continue;
            }
            let json = JSON::parse(&text).unwrap_or(JsValue::NULL);
            if (200..300).contains(&status) {
                return Ok((json, headers));
            }
            let Some((code, message)) = crate::wire::error(&json) else {
                return Err(Failure {
                    code: "unexpected".into(),
                    message: format!("The keaplink Worker answered {status}."),
                    says: "error",
                });
            };
            // Only the JWT's own `exp` makes a refusal an expiry; anything else (too long-lived,
            // wrong audience, unknown partner) is the page's mistake, which no retry mends.
            let says = match status {
                401 if jwt_exp(&token).is_some_and(|exp| exp <= now_secs()) => "session-expired",
                401 => "session-invalid",
                _ => crate::view::known(&code, "error"),
            };
            return Err(Failure {
                code,
                message,
                says,
            });
        }
    }
}
