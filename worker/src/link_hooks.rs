//! A link's Keap hooks, kept by its guard (the link's single writer): setting them at Keap,
//! checking them (Inactive → verified again, gone → created again), tearing them down with the
//! link, and accepting a batch Keap posted once. `keaplink_core::hooks` decides; this asks Keap
//! and applies. The guard's turn is held throughout, so two changes to one link's hooks never
//! interleave; Keap's handshake arrives meanwhile at the hook inbox, which needs no turn.

use crate::clock::{now_ms, unix_now};
use crate::config::Config;
use crate::durable;
use crate::guard::{ConnectionGuard, Verdict};
use crate::keap_client::send;
use crate::log::{self, Field, Level};
use crate::quota;
use crate::random;
use crate::store::Store;
use keaplink_api::{ConnectionEventKind, ConnectionStatus, ErrorDetail, HookStatus};
use keaplink_core::connection::{ConnectionKey, ConnectionRecord};
use keaplink_core::hooks::{self, Change, InboxEntry, LinkHooks, Repair, Wanted};
use keaplink_core::refresh::{fingerprint, Purpose};
use keaplink_core::{ApiError, ApiResult, ErrorCode, Secret};

const HOOKS: &str = "hooks";

/// The link's access token for Keap calls, healed once if Keap refuses it.
struct Access {
    token: Secret,
    healed: bool,
    app: String,
}

/// What a Keap call answered: its status (`None`: no answer in time) and body.
struct Answer {
    status: Option<u16>,
    body: Vec<u8>,
}

impl Answer {
    fn ok(&self) -> bool {
        matches!(self.status, Some(200..=299))
    }
}

fn storage(e: worker::Error) -> ApiError {
    ApiError::internal(format!("connection guard storage (hooks): {e}"))
}

#[cfg(feature = "objects")]
impl ConnectionGuard {
    async fn hooks_state(&self) -> ApiResult<LinkHooks> {
        Ok(durable::storage(&self.state)
            .get::<LinkHooks>(HOOKS)
            .await
            .map_err(storage)?
            .unwrap_or_default())
    }

    async fn put_hooks_state(&self, h: &LinkHooks) -> ApiResult<()> {
        durable::storage(&self.state)
            .put(HOOKS, h)
            .await
            .map_err(storage)
    }

    /// The link's hook URL token (made once and kept sealed here), and its index stored before
    /// any subscription is asked for: Keap's handshake arrives while the create call is open.
    async fn url_token(
        &self,
        cfg: &Config,
        store: &Store,
        key: &ConnectionKey,
        h: &mut LinkHooks,
    ) -> ApiResult<Secret> {
        let aad = format!("{}#hooks", key.as_str());
        let token = match &h.url_token {
            Some(sealed) => {
                let plain = cfg.keys.open(&aad, sealed).map_err(|e| {
                    ApiError::internal(format!("the hook URL token does not open ({e:?})"))
                })?;
                Secret::new(String::from_utf8(plain).map_err(ApiError::internal)?)
            }
            None => {
                let t = hooks::new_url_token(random::bytes());
                h.url_token = Some(cfg.keys.seal(&aad, t.as_bytes(), random::bytes()));
                self.put_hooks_state(h).await?;
                Secret::new(t)
            }
        };
        store
            .put_hook_index(
                &hooks::index_key(token.expose()),
                &InboxEntry { key: key.clone() },
            )
            .await?;
        Ok(token)
    }

    /// A usable access token, refreshed first when due (as `POST /v1/token` would be).
    async fn access(
        &self,
        cfg: &Config,
        store: &Store,
        key: &ConnectionKey,
    ) -> ApiResult<(ConnectionRecord, Access)> {
        let record = self
            .refresh(cfg, store, key, &Purpose::Token)
            .await?
            .ok_or_else(crate::links::no_connection)?
            .record;
        match record.status {
            ConnectionStatus::Active => {}
            ConnectionStatus::NeedsReauth => {
                return Err(ApiError::new(
                    ErrorCode::NeedsReauth,
                    "The link needs its user to reconnect before keaplink can call Keap for it.",
                ))
            }
            ConnectionStatus::Exported => {
                return Err(ApiError::new(
                    ErrorCode::Exported,
                    "The link was exported: keaplink no longer uses its tokens.",
                ))
            }
        }
        let token = record
            .open_tokens(&cfg.keys, key)
            .map_err(|e| ApiError::internal(format!("the link's tokens do not open ({e:?})")))?
            .access_token;
        let app = record.keap_app.as_str().to_owned();
        Ok((
            record,
            Access {
                token,
                healed: false,
                app,
            },
        ))
    }

    /// One call to Keap's REST API, held while Keap's quota is spent (answered as a 429 without
    /// calling), healed once after a 401.
    async fn keap(
        &self,
        cfg: &Config,
        store: &Store,
        key: &ConnectionKey,
        a: &mut Access,
        method: &'static str,
        path: &str,
        body: Option<String>,
        hook_secret: Option<&Secret>,
    ) -> Answer {
        loop {
            if quota::hold(Some(&a.app), cfg.quota_reserve, now_ms()).is_some() {
                return Answer {
                    status: Some(429),
                    body: Vec::new(),
                };
            }
            let req = hooks::keap_request(
                &cfg.keap_api_url,
                method,
                path,
                &a.token,
                body.clone(),
                hook_secret,
            );
            let answer = match send(&req, cfg.keap_timeout_ms).await {
                Ok(r) => Answer {
                    status: Some(r.status),
                    body: r.body,
                },
                Err(_) => Answer {
                    status: None,
                    body: Vec::new(),
                },
            };
            if answer.status != Some(401) || a.healed {
                return answer;
            }
            a.healed = true;
            let failed = fingerprint(&a.token);
            let healed = self
                .refresh(cfg, store, key, &Purpose::Heal { failed })
                .await;
            let Ok(Some(r)) = healed else { return answer };
            match r.record.open_tokens(&cfg.keys, key) {
                Ok(t) if r.record.status == ConnectionStatus::Active => a.token = t.access_token,
                _ => return answer,
            }
        }
    }

    /// Creates `event_key`'s hook at Keap; answers its key and status (or why not).
    async fn create_hook(
        &self,
        cfg: &Config,
        store: &Store,
        key: &ConnectionKey,
        a: &mut Access,
        event_key: &str,
        token: &Secret,
    ) -> (Option<String>, HookStatus, Option<ErrorDetail>) {
        let url = hooks::hook_url(cfg.public_url.as_str(), token.expose());
        let body = hooks::create_body(event_key, &url);
        let answer = self
            .keap(
                cfg,
                store,
                key,
                a,
                "POST",
                &hooks::hooks_path(None, None),
                Some(body),
                None,
            )
            .await;
        if !answer.ok() {
            return (
                None,
                HookStatus::Failed,
                Some(hooks::keap_refusal(answer.status)),
            );
        }
        match hooks::parse_hook(&answer.body) {
            Some(h) => {
                let status = self
                    .settle(cfg, store, key, a, &h.key, h.status, token)
                    .await;
                (Some(h.key), status, None)
            }
            None => (
                None,
                HookStatus::Failed,
                Some(hooks::keap_refusal(Some(502))),
            ),
        }
    }

    /// A hook Keap left Unverified (the echo did not land in time): `delayedVerify` with the
    /// secret the inbox kept, if it did.
    async fn settle(
        &self,
        cfg: &Config,
        store: &Store,
        key: &ConnectionKey,
        a: &mut Access,
        keap_key: &str,
        status: HookStatus,
        token: &Secret,
    ) -> HookStatus {
        if status != HookStatus::Pending {
            return status;
        }
        let Ok(Some(secret)) = store.hook_secret(&hooks::secret_key(token.expose())).await else {
            return status;
        };
        let path = hooks::hooks_path(Some(keap_key), Some("delayedVerify"));
        let answer = self
            .keap(cfg, store, key, a, "POST", &path, None, Some(&secret))
            .await;
        match (answer.ok(), hooks::parse_hook(&answer.body)) {
            (true, Some(h)) => h.status,
            _ => status,
        }
    }

    /// `PUT /v1/connections/{id}/hooks`: makes the link's hooks at Keap what `wanted` lists.
    pub(crate) async fn set_hooks(
        &self,
        cfg: &Config,
        store: &Store,
        key: &ConnectionKey,
        wanted: Wanted,
    ) -> ApiResult<Option<String>> {
        if self.record(store, key).await?.is_none() {
            return Ok(None);
        }
        let mut h = self.hooks_state().await?;
        let plan = hooks::set_plan(&h, &wanted);
        let now = unix_now();
        if !plan.is_empty() {
            let (_, mut a) = self.access(cfg, store, key).await?;
            let token = self.url_token(cfg, store, key, &mut h).await?;
            for change in plan {
                match change {
                    Change::Forget { event_key } => h.remove(&event_key),
                    Change::Delete {
                        event_key,
                        keap_key,
                    } => {
                        let path = hooks::hooks_path(Some(&keap_key), None);
                        let answer = self
                            .keap(cfg, store, key, &mut a, "DELETE", &path, None, None)
                            .await;
                        // Gone either way for the partner; one Keap failed to delete is ours by
                        // its URL, and the next check deletes it (`Repair::Delete`).
                        if !answer.ok() && answer.status != Some(404) {
                            log_keap("hook_delete_failed", &event_key, answer.status);
                        }
                        h.remove(&event_key);
                    }
                    Change::Create { event_key } => {
                        let (keap_key, status, error) = self
                            .create_hook(cfg, store, key, &mut a, &event_key, &token)
                            .await;
                        h.set_status(&event_key, keap_key, status, error, now);
                    }
                }
            }
            if h.hooks.is_empty() {
                store
                    .delete_hook_index(&hooks::index_key(token.expose()))
                    .await?;
            }
        }
        h.hydrate = wanted.hydrate;
        h.checked_at = (!h.hooks.is_empty()).then_some(now);
        self.put_hooks_state(&h).await?;
        self.mark_checked(store, key, h.checked_at).await?;
        let detail = if wanted.event_keys.is_empty() {
            "None.".to_owned()
        } else {
            format!(
                "{}{}.",
                wanted.event_keys.join(", "),
                if wanted.hydrate { " (hydrate)" } else { "" }
            )
        };
        self.note(Box::new(|t| {
            t.push(now, ConnectionEventKind::HooksSet, None, Some(detail))
        }))
        .await;
        api_text(&h).map(Some)
    }

    pub(crate) async fn get_hooks(
        &self,
        store: &Store,
        key: &ConnectionKey,
    ) -> ApiResult<Option<String>> {
        if self.record(store, key).await?.is_none() {
            return Ok(None);
        }
        api_text(&self.hooks_state().await?).map(Some)
    }

    /// Notes when the hooks were checked on the record, so the sweep's metadata says when the
    /// next check is due (`None`: the link has no hooks).
    async fn mark_checked(
        &self,
        store: &Store,
        key: &ConnectionKey,
        at: Option<keaplink_core::clock::UnixTime>,
    ) -> ApiResult<()> {
        let Some(mut record) = self.record(store, key).await? else {
            return Ok(());
        };
        if record.hooks_checked_at != at {
            record.hooks_checked_at = at;
            self.save(store, key, &record, false).await?;
        }
        Ok(())
    }

    /// The sweep found the link's hooks due for a check: compares them with Keap's list and
    /// restores what Keap let lapse. Answers how many hooks it restored.
    pub(crate) async fn check_hooks(
        &self,
        cfg: &Config,
        store: &Store,
        key: &ConnectionKey,
    ) -> ApiResult<Option<u32>> {
        let Some(record) = self.record(store, key).await? else {
            return Ok(None);
        };
        let mut h = self.hooks_state().await?;
        let now = unix_now();
        if h.hooks.is_empty() {
            self.mark_checked(store, key, None).await?;
            return Ok(Some(0));
        }
        if record.status != ConnectionStatus::Active {
            // A link that needs its user keeps its hooks (events still come, unhydrated); nothing
            // can be checked without a token.
            h.checked_at = Some(now);
            self.put_hooks_state(&h).await?;
            self.mark_checked(store, key, Some(now)).await?;
            return Ok(Some(0));
        }
        let (_, mut a) = match self.access(cfg, store, key).await {
            Ok(x) => x,
            Err(e) if e.code == ErrorCode::NeedsReauth => return Ok(Some(0)),
            Err(e) => return Err(e),
        };
        let token = self.url_token(cfg, store, key, &mut h).await?;
        let url = hooks::hook_url(cfg.public_url.as_str(), token.expose());
        let list = self
            .keap(
                cfg,
                store,
                key,
                &mut a,
                "GET",
                &hooks::hooks_path(None, None),
                None,
                None,
            )
            .await;
        let Some(at_keap) = list.ok().then(|| hooks::parse_hooks(&list.body)).flatten() else {
            // Checked again at the next sweep: the time is not advanced.
            log_keap("hooks_check_failed", "", list.status);
            return Ok(Some(0));
        };
        let mut restored = 0u32;
        let mut notes: Vec<(ConnectionEventKind, Option<String>, String)> = Vec::new();
        for repair in hooks::check_plan(&h, &at_keap, &url, now) {
            match repair {
                Repair::Fine {
                    event_key,
                    keap_key,
                } => h.set_status(&event_key, Some(keap_key), HookStatus::Verified, None, now),
                Repair::Wait { .. } => {}
                Repair::Verify {
                    event_key,
                    keap_key,
                } => {
                    let was = h.entry(&event_key).map(|e| e.status);
                    let path = hooks::hooks_path(Some(&keap_key), Some("verify"));
                    let answer = self
                        .keap(cfg, store, key, &mut a, "POST", &path, None, None)
                        .await;
                    let status = match hooks::parse_hook(&answer.body).filter(|_| answer.ok()) {
                        Some(k) => {
                            self.settle(cfg, store, key, &mut a, &keap_key, k.status, &token)
                                .await
                        }
                        None => HookStatus::Inactive,
                    };
                    let error = (status != HookStatus::Verified)
                        .then(|| hooks::keap_refusal(answer.status.filter(|_| !answer.ok())));
                    let lapsed = match was {
                        Some(HookStatus::Pending) => "Unverified",
                        _ => "Inactive",
                    };
                    if status == HookStatus::Verified {
                        restored += 1;
                        notes.push((
                            ConnectionEventKind::HookRestored,
                            None,
                            format!("{event_key}: {lapsed} at Keap; verified again."),
                        ));
                    } else {
                        notes.push((
                            ConnectionEventKind::HookRestoreFailed,
                            error.as_ref().map(|e| e.code.clone()),
                            format!("{event_key}: {lapsed} at Keap; verifying again failed."),
                        ));
                    }
                    h.set_status(&event_key, Some(keap_key), status, error, now);
                }
                Repair::Create { event_key } => {
                    let (keap_key, status, error) = self
                        .create_hook(cfg, store, key, &mut a, &event_key, &token)
                        .await;
                    if status == HookStatus::Verified {
                        restored += 1;
                        notes.push((
                            ConnectionEventKind::HookRestored,
                            None,
                            format!("{event_key}: gone at Keap; created again."),
                        ));
                    } else {
                        notes.push((
                            ConnectionEventKind::HookRestoreFailed,
                            error.as_ref().map(|e| e.code.clone()),
                            format!("{event_key}: gone at Keap; creating it again failed."),
                        ));
                    }
                    h.set_status(&event_key, keap_key, status, error, now);
                }
                Repair::Delete { keap_key } => {
                    let path = hooks::hooks_path(Some(&keap_key), None);
                    let _ = self
                        .keap(cfg, store, key, &mut a, "DELETE", &path, None, None)
                        .await;
                }
            }
        }
        h.checked_at = Some(now);
        self.put_hooks_state(&h).await?;
        self.mark_checked(store, key, Some(now)).await?;
        for (kind, code, detail) in notes {
            self.note(Box::new(move |t| {
                t.push(now, kind, code.as_deref(), Some(detail))
            }))
            .await;
        }
        Ok(Some(restored))
    }

    /// Deletes every hook of the link at Keap (disconnect, delete, export) and retires its URL:
    /// from here on Keap's posts to it are answered 410. Best effort when the token is dead: the
    /// outcome is on the timeline and in the log.
    pub(crate) async fn teardown_hooks(
        &self,
        cfg: &Config,
        store: &Store,
        key: &ConnectionKey,
    ) -> ApiResult<()> {
        let mut h = self.hooks_state().await?;
        if h.url_token.is_none() {
            return Ok(());
        }
        let token = self.url_token(cfg, store, key, &mut h).await?;
        let plan = hooks::teardown(&h);
        let mut left = 0usize;
        let mut code: Option<String> = None;
        if !plan.is_empty() {
            match self.access(cfg, store, key).await {
                Ok((_, mut a)) => {
                    for change in plan {
                        if let Change::Delete { keap_key, .. } = change {
                            let path = hooks::hooks_path(Some(&keap_key), None);
                            let answer = self
                                .keap(cfg, store, key, &mut a, "DELETE", &path, None, None)
                                .await;
                            if !answer.ok() && answer.status != Some(404) {
                                left += 1;
                                code = Some(hooks::keap_refusal(answer.status).code);
                            }
                        }
                    }
                }
                Err(e) => {
                    left = plan.len();
                    code = Some(e.code.as_str().to_owned());
                }
            }
        }
        let had = h.hooks.len();
        store
            .delete_hook_index(&hooks::index_key(token.expose()))
            .await?;
        h.hooks.clear();
        h.checked_at = None;
        self.put_hooks_state(&h).await?;
        if had > 0 {
            let detail = if left == 0 {
                format!("{had} deleted at Keap.")
            } else {
                format!("{} of {had} deleted at Keap; Keap answers the others' posts with 410 from keaplink, which makes it stop.", had - left)
            };
            let now = unix_now();
            self.note(Box::new(move |t| {
                t.push(
                    now,
                    ConnectionEventKind::HooksRemoved,
                    code.as_deref(),
                    Some(detail),
                )
            }))
            .await;
        }
        Ok(())
    }

    /// Keap posted a batch to the link's URL: whether it is news (noting it, so Keap's retry of
    /// the same batch is not delivered again).
    pub(crate) async fn hook_batch(
        &self,
        store: &Store,
        key: &ConnectionKey,
        event_key: &str,
        digest: &str,
    ) -> ApiResult<Verdict> {
        let Some(record) = self.record(store, key).await? else {
            return Ok(Verdict::Gone);
        };
        let mut h = self.hooks_state().await?;
        let now = unix_now();
        h.counts.received += 1;
        let verdict = if h.entry(event_key).is_none() {
            Verdict::NotWanted
        } else if !hooks::first_time(&mut h.seen, digest, now) {
            h.counts.duplicates += 1;
            Verdict::Duplicate
        } else {
            h.counts.accepted += 1;
            if let Some(e) = h.entry_mut(event_key) {
                e.last_event_at = Some(now);
            }
            Verdict::Deliver {
                hydrate: h.hydrate,
                record: Box::new(record),
            }
        };
        self.put_hooks_state(&h).await?;
        Ok(verdict)
    }
}

/// The hooks as the API answers them, as JSON text the route relays (so the router reads no
/// hooks back: one serializer, no deserializer in the Worker).
fn api_text(h: &LinkHooks) -> ApiResult<String> {
    serde_json::to_string(&h.to_api()).map_err(ApiError::internal)
}

fn log_keap(event: &str, event_key: &str, status: Option<u16>) {
    log::event(
        Level::Warn,
        event,
        &[
            ("event_key", Field::Str(event_key)),
            ("status", Field::OptNum(status.map(u64::from))),
        ],
    );
}
