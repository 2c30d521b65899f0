//! keaplink's HTTP contract as serde types (the OpenAPI document, docs/openapi.json, is made from them).
//!
//! Shared by the Worker, which produces these bodies, and the widget, which reads them, so the
//! two can never drift apart. Types only: no rules live here (those are in `keaplink-core`).
//! Times are RFC 3339 UTC strings, as the contract says.

use serde::{Deserialize, Serialize};

pub mod hooks;
pub mod proxy;

pub use hooks::*;

/// `GET /healthz` → `200 {"ok": true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"ok": true})))]
pub struct Health {
    pub ok: bool,
}

/// Every error the Worker answers: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// A stable `snake_case` code a program can branch on.
    #[cfg_attr(feature = "openapi", schema(example = "not_found"))]
    pub code: String,
    /// A sentence a person can act on. Never holds a token, a secret or a stack trace.
    #[cfg_attr(feature = "openapi", schema(example = "No such route."))]
    pub message: String,
}

/// Whether a link works, as the widget and the partner see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    Active,
    NeedsReauth,
    /// Handed out with `POST /v1/connections/export`: frozen, never refreshed by keaplink again
    /// (its tokens are the partner's now). Delete it once the cut-over is done.
    Exported,
}

/// The Keap user who approved the link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeapUser {
    #[cfg_attr(feature = "openapi", schema(example = "ann@ab123.example"))]
    pub email: String,
    #[cfg_attr(feature = "openapi", schema(example = "Ann Baker"))]
    pub name: String,
}

/// The last thing that went wrong with a link, kept until it recovers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LastError {
    #[cfg_attr(feature = "openapi", schema(example = "keap_throttled"))]
    pub code: String,
    pub message: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2026-01-01T00:00:00Z"))]
    pub at: String,
}

/// One link between a partner user and one Keap app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Connection {
    #[cfg_attr(feature = "openapi", schema(example = "8uLmQJ6sZ3x2WmN1pQr4Tw"))]
    pub id: String,
    #[cfg_attr(feature = "openapi", schema(example = "ab123"))]
    pub keap_app: String,
    /// The business name Keap gives the app ("Ann's Bakery"), `null` when Keap did not say.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true, example = "Ann's Bakery"))]
    pub keap_app_name: Option<String>,
    pub keap_user: KeapUser,
    pub status: ConnectionStatus,
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2026-01-01T00:00:00Z"))]
    pub connected_at: String,
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime, example = "2026-01-01T00:00:00Z"))]
    pub refreshed_at: Option<String>,
    /// When the link was last restored by its user (a Reconnect or a repair link), `null` if it
    /// never was; `connected_at` stays the first link's time.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime, example = "2026-01-01T00:00:00Z"))]
    pub reconnected_at: Option<String>,
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2026-01-01T00:00:00Z"))]
    pub access_expires_at: String,
    /// When the refresh token we hold is expected to die (Keap's lifetime after it was issued).
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2026-01-01T00:00:00Z"))]
    pub refresh_expires_at: String,
    /// Set while refreshes keep failing and the refresh token has under 7 days left: the user
    /// should reconnect before this time, or the link dies.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime, example = "2026-01-01T00:00:00Z"))]
    pub reconnect_before: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub last_error: Option<LastError>,
}

/// `GET /v1/me/connections`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MyConnections {
    pub connections: Vec<Connection>,
}

/// A connection as the partner's back-end sees it: with the partner's own user id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartnerConnection {
    #[serde(flatten)]
    pub connection: Connection,
    #[cfg_attr(feature = "openapi", schema(example = "user-42"))]
    pub user: String,
}

/// `GET /v1/connections`: one page, and the cursor of the next (`null` at the end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartnerConnections {
    pub connections: Vec<PartnerConnection>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub cursor: Option<String>,
}

/// `POST /v1/me/connect` body. Every field may be left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = true))]
    pub sign_out_first: bool,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = "uri"))]
    pub return_to: Option<String>,
    /// A reconnect of this connection of the signed-in user: identity-locked (see the README).
    #[serde(default)]
    pub connection_id: Option<String>,
}

impl Default for ConnectRequest {
    fn default() -> Self {
        Self {
            sign_out_first: true,
            return_to: None,
            connection_id: None,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectResponse {
    #[cfg_attr(feature = "openapi", schema(format = "uri"))]
    pub authorize_url: String,
}

/// `POST /v1/token` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 256, example = "user-42")
    )]
    pub user: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(example = "ab123"))]
    pub keap_app: Option<String>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    #[cfg_attr(feature = "openapi", schema(example = "KeapAccessTokenExample"))]
    pub access_token: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2026-01-01T00:00:00Z"))]
    pub expires_at: String,
    #[cfg_attr(feature = "openapi", schema(example = "ab123"))]
    pub keap_app: String,
}

/// Prints `[redacted]` for a value that must never reach a log line.
fn redacted(v: &Option<String>) -> Option<&'static str> {
    v.as_ref().map(|_| "[redacted]")
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field("keap_app", &self.keap_app)
            .finish()
    }
}

/// Who a reconnect must sign in as: the same Keap user of the same app (`user`, the default),
/// or anyone with access to the same app (`app`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReconnectIdentity {
    #[default]
    User,
    App,
}

/// An MCP client acting in one of the user's links (the widget's Connected assistants).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Assistant {
    /// The grant's id (what `DELETE /v1/me/connections/{id}/assistants/{assistant_id}` takes).
    pub id: String,
    /// The name the client registered with (not verified).
    pub client_name: String,
    pub access: McpTools,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub used_at: String,
}

/// `GET /v1/me/connections/{id}/assistants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Assistants {
    pub assistants: Vec<Assistant>,
}

/// Which Keap tools a partner's MCP server offers: reading only, or reading and writing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum McpTools {
    #[default]
    Read,
    ReadWrite,
}

/// A partner's MCP server (`PUBLIC_URL/mcp/{partner_id}`): off unless enabled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct McpSettings {
    #[serde(default)]
    pub enabled: bool,
    /// Where keaplink sends the browser to sign the partner's user in (https; required when
    /// enabled); keaplink appends `keaplink_request=<opaque>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "uri", example = "https://app.acme.example/keaplink-mcp"))]
    pub sign_in_url: Option<String>,
    /// The most an MCP client may be granted: `read` (the default) or `read_write`.
    #[serde(default)]
    pub tools: McpTools,
}

/// `PUT /v1/admin/partners/{partner_id}` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PartnerUpsert {
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, example = "Acme Booking")
    )]
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(max_items = 20, example = json!(["https://app.acme.example"])))]
    pub allowed_origins: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(max_items = 20, example = json!(["https://app.acme.example/settings"])))]
    pub return_urls: Vec<String>,
    #[serde(default)]
    pub rotate_secrets: bool,
    /// Where connection events are POSTed (https); absent: no webhooks.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = "uri"))]
    pub webhook_url: Option<String>,
    #[serde(default)]
    pub reconnect_identity: ReconnectIdentity,
    /// Put a fresh `repair_url` in `connection.needs_reauth` and `connection.expiring` events.
    #[serde(default)]
    pub webhook_repair_links: bool,
    /// Allow `POST /v1/connections/export` for this partner (the operator's decision alone).
    #[serde(default)]
    pub export_enabled: bool,
    /// The partner's MCP server for AI agents; absent: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpSettings>,
}

/// A partner as the admin sees it. The secrets appear only when created or rotated.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartnerView {
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[a-z0-9-]{1,64}$", example = "acme")
    )]
    pub partner_id: String,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(example = json!(["https://app.acme.example"])))]
    pub allowed_origins: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(example = json!(["https://app.acme.example/settings"])))]
    pub return_urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "uri"))]
    pub webhook_url: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub reconnect_identity: ReconnectIdentity,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub webhook_repair_links: bool,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub export_enabled: bool,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub mcp: McpSettings,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub session_secret: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub api_key: Option<String>,
}

impl std::fmt::Debug for PartnerView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerView")
            .field("partner_id", &self.partner_id)
            .field("name", &self.name)
            .field("allowed_origins", &self.allowed_origins)
            .field("return_urls", &self.return_urls)
            .field("webhook_url", &self.webhook_url)
            .field("reconnect_identity", &self.reconnect_identity)
            .field("webhook_repair_links", &self.webhook_repair_links)
            .field("export_enabled", &self.export_enabled)
            .field("mcp", &self.mcp)
            .field("session_secret", &redacted(&self.session_secret))
            .field("api_key", &redacted(&self.api_key))
            .finish()
    }
}

/// What the OAuth callback page posts to the widget's window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CallbackMessage {
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(example = "keaplink:result"))]
    pub kind: String,
    pub status: CallbackStatus,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub connection_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// `identity_mismatch`: the email of the Keap user who signed in…
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub signed_in: Option<String>,
    /// …and of the one the connection expects.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expected: Option<String>,
}

/// The `type` of every [`CallbackMessage`].
pub const CALLBACK_MESSAGE_TYPE: &str = "keaplink:result";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CallbackStatus {
    Connected,
    Error,
}

/// `POST /v1/connections/{id}/repair-link` body: how long the link lives (300 to 2,592,000 s;
/// default 604,800: a week).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RepairLinkRequest {
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 300, maximum = 2592000, example = 604800)
    )]
    pub ttl_secs: Option<u64>,
}

/// A repair link: a page hosted by keaplink where the user restores the link themselves.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RepairLink {
    /// `<PUBLIC_URL>/link/<opaque>`: spent by the restore it brings about (at most 5 attempts); a GET
    /// spends nothing.
    #[cfg_attr(feature = "openapi", schema(format = "uri"))]
    pub url: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2026-01-01T00:00:00Z"))]
    pub expires_at: String,
}

impl std::fmt::Debug for RepairLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepairLink")
            .field("url", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What happened to a link, as its timeline shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConnectionEventKind {
    Created,
    /// The same Keap user signed in again (reconnect, or a plain connect to the same app).
    Reconnected,
    Refreshed,
    /// A transient failure (retried); `code` says which.
    RefreshFailed,
    /// Keap refused the refresh token: the link needs its user.
    NeedsReauth,
    /// The user reconnected a link that needed them.
    Recovered,
    /// Refreshes keep failing with under a week left on the refresh token.
    Expiring,
    /// A reconnect signed in as another Keap user or app: refused, nothing changed.
    IdentityMismatch,
    RepairLinkCreated,
    /// A repair link's button sent its user to Keap (`detail`: which attempt of how many).
    RepairLinkTried,
    /// A repair link's attempt restored the link: the repair link is spent.
    RepairLinkUsed,
    Deleted,
    /// Brought in by `POST /v1/imports` (tokens the partner held).
    Imported,
    /// Handed out by `POST /v1/connections/export` (the detail names the request).
    Exported,
    /// The link's Keap hooks were set (`PUT .../hooks`; the detail lists the event keys).
    HooksSet,
    /// A check found a hook Inactive, Unverified or gone at Keap and restored it (or could not:
    /// `code`).
    HookRestored,
    HookRestoreFailed,
    /// The link's hooks were deleted at Keap (or could not be: `code`, and the detail).
    HooksRemoved,
    /// The user allowed an MCP client (an AI assistant) to act in the link (`detail`: its name
    /// and scope).
    McpGranted,
    /// The user revoked an MCP client's access to the link.
    McpRevoked,
    /// An MCP client called a tool (`code`: the outcome; `detail`: the tool; never arguments).
    McpToolCall,
}

/// One entry of a link's timeline. Never holds a token or secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionEvent {
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2026-01-01T00:00:00Z"))]
    pub at: String,
    #[serde(rename = "type")]
    pub kind: ConnectionEventKind,
    /// The failure's or refusal's code, where there is one.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub code: Option<String>,
    /// A sentence for a support person (e.g. who signed in instead).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub detail: Option<String>,
}

/// `GET /v1/connections/{id}`: the link and its timeline (newest first, the last 100 events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionDetail {
    #[serde(flatten)]
    pub connection: PartnerConnection,
    pub events: Vec<ConnectionEvent>,
}

/// Where a webhook delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Queued or waiting for a retry.
    Pending,
    Delivered,
    /// Given up (a 4xx other than 429, or retried for a day); can be redelivered.
    Failed,
}

/// One event sent (or being sent) to the partner's webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookDelivery {
    /// The event's id (`evt_…`), the same as its `keaplink-event-id` header.
    #[cfg_attr(feature = "openapi", schema(example = "evt_0123456789abcdef"))]
    pub id: String,
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(example = "connection.created"))]
    pub event_type: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2026-01-01T00:00:00Z"))]
    pub created_at: String,
    /// The link the event is about (`null` for an event about no one link: `import.finished`).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub connection_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub user: Option<String>,
    pub state: DeliveryState,
    pub attempts: u32,
    /// The HTTP status of the last attempt (`null`: no answer, or not tried yet).
    #[cfg_attr(feature = "openapi", schema(required = true, example = 200))]
    pub last_status: Option<u16>,
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime, example = "2026-01-01T00:00:00Z"))]
    pub last_attempt_at: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime, example = "2026-01-01T00:00:00Z"))]
    pub next_retry_at: Option<String>,
}

/// `GET /v1/webhooks/deliveries`: the latest deliveries, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookDeliveries {
    pub deliveries: Vec<WebhookDelivery>,
}

/// `PATCH /v1/partner` body: the partner's own settings; each field left out stays as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PartnerSettings {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 20))]
    pub allowed_origins: Option<Vec<String>>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 20))]
    pub return_urls: Option<Vec<String>>,
    /// A URL, or `null` to stop webhooks. (Left out when absent on the way out too, so the
    /// change reads the same after crossing a Durable Object call.)
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = "uri"))]
    pub webhook_url: Option<Option<String>>,
    #[serde(default)]
    pub reconnect_identity: Option<ReconnectIdentity>,
    #[serde(default)]
    pub webhook_repair_links: Option<bool>,
    /// The partner's MCP server settings (replaced whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpSettings>,
}

/// A field that is present (possibly `null`) reads as `Some`; an absent one stays `None`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `GET /v1/stats`: one partner's overview (the console's first page).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartnerStats {
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2026-01-01T00:00:00Z"))]
    pub as_of: String,
    pub connections: ConnectionCounts,
    pub refreshes_last_24h: RefreshCounts,
    /// Keap's quota is shared by every partner of the deployment: as last seen.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub keap_quota: Option<proxy::KeapQuota>,
    pub webhooks: WebhookCounts,
    /// Keap's events for the partner's links over the last 24 hours (whole hours).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub keap_events_last_24h: KeapEventCounts,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookCounts {
    pub pending: u64,
    /// Deliveries given up: each can be redelivered.
    pub failed: u64,
    pub delivered_last_24h: u64,
}

/// `GET /v1/admin/partners`: one page of partners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartnerList {
    pub partners: Vec<PartnerView>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub cursor: Option<String>,
}

/// `POST /v1/admin/reseal` answer: one page of the key-rotation walk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResealReport {
    /// What this page walked: `partners` (their session secrets) or `connections` (tokens).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true, example = "connections"))]
    pub phase: String,
    /// Records moved to the current (first) key of `TOKEN_KEYS`.
    pub resealed: u32,
    /// Records already under it.
    pub current: u32,
    /// Records no key of `TOKEN_KEYS` opens (left untouched; see the README).
    pub unreadable: u32,
    /// Pass it back as `?cursor=` for the next page; `null` when the walk is done.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub cursor: Option<String>,
}

/// `GET /v1/admin/stats` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminStats {
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2026-01-01T00:00:00Z"))]
    pub as_of: String,
    pub partners: u64,
    pub connections: ConnectionCounts,
    /// Refresh attempts of the last 24 hours (whole hours), by outcome.
    pub refreshes_last_24h: RefreshCounts,
    /// Keap's shared quota as last seen (`null` until Keap reported it).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub keap_quota: Option<proxy::KeapQuota>,
    /// Calls through `/v1/keap/` of the last 24 hours (whole hours), by outcome.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub proxy_last_24h: proxy::ProxyCounts,
    /// Keap's events for every partner's links over the last 24 hours (whole hours).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub keap_events_last_24h: KeapEventCounts,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionCounts {
    pub total: u64,
    pub active: u64,
    pub needs_reauth: u64,
    /// Handed out by an export (frozen; deleted once the partner's cut-over is done).
    #[serde(default)]
    pub exported: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshCounts {
    pub succeeded: u64,
    /// Transient failures (retried).
    pub failed: u64,
    /// Links that died and need their user.
    pub needs_reauth: u64,
}

/// One link a partner already holds, as `POST /v1/imports` takes it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ImportLink {
    /// The partner's own id of the user (1-256 characters, no control characters).
    #[cfg_attr(feature = "openapi", schema(example = "user-1001"))]
    pub user: String,
    /// The Keap refresh token the partner holds. Refreshed once (unless `access_token` is still
    /// good): from then on only keaplink's rotated token works.
    #[cfg_attr(feature = "openapi", schema(example = "KeapRefreshTokenExample"))]
    pub refresh_token: String,
    /// The access token, if the partner holds one that is still good for a while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// When `access_token` expires (RFC 3339); without it the access token is not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2026-01-01T00:00:00Z"))]
    pub expires_at: Option<String>,
    /// The Keap app, if the partner knows it: an existing link is then found before anything
    /// is refreshed. Keap's own answer decides the app the link is stored under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = "ab123"))]
    pub keap_app: Option<String>,
}

impl std::fmt::Debug for ImportLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportLink")
            .field("user", &self.user)
            .field("refresh_token", &"[redacted]")
            .field("access_token", &redacted(&self.access_token))
            .field("expires_at", &self.expires_at)
            .field("keap_app", &self.keap_app)
            .finish()
    }
}

/// `POST /v1/imports` body: 1 to 1,000 links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    pub links: Vec<ImportLink>,
}

/// Whether an import still has items to settle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ImportStatus {
    Running,
    Done,
}

/// `POST /v1/imports` answer (202 when started, 200 when the idempotency key named one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportStarted {
    #[cfg_attr(
        feature = "openapi",
        schema(example = "imp_0123456789abcdef0123456789abcdef")
    )]
    pub import_id: String,
    pub status: ImportStatus,
    pub total: u32,
}

/// What became of one imported link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ImportOutcome {
    /// A new link: `connection_id`, `keap_app` and `keap_user` are given.
    Imported,
    /// The user already has a link to that Keap app here; it is kept as it is.
    AlreadyLinked,
    /// Keap refused the refresh token: nothing stored.
    Dead,
    /// The refresh was sent and no answer came: Keap may have rotated the token, so the user
    /// has to connect again. Nothing stored.
    Lost,
    /// The same refresh token appeared earlier in this import.
    Duplicate,
    /// The item is malformed (`error` says how).
    Invalid,
}

/// Items by outcome (`pending`: not settled yet).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportCounts {
    pub imported: u32,
    pub already_linked: u32,
    pub dead: u32,
    pub lost: u32,
    pub duplicate: u32,
    pub invalid: u32,
    pub pending: u32,
}

/// One item of an import, in `index` order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportItem {
    /// The item's place in the request's `links` (from 0).
    pub index: u32,
    pub user: String,
    /// `null` while the item is pending.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub outcome: Option<ImportOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keap_app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keap_user: Option<KeapUser>,
    /// Why the item is `invalid`, `dead` or `lost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// `GET /v1/imports/{import_id}`: the import's progress and a page of its items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportView {
    pub import_id: String,
    pub status: ImportStatus,
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2026-01-01T00:00:00Z"))]
    pub created_at: String,
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime, example = "2026-01-01T00:00:00Z"))]
    pub finished_at: Option<String>,
    pub total: u32,
    pub counts: ImportCounts,
    pub items: Vec<ImportItem>,
    /// The next page's cursor (`null`: this is the last page).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub cursor: Option<String>,
}

/// `POST /v1/connections/export` body: 1 to 100 connection ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    pub connection_ids: Vec<String>,
}

/// One link handed out, with the tokens it holds now (its refresh token is the live one).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportedLink {
    pub connection_id: String,
    pub user: String,
    pub keap_app: String,
    pub keap_user: KeapUser,
    #[cfg_attr(feature = "openapi", schema(example = "KeapAccessTokenExample"))]
    pub access_token: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2026-01-01T00:00:00Z"))]
    pub expires_at: String,
    #[cfg_attr(feature = "openapi", schema(example = "KeapRefreshTokenExample"))]
    pub refresh_token: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2026-01-01T00:00:00Z"))]
    pub refresh_expires_at: String,
}

impl std::fmt::Debug for ExportedLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedLink")
            .field("connection_id", &self.connection_id)
            .field("keap_app", &self.keap_app)
            .field("access_token", &"[redacted]")
            .field("refresh_token", &"[redacted]")
            .finish()
    }
}

/// A link that was not exported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportFailure {
    pub connection_id: String,
    pub error: ErrorDetail,
}

/// `POST /v1/connections/export` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportResponse {
    pub links: Vec<ExportedLink>,
    pub failed: Vec<ExportFailure>,
}

/// `import.finished`: sent once, when the last item of an import has its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportFinished {
    pub import_id: String,
    pub total: u32,
    pub counts: ImportCounts,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_body_has_the_contract_shape() {
        let body = ErrorBody {
            error: ErrorDetail {
                code: "not_found".into(),
                message: "No such route.".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"error": {"code": "not_found", "message": "No such route."}})
        );
    }

    #[test]
    fn health_serializes_as_ok_true() {
        assert_eq!(
            serde_json::to_string(&Health { ok: true }).unwrap(),
            r#"{"ok":true}"#
        );
    }

    #[test]
    fn connect_request_defaults_to_sign_out_first() {
        let req: ConnectRequest = serde_json::from_str("{}").unwrap();
        assert!(req.sign_out_first);
        assert_eq!(req.return_to, None);
        let req: ConnectRequest =
            serde_json::from_value(json!({"sign_out_first": false, "return_to": null})).unwrap();
        assert!(!req.sign_out_first);
    }

    #[test]
    fn partner_connection_flattens_the_connection_and_adds_user() {
        let c = PartnerConnection {
            connection: Connection {
                id: "abc".into(),
                keap_app: "xx123".into(),
                keap_user: KeapUser {
                    email: "a@b.c".into(),
                    name: "Ann Bee".into(),
                },
                status: ConnectionStatus::NeedsReauth,
                connected_at: "2026-01-01T00:00:00Z".into(),
                refreshed_at: None,
                reconnected_at: None,
                access_expires_at: "2026-01-02T00:00:00Z".into(),
                refresh_expires_at: "2026-02-15T00:00:00Z".into(),
                reconnect_before: None,
                keap_app_name: Some("Ann's Bakery".into()),
                last_error: None,
            },
            user: "u1".into(),
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["status"], "needs_reauth");
        assert_eq!(v["user"], "u1");
        assert_eq!(v["keap_user"]["email"], "a@b.c");
        assert!(v["refreshed_at"].is_null());
    }

    #[test]
    fn debug_never_prints_a_token_or_key() {
        let t = TokenResponse {
            access_token: "tok-secret-123".into(),
            expires_at: "x".into(),
            keap_app: "ab123".into(),
        };
        assert!(!format!("{t:?}").contains("tok-secret-123"));
        let v = PartnerView {
            partner_id: "p".into(),
            name: "P".into(),
            allowed_origins: vec![],
            return_urls: vec![],
            webhook_url: None,
            reconnect_identity: ReconnectIdentity::User,
            webhook_repair_links: false,
            export_enabled: false,
            mcp: McpSettings::default(),
            session_secret: Some("sess-secret-456".into()),
            api_key: Some("klk.p.key-secret-789".into()),
        };
        let d = format!("{v:?}");
        assert!(
            !d.contains("secret-456") && !d.contains("secret-789"),
            "{d}"
        );
        assert!(d.contains("[redacted]"));
    }

    #[test]
    fn partner_settings_keep_absent_and_null_apart_across_a_round_trip() {
        for (json, expect) in [
            ("{}", None),
            (r#"{"webhook_url":null}"#, Some(None)),
            (
                r#"{"webhook_url":"https://a.example/h"}"#,
                Some(Some("https://a.example/h".to_owned())),
            ),
        ] {
            let s: PartnerSettings = serde_json::from_str(json).unwrap();
            assert_eq!(s.webhook_url, expect, "{json}");
            let again: PartnerSettings =
                serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
            assert_eq!(again, s, "{json}");
        }
    }

    #[test]
    fn partner_view_hides_absent_secrets() {
        let v = PartnerView {
            partner_id: "p".into(),
            name: "P".into(),
            allowed_origins: vec![],
            return_urls: vec![],
            webhook_url: None,
            reconnect_identity: ReconnectIdentity::User,
            webhook_repair_links: false,
            export_enabled: false,
            mcp: McpSettings::default(),
            session_secret: None,
            api_key: None,
        };
        let j = serde_json::to_value(&v).unwrap();
        assert!(j.get("session_secret").is_none());
        assert!(j.get("api_key").is_none());
    }
}
