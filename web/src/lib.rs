//! The `<keap-link>` widget, compiled to wasm.
//!
//! A few lines of JS (`web/js/keap-link.js`) define the custom element, because wasm-bindgen
//! cannot subclass `HTMLElement`; everything the element shows and does is here, inside a
//! shadow root so the partner's CSS cannot reach it. It speaks only the HTTP contract (the types
//! of `keaplink-api`, through `client`), authenticated by the partner's session JWT; it never
//! sees a Keap token. This module owns the element's state and what each action does with it.

mod client;
mod view;
mod wire;

use client::{Client, Failure};
use gloo_events::EventListener;
use js_sys::{Object, Reflect};
use keaplink_api::{CallbackStatus, Connection, CALLBACK_MESSAGE_TYPE};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use view::{known, Note, Texts, View};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{
    CustomEvent, CustomEventInit, Element, HtmlElement, MessageEvent, ShadowRoot, ShadowRootInit,
    ShadowRootMode, Window,
};

// talc instead of Rust's default (dlmalloc, about 3 KB of the 40 KB gzip budget): a few hundred
// bytes, with in-place realloc left out (the `disable-realloc-in-place` feature) for size.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static HEAP: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

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
        reconnecting: RefCell::new(None),
        after: RefCell::new(None),
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
    /// The link the attempt under way reconnects.
    reconnecting: RefCell<Option<String>>,
    /// What a finished attempt leaves to show once the list is loaded again.
    after: RefCell<Option<After>>,
    listeners: RefCell<Vec<EventListener>>,
    first_status: Cell<bool>,
}

/// How a connect attempt ended, for the note it leaves on its link.
enum After {
    /// Connected: this id (`None`: the same-tab return did not say; a reconnect's own link),
    /// and whether it is a new link (only a new one offers the one-click undo).
    Linked(Option<String>, bool),
    /// Refused by the identity lock; the emails are empty after a same-tab return.
    Mismatch { signed_in: String, expected: String },
}

/// Where a same-tab connect remembers its attempt across the trip to Keap (the page's own
/// session storage: only ids, which are no secret and useless without the session).
const STASH: &str = "keaplink:attempt";

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
    /// message (`detail.error`, `detail.message`, and any `extra` fields), and the same on the
    /// console. The user reads a sentence instead, which the caller shows.
    fn report(&self, code: &str, message: &str, extra: &[(&str, &str)]) {
        console_error("keaplink:", code, message);
        let mut pairs = vec![("error", code), ("message", message)];
        pairs.extend(extra.iter().filter(|(_, v)| !v.is_empty()));
        self.emit("keaplink:error", &detail(&pairs));
    }

    /// A failed action: its sentence as the notice, its code to the developer.
    fn notice_failure(&self, f: &Failure) {
        self.say(self.texts.get(f.says));
        self.report(&f.code, &f.message, &[]);
    }

    fn load(self: Rc<Self>) {
        if matches!(*self.view.borrow(), View::Loading) {
            self.render();
        }
        spawn_local(async move {
            let failure = match self.client.call("GET", "/v1/me/connections", None).await {
                Ok((json, _)) => match wire::connections(&json) {
                    Some(list) => {
                        let note = self.note_after(&list);
                        let mismatch = matches!(note, Note::Mismatch { .. });
                        self.set_view(View::Loaded(list, note));
                        // Keyboard users land on the way on; the panel itself is read out (alert).
                        if mismatch {
                            view::focus(&self.root, "[data-action=try-again]");
                        }
                        return;
                    }
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
            self.report(&failure.code, &failure.message, &[]);
        });
    }

    /// The note a finished attempt leaves on its link, now that the list is fresh: whom a connect
    /// linked, or the mismatch on the link a reconnect was for (whose sentence then leaves the
    /// notice for the link itself).
    fn note_after(&self, list: &[Connection]) -> Note {
        let reconnecting = self.reconnecting.borrow().clone();
        let has = |id: &str| list.iter().any(|c| c.id == id);
        let mine = reconnecting.filter(|id| has(id));
        match self.after.borrow_mut().take() {
            Some(After::Linked(id, new)) => match id.filter(|id| has(id)) {
                Some(id) => Note::LinkedAs(id, new),
                None => mine.map_or(Note::None, |id| Note::LinkedAs(id, false)),
            },
            Some(After::Mismatch {
                signed_in,
                expected,
            }) => {
                // A plain connect that landed on a linked app names no link: the one it hit has
                // the expected email.
                let hit = mine.or_else(|| {
                    let same = |c: &&Connection| c.keap_user.email.eq_ignore_ascii_case(&expected);
                    list.iter().find(same).map(|c| c.id.clone())
                });
                match hit {
                    Some(id) => {
                        self.notice.borrow_mut().take();
                        Note::Mismatch { id, signed_in }
                    }
                    None => Note::None,
                }
            }
            None => Note::None,
        }
    }

    /// Changes the list in place (no copy of it: the widget's size budget counts every clone).
    fn edit(&self, f: impl FnOnce(&mut Vec<Connection>, &mut Note)) {
        if let View::Loaded(list, note) = &mut *self.view.borrow_mut() {
            f(list, note);
        }
        self.render();
    }

    fn set_note(&self, new: Note) {
        self.edit(|_, note| *note = new);
    }

    /// Connect, or Reconnect `reconnect` (identity-locked to it); `replace` is disconnected
    /// first ("disconnect and link anew"); `hop` forces the sign-out hop (a try again after the
    /// wrong person signed in). The popup opens inside the click (so no blocker stops it) and is
    /// sent on once the Worker has answered; with no popup, the page itself goes, and comes back
    /// to `return-to` (or this page).
    fn connect(self: Rc<Self>, reconnect: Option<String>, replace: Option<String>, hop: bool) {
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
        *self.reconnecting.borrow_mut() = reconnect.clone();
        *self.notice.borrow_mut() = Some(self.texts.get("opening"));
        self.set_note(Note::None);
        spawn_local(async move {
            if let Some(id) = replace {
                if let Err(f) = self.remove(&id).await {
                    if let Some(p) = self.popup.borrow_mut().take() {
                        let _ = p.close();
                    }
                    return self.notice_failure(&f);
                }
            }
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
            let body = wire::connect_body(
                hop || self.sign_out_first(),
                return_to.as_deref(),
                reconnect.as_deref(),
            );
            let failure = match self.client.call("POST", "/v1/me/connect", body).await {
                Ok((json, _)) => match wire::authorize_url(&json) {
                    Some(url) => {
                        // No popup left after one was opened: the user closed it meanwhile
                        // (the watcher has said so), and the page stays where it is.
                        let _ = match (self.popup.borrow().as_ref(), redirect) {
                            (Some(p), _) => p.location().set_href(&url),
                            (None, true) => {
                                stash(reconnect.as_deref().unwrap_or_default());
                                window().location().assign(&url)
                            }
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

    /// Deletes link `id`: the widget's list loses it and the page hears of it
    /// (`keaplink:disconnected`). Answers where to remove the app on Keap's side.
    async fn remove(&self, id: &str) -> Result<Option<String>, Failure> {
        let path = format!("/v1/me/connections/{}", encode(id));
        let (_, headers) = self.client.call("DELETE", &path, None).await?;
        self.edit(|list, note| {
            list.retain(|c| c.id != id);
            *note = Note::None;
        });
        self.emit("keaplink:disconnected", &detail(&[("connection_id", id)]));
        Ok(headers.get("link").ok().flatten().and_then(|l| {
            l.split('>')
                .next()
                .map(|s| s.trim_start_matches('<').to_owned())
        }))
    }

    /// Disconnect (confirmed, or the undo of a link just made), pointing to Account Central.
    fn disconnect(self: Rc<Self>, id: String) {
        spawn_local(async move {
            match self.remove(&id).await {
                Ok(central) => {
                    self.say(self.texts.get("disconnected"));
                    if let Some(url) = central {
                        view::append_central_link(&self.root, &url, &self.texts);
                    }
                }
                Err(f) => self.notice_failure(&f),
            }
        });
    }

    /// Shows link `link`'s Connected assistants, fetched now (nothing is asked while they are
    /// closed); with `revoke`, that assistant's access is ended first (at once: its tokens stop
    /// working) and the list shown is what remains.
    fn assistants(self: Rc<Self>, link: String, revoke: Option<String>) {
        spawn_local(async move {
            let path = format!("/v1/me/connections/{}/assistants", encode(&link));
            if let Some(grant) = revoke {
                let gone = format!("{path}/{}", encode(&grant));
                match self.client.call("DELETE", &gone, None).await {
                    // Revoked already (another tab, or the link's own end): what the user asked
                    // for. The list fetched below shows what remains.
                    Err(f) if f.code != "not_found" => return self.notice_failure(&f),
                    _ => *self.notice.borrow_mut() = Some(self.texts.get("revoked")),
                }
            }
            match self.client.call("GET", &path, None).await {
                Ok((json, _)) => {
                    let list = wire::field(&json, "assistants").dyn_into();
                    self.set_note(Note::Assistants(link.clone(), list.unwrap_or_default()));
                    self.focus_assistants(&link);
                }
                Err(f) => self.notice_failure(&f),
            }
        });
    }

    /// Focus back on a link's disclosure, which the render replaced.
    fn focus_assistants(&self, link: &str) {
        view::focus(&self.root, &format!("[aria-expanded][data-id=\"{link}\"]"));
    }

    fn on_click(self: &Rc<Self>, target: Element) {
        let Ok(Some(button)) = target.closest("[data-action]") else {
            return;
        };
        let id = button.get_attribute("data-id").unwrap_or_default();
        let open = match &*self.view.borrow() {
            View::Loaded(_, Note::Assistants(link, _)) => Some(link.clone()),
            _ => None,
        };
        let me = self.clone();
        match button.get_attribute("data-action").as_deref() {
            Some("connect") => me.connect(None, None, false),
            Some("reconnect") => me.connect(Some(id), None, false),
            Some("try-again") => me.connect(Some(id), None, true),
            Some("confirm-anew") => me.connect(None, Some(id), true),
            Some("retry") => {
                self.set_view(View::Loading);
                me.load();
            }
            Some("disconnect") => {
                self.set_note(Note::Confirm(id));
                view::focus(&self.root, "[data-action=confirm-disconnect]");
            }
            Some("link-anew") => {
                self.set_note(Note::ConfirmAnew(id));
                view::focus(&self.root, "[data-action=confirm-anew]");
            }
            // The undo of a link the user just made: no confirmation.
            Some("confirm-disconnect") | Some("undo") => me.disconnect(id),
            Some("cancel") => self.set_note(Note::None),
            // Open, or closed again (the open list is the link's note).
            Some("assistants") if open.as_deref() == Some(&id) => {
                self.set_note(Note::None);
                self.focus_assistants(&id);
            }
            Some("assistants") => me.assistants(id, None),
            Some("revoke") => {
                if let Some(link) = open {
                    me.assistants(link, Some(id));
                }
            }
            _ => {}
        }
    }

    /// The outcome of a connect (the popup's message or the same-tab return): the notice the
    /// user reads, the event, and the note left for after the reload.
    fn outcome(&self, connected: bool, id: &str, error: &str, signed_in: &str, expected: &str) {
        if connected {
            // Undoing a reconnect by deleting would take more than the user just did: the link
            // was there before (the identity lock kept it to the same Keap user).
            let existed = match &*self.view.borrow() {
                View::Loaded(list, _) => list.iter().any(|c| c.id == id),
                _ => false,
            } || self.reconnecting.borrow().as_deref() == Some(id);
            let said = if existed { "reconnected" } else { "connected" };
            *self.notice.borrow_mut() = Some(self.texts.get(said));
            *self.after.borrow_mut() = Some(After::Linked(
                Some(id).filter(|i| !i.is_empty()).map(Into::into),
                !existed,
            ));
            self.emit("keaplink:connected", &detail(&[("connection_id", id)]));
            return;
        }
        let mismatch = error == "identity_mismatch";
        let name = if mismatch {
            view::mismatch_says(signed_in, expected)
        } else {
            known(error, "not-connected")
        };
        // The link a reconnect was for names the app when the same person picked another one.
        let reconnecting = self.reconnecting.borrow().clone().unwrap_or_default();
        let app = match &*self.view.borrow() {
            View::Loaded(list, _) => list
                .iter()
                .find(|c| c.id == reconnecting)
                .map(view::app_label),
            _ => None,
        }
        .unwrap_or_default();
        let line = view::fill_text(
            &self.texts.get(name),
            &[
                ("signed_in", signed_in),
                ("expected", expected),
                ("app", &app),
            ],
        );
        self.report(
            error,
            &line,
            &[("signed_in", signed_in), ("expected", expected)],
        );
        *self.notice.borrow_mut() = Some(line);
        if mismatch {
            *self.after.borrow_mut() = Some(After::Mismatch {
                signed_in: signed_in.into(),
                expected: expected.into(),
            });
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
        self.outcome(
            msg.status == CallbackStatus::Connected,
            msg.connection_id.as_deref().unwrap_or_default(),
            msg.error.as_deref().unwrap_or("error"),
            msg.signed_in.as_deref().unwrap_or_default(),
            msg.expected.as_deref().unwrap_or_default(),
        );
        self.clone().load();
    }

    /// Back from a same-tab redirect: the page's URL says how it went, and the stash which link
    /// the attempt was for.
    fn note_redirect_return(&self) {
        let search = window().location().search().unwrap_or_default();
        let Ok(params) = web_sys::UrlSearchParams::new_with_str(&search) else {
            return;
        };
        let outcome = params.get("keaplink");
        if outcome.is_none() {
            return;
        }
        *self.reconnecting.borrow_mut() = unstash();
        let reason = params.get("reason").unwrap_or_else(|| "error".into());
        match outcome.as_deref() {
            // The return names the link when the Worker says which; else a reconnect's is known.
            Some("connected") => {
                let id = params.get("connection_id").unwrap_or_default();
                self.outcome(true, &id, "", "", "")
            }
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

fn session_storage() -> Option<web_sys::Storage> {
    window().session_storage().ok().flatten()
}

/// Remembers across a same-tab trip to Keap which link the attempt reconnects ("" for none).
fn stash(reconnect: &str) {
    if let Some(s) = session_storage() {
        let _ = s.set_item(STASH, reconnect);
    }
}

/// The link `stash` remembered, once.
fn unstash() -> Option<String> {
    let s = session_storage()?;
    let id = s.get_item(STASH).ok().flatten();
    let _ = s.remove_item(STASH);
    id.filter(|id| !id.is_empty())
}

fn encode(s: &str) -> String {
    js_sys::encode_uri_component(s).into()
}

/// `{key: value, ...}` for an event's `detail`.
fn detail(pairs: &[(&str, &str)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&o, &(*k).into(), &(*v).into());
    }
    o.into()
}
