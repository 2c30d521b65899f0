//! Partners: who may embed the widget, where the flow may return to, and their two secrets.
//!
//! The API key is stored as a SHA-256 hash (it is high-entropy, so no slow hash is needed); the
//! session secret must be read back to verify session JWTs, so it is sealed.

use crate::clock::UnixTime;
use crate::error::{ApiError, ErrorCode};
use crate::ids::PartnerId;
use crate::seal::{Keyring, OpenError, Reseal, NONCE_LEN};
use crate::secret::Secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use keaplink_api::{McpSettings, PartnerSettings, PartnerUpsert, PartnerView, ReconnectIdentity};
use serde::{Deserialize, Serialize};

use subtle::ConstantTimeEq;
use url::Url;

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_LIST_ENTRIES: usize = 20;
pub const MAX_URL_BYTES: usize = 2048;
/// Random bytes behind each partner secret.
pub const SECRET_BYTES: usize = 32;
const API_KEY_PREFIX: &str = "klk";

/// A partner as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerRecord {
    pub partner_id: PartnerId,
    pub name: String,
    pub allowed_origins: Vec<String>,
    pub return_urls: Vec<String>,
    /// base64url SHA-256 of the whole API key.
    pub api_key_hash: String,
    /// The session secret, sealed (see `seal`), bound to this partner.
    pub session_secret: String,
    #[serde(default)]
    pub webhook_url: Option<String>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
    /// Who a reconnect must sign in as. Left out of the JSON while it is the default, so records
    /// from before the field read and write back unchanged.
    #[serde(default, skip_serializing_if = "is_default_identity")]
    pub reconnect_identity: ReconnectIdentity,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub webhook_repair_links: bool,
    /// Whether the operator allows `POST /v1/connections/export` (admin PUT only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub export_enabled: bool,
    /// The partner's MCP server (`crate::mcp`); left out while off and unset.
    #[serde(default, skip_serializing_if = "is_default_mcp")]
    pub mcp: McpSettings,
    /// When the MCP server was last turned on: grants from before (from an earlier time it was
    /// on) do not count (`crate::mcp::oauth::Bound::current`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mcp_since: UnixTime,
}

fn is_zero(t: &UnixTime) -> bool {
    *t == 0
}

fn is_default_mcp(m: &McpSettings) -> bool {
    *m == McpSettings::default()
}

fn is_default_identity(r: &ReconnectIdentity) -> bool {
    *r == ReconnectIdentity::default()
}

/// Fresh randomness for an upsert that may create or rotate secrets.
pub struct FreshSecrets {
    pub api_key: [u8; SECRET_BYTES],
    pub session_secret: [u8; SECRET_BYTES],
    pub nonce: [u8; NONCE_LEN],
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidPartner, message)
}

/// An origin exactly as browsers send it: `scheme://host[:port]`, nothing more.
pub fn normalize_origin(raw: &str) -> Option<String> {
    if raw.len() > MAX_URL_BYTES {
        return None;
    }
    let url = Url::parse(raw).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let origin = url.origin().ascii_serialization();
    (origin == raw).then_some(origin)
}

/// A return URL: absolute http(s), no credentials, no fragment. Matched later by exact equality.
fn check_return_url(raw: &str) -> Option<String> {
    if raw.len() > MAX_URL_BYTES {
        return None;
    }
    let url = Url::parse(raw).ok()?;
    let ok = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.fragment().is_none();
    // Stored as parsed, so the stored form is the one comparisons see.
    ok.then(|| url.to_string())
}

fn session_secret_aad(partner: &PartnerId) -> String {
    format!("partner-session-secret:{}", partner.as_str())
}

/// API keys are stored as a plain SHA-256: they carry 256 random bits, so no slow hash is needed.
pub fn hash_api_key(key: &str) -> String {
    crate::ids::storage_hash(key)
}

/// The partner an API key claims to belong to: `klk.<partner_id>.<secret>`. Unverified.
pub fn api_key_partner(key: &str) -> Option<PartnerId> {
    let mut parts = key.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(API_KEY_PREFIX), Some(p), Some(secret)) if secret.len() == 43 => PartnerId::parse(p),
        _ => None,
    }
}

impl PartnerRecord {
    /// Whether `key` is this partner's current API key.
    pub fn api_key_matches(&self, key: &str) -> bool {
        hash_api_key(key)
            .as_bytes()
            .ct_eq(self.api_key_hash.as_bytes())
            .into()
    }

    pub fn session_secret(&self, keys: &Keyring) -> Result<Secret, OpenError> {
        let bytes = keys.open(&session_secret_aad(&self.partner_id), &self.session_secret)?;
        String::from_utf8(bytes)
            .map(Secret::new)
            .map_err(|_| OpenError::Malformed)
    }

    /// Key rotation: the record with its session secret sealed under the current key. Nothing
    /// else changes.
    pub fn resealed(&self, keys: &Keyring, nonce: [u8; NONCE_LEN]) -> Reseal<Self> {
        keys.reseal(
            &session_secret_aad(&self.partner_id),
            &self.session_secret,
            nonce,
        )
        .map(|session_secret| PartnerRecord {
            session_secret,
            ..self.clone()
        })
    }

    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == origin)
    }

    /// `return_to` must equal one registered URL exactly: no prefixes, no normalization tricks.
    pub fn allows_return_url(&self, url: &str) -> bool {
        self.return_urls.iter().any(|u| u == url)
    }

    pub fn view(&self) -> PartnerView {
        PartnerView {
            partner_id: self.partner_id.as_str().to_owned(),
            name: self.name.clone(),
            allowed_origins: self.allowed_origins.clone(),
            return_urls: self.return_urls.clone(),
            webhook_url: self.webhook_url.clone(),
            reconnect_identity: self.reconnect_identity,
            webhook_repair_links: self.webhook_repair_links,
            export_enabled: self.export_enabled,
            mcp: self.mcp.clone(),
            session_secret: None,
            api_key: None,
        }
    }
}

/// What an upsert may accept beyond the body: deployment settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpsertRules {
    /// `WEBHOOK_ALLOW_HTTP`: plain-http webhook URLs (local development only).
    pub webhook_allow_http: bool,
}

/// Validates an upsert and applies it: creates the partner (with fresh secrets), or updates it,
/// rotating secrets when asked. Returns what to store and what to answer.
pub fn apply_upsert(
    partner: &PartnerId,
    existing: Option<PartnerRecord>,
    req: PartnerUpsert,
    fresh: &FreshSecrets,
    keys: &Keyring,
    rules: UpsertRules,
    now: UnixTime,
) -> Result<(PartnerRecord, PartnerView), ApiError> {
    let name = req.name.trim().to_owned();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(invalid("name must be 1-200 characters."));
    }
    if req.allowed_origins.len() > MAX_LIST_ENTRIES || req.return_urls.len() > MAX_LIST_ENTRIES {
        return Err(invalid("At most 20 allowed_origins and 20 return_urls."));
    }
    let mut origins = Vec::new();
    for o in &req.allowed_origins {
        let n = normalize_origin(o).ok_or_else(|| {
            invalid("Each allowed_origin must be exactly scheme://host[:port], e.g. https://partner.example.")
        })?;
        if !origins.contains(&n) {
            origins.push(n);
        }
    }
    let mut returns = Vec::new();
    for r in &req.return_urls {
        let n = check_return_url(r).ok_or_else(|| {
            invalid(
                "Each return_url must be an absolute http(s) URL without credentials or fragment.",
            )
        })?;
        if !returns.contains(&n) {
            returns.push(n);
        }
    }

    let (mut record, rotate) = match existing {
        Some(r) => (r, req.rotate_secrets),
        None => (
            PartnerRecord {
                partner_id: partner.clone(),
                name: String::new(),
                allowed_origins: vec![],
                return_urls: vec![],
                api_key_hash: String::new(),
                session_secret: String::new(),
                webhook_url: None,
                created_at: now,
                updated_at: now,
                reconnect_identity: ReconnectIdentity::default(),
                webhook_repair_links: false,
                export_enabled: false,
                mcp: McpSettings::default(),
                mcp_since: 0,
            },
            true,
        ),
    };
    record.name = name;
    record.allowed_origins = origins;
    record.return_urls = returns;
    record.webhook_url = match req.webhook_url {
        None => None,
        Some(u) => {
            let url = check_return_url(&u).ok_or_else(|| {
                invalid(
                    "webhook_url must be an absolute https URL without credentials or fragment.",
                )
            })?;
            // A URL no delivery would ever reach is refused now, not dropped silently later.
            if !crate::webhook::target_allowed(&url, rules.webhook_allow_http) {
                return Err(invalid(
                    "webhook_url must be https: this deployment does not deliver webhooks over plain http (WEBHOOK_ALLOW_HTTP is for local development).",
                ));
            }
            Some(url)
        }
    };
    record.reconnect_identity = req.reconnect_identity;
    record.webhook_repair_links = req.webhook_repair_links;
    record.export_enabled = req.export_enabled;
    let was_on = record.mcp.enabled;
    record.mcp = match req.mcp {
        None => McpSettings::default(),
        Some(m) => crate::mcp::oauth::check_settings(m).map_err(invalid)?,
    };
    if record.mcp.enabled && !was_on {
        record.mcp_since = now;
    }
    record.updated_at = now;

    let mut view = record.view();
    if rotate {
        let api_key = format!(
            "{API_KEY_PREFIX}.{}.{}",
            partner.as_str(),
            URL_SAFE_NO_PAD.encode(fresh.api_key)
        );
        let session_secret = URL_SAFE_NO_PAD.encode(fresh.session_secret);
        record.api_key_hash = hash_api_key(&api_key);
        record.session_secret = keys.seal(
            &session_secret_aad(partner),
            session_secret.as_bytes(),
            fresh.nonce,
        );
        view = record.view();
        view.api_key = Some(api_key);
        view.session_secret = Some(session_secret);
    }
    Ok((record, view))
}

/// The upsert a partner's own change amounts to: its current settings with `change` applied
/// (each field left out stays), secrets rotated when asked. The same checks as the admin's.
pub fn upsert_from(
    record: &PartnerRecord,
    change: &PartnerSettings,
    rotate: bool,
) -> PartnerUpsert {
    PartnerUpsert {
        name: record.name.clone(),
        allowed_origins: change
            .allowed_origins
            .clone()
            .unwrap_or_else(|| record.allowed_origins.clone()),
        return_urls: change
            .return_urls
            .clone()
            .unwrap_or_else(|| record.return_urls.clone()),
        rotate_secrets: rotate,
        webhook_url: match &change.webhook_url {
            Some(v) => v.clone(),
            None => record.webhook_url.clone(),
        },
        reconnect_identity: change
            .reconnect_identity
            .unwrap_or(record.reconnect_identity),
        webhook_repair_links: change
            .webhook_repair_links
            .unwrap_or(record.webhook_repair_links),
        // The operator's decision: a partner's own change keeps it.
        export_enabled: record.export_enabled,
        mcp: Some(change.mcp.clone().unwrap_or_else(|| record.mcp.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keyring {
        Keyring::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap()
    }

    fn fresh(n: u8) -> FreshSecrets {
        FreshSecrets {
            api_key: [n; SECRET_BYTES],
            session_secret: [n + 1; SECRET_BYTES],
            nonce: [n; NONCE_LEN],
        }
    }

    fn req(rotate: bool) -> PartnerUpsert {
        PartnerUpsert {
            name: "Acme".into(),
            allowed_origins: vec!["https://acme.example".into()],
            return_urls: vec!["https://acme.example/settings".into()],
            rotate_secrets: rotate,
            webhook_url: None,
            reconnect_identity: Default::default(),
            webhook_repair_links: false,
            export_enabled: false,
            mcp: None,
        }
    }

    #[test]
    fn turning_mcp_on_again_starts_its_grants_afresh() {
        let id = PartnerId::parse("acme").unwrap();
        let on = |on: bool| {
            let mut r = req(false);
            r.mcp = Some(McpSettings {
                enabled: on,
                sign_in_url: Some("https://acme.example/in".into()),
                tools: Default::default(),
            });
            r
        };
        let up = |rec, r, t| {
            apply_upsert(&id, rec, r, &fresh(1), &keys(), UpsertRules::default(), t)
                .unwrap()
                .0
        };
        let a = up(None, on(true), 10);
        assert_eq!(a.mcp_since, 10);
        // Still on: unchanged; off then on: later.
        let b = up(Some(a), on(true), 20);
        assert_eq!(b.mcp_since, 10);
        let c = up(Some(b), on(false), 30);
        let d = up(Some(c.clone()), on(true), 40);
        assert_eq!(d.mcp_since, 40);
        // What a grant may still do: one made while on, but not before it was last turned on,
        // nor while off, nor for a partner that is gone.
        use crate::mcp::oauth::offered;
        assert!(offered(Some(&d), 40) && offered(Some(&d), 41));
        assert!(
            !offered(Some(&d), 39),
            "made before the server was last turned on"
        );
        assert!(!offered(Some(&c), 35), "the server is off");
        assert!(!offered(None, 50), "the partner is deleted");
        // Enabled without a sign-in URL: refused.
        let mut bad = req(false);
        bad.mcp = Some(McpSettings {
            enabled: true,
            sign_in_url: None,
            tools: Default::default(),
        });
        assert!(apply_upsert(
            &id,
            None,
            bad,
            &fresh(1),
            &keys(),
            UpsertRules::default(),
            1
        )
        .is_err());
    }

    #[test]
    fn reseal_moves_the_session_secret_to_the_new_first_key() {
        let id = PartnerId::parse("acme").unwrap();
        let (old, view) = apply_upsert(
            &id,
            None,
            req(false),
            &fresh(1),
            &keys(),
            UpsertRules::default(),
            5,
        )
        .unwrap();
        let new_key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        let both = Keyring::parse(&format!(
            "{new_key},AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        ))
        .unwrap();
        let Reseal::Moved(moved) = old.resealed(&both, [4; NONCE_LEN]) else {
            panic!("not moved");
        };
        let only_new = Keyring::parse(new_key).unwrap();
        assert_eq!(
            moved.session_secret(&only_new).unwrap().expose(),
            view.session_secret.unwrap()
        );
        assert_eq!(moved.api_key_hash, old.api_key_hash);
        assert_eq!(moved.resealed(&both, [4; NONCE_LEN]), Reseal::Current);
        // A record no key opens is reported, not rewritten.
        assert_eq!(old.resealed(&only_new, [4; NONCE_LEN]), Reseal::Unreadable);
    }

    #[test]
    fn create_shows_secrets_once_and_stores_them_protected() {
        let p = PartnerId::parse("acme").unwrap();
        let (rec, view) = apply_upsert(
            &p,
            None,
            req(false),
            &fresh(1),
            &keys(),
            UpsertRules::default(),
            100,
        )
        .unwrap();
        let key = view.api_key.clone().unwrap();
        let secret = view.session_secret.clone().unwrap();
        assert!(rec.api_key_matches(&key));
        assert!(!rec.api_key_matches("klk.acme.nope"));
        assert_eq!(api_key_partner(&key), Some(p.clone()));
        assert_eq!(rec.session_secret(&keys()).unwrap().expose(), secret);
        let stored = serde_json::to_string(&rec).unwrap();
        assert!(!stored.contains(&key) && !stored.contains(&secret));
        // An update without rotation keeps the secrets and does not show them.
        let (rec2, view2) = apply_upsert(
            &p,
            Some(rec.clone()),
            req(false),
            &fresh(9),
            &keys(),
            UpsertRules::default(),
            200,
        )
        .unwrap();
        assert!(view2.api_key.is_none() && view2.session_secret.is_none());
        assert!(rec2.api_key_matches(&key));
        assert_eq!(rec2.created_at, 100);
        // Rotation replaces both.
        let (rec3, view3) = apply_upsert(
            &p,
            Some(rec2),
            req(true),
            &fresh(5),
            &keys(),
            UpsertRules::default(),
            300,
        )
        .unwrap();
        assert!(!rec3.api_key_matches(&key));
        assert!(rec3.api_key_matches(view3.api_key.as_deref().unwrap()));
    }

    #[test]
    fn hosts_must_be_ascii() {
        // url's IDNA runs without a Unicode back end (idna_adapter 1.0.0, pinned in Cargo.toml):
        // an internationalized host is written in punycode; its Unicode form is refused, where
        // a Unicode back end would have converted it.
        let puny = "https://xn--bcher-kva.example";
        assert_eq!(normalize_origin(puny).as_deref(), Some(puny));
        assert_eq!(normalize_origin("https://bücher.example"), None);
        let back = "https://xn--bcher-kva.example/back";
        assert_eq!(check_return_url(back).as_deref(), Some(back));
        assert_eq!(check_return_url("https://bücher.example/back"), None);
    }

    #[test]
    fn rejects_bad_origins_and_urls() {
        let p = PartnerId::parse("acme").unwrap();
        for origin in [
            "https://acme.example/",
            "acme.example",
            "javascript:alert(1)",
            "https://a.example/path",
            "*",
            "null",
        ] {
            let mut r = req(false);
            r.allowed_origins = vec![origin.into()];
            let err = apply_upsert(&p, None, r, &fresh(1), &keys(), UpsertRules::default(), 0)
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidPartner, "{origin}");
        }
        for url in [
            "/relative",
            "https://u:p@acme.example/",
            "https://acme.example/#x",
            "ftp://acme.example/",
        ] {
            let mut r = req(false);
            r.return_urls = vec![url.into()];
            assert!(
                apply_upsert(&p, None, r, &fresh(1), &keys(), UpsertRules::default(), 0).is_err(),
                "{url}"
            );
        }
        let mut r = req(false);
        r.name = " ".into();
        assert!(apply_upsert(&p, None, r, &fresh(1), &keys(), UpsertRules::default(), 0).is_err());
    }

    #[test]
    fn return_urls_match_exactly() {
        let p = PartnerId::parse("acme").unwrap();
        let (rec, _) = apply_upsert(
            &p,
            None,
            req(false),
            &fresh(1),
            &keys(),
            UpsertRules::default(),
            0,
        )
        .unwrap();
        assert!(rec.allows_return_url("https://acme.example/settings"));
        for near in [
            "https://acme.example/settings/",
            "https://acme.example/settings?x=1",
            "https://acme.example/settings.evil.example",
            "https://acme.example.evil.example/settings",
            "HTTPS://acme.example/settings",
        ] {
            assert!(!rec.allows_return_url(near), "{near}");
        }
        assert!(rec.allows_origin("https://acme.example"));
        assert!(!rec.allows_origin("https://evil.example"));
    }

    #[test]
    fn a_webhook_no_delivery_would_reach_is_refused_at_registration() {
        let p = PartnerId::parse("acme").unwrap();
        let mut r = req(false);
        r.webhook_url = Some("http://hooks.acme.example/k".into());
        let e = apply_upsert(
            &p,
            None,
            r.clone(),
            &fresh(1),
            &keys(),
            UpsertRules::default(),
            0,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidPartner);
        assert!(e.message.contains("must be https"), "{}", e.message);
        let dev = UpsertRules {
            webhook_allow_http: true,
        };
        let (rec, _) = apply_upsert(&p, None, r, &fresh(1), &keys(), dev, 0).unwrap();
        assert_eq!(
            rec.webhook_url.as_deref(),
            Some("http://hooks.acme.example/k")
        );
    }

    #[test]
    fn records_from_before_the_identity_settings_write_back_unchanged() {
        let p = PartnerId::parse("acme").unwrap();
        let (rec, _) = apply_upsert(
            &p,
            None,
            req(false),
            &fresh(1),
            &keys(),
            UpsertRules::default(),
            7,
        )
        .unwrap();
        let json = serde_json::to_string(&rec).unwrap();
        assert!(!json.contains("reconnect_identity") && !json.contains("webhook_repair_links"));
        assert_eq!(
            serde_json::to_string(&serde_json::from_str::<PartnerRecord>(&json).unwrap()).unwrap(),
            json
        );
        let mut r = req(false);
        r.reconnect_identity = ReconnectIdentity::App;
        r.webhook_repair_links = true;
        let (rec, view) = apply_upsert(
            &p,
            Some(rec),
            r,
            &fresh(1),
            &keys(),
            UpsertRules::default(),
            8,
        )
        .unwrap();
        assert_eq!(rec.reconnect_identity, ReconnectIdentity::App);
        assert!(view.webhook_repair_links);
    }

    #[test]
    fn a_partner_changes_only_what_it_names() {
        let p = PartnerId::parse("acme").unwrap();
        let mut r = req(false);
        r.webhook_url = Some("https://acme.example/hooks".into());
        let (rec, _) =
            apply_upsert(&p, None, r, &fresh(1), &keys(), UpsertRules::default(), 0).unwrap();
        let keep = upsert_from(&rec, &PartnerSettings::default(), false);
        assert_eq!(keep.allowed_origins, rec.allowed_origins);
        assert_eq!(keep.webhook_url, rec.webhook_url);
        let change = PartnerSettings {
            webhook_url: Some(None),
            reconnect_identity: Some(ReconnectIdentity::App),
            ..PartnerSettings::default()
        };
        let changed = upsert_from(&rec, &change, true);
        assert_eq!(changed.webhook_url, None, "null clears it");
        assert_eq!(changed.reconnect_identity, ReconnectIdentity::App);
        assert_eq!(changed.return_urls, rec.return_urls);
        assert!(changed.rotate_secrets);
        let body: PartnerSettings = serde_json::from_str(r#"{"webhook_url": null}"#).unwrap();
        assert_eq!(body.webhook_url, Some(None));
        let body: PartnerSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(body.webhook_url, None);
    }

    #[test]
    fn api_key_shape() {
        assert!(api_key_partner("klk.acme.short").is_none());
        assert!(api_key_partner("nope").is_none());
        assert!(api_key_partner(&format!("klk.ACME.{}", "a".repeat(43))).is_none());
    }
}
