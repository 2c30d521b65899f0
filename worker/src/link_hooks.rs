//! A link's Keap hooks, kept by its guard (the link's single writer): setting them at Keap,
//! checking them, tearing them down with the link, and accepting a batch Keap posted once.
//! `keaplink_core::hooks::Session` decides every call and what each answer means; this sends the
//! calls with the link's token (held while Keap's quota is spent, healed once after a 401) and
//! stores the outcome. The guard's turn is held throughout, so two changes to one link's hooks
//! never interleave; Keap's handshake arrives meanwhile at the hook inbox, which needs no turn.

use crate::clock::{now_ms, unix_now};
use crate::config::Config;
use crate::durable;
use crate::guard::{ConnectionGuard, Verdict};
use crate::keap_client::send;
use crate::quota;
use crate::random;
use crate::store::Store;
use keaplink_api::ConnectionStatus;
use keaplink_core::connection::ConnectionKey;
use keaplink_core::hooks::{self, InboxEntry, LinkHooks, Mode, Session};
use keaplink_core::refresh::{fingerprint, Purpose};
use keaplink_core::{ApiError, ApiResult, ErrorCode, Secret};

const HOOKS: &str = "hooks";

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

    /// Runs `mode` on the link's hooks: `None` when the link is gone; else the hooks as the API
    /// answers them (JSON text, relayed as it is) and how many a check restored. Setting hooks
    /// needs a usable token (409 `needs_reauth` / `exported` otherwise); a check or a teardown
    /// without one changes nothing at Keap and says so.
    pub(crate) async fn run_hooks(
        &self,
        cfg: &Config,
        store: &Store,
        key: &ConnectionKey,
        mode: Mode,
    ) -> ApiResult<Option<(String, u32)>> {
        let Some(record) = self.record(store, key).await? else {
            return Ok(None);
        };
        let mut h = self.hooks_state().await?;
        // A check queued twice (one of them waited out Keap's low day) runs once per interval.
        if mode == Mode::Check
            && !hooks::check_due(h.checked_at, unix_now(), i64::from(cfg.hooks_check_secs))
        {
            return Ok(Some((String::new(), 0)));
        }
        if mode == Mode::Teardown && h.url_token.is_none() {
            return Ok(Some((String::new(), 0)));
        }
        // Subscribing needs a usable token; removing (an empty list) goes ahead without one.
        let setting = matches!(&mode, Mode::Set(w) if !w.event_keys.is_empty());
        // The link's URL token: made once, kept sealed here; its index is stored before any
        // subscription is asked for (Keap's handshake arrives while the create call is open).
        let aad = format!("{}#hooks", key.as_str());
        let token = match &h.url_token {
            Some(sealed) => Secret::new(
                String::from_utf8(cfg.keys.open(&aad, sealed).map_err(|e| {
                    ApiError::internal(format!("the hook URL token does not open ({e:?})"))
                })?)
                .map_err(ApiError::internal)?,
            ),
            None => {
                let t = hooks::new_url_token(random::bytes());
                h.url_token = Some(cfg.keys.seal(&aad, t.as_bytes(), random::bytes()));
                self.put_hooks_state(&h).await?;
                Secret::new(t)
            }
        };
        let index = hooks::index_key(token.expose());
        if mode != Mode::Teardown {
            store
                .put_hook_index(&index, &InboxEntry { key: key.clone() })
                .await?;
        }
        let url = hooks::hook_url(cfg.public_url.as_str(), token.expose());
        let mut session = Session::new(mode.clone(), h, url, unix_now());
        if session.calls_keap() {
            let usable = match record.status {
                ConnectionStatus::Active => self
                    .refresh(cfg, store, key, &Purpose::Token)
                    .await?
                    .map(|r| r.record)
                    .filter(|r| r.status == ConnectionStatus::Active),
                _ => None,
            };
            match usable.and_then(|r| r.open_tokens(&cfg.keys, key).ok()) {
                Some(t) => {
                    let secret_key = hooks::secret_key(token.expose());
                    let access = t.access_token;
                    self.keap_session(cfg, store, key, &record.keap_app, access, &secret_key, &mut session)
                        .await
                }
                None if setting => {
                    return Err(match record.status {
                        ConnectionStatus::Exported => ApiError::new(
                            ErrorCode::Exported,
                            "The link was exported: keaplink no longer uses its tokens.",
                        ),
                        _ => ApiError::new(
                            ErrorCode::NeedsReauth,
                            "The link needs its user to reconnect before keaplink can subscribe it at Keap.",
                        ),
                    })
                }
                None => session.without_keap(ErrorCode::NeedsReauth.as_str()),
            }
        }
        let restored = session.restored;
        let (h, notes) = session.finish();
        if h.hooks.is_empty() {
            store.delete_hook_index(&index).await?;
        }
        self.put_hooks_state(&h).await?;
        // The sweep reads when the hooks were last checked from the link's metadata.
        let mut record = record;
        if record.hooks_checked_at != h.checked_at && mode != Mode::Teardown {
            record.hooks_checked_at = h.checked_at;
            self.save(store, key, &record, false).await?;
        }
        let now = unix_now();
        for (kind, code, detail) in notes {
            self.note(Box::new(move |t| {
                t.push(now, kind, code.as_deref(), Some(detail))
            }))
            .await;
        }
        let text = serde_json::to_string(&h.to_api()).map_err(ApiError::internal)?;
        Ok(Some((text, restored)))
    }

    /// Sends the session's calls to Keap with the link's token, one at a time.
    #[allow(clippy::too_many_arguments)]
    async fn keap_session(
        &self,
        cfg: &Config,
        store: &Store,
        key: &ConnectionKey,
        app: &keaplink_core::keap::KeapApp,
        mut token: Secret,
        secret_key: &str,
        session: &mut Session,
    ) {
        let mut healed = false;
        while let Some(call) = session.next() {
            let secret = if call.with_secret {
                match store.hook_secret(secret_key).await {
                    Ok(Some(s)) => Some(s),
                    _ => {
                        session.no_secret();
                        continue;
                    }
                }
            } else {
                None
            };
            loop {
                // Held while Keap's quota is spent (or down to the reserve): answered as Keap's 429.
                if quota::hold(Some(app.as_str()), cfg.quota_reserve, now_ms()).is_some() {
                    session.answer(Some(429), b"");
                    break;
                }
                let req = hooks::keap_request(
                    &cfg.keap_api_url,
                    call.method,
                    &call.path,
                    &token,
                    call.body.clone(),
                    secret.as_ref(),
                );
                let answer = send(&req, cfg.keap_timeout_ms).await.ok();
                let status = answer.as_ref().map(|a| a.status);
                if status == Some(401) && !healed {
                    // Keap refused the token: one heal through this guard, then the call again.
                    healed = true;
                    let failed = fingerprint(&token);
                    if let Ok(Some(r)) = self
                        .refresh(cfg, store, key, &Purpose::Heal { failed })
                        .await
                    {
                        if let Ok(t) = r.record.open_tokens(&cfg.keys, key) {
                            if r.record.status == ConnectionStatus::Active {
                                token = t.access_token;
                                continue;
                            }
                        }
                    }
                }
                session.answer(status, answer.as_ref().map_or(&[][..], |a| &a.body));
                break;
            }
        }
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

    pub(crate) async fn get_hooks(
        &self,
        store: &Store,
        key: &ConnectionKey,
    ) -> ApiResult<Option<String>> {
        if self.record(store, key).await?.is_none() {
            return Ok(None);
        }
        serde_json::to_string(&self.hooks_state().await?.to_api())
            .map(Some)
            .map_err(ApiError::internal)
    }
}
