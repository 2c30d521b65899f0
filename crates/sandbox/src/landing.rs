//! `GET /`: what the sandbox is, who can sign in and what each is for, its Keap apps, its OAuth
//! client, its pages and its `/__sandbox/*` controls. The URL `./scripts/dev` prints opens here.
//! Selectors tests rely on: `body[data-page=sandbox]`, `#users tr[data-user]`, `#apps tr[data-app]`,
//! `#controls tr[data-control]` (`METHOD /path`).

use crate::central;
use crate::controls::CONTROLS;
use crate::pages::{escape, page_of_width};
use crate::seed::{self, APPS, USERS};
use crate::Shared;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

pub(crate) async fn landing(State(s): State<Shared>) -> Response {
    let users: String = USERS
        .iter()
        .map(|u| {
            let apps = u
                .apps
                .iter()
                .map(|a| {
                    let name = seed::app(a).map_or(*a, |x| x.name);
                    format!("<code>{a}</code> ({})", escape(name))
                })
                .collect::<Vec<_>>()
                .join(" and ");
            format!(
                "<tr data-user=\"{0}\"><td><code>{0}</code></td><td>{1} {2}{3}</td><td>{apps}</td><td>{4}</td></tr>",
                u.email,
                u.given_name,
                u.family_name,
                if u.is_admin { "" } else { " (not an admin)" },
                escape(u.for_trying)
            )
        })
        .collect();
    let apps: String = APPS
        .iter()
        .map(|a| {
            let who = USERS
                .iter()
                .filter(|u| u.apps.contains(&a.id))
                .map(|u| u.email)
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "<tr data-app=\"{0}\"><td><code>{0}</code></td><td>{1}</td><td>{2}, {3}</td><td>{who}</td></tr>",
                a.id,
                escape(a.name),
                escape(a.business_type),
                escape(a.city)
            )
        })
        .collect();
    let controls: String = CONTROLS
        .iter()
        .map(|c| {
            format!(
                "<tr data-control=\"{0} {1}\"><td><code>{0} {1}</code></td><td><code>{2}</code></td><td>{3}</td></tr>",
                c.method,
                c.path,
                escape(c.body),
                escape(c.what)
            )
        })
        .collect();
    let redirects = if s.config.redirect_uris.is_empty() {
        "any http(s) URI".to_owned()
    } else {
        s.config
            .redirect_uris
            .iter()
            .map(|r| format!("<code>{}</code>", escape(r)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let kept = match &s.config.state_file {
        Some(p) => format!(
            "Its sessions and live tokens are kept in <code>{}</code>, so links survive a restart (delete the file to start clean).",
            escape(&p.display().to_string())
        ),
        None => "Its sessions and tokens live in memory: a restart forgets them.".to_owned(),
    };
    page_of_width(
        "Keap sandbox",
        "sandbox",
        &format!(
            "<p>A stand-in for Keap on loopback: its OAuth pages, token endpoint and REST API \
behave like Keap's wherever keaplink could get Keap wrong, and the controls below make Keap fail \
on purpose, so a partner can rehearse what its code and its users will meet. Nothing here is real. \
{kept}</p>\
<h2>Keap users</h2><p>Password <code>{password}</code> for everyone.</p>\
<table id=\"users\"><thead><tr><th>email</th><th>name</th><th>Keap apps</th><th>for trying</th></tr></thead><tbody>{users}</tbody></table>\
<h2>Keap apps</h2>\
<table id=\"apps\"><thead><tr><th>app id</th><th>business name</th><th>business</th><th>users</th></tr></thead><tbody>{apps}</tbody></table>\
<h2>The OAuth client</h2><p>client_id <code>{client}</code>; redirect URIs: {redirects}. \
Authorize at <code>/app/oauth/authorize</code>, tokens at <code>/token</code>, the sign-out hop at \
<code>/logout?service=</code>, the REST API under <code>/crm/rest/</code>.</p>\
<h2>Pages</h2><ul>\
<li><a href=\"{central}\">Account Central</a>: a Keap user's connected apps; removing one there revokes its tokens, as in Keap.</li>\
<li><a href=\"/logout\">Sign out of Keap</a> (ends this browser's Keap session).</li></ul>\
<h2>Controls</h2><p>JSON bodies (<code>content-type: application/json</code>); the README's \
\"Rehearse the hard paths\" has a curl line for each failure a partner must handle.</p>\
<table id=\"controls\"><thead><tr><th>call</th><th>body</th><th>what it does</th></tr></thead><tbody>{controls}</tbody></table>",
            password = seed::PASSWORD,
            client = escape(&s.config.client_id),
            central = central::HOME,
        ),
        "60rem",
    )
    .into_response()
}
