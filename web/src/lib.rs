//! The `<keap-link>` widget, compiled to wasm.
//!
//! A few lines of JS (`web/js/keap-link.js`) define the custom element, because wasm-bindgen
//! cannot subclass `HTMLElement`; everything the element shows and does is here, inside a
//! shadow root so the partner's CSS cannot reach it. It speaks only the HTTP contract (the types
//! of `keaplink-api`, through `client`), authenticated by the partner's session JWT; it never
//! sees a Keap token. This module owns the element's state and what each action does with it.

mod client;
#[cfg(any(target_arch = "wasm32", test))]
mod heap;
mod view;
mod wire;

use client::{Client, Failure};
use gloo_events::EventListener;
use js_sys::{Object, Reflect};
use keaplink_api::{CallbackStatus, Connection, CALLBACK_MESSAGE_TYPE};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use view::{known, Texts, View};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{
    CustomEvent, CustomEventInit, Element, HtmlElement, MessageEvent, ShadowRoot, ShadowRootInit,
    ShadowRootMode, Window,
};

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static HEAP: heap::Heap = heap::Heap::new(core::arch::wasm32::memory_grow::<0>);

#[wasm_bindgen]
extern "C" {
    /// For the developer: every `keaplink:error` is also logged, with its code.
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(a: &str, b: &str, c: &str);
}

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
        self.widget.client.forget();
        self.widget.set_view(View::Loading);
        self.widget.clone().load();
    }

    /// Removes the widget's listeners, and stops watching a popup.
    pub fn destroy(&self) {
        self.widget.listeners.borrow_mut().clear();
        self.widget.popup.borrow_mut().take();
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
        texts: Texts(host.clone()),
        client: Client::new(host.clone(), api),
        host,
        root,
        api_origin,
        view: RefCell::new(View::Loading),
        notice: RefCell::new(None),
        popup: RefCell::new(None),
        attempt: Cell::new(0),
        listeners: RefCell::new(Vec::new()),
        first_status: Cell::new(false),
    });
    widget.host.set_attribute("data-rendered-by", "wasm")?;
    widget.clone().listen();
    widget.note_redirect_return();
    widget.clone().load();
    Ok(KeapLink { widget })
}

struct Widget {
    host: HtmlElement,
    root: ShadowRoot,
    client: Client,
    api_origin: String,
    texts: Texts,
    view: RefCell<View>,
    /// The line read out by the `aria-live` region.
    notice: RefCell<Option<String>>,
    /// The Connect popup while the widget waits on it; taken when its answer comes or it closes.
    popup: RefCell<Option<Window>>,
    /// Counts Connect clicks, so a popup watcher knows when a newer attempt replaced its own.
    attempt: Cell<u32>,
    listeners: RefCell<Vec<EventListener>>,
    first_status: Cell<bool>,
}

fn window() -> Window {
    web_sys::window().expect("a window")
}

/// Resolves after `ms` milliseconds.
async fn sleep(ms: i32) {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = JsFuture::from(p).await;
}

impl Widget {
    fn sign_out_first(&self) -> bool {
        self.host
            .get_attribute("sign-out-first")
            .is_none_or(|v| v != "false")
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

    fn say(&self, line: String) {
        *self.notice.borrow_mut() = Some(line);
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

    /// The one place a failure reaches the developer: `keaplink:error` with the code and a
    /// message (`detail.error`, `detail.message`), and the same on the console. The user reads
    /// a sentence instead, which the caller shows.
    fn report(&self, code: &str, message: &str) {
        console_error("keaplink:", code, message);
        self.emit(
            "keaplink:error",
            &detail(&[("error", code), ("message", message)]),
        );
    }

    /// A failed action: its sentence as the notice, its code to the developer.
    fn notice_failure(&self, f: &Failure) {
        self.say(self.texts.get(f.says));
        self.report(&f.code, &f.message);
    }

    fn load(self: Rc<Self>) {
        if matches!(*self.view.borrow(), View::Loading) {
            self.render();
        }
        spawn_local(async move {
            let failure = match self.client.call("GET", "/v1/me/connections", None).await {
                Ok((json, _)) => match wire::connections(&json) {
                    Some(list) => return self.set_view(View::Loaded(list)),
                    None => Failure {
                        code: "unexpected".into(),
                        message: "GET /v1/me/connections answered a body this widget cannot read."
                            .into(),
                        says: "error",
                    },
                },
                Err(f) => f,
            };
            self.set_view(View::Failed(failure.says));
            self.report(&failure.code, &failure.message);
        });
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
        self.attempt.set(self.attempt.get() + 1);
        if !redirect {
            self.clone().watch_popup();
        }
        self.say(self.texts.get("opening"));
        spawn_local(async move {
            let return_to = redirect.then(|| {
                self.host.get_attribute("return-to").unwrap_or_else(|| {
                    let l = window().location();
                    format!(
                        "{}{}",
                        l.origin().unwrap_or_default(),
                        l.pathname().unwrap_or_default()
                    )
                })
            });
            let body = wire::connect_body(self.sign_out_first(), return_to.as_deref());
            let failure = match self.client.call("POST", "/v1/me/connect", body).await {
                Ok((json, _)) => match wire::authorize_url(&json) {
                    Some(url) => {
                        // No popup left after one was opened: the user closed it meanwhile
                        // (the watcher has said so), and the page stays where it is.
                        let _ = match (self.popup.borrow().as_ref(), redirect) {
                            (Some(p), _) => p.location().set_href(&url),
                            (None, true) => window().location().assign(&url),
                            (None, false) => Ok(()),
                        };
                        return;
                    }
                    None => Failure {
                        code: "unexpected".into(),
                        message: "POST /v1/me/connect answered no authorize_url.".into(),
                        says: "error",
                    },
                },
                Err(f) => f,
            };
            if let Some(p) = self.popup.borrow_mut().take() {
                let _ = p.close();
            }
            self.notice_failure(&failure);
        });
    }

    /// Notices the user closing the popup. The callback page posts its message before it closes
    /// itself, so a popup closed with no message means the user gave up: the widget shows what it
    /// showed before, with a short notice.
    fn watch_popup(self: Rc<Self>) {
        let attempt = self.attempt.get();
        let ours = move |w: &Widget| w.attempt.get() == attempt && w.popup.borrow().is_some();
        spawn_local(async move {
            while ours(&self) {
                sleep(500).await;
                let closed = self
                    .popup
                    .borrow()
                    .as_ref()
                    .is_some_and(|p| p.closed().unwrap_or(false));
                if !closed {
                    continue;
                }
                // A message posted just before the close may still be queued behind this check:
                // it gets a whole second (it takes microseconds) to land and claim the popup.
                sleep(1000).await;
                if ours(&self) {
                    self.popup.borrow_mut().take();
                    let f = Failure {
                        code: "popup_closed".into(),
                        message: "The Keap popup was closed before the connection finished.".into(),
                        says: "popup-closed",
                    };
                    self.notice_failure(&f);
                }
                return;
            }
        });
    }

    fn disconnect(self: Rc<Self>, id: String) {
        spawn_local(async move {
            let path = format!("/v1/me/connections/{}", js_sys::encode_uri_component(&id));
            match self.client.call("DELETE", &path, None).await {
                Ok((_, headers)) => {
                    let central = headers.get("link").ok().flatten().and_then(|l| {
                        l.split('>')
                            .next()
                            .map(|s| s.trim_start_matches('<').to_owned())
                    });
                    let mut list = self.connections();
                    list.retain(|c| c.id != id);
                    *self.notice.borrow_mut() = Some(self.texts.get("disconnected"));
                    self.set_view(View::Loaded(list));
                    if let Some(url) = central {
                        view::append_central_link(&self.root, &url, &self.texts);
                    }
                    self.emit("keaplink:disconnected", &detail(&[("connection_id", &id)]));
                }
                Err(f) => self.notice_failure(&f),
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

    /// The outcome of a connect (the popup's message or the same-tab return): the notice the
    /// user reads, and the event.
    fn outcome(&self, connected: bool, id: &str, error: &str, signed_in: &str, expected: &str) {
        if connected {
            *self.notice.borrow_mut() = Some(self.texts.get("connected"));
            self.emit("keaplink:connected", &detail(&[("connection_id", id)]));
            return;
        }
        // JS's own replace: Rust's substring search would cost the widget more than 2 KB.
        let line: String = js_sys::JsString::from(self.texts.get(known(error, "not-connected")))
            .replace("{signed_in}", signed_in)
            .replace("{expected}", expected)
            .into();
        self.report(error, &line);
        *self.notice.borrow_mut() = Some(line);
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
        self.outcome(
            msg.status == CallbackStatus::Connected,
            msg.connection_id.as_deref().unwrap_or_default(),
            msg.error.as_deref().unwrap_or("error"),
            msg.signed_in.as_deref().unwrap_or_default(),
            msg.expected.as_deref().unwrap_or_default(),
        );
        self.clone().load();
    }

    /// Back from a same-tab redirect: the page's URL says how it went.
    fn note_redirect_return(&self) {
        let search = window().location().search().unwrap_or_default();
        let Ok(params) = web_sys::UrlSearchParams::new_with_str(&search) else {
            return;
        };
        let reason = params.get("reason").unwrap_or_else(|| "error".into());
        match params.get("keaplink").as_deref() {
            Some("connected") => self.outcome(true, "", "", "", ""),
            Some("error") => self.outcome(false, "", &reason, "", ""),
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
