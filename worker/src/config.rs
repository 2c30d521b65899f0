//! The Worker's configuration, read from `[vars]` and secrets (see api-contract.md).

use keaplink_core::keap::{ClientCredentials, KeapEndpoints};
use keaplink_core::refresh::RefreshPolicy;
use keaplink_core::seal::Keyring;
use keaplink_core::{ApiError, ErrorCode, Secret};
use worker::{Env, Url};

pub struct Config {
    pub public_url: Url,
    pub keap: KeapEndpoints,
    pub client: ClientCredentials,
    pub keys: Keyring,
    pub admin_token: Secret,
    pub refresh_margin_secs: i64,
    pub keepalive_secs: i64,
    pub backoff_secs: i64,
    pub sweep_budget: u64,
    pub proactive_refresh: bool,
    pub keap_timeout_ms: u32,
    /// First webhook retry wait; later ones double (see `keaplink_core::webhook`).
    pub webhook_backoff_secs: u32,
    /// Deliver webhooks over plain http too (local development and tests only).
    pub webhook_allow_http: bool,
    pub account_central_url: String,
}

/// `LOG_REQUESTS` is not "errors": one log line for every request. Read once per isolate and
/// apart from the rest, so a misconfigured Worker still logs every request.
pub fn log_all_requests(env: &Env) -> bool {
    thread_local! {
        static ALL: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
    }
    ALL.with(|c| match c.get() {
        Some(all) => all,
        None => {
            let all = text(env, "LOG_REQUESTS").as_deref() != Some("errors");
            c.set(Some(all));
            all
        }
    })
}

thread_local! {
    /// An isolate's environment never changes (a new deploy or secret starts new isolates), so
    /// it is read once per isolate, not once per request.
    static CACHED: std::cell::RefCell<Option<std::rc::Rc<Config>>> = const { std::cell::RefCell::new(None) };
}

fn misconfigured(what: &str) -> ApiError {
    // The message names the setting, never its value.
    ApiError::new(
        ErrorCode::Misconfigured,
        format!("The service is misconfigured ({what}); tell its operator."),
    )
}

fn text(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string())
}

fn required(env: &Env, name: &str) -> Result<String, ApiError> {
    text(env, name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| misconfigured(name))
}

fn url(env: &Env, name: &str) -> Result<Url, ApiError> {
    Url::parse(&required(env, name)?).map_err(|_| misconfigured(name))
}

fn number<T: std::str::FromStr>(env: &Env, name: &str, default: T) -> Result<T, ApiError> {
    match text(env, name).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| misconfigured(name)),
    }
}

impl Config {
    /// The configuration, read from `env` on first use in this isolate.
    pub fn cached(env: &Env) -> Result<std::rc::Rc<Config>, ApiError> {
        if let Some(c) = CACHED.with(|c| c.borrow().clone()) {
            return Ok(c);
        }
        let fresh = std::rc::Rc::new(Config::from_env(env)?);
        CACHED.with(|c| *c.borrow_mut() = Some(fresh.clone()));
        Ok(fresh)
    }

    pub fn from_env(env: &Env) -> Result<Config, ApiError> {
        let logout = text(env, "KEAP_LOGOUT_URL").unwrap_or_default();
        Ok(Config {
            public_url: url(env, "PUBLIC_URL")?,
            keap: KeapEndpoints {
                authorize_url: url(env, "KEAP_AUTHORIZE_URL")?,
                token_url: url(env, "KEAP_TOKEN_URL")?,
                userinfo_url: url(env, "KEAP_USERINFO_URL")?,
                logout_url: if logout.is_empty() {
                    None
                } else {
                    Some(Url::parse(&logout).map_err(|_| misconfigured("KEAP_LOGOUT_URL"))?)
                },
            },
            client: ClientCredentials {
                client_id: required(env, "KEAP_CLIENT_ID")?,
                client_secret: Secret::new(required(env, "KEAP_CLIENT_SECRET")?),
            },
            keys: Keyring::parse(&required(env, "TOKEN_KEYS")?)
                .map_err(|_| misconfigured("TOKEN_KEYS"))?,
            admin_token: Secret::new(required(env, "ADMIN_TOKEN")?),
            refresh_margin_secs: number(env, "REFRESH_MARGIN_SECS", 21_600)?,
            keepalive_secs: number(env, "REFRESH_KEEPALIVE_SECS", 7 * 86_400)?,
            backoff_secs: number(env, "REFRESH_BACKOFF_SECS", 60)?,
            // The free plan allows 50 subrequests per invocation; keep a few in hand.
            sweep_budget: number(env, "SWEEP_SUBREQUEST_BUDGET", 45)?,
            proactive_refresh: number(env, "REFRESH_PROACTIVE", true)?,
            keap_timeout_ms: number(env, "KEAP_TIMEOUT_MS", 10_000)?,
            webhook_backoff_secs: number(env, "WEBHOOK_BACKOFF_SECS", 5)?,
            webhook_allow_http: number(env, "WEBHOOK_ALLOW_HTTP", false)?,
            account_central_url: text(env, "KEAP_ACCOUNT_CENTRAL_URL")
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "https://accounts.infusionsoft.com/app/central/home".into()),
        })
    }

    pub fn refresh_policy(&self) -> RefreshPolicy {
        RefreshPolicy {
            margin_secs: self.refresh_margin_secs,
            keepalive_secs: self.keepalive_secs,
            base_backoff_secs: self.backoff_secs,
            max_backoff_secs: (self.backoff_secs * 60).max(self.backoff_secs),
            proactive: self.proactive_refresh,
        }
    }

    /// `PUBLIC_URL/oauth/callback`: the redirect URI registered with Keap.
    pub fn redirect_uri(&self) -> String {
        let mut u = self.public_url.clone();
        u.set_path("/oauth/callback");
        u.set_query(None);
        u.to_string()
    }
}
