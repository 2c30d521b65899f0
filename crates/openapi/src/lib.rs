//! keaplink's HTTP contract as an OpenAPI 3.1 document, assembled from the types of
//! `keaplink-api` (their `ToSchema`, behind its `openapi` feature) and the error table of
//! `keaplink-core`. `docs/openapi.json` is this crate's output, committed; a test fails when they differ.
//!
//! What is here and nowhere else: which operations exist, their parameters, which statuses each
//! answers with which codes, and the headers. Bodies are the Rust types' own schemas, so a field
//! renamed in `crates/api` changes the document (and fails the test until it is regenerated); a
//! code added to the error table fails to compile here until it is given a sentence.

mod build;
mod ops;
mod webhooks;

pub use build::Header;
use build::{error_examples, error_schema, headers, Schemas, CORS, JSON};
use keaplink_core::ErrorCode;
use ops::{Auth, Op};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The document, as `docs/openapi.json` holds it.
pub fn document() -> Value {
    let mut schemas = Schemas::default();
    let mut shared = Map::new();
    let operations = ops::all(&mut schemas);
    let mut paths: Map<String, Value> = Map::new();
    for op in operations {
        let (path, method) = (op.path, op.method);
        let item = paths.entry(path).or_insert_with(|| json!({}));
        if !op.worker {
            // Served by the runtime's asset server before the Worker runs: another method is its
            // 405 (or, for a file that is not there, the Worker's 404), not the Worker's answer.
            item["x-keaplink-static"] = json!(true);
        }
        assert!(
            item.get(method).is_none(),
            "{method} {path} is described twice"
        );
        item[method] = operation(op, &mut schemas, &mut shared);
    }
    // keaplink-api's stats types name the proxy's quota types as free-form objects until their
    // own schemas are named there (see `open_proxy_types`); the types are registered here.
    let quota = schemas.of::<keaplink_api::proxy::KeapQuota>();
    let proxied = schemas.of::<keaplink_api::proxy::ProxyCounts>();
    // The answers of no operation: a path not listed, a method a path does not list.
    for (name, code, extra) in [
        ("UnknownPath", ErrorCode::NotFound, None),
        (
            "MethodNotAllowed",
            ErrorCode::MethodNotAllowed,
            Some(Header::Allow),
        ),
    ] {
        let mut required = JSON.to_vec();
        required.extend(extra);
        shared.insert(name.into(), json!({
            "description": format!("`{}`: {} Answered for any path or method this document does not list (under `/v1/keap`, with `keaplink-error`).", code.as_str(), build::sentence(code)),
            // Under `/v1/keap` every answer keaplink makes itself says so.
            "headers": headers(&required, &[Header::KeaplinkError]),
            "content": {"application/json": {"schema": error_schema(&mut schemas, &[code]), "examples": error_examples(&[code])}},
        }));
    }
    let mut event_schemas = Map::new();
    let webhooks = webhooks::webhooks(&mut event_schemas, &mut schemas);
    let mut components = schemas.finish();
    for (name, schema) in event_schemas {
        assert!(
            components.insert(name.clone(), schema).is_none(),
            "two schemas named {name}"
        );
    }
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "keaplink",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "Link your users' Keap accounts once, keep the links alive, get a fresh access token on request.",
            "description": INFO,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{
            "url": "{public_url}",
            "description": "The deployment's own origin: its `PUBLIC_URL`.",
            "variables": {"public_url": {
                "default": "http://127.0.0.1:8787",
                "description": "The Worker's origin, as its `PUBLIC_URL` var says (e.g. `https://keaplink.example.workers.dev`, or a custom domain); the default is `./scripts/dev`'s.",
            }},
        }],
        "tags": [
            {"name": "health", "description": "Liveness, and this document."},
            {"name": "widget", "description": "What the `<keap-link>` widget calls, with the partner user's session JWT (CORS for the partner's allowed_origins)."},
            {"name": "oauth", "description": "Keap's redirect back, and the hosted repair-link pages: HTML for a person, not JSON."},
            {"name": "partner", "description": "The partner's back-end and console, with its API key."},
            {"name": "proxy", "description": "Calls to Keap's REST API through keaplink, which injects the connection's token."},
            {"name": "admin", "description": "The operator's endpoints, with ADMIN_TOKEN."},
            {"name": "static", "description": "Static files served from the same deploy, before the Worker runs."},
            {"name": "webhooks", "description": "What keaplink sends to the partner's `webhook_url`: signed `POST`s, one per event."},
        ],
        "paths": paths,
        "webhooks": webhooks,
        "components": {
            "schemas": components,
            "responses": shared,
            "securitySchemes": {
                "adminToken": {
                    "type": "http", "scheme": "bearer",
                    "description": "The deployment's ADMIN_TOKEN secret. Refused: 401 `missing_credentials` or `invalid_admin_token`.",
                },
                "sessionJwt": {
                    "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "A session JWT the partner's back-end mints for one of its users: HS256 with the partner's session_secret, `{\"iss\": partner_id, \"sub\": user id (1-256 chars), \"aud\": \"keaplink\", \"iat\", \"exp\"}`, `exp - iat` at most 3600 s. Refused: 401 `missing_credentials` or `invalid_session`.",
                },
                "apiKey": {
                    "type": "http", "scheme": "bearer", "bearerFormat": "klk.<partner_id>.<random>",
                    "description": "The partner's API key (shown once, when the partner is created or its secrets rotated). Refused: 401 `missing_credentials` or `invalid_api_key`.",
                },
            },
        },
    });
    open_proxy_types(&mut doc, &quota, &proxied);
    // `last_error.code` is a string in the Rust type; its values are the core's failure kinds.
    let code = &mut doc["components"]["schemas"]["LastError"]["properties"]["code"];
    assert!(code.is_object(), "LastError has a code");
    code["enum"] = json!(build::failure_codes());
    code["description"] = json!("What failed: `refresh_token_invalid` or `refresh_lost` (the link needs its user), or a transient failure that is retried.");
    share_headers(&mut doc);
    doc
}

/// Where a stats type holds the proxy's quota or counts as a bare `object` (its field's
/// `value_type = Object` in keaplink-api, from before those types had schemas), refers to their
/// schemas instead. A no-op once the fields name the types themselves.
fn open_proxy_types(doc: &mut Value, quota: &Value, proxied: &Value) {
    let bare = |v: &Value| {
        v.get("$ref").is_none() && v.get("oneOf").is_none() && v.get("properties").is_none()
    };
    for (schema, field, with) in [
        (
            "AdminStats",
            "keap_quota",
            json!({"oneOf": [{"type": "null"}, quota]}),
        ),
        (
            "PartnerStats",
            "keap_quota",
            json!({"oneOf": [{"type": "null"}, quota]}),
        ),
        ("AdminStats", "proxy_last_24h", proxied.clone()),
    ] {
        let prop = &mut doc["components"]["schemas"][schema]["properties"][field];
        assert!(prop.is_object(), "{schema}.{field}");
        if bare(prop) {
            let description = prop.get("description").cloned();
            *prop = with;
            if let Some(d) = description {
                prop["description"] = d;
            }
        }
    }
}

/// Moves every header object into `components.headers` (one per header and requiredness) and
/// refers to it: the same header is described once.
fn share_headers(doc: &mut Value) {
    let mut shared: Map<String, Value> = Map::new();
    let mut visit = |resp: &mut Value| {
        let Some(hs) = resp.get_mut("headers").and_then(Value::as_object_mut) else {
            return;
        };
        for h in hs.values_mut() {
            let mut h_obj = h.as_object().cloned().expect("a header object");
            let mut key = h_obj
                .remove("x-component")
                .and_then(|c| c.as_str().map(str::to_owned))
                .expect("every header names its component");
            if h_obj["required"] != true {
                key.push_str("Optional");
            }
            let h_val = Value::Object(h_obj);
            if let Some(have) = shared.get(&key) {
                assert_eq!(*have, h_val, "two headers named {key}");
            }
            shared.insert(key.clone(), h_val);
            *h = json!({"$ref": format!("#/components/headers/{key}")});
        }
    };
    for resp in doc["components"]["responses"]
        .as_object_mut()
        .expect("responses")
        .values_mut()
    {
        visit(resp);
    }
    for item in doc["paths"].as_object_mut().expect("paths").values_mut() {
        for (key, op) in item.as_object_mut().expect("a path item").iter_mut() {
            if key.starts_with("x-") {
                continue;
            }
            for resp in op["responses"]
                .as_object_mut()
                .expect("responses")
                .values_mut()
            {
                visit(resp);
            }
        }
    }
    doc["components"]["headers"] = Value::Object(shared);
}

/// The document as committed: pretty JSON and a final newline.
pub fn to_json() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("the document is JSON");
    text.push('\n');
    text
}

const INFO: &str = "keaplink runs Keap's OAuth flow for a partner's users, stores their tokens \
encrypted, refreshes them before they expire, and hands the partner's back-end a fresh access \
token on request.\n\n\
Rules every operation shares:\n\
- Bodies are JSON (at most 16 KiB; the proxy: 1 MiB); times are RFC 3339 UTC.\n\
- Every error is `{\"error\": {\"code\", \"message\"}}`; each operation lists the codes it can \
answer, by status. The message is for a person and may change; branch on the code.\n\
- Every answer of the Worker carries `x-request-id`; every JSON answer `cache-control: no-store`; \
every 429 `retry-after`.\n\
- A path not listed here (including any path with a trailing slash or an empty segment) is \
404 `not_found`. A method a path does not list is 405 `method_not_allowed` with `allow`. Every \
answer keaplink makes itself under `/v1/keap` (a refusal, a 404, a 405) carries `keaplink-error`. \
`HEAD` is answered wherever `GET` is: the same status and headers, no body.\n\
- Unknown or repeated query parameters of an operation that takes some are 400 `invalid_request`.\n\
- Listings' cursors are opaque; a cursor this endpoint did not issue is 400 `invalid_cursor`.\n\
- No answer carries a token or a secret, except `POST /v1/token` (what it is for) and a \
partner's secrets when they are created or rotated (shown once).";

/// 404 for a path that is not listed, as every Worker route answers it.
pub fn unknown_path_codes() -> &'static [ErrorCode] {
    &[ErrorCode::NotFound]
}

fn operation(op: Op, schemas: &mut Schemas, shared: &mut Map<String, Value>) -> Value {
    let mut responses: BTreeMap<String, Value> = BTreeMap::new();
    for (status, resp) in op.answers.iter() {
        merge(&mut responses, status.clone(), resp.clone());
    }
    // The error answers, grouped by status as the core's table pairs them.
    let mut codes = op.errors.clone();
    codes.extend(op.auth.codes());
    if op.worker {
        codes.extend([ErrorCode::Internal, ErrorCode::Misconfigured]);
    }
    if op.json_body {
        codes.extend([ErrorCode::InvalidRequest, ErrorCode::BodyTooLarge]);
    }
    if op.strict_query {
        codes.push(ErrorCode::InvalidRequest);
    }
    if op.params.iter().any(|p| p["in"] == "path") {
        // A path parameter holding a `/` (or left empty) makes a path that names no endpoint.
        codes.push(ErrorCode::NotFound);
    }
    // In the table's order, so the same codes make the same shared answer.
    codes.sort_by_key(|c| ErrorCode::ALL.iter().position(|a| a == c));
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for c in codes {
        let list = by_status.entry(c.status()).or_default();
        if !list.contains(&c) {
            list.push(c);
        }
    }
    for (status, codes) in by_status {
        let mut required: Vec<Header> = JSON.to_vec();
        if status == 429 {
            required.push(Header::RetryAfter);
        }
        // Errors carry the CORS grant too, so the widget can read them.
        let mut optional: Vec<Header> = if op.auth == Auth::Session {
            CORS.to_vec()
        } else {
            vec![]
        };
        if op.proxy {
            // Keap's own answers of the same status are relayed without them: on keaplink's
            // own, `keaplink-error` says so (and then `cache-control: no-store` is there too).
            // A 429 is always keaplink's (Keap's own is answered as `keap_quota`).
            if status != 429 {
                required.retain(|h| *h == Header::RequestId);
            } else {
                required.push(Header::KeaplinkError);
            }
            optional.extend([
                Header::KeaplinkError,
                Header::NoStore,
                Header::KeaplinkConnectionId,
            ]);
        }
        let description = codes
            .iter()
            .map(|c| format!("`{}`: {}", c.as_str(), build::sentence(*c)))
            .collect::<Vec<_>>()
            .join(" ");
        let mut schema = error_schema(schemas, &codes);
        if op.proxy {
            // The same statuses come back from Keap itself, relayed as Keap sent them. An answer
            // with `keaplink-error` is keaplink's own: the first branch.
            schema = json!({"anyOf": [schema, {"description": "Keap's own answer, relayed: Keap's status, body and content-type."}]});
        }
        let mut resp = json!({
            "description": description,
            "headers": headers(&required, &optional),
            "content": {"application/json": {"schema": schema, "examples": error_examples(&codes)}},
        });
        if op.proxy {
            // Keap's own answer of this status comes with its `x-keap-*` headers.
            resp["x-keaplink-header-prefixes"] = json!(["x-keap-"]);
        }
        let key = status.to_string();
        if let Some(page) = responses.get_mut(&key) {
            // The same status as an answer of its own (an HTML page): one response, two types.
            merge_into(page, &key, resp);
        } else {
            // Shared by every operation that answers the same codes the same way.
            let mut name = format!(
                "{status}-{}",
                codes
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join("-")
            );
            if op.auth == Auth::Session {
                name.push_str("-cors");
            }
            if op.proxy {
                name.push_str("-proxy");
            }
            let have = shared.entry(name.clone()).or_insert_with(|| resp.clone());
            assert_eq!(*have, resp, "two error answers named {name}");
            responses.insert(
                key,
                json!({"$ref": format!("#/components/responses/{name}")}),
            );
        }
    }
    if op.auth == Auth::Session {
        // Errors and answers alike carry the grant, so the widget can read them.
        for resp in responses.values_mut().filter(|r| r.get("$ref").is_none()) {
            let h = resp
                .as_object_mut()
                .expect("a response is an object")
                .entry("headers")
                .or_insert_with(|| json!({}));
            for c in CORS {
                h.as_object_mut()
                    .expect("headers are an object")
                    .entry(c.name())
                    .or_insert_with(|| c.object(false));
            }
        }
    }
    let mut out = Map::new();
    out.insert("operationId".into(), json!(op.id));
    out.insert("tags".into(), json!([op.tag]));
    out.insert("summary".into(), json!(op.summary));
    if !op.description.is_empty() {
        out.insert("description".into(), json!(op.description));
    }
    out.insert("security".into(), op.auth.security());
    if !op.params.is_empty() {
        out.insert("parameters".into(), Value::Array(op.params));
    }
    if let Some(body) = op.body {
        out.insert("requestBody".into(), body);
    }
    out.insert(
        "responses".into(),
        Value::Object(responses.into_iter().collect()),
    );
    Value::Object(out)
}

/// Adds `resp` under `status`, merging its content types and headers into one already there (a
/// header stays required only if every merged answer carries it).
fn merge(responses: &mut BTreeMap<String, Value>, status: String, resp: Value) {
    match responses.get_mut(&status) {
        Some(have) => merge_into(have, &status, resp),
        None => {
            responses.insert(status, resp);
        }
    }
}

fn merge_into(have: &mut Value, status: &str, resp: Value) {
    let d = format!(
        "{} Or: {}",
        have["description"].as_str().unwrap_or(""),
        resp["description"].as_str().unwrap_or("")
    );
    have["description"] = json!(d);
    let mut hs = have["headers"].as_object().cloned().unwrap_or_default();
    let theirs = resp["headers"].as_object().cloned().unwrap_or_default();
    for (name, h) in hs.iter_mut() {
        if !theirs.get(name).is_some_and(|t| t["required"] == true) {
            h["required"] = json!(false);
        }
    }
    for (name, mut h) in theirs {
        hs.entry(name).or_insert_with(|| {
            h["required"] = json!(false);
            h
        });
    }
    have["headers"] = Value::Object(hs);
    let mut content = have["content"].as_object().cloned().unwrap_or_default();
    for (media, m) in resp["content"].as_object().cloned().unwrap_or_default() {
        assert!(
            !content.contains_key(&media),
            "two answers of status {status} both as {media}"
        );
        content.insert(media, m);
    }
    have["content"] = Value::Object(content);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        out.push(v);
        match v {
            Value::Array(a) => a.iter().for_each(|x| every(x, out)),
            Value::Object(o) => o.values().for_each(|x| every(x, out)),
            _ => {}
        }
    }

    fn resolve<'a>(doc: &'a Value, r: &str) -> Option<&'a Value> {
        doc.pointer(r.strip_prefix('#')?)
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let mut all = Vec::new();
        every(&doc, &mut all);
        let refs: Vec<&str> = all
            .iter()
            .filter_map(|v| v.get("$ref").and_then(Value::as_str))
            .collect();
        assert!(refs.len() > 100, "{}", refs.len());
        for r in refs {
            assert!(resolve(&doc, r).is_some(), "{r} resolves to nothing");
        }
    }

    /// Each operation's answers, with shared ones looked up.
    fn responses(doc: &Value) -> Vec<(String, String, String, Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if method.starts_with("x-") {
                    continue;
                }
                for (status, resp) in op["responses"].as_object().unwrap() {
                    let resp = match resp.get("$ref").and_then(Value::as_str) {
                        Some(r) => resolve(doc, r).unwrap().clone(),
                        None => resp.clone(),
                    };
                    out.push((method.clone(), path.clone(), status.clone(), resp));
                }
            }
        }
        out
    }

    fn codes_of(resp: &Value) -> Vec<String> {
        let Some(schema) = resp.pointer("/content/application~1json/schema") else {
            return vec![];
        };
        let schema = schema.pointer("/anyOf/0").unwrap_or(schema);
        schema
            .pointer("/properties/error/properties/code/enum")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|c| c.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn every_documented_code_has_the_status_the_core_table_gives_it() {
        let doc = document();
        let mut seen = 0;
        for (method, path, status, resp) in responses(&doc) {
            for code in codes_of(&resp) {
                let c = ErrorCode::from_code(&code).unwrap_or_else(|| panic!("{code} is no code"));
                assert_eq!(c.status().to_string(), status, "{method} {path}: {code}");
                seen += 1;
            }
        }
        assert!(seen > 100, "{seen}");
    }

    #[test]
    fn every_code_of_the_table_is_documented_somewhere() {
        let doc = document();
        let text = doc.to_string();
        let mut json_codes = std::collections::HashSet::new();
        for (.., resp) in responses(&doc) {
            json_codes.extend(codes_of(&resp));
        }
        for c in ErrorCode::ALL {
            // The callback's codes reach the widget in a page's message or a redirect, not JSON.
            let in_prose = text.contains(&format!("`{}`", c.as_str()));
            assert!(
                json_codes.contains(c.as_str()) || in_prose,
                "{} is not documented",
                c.as_str()
            );
        }
    }

    #[test]
    fn every_answer_carries_the_request_id_or_is_a_static_file() {
        let doc = document();
        for (method, path, status, resp) in responses(&doc) {
            let static_file = doc["paths"][&path]["x-keaplink-static"] == true;
            if static_file && !status.starts_with('4') {
                continue;
            }
            assert!(
                resp.pointer("/headers/x-request-id").is_some(),
                "{method} {path} {status}"
            );
            if status == "429" {
                assert!(
                    resp.pointer("/headers/retry-after").is_some(),
                    "{method} {path}"
                );
            }
        }
    }

    #[test]
    fn operations_are_named_once_and_declare_their_path_parameters() {
        let doc = document();
        let mut ids = std::collections::HashSet::new();
        let mut n = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if method.starts_with("x-") {
                    continue;
                }
                n += 1;
                assert!(
                    ids.insert(op["operationId"].as_str().unwrap().to_owned()),
                    "{method} {path}"
                );
                let declared: Vec<&str> = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect();
                let in_template: Vec<&str> = path
                    .split('/')
                    .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                    .collect();
                assert_eq!(declared, in_template, "{method} {path}");
            }
        }
        assert!(n >= 35, "{n} operations");
    }

    #[test]
    fn flattened_types_are_one_closed_shape() {
        let doc = document();
        let detail = &doc["components"]["schemas"]["ConnectionDetail"];
        assert!(detail.get("allOf").is_none(), "{detail}");
        let props = detail["properties"].as_object().unwrap();
        for field in ["id", "keap_user", "user", "events", "refresh_expires_at"] {
            assert!(props.contains_key(field), "{field}");
        }
        let required = detail["required"].as_array().unwrap();
        assert!(required.contains(&json!("user")) && required.contains(&json!("id")));
    }
}
