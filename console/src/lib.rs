//! The partner console (`/console/` on the Worker), compiled to wasm.
//!
//! A support person signs in with the partner's API key (or an operator with the admin token,
//! then picks a partner) and sees the partner's links, their health and history, its webhook
//! deliveries and settings, all through the Worker's JSON API. This module owns the page's state,
//! what each click does, and which call fills which view; `view` makes the HTML, `wire` reads the
//! answers, `client` holds the credential and makes the calls.

mod client;
mod route;
mod view;
mod wire;

use client::{call, enc, Cred, Failure};
use gloo_events::{EventListener, EventListenerOptions};
use keaplink_api::{ConnectionStatus, ReconnectIdentity};
use route::Route;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{Element, HtmlElement, HtmlInputElement, HtmlSelectElement, HtmlTextAreaElement};

/// Links per page: a screenful that one KV list call answers quickly, whatever the total.
const PAGE: u32 = 50;

fn window() -> web_sys::Window {
    web_sys::window().expect("a window")
}

fn document() -> web_sys::Document {
    window().document().expect("a document")
}

fn mark(name: &str) {
    if let Some(p) = window().performance() {
        let _ = p.mark(name);
    }
}

/// Resolves after `ms` milliseconds.
async fn sleep(ms: i32) {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = JsFuture::from(p).await;
}

/// Starts the console in `root`; `notice` is the page's polite live region.
#[wasm_bindgen]
pub fn start(root: Element, notice: Element) {
    let app = Rc::new(App {
        root,
        notice,
        cred: RefCell::new(Cred::load()),
        sign_in_error: RefCell::new(None),
        carried: RefCell::new(None),
        notice_seq: Rc::new(Cell::new(0)),
        gen: Cell::new(0),
        links: RefCell::new(Links::default()),
        partners: RefCell::new(Pages::default()),
        search_seq: Cell::new(0),
        first_rows: Cell::new(false),
        listeners: RefCell::new(Vec::new()),
    });
    app.clone().listen();
    app.show(false);
}

/// A cursor-paged listing: the cursor that opened each page so far (`None` for the first), and
/// the next page's. Going back pops; nothing but the current page is held.
#[derive(Default)]
struct Pages {
    cursors: Vec<Option<String>>,
    next: Option<String>,
}

impl Pages {
    fn reset(&mut self) {
        self.cursors.clear();
        self.next = None;
    }
    fn current(&self) -> Option<String> {
        self.cursors.last().cloned().flatten()
    }
    fn page(&self) -> usize {
        self.cursors.len().max(1)
    }
    fn forward(&mut self) -> bool {
        match self.next.take() {
            Some(c) => {
                self.cursors.push(Some(c));
                true
            }
            None => false,
        }
    }
    fn back(&mut self) -> bool {
        if self.cursors.len() > 1 {
            self.cursors.pop();
            true
        } else {
            false
        }
    }
}

#[derive(Default)]
struct Links {
    q: String,
    status: Option<ConnectionStatus>,
    pages: Pages,
}

struct App {
    root: Element,
    notice: Element,
    cred: RefCell<Option<Cred>>,
    sign_in_error: RefCell<Option<String>>,
    /// Bumped by each notice; a notice is cleared after a while only if none came after it.
    notice_seq: Rc<Cell<u32>>,
    /// A notice to repeat with the next one (`say_across`).
    carried: RefCell<Option<String>>,
    /// Bumped by every navigation and query: an answer for an older one is dropped.
    gen: Cell<u32>,
    links: RefCell<Links>,
    partners: RefCell<Pages>,
    /// Bumped by each keystroke in the search field; only the last one's pause searches.
    search_seq: Cell<u32>,
    /// Whether the first page of links since sign-in has been shown (for the timing mark).
    first_rows: Cell<bool>,
    listeners: RefCell<Vec<EventListener>>,
}

fn by_id(id: &str) -> Option<Element> {
    document().get_element_by_id(id)
}

/// Focuses the first element of `selectors` (a comma list: tried in the order written, not in
/// document order as `querySelector` would) that exists.
fn focus(selectors: &str) {
    for selector in selectors.split(", ") {
        if let Ok(Some(el)) = document().query_selector(selector) {
            if let Ok(el) = el.dyn_into::<HtmlElement>() {
                let _ = el.focus();
                return;
            }
        }
    }
}

fn input_value(id: &str) -> String {
    let Some(el) = by_id(id) else {
        return String::new();
    };
    if let Some(i) = el.dyn_ref::<HtmlInputElement>() {
        return i.value();
    }
    if let Some(t) = el.dyn_ref::<HtmlTextAreaElement>() {
        return t.value();
    }
    if let Some(s) = el.dyn_ref::<HtmlSelectElement>() {
        return s.value();
    }
    String::new()
}

/// The settings form's MCP server fields, as `PATCH /v1/partner`'s `mcp` (the Worker checks
/// them: an https sign-in URL while on).
fn mcp_settings() -> JsValue {
    let sign_in = input_value("mcp-sign-in").trim().to_owned();
    wire::object(&[
        ("enabled", JsValue::from_bool(checked("mcp-on"))),
        ("sign_in_url", wire::text_or_null(&sign_in)),
        (
            "tools",
            JsValue::from_str(if checked("mcp-read-write") {
                "read_write"
            } else {
                "read"
            }),
        ),
    ])
}

fn checked(id: &str) -> bool {
    by_id(id)
        .and_then(|e| e.dyn_into::<HtmlInputElement>().ok())
        .is_some_and(|i| i.checked())
}

fn set_html(id: &str, html: &str) {
    if let Some(el) = by_id(id) {
        el.set_inner_html(html);
    }
}

fn hash() -> String {
    window().location().hash().unwrap_or_default()
}

impl App {
    fn cred(&self) -> Option<Cred> {
        self.cred.borrow().clone()
    }

    fn bump(&self) -> u32 {
        self.gen.set(self.gen.get().wrapping_add(1));
        self.gen.get()
    }

    fn current(&self, gen: u32) -> bool {
        self.gen.get() == gen
    }

    /// A line for the live region (set as text: never HTML), after any line carried over from
    /// the view before.
    fn say(&self, line: &str) {
        let line = match self.carried.borrow_mut().take() {
            Some(first) if !line.is_empty() => format!("{first} {line}"),
            Some(first) => first,
            None => line.to_owned(),
        };
        // Emptied first, so the same line said twice is read out twice.
        self.notice.set_text_content(None);
        self.notice.set_text_content(Some(&line));
        // Off the screen after a while (it has long been read out), unless replaced meanwhile.
        let seq = self.notice_seq.get().wrapping_add(1);
        self.notice_seq.set(seq);
        let notice = self.notice.clone();
        let me_seq = self.notice_seq.clone();
        spawn_local(async move {
            sleep(8000).await;
            if me_seq.get() == seq {
                notice.set_text_content(None);
            }
        });
    }

    /// Going to another view: a notice belongs to the view it was said on (one meant to outlive
    /// it is carried, and said again there).
    fn leave_notice(&self) {
        if self.carried.borrow().is_none() {
            self.notice_seq.set(self.notice_seq.get().wrapping_add(1));
            self.notice.set_text_content(None);
        }
    }

    /// Says `line` now and again with the next view's first line, so that one does not replace
    /// it before it is read.
    fn say_across(&self, line: &str) {
        self.say(line);
        *self.carried.borrow_mut() = Some(line.to_owned());
    }

    /// Renders the view the hash names (or the sign-in), then loads its data.
    fn show(self: &Rc<Self>, move_focus: bool) {
        let gen = self.bump();
        let Some(cred) = self.cred() else {
            let err = self.sign_in_error.borrow().clone();
            self.root.set_inner_html(&view::sign_in(err.as_deref()));
            focus("#key");
            return;
        };
        let mut route = Route::parse(&hash());
        if cred.admin && cred.partner.is_none() {
            route = Route::Partners;
        }
        let body = match &route {
            Route::Links(status) => {
                let mut l = self.links.borrow_mut();
                // A status in the hash (the overview's link) sets the filter; plain #links
                // comes back to the search as it was left.
                if let Some(s) = status {
                    l.status = Some(*s);
                    l.pages.reset();
                }
                view::links_frame(&l.q, l.status)
            }
            Route::Link(_) => view::loading("the link"),
            Route::Overview => view::titled("Overview", &view::loading("the overview")),
            Route::Webhooks => view::titled("Webhook deliveries", &view::loading("deliveries")),
            Route::Settings => view::titled("Settings", &view::loading("settings")),
            Route::Partners => view::titled("All partners", &view::loading("partners")),
        };
        let partner_id = cred.partner.clone().unwrap_or_default();
        self.root.set_inner_html(&view::shell(
            &route,
            &cred.partner_name,
            &partner_id,
            cred.admin,
            &body,
        ));
        if move_focus {
            focus("#main h1, #main");
        }
        match route {
            Route::Links(_) => self.clone().load_links(gen, None),
            Route::Link(id) => self.clone().load_link(gen, id, move_focus, None),
            Route::Overview => self.clone().load_overview(gen),
            Route::Webhooks => self.clone().load_deliveries(gen, None),
            Route::Settings => self.clone().load_settings(gen),
            Route::Partners => self.clone().load_partners(gen),
        }
    }

    /// Goes to `route`: through the hash (so Back works), or at once when it is already there.
    fn go(self: &Rc<Self>, route: Route) {
        let h = route.hash();
        if hash() == h {
            self.show(true);
        } else {
            let _ = window().location().set_hash(&h);
        }
    }

    /// A failed load or action: a refused credential signs the console out; anything else is
    /// shown where the view's data would have been.
    fn failed(self: &Rc<Self>, f: &Failure, region: &str) {
        if f.signed_out() {
            self.sign_out(Some(format!(
                "Signed out: {} Sign in again with a current key.",
                f.message
            )));
            return;
        }
        set_html(region, &view::failure(&f.code, &f.message, f.retryable()));
    }

    fn sign_out(self: &Rc<Self>, why: Option<String>) {
        Cred::forget();
        self.cred.borrow_mut().take();
        *self.links.borrow_mut() = Links::default();
        self.partners.borrow_mut().reset();
        let said = why.is_none();
        *self.sign_in_error.borrow_mut() = why;
        // Nothing of the partner's stays in the address bar or the history entry.
        let _ = window()
            .history()
            .and_then(|h| h.replace_state_with_url(&JsValue::NULL, "", Some("./")));
        self.show(false);
        if said {
            self.say("Signed out.");
        }
    }

    fn sign_in(self: &Rc<Self>) {
        let token = input_value("key").trim().to_owned();
        if token.is_empty() {
            *self.sign_in_error.borrow_mut() = Some("Enter your API key.".into());
            self.show(false);
            return;
        }
        mark("keaplink-console:sign-in");
        self.first_rows.set(false);
        let admin = !client::looks_like_api_key(&token);
        let mut cred = Cred {
            token,
            admin,
            partner: None,
            partner_name: String::new(),
        };
        let me = self.clone();
        self.say("Signing in…");
        spawn_local(async move {
            // The API key's own partner, or (the admin token) the first page of partners: each
            // checks the credential and brings what the first view needs.
            let path = if admin {
                format!("/v1/admin/partners?limit={PAGE}")
            } else {
                "/v1/partner".into()
            };
            let answer = call(&cred, "GET", &path, None).await;
            let result = answer.and_then(|json| {
                if admin {
                    wire::partner_list(&json).map(|_| ())
                } else {
                    wire::partner(&json).map(|p| {
                        cred.partner = Some(p.partner_id);
                        cred.partner_name = p.name;
                    })
                }
                .ok_or_else(|| Failure::unreadable(&format!("GET {path}")))
            });
            match result {
                Ok(()) => {
                    cred.save();
                    *me.cred.borrow_mut() = Some(cred);
                    me.sign_in_error.borrow_mut().take();
                    *me.links.borrow_mut() = Links::default();
                    me.partners.borrow_mut().reset();
                    me.say_across("Signed in.");
                    me.go(if admin {
                        Route::Partners
                    } else {
                        Route::Links(None)
                    });
                }
                Err(f) => {
                    *me.sign_in_error.borrow_mut() = Some(f.message);
                    me.say("");
                    me.show(false);
                }
            }
        });
    }

    fn links_path(&self) -> String {
        let l = self.links.borrow();
        let mut path = format!("/v1/connections?limit={PAGE}");
        if let Some(s) = l.status {
            path += "&status=";
            path += wire::status_name(s);
        }
        if !l.q.is_empty() {
            path += "&q=";
            path += &enc(&l.q);
        }
        if let Some(c) = l.pages.current() {
            path += "&cursor=";
            path += &enc(&c);
        }
        path
    }

    /// Loads the links page the state names; `refocus` is the pager button to put focus back on.
    fn load_links(self: Rc<Self>, gen: u32, refocus: Option<&'static str>) {
        let Some(cred) = self.cred() else { return };
        if self.links.borrow().pages.cursors.is_empty() {
            self.links.borrow_mut().pages.cursors.push(None);
        }
        let path = self.links_path();
        spawn_local(async move {
            let answer = call(&cred, "GET", &path, None).await;
            if !self.current(gen) {
                return;
            }
            let page = match answer.and_then(|j| {
                wire::partner_connections(&j)
                    .ok_or_else(|| Failure::unreadable("GET /v1/connections"))
            }) {
                Ok(p) => p,
                Err(f) => return self.failed(&f, "results"),
            };
            let html = {
                let mut l = self.links.borrow_mut();
                l.pages.next = page.cursor;
                view::links_table(
                    &page.connections,
                    l.pages.page(),
                    l.pages.page() > 1,
                    l.pages.next.is_some(),
                    l.status.is_some() || !l.q.is_empty(),
                )
            };
            set_html("results", &html);
            if !page.connections.is_empty() && !self.first_rows.replace(true) {
                mark("keaplink-console:first-rows");
            }
            let n = page.connections.len();
            let page_no = self.links.borrow().pages.page();
            self.say(&format!(
                "{n} link{} shown, page {page_no}.",
                if n == 1 { "" } else { "s" }
            ));
            if let Some(action) = refocus {
                let sel = format!("#results [data-action={action}]:not([disabled])");
                if document().query_selector(&sel).ok().flatten().is_some() {
                    focus(&sel);
                } else {
                    focus("#results .pager button:not([disabled]), #main h1");
                }
            }
        });
    }

    /// A new query: from the first page again.
    fn search(self: &Rc<Self>) {
        // A search typed and then submitted is one search: the pending pause is cancelled.
        self.search_seq.set(self.search_seq.get().wrapping_add(1));
        {
            let mut l = self.links.borrow_mut();
            l.q = input_value("q").trim().to_owned();
            l.status = wire::status(&input_value("status"));
            l.pages.reset();
        }
        let gen = self.bump();
        set_html("results", &view::loading("links"));
        self.clone().load_links(gen, None);
    }

    /// Typing searches once the typing pauses (a third of a second: one request per pause, not
    /// per key).
    fn search_soon(self: &Rc<Self>) {
        let seq = self.search_seq.get().wrapping_add(1);
        self.search_seq.set(seq);
        let me = self.clone();
        spawn_local(async move {
            sleep(300).await;
            if me.search_seq.get() == seq {
                me.search();
            }
        });
    }

    fn page(self: &Rc<Self>, forward: bool) {
        let moved = {
            let mut l = self.links.borrow_mut();
            if forward {
                l.pages.forward()
            } else {
                l.pages.back()
            }
        };
        if moved {
            let gen = self.bump();
            self.clone()
                .load_links(gen, Some(if forward { "next" } else { "prev" }));
        }
    }

    fn link_id(&self) -> Option<String> {
        match Route::parse(&hash()) {
            Route::Link(id) => Some(id),
            _ => None,
        }
    }

    fn back_to_links(&self) -> String {
        Route::Links(None).hash()
    }

    /// Loads one link's page; `outcome` (an action's result, HTML) is shown under its buttons,
    /// which keep the focus.
    fn load_link(self: Rc<Self>, gen: u32, id: String, move_focus: bool, outcome: Option<String>) {
        let Some(cred) = self.cred() else { return };
        spawn_local(async move {
            let answer = call(&cred, "GET", &format!("/v1/connections/{}", enc(&id)), None).await;
            if !self.current(gen) {
                return;
            }
            match answer.and_then(|j| {
                wire::connection_detail(&j)
                    .ok_or_else(|| Failure::unreadable("GET /v1/connections/{id}"))
            }) {
                Ok((d, unknown)) => {
                    set_html(
                        "main",
                        &view::link_detail(&d, unknown, &self.back_to_links()),
                    );
                    if let Some(html) = outcome {
                        set_html("action-out", &html);
                        focus("[data-action=refresh]");
                    } else if move_focus {
                        focus("#main h1");
                    }
                    // The link's Keap events, under its facts (a link without hooks says so).
                    let hooks = call(
                        &cred,
                        "GET",
                        &format!("/v1/connections/{}/hooks", enc(&id)),
                        None,
                    )
                    .await;
                    if !self.current(gen) {
                        return;
                    }
                    let html = match hooks.as_ref().map(wire::hooks) {
                        Ok(Some(h)) => view::link_hooks(Ok(&h)),
                        Ok(None) => view::link_hooks(Err("an answer this console cannot read")),
                        Err(f) => view::link_hooks(Err(&f.message)),
                    };
                    set_html("link-hooks", &html);
                }
                Err(f) if f.status == 404 => {
                    set_html(
                        "main",
                        &view::titled(
                            "No such link",
                            &format!(
                                r#"<p>{}</p><p><a href="{}">← All links</a></p>"#,
                                view::escape(&f.message),
                                self.back_to_links()
                            ),
                        ),
                    );
                }
                Err(f) => self.failed(&f, "main"),
            }
        });
    }

    /// Refresh now: the link as it is after the attempt, then its timeline again.
    fn refresh_link(self: &Rc<Self>, button: &Element) {
        let (Some(cred), Some(id)) = (self.cred(), self.link_id()) else {
            return;
        };
        let _ = button.set_attribute("disabled", "");
        self.say("Refreshing…");
        let clicked = js_sys::Date::now();
        let gen = self.gen.get();
        let me = self.clone();
        spawn_local(async move {
            let path = format!("/v1/connections/{}/refresh", enc(&id));
            let answer = call(&cred, "POST", &path, None).await;
            if !me.current(gen) {
                return;
            }
            let line = match answer {
                Ok(json) => match wire::partner_connection(&json) {
                    Some(c) => {
                        let failed_now = c
                            .connection
                            .last_error
                            .as_ref()
                            .filter(|e| js_sys::Date::parse(&e.at) >= clicked - 1000.0);
                        match failed_now {
                            Some(e) => format!("The refresh failed: {}", e.message),
                            None => "Refreshed: a new access token is stored.".into(),
                        }
                    }
                    None => Failure::unreadable(&format!("POST {path}")).message,
                },
                Err(f) if f.signed_out() => return me.failed(&f, "main"),
                Err(f) => f.message,
            };
            let outcome = format!(r#"<p class="outcome">{}</p>"#, view::escape(&line));
            me.clone().load_link(gen, id, false, Some(outcome));
            me.say(&line);
        });
    }

    fn repair_link(self: &Rc<Self>, button: &Element) {
        let (Some(cred), Some(id)) = (self.cred(), self.link_id()) else {
            return;
        };
        let _ = button.set_attribute("disabled", "");
        let button = button.clone();
        let gen = self.gen.get();
        let me = self.clone();
        spawn_local(async move {
            let path = format!("/v1/connections/{}/repair-link", enc(&id));
            let answer = call(&cred, "POST", &path, Some("{}".into())).await;
            let _ = button.remove_attribute("disabled");
            if !me.current(gen) {
                return;
            }
            match answer.and_then(|j| {
                wire::repair_link(&j).ok_or_else(|| Failure::unreadable(&format!("POST {path}")))
            }) {
                Ok(r) => {
                    set_html("action-out", &view::repair_link(&r));
                    focus("#repair-url");
                    me.say("Repair link made. Copy it and send it to the link's user.");
                }
                Err(f) => me.failed(&f, "action-out"),
            }
        });
    }

    fn disconnect(self: &Rc<Self>) {
        let (Some(cred), Some(id)) = (self.cred(), self.link_id()) else {
            return;
        };
        let gen = self.gen.get();
        let me = self.clone();
        spawn_local(async move {
            let answer = call(
                &cred,
                "DELETE",
                &format!("/v1/connections/{}", enc(&id)),
                None,
            )
            .await;
            if !me.current(gen) {
                return;
            }
            match answer {
                Ok(_) => {
                    me.say_across("Disconnected.");
                    me.go(Route::Links(None));
                }
                Err(f) => me.failed(&f, "action-out"),
            }
        });
    }

    fn load_overview(self: Rc<Self>, gen: u32) {
        let Some(cred) = self.cred() else { return };
        spawn_local(async move {
            let answer = call(&cred, "GET", "/v1/stats", None).await;
            if !self.current(gen) {
                return;
            }
            match answer
                .and_then(|j| wire::stats(&j).ok_or_else(|| Failure::unreadable("GET /v1/stats")))
            {
                Ok(s) => set_html("main", &view::titled("Overview", &view::overview(&s))),
                Err(f) => self.failed(&f, "main"),
            }
        });
    }

    fn load_deliveries(self: Rc<Self>, gen: u32, refocus: Option<String>) {
        let Some(cred) = self.cred() else { return };
        spawn_local(async move {
            let answer = call(&cred, "GET", "/v1/webhooks/deliveries?limit=100", None).await;
            if !self.current(gen) {
                return;
            }
            match answer.and_then(|j| {
                wire::deliveries(&j)
                    .ok_or_else(|| Failure::unreadable("GET /v1/webhooks/deliveries"))
            }) {
                Ok(list) => {
                    set_html(
                        "main",
                        &view::titled("Webhook deliveries", &view::deliveries(&list)),
                    );
                    if let Some(id) = refocus {
                        focus(&format!(
                            "#main tr[data-delivery=\"{}\"] button, #main h1",
                            view::escape(&id)
                        ));
                    }
                }
                Err(f) => self.failed(&f, "main"),
            }
        });
    }

    fn redeliver(self: &Rc<Self>, id: String, button: &Element) {
        let Some(cred) = self.cred() else { return };
        let _ = button.set_attribute("disabled", "");
        let gen = self.gen.get();
        let me = self.clone();
        spawn_local(async move {
            let path = format!("/v1/webhooks/deliveries/{}/redeliver", enc(&id));
            let answer = call(&cred, "POST", &path, None).await;
            if !me.current(gen) {
                return;
            }
            match answer {
                Ok(_) => {
                    me.say(&format!("Redelivery of {id} queued."));
                    me.clone().load_deliveries(gen, Some(id));
                }
                Err(f) if f.signed_out() => me.failed(&f, "main"),
                Err(f) => {
                    me.say(&f.message);
                    me.clone().load_deliveries(gen, Some(id));
                }
            }
        });
    }

    fn load_settings(self: Rc<Self>, gen: u32) {
        let Some(cred) = self.cred() else { return };
        spawn_local(async move {
            let answer = call(&cred, "GET", "/v1/partner", None).await;
            if !self.current(gen) {
                return;
            }
            match answer.and_then(|j| {
                wire::partner(&j).ok_or_else(|| Failure::unreadable("GET /v1/partner"))
            }) {
                Ok(p) => set_html("main", &view::titled("Settings", &view::settings(&p))),
                Err(f) => self.failed(&f, "main"),
            }
        });
    }

    fn save_settings(self: &Rc<Self>) {
        let Some(cred) = self.cred() else { return };
        let webhook = input_value("webhook").trim().to_owned();
        let identity = if checked("identity-app") {
            ReconnectIdentity::App
        } else {
            ReconnectIdentity::User
        };
        let body = wire::body(&[
            (
                "allowed_origins",
                wire::string_array(&view::lines(&input_value("origins"))),
            ),
            (
                "return_urls",
                wire::string_array(&view::lines(&input_value("returns"))),
            ),
            ("webhook_url", wire::text_or_null(&webhook)),
            (
                "reconnect_identity",
                JsValue::from_str(match identity {
                    ReconnectIdentity::User => "user",
                    ReconnectIdentity::App => "app",
                }),
            ),
            (
                "webhook_repair_links",
                JsValue::from_bool(checked("repair-links")),
            ),
            ("mcp", mcp_settings()),
        ]);
        let gen = self.gen.get();
        let me = self.clone();
        self.say("Saving…");
        spawn_local(async move {
            let answer = call(&cred, "PATCH", "/v1/partner", Some(body)).await;
            if !me.current(gen) {
                return;
            }
            match answer.and_then(|j| {
                wire::partner(&j).ok_or_else(|| Failure::unreadable("PATCH /v1/partner"))
            }) {
                Ok(p) => {
                    set_html("main", &view::titled("Settings", &view::settings(&p)));
                    me.say("Settings saved.");
                    focus("#main h1");
                }
                Err(f) if f.signed_out() => me.failed(&f, "main"),
                Err(f) => {
                    set_html(
                        "settings-error",
                        &format!(
                            r#"<p class="error" role="alert">Not saved: {}</p>"#,
                            view::escape(&f.message)
                        ),
                    );
                    me.say("");
                }
            }
        });
    }

    fn rotate(self: &Rc<Self>) {
        let Some(cred) = self.cred() else { return };
        let gen = self.gen.get();
        let me = self.clone();
        set_html("rotate-out", &view::loading("new secrets"));
        spawn_local(async move {
            let answer = call(&cred, "POST", "/v1/partner/rotate-secrets", None).await;
            if !me.current(gen) {
                return;
            }
            let secrets = answer.and_then(|j| {
                wire::partner(&j)
                    .and_then(|p| Some((p.api_key?, p.session_secret?)))
                    .ok_or_else(|| Failure::unreadable("POST /v1/partner/rotate-secrets"))
            });
            match secrets {
                Ok((api_key, session_secret)) => {
                    // A console signed in with the old key would be refused from now on: it
                    // carries on with the new one (the operator's token is not affected).
                    let switched = !cred.admin;
                    if switched {
                        let mut c = cred.clone();
                        c.token = api_key.clone();
                        c.save();
                        *me.cred.borrow_mut() = Some(c);
                    }
                    set_html(
                        "rotate-out",
                        &view::rotated(&api_key, &session_secret, switched),
                    );
                    focus("#new-api-key");
                    me.say("Secrets rotated. Copy the new ones now.");
                }
                Err(f) => me.failed(&f, "rotate-out"),
            }
        });
    }

    fn load_partners(self: Rc<Self>, gen: u32) {
        let Some(cred) = self.cred() else { return };
        if self.partners.borrow().cursors.is_empty() {
            self.partners.borrow_mut().cursors.push(None);
        }
        let mut path = format!("/v1/admin/partners?limit={PAGE}");
        if let Some(c) = self.partners.borrow().current() {
            path += "&cursor=";
            path += &enc(&c);
        }
        spawn_local(async move {
            let answer = call(&cred, "GET", &path, None).await;
            if !self.current(gen) {
                return;
            }
            match answer.and_then(|j| {
                wire::partner_list(&j).ok_or_else(|| Failure::unreadable("GET /v1/admin/partners"))
            }) {
                Ok(list) => {
                    let html = {
                        let mut p = self.partners.borrow_mut();
                        p.next = list.cursor;
                        view::partners(&list.partners, p.page(), p.page() > 1, p.next.is_some())
                    };
                    set_html(
                        "main",
                        &view::titled(
                            "All partners",
                            &format!(
                                r#"<div id="deployment"></div><h2>Partners</h2><p>Signed in with the admin token: every partner's links and webhooks; open one to act for it.</p>{html}"#
                            ),
                        ),
                    );
                    self.clone().load_deployment(gen, &cred);
                    for p in &list.partners {
                        self.clone()
                            .load_partner_counts(gen, &cred, p.partner_id.clone());
                    }
                }
                Err(f) => self.failed(&f, "main"),
            }
        });
    }

    /// The operator's view of the whole deployment, above the partners.
    fn load_deployment(self: Rc<Self>, gen: u32, cred: &Cred) {
        let cred = cred.clone();
        spawn_local(async move {
            let answer = call(&cred, "GET", "/v1/admin/stats", None).await;
            if !self.current(gen) {
                return;
            }
            match answer.and_then(|j| {
                wire::admin_stats(&j).ok_or_else(|| Failure::unreadable("GET /v1/admin/stats"))
            }) {
                Ok(s) => set_html("deployment", &view::deployment(&s)),
                Err(f) => self.failed(&f, "deployment"),
            }
        });
    }

    /// One partner's row of the operator's view: its overview, read as the operator acting for
    /// it (`keaplink-partner`), as each answer comes.
    fn load_partner_counts(self: Rc<Self>, gen: u32, cred: &Cred, id: String) {
        let mut cred = cred.clone();
        cred.partner = Some(id.clone());
        spawn_local(async move {
            let answer = call(&cred, "GET", "/v1/stats", None).await;
            if !self.current(gen) {
                return;
            }
            let cell = |name: &str| {
                document()
                    .query_selector(&format!(r#"tr[data-partner="{id}"] [data-stats={name}]"#))
                    .ok()
                    .flatten()
            };
            let (links, hooks) = match answer
                .and_then(|j| wire::stats(&j).ok_or_else(|| Failure::unreadable("GET /v1/stats")))
            {
                Ok(s) => view::partner_counts(&s),
                Err(f) => {
                    let e = format!(r#"<div class="error">{}</div>"#, view::escape(&f.message));
                    (e.clone(), e)
                }
            };
            if let Some(c) = cell("links") {
                c.set_inner_html(&links);
            }
            if let Some(c) = cell("webhooks") {
                c.set_inner_html(&hooks);
            }
        });
    }

    fn pick_partner(self: &Rc<Self>, id: String, name: String) {
        let Some(mut cred) = self.cred() else { return };
        cred.partner = Some(id);
        cred.partner_name = name;
        cred.save();
        *self.cred.borrow_mut() = Some(cred);
        *self.links.borrow_mut() = Links::default();
        self.go(Route::Links(None));
    }

    fn copy(self: &Rc<Self>, from: &str) {
        let Some(input) = by_id(from).and_then(|e| e.dyn_into::<HtmlInputElement>().ok()) else {
            return;
        };
        let value = input.value();
        let me = self.clone();
        spawn_local(async move {
            let p = window().navigator().clipboard().write_text(&value);
            match JsFuture::from(p).await {
                Ok(_) => me.say("Copied."),
                Err(_) => {
                    input.select();
                    me.say("Could not copy here: the text is selected, press Ctrl+C to copy it.");
                }
            }
        });
    }

    fn on_click(self: &Rc<Self>, target: Element) {
        let Ok(Some(button)) = target.closest("button[data-action]") else {
            return;
        };
        let attr = |n: &str| button.get_attribute(n).unwrap_or_default();
        match attr("data-action").as_str() {
            "sign-out" => self.sign_out(None),
            "change-partner" => {
                if let Some(mut c) = self.cred() {
                    c.partner = None;
                    c.partner_name.clear();
                    c.save();
                    *self.cred.borrow_mut() = Some(c);
                    self.partners.borrow_mut().reset();
                    self.go(Route::Partners);
                }
            }
            "pick-partner" => self.pick_partner(attr("data-id"), attr("data-name")),
            "retry" => self.show(true),
            a @ ("partners-next" | "partners-prev") => {
                let moved = {
                    let mut p = self.partners.borrow_mut();
                    if a == "partners-next" {
                        p.forward()
                    } else {
                        p.back()
                    }
                };
                if moved {
                    let gen = self.bump();
                    self.clone().load_partners(gen);
                }
            }
            "next" => self.page(true),
            "prev" => self.page(false),
            "refresh" => self.refresh_link(&button),
            "repair" => self.repair_link(&button),
            "disconnect" => {
                set_html("action-out", &view::confirm_disconnect());
                focus("[data-action=confirm-disconnect]");
            }
            "confirm-disconnect" => {
                let _ = button.set_attribute("disabled", "");
                self.disconnect();
            }
            "cancel" => {
                set_html("action-out", "");
                focus("[data-action=disconnect]");
            }
            "redeliver" => self.redeliver(attr("data-id"), &button),
            "rotate" => {
                set_html("rotate-out", &view::confirm_rotate());
                focus("[data-action=confirm-rotate]");
            }
            "confirm-rotate" => self.rotate(),
            "cancel-rotate" => {
                set_html(
                    "rotate-out",
                    r#"<button type="button" class="danger" data-action="rotate">Rotate secrets…</button>"#,
                );
                focus("[data-action=rotate]");
            }
            "copy" => self.copy(&attr("data-from")),
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
        let submit = EventListener::new_with_options(
            &self.root,
            "submit",
            EventListenerOptions::enable_prevent_default(),
            move |e| {
                e.prevent_default();
                let form = e
                    .target()
                    .and_then(|t| t.dyn_into::<Element>().ok())
                    .and_then(|f| f.get_attribute("data-form"));
                match form.as_deref() {
                    Some("sign-in") => me.sign_in(),
                    Some("search") => me.search(),
                    Some("settings") => me.save_settings(),
                    _ => {}
                }
            },
        );
        let me = self.clone();
        let input = EventListener::new(&self.root, "input", move |e| {
            let id = e
                .target()
                .and_then(|t| t.dyn_into::<Element>().ok())
                .map(|t| t.id());
            if id.as_deref() == Some("q") {
                me.search_soon();
            }
        });
        let me = self.clone();
        let change = EventListener::new(&self.root, "change", move |e| {
            let id = e
                .target()
                .and_then(|t| t.dyn_into::<Element>().ok())
                .map(|t| t.id());
            if id.as_deref() == Some("status") {
                me.search();
            }
        });
        let me = self.clone();
        let nav = EventListener::new(&window(), "hashchange", move |_| {
            me.leave_notice();
            me.show(true)
        });
        self.listeners
            .borrow_mut()
            .extend([click, submit, input, change, nav]);
    }
}

#[cfg(test)]
mod tests {
    use super::Pages;

    #[test]
    fn pages_go_forward_only_with_a_cursor_and_back_to_the_first() {
        let mut p = Pages::default();
        p.cursors.push(None);
        assert_eq!(p.page(), 1);
        assert!(!p.forward(), "no next cursor: stays");
        assert!(!p.back(), "the first page has none before it");
        p.next = Some("c2".into());
        assert!(p.forward());
        assert_eq!((p.page(), p.current().as_deref()), (2, Some("c2")));
        assert!(
            p.next.is_none(),
            "the next page's cursor comes with its answer"
        );
        p.next = Some("c3".into());
        assert!(p.forward());
        assert!(p.back());
        assert_eq!((p.page(), p.current().as_deref()), (2, Some("c2")));
        assert!(p.back());
        assert_eq!((p.page(), p.current()), (1, None));
        p.reset();
        assert_eq!(p.page(), 1);
    }
}
