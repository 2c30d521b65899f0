//! The pieces operations are made of: the schema registry (every body schema comes from a
//! `keaplink-api` type's `ToSchema`), error answers whose `code` is limited to the codes an
//! operation documents (their statuses read from `keaplink-core`'s one table), and headers.

use keaplink_core::ErrorCode;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The component schemas gathered while the operations are assembled.
#[derive(Default)]
pub struct Schemas {
    map: BTreeMap<String, Value>,
}

impl Schemas {
    /// A `$ref` to `T`'s schema, registering it and every schema it refers to.
    pub fn of<T: ToSchema>(&mut self) -> Value {
        let mut deps = Vec::new();
        T::schemas(&mut deps);
        for (name, schema) in deps {
            self.insert(
                name,
                serde_json::to_value(schema).expect("a schema is JSON"),
            );
        }
        let name = T::name().into_owned();
        self.insert(
            name.clone(),
            serde_json::to_value(T::schema()).expect("a schema is JSON"),
        );
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }

    fn insert(&mut self, name: String, schema: Value) {
        self.map.insert(name, schema);
    }

    /// The components, with every `allOf` of objects (serde's `flatten`) merged into one object:
    /// a flattened type's JSON is one object, and tools and validators that treat objects as
    /// closed (no undocumented field) need it said so.
    pub fn finish(self) -> Map<String, Value> {
        let mut out = Map::new();
        for name in self.map.keys() {
            out.insert(name.clone(), self.merged(&self.map[name]));
        }
        out
    }

    fn merged(&self, schema: &Value) -> Value {
        let Some(parts) = schema.get("allOf").and_then(Value::as_array) else {
            return schema.clone();
        };
        let mut properties = Map::new();
        let mut required: Vec<Value> = Vec::new();
        for part in parts {
            let part = match part.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let name = r.trim_start_matches("#/components/schemas/");
                    self.merged(
                        self.map
                            .get(name)
                            .unwrap_or_else(|| panic!("no schema {name}")),
                    )
                }
                None => self.merged(part),
            };
            assert_eq!(
                part.get("type"),
                Some(&json!("object")),
                "only objects are flattened: {part}"
            );
            for (k, v) in part["properties"].as_object().into_iter().flatten() {
                properties.insert(k.clone(), v.clone());
            }
            for r in part["required"].as_array().into_iter().flatten() {
                if !required.contains(r) {
                    required.push(r.clone());
                }
            }
        }
        let mut out = Map::new();
        out.insert("type".into(), json!("object"));
        if let Some(d) = schema.get("description") {
            out.insert("description".into(), d.clone());
        }
        out.insert("required".into(), Value::Array(required));
        out.insert("properties".into(), Value::Object(properties));
        Value::Object(out)
    }
}

/// One header of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    RequestId,
    NoStore,
    RetryAfter,
    Allow,
    /// `link` of a disconnect: Keap's Account Central.
    AccountCentral,
    Location,
    /// The CORS grant of an allowed `Origin` (sent only when the request had one).
    CorsOrigin,
    CorsVary,
    CorsExpose,
    CorsMethods,
    CorsHeaders,
    CorsMaxAge,
    /// The strict headers of an HTML page.
    Csp,
    FrameOptions,
    ReferrerPolicy,
    NoSniff,
    /// Static files: public, any origin, cacheable.
    PublicCors,
    PublicCache,
    /// Static files' `cache-control`, as the asset server or `_headers` sets it.
    AssetCache,
    ETag,
    CrossOriginOpenerPolicy,
    PermissionsPolicy,
    CrossOriginResourcePolicy,
    /// The proxy's.
    KeaplinkError,
    KeaplinkConnectionId,
    /// Keap's hook handshake, echoed.
    HookSecret,
    /// The MCP endpoint's 401: where its protected resource metadata is.
    WwwAuthenticate,
}

impl Header {
    pub fn name(self) -> &'static str {
        match self {
            Header::RequestId => "x-request-id",
            Header::NoStore | Header::PublicCache | Header::AssetCache => "cache-control",
            Header::RetryAfter => "retry-after",
            Header::Allow => "allow",
            Header::AccountCentral => "link",
            Header::Location => "location",
            Header::CorsOrigin | Header::PublicCors => "access-control-allow-origin",
            Header::CorsVary => "vary",
            Header::CorsExpose => "access-control-expose-headers",
            Header::CorsMethods => "access-control-allow-methods",
            Header::CorsHeaders => "access-control-allow-headers",
            Header::CorsMaxAge => "access-control-max-age",
            Header::Csp => "content-security-policy",
            Header::FrameOptions => "x-frame-options",
            Header::ReferrerPolicy => "referrer-policy",
            Header::NoSniff => "x-content-type-options",
            Header::ETag => "etag",
            Header::CrossOriginOpenerPolicy => "cross-origin-opener-policy",
            Header::PermissionsPolicy => "permissions-policy",
            Header::CrossOriginResourcePolicy => "cross-origin-resource-policy",
            Header::KeaplinkError => "keaplink-error",
            Header::KeaplinkConnectionId => "keaplink-connection-id",
            Header::HookSecret => "x-hook-secret",
            Header::WwwAuthenticate => "www-authenticate",
        }
    }

    /// Its name under `components.headers`.
    pub fn component(self) -> &'static str {
        match self {
            Header::RequestId => "RequestId",
            Header::NoStore => "NoStore",
            Header::RetryAfter => "RetryAfter",
            Header::Allow => "Allow",
            Header::AccountCentral => "AccountCentralLink",
            Header::Location => "Location",
            Header::CorsOrigin => "CorsAllowOrigin",
            Header::CorsVary => "CorsVary",
            Header::CorsExpose => "CorsExposeHeaders",
            Header::CorsMethods => "CorsAllowMethods",
            Header::CorsHeaders => "CorsAllowHeaders",
            Header::CorsMaxAge => "CorsMaxAge",
            Header::Csp => "PageCsp",
            Header::FrameOptions => "FrameOptions",
            Header::ReferrerPolicy => "ReferrerPolicy",
            Header::NoSniff => "NoSniff",
            Header::PublicCors => "PublicAllowOrigin",
            Header::PublicCache => "PublicCacheControl",
            Header::AssetCache => "AssetCacheControl",
            Header::CrossOriginOpenerPolicy => "CrossOriginOpenerPolicy",
            Header::PermissionsPolicy => "PermissionsPolicy",
            Header::ETag => "ETag",
            Header::CrossOriginResourcePolicy => "CrossOriginResourcePolicy",
            Header::KeaplinkError => "KeaplinkError",
            Header::KeaplinkConnectionId => "KeaplinkConnectionId",
            Header::HookSecret => "HookSecret",
            Header::WwwAuthenticate => "WwwAuthenticate",
        }
    }

    /// The header object; `required` when every answer it is listed on carries it. `x-component`
    /// names it for `components.headers` (and is taken out there).
    pub fn object(self, required: bool) -> Value {
        let (description, schema): (&str, Value) = match self {
            Header::RequestId => (
                "This request's id (Cloudflare's ray id when there is one): quote it when asking about a request; it names the Worker's log line.",
                json!({"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"}),
            ),
            Header::NoStore => (
                "Answers of the API carry tokens or per-user state: no cache may keep them.",
                json!({"type": "string", "const": "no-store"}),
            ),
            Header::RetryAfter => (
                "Seconds to wait before trying again.",
                json!({"type": "string", "pattern": "^[0-9]+$"}),
            ),
            Header::Allow => (
                "The methods this path answers.",
                json!({"type": "string"}),
            ),
            Header::AccountCentral => (
                "Keap's Account Central (`rel=\"related\"`), where the user can remove the app on Keap's side: Keap has no revoke API.",
                json!({"type": "string"}),
            ),
            Header::Location => ("Where to go next.", json!({"type": "string"})),
            Header::CorsOrigin => (
                "The request's `Origin`, when one of the partner's `allowed_origins` (never `*`). Sent only when the request had an `Origin`.",
                json!({"type": "string"}),
            ),
            Header::CorsVary => (
                "`Origin`: the answer depends on it.",
                json!({"type": "string", "const": "Origin"}),
            ),
            Header::CorsExpose => (
                "The headers a page may read.",
                json!({"type": "string"}),
            ),
            Header::CorsMethods => ("Methods a page may use.", json!({"type": "string"})),
            Header::CorsHeaders => ("Headers a page may send.", json!({"type": "string"})),
            Header::CorsMaxAge => (
                "Seconds a browser may keep this preflight.",
                json!({"type": "string", "pattern": "^[0-9]+$"}),
            ),
            Header::Csp => (
                "A strict Content-Security-Policy: nothing loads but what the page needs, nothing may frame it.",
                json!({"type": "string"}),
            ),
            Header::FrameOptions => ("`DENY`.", json!({"type": "string", "const": "DENY"})),
            Header::ReferrerPolicy => (
                "`no-referrer`: the page's URL (which may hold a one-time token) goes nowhere.",
                json!({"type": "string"}),
            ),
            Header::NoSniff => ("`nosniff`.", json!({"type": "string", "const": "nosniff"})),
            Header::PublicCors => (
                "`*`: a public file, no credentials.",
                json!({"type": "string", "const": "*"}),
            ),
            Header::PublicCache => (
                "Public and cacheable.",
                json!({"type": "string", "pattern": "public"}),
            ),
            Header::AssetCache => (
                "How long a cache may keep the file (revalidated by its etag).",
                json!({"type": "string"}),
            ),
            Header::ETag => ("The file's version.", json!({"type": "string"})),
            Header::CrossOriginResourcePolicy => (
                "Who may load the file: `cross-origin` for the widget's (partners' pages load them), `same-origin` for the console's.",
                json!({"type": "string", "enum": ["cross-origin", "same-origin"]}),
            ),
            Header::CrossOriginOpenerPolicy => (
                "`same-origin`: no other page keeps a handle on the console's window.",
                json!({"type": "string"}),
            ),
            Header::PermissionsPolicy => (
                "The browser features the page may not use.",
                json!({"type": "string"}),
            ),
            Header::KeaplinkError => (
                "On an answer made by keaplink (not relayed from Keap): the error's code, the same as the body's.",
                json!({"type": "string"}),
            ),
            Header::KeaplinkConnectionId => (
                "The connection whose token the call used.",
                json!({"type": "string"}),
            ),
            Header::HookSecret => (
                "Keap's handshake secret, echoed (on the answer to a handshake only).",
                json!({"type": "string"}),
            ),
            Header::WwwAuthenticate => (
                "`Bearer resource_metadata=\"<the MCP server's protected resource metadata URL>\", error=\"invalid_token\"` (RFC 9728 §5.1): how an MCP client finds where to sign in.",
                json!({"type": "string", "pattern": "^Bearer resource_metadata=\""}),
            ),
        };
        json!({"description": description, "required": required, "schema": schema, "x-component": self.component()})
    }
}

/// The header of every Worker answer.
pub const WORKER: &[Header] = &[Header::RequestId];
/// Every JSON answer of the Worker (and its errors).
pub const JSON: &[Header] = &[Header::RequestId, Header::NoStore];
/// The CORS grant on every widget-facing answer, present when the request had an allowed Origin.
pub const CORS: &[Header] = &[Header::CorsOrigin, Header::CorsVary, Header::CorsExpose];
/// The headers of every HTML page the Worker answers.
pub const PAGE: &[Header] = &[
    Header::RequestId,
    Header::Csp,
    Header::FrameOptions,
    Header::ReferrerPolicy,
    Header::NoStore,
    Header::NoSniff,
];

/// A `headers` object: `required` headers first, then `optional` ones.
pub fn headers(required: &[Header], optional: &[Header]) -> Value {
    let mut out = Map::new();
    for h in required {
        out.insert(h.name().into(), h.object(true));
    }
    for h in optional {
        out.entry(h.name()).or_insert_with(|| h.object(false));
    }
    Value::Object(out)
}

/// The JSON Schema of an error answer whose `code` is one of `codes`.
pub fn error_schema(schemas: &mut Schemas, codes: &[ErrorCode]) -> Value {
    // The body's shape is keaplink-api's ErrorBody; only the code is narrowed here.
    schemas.of::<keaplink_api::ErrorBody>();
    let mut detail =
        serde_json::to_value(<keaplink_api::ErrorDetail as utoipa::PartialSchema>::schema())
            .expect("a schema is JSON");
    let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    detail["properties"]["code"] = json!({"type": "string", "enum": names});
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": detail},
    })
}

/// Examples of an error answer, one per code.
pub fn error_examples(codes: &[ErrorCode]) -> Value {
    let mut out = Map::new();
    for c in codes {
        out.insert(
            c.as_str().into(),
            json!({"value": {"error": {"code": c.as_str(), "message": sentence(*c)}}}),
        );
    }
    Value::Object(out)
}

/// What each code means, for the descriptions and the examples.
pub fn sentence(code: ErrorCode) -> &'static str {
    use ErrorCode::*;
    match code {
        InvalidRequest => "A malformed body, field or query parameter: the message names which and what is expected (never the value sent).",
        InvalidId => "The id in the path is not one of ours.",
        InvalidPartner => "The partner's fields break a rule: the message says which.",
        ReturnUrlNotAllowed => "return_to is not one of the partner's return_urls.",
        InvalidState => "A bad, reused or expired OAuth state.",
        InvalidCursor => "The cursor was not issued by this endpoint.",
        InvalidKeapPath => "The path is not one keaplink forwards to Keap.",
        InvalidGrant => "The code or token is not valid (unknown, used, expired, revoked, or issued to another client, redirect URI or resource), or the grant's partner no longer offers its MCP server (the grant is ended).",
        InvalidTarget => "`resource` names no MCP server this deployment offers (RFC 8707).",
        InvalidClientMetadata => "The client metadata breaks a rule: the message says which.",
        InvalidRedirectUri => "A redirect URI is not https, nor http on a loopback host, or carries credentials or a fragment.",
        UnsupportedGrantType => "grant_type is not authorization_code or refresh_token.",
        InvalidClient => "The client_id is not one this deployment registered (or its registration expired).",
        InvalidToken => "No valid OAuth access token for this MCP server.",
        AccessDenied => "The user declined at Keap.",
        MissingCredentials => "No `Authorization: Bearer` credential.",
        InvalidSession => "The session JWT is refused (signature, alg, aud, iss, exp or iat).",
        InvalidApiKey => "The API key is not a live partner's.",
        InvalidAdminToken => "Not the admin token.",
        OriginNotAllowed => "The page's origin is not one of the partner's allowed_origins.",
        ExportDisabled => "Export is off for this partner (the operator's `export_enabled`).",
        NotFound => "No such endpoint (paths take no trailing slash).",
        PartnerNotFound => "No such partner.",
        NoConnection => "No such connection (another partner's or user's ids answer this too).",
        NoImport => "No such import (another partner's import ids answer this too).",
        MethodNotAllowed => "This path does not answer this method (see `allow`).",
        HookGone => "No link has this hook URL (it was deleted): Keap stops calling it.",
        NeedsReauth => "The link needs its user to reconnect.",
        AmbiguousConnection => "The user has several Keap apps linked and none was named.",
        IdentityMismatch => "A reconnect signed in as another Keap user or app; nothing changed.",
        Exported => "The link was exported: keaplink no longer hands out or uses its tokens.",
        BodyTooLarge => "The body is over the limit.",
        KeapThrottled => "Keap is throttling; wait `retry-after` seconds.",
        KeapQuota => "Keap's quota is spent (or down to the reserve kept for refreshes); wait `retry-after` seconds.",
        RateLimited => "Too many requests; wait `retry-after` seconds.",
        Internal => "Something went wrong on our side; try again.",
        Misconfigured => "The deployment is misconfigured.",
        KeapError => "Keap refused or failed.",
        KeapBadResponse => "Keap answered something unexpected.",
        KeapTimeout => "Keap did not answer in time.",
    }
}

/// The codes `last_error.code` takes: every failure the refresh engine records.
pub fn failure_codes() -> Vec<&'static str> {
    use keaplink_core::connection::FailureKind::{self, *};
    // Exhaustive: a failure added to the core fails to compile here until it is listed below.
    fn listed(k: FailureKind) -> bool {
        match k {
            RefreshTokenInvalid | RefreshLost | KeapThrottled | KeapUnavailable | KeapTimeout
            | KeapRejected | KeapBadResponse => true,
        }
    }
    let all = [
        RefreshTokenInvalid,
        RefreshLost,
        KeapThrottled,
        KeapUnavailable,
        KeapTimeout,
        KeapRejected,
        KeapBadResponse,
    ];
    all.iter()
        .filter(|k| listed(**k))
        .map(|k| k.code())
        .collect()
}
