//! What the queue does with Keap's hooks: a batch Keap posted (deduplicated by the link's guard,
//! its objects read with `hydrate`, then sent to the partner's webhook like every event), and the
//! sweep's checks of links' hooks at Keap.

use crate::clock::{now_ms, unix_now};
use crate::config::Config;
use crate::guard::{self, Verdict};
use crate::keap_client::send;
use crate::links::usable;
use crate::log::{self, Field, Level};
use crate::queue::{enqueue, Job};
use crate::quota;
use crate::{partner_guard, stats};
use keaplink_api::{ConnectionStatus, UnreadObject};
use keaplink_core::connection::{ConnectionKey, ConnectionRecord};
use keaplink_core::hooks;
use keaplink_core::refresh::{fingerprint, Purpose};
use keaplink_core::stats::KeapEventOutcome;
use keaplink_core::ApiResult;
use worker::Env;

/// One batch Keap posted to `key`'s hook URL: delivered once, as one event or (hydrated, over
/// 50 objects) several. An error leaves the message to be retried; what was queued stays
/// queued, and the guard's record of the batch makes a retry deliver nothing twice... except
/// parts not yet queued, which is why the webhooks are queued in one send after all reads.
pub async fn deliver_batch(
    env: &Env,
    cfg: &Config,
    key: &ConnectionKey,
    body: &str,
) -> ApiResult<()> {
    let batch = &hooks::batch(body.as_bytes())?;
    let digest = batch.digest();
    let verdict = guard::hook_batch(env, key, &batch.event_key, &digest).await?;
    let counted = KeapEventOutcome::of_batch(
        matches!(verdict, Verdict::Duplicate),
        matches!(verdict, Verdict::Deliver { .. } | Verdict::Duplicate),
    );
    if let Some(outcome) = counted {
        let partner = key.partner();
        futures_util::join!(
            partner_guard::keap_event(env, &partner, outcome),
            stats::record_keap(env, outcome)
        );
    }
    let (record, hydrate) = match verdict {
        Verdict::Deliver { record, hydrate } => (*record, hydrate),
        other => {
            log::event(
                Level::Info,
                "keap_event_dropped",
                &[
                    ("event_key", Field::Str(&batch.event_key)),
                    ("why", Field::Str(&format!("{other:?}"))),
                ],
            );
            return Ok(());
        }
    };
    let parts = batch.parts(hydrate);
    let mut reader = if hydrate {
        Some(Reader::new(env, cfg, key, record.clone()).await)
    } else {
        None
    };
    let mut jobs = Vec::with_capacity(parts.len());
    let of = parts.len();
    for (i, range) in parts.into_iter().enumerate() {
        let hydrated = match reader.as_mut() {
            Some(r) => Some(
                r.read_all(&batch.object_type, &batch.object_keys[range.clone()])
                    .await,
            ),
            None => None,
        };
        let event = hooks::delivery(&record, batch, &digest, i, of, range, hydrated, unix_now());
        jobs.push(Job::Webhook {
            event: Box::new(event),
        });
    }
    enqueue(env, jobs).await?;
    Ok(())
}

/// Reads objects through the link's token for `hydrate`: paced by Keap's quota (a read the
/// reserve holds is named, not waited for), healed once after a 401.
struct Reader<'a> {
    env: &'a Env,
    cfg: &'a Config,
    key: &'a ConnectionKey,
    app: String,
    token: Option<keaplink_core::Secret>,
    /// Why nothing can be read any more (`needs_reauth`), once known.
    stopped: Option<&'static str>,
    healed: bool,
}

impl<'a> Reader<'a> {
    async fn new(
        env: &'a Env,
        cfg: &'a Config,
        key: &'a ConnectionKey,
        record: ConnectionRecord,
    ) -> Reader<'a> {
        let app = record.keap_app.as_str().to_owned();
        let mut r = Reader {
            env,
            cfg,
            key,
            app,
            token: None,
            stopped: None,
            healed: false,
        };
        if record.status != ConnectionStatus::Active {
            // A link that needs its user still forwards its events, unread.
            r.stopped = Some(match record.status {
                ConnectionStatus::Exported => "exported",
                _ => "needs_reauth",
            });
            return r;
        }
        match usable(env, cfg, key, record, Purpose::Token, unix_now()).await {
            Ok(rec) => match rec.open_tokens(&cfg.keys, key) {
                Ok(t) => r.token = Some(t.access_token),
                Err(_) => r.stopped = Some("keap_error"),
            },
            Err(e) => {
                r.stopped = Some(if e.code == keaplink_core::ErrorCode::NeedsReauth {
                    "needs_reauth"
                } else {
                    "keap_error"
                })
            }
        }
        r
    }

    async fn read_all(
        &mut self,
        object_type: &str,
        keys: &[keaplink_api::KeapObjectKey],
    ) -> (Vec<serde_json::Value>, Vec<UnreadObject>) {
        let mut objects = Vec::new();
        let mut unread = Vec::new();
        for k in keys {
            match self.read(object_type, k.id).await {
                Ok(v) => objects.push(v),
                Err(code) => unread.push(hooks::unread(k.id, code)),
            }
        }
        (objects, unread)
    }

    async fn read(
        &mut self,
        object_type: &str,
        id: i64,
    ) -> Result<serde_json::Value, &'static str> {
        let path = hooks::object_path(object_type, id).ok_or("unsupported")?;
        loop {
            if let Some(why) = self.stopped {
                return Err(why);
            }
            if quota::hold(Some(&self.app), self.cfg.quota_reserve, now_ms()).is_some() {
                return Err("keap_quota");
            }
            let token = self.token.clone().ok_or("keap_error")?;
            let req = hooks::keap_request(&self.cfg.keap_api_url, "GET", &path, &token, None, None);
            let answer = send(&req, self.cfg.keap_timeout_ms).await.ok();
            let status = answer.as_ref().map(|a| a.status);
            if status == Some(401) && !self.healed {
                self.healed = true;
                let failed = fingerprint(&token);
                match guard::refresh(self.env, self.key, Purpose::Heal { failed }).await {
                    Ok(Some(r)) if r.record.status == ConnectionStatus::Active => {
                        self.token = r
                            .record
                            .open_tokens(&self.cfg.keys, self.key)
                            .ok()
                            .map(|t| t.access_token);
                        continue;
                    }
                    _ => {
                        self.stopped = Some("needs_reauth");
                        continue;
                    }
                }
            }
            hooks::read_outcome(status).inspect_err(|code| {
                if *code == "needs_reauth" {
                    self.stopped = Some("needs_reauth");
                }
            })?;
            return serde_json::from_slice(&answer.map(|a| a.body).unwrap_or_default())
                .map_err(|_| "keap_error");
        }
    }
}

/// Checks the hooks of `keys` at Keap (each through its guard, one after the other: checks are
/// few and rarely urgent, and a second instance of the parallel-stream machinery cost code);
/// answers how many were restored.
pub async fn check_all(env: &Env, keys: Vec<ConnectionKey>) -> u32 {
    let mut restored = 0;
    for key in keys {
        match guard::check_hooks(env, &key).await {
            Ok(Some(n)) => restored += n,
            Ok(None) => {}
            Err(e) => log::failure(Level::Error, "hooks_check_failed", &e),
        }
    }
    restored
}
