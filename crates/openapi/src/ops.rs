//! Every operation of the Worker and of the static files it ships: path, parameters, body, the
//! answers it makes and the error codes it can answer (their statuses come from the core's table).
//! Examples are real `keaplink-api` values, serialized: they cannot hold a field the type lacks.

use crate::build::{headers, Header, Schemas, JSON, PAGE, WORKER};
use keaplink_api as api;
use keaplink_core::ErrorCode::{self, *};
use serde::Serialize;
use serde_json::{json, Value};

/// Who may call an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    Public,
    Admin,
    Session,
    ApiKey,
    /// The partner's API key, or (the console's operator view) the admin token with a
    /// `keaplink-partner` header naming the partner.
    Console,
}

impl Auth {
    pub fn codes(self) -> Vec<ErrorCode> {
        match self {
            Auth::Public => vec![],
            Auth::Admin => vec![MissingCredentials, InvalidAdminToken],
            Auth::Session => vec![MissingCredentials, InvalidSession, OriginNotAllowed],
            Auth::ApiKey => vec![MissingCredentials, InvalidApiKey],
            // With the admin token, a missing or malformed `keaplink-partner` is 400
            // `invalid_request`, a partner that does not exist 404 `partner_not_found`.
            Auth::Console => vec![
                MissingCredentials,
                InvalidApiKey,
                InvalidRequest,
                PartnerNotFound,
            ],
        }
    }

    pub fn security(self) -> Value {
        match self {
            Auth::Public => json!([]),
            Auth::Admin => json!([{"adminToken": []}]),
            Auth::Session => json!([{"sessionJwt": []}]),
            Auth::ApiKey => json!([{"apiKey": []}]),
            Auth::Console => json!([{"apiKey": []}, {"adminToken": []}]),
        }
    }
}

pub struct Op {
    pub method: &'static str,
    pub path: &'static str,
    pub id: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub description: &'static str,
    pub auth: Auth,
    pub params: Vec<Value>,
    pub body: Option<Value>,
    /// The body is JSON read under the 16 KiB rule (400 `invalid_request`, 413 `body_too_large`).
    pub json_body: bool,
    /// Its query parameters are checked (unknown or repeated: 400 `invalid_request`).
    pub strict_query: bool,
    /// Answered by the Worker (not a static file): 500 `internal` / `misconfigured` anywhere.
    pub worker: bool,
    /// The Keap proxy: answers made by keaplink carry `keaplink-error`.
    pub proxy: bool,
    pub answers: Vec<(String, Value)>,
    pub errors: Vec<ErrorCode>,
}

impl Op {
    fn new(
        method: &'static str,
        path: &'static str,
        id: &'static str,
        tag: &'static str,
        auth: Auth,
    ) -> Op {
        Op {
            method,
            path,
            id,
            tag,
            summary: "",
            description: "",
            auth,
            params: vec![],
            body: None,
            json_body: false,
            strict_query: false,
            worker: true,
            proxy: false,
            answers: vec![],
            errors: vec![],
        }
    }

    fn summary(mut self, s: &'static str) -> Self {
        self.summary = s;
        self
    }

    fn describe(mut self, d: &'static str) -> Self {
        self.description = d;
        self
    }

    fn param(mut self, p: Value) -> Self {
        self.params.push(p);
        self
    }

    /// A query parameter; the operation's query is then checked strictly.
    fn query(mut self, name: &str, schema: Value, description: &str) -> Self {
        self.strict_query = true;
        self.params.push(json!({
            "name": name, "in": "query", "required": false,
            "description": description, "schema": schema,
        }));
        self
    }

    fn json_body(mut self, schema: Value, required: bool, example: Value) -> Self {
        self.json_body = true;
        self.body = Some(json!({
            "required": required,
            "content": {"application/json": {"schema": schema, "example": example}},
        }));
        self
    }

    fn answer(mut self, status: u16, resp: Value) -> Self {
        self.answers.push((status.to_string(), resp));
        self
    }

    fn errors(mut self, codes: &[ErrorCode]) -> Self {
        self.errors.extend_from_slice(codes);
        self
    }
}

/// The CORS preflight of a widget path (each of its path parameters listed, and unread).
fn widget_preflight(path: &'static str, id: &'static str) -> Op {
    let mut op = Op::new("options", path, id, "widget", Auth::Public)
        .summary("CORS preflight")
        .describe(PREFLIGHT);
    for name in path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
    {
        op = op.param(path_param(
            name,
            json!({"type": "string"}),
            "Any: a preflight does not read it.",
        ));
    }
    op.param(origin_header())
        .answer(204, preflight())
        .errors(&[OriginNotAllowed])
}

fn path_param(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
}

fn connection_id() -> Value {
    path_param(
        "id",
        json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{22}$", "example": "8uLmQJ6sZ3x2WmN1pQr4Tw"}),
        "A connection's id (as its `id` field gives it). Anything else: 400 `invalid_id`.",
    )
}

fn partner_id() -> Value {
    path_param(
        "partner_id",
        json!({"type": "string", "pattern": "^[a-z0-9-]{1,64}$", "example": "acme"}),
        "1-64 of `a-z`, `0-9` and `-` (else 400 `invalid_id`).",
    )
}

fn limit(default: u64, max: Option<u64>) -> Value {
    let mut s = json!({"type": "integer", "minimum": 1, "default": default});
    if let Some(m) = max {
        s["maximum"] = json!(m);
    }
    s
}

fn cursor() -> Value {
    json!({"type": "string", "description": "Opaque: pass back the previous page's `cursor`."})
}

/// A JSON answer of the Worker.
fn ok_json(description: &str, schema: Value, example: Value) -> Value {
    json!({
        "description": description,
        "headers": headers(JSON, &[]),
        "content": {"application/json": {"schema": schema, "example": example}},
    })
}

fn no_content(description: &str, required: &[Header]) -> Value {
    let mut all = WORKER.to_vec();
    all.extend_from_slice(required);
    json!({"description": description, "headers": headers(&all, &[])})
}

fn html(description: &str, extra: &[Header]) -> Value {
    let mut all = PAGE.to_vec();
    all.extend_from_slice(extra);
    json!({
        "description": description,
        "headers": headers(&all, &[]),
        "content": {"text/html": {"schema": {"type": "string"}}},
    })
}

fn redirect(status_text: &str, description: &str) -> Value {
    let mut all = WORKER.to_vec();
    all.push(Header::Location);
    json!({
        "description": format!("{status_text}: {description}"),
        "headers": headers(&all, &[Header::Csp, Header::FrameOptions, Header::ReferrerPolicy, Header::NoStore, Header::NoSniff]),
    })
}

fn ex<T: Serialize>(v: T) -> Value {
    serde_json::to_value(v).expect("an example is JSON")
}

const T0: &str = "2026-01-01T00:00:00Z";

pub(crate) fn sample_connection() -> api::Connection {
    api::Connection {
        id: "8uLmQJ6sZ3x2WmN1pQr4Tw".into(),
        keap_app: "ab123".into(),
        keap_app_name: Some("Ann's Bakery".into()),
        keap_user: api::KeapUser {
            email: "ann@ab123.example".into(),
            name: "Ann Baker".into(),
        },
        status: api::ConnectionStatus::Active,
        connected_at: T0.into(),
        refreshed_at: Some("2026-01-02T06:00:00Z".into()),
        reconnected_at: None,
        access_expires_at: "2026-01-03T06:00:00Z".into(),
        refresh_expires_at: "2026-02-16T06:00:00Z".into(),
        reconnect_before: None,
        last_error: None,
    }
}

fn sample_partner_connection() -> api::PartnerConnection {
    api::PartnerConnection {
        connection: sample_connection(),
        user: "user-42".into(),
    }
}

fn sample_partner(with_secrets: bool) -> api::PartnerView {
    api::PartnerView {
        partner_id: "acme".into(),
        name: "Acme Booking".into(),
        allowed_origins: vec!["https://app.acme.example".into()],
        return_urls: vec!["https://app.acme.example/settings".into()],
        webhook_url: Some("https://app.acme.example/hooks/keaplink".into()),
        reconnect_identity: api::ReconnectIdentity::User,
        webhook_repair_links: false,
        export_enabled: false,
        mcp: api::McpSettings {
            enabled: true,
            sign_in_url: Some("https://app.acme.example/keaplink-mcp".into()),
            tools: api::McpTools::Read,
        },
        session_secret: with_secrets.then(|| "a-session-secret-shown-once".into()),
        api_key: with_secrets.then(|| "klk.acme.an-api-key-shown-once".into()),
    }
}

fn sample_delivery() -> api::WebhookDelivery {
    api::WebhookDelivery {
        id: "evt_0123456789abcdef".into(),
        event_type: "connection.needs_reauth".into(),
        created_at: T0.into(),
        connection_id: Some("8uLmQJ6sZ3x2WmN1pQr4Tw".into()),
        user: Some("user-42".into()),
        state: api::DeliveryState::Failed,
        attempts: 3,
        last_status: Some(500),
        last_attempt_at: Some("2026-01-01T00:10:00Z".into()),
        next_retry_at: None,
    }
}

fn counts() -> (api::ConnectionCounts, api::RefreshCounts) {
    (
        api::ConnectionCounts {
            total: 120,
            active: 116,
            needs_reauth: 3,
            exported: 1,
        },
        api::RefreshCounts {
            succeeded: 140,
            failed: 2,
            needs_reauth: 1,
        },
    )
}

/// Every operation, in the order the document lists them.
pub fn all(s: &mut Schemas) -> Vec<Op> {
    let (connections, refreshes) = counts();
    let mut ops = vec![
        // Health and this document.
        Op::new("get", "/healthz", "health", "health", Auth::Public)
            .summary("Liveness")
            .answer(200, ok_json("Up.", s.of::<api::Health>(), ex(api::Health { ok: true }))),
        {
            let mut op = Op::new("get", "/v1/openapi.json", "openapiDocument", "health", Auth::Public)
                .summary("This document")
                .describe("A static file of the deploy: public, cacheable, any origin.");
            op.worker = false;
            op.answer(200, json!({
                "description": "The OpenAPI 3.1 document.",
                "headers": headers(&[Header::PublicCors, Header::PublicCache], &[Header::ETag, Header::NoSniff]),
                "content": {"application/json": {"schema": {"type": "object", "required": ["openapi", "paths"]}}},
            }))
        },
        // The widget's endpoints.
        Op::new("get", "/v1/me/connections", "listMyConnections", "widget", Auth::Session)
            .summary("The signed-in user's links")
            .answer(200, ok_json("The user's links (each Keap app at most once).", s.of::<api::MyConnections>(),
                ex(api::MyConnections { connections: vec![sample_connection()] })))
            // A query parameter (it takes none).
            .errors(&[InvalidRequest]),
        widget_preflight("/v1/me/connections", "preflightMyConnections"),
        Op::new("post", "/v1/me/connect", "connect", "widget", Auth::Session)
            .summary("Start linking a Keap account")
            .describe("Answers the URL to open (a popup, or the same tab) at Keap: through Keap's sign-out hop unless `sign_out_first` is false or the deployment has the hop off. The flow ends at `GET /oauth/callback`. An empty body is allowed. With `connection_id`, a reconnect of that link of the signed-in user, identity-locked (same Keap app; same Keap user unless the partner's `reconnect_identity` is `app`). Rate-limited per client address (before credentials) and per partner.")
            .json_body(s.of::<api::ConnectRequest>(), false, ex(api::ConnectRequest { sign_out_first: true, return_to: Some("https://app.acme.example/settings".into()), connection_id: None }))
            .answer(200, ok_json("Open `authorize_url`.", s.of::<api::ConnectResponse>(),
                ex(api::ConnectResponse { authorize_url: "https://accounts.infusionsoft.com/app/oauth/authorize?client_id=your-client-id&redirect_uri=https%3A%2F%2Fkeaplink.example%2Foauth%2Fcallback&response_type=code&scope=full&state=opaque-state".into() })))
            .errors(&[InvalidId, ReturnUrlNotAllowed, NoConnection, RateLimited]),
        widget_preflight("/v1/me/connect", "preflightConnect"),
        Op::new("delete", "/v1/me/connections/{id}", "disconnectMine", "widget", Auth::Session)
            .summary("Disconnect one of the signed-in user's links")
            .describe("Deletes the link and its tokens at once. Keap has no revoke API: `link` points to Keap's Account Central, where the user can remove the app on Keap's side.")
            .param(connection_id())
            .answer(204, no_content("Disconnected.", &[Header::AccountCentral]))
            .errors(&[InvalidRequest, InvalidId, NoConnection]),
        widget_preflight("/v1/me/connections/{id}", "preflightDisconnectMine"),
        // Keap's redirect back.
        callback(),
        // Repair links: hosted pages.
        Op::new("get", "/link/{token}", "repairPage", "oauth", Auth::Public)
            .summary("A repair link's page")
            .describe("The page a repair link opens: names the partner and the Keap app, and has one button (a POST to the same URL). A GET never spends the link (mail scanners open links).")
            .param(repair_token())
            .answer(200, html("The page, with its button.", &[]))
            .answer(404, html("An unknown link.", &[]))
            .answer(410, html("A link already used (it restored its connection), or expired.", &[]))
            .answer(429, html("Too many attempts from this address (counted with the sign-in flow).", &[Header::RetryAfter])),
        Op::new("post", "/link/{token}", "useRepairLink", "oauth", Auth::Public)
            .summary("Use a repair link (the page's button)")
            .describe("Counts an attempt of the link (at most 5, each on the connection's timeline as `repair_link_tried`) and starts a sign-out-first, identity-locked reconnect of its connection: 303 to Keap's sign-out hop. The flow ends at `GET /oauth/callback`, whose page says whether the link is restored. Only a restore spends the link (`repair_link_used`); a refused or cancelled attempt's page offers Try again (`POST /link/again/{state}`).")
            .param(repair_token())
            .answer(303, redirect("See other", "to Keap (through its sign-out hop)."))
            .answer(404, html("An unknown link.", &[]))
            .answer(410, html("A link already used (it restored its connection), expired, or tried 5 times.", &[]))
            .answer(429, html("Too many sign-in attempts from this address.", &[Header::RetryAfter])),
        Op::new("post", "/link/again/{state}", "retryRepairLink", "oauth", Auth::Public)
            .summary("Try a repair link again (the refused page's button)")
            .describe("The Try again of a repair link's attempt that signed in as someone else or was cancelled at Keap: `state` (one use, 10 minutes) names the link by its hash, never its token. Counts another attempt, as `POST /link/{token}` does: 303 to Keap's sign-out hop.")
            .param(path_param("state", json!({"type": "string"}), "The one-use state the refused page's form names."))
            .answer(303, redirect("See other", "to Keap (through its sign-out hop)."))
            .answer(404, html("An unknown or already used state, or a link that is gone.", &[]))
            .answer(410, html("A link already used (it restored its connection), expired, or tried 5 times.", &[]))
            .answer(429, html("Too many sign-in attempts from this address.", &[Header::RetryAfter])),
        // The partner's back-end.
        Op::new("post", "/v1/token", "token", "partner", Auth::ApiKey)
            .summary("A fresh access token for a user's link")
            .describe("The partner back-end's hot path: a token valid at least 60 s, refreshed first (through the connection's single writer) when it has under REFRESH_MARGIN_SECS left. `keap_app` names the link when the user has several. 429/502/504: a refresh that was needed failed and the stored token has under 60 s left.")
            .json_body(s.of::<api::TokenRequest>(), true, ex(api::TokenRequest { user: "user-42".into(), keap_app: Some("ab123".into()) }))
            .answer(200, ok_json("A token good for at least 60 s.", s.of::<api::TokenResponse>(),
                ex(api::TokenResponse { access_token: "KeapAccessTokenExample".into(), expires_at: "2026-01-02T00:00:00Z".into(), keap_app: "ab123".into() })))
            .errors(&[NoConnection, NeedsReauth, AmbiguousConnection, Exported, KeapThrottled, RateLimited, KeapError, KeapBadResponse, KeapTimeout]),
        Op::new("get", "/v1/connections", "listConnections", "partner", Auth::Console)
            .summary("Every link of the partner, a page at a time")
            .describe("From the listing's metadata (no token is read). Filter by `status` and search by `q`; page with `cursor` until it is `null`.")
            .query("limit", limit(100, Some(1000)), "Links per page: 1-1000, or 1-100 with `q` or `status=needs_reauth` (they read a search index).")
            .query("cursor", cursor(), "The previous page's cursor (bound to the same `status` and `q`).")
            .query("status", s.of::<api::ConnectionStatus>(), "Only links of this status.")
            .query("q", json!({"type": "string", "maxLength": 128}), "Search, by prefix: a Keap app id, a partner user id or a Keap user's email (at most 128 characters).")
            .param(keaplink_partner())
            .answer(200, ok_json("One page.", s.of::<api::PartnerConnections>(),
                ex(api::PartnerConnections { connections: vec![sample_partner_connection()], cursor: Some("opaque-cursor".into()) })))
            .errors(&[InvalidCursor]),
        Op::new("get", "/v1/connections/{id}", "getConnection", "partner", Auth::Console)
            .summary("One link and its timeline")
            .describe("The link and its last 100 events, newest first. Another partner's id is 404, never 403.")
            .param(connection_id())
            .param(keaplink_partner())
            .answer(200, ok_json("The link.", s.of::<api::ConnectionDetail>(), ex(api::ConnectionDetail {
                connection: sample_partner_connection(),
                events: vec![
                    api::ConnectionEvent { at: "2026-01-02T06:00:00Z".into(), kind: api::ConnectionEventKind::Refreshed, code: None, detail: None },
                    api::ConnectionEvent { at: T0.into(), kind: api::ConnectionEventKind::Created, code: None, detail: None },
                ],
            })))
            .errors(&[InvalidId, NoConnection]),
        Op::new("delete", "/v1/connections/{id}", "deleteConnection", "partner", Auth::Console)
            .summary("Disconnect a link")
            .describe("Deletes the link and its tokens. Another partner's id is 404, never 403.")
            .param(connection_id())
            .param(keaplink_partner())
            .answer(204, no_content("Disconnected.", &[]))
            .errors(&[InvalidId, NoConnection]),
        Op::new("post", "/v1/connections/{id}/refresh", "refreshConnection", "partner", Auth::Console)
            .summary("Refresh a link now")
            .describe("Refreshes through the connection's single writer and answers the link as it now stands (a failure shows in `last_error`, or as `needs_reauth`).")
            .param(connection_id())
            .param(keaplink_partner())
            .answer(200, ok_json("The link after the refresh.", s.of::<api::PartnerConnection>(), ex(sample_partner_connection())))
            .errors(&[InvalidId, NoConnection, NeedsReauth, KeapThrottled, KeapError, KeapBadResponse, KeapTimeout]),
        Op::new("put", "/v1/connections/{id}/hooks", "setConnectionHooks", "partner", Auth::Console)
            .summary("Choose the Keap events a link delivers")
            .describe("Subscribes the link at Keap (REST hooks, through the link's token) to each event key listed, with a hook URL of keaplink's own that is unique to the link and never shown; deletes at Keap the hooks of event keys no longer listed (an empty list deletes them all). keaplink answers Keap's handshake itself. From then on each batch Keap posts is delivered to the partner's `webhook_url` as `keap.<event_key>` (see the webhooks), once, signed; with `hydrate: true` each object is read through the link's token and sent along (in events of at most 50 objects). The body is checked whole first: an unknown event key, a key listed twice or more keys than Keap has is 400 and nothing is subscribed. A hook Keap refused is answered `failed` with its `error`, and tried again by the next check; the link's timeline notes the change (`hooks_set`).")
            .param(connection_id())
            .param(keaplink_partner())
            .json_body(s.of::<api::HooksRequest>(), true, ex(api::HooksRequest { event_keys: vec!["contact.add".into(), "invoice.payment.add".into()], hydrate: Some(false) }))
            .answer(200, ok_json("The link's hooks now.", s.of::<api::Hooks>(), ex(sample_hooks())))
            .errors(&[InvalidId, NoConnection, NeedsReauth, Exported, KeapQuota, KeapThrottled]),
        Op::new("get", "/v1/connections/{id}/hooks", "getConnectionHooks", "partner", Auth::Console)
            .summary("A link's Keap hooks")
            .describe("Each event key's hook as keaplink last knew it (`verified`, `pending` while Keap has not confirmed the handshake, `inactive` when Keap stopped delivering after failed tries, `failed` when Keap refused it) and when Keap last posted an event of that key. The sweep checks the hooks at Keap every `KEAP_HOOKS_CHECK_SECS` (an hour by default) and verifies again or re-creates what lapsed.")
            .param(connection_id())
            .param(keaplink_partner())
            .answer(200, ok_json("The link's hooks.", s.of::<api::Hooks>(), ex(sample_hooks())))
            .errors(&[InvalidId, NoConnection]),
        Op::new("delete", "/v1/connections/{id}/hooks", "deleteConnectionHooks", "partner", Auth::Console)
            .summary("Stop a link's Keap events")
            .describe("Deletes every hook of the link at Keap (the link stays); its hook URL then answers Keap 410. Disconnecting, deleting or exporting a link does this too.")
            .param(connection_id())
            .param(keaplink_partner())
            .answer(204, no_content("Deleted.", &[]))
            .errors(&[InvalidId, NoConnection, NeedsReauth, Exported, KeapQuota, KeapThrottled]),
        Op::new("post", "/hooks/keap/{token}", "keapHookInbox", "keap", Auth::Public)
            .summary("Where Keap posts a link's events")
            .describe("Called by Keap only: the URL keaplink subscribed for one link (its token is a credential, never shown or logged). A handshake (`X-Hook-Secret`) is echoed; a batch (`{\"event_key\", \"object_type\", \"object_keys\": [{\"id\", \"timestamp\"}]}`, up to 1,000 keys) is queued and answered 200 at once, whatever the partner's receiver does. The URL alone decides the link. An unknown URL (a removed link's) answers 410, which makes Keap stop calling it.")
            .param(path_param("token", json!({"type": "string"}), "The link's hook token (43 characters)."))
            .answer(200, json!({"description": "Received (a batch), or the handshake echoed in `x-hook-secret`.", "headers": headers(WORKER, &[Header::HookSecret])}))
            .errors(&[InvalidRequest, HookGone, BodyTooLarge]),
        Op::new("post", "/v1/connections/{id}/repair-link", "createRepairLink", "partner", Auth::Console)
            .summary("Make a repair link")
            .describe("A single-use link to a page hosted by keaplink where the user restores this link themselves (e.g. mailed after a `connection.needs_reauth` webhook). `ttl_secs` 300 to 2,592,000 (default 604,800: a week); an empty body is allowed.")
            .param(connection_id())
            .param(keaplink_partner())
            .json_body(s.of::<api::RepairLinkRequest>(), false, ex(api::RepairLinkRequest { ttl_secs: Some(604_800) }))
            .answer(200, ok_json("The link.", s.of::<api::RepairLink>(),
                ex(api::RepairLink { url: "https://keaplink.example/link/opaque-single-use-token".into(), expires_at: "2026-01-08T00:00:00Z".into() })))
            .errors(&[InvalidId, NoConnection]),
        imports_start(s),
        Op::new("get", "/v1/imports/{import_id}", "getImport", "partner", Auth::Console)
            .summary("An import's progress and its items")
            .describe("The counts by outcome, and 100 items a page in `index` order (follow `cursor` until it is `null`). An item's `outcome` is `null` while it is pending. Another partner's import is 404 `no_import`.")
            .param(path_param("import_id", json!({"type": "string", "pattern": "^imp_[0-9a-f]{32}$", "example": "imp_0123456789abcdef0123456789abcdef"}), "The import's id (else 400 `invalid_id`)."))
            .query("cursor", cursor(), "The previous page's cursor.")
            .param(keaplink_partner())
            .answer(200, ok_json("The import.", s.of::<api::ImportView>(), ex(sample_import())))
            .errors(&[InvalidId, NoImport, InvalidCursor]),
        Op::new("post", "/v1/connections/export", "exportConnections", "partner", Auth::Console)
            .summary("Hand links out (cut-over)")
            .describe("Off unless the deployment's operator set `export_enabled` for the partner (else 403 `export_disabled`). Each link is first frozen through its single writer (status `exported`: never refreshed again, `/v1/token` and the proxy answer 409 `exported`), then its tokens are read, so the refresh token handed out is the live one. A link that cannot go (unknown, or exported before) is answered in `failed`. Sends `connection.exported` per link and notes it, with the request id, in the link's timeline. Delete the links once the cut-over is done.")
            .param(keaplink_partner())
            .json_body(s.of::<api::ExportRequest>(), true, ex(api::ExportRequest { connection_ids: vec!["8uLmQJ6sZ3x2WmN1pQr4Tw".into()] }))
            .answer(200, ok_json("The links handed out, and those that were not.", s.of::<api::ExportResponse>(), ex(api::ExportResponse {
                links: vec![api::ExportedLink {
                    connection_id: "8uLmQJ6sZ3x2WmN1pQr4Tw".into(), user: "user-42".into(), keap_app: "ab123".into(),
                    keap_user: api::KeapUser { email: "ann@ab123.example".into(), name: "Ann Baker".into() },
                    access_token: "KeapAccessTokenExample".into(), expires_at: "2026-01-02T00:00:00Z".into(),
                    refresh_token: "KeapRefreshTokenExample".into(), refresh_expires_at: "2026-02-15T00:00:00Z".into(),
                }],
                failed: vec![api::ExportFailure { connection_id: "Qm9iJ3MgQmlrZXMgbGluaw".into(), error: api::ErrorDetail { code: "exported".into(), message: "This link was exported already; its tokens are the partner's now.".into() } }],
            })))
            .errors(&[ExportDisabled, InvalidId]),
        Op::new("get", "/v1/webhooks/deliveries", "listWebhookDeliveries", "partner", Auth::Console)
            .summary("Recent webhook deliveries")
            .describe("Newest first.")
            .query("limit", limit(50, Some(200)), "How many: 1-200 (the partner keeps its last 200).")
            .param(keaplink_partner())
            .answer(200, ok_json("The deliveries.", s.of::<api::WebhookDeliveries>(), ex(api::WebhookDeliveries { deliveries: vec![sample_delivery()] }))),
        Op::new("post", "/v1/webhooks/deliveries/{id}/redeliver", "redeliverWebhook", "partner", Auth::Console)
            .summary("Send a delivery again")
            .param(path_param("id", json!({"type": "string", "pattern": "^evt_[0-9a-fA-F]{1,36}$", "example": "evt_0123456789abcdef"}), "The delivery's (event's) id (else 400 `invalid_id`); one the partner does not have is 404 `not_found`."))
            .param(keaplink_partner())
            .answer(202, ok_json("Queued again.", s.of::<api::WebhookDelivery>(), ex(api::WebhookDelivery { state: api::DeliveryState::Pending, next_retry_at: None, ..sample_delivery() })))
            .errors(&[InvalidId, NotFound]),
        Op::new("get", "/v1/partner", "getPartner", "partner", Auth::Console)
            .summary("The partner's own settings")
            .param(keaplink_partner())
            .answer(200, ok_json("The partner, without secrets.", s.of::<api::PartnerView>(), ex(sample_partner(false)))),
        Op::new("patch", "/v1/partner", "updatePartner", "partner", Auth::Console)
            .summary("Change the partner's own settings")
            .describe("Each field left out stays as it is; `webhook_url: null` stops webhooks.")
            .param(keaplink_partner())
            .json_body(s.of::<api::PartnerSettings>(), true, ex(api::PartnerSettings { webhook_repair_links: Some(true), ..Default::default() }))
            .answer(200, ok_json("The partner, without secrets.", s.of::<api::PartnerView>(), ex(sample_partner(false))))
            .errors(&[InvalidPartner]),
        Op::new("post", "/v1/partner/rotate-secrets", "rotatePartnerSecrets", "partner", Auth::Console)
            .summary("New API key and session secret")
            .describe("The old ones stop working at once in this isolate, within 30 s elsewhere. The new ones are shown in this answer only.")
            .param(keaplink_partner())
            .answer(200, ok_json("The partner with both new secrets.", s.of::<api::PartnerView>(), ex(sample_partner(true)))),
        Op::new("get", "/v1/stats", "partnerStats", "partner", Auth::Console)
            .summary("The partner's overview")
            .param(keaplink_partner())
            .answer(200, ok_json("Counts.", s.of::<api::PartnerStats>(), ex(api::PartnerStats {
                as_of: T0.into(), connections: connections.clone(), refreshes_last_24h: refreshes.clone(), keap_quota: None,
                webhooks: api::WebhookCounts { pending: 0, failed: 1, delivered_last_24h: 12 },
                keap_events_last_24h: api::KeapEventCounts { received: 9, deduplicated: 1, delivered: 8 },
            }))),
    ];
    for method in ["get", "post", "put", "patch", "delete"] {
        ops.push(proxy(method));
    }
    ops.extend([
        // The operator's.
        Op::new("get", "/v1/admin/stats", "adminStats", "admin", Auth::Admin)
            .summary("Counts across the deployment")
            .answer(200, ok_json("Counts.", s.of::<api::AdminStats>(), ex(api::AdminStats {
                as_of: T0.into(), partners: 4, connections, refreshes_last_24h: refreshes, keap_quota: None, proxy_last_24h: Default::default(),
                keap_events_last_24h: api::KeapEventCounts { received: 40, deduplicated: 2, delivered: 38 },
            })))
            // A query parameter (it takes none).
            .errors(&[InvalidRequest]),
        Op::new("post", "/v1/admin/reseal", "reseal", "admin", Auth::Admin)
            .summary("One page of the key-rotation walk")
            .describe("Re-seals partners' session secrets, then connections' tokens (through their guards), under the first key of TOKEN_KEYS. Call again with `cursor` until it is `null`.")
            .query("limit", limit(40, Some(500)), "Records per page, 1-500.")
            .query("cursor", cursor(), "The previous page's cursor.")
            .answer(200, ok_json("What this page did.", s.of::<api::ResealReport>(), ex(api::ResealReport {
                phase: "connections".into(), resealed: 40, current: 0, unreadable: 0, cursor: Some("opaque-cursor".into()),
            })))
            .errors(&[InvalidCursor]),
        Op::new("get", "/v1/admin/partners", "listPartners", "admin", Auth::Admin)
            .summary("Every partner, a page at a time")
            .query("limit", limit(100, Some(1000)), "Partners per page, 1-1000.")
            .query("cursor", cursor(), "The previous page's cursor.")
            .answer(200, ok_json("One page.", s.of::<api::PartnerList>(), ex(api::PartnerList { partners: vec![sample_partner(false)], cursor: None })))
            .errors(&[InvalidCursor]),
        Op::new("put", "/v1/admin/partners/{partner_id}", "putPartner", "admin", Auth::Admin)
            .summary("Register or change a partner")
            .describe("`allowed_origins` are exact `scheme://host[:port]`; `return_urls` absolute http(s) URLs without credentials or fragment; at most 20 of each. The partner's `session_secret` and `api_key` appear only when it is created or `rotate_secrets` is true.")
            .param(partner_id())
            .json_body(s.of::<api::PartnerUpsert>(), true, ex(api::PartnerUpsert {
                name: "Acme Booking".into(), allowed_origins: vec!["https://app.acme.example".into()],
                return_urls: vec!["https://app.acme.example/settings".into()], rotate_secrets: false,
                webhook_url: Some("https://app.acme.example/hooks/keaplink".into()),
                reconnect_identity: api::ReconnectIdentity::User, webhook_repair_links: false, export_enabled: false, mcp: None,
            }))
            .answer(200, ok_json("The partner (with its secrets when created or rotated).", s.of::<api::PartnerView>(), ex(sample_partner(true))))
            .errors(&[InvalidId, InvalidPartner]),
        Op::new("get", "/v1/admin/partners/{partner_id}", "getPartnerAdmin", "admin", Auth::Admin)
            .summary("One partner")
            .param(partner_id())
            .answer(200, ok_json("The partner, without secrets.", s.of::<api::PartnerView>(), ex(sample_partner(false))))
            .errors(&[InvalidRequest, InvalidId, PartnerNotFound]),
        Op::new("delete", "/v1/admin/partners/{partner_id}", "deletePartner", "admin", Auth::Admin)
            .summary("Delete a partner")
            .describe("Its key and sessions stop working at once in this isolate, within 30 s elsewhere; its users' links are then destroyed through the queue.")
            .param(partner_id())
            .answer(204, no_content("Deleted.", &[]))
            .errors(&[InvalidRequest, InvalidId, PartnerNotFound]),
    ]);
    ops.extend(mcp(s));
    ops.extend(statics());
    ops
}

const PREFLIGHT: &str = "Succeeds for an `Origin` some partner allows (the session, which says which partner, is not sent on a preflight); any other origin is 403 `origin_not_allowed`.";

/// A preflight's `Origin`: the page asking.
fn sample_import() -> api::ImportView {
    api::ImportView {
        import_id: "imp_0123456789abcdef0123456789abcdef".into(),
        status: api::ImportStatus::Running,
        created_at: T0.into(),
        finished_at: None,
        total: 3,
        counts: api::ImportCounts { imported: 1, dead: 1, pending: 1, ..Default::default() },
        items: vec![
            api::ImportItem { index: 0, user: "user-42".into(), outcome: Some(api::ImportOutcome::Imported),
                connection_id: Some("8uLmQJ6sZ3x2WmN1pQr4Tw".into()), keap_app: Some("ab123".into()),
                keap_user: Some(api::KeapUser { email: "ann@ab123.example".into(), name: "Ann Baker".into() }), error: None },
            api::ImportItem { index: 1, user: "user-43".into(), outcome: Some(api::ImportOutcome::Dead),
                connection_id: None, keap_app: None, keap_user: None,
                error: Some(api::ErrorDetail { code: "refresh_token_invalid".into(), message: "Keap refused the refresh token (expired, revoked, or already used elsewhere). Nothing was stored; the user has to connect again.".into() }) },
            api::ImportItem { index: 2, user: "user-44".into(), outcome: None, connection_id: None, keap_app: None, keap_user: None, error: None },
        ],
        cursor: None,
    }
}

/// `POST /v1/imports`: its body is JSON up to 1 MiB (not the 16 KiB of the others).
fn imports_start(s: &mut Schemas) -> Op {
    let mut op = Op::new("post", "/v1/imports", "startImport", "partner", Auth::Console)
        .summary("Bring links the partner already holds")
        .describe("1 to 1,000 links a call (body up to 1 MiB). Each becomes a link as if its user had connected: keaplink learns the Keap app, the Keap user and the app's name, and stores the tokens sealed. Without a usable `access_token` (10 minutes or more left by `expires_at`) the refresh token is refreshed once, and the rotated token is stored before anything else: the partner's refresh token is dead from then on, so stop refreshing your copies first. Items run through the queue, paced with the refreshes inside Keap's quota; Keap's 429s and 5xx make an item wait (`pending`), never fail. A body that is not this shape, or breaks a limit (1,000 links, 1 MiB, a token over 2,048 characters), is refused whole (400/413) and starts nothing; an item wrong on its own (a user id out of the rules, an empty token, a bad `expires_at` or `keap_app`) settles `invalid` while the others go on. The same `idempotency-key` within 24 h answers 200 with the same import and starts nothing. Sends `connection.created` per imported link and `import.finished` at the end.")
        .param(json!({
            "name": "idempotency-key", "in": "header", "required": false,
            "description": "1-128 printable ASCII characters (else 400 `invalid_request`). The same key again within 24 hours answers 200 with the import it started.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[ -~]{1,128}$"},
        }))
        .param(keaplink_partner())
        .answer(202, ok_json("Started.", s.of::<api::ImportStarted>(),
            ex(api::ImportStarted { import_id: "imp_0123456789abcdef0123456789abcdef".into(), status: api::ImportStatus::Running, total: 2 })))
        .answer(200, ok_json("The import this idempotency key started (nothing started again).", s.of::<api::ImportStarted>(),
            ex(api::ImportStarted { import_id: "imp_0123456789abcdef0123456789abcdef".into(), status: api::ImportStatus::Running, total: 2 })))
        .errors(&[InvalidRequest, BodyTooLarge]);
    op.body = Some(json!({
        "required": true,
        "content": {"application/json": {"schema": s.of::<api::ImportRequest>(), "example": ex(api::ImportRequest { links: vec![
            api::ImportLink { user: "user-42".into(), refresh_token: "KeapRefreshTokenExample".into(), access_token: None, expires_at: None, keap_app: Some("ab123".into()) },
            api::ImportLink { user: "user-43".into(), refresh_token: "AnotherKeapRefreshToken".into(), access_token: Some("KeapAccessTokenExample".into()), expires_at: Some("2026-01-01T12:00:00Z".into()), keap_app: None },
        ] })}},
    }));
    op
}

fn origin_header() -> Value {
    json!({
        "name": "origin", "in": "header", "required": true,
        "description": "The page's origin, as the browser sends it.",
        "schema": {"type": "string", "example": "https://app.acme.example"},
    })
}

fn preflight() -> Value {
    let mut all = WORKER.to_vec();
    all.extend([
        Header::CorsOrigin,
        Header::CorsVary,
        Header::CorsExpose,
        Header::CorsMethods,
        Header::CorsHeaders,
        Header::CorsMaxAge,
    ]);
    json!({"description": "Allowed.", "headers": headers(&all, &[])})
}

fn repair_token() -> Value {
    path_param(
        "token",
        json!({"type": "string"}),
        "The opaque token of a repair link (spent by the restore it brings about).",
    )
}

/// The console's operator view: the admin token plus this header names the partner.
fn keaplink_partner() -> Value {
    json!({
        "name": "keaplink-partner", "in": "header", "required": false,
        "description": "With the admin token only (the console's operator view), and then required: the partner to act for. 1-64 of `a-z`, `0-9` and `-` (else 400 `invalid_request`); a partner that does not exist is 404 `partner_not_found`.",
        "schema": {"type": "string", "pattern": "^[a-z0-9-]{1,64}$"},
    })
}

fn callback() -> Op {
    let q = |name: &str, description: &str| json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}});
    let mut op = Op::new("get", "/oauth/callback", "oauthCallback", "oauth", Auth::Public)
        .summary("Keap's redirect back (the end of the OAuth flow)")
        .describe("Keap sends the user's browser here with `code`, `state` and `scope`, or with `error` and `state`. `state` is single-use, 10 minutes, bound to partner, user and the asking page's origin. Popup mode answers a page that posts a `CallbackMessage` (components) to that origin only and closes; redirect mode (`return_to` given at connect) answers 302 to it with `keaplink=connected` or `keaplink=error&reason=<code>`. Codes: `access_denied`, `identity_mismatch`, `keap_error`, `keap_bad_response`, `keap_timeout`, `keap_throttled`.")
        .param(q("code", "The authorization code."))
        .param(q("state", "The state `POST /v1/me/connect` made."))
        .param(q("scope", "Keap's granted scope (names the app)."))
        .param(q("error", "Keap's error, when the user declined."))
        .answer(200, html("Popup mode: the result page (connected, or why not); it posts the result to the widget's window and closes. A repair link's flow: the page saying the connection is restored (which spends the link).", &[]))
        .answer(302, redirect("Found", "redirect mode: back to `return_to` with `keaplink=connected` or `keaplink=error&reason=<code>`."))
        .answer(400, html("A bad, reused or expired state (`invalid_state`), or a malformed query (`invalid_request`): nothing is stored. A repair link's flow the user cancelled at Keap (`access_denied`): the repair page says so, with Try again while the link has attempts left.", &[]))
        .answer(404, html("A repair link's flow whose connection is gone (`no_connection`): the repair page says nothing was restored.", &[]))
        .answer(409, html("A repair link's flow finished as another Keap user or app than the link's (`identity_mismatch`): the repair page names both, with Try again while the link has attempts left; nothing is stored.", &[]))
        .answer(429, html("Too many sign-in attempts from this address.", &[Header::RetryAfter]))
        .answer(500, html("Something went wrong on our side.", &[]))
        .answer(502, html("A repair link's flow where Keap failed or answered unexpectedly (`keap_error`, `keap_bad_response`): nothing is stored.", &[]))
        .answer(504, html("A repair link's flow where Keap did not answer in time (`keap_timeout`): nothing is stored.", &[]));
    // Its refusals are pages for a person; only a misconfigured deployment answers JSON.
    op.worker = true;
    op
}

fn proxy(method: &'static str) -> Op {
    let id = match method {
        "get" => "keapGet",
        "post" => "keapPost",
        "put" => "keapPut",
        "patch" => "keapPatch",
        _ => "keapDelete",
    };
    let mut op = Op::new(method, "/v1/keap/{path}", id, "proxy", Auth::ApiKey)
        .summary("Call Keap's REST API as a linked user")
        .describe("Forwarded to Keap (`KEAP_API_URL` + `/` + `path` + the query as sent) with the connection's access token. `path` spans segments (`crm/rest/v2/contacts`): send its slashes as they are. Only paths under `KEAP_PROXY_PATHS` (default `/crm/rest/`) go out; a `.`/`..` or empty segment, an encoded slash or backslash, or a control character is 400 `invalid_keap_path`. Forwarded request headers: `content-type`, `accept`, `accept-language`. The answer is Keap's own (status, body, `content-type`, every `x-keap-*` header) plus `keaplink-connection-id`; an answer keaplink made itself carries `keaplink-error` and the usual error body. A 401 from Keap is healed once (one refresh, one retry). While Keap's quota is exhausted, or down to the share kept for refreshes, keaplink answers 429 `keap_quota` itself.")
        .param(path_param("path", json!({"type": "string", "example": "crm/rest/v2/contacts"}), "Keap's path, without the leading `/`."))
        .param(json!({"name": "keaplink-user", "in": "header", "required": true, "description": "The partner's user id whose link to use.", "schema": {"type": "string", "minLength": 1, "maxLength": 256}}))
        .param(json!({"name": "keaplink-app", "in": "header", "required": false, "description": "The Keap app, when the user has several links (else 409 `ambiguous_connection`).", "schema": {"type": "string", "pattern": "^[a-z0-9-]{1,64}$"}}))
        // A refresh the call needed can fail too: keap_throttled, keap_bad_response.
        .errors(&[InvalidKeapPath, InvalidRequest, NoConnection, NeedsReauth, AmbiguousConnection, Exported, BodyTooLarge, KeapQuota, KeapThrottled, RateLimited, KeapError, KeapBadResponse, KeapTimeout]);
    op.answers.push((
        "default".into(),
        json!({
            "description": "Keap's answer, relayed: its status, body and content-type, with its `x-keap-*` headers (quota and throttle) and `keaplink-connection-id`.",
            "headers": headers(&[Header::RequestId, Header::KeaplinkConnectionId], &[]),
            "x-keaplink-header-prefixes": ["x-keap-"],
            // Keap's body, whatever it is (JSON as a rule; sometimes none, with no content-type).
            "x-keaplink-relayed": true,
        }),
    ));
    if matches!(method, "post" | "put" | "patch") {
        op.body = Some(json!({
            "required": false,
            "description": "Keap's request body, passed on as sent (JSON, at most 1 MiB).",
            "content": {"application/json": {"schema": {}}},
        }));
    }
    op.proxy = true;
    op
}

/// The headers `web/_headers` gives the console's files (and the asset server's own).
const CONSOLE_FILE: &[Header] = &[
    Header::Csp,
    Header::FrameOptions,
    Header::NoSniff,
    Header::ReferrerPolicy,
    Header::CrossOriginOpenerPolicy,
    Header::CrossOriginResourcePolicy,
    Header::PermissionsPolicy,
    Header::AssetCache,
    Header::ETag,
];

fn statics() -> Vec<Op> {
    let file = |status_text: &str| {
        json!({
            "description": status_text,
            "headers": headers(&[Header::PublicCors], &[Header::AssetCache, Header::ETag, Header::NoSniff, Header::CrossOriginResourcePolicy]),
            "content": {
                "text/javascript": {"schema": {"type": "string"}},
                "application/wasm": {"schema": {"type": "string", "contentMediaType": "application/wasm"}},
            },
        })
    };
    let mut widget = Op::new("get", "/widget/{file}", "widgetFile", "static", Auth::Public)
        .summary("The `<keap-link>` widget's files")
        .describe("Load `keap-link.js` as an ES module from your page; it fetches the rest. Public files: any origin, no credentials.")
        .param(path_param(
            "file",
            json!({"type": "string", "enum": ["keap-link.js", "keap_link_wasm.js", "keap_link_wasm_bg.wasm"]}),
            "The file.",
        ))
        .answer(200, file("The file."));
    widget.worker = false;
    let mut console = Op::new("get", "/console/", "consolePage", "static", Auth::Public)
        .summary("The partner console")
        .describe("A static page; sign in with the API key (or, as the operator, the admin token). It calls the partner endpoints above.")
        .answer(200, json!({
            "description": "The console's page.",
            "headers": headers(&[], CONSOLE_FILE),
            "content": {"text/html": {"schema": {"type": "string"}}},
        }));
    console.worker = false;
    let mut console_file = Op::new(
        "get",
        "/console/{file}",
        "consoleFile",
        "static",
        Auth::Public,
    )
    .summary("The console's static files")
    .param(path_param(
        "file",
        json!({"type": "string"}),
        "A file of the console (scripts, wasm, styles).",
    ))
    .answer(
        200,
        json!({
            "description": "The file.",
            "headers": headers(&[], CONSOLE_FILE),
            "content": {"*/*": {"schema": {}}},
        }),
    )
    // A name that is not one of its files reaches the Worker, which knows no such path.
    .errors(&[NotFound]);
    console_file.worker = false;
    let mut favicon = Op::new("get", "/favicon.ico", "favicon", "static", Auth::Public)
        .summary("The icon of keaplink's own pages")
        .answer(200, json!({
            "description": "The icon.",
            "headers": headers(&[], &[Header::AssetCache, Header::ETag]),
            "content": {"image/x-icon": {"schema": {"type": "string", "contentMediaType": "image/x-icon"}}, "image/vnd.microsoft.icon": {"schema": {"type": "string", "contentMediaType": "image/vnd.microsoft.icon"}}},
        }));
    favicon.worker = false;
    vec![widget, console, console_file, favicon]
}

fn sample_hooks() -> api::Hooks {
    api::Hooks {
        hooks: vec![
            api::Hook {
                event_key: "contact.add".into(),
                status: api::HookStatus::Verified,
                error: None,
                last_event_at: Some("2026-01-02T06:20:00Z".into()),
            },
            api::Hook {
                event_key: "invoice.payment.add".into(),
                status: api::HookStatus::Verified,
                error: None,
                last_event_at: None,
            },
        ],
        hydrate: false,
        checked_at: Some("2026-01-02T06:00:00Z".into()),
    }
}

/// An OAuth error of the MCP authorization server (RFC 6749 §5.2).
fn oauth_error(description: &str, required: &[Header]) -> Value {
    let mut all = JSON.to_vec();
    all.extend_from_slice(required);
    json!({
        "description": description,
        "headers": headers(&all, &[]),
        "content": {"application/json": {"schema": {
            "type": "object", "required": ["error", "error_description"],
            "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
        }, "example": {"error": "invalid_grant", "error_description": "The code or token is not valid."}}},
    })
}

fn form(fields: &[(&str, &str)], required: &[&str]) -> Value {
    let mut props = serde_json::Map::new();
    for (name, description) in fields {
        props.insert(
            (*name).into(),
            json!({"type": "string", "description": description}),
        );
    }
    json!({"required": true, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "properties": props, "required": required,
    }}}})
}

fn body(mut op: Op, b: Value) -> Op {
    op.body = Some(b);
    op
}

/// The partners' MCP servers and their OAuth 2.1 authorization server.
fn mcp(s: &mut Schemas) -> Vec<Op> {
    let partner = || {
        path_param(
            "partner_id",
            json!({"type": "string", "pattern": "^[a-z0-9-]{1,64}$", "example": "acme"}),
            "The partner whose MCP server it is.",
        )
    };
    let page_refusals = |op: Op| {
        op.answer(400, html("A malformed or expired request (`invalid_request`, `invalid_state`): nothing was issued.", &[]))
            .answer(429, html("Too many requests from this address.", &[Header::RetryAfter]))
            .answer(500, html("Something went wrong on our side.", &[]))
    };
    vec![
        Op::new("get", "/.well-known/oauth-protected-resource/mcp/{partner_id}", "mcpResourceMetadata", "mcp", Auth::Public)
            .summary("Protected resource metadata of a partner's MCP server (RFC 9728)")
            .describe("At the path-suffixed well-known URL the MCP server's 401 names. 404 while the partner's MCP server is off.")
            .param(partner())
            .answer(200, ok_json("The metadata.", json!({"type": "object", "required": ["resource", "authorization_servers", "scopes_supported"], "properties": {
                "resource": {"type": "string", "format": "uri"}, "authorization_servers": {"type": "array", "items": {"type": "string"}},
                "scopes_supported": {"type": "array", "items": {"type": "string", "enum": ["keap.read", "keap.write"]}},
                "bearer_methods_supported": {"type": "array", "items": {"type": "string"}}, "resource_name": {"type": "string"}}}),
                json!({"resource": "https://keaplink.example/mcp/acme", "authorization_servers": ["https://keaplink.example"], "scopes_supported": ["keap.read", "keap.write"], "bearer_methods_supported": ["header"], "resource_name": "Keap for Acme Booking"})))
            .errors(&[NotFound]),
        Op::new("get", "/.well-known/oauth-authorization-server", "mcpAuthorizationServerMetadata", "mcp", Auth::Public)
            .summary("The MCP authorization server's metadata (RFC 8414)")
            .answer(200, ok_json("The metadata.", json!({"type": "object", "required": ["issuer", "authorization_endpoint", "token_endpoint", "registration_endpoint", "revocation_endpoint", "response_types_supported", "grant_types_supported", "code_challenge_methods_supported", "token_endpoint_auth_methods_supported"], "properties": {
                "issuer": {"type": "string"}, "authorization_endpoint": {"type": "string"}, "token_endpoint": {"type": "string"},
                "registration_endpoint": {"type": "string"}, "revocation_endpoint": {"type": "string"},
                "response_types_supported": {"type": "array", "items": {"type": "string"}}, "grant_types_supported": {"type": "array", "items": {"type": "string"}},
                "code_challenge_methods_supported": {"type": "array", "items": {"type": "string"}}, "token_endpoint_auth_methods_supported": {"type": "array", "items": {"type": "string"}},
                "revocation_endpoint_auth_methods_supported": {"type": "array", "items": {"type": "string"}}, "scopes_supported": {"type": "array", "items": {"type": "string"}},
                "authorization_response_iss_parameter_supported": {"type": "boolean"}}}),
                json!({"issuer": "https://keaplink.example", "authorization_endpoint": "https://keaplink.example/mcp/oauth/authorize", "token_endpoint": "https://keaplink.example/mcp/oauth/token", "registration_endpoint": "https://keaplink.example/mcp/oauth/register", "revocation_endpoint": "https://keaplink.example/mcp/oauth/revoke", "response_types_supported": ["code"], "grant_types_supported": ["authorization_code", "refresh_token"], "code_challenge_methods_supported": ["S256"], "token_endpoint_auth_methods_supported": ["none"]}))),
        body(Op::new("post", "/mcp/oauth/register", "mcpRegister", "mcp", Auth::Public)
            .summary("Register an MCP client (RFC 7591, public clients)")
            .describe("`redirect_uris` (1-5): https, or http on a loopback host (matched with any port), never with credentials or a fragment; `token_endpoint_auth_method` `none`. The `client_id` carries the registration sealed: nothing is stored until it first authorizes something. A registration expires unused: one that has authorized nothing for 30 days (since it was made, or since its last authorization) can start no new authorization (`invalid_client`; register again), while the grants it holds keep working. Rate-limited per address."),
            json!({"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["redirect_uris"], "properties": {
                "redirect_uris": {"type": "array", "items": {"type": "string"}}, "client_name": {"type": "string", "maxLength": 100},
                "token_endpoint_auth_method": {"type": "string", "enum": ["none"]}, "grant_types": {"type": "array", "items": {"type": "string"}},
                "response_types": {"type": "array", "items": {"type": "string"}}}}, "example": {"client_name": "Claude", "redirect_uris": ["http://127.0.0.1:33418/callback"]}}}}))
            .answer(201, ok_json("Registered.", json!({"type": "object", "required": ["client_id", "client_id_issued_at", "client_name", "redirect_uris", "grant_types", "response_types", "token_endpoint_auth_method"], "properties": {
                "client_id": {"type": "string"}, "client_id_issued_at": {"type": "integer"}, "client_name": {"type": "string"},
                "redirect_uris": {"type": "array", "items": {"type": "string"}}, "grant_types": {"type": "array", "items": {"type": "string"}},
                "response_types": {"type": "array", "items": {"type": "string"}}, "token_endpoint_auth_method": {"type": "string"}}}),
                json!({"client_id": "v1.k1.opaque", "client_id_issued_at": 1767225600, "client_name": "Claude", "redirect_uris": ["http://127.0.0.1:33418/callback"], "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"], "token_endpoint_auth_method": "none"})))
            .answer(400, oauth_error("`invalid_redirect_uri` or `invalid_client_metadata` (RFC 7591 §3.2.2).", &[]))
            .errors(&[BodyTooLarge, RateLimited]),
        {
            let mut op = Op::new("get", "/mcp/oauth/authorize", "mcpAuthorize", "mcp", Auth::Public)
                .summary("Authorize an MCP client (the browser's start)")
                .describe("OAuth 2.1 with PKCE S256 (required) and `resource` (RFC 8707, an enabled partner's MCP endpoint). The request is kept sealed for 10 minutes and the browser sent to the partner's `sign_in_url` with `keaplink_request=<opaque>`. Refusals after the client's redirect URI is known go back to it (`error`, `state`, `iss`); before (an unknown client, a redirect URI it did not register) they are a page of ours.");
            for name in ["response_type", "client_id", "redirect_uri", "state", "code_challenge", "code_challenge_method", "resource", "scope"] {
                op = op.param(json!({"name": name, "in": "query", "required": false, "schema": {"type": "string"}}));
            }
            page_refusals(op)
                .answer(302, redirect("Found", "to the partner's sign-in with `keaplink_request`, or back to the client with `error`, `error_description`, `state` and `iss`."))
                .answer(401, html("An unknown client_id, or one whose registration expired (`invalid_client`).", &[]))
        },
        page_refusals(body(Op::new("post", "/mcp/oauth/continue", "mcpContinue", "mcp", Auth::Public)
            .summary("The partner's sign-in comes back (form POST)")
            .describe("`request`: the `keaplink_request` keaplink sent; `session`: a session JWT for the signed-in user, as the widget's, whose claims also hold `keaplink_request` with the same value. Answers keaplink's consent page: the client's name as it registered (unverified), the partner, the user's active links by business name, and the access."),
            form(&[("request", "The keaplink_request."), ("session", "A session JWT with the keaplink_request claim.")], &["request", "session"])))
            .answer(200, html("The consent page, with Allow and Deny.", &[]))
            .answer(401, html("The session is not valid, or was not minted for this request (`invalid_session`): nothing was issued.", &[]))
            .answer(409, html("The user has no working Keap link in the partner to share.", &[])),
        page_refusals(body(Op::new("post", "/mcp/oauth/consent", "mcpConsent", "mcp", Auth::Public)
            .summary("Allow or Deny (the consent page's forms)")
            .describe("Allow: a grant in the chosen link, and 303 back to the client's redirect URI with `code` (one use, 60 s), `state` and `iss`. Deny: 303 back with `error=access_denied`."),
            form(&[("consent", "The page's sealed consent."), ("decision", "allow or deny."), ("connection", "The chosen link's id."), ("access", "read or read_write.")], &["consent", "decision"])))
            .answer(303, redirect("See other", "back to the MCP client's redirect URI."))
            .answer(404, html("The partner no longer offers its MCP server, or the chosen link is not the user's or not working (`not_found`, `no_connection`).", &[])),
        body(Op::new("post", "/mcp/oauth/token", "mcpToken", "mcp", Auth::Public)
            .summary("Tokens for an MCP client")
            .describe("`authorization_code` (with `code_verifier`, `redirect_uri`, `client_id`, and `resource` if the client names one) or `refresh_token` (rotated at each use; the previous one answers the same tokens again for 60 s, then its use ends the grant). The access token lives 1 h. Tokens are stored only as hashes, bound to the partner, the user, the link, the scope and the resource. A grant whose partner was deleted, or turned its MCP server off since the grant was made, is ended here: `invalid_grant`, nothing issued."),
            form(&[("grant_type", "authorization_code or refresh_token."), ("code", ""), ("redirect_uri", ""), ("code_verifier", ""), ("client_id", ""), ("refresh_token", ""), ("resource", "")], &["grant_type", "client_id"]))
            .answer(200, ok_json("The tokens.", json!({"type": "object", "required": ["access_token", "token_type", "expires_in", "refresh_token", "scope"], "properties": {
                "access_token": {"type": "string"}, "token_type": {"type": "string", "const": "Bearer"}, "expires_in": {"type": "integer"},
                "refresh_token": {"type": "string"}, "scope": {"type": "string"}}}),
                json!({"access_token": "kma_…", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "kmr_…", "scope": "keap.read"})))
            .answer(400, oauth_error("`invalid_request`, `invalid_grant`, `invalid_target` (`resource` names no MCP server offered here) or `unsupported_grant_type`: nothing was issued.", &[]))
            .answer(401, oauth_error("`invalid_client`.", &[]))
            .errors(&[BodyTooLarge, RateLimited]),
        body(Op::new("post", "/mcp/oauth/revoke", "mcpRevoke", "mcp", Auth::Public)
            .summary("Revoke an MCP client's token (RFC 7009)")
            .describe("An access or refresh token: its grant ends. 200 whether or not the token was known."),
            form(&[("token", ""), ("token_type_hint", ""), ("client_id", "")], &["token"]))
            .answer(200, no_content("Revoked (or unknown).", &[]))
            .answer(400, oauth_error("`invalid_request`: no token.", &[]))
            .errors(&[BodyTooLarge, RateLimited]),
        body(Op::new("post", "/mcp/{partner_id}", "mcpServer", "mcp", Auth::Public)
            .summary("A partner's MCP server (Streamable HTTP, JSON answers)")
            .describe("JSON-RPC 2.0, one message per POST, `Authorization: Bearer <access token>`. `initialize` (protocol versions 2025-06-18 and 2025-11-25), `ping`, `tools/list`, `tools/call`; anything else (`server/discover` too) is -32601. The tools: `search_contacts`, `get_contact`, `list_tags`, and with write access `create_contact`, `apply_tags`, `add_note`; each call goes to Keap through the link's token as the proxy sends calls and is on the link's timeline (tool and outcome, never arguments). A link that needs its user answers a tool error saying so. 404 while the partner's MCP server is off.")
            .param(partner()),
            json!({"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["jsonrpc"]}, "example": {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}}}}))
            .answer(200, ok_json("The JSON-RPC response.", json!({"type": "object", "required": ["jsonrpc", "id"], "properties": {"jsonrpc": {"const": "2.0"}, "id": {}, "result": {}, "error": {"type": "object"}}}),
                json!({"jsonrpc": "2.0", "id": 1, "result": {}})))
            .answer(202, no_content("A notification (or a response): accepted, nothing to answer.", &[]))
            .answer(401, oauth_error("`invalid_token`: no valid access token for this server (none, expired, revoked, another partner's, its link disconnected or exported, or made before the partner last turned its MCP server on).", &[Header::WwwAuthenticate]))
            .errors(&[NotFound, BodyTooLarge, RateLimited]),
        Op::new("get", "/v1/me/connections/{id}/assistants", "listMyAssistants", "widget", Auth::Session)
            .summary("The MCP clients acting in one of the user's links (Connected assistants)")
            .param(connection_id())
            .answer(200, ok_json("The link's assistants.", s.of::<api::Assistants>(), ex(api::Assistants { assistants: vec![api::Assistant {
                id: "0123456789abcdef".into(), client_name: "Claude".into(), access: api::McpTools::Read, created_at: T0.into(), used_at: T0.into() }] })))
            .errors(&[InvalidRequest, InvalidId, NoConnection]),
        Op::new("delete", "/v1/me/connections/{id}/assistants/{assistant_id}", "revokeMyAssistant", "widget", Auth::Session)
            .summary("Revoke an MCP client's access to one of the user's links")
            .describe("Its tokens end at once.")
            .param(connection_id())
            .param(path_param("assistant_id", json!({"type": "string"}), "The assistant's `id`."))
            .answer(204, no_content("Revoked.", &[]))
            .errors(&[InvalidRequest, InvalidId, NoConnection, NotFound]),
        widget_preflight("/v1/me/connections/{id}/assistants", "preflightListMyAssistants"),
        widget_preflight("/v1/me/connections/{id}/assistants/{assistant_id}", "preflightRevokeMyAssistant"),
    ]
}
