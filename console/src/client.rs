//! Who the console is signed in as, where that is kept, and every call to the Worker's JSON API
//! (same origin: the console is served by the Worker itself). The credential lives in memory and
//! in this tab's `sessionStorage` (so a reload keeps the sign-in); never in a URL or a cookie.

use js_sys::{Reflect, JSON};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, RequestInit, Response};

const STORE_KEY: &str = "keaplink-console";

/// A bearer credential and, with the admin token, the partner the operator acts for.
#[derive(Clone, PartialEq)]
pub struct Cred {
    pub token: String,
    pub admin: bool,
    /// The partner whose data is shown: the key's own, or the one the operator picked.
    pub partner: Option<String>,
    pub partner_name: String,
}

// Never printed: the token is a secret.
impl std::fmt::Debug for Cred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cred([redacted])")
    }
}

/// An API key looks like `klk.<partner>.<random>`; anything else is tried as the admin token.
pub fn looks_like_api_key(token: &str) -> bool {
    token.starts_with("klk.")
}

fn storage() -> Option<web_sys::Storage> {
    crate::window().session_storage().ok().flatten()
}

impl Cred {
    pub fn save(&self) {
        let Some(s) = storage() else { return };
        let o = js_sys::Object::new();
        let set = |k: &str, v: JsValue| Reflect::set(&o, &k.into(), &v).is_ok();
        set("token", self.token.as_str().into());
        set("admin", self.admin.into());
        if let Some(p) = &self.partner {
            set("partner", p.as_str().into());
        }
        set("partner_name", self.partner_name.as_str().into());
        if let Ok(json) = JSON::stringify(&o) {
            let _ = s.set_item(STORE_KEY, &String::from(json));
        }
    }

    pub fn load() -> Option<Cred> {
        let raw = storage()?.get_item(STORE_KEY).ok()??;
        let v = JSON::parse(&raw).ok()?;
        let get = |k: &str| Reflect::get(&v, &k.into()).ok();
        Some(Cred {
            token: get("token")?.as_string().filter(|t| !t.is_empty())?,
            admin: get("admin")?.as_bool()?,
            partner: get("partner").and_then(|p| p.as_string()),
            partner_name: get("partner_name")
                .and_then(|p| p.as_string())
                .unwrap_or_default(),
        })
    }

    pub fn forget() {
        if let Some(s) = storage() {
            let _ = s.remove_item(STORE_KEY);
        }
    }
}

/// A call that did not succeed: the API's own code and message, or the console's (`network`,
/// `unexpected`) with a sentence of its own.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn new(status: u16, code: &str, message: &str) -> Self {
        Failure {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    fn network() -> Self {
        Failure::new(
            0,
            "network",
            "The keaplink Worker could not be reached. Check the connection and try again.",
        )
    }

    /// Whether asking again may help: no answer, a busy or failing Worker, a limit. A refusal
    /// of what was asked (a bad id, a link that is gone) will be refused again.
    pub fn retryable(&self) -> bool {
        self.status == 0 || self.status == 429 || self.status >= 500
    }

    /// The credential itself was refused: the console must sign in again.
    pub fn signed_out(&self) -> bool {
        self.status == 401
    }

    /// An answer whose body this console cannot read.
    pub fn unreadable(what: &str) -> Self {
        Failure::new(
            0,
            "unexpected",
            &format!("{what} answered a body this console cannot read."),
        )
    }
}

async fn settle(p: Result<js_sys::Promise, JsValue>) -> Result<JsValue, Failure> {
    JsFuture::from(p.map_err(|_| Failure::network())?)
        .await
        .map_err(|_| Failure::network())
}

/// One call to the Worker: JSON out (`null` for an empty answer such as a 204). The body is read
/// as text, never with `json()`, so a 204 needs no special case.
pub async fn call(
    cred: &Cred,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<JsValue, Failure> {
    let init = RequestInit::new();
    init.set_method(method);
    let headers = Headers::new().map_err(|_| Failure::network())?;
    let _ = headers.set("authorization", &format!("Bearer {}", cred.token));
    if cred.admin {
        if let Some(p) = &cred.partner {
            let _ = headers.set("keaplink-partner", p);
        }
    }
    if let Some(b) = &body {
        let _ = headers.set("content-type", "application/json");
        init.set_body(&JsValue::from_str(b));
    }
    init.set_headers(&headers);
    // The answers carry data a support person may not leave in a shared cache.
    init.set_cache(web_sys::RequestCache::NoStore);
    let resp: Response = settle(Ok(crate::window().fetch_with_str_and_init(path, &init)))
        .await?
        .unchecked_into();
    let text = settle(resp.text()).await?.as_string().unwrap_or_default();
    let status = resp.status();
    let json = if text.is_empty() {
        JsValue::NULL
    } else {
        JSON::parse(&text).unwrap_or(JsValue::NULL)
    };
    if (200..300).contains(&status) {
        return Ok(json);
    }
    Err(match crate::wire::error(&json) {
        Some((code, message)) => Failure {
            status,
            code,
            message,
        },
        None => Failure::new(
            status,
            "unexpected",
            &format!("The keaplink Worker answered {status} without an error body."),
        ),
    })
}

/// `s` as one query-string value.
pub fn enc(s: &str) -> String {
    js_sys::encode_uri_component(s).into()
}
