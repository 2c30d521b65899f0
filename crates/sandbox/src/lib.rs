//! A stand-in Keap on loopback, for local runs and tests. It behaves like Keap wherever keaplink
//! could get Keap wrong and a friendlier fake would hide it:
//!
//! - **Sign-in** (`pages`): Keap keeps whoever signed in last in a single-sign-on cookie and
//!   goes straight to consent for them, so a second link from the same browser would silently
//!   link the same account again; `/logout?service=` ends that session and sends the browser on.
//!   A user who can reach several Keap apps picks one on the consent page; the code, the token's
//!   `scope` (`full|<app>.infusionsoft.com`) and every API answer then belong to that app.
//! - **Tokens** (`token`): the token endpoint reads form bodies only (JSON is refused as a
//!   missing `grant_type`), takes client credentials in the body for a code and by HTTP Basic
//!   for a refresh, and rotates refresh tokens: the presented one dies the moment the refresh is
//!   carried out, even when the answer never arrives. Errors come in Keap's shapes (a dead
//!   refresh token is `400 invalid_request` "Invalid Refresh Token", not `invalid_grant`).
//! - **The REST API** (`gateway`, `rest`): v1 and v2 contacts, userinfo and the business
//!   profile, scoped to the token's app. Keap's API gateway checks the bearer token first (a dead
//!   one gets its `keymanagement.service.invalid_access_token` fault), then counts the call
//!   against the client's day quota and per-minute throttle and the tenant's per-minute throttle
//!   (`quota`), reports them in `x-keap-*` headers on every answer, and refuses with `429` and
//!   its quota fault once one is spent. Token calls spend the same client quota.
//!
//! Tests steer it through `/__sandbox/*` (`controls`): faults for the next token or API calls,
//! random faults on a share of all calls (chaos: 429s, 500s, hangs and lost answers), counts and
//! a log of API requests, token lifetimes, quota limits and windows, revocation, and the count
//! of rotated refresh tokens presented again.

use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod central;
mod contacts;
mod controls;
mod gateway;
mod hooks;
mod landing;
mod pages;
mod persist;
mod quota;
mod rest;
mod seed;
mod token;

pub use controls::{Control, CONTROLS};
pub use gateway::ApiFaultKind;
pub use seed::{SeedApp, SeedUser, APPS, PASSWORD, USERS};
pub use token::FaultKind;

#[derive(Debug, Clone)]
pub struct Config {
    pub client_id: String,
    pub client_secret: String,
    /// Exact redirect URIs the OAuth client registered. Empty: any http(s) URI.
    pub redirect_uris: Vec<String>,
    pub expires_in: u64,
    /// Where its sessions and live tokens are kept across restarts (`persist`); `None`: memory only.
    pub state_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    kind: FaultKind,
    hang: Duration,
}

#[derive(Debug)]
struct CodeGrant {
    user: usize,
    app: &'static str,
    client_id: String,
    redirect_uri: String,
    expires_at: u64,
}

#[derive(Debug)]
struct AccessGrant {
    user: usize,
    app: &'static str,
    expires_at: u64,
    alive: bool,
}

#[derive(Debug)]
struct RefreshGrant {
    user: usize,
    app: &'static str,
    alive: bool,
    /// A refresh rotated it (it died as a new one was issued; a revoked one was not rotated).
    rotated: bool,
    /// ...and the answer carrying its successor was lost (a `drop` fault): its holder never
    /// learnt the new one, so presenting it again is expected, not a bug.
    answer_lost: bool,
}

/// Random faults on a share of all calls (`/__sandbox/chaos`): Keap having a bad day.
#[derive(Debug)]
struct Chaos {
    /// Share of calls that fail, 0 to 1.
    rate: f64,
    hang: Duration,
    /// splitmix64 state: seeded, so a run can be repeated.
    state: u64,
}

impl Chaos {
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Whether this call fails, and how: one of `kinds`, evenly.
    fn roll<T: Copy>(&mut self, kinds: &[T]) -> Option<T> {
        let hit = ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < self.rate;
        if !hit || kinds.is_empty() {
            return None;
        }
        Some(kinds[(self.next() % kinds.len() as u64) as usize])
    }
}

/// What Keap's refresh rotation saw: the bad-day test's proof that no rotated refresh token was
/// ever used again.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct RotationCounts {
    /// Refreshes carried out whose answer was then lost (`drop`).
    dropped: u64,
    /// A rotated refresh token presented again although its successor was delivered: two
    /// refreshes of one link raced, or a stale copy was used. Must stay 0.
    reused: u64,
    /// A rotated refresh token presented again after its successor's answer was lost.
    reused_after_lost_answer: u64,
    /// A revoked or never-issued refresh token presented.
    refused_other: u64,
}

#[derive(Debug)]
struct Inner {
    sessions: HashMap<String, usize>,
    codes: HashMap<String, CodeGrant>,
    access: HashMap<String, AccessGrant>,
    refresh: HashMap<String, RefreshGrant>,
    faults: VecDeque<Fault>,
    calls: HashMap<&'static str, u64>,
    /// Refresh calls by a short hash of the refresh token presented.
    refresh_calls: HashMap<String, u64>,
    /// When each refresh call arrived (unix ms), the latest 100,000: to measure pacing.
    refresh_times_ms: VecDeque<u64>,
    expires_in: Option<u64>,
    /// A refresh kills the earlier access tokens of that user and app.
    revoke_access_on_refresh: bool,
    quota: quota::Quota,
    contacts: contacts::Contacts,
    api_faults: VecDeque<gateway::ApiFault>,
    /// Holds the next REST calls until they have all arrived (see `gateway::Gate`).
    api_gate: Option<gateway::Gate>,
    /// REST calls by `"METHOD /route-pattern"`.
    api_calls: BTreeMap<String, u64>,
    api_log: VecDeque<gateway::ApiLogEntry>,
    chaos: Option<Chaos>,
    /// Faults chaos played, by `"token:<kind>"` / `"api:<kind>"`.
    chaos_played: BTreeMap<String, u64>,
    rotation: RotationCounts,
    /// A chaos 429 said the client's throttle window is spent until then (unix ms), from when.
    spent_until_ms: u64,
    spent_since_ms: u64,
    /// REST calls that arrived over a second after such a 429 was sent and before its window
    /// ended: calls a client that heeds Keap's headers would not have sent.
    calls_while_spent: u64,
    /// REST hooks and their deliveries (`hooks`).
    hooks: hooks::Hooks,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            sessions: HashMap::new(),
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            faults: VecDeque::new(),
            calls: HashMap::new(),
            refresh_calls: HashMap::new(),
            refresh_times_ms: VecDeque::new(),
            expires_in: None,
            revoke_access_on_refresh: false,
            quota: quota::Quota::default(),
            contacts: contacts::Contacts::seeded(),
            api_faults: VecDeque::new(),
            api_gate: None,
            api_calls: BTreeMap::new(),
            api_log: VecDeque::new(),
            chaos: None,
            chaos_played: BTreeMap::new(),
            rotation: RotationCounts::default(),
            spent_until_ms: 0,
            spent_since_ms: 0,
            calls_while_spent: 0,
            hooks: hooks::Hooks::default(),
        }
    }
}

pub struct Sandbox {
    config: Config,
    inner: Mutex<Inner>,
}

type Shared = Arc<Sandbox>;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS has randomness");
    URL_SAFE_NO_PAD.encode(buf)
}

fn short_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(token.as_bytes())[..6])
}

impl Sandbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, what: &'static str) {
        *self.lock().calls.entry(what).or_default() += 1;
    }

    /// Live refresh tokens of one Keap user for one app: whether the app is "connected" in
    /// Account Central.
    fn live_tokens(&self, user: usize, app: &str) -> usize {
        self.lock()
            .refresh
            .values()
            .filter(|r| r.alive && r.user == user && r.app == app)
            .count()
    }

    /// Kills every token of one Keap user for one app (`None`: all their apps), as removing the
    /// app in Account Central does. Answers how many live tokens died.
    fn revoke_app(&self, user: usize, app: Option<&str>) -> usize {
        let mut g = self.lock();
        let mut n = 0;
        let hit = |u: usize, a: &str| u == user && app.is_none_or(|x| x == a);
        for r in g
            .refresh
            .values_mut()
            .filter(|r| r.alive && hit(r.user, r.app))
        {
            r.alive = false;
            n += 1;
        }
        for a in g
            .access
            .values_mut()
            .filter(|a| a.alive && hit(a.user, a.app))
        {
            a.alive = false;
            n += 1;
        }
        n
    }
}

/// The sandbox's routes (see [`try_router`]); panics on a state file it cannot read.
pub fn router(config: Config) -> Router {
    try_router(config).unwrap_or_else(|e| panic!("keaplink-sandbox: {e}"))
}

/// The sandbox's routes. With `config.state_file`, its saved state is read first (a file it cannot
/// read is an error: nothing is half-loaded) and kept from then on; call it inside a Tokio runtime.
pub fn try_router(config: Config) -> Result<Router, String> {
    let mut inner = Inner::default();
    if let Some(path) = &config.state_file {
        persist::load(path, &mut inner)?;
    }
    let file = config.state_file.clone();
    let state: Shared = Arc::new(Sandbox {
        config,
        inner: Mutex::new(inner),
    });
    if let Some(path) = file {
        tokio::spawn(persist::keep(
            state.clone(),
            path,
            Duration::from_millis(250),
        ));
    }
    // The gateway wraps the REST routes only (route_layer: it runs once a route matched, so it
    // knows the route pattern it counts calls under).
    let rest = rest::routes()
        .merge(hooks::routes())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            gateway::gateway,
        ));
    Ok(Router::new()
        .route("/", get(landing::landing))
        .route(central::HOME, get(central::home))
        .route("/app/central/login", post(central::login))
        .route("/app/central/remove", post(central::remove))
        .route("/app/oauth/authorize", get(pages::authorize))
        .route("/app/oauth/login", post(pages::login))
        .route("/app/oauth/consent", post(pages::consent))
        .route("/logout", get(pages::logout))
        .route("/token", post(token::token))
        .merge(rest)
        .route("/__sandbox/faults", post(controls::add_faults))
        .route("/__sandbox/api-faults", post(controls::add_api_faults))
        .route("/__sandbox/api-gate", post(controls::set_api_gate))
        .route("/__sandbox/stats", get(controls::stats))
        .route("/__sandbox/issued", get(controls::issued))
        .route("/__sandbox/config", post(controls::set_config))
        .route("/__sandbox/quota", post(controls::set_quota))
        .route("/__sandbox/revoke", post(controls::revoke))
        .route("/__sandbox/revoke-access", post(controls::revoke_access))
        .route("/__sandbox/api-log", get(controls::api_log))
        .route("/__sandbox/reset", post(controls::reset))
        .route("/__sandbox/seed", post(controls::seed))
        .route("/__sandbox/mint", post(controls::mint))
        .route("/__sandbox/chaos", post(controls::set_chaos))
        .route("/__sandbox/hooks", get(hooks::all))
        .route("/__sandbox/hooks/fire", post(hooks::fire))
        .route("/__sandbox/hooks/config", post(hooks::config))
        .route("/__sandbox/hooks/{key}/{action}", post(hooks::act))
        // A path Keap does not have answers as Keap's gateway does: a JSON 404.
        .fallback(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({"message": "Resource not found"})),
            )
        })
        .with_state(state))
}
