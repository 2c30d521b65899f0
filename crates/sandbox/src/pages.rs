//! Keap's OAuth pages as a browser sees them: authorize (sign-in form, or consent straight away
//! when the SSO cookie names someone), the sign-in post, consent (with the app chooser for users
//! of several apps) and the sign-out hop. Selectors tests rely on: `body[data-page]`, `#who`,
//! `#email`, `input[name=email|password]`, `select[name=app]`, `button[value=allow|deny]`.

use crate::seed::{self, USERS};
use crate::{now, random_token, CodeGrant, Sandbox, Shared};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use url::Url;

pub(crate) const SSO_COOKIE: &str = "keap_sso";
const CODE_TTL_SECS: u64 = 120;

pub(crate) fn page(title: &str, kind: &str, body: &str) -> Html<String> {
    page_of_width(title, kind, body, "28rem")
}

/// A page `width` wide at most (the landing page's tables need more than a form).
pub(crate) fn page_of_width(title: &str, kind: &str, body: &str, width: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:{width};margin:3rem auto;padding:0 1rem}}\
table{{border-collapse:collapse;margin:.5rem 0 1.5rem}}th,td{{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}}\
code{{overflow-wrap:anywhere}}\
label,input,select,button{{display:block;margin:.4rem 0}}.banner{{background:#ffe;border:1px solid #cc9;padding:.5rem}}\
.error{{color:#a00;font-weight:600}}</style></head>\
<body data-page=\"{kind}\"><p class=\"banner\">Keap sandbox: a stand-in for Keap, for local runs and tests.</p>\
<h1>{title}</h1>{body}</body></html>"
    ))
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn bad_request_page(why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        page(
            "Invalid request",
            "error",
            &format!("<p>{}</p>", escape(why)),
        ),
    )
        .into_response()
}

pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The OAuth parameters every form carries on to the next step, as hidden inputs.
fn carried(
    client_id: &Option<String>,
    redirect_uri: &Option<String>,
    state: &Option<String>,
) -> String {
    [
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("state", state),
    ]
    .iter()
    .map(|(name, v)| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(v.as_deref().unwrap_or(""))
        )
    })
    .collect()
}

/// The sign-in form; after a failed attempt it comes back with the email kept and the reason
/// in an alert, so the person can try again instead of starting the flow over.
fn login_page(carried: &str, email: &str, error: Option<&str>) -> Html<String> {
    let alert = error.map_or(String::new(), |e| {
        format!(
            "<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>",
            escape(e)
        )
    });
    let users: String = USERS
        .iter()
        .map(|u| format!("<li>{} (app {})</li>", u.email, u.apps.join(", ")))
        .collect();
    page(
        "Sign in to Keap",
        "login",
        &format!(
            "{alert}<form method=\"post\" action=\"/app/oauth/login\">{carried}\
<label>Email <input name=\"email\" type=\"email\" autocomplete=\"username\" value=\"{}\"></label>\
<label>Password <input name=\"password\" type=\"password\"></label>\
<button type=\"submit\">Sign in</button></form>\
<p>Sandbox users (password <code>{}</code>):</p><ul>{users}</ul>",
            escape(email),
            seed::PASSWORD
        ),
    )
}

fn consent_page(carried: &str, u: usize) -> Html<String> {
    let user = &USERS[u];
    let label =
        |id: &str| seed::app(id).map_or(id.to_owned(), |a| format!("{} ({id})", escape(a.name)));
    let (which, chooser) = match user.apps {
        [only] => (format!(", app <code>{}</code>", label(only)), String::new()),
        apps => {
            let options: String = apps
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    let selected = if i == 0 { " selected" } else { "" };
                    format!("<option value=\"{id}\"{selected}>{}</option>", label(id))
                })
                .collect();
            (
                String::new(),
                format!("<label>Keap app <select name=\"app\">{options}</select></label>"),
            )
        }
    };
    page(
        "Allow access",
        "consent",
        &format!(
            "<p>Signed in as <strong id=\"who\">{} {}</strong> (<span id=\"email\">{}</span>){which}.</p>\
<p>The app wants full access to your Keap account.</p>\
<form method=\"post\" action=\"/app/oauth/consent\">{carried}{chooser}\
<button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
            user.given_name, user.family_name, user.email
        ),
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct AuthorizeParams {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    scope: Option<String>,
    state: Option<String>,
}

impl Sandbox {
    fn check_client(
        &self,
        client_id: Option<&str>,
        redirect_uri: Option<&str>,
    ) -> Result<(), &'static str> {
        if client_id != Some(self.config.client_id.as_str()) {
            return Err("Unknown client_id.");
        }
        let Some(uri) = redirect_uri else {
            return Err("redirect_uri is required.");
        };
        let parsed = Url::parse(uri).map_err(|_| "redirect_uri is not a URL.")?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("redirect_uri must be http(s).");
        }
        if !self.config.redirect_uris.is_empty()
            && !self.config.redirect_uris.iter().any(|r| r == uri)
        {
            return Err("redirect_uri is not registered for this client.");
        }
        Ok(())
    }

    pub(crate) fn session_user(&self, headers: &HeaderMap) -> Option<usize> {
        let sid = cookie(headers, SSO_COOKIE)?;
        self.lock().sessions.get(&sid).copied()
    }
}

pub(crate) async fn authorize(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(p): Query<AuthorizeParams>,
) -> Response {
    s.count("authorize");
    if let Err(why) = s.check_client(p.client_id.as_deref(), p.redirect_uri.as_deref()) {
        return bad_request_page(why);
    }
    if p.response_type.as_deref() != Some("code") {
        return bad_request_page("response_type must be code.");
    }
    if p.scope.as_deref() != Some("full") {
        return bad_request_page("scope must be full.");
    }
    let carried = carried(&p.client_id, &p.redirect_uri, &p.state);
    match s.session_user(&headers) {
        None => login_page(&carried, "", None).into_response(),
        Some(u) => consent_page(&carried, u).into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    email: Option<String>,
    password: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
}

fn authorize_path(client_id: &str, redirect_uri: &str, state: &str) -> String {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", "full")
        .append_pair("state", state)
        .finish();
    format!("/app/oauth/authorize?{q}")
}

pub(crate) async fn login(State(s): State<Shared>, Form(f): Form<LoginForm>) -> Response {
    s.count("login");
    let email = f.email.as_deref().unwrap_or("");
    let user = seed::user_index(email).filter(|_| f.password.as_deref() == Some(seed::PASSWORD));
    let Some(u) = user else {
        let carried = carried(&f.client_id, &f.redirect_uri, &f.state);
        let body = login_page(
            &carried,
            email.trim(),
            Some("Unknown email or wrong password."),
        );
        return (StatusCode::UNAUTHORIZED, body).into_response();
    };
    let sid = random_token(24);
    s.lock().sessions.insert(sid.clone(), u);
    let back = authorize_path(
        f.client_id.as_deref().unwrap_or(""),
        f.redirect_uri.as_deref().unwrap_or(""),
        f.state.as_deref().unwrap_or(""),
    );
    let mut resp = Redirect::to(&back).into_response();
    let c = format!("{SSO_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax");
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConsentForm {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    decision: String,
    /// The chosen app; absent (a one-app user, or a client that skips the chooser): the first.
    app: Option<String>,
}

pub(crate) async fn consent(
    State(s): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<ConsentForm>,
) -> Response {
    s.count("consent");
    if let Err(why) = s.check_client(f.client_id.as_deref(), f.redirect_uri.as_deref()) {
        return bad_request_page(why);
    }
    let Some(u) = s.session_user(&headers) else {
        return bad_request_page("Your Keap session ended; start again.");
    };
    let apps = USERS[u].apps;
    let app = match f.app.as_deref() {
        None => apps[0],
        Some(chosen) => match apps.iter().find(|a| **a == chosen) {
            Some(a) => a,
            None => return bad_request_page("You cannot reach that Keap app."),
        },
    };
    let redirect_uri = f.redirect_uri.unwrap_or_default();
    let Ok(mut target) = Url::parse(&redirect_uri) else {
        return bad_request_page("redirect_uri is not a URL.");
    };
    {
        let mut q = target.query_pairs_mut();
        if f.decision == "allow" {
            let code = random_token(24);
            s.lock().codes.insert(
                code.clone(),
                CodeGrant {
                    user: u,
                    app,
                    client_id: f.client_id.unwrap_or_default(),
                    redirect_uri: redirect_uri.clone(),
                    expires_at: now() + CODE_TTL_SECS,
                },
            );
            q.append_pair("code", &code)
                .append_pair("scope", &format!("full|{app}.infusionsoft.com"));
        } else {
            q.append_pair("error", "access_denied");
        }
        if let Some(state) = &f.state {
            q.append_pair("state", state);
        }
    }
    Redirect::to(target.as_str()).into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct LogoutParams {
    service: Option<String>,
}

pub(crate) async fn logout(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(p): Query<LogoutParams>,
) -> Response {
    s.count("logout");
    if let Some(sid) = cookie(&headers, SSO_COOKIE) {
        s.lock().sessions.remove(&sid);
    }
    let expire = HeaderValue::from_static("keap_sso=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
    let mut resp = match p.service.as_deref().map(Url::parse) {
        Some(Ok(u)) if matches!(u.scheme(), "http" | "https") => {
            Redirect::to(u.as_str()).into_response()
        }
        Some(_) => bad_request_page("service must be an http(s) URL."),
        None => page(
            "Signed out",
            "logged-out",
            "<p>You are signed out of Keap.</p>",
        )
        .into_response(),
    };
    resp.headers_mut().append(header::SET_COOKIE, expire);
    resp
}
