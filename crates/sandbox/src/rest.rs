//! Keap's REST API as far as the sandbox models it, every answer scoped to the caller's app:
//! v1 (`/crm/rest/v1`: userinfo, contacts with `limit`/`offset`/`email`) and v2
//! (`/crm/rest/v2`: contacts with `page_size`/`page_token`, userinfo, business profile), in the
//! shapes of Keap's REST v1 reference and its v2 OpenAPI document. v1 errors are
//! `{"message"}`; v2 errors `{"code", "message", "status", "details"}` (its `Error` schema).

use crate::contacts::{self, Contact};
use crate::gateway::Caller;
use crate::seed::{self, USERS};
use crate::{now, Shared};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

const MAX_PAGE: usize = 1000;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/crm/rest/v1/oauth/connect/userinfo", get(userinfo_v1))
        .route("/crm/rest/v1/contacts", get(v1_list).post(v1_create))
        .route("/crm/rest/v1/contacts/{id}", get(v1_get))
        .route("/crm/rest/v2/oauth/connect/userinfo", get(userinfo_v2))
        .route("/crm/rest/v2/businessProfile", get(business_profile))
        .route("/crm/rest/v2/contacts", get(v2_list).post(v2_create))
        .route(
            "/crm/rest/v2/contacts/{id}",
            get(v2_get).patch(v2_patch).delete(v2_delete),
        )
        .route("/crm/rest/v2/tags", get(v2_tags))
        .route(
            "/crm/rest/v2/tags/{id}/contacts:applyTags",
            axum::routing::post(v2_apply_tags),
        )
        .route(
            "/crm/rest/v2/contacts/{id}/notes",
            get(v2_notes).post(v2_add_note),
        )
}

/// `GET /v2/tags`: the app's tags (every sandbox app has `contacts::TAGS`).
async fn v2_tags() -> Response {
    let tags: Vec<Value> = contacts::TAGS
        .iter()
        .map(|(id, name, category)| {
            json!({"id": id.to_string(), "name": name, "description": "",
                "category": {"id": if *category == "Lifecycle" { "1" } else { "2" }, "name": category}})
        })
        .collect();
    Json(json!({"tags": tags, "next_page_token": ""})).into_response()
}

/// `POST /v2/tags/{tag_id}/contacts:applyTags` with `{"contact_ids": [..]}`.
async fn v2_apply_tags(
    State(s): State<Shared>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Some(tag) = contact_id(&id).filter(|t| contacts::TAGS.iter().any(|(i, ..)| i == t)) else {
        return v2_error(StatusCode::NOT_FOUND, &format!("Tag {id} not found"));
    };
    let fields = match json_object(&body) {
        Ok(f) => f,
        Err(e) => return v2_error(StatusCode::BAD_REQUEST, &e),
    };
    let ids: Vec<u64> = match fields.get("contact_ids").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => match a
            .iter()
            .map(|v| v.as_str().and_then(contact_id))
            .collect::<Option<Vec<_>>>()
        {
            Some(ids) => ids,
            None => return v2_error(StatusCode::BAD_REQUEST, "contact_ids must be contact ids"),
        },
        _ => return v2_error(StatusCode::BAD_REQUEST, "contact_ids is required"),
    };
    let mut g = s.lock();
    if let Some(missing) = ids.iter().find(|i| g.contacts.get(c.app, **i).is_none()) {
        return v2_error(
            StatusCode::NOT_FOUND,
            &format!("Contact {missing} not found"),
        );
    }
    for i in &ids {
        g.contacts.applied.insert((*i, tag));
    }
    Json(json!({"results": ids.iter().map(|i| json!({"contact_id": i.to_string(), "success": true})).collect::<Vec<_>>()})).into_response()
}

fn note_json(n: &(u64, u64, Option<String>, String, i64)) -> Value {
    json!({"id": n.0.to_string(), "contact_id": n.1.to_string(), "title": n.2, "text": n.3,
        "create_time": keaplink_core::clock::rfc3339(n.4)})
}

/// `GET /v2/contacts/{id}/notes`.
async fn v2_notes(
    State(s): State<Shared>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let g = s.lock();
    let Some(id) = contact_id(&id).filter(|i| g.contacts.get(c.app, *i).is_some()) else {
        return v2_error(StatusCode::NOT_FOUND, &format!("Contact {id} not found"));
    };
    let notes: Vec<Value> = g
        .contacts
        .notes
        .iter()
        .filter(|n| n.1 == id)
        .map(note_json)
        .collect();
    Json(json!({"notes": notes, "next_page_token": ""})).into_response()
}

/// `POST /v2/contacts/{id}/notes` with `{"text", "title"?}`.
async fn v2_add_note(
    State(s): State<Shared>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let fields = match json_object(&body) {
        Ok(f) => f,
        Err(e) => return v2_error(StatusCode::BAD_REQUEST, &e),
    };
    let mut g = s.lock();
    let Some(id) = contact_id(&id).filter(|i| g.contacts.get(c.app, *i).is_some()) else {
        return v2_error(StatusCode::NOT_FOUND, &format!("Contact {id} not found"));
    };
    let Some(text) = fields
        .get("text")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
    else {
        return v2_error(StatusCode::BAD_REQUEST, "text is required");
    };
    let title = fields
        .get("title")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let note_id = 9000 + g.contacts.notes.len() as u64 + 1;
    let note = (note_id, id, title, text.to_owned(), now() as i64);
    let answer = note_json(&note);
    g.contacts.notes.push(note);
    (StatusCode::CREATED, Json(answer)).into_response()
}

fn v1_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"message": message}))).into_response()
}

fn v2_error(status: StatusCode, message: &str) -> Response {
    let name = match status {
        StatusCode::BAD_REQUEST => "INVALID_ARGUMENT",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        _ => "UNKNOWN",
    };
    (
        status,
        Json(json!({"code": status.as_u16(), "message": message, "status": name, "details": []})),
    )
        .into_response()
}

/// The body as a JSON object; the error says where it went wrong, never what was sent.
fn json_object(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err("The request body must be a JSON object.".into()),
        Err(e) => Err(format!(
            "The request body is not valid JSON (line {}, column {}).",
            e.line(),
            e.column()
        )),
    }
}

fn number(q: &HashMap<String, String>, key: &str) -> Result<Option<usize>, String> {
    q.get(key)
        .map(|v| {
            v.parse::<usize>()
                .map_err(|_| format!("{key} must be a whole number"))
        })
        .transpose()
}

fn contact_id(raw: &str) -> Option<u64> {
    raw.parse().ok()
}

// ---- userinfo and business profile ------------------------------------------------------

async fn userinfo_v1(Extension(c): Extension<Caller>) -> Response {
    let user = &USERS[c.user];
    Json(json!({
        "sub": user.sub, "email": user.email, "given_name": user.given_name,
        "family_name": user.family_name, "preferred_name": user.given_name,
    }))
    .into_response()
}

async fn userinfo_v2(Extension(c): Extension<Caller>) -> Response {
    let user = &USERS[c.user];
    // `id` is Keap's global user id; the sandbox has one id per user, so it equals `sub`.
    Json(json!({
        "sub": user.sub, "id": user.sub, "keap_id": user.email, "email": user.email,
        "given_name": user.given_name, "family_name": user.family_name,
        "preferred_name": user.given_name, "is_admin": user.is_admin,
        "tenant_id": if c.wrong_tenant { "zz999" } else { c.app },
    }))
    .into_response()
}

async fn business_profile(Extension(c): Extension<Caller>) -> Response {
    let Some(app) = seed::app(c.app) else {
        return v2_error(StatusCode::NOT_FOUND, "No business profile.");
    };
    Json(json!({
        "name": app.name,
        "email": format!("hello@{}.example", app.id),
        "website": format!("https://{}.example", app.id),
        "phone": "555-0100",
        "address": {"line1": "1 Main St", "line2": "", "locality": app.city, "region": "Arizona",
            "country_code": "USA", "postal_code": "85001"},
        "time_zone": "America/Phoenix",
        "logo_url": "",
        "currency_code": "USD",
        "language_tag": "en-US",
        "business_type": app.business_type,
        "business_goals": ["Grow Business"],
        "business_primary_color": "#2f6fdd",
        "business_secondary_color": "#ffffff",
    }))
    .into_response()
}

// ---- v1 contacts ----------------------------------------------------------------------

async fn v1_list(
    State(s): State<Shared>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (limit, offset) = match (number(&q, "limit"), number(&q, "offset")) {
        (Ok(l), Ok(o)) => (l.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE), o.unwrap_or(0)),
        (Err(e), _) | (_, Err(e)) => return v1_error(StatusCode::BAD_REQUEST, &e),
    };
    let email = q.get("email").map(|e| e.trim().to_owned());
    let g = s.lock();
    let all: Vec<&Contact> = g
        .contacts
        .of(c.app)
        .filter(|x| email.as_deref().is_none_or(|e| x.has_email(e)))
        .collect();
    let page: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|x| x.v1())
        .collect();
    // Keap's v1 lists link their neighbours as absolute URLs, filters included.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let link = |off: usize| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("limit", &limit.to_string())
            .append_pair("offset", &off.to_string());
        if let Some(e) = &email {
            q.append_pair("email", e);
        }
        format!("http://{host}/crm/rest/v1/contacts?{}", q.finish())
    };
    Json(json!({
        "contacts": page,
        "count": all.len(),
        "next": link(offset + limit),
        "previous": link(offset.saturating_sub(limit)),
    }))
    .into_response()
}

async fn v1_get(
    State(s): State<Shared>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let Some(id) = contact_id(&id) else {
        return v1_error(StatusCode::BAD_REQUEST, "The contact id must be a number.");
    };
    match s.lock().contacts.get(c.app, id) {
        Some(x) => Json(x.v1()).into_response(),
        None => v1_error(StatusCode::NOT_FOUND, &format!("Contact {id} not found.")),
    }
}

async fn v1_create(
    State(s): State<Shared>,
    Extension(c): Extension<Caller>,
    body: Bytes,
) -> Response {
    let fields = match json_object(&body) {
        Ok(f) => f,
        Err(e) => return v1_error(StatusCode::BAD_REQUEST, &e),
    };
    let created = s.lock().contacts.create(c.app, &fields, now() as i64);
    match created {
        Ok(x) => (StatusCode::CREATED, Json(x.v1())).into_response(),
        Err(e) => v1_error(StatusCode::BAD_REQUEST, &e),
    }
}

// ---- v2 contacts ----------------------------------------------------------------------

/// Page tokens are opaque to clients; here, the offset of the next page.
fn page_token(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("o:{offset}"))
}

fn parse_page_token(token: &str) -> Option<usize> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    raw.strip_prefix("o:")?.parse().ok()
}

/// `filter=email==a@b;given_name==Jo*`: the string fields of Keap's filter, `==` with an
/// optional trailing `*` (starts with), case-insensitive.
fn v2_filter(raw: &str) -> Result<Vec<(&str, String, bool)>, String> {
    raw.split(';')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            let Some((field, value)) = part.split_once("==") else {
                return Err("filter: each condition is field==value".to_owned());
            };
            let field = field.trim();
            if !matches!(field, "email" | "given_name" | "family_name") {
                return Err(format!(
                    "filter: the sandbox filters on email, given_name and family_name, not {field:?}"
                ));
            }
            let value = value.trim().to_lowercase();
            Ok(match value.strip_suffix('*') {
                Some(prefix) => (field, prefix.to_owned(), true),
                None => (field, value, false),
            })
        })
        .collect()
}

fn matches(c: &Contact, field: &str, value: &str, prefix: bool) -> bool {
    let test = |s: &str| {
        let s = s.to_lowercase();
        if prefix {
            s.starts_with(value)
        } else {
            s == value
        }
    };
    match field {
        "email" => c.emails.iter().any(|e| test(&e.email)),
        "given_name" => c.given_name.as_deref().is_some_and(test),
        _ => c.family_name.as_deref().is_some_and(test),
    }
}

async fn v2_list(
    State(s): State<Shared>,
    Extension(c): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let size = match number(&q, "page_size") {
        Ok(Some(n)) if n > MAX_PAGE => {
            return v2_error(StatusCode::BAD_REQUEST, "page_size must be at most 1000")
        }
        Ok(Some(0) | None) => MAX_PAGE,
        Ok(Some(n)) => n,
        Err(e) => return v2_error(StatusCode::BAD_REQUEST, &e),
    };
    let offset = match q.get("page_token").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => match parse_page_token(t) {
            Some(o) => o,
            None => return v2_error(StatusCode::BAD_REQUEST, "page_token is not valid"),
        },
    };
    let filter = match v2_filter(q.get("filter").map_or("", String::as_str)) {
        Ok(f) => f,
        Err(e) => return v2_error(StatusCode::BAD_REQUEST, &e),
    };
    let g = s.lock();
    let all: Vec<&Contact> = g
        .contacts
        .of(c.app)
        .filter(|x| filter.iter().all(|(f, v, p)| matches(x, f, v, *p)))
        .collect();
    let page: Vec<Value> = all.iter().skip(offset).take(size).map(|x| x.v2()).collect();
    // As in Google-style APIs, which v2 follows: an empty token means the last page.
    let next = if offset + size < all.len() {
        page_token(offset + size)
    } else {
        String::new()
    };
    Json(json!({"contacts": page, "next_page_token": next})).into_response()
}

async fn v2_get(
    State(s): State<Shared>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let Some(id) = contact_id(&id) else {
        return v2_error(StatusCode::BAD_REQUEST, "contact_id must be a number");
    };
    match s.lock().contacts.get(c.app, id) {
        Some(x) => Json(x.v2()).into_response(),
        None => v2_error(StatusCode::NOT_FOUND, &format!("Contact {id} not found")),
    }
}

async fn v2_create(
    State(s): State<Shared>,
    Extension(c): Extension<Caller>,
    body: Bytes,
) -> Response {
    let fields = match json_object(&body) {
        Ok(f) => f,
        Err(e) => return v2_error(StatusCode::BAD_REQUEST, &e),
    };
    let created = s.lock().contacts.create(c.app, &fields, now() as i64);
    match created {
        Ok(x) => (StatusCode::CREATED, Json(x.v2())).into_response(),
        Err(e) => v2_error(StatusCode::BAD_REQUEST, &e),
    }
}

async fn v2_patch(
    State(s): State<Shared>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let Some(id) = contact_id(&id) else {
        return v2_error(StatusCode::BAD_REQUEST, "contact_id must be a number");
    };
    let fields = match json_object(&body) {
        Ok(f) => f,
        Err(e) => return v2_error(StatusCode::BAD_REQUEST, &e),
    };
    let mask: Option<Vec<String>> = q.get("update_mask").map(|m| {
        m.split(',')
            .map(|f| f.trim().to_owned())
            .filter(|f| !f.is_empty())
            .collect()
    });
    if let Some(bad) = mask
        .iter()
        .flatten()
        .find(|f| !contacts::UPDATE_MASK_FIELDS.contains(&f.as_str()))
    {
        return v2_error(
            StatusCode::BAD_REQUEST,
            &format!("update_mask: {bad:?} is not a contact property"),
        );
    }
    let mut g = s.lock();
    let Some(contact) = g.contacts.get_mut(c.app, id) else {
        return v2_error(StatusCode::NOT_FOUND, &format!("Contact {id} not found"));
    };
    if let Err(e) = contacts::apply(contact, &fields, mask.as_deref()) {
        return v2_error(StatusCode::BAD_REQUEST, &e);
    }
    contact.updated = now() as i64;
    Json(contact.v2()).into_response()
}

async fn v2_delete(
    State(s): State<Shared>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let Some(id) = contact_id(&id) else {
        return v2_error(StatusCode::BAD_REQUEST, "contact_id must be a number");
    };
    if s.lock().contacts.remove(c.app, id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        v2_error(StatusCode::NOT_FOUND, &format!("Contact {id} not found"))
    }
}
