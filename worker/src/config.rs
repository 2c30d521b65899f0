//! The Worker's configuration, read once per isolate from `[vars]` and secrets (the README's
//! Configuration section lists them), and `setup`: what every route and object starts from.

use crate::store::Store;
use keaplink_core::deploy;
use keaplink_core::keap::{ClientCredentials, KeapEndpoints};
use keaplink_core::keep::KeepPolicy;
use keaplink_core::partner::UpsertRules;
use keaplink_core::refresh::RefreshPolicy;
use keaplink_core::seal::Keyring;
use keaplink_core::{ApiError, ApiResult, ErrorCode, Secret};
use std::rc::Rc;
use worker::{Env, Request, Url};

pub struct Config {
    pub public_url: Url,
    pub keap: KeapEndpoints,
    pub client: ClientCredentials,
    pub keys: Keyring,
    pub admin_token: Secret,
    /// The whole refresh rule's knobs (margin, keep-alive, backoff, proactive, lifetime).
    pub refresh: RefreshPolicy,
    pub sweep_budget: u64,
    /// The refresh queue's pace (`KEAP_REFRESH_RATE_PER_MIN`), for the pacer.
    pub refresh_rate_per_min: f64,
    pub keap_timeout_ms: u32,
    /// First webhook retry wait; later ones double (see `keaplink_core::webhook`).
    pub webhook_backoff_secs: u32,
    /// Deliver webhooks over plain http too (local development and tests only).
    pub webhook_allow_http: bool,
    pub account_central_url: String,
    /// Keap's REST API (`KEAP_API_URL`): where `/v1/keap/<path>` is relayed, and where the
    /// business profile is read at link time.
    pub keap_api_url: Url,
    /// The path prefixes `/v1/keap/` may reach (`KEAP_PROXY_PATHS`, comma-separated).
    pub proxy_paths: Vec<String>,
    /// Calls of Keap's daily quota kept for refreshes (`KEAP_QUOTA_RESERVE`): below it, proxied
    /// calls are held while refreshes go on.
    pub quota_reserve: u64,
    /// How long an import item waits after Keap throttled or failed (`KEAP_IMPORT_RETRY_SECS`).
    pub import_retry_secs: u32,
    /// How often the sweep checks a link's Keap hooks at Keap (`KEAP_HOOKS_CHECK_SECS`; 0: at
    /// every sweep).
    pub hooks_check_secs: u32,
}

/// The configuration (once per isolate) and the store: what every route and object starts from.
pub fn setup(env: &Env) -> ApiResult<(Rc<Config>, Store)> {
    Ok((Config::cached(env)?, Store::open(env)?))
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

/// Refuses a request that reached this Worker at a host other than loopback while `PUBLIC_URL`
/// is loopback: a deploy that kept `wrangler.toml`'s local default would otherwise run with
/// redirect URIs and repair links pointing at the user's own machine (`keaplink_core::deploy`).
/// Whether `PUBLIC_URL` is loopback is read once per isolate; a public one costs nothing more.
pub fn may_serve(env: &Env, req: &Request) -> ApiResult<()> {
    thread_local! {
        static LOOPBACK: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
    }
    let loopback = LOOPBACK.with(|c| match c.get() {
        Some(l) => l,
        None => {
            let l = text(env, "PUBLIC_URL")
                .as_deref()
                .and_then(deploy::url_host)
                .is_some_and(deploy::is_loopback_host);
            c.set(Some(l));
            l
        }
    });
    if !loopback {
        return Ok(());
    }
    deploy::may_serve(true, &req.inner().url()).map_err(|r| misconfigured(r.message()))
}

thread_local! {
    /// An isolate's environment never changes (a new deploy or secret starts new isolates), so
    /// it is read once per isolate, not once per request.
    static CACHED: std::cell::RefCell<Option<Rc<Config>>> = const { std::cell::RefCell::new(None) };
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

/// Link keeping's knobs (`REFRESH_IN_USE_SECS`, `REFRESH_LEAD_SECS`, `REFRESH_IDLE_MARGIN_SECS`,
/// `REFRESH_IDLE_SPREAD_SECS`); none may be negative, and the window not zero.
fn keep_policy(env: &Env) -> Result<KeepPolicy, ApiError> {
    let d = KeepPolicy::default();
    let secs = |name: &str, default: i64, min: i64| -> Result<i64, ApiError> {
        let v: i64 = number(env, name, default)?;
        if v < min {
            return Err(misconfigured(name));
        }
        Ok(v)
    };
    Ok(KeepPolicy {
        in_use_secs: secs("REFRESH_IN_USE_SECS", d.in_use_secs, 1)?,
        lead_secs: secs("REFRESH_LEAD_SECS", d.lead_secs, 0)?,
        idle_margin_secs: secs("REFRESH_IDLE_MARGIN_SECS", d.idle_margin_secs, 0)?,
        idle_spread_secs: secs("REFRESH_IDLE_SPREAD_SECS", d.idle_spread_secs, 0)?,
    })
}

impl Config {
    /// The configuration, read from `env` on first use in this isolate.
    pub fn cached(env: &Env) -> Result<Rc<Config>, ApiError> {
        if let Some(c) = CACHED.with(|c| c.borrow().clone()) {
            return Ok(c);
        }
        let fresh = Rc::new(Config::from_env(env)?);
        CACHED.with(|c| *c.borrow_mut() = Some(fresh.clone()));
        Ok(fresh)
    }

    pub fn from_env(env: &Env) -> Result<Config, ApiError> {
        let logout = text(env, "KEAP_LOGOUT_URL").unwrap_or_default();
        let backoff_secs: i64 = number(env, "REFRESH_BACKOFF_SECS", 60)?;
        let sweep_budget = number(env, "SWEEP_SUBREQUEST_BUDGET", 45)?;
        // Below this a page of 1,000 due links could not even be queued in one invocation.
        if sweep_budget < keaplink_core::sweep::MIN_BUDGET {
            return Err(misconfigured("SWEEP_SUBREQUEST_BUDGET must be at least 12"));
        }
        // A whole number: parsing floats would link core's float tables (~12 KB) for one setting.
        let refresh_rate_per_min: u32 = number(env, "KEAP_REFRESH_RATE_PER_MIN", 1200)?;
        if refresh_rate_per_min == 0 {
            return Err(misconfigured("KEAP_REFRESH_RATE_PER_MIN"));
        }
        let refresh_rate_per_min = f64::from(refresh_rate_per_min);
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
            refresh: RefreshPolicy {
                margin_secs: number(env, "REFRESH_MARGIN_SECS", 3_600)?,
                keepalive_secs: number(env, "REFRESH_KEEPALIVE_SECS", 0)?,
                base_backoff_secs: backoff_secs,
                max_backoff_secs: (backoff_secs * 60).max(backoff_secs),
                proactive: number(env, "REFRESH_PROACTIVE", true)?,
                refresh_lifetime_secs: number(
                    env,
                    "KEAP_REFRESH_TOKEN_LIFETIME_SECS",
                    keaplink_core::connection::DEFAULT_REFRESH_LIFETIME_SECS,
                )?,
                keep: keep_policy(env)?,
            },
            // The free plan allows 50 subrequests per invocation; keep a few in hand.
            sweep_budget,
            refresh_rate_per_min,
            keap_timeout_ms: number(env, "KEAP_TIMEOUT_MS", 10_000)?,
            webhook_backoff_secs: number(env, "WEBHOOK_BACKOFF_SECS", 5)?,
            webhook_allow_http: number(env, "WEBHOOK_ALLOW_HTTP", false)?,
            keap_api_url: match text(env, "KEAP_API_URL").filter(|v| !v.is_empty()) {
                None => Url::parse("https://api.infusionsoft.com").map_err(ApiError::internal)?,
                Some(v) => Url::parse(&v).map_err(|_| misconfigured("KEAP_API_URL"))?,
            },
            proxy_paths: {
                let raw = text(env, "KEAP_PROXY_PATHS").unwrap_or_else(|| "/crm/rest/".into());
                let paths: Vec<String> = raw
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect();
                if paths
                    .iter()
                    .any(|p| !p.starts_with('/') || !p.ends_with('/'))
                {
                    return Err(misconfigured(
                        "KEAP_PROXY_PATHS: each prefix starts and ends with /",
                    ));
                }
                paths
            },
            quota_reserve: number(env, "KEAP_QUOTA_RESERVE", 10_000)?,
            import_retry_secs: number(env, "KEAP_IMPORT_RETRY_SECS", 30)?,
            hooks_check_secs: number(env, "KEAP_HOOKS_CHECK_SECS", 3600)?,
            account_central_url: text(env, "KEAP_ACCOUNT_CENTRAL_URL")
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "https://accounts.infusionsoft.com/app/central/home".into()),
        })
    }

    /// What a partner upsert may accept beyond its body.
    pub fn upsert_rules(&self) -> UpsertRules {
        UpsertRules {
            webhook_allow_http: self.webhook_allow_http,
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
