//! The OAuth 2.1 authorization server of the partners' MCP servers, as rules: what a partner may
//! set, what a client may register, which redirect URI matches, what a pending request holds,
//! and a link's grants (codes, access and refresh tokens: issued, checked, rotated, revoked).
//!
//! Storage: a client registration and a pending request are sealed into the strings the client
//! and the browser carry (nothing stored, so registration spam costs no storage); a grant lives
//! in its link's guard (the link's single writer), so a code is spent once and a refresh token
//! rotates once however many arrive at the same moment. Every code and token names the guard
//! that holds it (its Durable Object id, which says nothing of the partner or user) and is
//! stored only as a SHA-256 hash.
//!
//! Tokens issued from a code or a refresh token are derived from it (HMAC-SHA256 keyed with the
//! presented secret): a client that retries a refresh with the refresh token just rotated away
//! (two requests at once, a lost answer) within [`ROTATION_GRACE_SECS`] gets the same answer
//! again instead of `invalid_grant`; later, the old token's reuse ends the grant.

use crate::clock::UnixTime;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{storage_hash, PartnerId, UserId};
use crate::seal::Keyring;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use keaplink_api::{McpSettings, McpTools};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use url::Url;

/// A pending authorization request lives this long (the partner's sign-in and the consent).
pub const REQUEST_TTL_SECS: i64 = 600;
/// An authorization code lives this long.
pub const CODE_TTL_SECS: i64 = 60;
/// An access token lives this long.
pub const ACCESS_TTL_SECS: i64 = 3600;
/// A refresh token unused this long dies (each use rotates it and starts again).
pub const REFRESH_TTL_SECS: i64 = 30 * 86_400;
/// How long a just-rotated refresh token still answers, with the same tokens again.
pub const ROTATION_GRACE_SECS: i64 = 60;
/// A registration that has authorized nothing for this long can no longer start an
/// authorization (the client registers again); grants it holds are not affected.
pub const REGISTRATION_TTL_SECS: i64 = 30 * 86_400;
/// The most grants one link holds; a new one beyond replaces the least recently used.
pub const MAX_GRANTS_PER_LINK: usize = 20;
pub const MAX_REDIRECT_URIS: usize = 5;
pub const MAX_REDIRECT_URI_BYTES: usize = 512;
pub const MAX_CLIENT_NAME_CHARS: usize = 100;
pub const MAX_STATE_BYTES: usize = 512;

pub const SCOPE_READ: &str = "keap.read";
pub const SCOPE_WRITE: &str = "keap.write";

const CLIENT_AAD: &str = "keaplink mcp client";
const REQUEST_AAD: &str = "keaplink mcp request";
const CONSENT_AAD: &str = "keaplink mcp consent";

/// Checks a partner's MCP settings: enabled needs an https `sign_in_url` (http only on a
/// loopback host, for local development).
pub fn check_settings(m: McpSettings) -> Result<McpSettings, &'static str> {
    let sign_in_url = match m.sign_in_url {
        None => None,
        Some(u) => {
            let url = Url::parse(u.trim())
                .map_err(|_| "mcp.sign_in_url must be an absolute https URL.")?;
            let ok = (url.scheme() == "https" || (url.scheme() == "http" && loopback(&url)))
                && url.username().is_empty()
                && url.password().is_none()
                && url.fragment().is_none()
                && u.len() <= crate::partner::MAX_URL_BYTES;
            if !ok {
                return Err("mcp.sign_in_url must be an absolute https URL without credentials or fragment (http only on a loopback host).");
            }
            Some(url.to_string())
        }
    };
    if m.enabled && sign_in_url.is_none() {
        return Err(
            "mcp.enabled needs mcp.sign_in_url: where keaplink sends your user to sign in.",
        );
    }
    Ok(McpSettings {
        enabled: m.enabled,
        sign_in_url,
        tools: m.tools,
    })
}

/// What a grant allows: reading, or reading and writing.
pub type Access = McpTools;

/// The scope string of an access.
pub fn scope_of(a: Access) -> &'static str {
    match a {
        McpTools::Read => SCOPE_READ,
        McpTools::ReadWrite => "keap.read keap.write",
    }
}

/// The access a requested scope asks for, capped by what the partner allows: no scope, or any
/// scope naming only ours, asks for the most the partner allows when it names `keap.write`, else
/// reading. `None`: a scope we do not know.
pub fn requested_access(scope: Option<&str>, allowed: Access) -> Option<Access> {
    let mut write = false;
    for s in scope.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
        match s {
            SCOPE_READ => {}
            SCOPE_WRITE => write = true,
            _ => return None,
        }
    }
    Some(if write && allowed == McpTools::ReadWrite {
        McpTools::ReadWrite
    } else {
        McpTools::Read
    })
}

fn loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// A redirect URI as a client may register and use it: absolute, https or http on a loopback
/// host, no userinfo, no fragment, at most 512 bytes. Checked at registration and at every
/// authorization.
pub fn check_redirect_uri(raw: &str) -> Result<Url, &'static str> {
    if raw.len() > MAX_REDIRECT_URI_BYTES || raw.contains('#') {
        return Err("A redirect URI is at most 512 bytes, without a fragment.");
    }
    let url = Url::parse(raw).map_err(|_| "A redirect URI must be an absolute URL.")?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("A redirect URI must not carry credentials.");
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if loopback(&url) => Ok(url),
        _ => Err("A redirect URI must be https, or http on a loopback host (127.0.0.1, [::1], localhost)."),
    }
}

/// Whether `presented` is the registered redirect URI: the same string, or for http on a
/// loopback host the same but for the port (RFC 8252 §7.3: native clients pick a free port).
pub fn redirect_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    let (Ok(r), Ok(p)) = (
        check_redirect_uri(registered),
        check_redirect_uri(presented),
    ) else {
        return false;
    };
    r.scheme() == "http"
        && p.scheme() == "http"
        && loopback(&r)
        && r.host() == p.host()
        && r.path() == p.path()
        && r.query() == p.query()
}

/// A registered client, as its sealed `client_id` carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "r")]
    pub redirect_uris: Vec<String>,
    #[serde(rename = "t")]
    pub registered_at: UnixTime,
}

/// RFC 7591 client metadata, as far as a public client's registration reads it.
#[derive(Deserialize)]
pub struct Registration {
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub client_name: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    #[serde(default)]
    pub response_types: Option<Vec<String>>,
}

fn bad_metadata(message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidClientMetadata, message)
}

/// Validates a registration: public clients only (`none`), the code and refresh grants, 1-5
/// redirect URIs each as [`check_redirect_uri`] says.
pub fn register(r: Registration, now: UnixTime) -> Result<Client, ApiError> {
    if r.redirect_uris.is_empty() || r.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(ApiError::new(
            ErrorCode::InvalidRedirectUri,
            "Register 1-5 redirect_uris.",
        ));
    }
    for u in &r.redirect_uris {
        check_redirect_uri(u).map_err(|m| ApiError::new(ErrorCode::InvalidRedirectUri, m))?;
    }
    if let Some(m) = &r.token_endpoint_auth_method {
        if m != "none" {
            return Err(bad_metadata(
                "Only public clients register here: token_endpoint_auth_method must be \"none\" (PKCE protects the code).",
            ));
        }
    }
    if let Some(g) = &r.grant_types {
        if g.iter()
            .any(|g| g != "authorization_code" && g != "refresh_token")
        {
            return Err(bad_metadata(
                "grant_types may name only authorization_code and refresh_token.",
            ));
        }
    }
    if let Some(t) = &r.response_types {
        if t.iter().any(|t| t != "code") {
            return Err(bad_metadata("response_types may name only code."));
        }
    }
    let name = r.client_name.unwrap_or_default().trim().to_owned();
    if name.chars().count() > MAX_CLIENT_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(bad_metadata(
            "client_name is at most 100 characters, without control characters.",
        ));
    }
    Ok(Client {
        name: if name.is_empty() {
            "An unnamed MCP client".to_owned()
        } else {
            name
        },
        redirect_uris: r.redirect_uris,
        registered_at: now,
    })
}

fn seal_json<T: Serialize>(keys: &Keyring, aad: &str, value: &T, nonce: [u8; 12]) -> String {
    let json = serde_json::to_vec(value).unwrap_or_default();
    keys.seal(aad, &json, nonce)
}

fn open_json<T: serde::de::DeserializeOwned>(keys: &Keyring, aad: &str, sealed: &str) -> Option<T> {
    if sealed.len() > 4096 {
        return None;
    }
    serde_json::from_slice(&keys.open(aad, sealed).ok()?).ok()
}

impl Client {
    /// The client's `client_id`: the registration, sealed.
    pub fn id(&self, keys: &Keyring, nonce: [u8; 12]) -> String {
        seal_json(keys, CLIENT_AAD, self, nonce)
    }

    /// The registration a `client_id` carries, if it is one of ours.
    pub fn open(keys: &Keyring, client_id: &str) -> Option<Client> {
        open_json(keys, CLIENT_AAD, client_id)
    }

    /// Whether the registration may still start an authorization: it was made, or last
    /// authorized something (`last_authorized`: its mark, [`used_key`]), within
    /// [`REGISTRATION_TTL_SECS`]. A registration nobody uses expires; one in use does not.
    pub fn current(&self, last_authorized: Option<UnixTime>, now: UnixTime) -> bool {
        let since = last_authorized.map_or(self.registered_at, |t| t.max(self.registered_at));
        now - since <= REGISTRATION_TTL_SECS
    }

    /// The registered URI `presented` matches.
    pub fn allows_redirect(&self, presented: &str) -> bool {
        check_redirect_uri(presented).is_ok()
            && self
                .redirect_uris
                .iter()
                .any(|r| redirect_matches(r, presented))
    }
}

/// The hash a `client_id` is remembered by in a grant (ids are long).
pub fn client_hash(client_id: &str) -> String {
    storage_hash(client_id)
}

/// Where a registration's last authorization is marked (KV, expiring with it): the only thing
/// stored for a registration, and only once it has authorized something, so registrations
/// nobody uses cost no storage.
pub fn used_key(client_hash: &str) -> String {
    format!("mcpc/{client_hash}")
}

/// An authorization request, between the authorize endpoint and the consent: sealed into the
/// `keaplink_request` the partner's sign-in carries back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "PendingRow", into = "PendingRow")]
pub struct Pending {
    pub partner: PartnerId,
    pub client_hash: String,
    pub client_name: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub challenge: String,
    pub resource: String,
    pub access: Access,
    pub expires_at: UnixTime,
}

/// The `keaplink_request` of a pending request.
pub fn seal_request(keys: &Keyring, p: &Pending, nonce: [u8; 12]) -> String {
    seal_json(keys, REQUEST_AAD, p, nonce)
}

/// The pending request a `keaplink_request` carries, if ours and not expired.
pub fn open_request(keys: &Keyring, sealed: &str, now: UnixTime) -> Option<Pending> {
    open_json::<Pending>(keys, REQUEST_AAD, sealed).filter(|p| p.expires_at > now)
}

/// What the consent page's Allow and Deny forms carry: the request and who signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ConsentRow", into = "ConsentRow")]
pub struct Consent {
    pub pending: Pending,
    pub user: UserId,
}

pub fn seal_consent(keys: &Keyring, c: &Consent, nonce: [u8; 12]) -> String {
    seal_json(keys, CONSENT_AAD, c, nonce)
}

pub fn open_consent(keys: &Keyring, sealed: &str, now: UnixTime) -> Option<Consent> {
    open_json::<Consent>(keys, CONSENT_AAD, sealed).filter(|c| c.pending.expires_at > now)
}

/// A PKCE code challenge as authorize accepts it: S256 only, 43 base64url characters.
pub fn check_challenge(challenge: Option<&str>, method: Option<&str>) -> Result<String, ApiError> {
    if method != Some("S256") {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "PKCE is required: code_challenge_method=S256 with a code_challenge.",
        ));
    }
    match challenge {
        Some(c) if c.len() == 43 && URL_SAFE_NO_PAD.decode(c).is_ok() => Ok(c.to_owned()),
        _ => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "code_challenge must be the base64url SHA-256 of the code_verifier (43 characters).",
        )),
    }
}

/// Whether `verifier` (RFC 7636: 43-128 unreserved characters) hashes to `challenge`.
pub fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    let shaped = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    shaped && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

/// The kinds of secret a grant hands out, by their prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Code,
    Access,
    Refresh,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Code => "kmc",
            Kind::Access => "kma",
            Kind::Refresh => "kmr",
        }
    }
}

/// A code or token: `<kind>_<guard object id, 64 hex>_<43 base64url>`. The object id says which
/// link's guard holds its grant; only its hash is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([redacted])")
    }
}

impl Token {
    pub fn new(kind: Kind, object: &str, secret: [u8; 32]) -> Token {
        Token(format!(
            "{}_{object}_{}",
            kind.prefix(),
            URL_SAFE_NO_PAD.encode(secret)
        ))
    }

    /// A presented code or token of `kind`, if it is shaped like one.
    pub fn parse(kind: Kind, raw: &str) -> Option<Token> {
        let rest = raw.strip_prefix(kind.prefix())?.strip_prefix('_')?;
        let (object, secret) = (rest.get(..64)?, rest.get(64..)?);
        let ok = object
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && secret.len() == 44
            && secret.starts_with('_')
            && URL_SAFE_NO_PAD.decode(&secret[1..]).is_ok();
        ok.then(|| Token(raw.to_owned()))
    }

    /// The guard object that holds its grant.
    pub fn object(&self) -> &str {
        &self.0[4..68]
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored of it.
    pub fn hash(&self) -> String {
        storage_hash(&self.0)
    }

    /// The token of `kind` that this one derives (HMAC-SHA256 keyed with this one).
    fn derive(&self, kind: Kind) -> Token {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.0.as_bytes()).expect("HMAC takes any key length");
        mac.update(kind.prefix().as_bytes());
        let secret: [u8; 32] = mac.finalize().into_bytes().into();
        Token::new(kind, self.object(), secret)
    }
}

/// A code waiting for its exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "CodeRow", into = "CodeRow")]
pub struct PendingCode {
    pub hash: String,
    pub challenge: String,
    pub redirect_uri: String,
    pub expires_at: UnixTime,
}

/// One MCP client's grant in one link, as its guard stores it (hashes only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "GrantRow", into = "GrantRow")]
pub struct Grant {
    pub id: String,
    pub client_hash: String,
    pub client_name: String,
    pub partner: PartnerId,
    pub user: UserId,
    pub resource: String,
    pub access: Access,
    pub created_at: UnixTime,
    pub used_at: UnixTime,
    pub code: Option<PendingCode>,
    /// The code this grant was redeemed with: its replay ends the grant (RFC 6749 §4.1.2).
    pub spent_code: Option<String>,
    pub access_hash: Option<String>,
    pub access_expires_at: UnixTime,
    pub refresh_hash: Option<String>,
    pub refresh_expires_at: UnixTime,
    /// The refresh token just rotated away, and until when it answers again.
    pub previous_refresh: Option<(String, UnixTime)>,
    /// Older refresh tokens of the grant (the last few): one presented again ends the grant.
    pub retired: Vec<String>,
}

/// How many retired refresh tokens a grant remembers.
const MAX_RETIRED: usize = 8;

/// What a token request is answered.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_token: Token,
    pub refresh_token: Token,
    pub expires_in: i64,
    pub scope: &'static str,
}

/// Whether a grant made at `granted_at` may still be used: its partner exists, offers its MCP
/// server, and has not turned it off since the grant was made (turning it off ends every grant
/// made before, for good). The token endpoint's grants ask it before anything is issued
/// ([`Grants::redeem`], [`Grants::refresh`]); the MCP endpoint asks it of the partner it serves.
pub fn offered(partner: Option<&crate::partner::PartnerRecord>, granted_at: UnixTime) -> bool {
    partner.is_some_and(|p| p.mcp.enabled && Bound::made_since(granted_at, p.mcp_since))
}

fn not_offered() -> ApiError {
    invalid_grant("The MCP server this grant was for is no longer offered; the grant is ended. Authorize again.")
}

/// What the MCP endpoint learns from a valid access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "BoundRow", into = "BoundRow")]
pub struct Bound {
    pub grant: String,
    pub created_at: UnixTime,
    pub client_name: String,
    pub partner: PartnerId,
    pub user: UserId,
    pub resource: String,
    pub access: Access,
}

fn invalid_grant(message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidGrant, message)
}

// Stored and sealed as JSON arrays, not objects: serde's derive reads a tuple struct with one
// small visitor, where a struct with named fields costs a field matcher per type (~9 KB of the
// Worker's wasm for these five).

#[derive(Serialize, Deserialize)]
struct PendingRow(
    PartnerId,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    Access,
    UnixTime,
);

impl From<PendingRow> for Pending {
    fn from(r: PendingRow) -> Self {
        Pending {
            partner: r.0,
            client_hash: r.1,
            client_name: r.2,
            redirect_uri: r.3,
            state: r.4,
            challenge: r.5,
            resource: r.6,
            access: r.7,
            expires_at: r.8,
        }
    }
}

impl From<Pending> for PendingRow {
    fn from(p: Pending) -> Self {
        PendingRow(
            p.partner,
            p.client_hash,
            p.client_name,
            p.redirect_uri,
            p.state,
            p.challenge,
            p.resource,
            p.access,
            p.expires_at,
        )
    }
}

#[derive(Serialize, Deserialize)]
struct ConsentRow(Pending, UserId);

impl From<ConsentRow> for Consent {
    fn from(r: ConsentRow) -> Self {
        Consent {
            pending: r.0,
            user: r.1,
        }
    }
}

impl From<Consent> for ConsentRow {
    fn from(c: Consent) -> Self {
        ConsentRow(c.pending, c.user)
    }
}

#[derive(Serialize, Deserialize)]
struct CodeRow(String, String, String, UnixTime);

impl From<CodeRow> for PendingCode {
    fn from(r: CodeRow) -> Self {
        PendingCode {
            hash: r.0,
            challenge: r.1,
            redirect_uri: r.2,
            expires_at: r.3,
        }
    }
}

impl From<PendingCode> for CodeRow {
    fn from(c: PendingCode) -> Self {
        CodeRow(c.hash, c.challenge, c.redirect_uri, c.expires_at)
    }
}

#[derive(Serialize, Deserialize)]
struct GrantRow(
    String,
    String,
    String,
    PartnerId,
    UserId,
    String,
    Access,
    UnixTime,
    UnixTime,
    Option<PendingCode>,
    Option<String>,
    Option<String>,
    UnixTime,
    Option<String>,
    UnixTime,
    Option<(String, UnixTime)>,
    Vec<String>,
);

impl From<GrantRow> for Grant {
    fn from(r: GrantRow) -> Self {
        Grant {
            id: r.0,
            client_hash: r.1,
            client_name: r.2,
            partner: r.3,
            user: r.4,
            resource: r.5,
            access: r.6,
            created_at: r.7,
            used_at: r.8,
            code: r.9,
            spent_code: r.10,
            access_hash: r.11,
            access_expires_at: r.12,
            refresh_hash: r.13,
            refresh_expires_at: r.14,
            previous_refresh: r.15,
            retired: r.16,
        }
    }
}

impl From<Grant> for GrantRow {
    fn from(g: Grant) -> Self {
        GrantRow(
            g.id,
            g.client_hash,
            g.client_name,
            g.partner,
            g.user,
            g.resource,
            g.access,
            g.created_at,
            g.used_at,
            g.code,
            g.spent_code,
            g.access_hash,
            g.access_expires_at,
            g.refresh_hash,
            g.refresh_expires_at,
            g.previous_refresh,
            g.retired,
        )
    }
}

#[derive(Serialize, Deserialize)]
struct BoundRow(String, UnixTime, String, PartnerId, UserId, String, Access);

impl From<BoundRow> for Bound {
    fn from(r: BoundRow) -> Self {
        Bound {
            grant: r.0,
            created_at: r.1,
            client_name: r.2,
            partner: r.3,
            user: r.4,
            resource: r.5,
            access: r.6,
        }
    }
}

impl From<Bound> for BoundRow {
    fn from(b: Bound) -> Self {
        BoundRow(
            b.grant,
            b.created_at,
            b.client_name,
            b.partner,
            b.user,
            b.resource,
            b.access,
        )
    }
}

impl Bound {
    /// Whether the grant still counts for a partner whose MCP server was last turned on at
    /// `mcp_since`: turning it off ends every grant made before, for good (a grant made in the
    /// same second as turning it on again counts).
    pub fn current(&self, mcp_since: UnixTime) -> bool {
        Self::made_since(self.created_at, mcp_since)
    }

    fn made_since(created_at: UnixTime, mcp_since: UnixTime) -> bool {
        created_at >= mcp_since
    }
}

/// A link's grants: what its guard keeps under one storage key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    pub grants: Vec<Grant>,
}

impl Grants {
    /// Adds a grant waiting for its code's exchange (the consent's Allow). A link full of
    /// grants loses its least recently used one.
    pub fn add(&mut self, consent: &Consent, id: String, code: &Token, now: UnixTime) {
        if self.grants.len() >= MAX_GRANTS_PER_LINK {
            if let Some(i) = (0..self.grants.len()).min_by_key(|&i| self.grants[i].used_at) {
                self.grants.remove(i);
            }
        }
        let p = &consent.pending;
        self.grants.push(Grant {
            id,
            client_hash: p.client_hash.clone(),
            client_name: p.client_name.clone(),
            partner: p.partner.clone(),
            user: consent.user.clone(),
            resource: p.resource.clone(),
            access: p.access,
            created_at: now,
            used_at: now,
            code: Some(PendingCode {
                hash: code.hash(),
                challenge: p.challenge.clone(),
                redirect_uri: p.redirect_uri.clone(),
                expires_at: now + CODE_TTL_SECS,
            }),
            spent_code: None,
            access_hash: None,
            access_expires_at: 0,
            refresh_hash: None,
            refresh_expires_at: 0,
            previous_refresh: None,
            retired: Vec::new(),
        });
    }

    /// Drops grants that can no longer be used: an unredeemed code past its life, a refresh
    /// token past its life.
    pub fn prune(&mut self, now: UnixTime) {
        self.grants.retain(|g| match (&g.code, &g.refresh_hash) {
            (Some(c), _) => c.expires_at > now,
            (None, Some(_)) => g.refresh_expires_at > now,
            (None, None) => false,
        });
    }

    fn issue(g: &mut Grant, from: &Token, now: UnixTime) -> Issued {
        let access_token = from.derive(Kind::Access);
        let refresh_token = from.derive(Kind::Refresh);
        g.access_hash = Some(access_token.hash());
        g.access_expires_at = now + ACCESS_TTL_SECS;
        g.refresh_hash = Some(refresh_token.hash());
        g.refresh_expires_at = now + REFRESH_TTL_SECS;
        g.used_at = now;
        Issued {
            access_token,
            refresh_token,
            expires_in: ACCESS_TTL_SECS,
            scope: scope_of(g.access),
        }
    }

    /// The authorization code grant: once, by the client it was issued to, at the redirect URI
    /// it was sent to, with the verifier of its challenge, for the resource it names (when the
    /// client names one). A code presented again ends the grant it made.
    /// `partner`: the link's partner as it is now (`None`: deleted), read by the guard first.
    #[allow(clippy::too_many_arguments)]
    pub fn redeem(
        &mut self,
        code: &Token,
        client_hash: &str,
        redirect_uri: &str,
        verifier: &str,
        resource: Option<&str>,
        partner: Option<&crate::partner::PartnerRecord>,
        now: UnixTime,
    ) -> Result<Issued, ApiError> {
        let hash = code.hash();
        if let Some(i) = self
            .grants
            .iter()
            .position(|g| g.spent_code.as_deref() == Some(hash.as_str()))
        {
            self.grants.remove(i);
            return Err(invalid_grant(
                "This code was used before; the grant it made is revoked.",
            ));
        }
        let i = self
            .grants
            .iter()
            .position(|g| g.code.as_ref().is_some_and(|c| c.hash == hash))
            .ok_or_else(|| invalid_grant("The code is not valid."))?;
        let g = &self.grants[i];
        let c = g.code.as_ref().expect("found by its code");
        let refusal = if c.expires_at <= now {
            Some("The code has expired; authorize again.")
        } else if g.client_hash != client_hash {
            Some("The code was issued to another client.")
        } else if c.redirect_uri != redirect_uri {
            Some("redirect_uri is not the one the code was sent to.")
        } else if !verifier_matches(verifier, &c.challenge) {
            Some("code_verifier does not match the code_challenge.")
        } else if resource.is_some_and(|r| r != g.resource) {
            Some("resource is not the one the code was issued for.")
        } else {
            None
        };
        if let Some(m) = refusal {
            // A code is tried once: a wrong verifier spends it.
            self.grants.remove(i);
            return Err(invalid_grant(m));
        }
        if !offered(partner, g.created_at) {
            self.grants.remove(i);
            return Err(not_offered());
        }
        let g = &mut self.grants[i];
        g.code = None;
        g.spent_code = Some(hash);
        Ok(Self::issue(g, code, now))
    }

    /// The refresh grant: rotates the refresh token. The token just rotated away answers the
    /// same tokens again for [`ROTATION_GRACE_SECS`]; after that its use ends the grant.
    /// `partner`: the link's partner as it is now (`None`: deleted), read by the guard first;
    /// a grant it no longer offers ends here, whichever refresh token is presented.
    pub fn refresh(
        &mut self,
        token: &Token,
        client_hash: &str,
        resource: Option<&str>,
        partner: Option<&crate::partner::PartnerRecord>,
        now: UnixTime,
    ) -> Result<Issued, ApiError> {
        let hash = token.hash();
        if let Some(i) = self.grants.iter().position(|g| g.retired.contains(&hash)) {
            self.grants.remove(i);
            return Err(invalid_grant(
                "This refresh token was replaced; the grant is revoked. Authorize again.",
            ));
        }
        if let Some(i) = self
            .grants
            .iter()
            .position(|g| g.previous_refresh.as_ref().is_some_and(|(h, _)| *h == hash))
        {
            let g = &self.grants[i];
            if !offered(partner, g.created_at) {
                self.grants.remove(i);
                return Err(not_offered());
            }
            let until = g.previous_refresh.as_ref().map_or(0, |(_, u)| *u);
            let again = token.derive(Kind::Refresh);
            if now <= until && g.refresh_hash.as_deref() == Some(again.hash().as_str()) {
                let access_token = token.derive(Kind::Access);
                return Ok(Issued {
                    access_token,
                    refresh_token: again,
                    expires_in: (g.access_expires_at - now).max(1),
                    scope: scope_of(g.access),
                });
            }
            self.grants.remove(i);
            return Err(invalid_grant(
                "This refresh token was replaced; the grant is revoked. Authorize again.",
            ));
        }
        let i = self
            .grants
            .iter()
            .position(|g| g.refresh_hash.as_deref() == Some(hash.as_str()))
            .ok_or_else(|| invalid_grant("The refresh token is not valid."))?;
        let g = &self.grants[i];
        if g.refresh_expires_at <= now {
            self.grants.remove(i);
            return Err(invalid_grant(
                "The refresh token has expired; authorize again.",
            ));
        }
        if !offered(partner, g.created_at) {
            self.grants.remove(i);
            return Err(not_offered());
        }
        if g.client_hash != client_hash {
            return Err(invalid_grant(
                "The refresh token was issued to another client.",
            ));
        }
        if resource.is_some_and(|r| r != g.resource) {
            return Err(invalid_grant(
                "resource is not the one the refresh token was issued for.",
            ));
        }
        let g = &mut self.grants[i];
        if let Some((old, _)) = g.previous_refresh.take() {
            g.retired.push(old);
            if g.retired.len() > MAX_RETIRED {
                g.retired.remove(0);
            }
        }
        g.previous_refresh = Some((hash, now + ROTATION_GRACE_SECS));
        Ok(Self::issue(g, token, now))
    }

    /// The grant a live access token names, if it is for `resource`.
    pub fn check(&self, token: &Token, resource: &str, now: UnixTime) -> Option<Bound> {
        let hash = token.hash();
        let g = self
            .grants
            .iter()
            .find(|g| g.access_hash.as_deref() == Some(hash.as_str()))?;
        (g.access_expires_at > now && g.resource == resource).then(|| Bound {
            grant: g.id.clone(),
            created_at: g.created_at,
            client_name: g.client_name.clone(),
            partner: g.partner.clone(),
            user: g.user.clone(),
            resource: g.resource.clone(),
            access: g.access,
        })
    }

    /// Ends the grant a token (access or refresh, current or previous) belongs to (RFC 7009:
    /// an unknown token is no error). Whether one ended.
    pub fn revoke_token(&mut self, token: &str) -> bool {
        let hash = storage_hash(token);
        let before = self.grants.len();
        self.grants.retain(|g| {
            g.access_hash.as_deref() != Some(hash.as_str())
                && g.refresh_hash.as_deref() != Some(hash.as_str())
                && g.previous_refresh.as_ref().map(|(h, _)| h.as_str()) != Some(hash.as_str())
        });
        self.grants.len() < before
    }

    /// Ends one grant by id (the user's revoke in the widget). Whether there was one.
    pub fn revoke(&mut self, id: &str) -> bool {
        let before = self.grants.len();
        self.grants.retain(|g| g.id != id);
        self.grants.len() < before
    }

    /// The grants a person sees (redeemed ones; codes waiting are not assistants yet).
    pub fn active(&self) -> impl Iterator<Item = &Grant> {
        self.grants.iter().filter(|g| g.refresh_hash.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixTime = 1_800_000_000;

    fn keys() -> Keyring {
        Keyring::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap()
    }

    fn object() -> String {
        "ab".repeat(32)
    }

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn consent(access: Access) -> Consent {
        Consent {
            pending: Pending {
                partner: PartnerId::parse("acme").unwrap(),
                client_hash: client_hash("client-1"),
                client_name: "Claude".into(),
                redirect_uri: "http://127.0.0.1:3000/cb".into(),
                state: Some("s".into()),
                challenge: CHALLENGE.into(),
                resource: "https://k.example/mcp/acme".into(),
                access,
                expires_at: NOW + REQUEST_TTL_SECS,
            },
            user: UserId::parse("u-1").unwrap(),
        }
    }

    /// The partner as the guard reads it: its MCP server on since before the grants were made.
    fn on() -> crate::partner::PartnerRecord {
        serde_json::from_value(serde_json::json!({
            "partner_id": "acme", "name": "Acme", "allowed_origins": [], "return_urls": [],
            "api_key_hash": "", "session_secret": "", "created_at": 0, "updated_at": 0,
            "mcp": {"enabled": true, "sign_in_url": "https://acme.example/in", "tools": "read_write"},
            "mcp_since": NOW - 100,
        }))
        .unwrap()
    }

    #[test]
    fn a_grant_its_partner_no_longer_offers_ends_at_the_token_endpoint() {
        let ch = client_hash("client-1");
        let uri = "http://127.0.0.1:3000/cb";
        // Redeem: the server was turned off and on since the consent.
        let (mut g, code) = granted();
        let mut again = on();
        again.mcp_since = NOW + 1;
        let e = g
            .redeem(&code, &ch, uri, VERIFIER, None, Some(&again), NOW + 2)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidGrant);
        assert!(g.grants.is_empty(), "the grant is ended, nothing issued");
        // Refresh: the partner deleted, or its server off; the grace retry too.
        for partner in [
            None,
            Some({
                let mut off = on();
                off.mcp.enabled = false;
                off
            }),
        ] {
            let (mut g, code) = granted();
            let first = g
                .redeem(&code, &ch, uri, VERIFIER, None, Some(&on()), NOW)
                .unwrap();
            let second = g
                .refresh(&first.refresh_token, &ch, None, Some(&on()), NOW + 1)
                .unwrap();
            let mut retry = g.clone();
            assert_eq!(
                retry
                    .refresh(&first.refresh_token, &ch, None, partner.as_ref(), NOW + 2)
                    .unwrap_err()
                    .code,
                ErrorCode::InvalidGrant
            );
            assert!(retry.grants.is_empty());
            assert_eq!(
                g.refresh(&second.refresh_token, &ch, None, partner.as_ref(), NOW + 2)
                    .unwrap_err()
                    .code,
                ErrorCode::InvalidGrant
            );
            assert!(g.grants.is_empty());
            assert!(g
                .check(&second.access_token, "https://k.example/mcp/acme", NOW + 2)
                .is_none());
        }
        // And the rule itself.
        assert!(offered(Some(&on()), NOW - 100) && !offered(Some(&on()), NOW - 101));
        assert!(!offered(None, NOW));
    }

    /// The code redeemed as the client it was issued to, at NOW.
    fn redeemed(g: &mut Grants, code: &Token, client: &str) -> Issued {
        g.redeem(
            code,
            client,
            "http://127.0.0.1:3000/cb",
            VERIFIER,
            None,
            Some(&on()),
            NOW,
        )
        .unwrap()
    }

    fn granted() -> (Grants, Token) {
        let mut g = Grants::default();
        let code = Token::new(Kind::Code, &object(), [1; 32]);
        g.add(&consent(McpTools::Read), "g1".into(), &code, NOW);
        (g, code)
    }

    #[test]
    fn settings_need_a_sign_in_url_to_be_enabled() {
        let on = |u: Option<&str>| McpSettings {
            enabled: true,
            sign_in_url: u.map(str::to_owned),
            tools: McpTools::Read,
        };
        assert!(check_settings(on(None)).is_err());
        assert!(check_settings(on(Some("ftp://x.example/"))).is_err());
        assert!(check_settings(on(Some("http://partner.example/in"))).is_err());
        assert!(check_settings(on(Some("https://u:p@partner.example/in"))).is_err());
        assert!(check_settings(on(Some("http://127.0.0.1:8080/in"))).is_ok());
        assert_eq!(
            check_settings(on(Some("https://partner.example/in")))
                .unwrap()
                .sign_in_url
                .as_deref(),
            Some("https://partner.example/in")
        );
        assert!(check_settings(McpSettings::default()).is_ok());
    }

    #[test]
    fn scopes_ask_at_most_what_the_partner_allows() {
        use McpTools::*;
        assert_eq!(requested_access(None, ReadWrite), Some(Read));
        assert_eq!(
            requested_access(Some("keap.read keap.write"), ReadWrite),
            Some(ReadWrite)
        );
        assert_eq!(requested_access(Some("keap.write"), Read), Some(Read));
        assert_eq!(requested_access(Some("admin"), ReadWrite), None);
        assert_eq!(scope_of(ReadWrite), "keap.read keap.write");
    }

    #[test]
    fn redirect_uris_are_https_or_loopback_and_loopback_matches_any_port() {
        for ok in [
            "https://app.example/cb",
            "http://127.0.0.1:33418/callback",
            "http://localhost/cb",
            "http://[::1]:9/cb",
        ] {
            assert!(check_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example/cb",
            "https://user:pw@app.example/cb",
            "https://app.example/cb#frag",
            "javascript:alert(1)",
            "/relative",
            "http://127.0.0.2.example/cb",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
        assert!(redirect_matches(
            "http://127.0.0.1:1/cb",
            "http://127.0.0.1:5555/cb"
        ));
        assert!(redirect_matches(
            "http://localhost/cb",
            "http://localhost:8/cb"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1:1/cb",
            "http://localhost:1/cb"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1:1/cb",
            "http://127.0.0.1:1/other"
        ));
        assert!(!redirect_matches(
            "https://a.example/cb",
            "https://a.example:444/cb"
        ));
        assert!(!redirect_matches(
            "https://a.example/cb",
            "https://a.example/cb2"
        ));
    }

    #[test]
    fn registration_is_for_public_clients_and_is_sealed_into_the_id() {
        let reg = |json: &str| register(serde_json::from_str(json).unwrap(), NOW);
        let c = reg(r#"{"redirect_uris":["http://127.0.0.1:1/cb"],"client_name":"Claude","token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"],"response_types":["code"]}"#).unwrap();
        assert_eq!(c.name, "Claude");
        let id = c.id(&keys(), [3; 12]);
        assert_eq!(Client::open(&keys(), &id), Some(c.clone()));
        assert!(Client::open(&keys(), &format!("{id}x")).is_none());
        assert!(c.allows_redirect("http://127.0.0.1:4242/cb"));
        assert!(!c.allows_redirect("http://127.0.0.1:4242/cb#x"));
        assert!(c.current(None, NOW + REGISTRATION_TTL_SECS));
        assert!(
            !c.current(None, NOW + REGISTRATION_TTL_SECS + 1),
            "unused: expired"
        );
        // In use: the last authorization counts from then; a mark older than the registration
        // (none can be, but a clock may say so) counts from the registration.
        let later = NOW + 20 * 86_400;
        assert!(c.current(Some(later), later + REGISTRATION_TTL_SECS));
        assert!(!c.current(Some(later), later + REGISTRATION_TTL_SECS + 1));
        assert!(!c.current(Some(NOW - 99), NOW + REGISTRATION_TTL_SECS + 1));
        assert_eq!(used_key("abc"), "mcpc/abc");
        assert_eq!(
            reg(r#"{"redirect_uris":[]}"#).unwrap_err().code,
            ErrorCode::InvalidRedirectUri
        );
        assert_eq!(
            reg(r#"{"redirect_uris":["http://evil.example/cb"]}"#)
                .unwrap_err()
                .code,
            ErrorCode::InvalidRedirectUri
        );
        assert_eq!(
            reg(r#"{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"client_secret_basic"}"#)
                .unwrap_err()
                .code,
            ErrorCode::InvalidClientMetadata
        );
        assert_eq!(
            reg(
                r#"{"redirect_uris":["https://a.example/cb"],"grant_types":["client_credentials"]}"#
            )
            .unwrap_err()
            .code,
            ErrorCode::InvalidClientMetadata
        );
        assert_eq!(
            reg(r#"{"redirect_uris":["https://a.example/cb"]}"#)
                .unwrap()
                .name,
            "An unnamed MCP client"
        );
    }

    #[test]
    fn requests_and_consents_are_sealed_and_expire() {
        let c = consent(McpTools::Read);
        let sealed = seal_request(&keys(), &c.pending, [5; 12]);
        assert_eq!(open_request(&keys(), &sealed, NOW), Some(c.pending.clone()));
        assert!(open_request(&keys(), &sealed, NOW + REQUEST_TTL_SECS).is_none());
        // A request is not a consent, nor the other way round.
        assert!(open_consent(&keys(), &sealed, NOW).is_none());
        let s = seal_consent(&keys(), &c, [6; 12]);
        assert_eq!(open_consent(&keys(), &s, NOW), Some(c));
        assert!(open_request(&keys(), &s, NOW).is_none());
    }

    #[test]
    fn pkce_is_s256_only() {
        assert!(check_challenge(Some(CHALLENGE), Some("S256")).is_ok());
        assert!(check_challenge(Some(CHALLENGE), Some("plain")).is_err());
        assert!(check_challenge(Some(CHALLENGE), None).is_err());
        assert!(check_challenge(Some("short"), Some("S256")).is_err());
        assert!(verifier_matches(VERIFIER, CHALLENGE));
        assert!(!verifier_matches("x".repeat(43).as_str(), CHALLENGE));
    }

    #[test]
    fn tokens_name_their_guard_and_are_stored_hashed() {
        let t = Token::new(Kind::Access, &object(), [9; 32]);
        assert_eq!(Token::parse(Kind::Access, t.expose()), Some(t.clone()));
        assert!(Token::parse(Kind::Refresh, t.expose()).is_none());
        assert!(Token::parse(Kind::Access, &t.expose()[..50]).is_none());
        assert_eq!(t.object(), object());
        assert!(!t.hash().contains(t.expose()));
        assert!(!format!("{t:?}").contains(t.expose()));
    }

    #[test]
    fn a_code_is_spent_once_and_its_replay_ends_the_grant() {
        let (mut g, code) = granted();
        let issued = g
            .redeem(
                &code,
                &client_hash("client-1"),
                "http://127.0.0.1:3000/cb",
                VERIFIER,
                None,
                Some(&on()),
                NOW,
            )
            .unwrap();
        assert_eq!(issued.scope, "keap.read");
        let bound = g
            .check(&issued.access_token, "https://k.example/mcp/acme", NOW)
            .unwrap();
        assert_eq!(bound.user.as_str(), "u-1");
        assert!(bound.current(NOW) && bound.current(NOW - 5));
        // The partner turned its server off and on again since: the grant is over.
        assert!(!bound.current(NOW + 1));
        // Another partner's endpoint: not this token's resource.
        assert!(g
            .check(&issued.access_token, "https://k.example/mcp/other", NOW)
            .is_none());
        let again = g
            .redeem(
                &code,
                &client_hash("client-1"),
                "http://127.0.0.1:3000/cb",
                VERIFIER,
                None,
                Some(&on()),
                NOW,
            )
            .unwrap_err();
        assert_eq!(again.code, ErrorCode::InvalidGrant);
        assert!(g
            .check(&issued.access_token, "https://k.example/mcp/acme", NOW)
            .is_none());
        assert!(g.grants.is_empty());
    }

    #[test]
    fn a_code_refuses_the_wrong_verifier_client_uri_resource_or_age() {
        let cases: Vec<(&str, &str, &str, Option<&str>, UnixTime)> = vec![
            (
                "client-1",
                "http://127.0.0.1:3000/cb",
                "x".repeat(43).leak(),
                None,
                NOW,
            ),
            ("client-2", "http://127.0.0.1:3000/cb", VERIFIER, None, NOW),
            ("client-1", "http://127.0.0.1:3001/cb", VERIFIER, None, NOW),
            (
                "client-1",
                "http://127.0.0.1:3000/cb",
                VERIFIER,
                Some("https://k.example/mcp/other"),
                NOW,
            ),
            (
                "client-1",
                "http://127.0.0.1:3000/cb",
                VERIFIER,
                None,
                NOW + CODE_TTL_SECS,
            ),
        ];
        for (client, uri, verifier, resource, at) in cases {
            let (mut g, code) = granted();
            let e = g
                .redeem(
                    &code,
                    &client_hash(client),
                    uri,
                    verifier,
                    resource,
                    Some(&on()),
                    at,
                )
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidGrant);
            // Nothing issued, and the code is spent.
            assert!(g.grants.is_empty());
        }
    }

    #[test]
    fn refresh_rotates_and_a_retry_with_the_previous_token_gets_the_same_answer() {
        let (mut g, code) = granted();
        let ch = client_hash("client-1");
        let first = redeemed(&mut g, &code, &ch);
        let second = g
            .refresh(&first.refresh_token, &ch, None, Some(&on()), NOW + 10)
            .unwrap();
        assert_ne!(second.refresh_token, first.refresh_token);
        // The old access token is gone, the new one works.
        assert!(g
            .check(&first.access_token, "https://k.example/mcp/acme", NOW + 10)
            .is_none());
        assert!(g
            .check(&second.access_token, "https://k.example/mcp/acme", NOW + 10)
            .is_some());
        // A concurrent retry with the just-rotated token: the same tokens, no invalid_grant.
        let retry = g
            .refresh(&first.refresh_token, &ch, None, Some(&on()), NOW + 20)
            .unwrap();
        assert_eq!(retry.refresh_token, second.refresh_token);
        assert_eq!(retry.access_token, second.access_token);
        // Rotating on, then the twice-old token: the grant ends.
        let third = g
            .refresh(&second.refresh_token, &ch, None, Some(&on()), NOW + 30)
            .unwrap();
        assert_eq!(
            g.refresh(&first.refresh_token, &ch, None, Some(&on()), NOW + 31)
                .unwrap_err()
                .code,
            ErrorCode::InvalidGrant
        );
        assert!(g
            .check(&third.access_token, "https://k.example/mcp/acme", NOW + 31)
            .is_none());
    }

    #[test]
    fn a_previous_refresh_token_past_its_grace_ends_the_grant() {
        let (mut g, code) = granted();
        let ch = client_hash("client-1");
        let first = redeemed(&mut g, &code, &ch);
        let second = g
            .refresh(&first.refresh_token, &ch, None, Some(&on()), NOW)
            .unwrap();
        assert!(g
            .refresh(
                &first.refresh_token,
                &ch,
                None,
                Some(&on()),
                NOW + ROTATION_GRACE_SECS + 1
            )
            .is_err());
        assert!(g
            .refresh(&second.refresh_token, &ch, None, Some(&on()), NOW + 62)
            .is_err());
        // And refresh tokens age out.
        let (mut g, code) = granted();
        let first = redeemed(&mut g, &code, &ch);
        assert!(g
            .refresh(
                &first.refresh_token,
                &ch,
                None,
                Some(&on()),
                NOW + REFRESH_TTL_SECS
            )
            .is_err());
        let (mut g, code) = granted();
        let first = redeemed(&mut g, &code, &ch);
        assert!(g
            .refresh(
                &first.refresh_token,
                &client_hash("client-2"),
                None,
                Some(&on()),
                NOW
            )
            .is_err());
    }

    #[test]
    fn access_tokens_expire_and_revocation_ends_the_grant() {
        let (mut g, code) = granted();
        let ch = client_hash("client-1");
        let t = redeemed(&mut g, &code, &ch);
        assert!(g
            .check(
                &t.access_token,
                "https://k.example/mcp/acme",
                NOW + ACCESS_TTL_SECS
            )
            .is_none());
        assert_eq!(g.active().count(), 1);
        assert!(!g.revoke_token("kma_unknown"));
        assert!(g.revoke_token(t.refresh_token.expose()));
        assert_eq!(g.active().count(), 0);
        let (mut g, _) = granted();
        g.prune(NOW + CODE_TTL_SECS);
        assert!(g.grants.is_empty());
    }

    #[test]
    fn grants_and_requests_read_back_as_written() {
        let (mut g, code) = granted();
        let ch = client_hash("client-1");
        let t = redeemed(&mut g, &code, &ch);
        g.refresh(&t.refresh_token, &ch, None, Some(&on()), NOW + 1)
            .unwrap();
        let (mut g2, code2) = granted();
        g.grants.append(&mut g2.grants);
        let _ = code2;
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(serde_json::from_str::<Grants>(&json).unwrap(), g);
        let c = consent(McpTools::ReadWrite);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Consent>(&json).unwrap(), c);
        let again = g
            .refresh(&t.refresh_token, &ch, None, Some(&on()), NOW + 2)
            .unwrap();
        let b = g
            .check(&again.access_token, "https://k.example/mcp/acme", NOW + 2)
            .unwrap();
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<Bound>(&json).unwrap(), b);
    }

    #[test]
    fn a_full_link_drops_its_least_recently_used_grant() {
        let mut g = Grants::default();
        for i in 0..MAX_GRANTS_PER_LINK + 1 {
            let code = Token::new(Kind::Code, &object(), [i as u8; 32]);
            g.add(
                &consent(McpTools::Read),
                format!("g{i}"),
                &code,
                NOW + i as i64,
            );
        }
        assert_eq!(g.grants.len(), MAX_GRANTS_PER_LINK);
        assert!(g.grants.iter().all(|x| x.id != "g0"));
        assert!(g.revoke("g1"));
        assert!(!g.revoke("g1"));
    }
}

/// The parameters of a form or query that an OAuth endpoint reads, decoded; others are ignored
/// (RFC 6749 §3.1). One sent twice is refused.
pub fn params(text: &str, names: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    if text.len() > 16 * 1024 {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "The parameters are over 16 KiB.",
        ));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(text.as_bytes()) {
        if !names.contains(&k.as_ref()) {
            continue;
        }
        if out.iter().any(|(n, _)| *n == k) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("{k} appears twice; send it once."),
            ));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// The value of `name` in what [`params`] read.
pub fn param<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The partner whose MCP endpoint `resource` is, on this deployment (`issuer` without a
/// trailing slash).
pub fn resource_partner(issuer: &str, resource: &str) -> Option<PartnerId> {
    let rest = resource.strip_prefix(issuer)?.strip_prefix("/mcp/")?;
    PartnerId::parse(rest.trim_end_matches('/'))
}

/// Where the authorization's answer goes: the client's redirect URI with `params` and `iss`
/// added to its query (RFC 9207).
pub fn redirect_to(redirect_uri: &str, params: &[(&str, &str)], issuer: &str) -> String {
    let mut url = match Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => return redirect_uri.to_owned(),
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        q.append_pair("iss", issuer);
    }
    url.to_string()
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn params_ignore_others_and_refuse_repeats() {
        let p = params("a=1&b=x%20y&c=3", &["a", "b"]).unwrap();
        assert_eq!(param(&p, "b"), Some("x y"));
        assert_eq!(param(&p, "c"), None);
        assert!(params("a=1&a=2", &["a"]).is_err());
    }

    #[test]
    fn resources_name_a_partner_of_this_deployment() {
        let r = resource_partner("https://k.example", "https://k.example/mcp/acme");
        assert_eq!(r.unwrap().as_str(), "acme");
        assert!(resource_partner("https://k.example", "https://evil.example/mcp/acme").is_none());
        assert!(resource_partner("https://k.example", "https://k.example/v1/acme").is_none());
        assert_eq!(
            redirect_to(
                "http://127.0.0.1:5/cb?x=1",
                &[("code", "c"), ("state", "s t")],
                "https://k.example"
            ),
            "http://127.0.0.1:5/cb?x=1&code=c&state=s+t&iss=https%3A%2F%2Fk.example"
        );
    }
}
