//! The `<keap-link>` widget, compiled to wasm.
//!
//! A few lines of JS (`web/js/keap-link.js`) define the custom element, because wasm-bindgen
//! cannot subclass `HTMLElement`; everything the element shows and does is here, inside a
//! shadow root so the partner's CSS cannot reach it. It speaks only the HTTP contract (the types
//! of `keaplink-api`), authenticated by the partner's session JWT; it never sees a Keap token.

mod view;
mod wire;

use gloo_events::EventListener;
use js_sys::{Object, Reflect};
use keaplink_api::{CallbackStatus, Connection, CALLBACK_MESSAGE_TYPE};
use std::cell::RefCell;
use std::rc::Rc;
use view::{Texts, View};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{
    CustomEvent, CustomEventInit, Element, HtmlElement, MessageEvent, RequestInit, ShadowRoot,
    ShadowRootInit, ShadowRootMode, Window,
};

/// The handle the custom element keeps: `refresh()` after an attribute changes, `destroy()`
/// when it leaves the page.
#[wasm_bindgen]
pub struct KeapLink {
    widget: Rc<Widget>,
}

#[wasm_bindgen]
impl KeapLink {
    /// Reloads the status (for instance after the `session` attribute changed).
    pub fn refresh(&self) {
        self.widget.session.borrow_mut().take();
        self.widget.set_view(View::Loading);
        self.widget.clone().load();
    }

    /// Removes the widget's listeners.
    pub fn destroy(&self) {
        self.widget.listeners.borrow_mut().clear();
    }
}

/// Renders the widget into `host` (the `<keap-link>` element) and loads the status from the
/// keaplink Worker at `api_base`.
#[wasm_bindgen]
pub fn mount(host: HtmlElement, api_base: String) -> Result<KeapLink, JsValue> {
    let root = match host.shadow_root() {
        Some(root) => root,
        None => {
            let root = host.attach_shadow(&ShadowRootInit::new(ShadowRootMode::Open))?;
            let sheet = web_sys::CssStyleSheet::new()?;
            sheet.replace_sync(view::STYLE)?;
            root.set_adopted_style_sheets(&js_sys::Array::of1(&sheet));
            root
        }
    };
    let api = api_base.trim_end_matches('/').to_owned();
    let api_origin = web_sys::Url::new(&api)?.origin();
    let widget = Rc::new(Widget {
        texts: Texts::from_host(&host),
        host,
        root,
        api,
        api_origin,
        view: RefCell::new(View::Loading),
        notice: RefCell::new(None),
        popup: RefCell::new(None),
        session: RefCell::new(None),
        listeners: RefCell::new(Vec::new()),
        first_status: RefCell::new(false),
    });
    widget.host.set_attribute("data-rendered-by", "wasm")?;
    widget.clone().listen();
    widget.clone().note_redirect_return();
    widget.clone().load();
    Ok(KeapLink { widget })
}

struct Widget {
    host: HtmlElement,
    root: ShadowRoot,
    api: String,
    api_origin: String,
    texts: Texts,
    view: RefCell<View>,
    /// The line read out by the `aria-live` region.
    notice: RefCell<Option<String>>,
    popup: RefCell<Option<Window>>,
    /// A session fetched from `session-url`, and when it expires.
    session: RefCell<Option<(String, f64)>>,
    listeners: RefCell<Vec<EventListener>>,
    first_status: RefCell<bool>,
}

fn window() -> Window {
    web_sys::window().expect("a window")
}

fn now_secs() -> f64 {
    js_sys::Date::now() / 1000.0
}

/// What went wrong talking to the Worker, as the user should read it.
struct Failure {
    code: String,
    message: String,
}

impl Failure {
    fn network() -> Self {
        Failure {
            code: "network".into(),
            message: "Could not reach the Keap link service. Check your connection and try again."
                .into(),
        }
    }
}

/// `exp` of a JWT, read without verifying (the Worker verifies; this only schedules renewal).
fn jwt_exp(token: &str) -> Option<f64> {
    let payload = token.split('.').nth(1)?;
    let mut b64 = payload.replace('-', "+").replace('_', "/");
    while b64.len() % 4 != 0 {
        b64.push('=');
    }
    let json = window().atob(&b64).ok()?;
    let value = js_sys::JSON::parse(&json).ok()?;
    Reflect::get(&value, &"exp".into()).ok()?.as_f64()
}

impl Widget {
    fn attr(&self, name: &str) -> Option<String> {
        self.host
            .get_attribute(name)
            .filter(|v| !v.trim().is_empty())
    }

    fn sign_out_first(&self) -> bool {
        self.attr("sign-out-first").is_none_or(|v| v != "false")
    }

    fn render(&self) {
        let html = view::render(
            &self.view.borrow(),
            self.notice.borrow().as_deref(),
            &self.texts,
            self.sign_out_first(),
        );
        self.root.set_inner_html(&html);
        let settled = !matches!(*self.view.borrow(), View::Loading);
        if settled && !self.first_status.replace(true) {
            // For measuring script-load-to-first-status (the Performance API).
            if let Some(p) = window().performance() {
                let _ = p.mark("keaplink:first-status");
            }
        }
    }

    fn set_view(&self, v: View) {
        *self.view.borrow_mut() = v;
        self.render();
    }

    fn say(&self, line: impl Into<String>) {
        *self.notice.borrow_mut() = Some(line.into());
        self.render();
    }

    fn emit(&self, name: &str, detail: &JsValue) {
        let init = CustomEventInit::new();
        init.set_bubbles(true);
        init.set_composed(true);
        init.set_detail(detail);
        if let Ok(e) = CustomEvent::new_with_event_init_dict(name, &init) {
            let _ = self.host.dispatch_event(&e);
        }
    }

    /// The session JWT: the `session` attribute, or one fetched from `session-url` and kept
    /// until a minute before it expires.
    async fn session_token(&self, renew: bool) -> Result<String, Failure> {
        if let Some(s) = self.attr("session") {
            return Ok(s);
        }
        let Some(url) = self.attr("session-url") else {
            return Err(Failure {
                code: "no_session".into(),
                message: "This page gave the widget no session (set session or session-url)."
                    .into(),
            });
        };
        if !renew {
            if let Some((token, exp)) = self.session.borrow().clone() {
                if exp - now_secs() > 60.0 {
                    return Ok(token);
                }
            }
        }
        let init = RequestInit::new();
        let resp = JsFuture::from(window().fetch_with_str_and_init(&url, &init))
            .await
            .map_err(|_| Failure::network())?;
        let resp: web_sys::Response = resp.unchecked_into();
        let text = JsFuture::from(resp.text().map_err(|_| Failure::network())?)
            .await
            .ok()
            .and_then(|t| t.as_string())
            .unwrap_or_default();
        // Either the bare JWT, or {"session": "..."}.
        let token = js_sys::JSON::parse(&text)
            .ok()
            .and_then(|v| Reflect::get(&v, &"session".into()).ok())
            .and_then(|v| v.as_string())
            .unwrap_or_else(|| text.trim().to_owned());
        if !resp.ok() || token.is_empty() {
            return Err(Failure {
                code: "session_expired".into(),
                message: "Your session has expired. Reload the page to sign in again.".into(),
            });
        }
        let exp = jwt_exp(&token).unwrap_or(now_secs() + 300.0);
        *self.session.borrow_mut() = Some((token.clone(), exp));
        Ok(token)
    }

    /// One call to the Worker: JSON in, JSON out, the session as bearer. A 401 with
    /// `session-url` renews the session once.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<(JsValue, web_sys::Headers), Failure> {
        let mut renew = false;
        loop {
            let token = self.session_token(renew).await?;
            let init = RequestInit::new();
            init.set_method(method);
            let headers = web_sys::Headers::new().map_err(|_| Failure::network())?;
            let _ = headers.set("authorization", &format!("Bearer {token}"));
            if let Some(b) = &body {
                let _ = headers.set("content-type", "application/json");
                init.set_body(&JsValue::from_str(b));
            }
            init.set_headers(&headers);
            init.set_mode(web_sys::RequestMode::Cors);
            let url = format!("{}{}", self.api, path);
            let resp = JsFuture::from(window().fetch_with_str_and_init(&url, &init))
                .await
                .map_err(|_| Failure::network())?;
            let resp: web_sys::Response = resp.unchecked_into();
            let status = resp.status();
            if status == 401 && !renew && self.attr("session-url").is_some() {
                renew = true;
                continue;
            }
            let json = match resp.json() {
                Ok(p) if status != 204 => JsFuture::from(p).await.unwrap_or(JsValue::NULL),
                _ => JsValue::NULL,
            };
            if (200..300).contains(&status) {
                return Ok((json, resp.headers()));
            }
            return Err(match wire::error(&json) {
                Some((code, _)) if status == 401 => Failure {
                    code,
                    message: "Your session has expired. Reload the page to sign in again.".into(),
                },
                Some((code, message)) => Failure { code, message },
                None => Failure {
                    code: "unexpected".into(),
                    message: format!("The Keap link service answered {status}. Try again."),
                },
            });
        }
    }

    fn load(self: Rc<Self>) {
        if matches!(*self.view.borrow(), View::Loading) {
            self.render();
        }
        spawn_local(async move {
            match self.call("GET", "/v1/me/connections", None).await {
                Ok((json, _)) => match wire::connections(&json) {
                    Some(list) => self.set_view(View::Loaded(list)),
                    None => self.fail(
                        "The Keap link service answered in a way this widget does not understand.",
                        "unexpected",
                    ),
                },
                Err(f) => self.fail(&f.message, &f.code),
            }
        });
    }

    fn fail(&self, message: &str, code: &str) {
        self.set_view(View::Failed(message.to_owned()));
        self.emit(
            "keaplink:error",
            &detail(&[("error", code), ("message", message)]),
        );
    }

    fn connections(&self) -> Vec<Connection> {
        match &*self.view.borrow() {
            View::Loaded(c) | View::Confirm(c, _) => c.clone(),
            _ => Vec::new(),
        }
    }

    /// Connect or Reconnect. The popup opens inside the click (so no blocker stops it) and is
    /// sent on once the Worker has answered; with no popup, the page itself goes, and comes back
    /// to `return-to` (or this page).
    fn connect(self: Rc<Self>) {
        let features = "popup,width=520,height=720";
        let popup = window()
            .open_with_url_and_target_and_features("about:blank", "keaplink-connect", features)
            .ok()
            .flatten();
        let redirect = popup.is_none();
        *self.popup.borrow_mut() = popup;
        self.say(self.texts.opening.clone());
        spawn_local(async move {
            let return_to = redirect.then(|| {
                self.attr("return-to").unwrap_or_else(|| {
                    let l = window().location();
                    format!(
                        "{}{}",
                        l.origin().unwrap_or_default(),
                        l.pathname().unwrap_or_default()
                    )
                })
            });
            let body = wire::connect_body(self.sign_out_first(), return_to.as_deref());
            match self.call("POST", "/v1/me/connect", body).await {
                Ok((json, _)) => {
                    let Some(authorize_url) = wire::authorize_url(&json) else {
                        return self.say("The Keap link service answered unexpectedly.");
                    };
                    match self.popup.borrow().as_ref() {
                        Some(p) => {
                            let _ = p.location().set_href(&authorize_url);
                        }
                        None => {
                            let _ = window().location().assign(&authorize_url);
                        }
                    }
                }
                Err(f) => {
                    if let Some(p) = self.popup.borrow_mut().take() {
                        let _ = p.close();
                    }
                    self.say(f.message.clone());
                    self.emit(
                        "keaplink:error",
                        &detail(&[("error", &f.code), ("message", &f.message)]),
                    );
                }
            }
        });
    }

    fn disconnect(self: Rc<Self>, id: String) {
        spawn_local(async move {
            let path = format!("/v1/me/connections/{}", js_sys::encode_uri_component(&id));
            match self.call("DELETE", &path, None).await {
                Ok((_, headers)) => {
                    let central = headers.get("link").ok().flatten().and_then(|l| {
                        l.split('>')
                            .next()
                            .map(|s| s.trim_start_matches('<').to_owned())
                    });
                    let mut list = self.connections();
                    list.retain(|c| c.id != id);
                    *self.notice.borrow_mut() = Some(self.texts.disconnected.clone());
                    self.set_view(View::Loaded(list));
                    if let Some(url) = central {
                        view::append_central_link(&self.root, &url, &self.texts);
                    }
                    self.emit("keaplink:disconnected", &detail(&[("connection_id", &id)]));
                }
                Err(f) => {
                    self.say(f.message.clone());
                    self.emit(
                        "keaplink:error",
                        &detail(&[("error", &f.code), ("message", &f.message)]),
                    );
                }
            }
        });
    }

    fn on_click(self: &Rc<Self>, target: Element) {
        let Ok(Some(button)) = target.closest("[data-action]") else {
            return;
        };
        let id = button.get_attribute("data-id").unwrap_or_default();
        match button.get_attribute("data-action").as_deref() {
            Some("connect") => self.clone().connect(),
            Some("retry") => {
                self.set_view(View::Loading);
                self.clone().load();
            }
            Some("disconnect") => {
                let list = self.connections();
                self.set_view(View::Confirm(list, id));
                view::focus(&self.root, "[data-action=confirm-disconnect]");
            }
            Some("confirm-disconnect") => self.clone().disconnect(id),
            Some("cancel") => {
                let list = self.connections();
                self.set_view(View::Loaded(list));
            }
            _ => {}
        }
    }

    /// The callback page's `postMessage`: only from the Worker's exact origin and only from the
    /// popup this widget opened.
    fn on_message(self: &Rc<Self>, e: &MessageEvent) {
        if e.origin() != self.api_origin {
            return;
        }
        let from_our_popup = match (e.source(), self.popup.borrow().as_ref()) {
            (Some(source), Some(popup)) => Object::is(&source, popup),
            _ => false,
        };
        if !from_our_popup {
            return;
        }
        let Some(msg) = wire::callback_message(&e.data()) else {
            return;
        };
        if msg.kind != CALLBACK_MESSAGE_TYPE {
            return;
        }
        self.popup.borrow_mut().take();
        match msg.status {
            CallbackStatus::Connected => {
                *self.notice.borrow_mut() = Some(self.texts.connected.clone());
                let id = msg.connection_id.unwrap_or_default();
                self.emit("keaplink:connected", &detail(&[("connection_id", &id)]));
            }
            CallbackStatus::Error => {
                let code = msg.error.unwrap_or_else(|| "error".into());
                *self.notice.borrow_mut() = Some(format!("{} ({code})", self.texts.not_connected));
                self.emit("keaplink:error", &detail(&[("error", &code)]));
            }
        }
        self.clone().load();
    }

    /// Back from a same-tab redirect: the page's URL says how it went.
    fn note_redirect_return(self: Rc<Self>) {
        let search = window().location().search().unwrap_or_default();
        let Ok(params) = web_sys::UrlSearchParams::new_with_str(&search) else {
            return;
        };
        match params.get("keaplink").as_deref() {
            Some("connected") => {
                *self.notice.borrow_mut() = Some(self.texts.connected.clone());
                self.emit("keaplink:connected", &detail(&[]));
            }
            Some("error") => {
                let code = params.get("reason").unwrap_or_default();
                *self.notice.borrow_mut() = Some(format!("{} ({code})", self.texts.not_connected));
                self.emit("keaplink:error", &detail(&[("error", &code)]));
            }
            _ => {}
        }
    }

    fn listen(self: Rc<Self>) {
        let me = self.clone();
        let click = EventListener::new(&self.root, "click", move |e| {
            if let Some(t) = e.target().and_then(|t| t.dyn_into::<Element>().ok()) {
                me.on_click(t);
            }
        });
        let me = self.clone();
        let message = EventListener::new(&window(), "message", move |e| {
            if let Some(m) = e.dyn_ref::<MessageEvent>() {
                me.on_message(m);
            }
        });
        self.listeners.borrow_mut().extend([click, message]);
    }
}

/// `{key: value, ...}` for an event's `detail`.
fn detail(pairs: &[(&str, &str)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&o, &(*k).into(), &(*v).into());
    }
    o.into()
}
