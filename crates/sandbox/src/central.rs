//! Keap's Account Central, as far as a partner needs it: the "Connected apps" of the signed-in
//! Keap user, per Keap app, each with **Remove**. Removing the app there kills every token the
//! OAuth client holds for that user and app (what Keap does: keaplink then meets a dead refresh
//! token, and the link needs its user), so a partner can rehearse a user who revoked in Keap.
//! `./scripts/dev` points the widget's Account Central link (`KEAP_ACCOUNT_CENTRAL_URL`) here.
//! Selectors tests rely on: `body[data-page=central]`, `[data-app=<id>]`, `[data-connected]`,
//! `button[name=app]` (its value is the app id).

use crate::pages::{cookie, escape, page, SSO_COOKIE};
use crate::seed::{self, USERS};
use crate::{random_token, Shared};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

/// Where Account Central lives in the sandbox (Keap's: `/app/central/home` on accounts.infusionsoft.com).
pub const HOME: &str = "/app/central/home";

fn sign_in(error: Option<&str>) -> Response {
    let alert = error.map_or(String::new(), |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))
    });
    let body = page(
        "Account Central: sign in",
        "central-login",
        &format!(
            "{alert}<p>Sign in as the Keap user whose connected apps you want to see.</p>\
<form method=\"post\" action=\"/app/central/login\">\
<label>Email <input name=\"email\" type=\"email\" autocomplete=\"username\"></label>\
<label>Password <input name=\"password\" type=\"password\"></label>\
<button type=\"submit\">Sign in</button></form><p>Password of every sandbox user: <code>{}</code>.</p>",
            seed::PASSWORD
        ),
    );
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    (status, body).into_response()
}

/// `GET /app/central/home`: the signed-in user's connected apps (or the sign-in form).
pub(crate) async fn home(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let Some(u) = s.session_user(&headers) else {
        return sign_in(None);
    };
    let user = &USERS[u];
    let client = escape(&s.config.client_id);
    let rows: String = user
        .apps
        .iter()
        .map(|app| {
            let name = seed::app(app).map_or(*app, |a| a.name);
            let live = s.live_tokens(u, app);
            let state = if live > 0 {
                format!(
                    "<p data-connected>Connected: <strong>{client}</strong> (the OAuth client keaplink uses) \
holds {live} live token(s) for this app.</p>\
<form method=\"post\" action=\"/app/central/remove\">\
<button type=\"submit\" name=\"app\" value=\"{app}\">Remove {client}</button></form>"
                )
            } else {
                "<p>No connected apps.</p>".to_owned()
            };
            format!(
                "<section data-app=\"{app}\"><h2>{} ({app})</h2>{state}</section>",
                escape(name)
            )
        })
        .collect();
    page(
        "Connected apps",
        "central",
        &format!(
            "<p>Signed in as <strong id=\"who\">{} {}</strong> ({}). \
<a href=\"/logout\">Sign out</a></p>{rows}\
<p>Removing an app here revokes its tokens at once, as in Keap: keaplink finds out at its next \
refresh, and the link then needs its user (a Reconnect).</p>",
            user.given_name, user.family_name, user.email
        ),
    )
    .into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    email: Option<String>,
    password: Option<String>,
}

/// `POST /app/central/login`: signs in (the same single-sign-on session as the OAuth pages).
pub(crate) async fn login(State(s): State<Shared>, Form(f): Form<LoginForm>) -> Response {
    let email = f.email.as_deref().unwrap_or("");
    let Some(u) = seed::user_index(email).filter(|_| f.password.as_deref() == Some(seed::PASSWORD))
    else {
        return sign_in(Some("Unknown email or wrong password."));
    };
    let sid = random_token(24);
    s.lock().sessions.insert(sid.clone(), u);
    let mut resp = Redirect::to(HOME).into_response();
    let c = format!("{SSO_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax");
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

#[derive(Debug, Deserialize)]
pub(crate) struct RemoveForm {
    app: String,
}

/// `POST /app/central/remove` (`app`): kills every token of the signed-in user for that app.
pub(crate) async fn remove(
    State(s): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<RemoveForm>,
) -> Response {
    // The cookie is SameSite=Lax: another site cannot post this form as the user.
    let Some(u) = cookie(&headers, SSO_COOKIE).and_then(|_| s.session_user(&headers)) else {
        return sign_in(Some("Your Keap session ended; sign in again."));
    };
    let Some(app) = USERS[u].apps.iter().find(|a| **a == f.app) else {
        return (
            StatusCode::BAD_REQUEST,
            page(
                "Invalid request",
                "error",
                "<p>You cannot reach that Keap app.</p>",
            ),
        )
            .into_response();
    };
    s.revoke_app(u, Some(app));
    Redirect::to(HOME).into_response()
}
