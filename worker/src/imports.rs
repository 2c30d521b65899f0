//! One Durable Object per import: the single writer of the import's record and its items. The
//! queue's consumer works on items in parallel, but every step that matters to Keap's rotating
//! refresh token goes through here first, one command at a time: the item is leased, marked
//! before its refresh is sent, and the refresh's answer is stored before anything else is asked
//! of Keap (`keaplink_core::import` decides each step). An item's token belongs to no link yet
//! (its Keap app may be unknown until Keap answers the refresh), so this object is its only
//! writer until the link's own guard takes the new link over.
//!
//! The same class, under a name made from a partner's `idempotency-key`, remembers the import
//! that key started (for a day).

use crate::clock::unix_now;
use crate::durable;
use crate::queue::{enqueue, Job};
use crate::webhooks;
use keaplink_api::ImportView;
use keaplink_core::clock::UnixTime;
use keaplink_core::ids::PartnerId;
use keaplink_core::import::{
    idempotent_import, page, wake, Claim, Claimed, ImportId, ImportRecord, ItemRecord, Settled,
    Step, Wake, IDEMPOTENCY_WINDOW_SECS, WATCHDOG_SECS,
};
use keaplink_core::keap::KeapApp;
use keaplink_core::{ApiError, ApiResult, ErrorCode};
use serde::{Deserialize, Serialize};
use std::future::Future;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

pub const IMPORT_BINDING: &str = "IMPORT_JOB";
const RECORD: &str = "import";
const CLAIMED: &str = "claimed";

fn item_key(index: u32) -> String {
    format!("item/{index:04}")
}

fn app_name_key(app: &KeapApp) -> String {
    format!("app/{}", app.as_str())
}

/// Written as serde writes it; read through `Fields` (`durable::Named` says why).
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Command {
    /// (Under an idempotency key's name.) The import this key names now: the remembered one
    /// within a day, else `fresh`.
    Remember {
        fresh: ImportId,
    },
    /// Store a new import; an import already stored under this name is answered as it is.
    Create {
        record: Box<ImportRecord>,
        items: Vec<ItemRecord>,
    },
    Claim {
        index: u32,
    },
    /// A worker's step on an item it holds.
    Step {
        index: u32,
        step: Step,
    },
    Settle {
        index: u32,
        settled: Box<Settled>,
    },
    /// A page of the import, for its partner only.
    View {
        partner: PartnerId,
        cursor: Option<String>,
    },
    /// The business name read for `app` during this import (read from Keap once per app).
    AppName {
        app: KeapApp,
    },
    SetAppName {
        app: KeapApp,
        name: Option<String>,
    },
}

/// Every field a `Command` carries, each optional: how the object reads its commands.
#[cfg(feature = "objects")]
#[derive(Deserialize)]
struct Fields {
    fresh: Option<ImportId>,
    record: Option<Box<ImportRecord>>,
    items: Option<Vec<ItemRecord>>,
    index: Option<u32>,
    step: Option<Step>,
    settled: Option<Box<Settled>>,
    partner: Option<PartnerId>,
    cursor: Option<String>,
    app: Option<KeapApp>,
    name: Option<String>,
}

#[cfg(feature = "objects")]
impl Command {
    /// The command `name` with its fields, or what it lacks.
    fn read(name: &str, f: Fields) -> Result<Command, &'static str> {
        let index = f.index.ok_or("no index");
        let app = f.app.ok_or("no app");
        Ok(match name {
            "remember" => Command::Remember {
                fresh: f.fresh.ok_or("no fresh")?,
            },
            "create" => Command::Create {
                record: f.record.ok_or("no record")?,
                items: f.items.ok_or("no items")?,
            },
            "claim" => Command::Claim { index: index? },
            "step" => Command::Step {
                index: index?,
                step: f.step.ok_or("no step")?,
            },
            "settle" => Command::Settle {
                index: index?,
                settled: f.settled.ok_or("no settled")?,
            },
            "view" => Command::View {
                partner: f.partner.ok_or("no partner")?,
                cursor: f.cursor,
            },
            "app_name" => Command::AppName { app: app? },
            "set_app_name" => Command::SetAppName {
                app: app?,
                name: f.name,
            },
            _ => return Err("an unknown command"),
        })
    }
}

/// What `Claim` answered, with whose item it is.
#[derive(Debug, Serialize, Deserialize)]
pub struct ItemClaim {
    pub claim: Claim,
    pub partner: PartnerId,
    pub user: String,
    pub hint: Option<KeapApp>,
}

/// What `Create` did.
#[derive(Debug, Serialize, Deserialize)]
pub struct Created {
    /// False: the import was there already (a repeated request); nothing was started.
    pub new: bool,
    pub record: Box<ImportRecord>,
}

#[cfg(feature = "objects")]
#[durable_object(alarm)]
pub struct ImportJob {
    state: State,
    env: Env,
    turn: futures_util::lock::Mutex<()>,
}

#[cfg(feature = "objects")]
impl DurableObject for ImportJob {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            turn: futures_util::lock::Mutex::new(()),
        }
    }

    /// The import's alarm (`keaplink_core::import::wake` decides): while it runs, items no worker
    /// holds are queued again, so a lost message never leaves one pending for ever; once it is
    /// done, `import.finished` is sent from here, once (a failure throws, and the runtime rings
    /// the alarm again); its record is deleted 30 days later. An idempotency key's object rings
    /// once, when its day is over.
    async fn alarm(&self) -> worker::Result<Response> {
        let _turn = self.turn.lock().await;
        let failed = |e: keaplink_core::ApiError| worker::Error::RustError(e.to_string());
        let st = durable::storage(&self.state);
        let mut record = self.record().await.map_err(failed)?;
        let now = unix_now();
        let next_at = match wake(record.as_ref(), now) {
            Wake::Delete => {
                st.delete_all().await?;
                return Response::empty();
            }
            Wake::Sleep { next_at } => next_at,
            Wake::Requeue { next_at } => {
                if let Some(r) = &record {
                    self.requeue(r, now).await.map_err(failed)?;
                }
                next_at
            }
            Wake::Notify { next_at } => {
                if let Some(r) = record.as_mut() {
                    webhooks::emit_import_finished(&self.env, r)
                        .await
                        .map_err(failed)?;
                    r.notified = true;
                    st.put(RECORD, &*r).await?;
                }
                next_at
            }
        };
        st.set_alarm((next_at - now).max(1) * 1000).await?;
        Response::empty()
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let command = durable::command(&mut req, IMPORT_BINDING)
            .await
            .and_then(|named| durable::read_command(IMPORT_BINDING, named, Command::read));
        let command = match command {
            Ok(c) => c,
            Err(e) => return durable::reply::<()>(Err(e)),
        };
        let _turn = self.turn.lock().await;
        match command {
            Command::Remember { fresh } => durable::reply(self.remember(fresh).await),
            Command::Create { record, items } => durable::reply(self.create(*record, items).await),
            Command::Claim { index } => durable::reply(self.claim(index).await),
            Command::Step { index, step } => durable::reply(self.step(index, step).await),
            Command::Settle { index, settled } => {
                durable::reply(self.settle(index, *settled).await)
            }
            // As JSON text the front relays without reading it (a decoder of the view less in
            // the wasm).
            Command::View { partner, cursor } => {
                durable::reply(durable::text(self.view(&partner, cursor.as_deref()).await))
            }
            Command::AppName { app } => durable::reply(
                durable::storage(&self.state)
                    .get::<Option<String>>(&app_name_key(&app))
                    .await
                    .map_err(storage),
            ),
            Command::SetAppName { app, name } => durable::reply(
                durable::storage(&self.state)
                    .put(&app_name_key(&app), &name)
                    .await
                    .map_err(storage),
            ),
        }
    }
}

fn storage(e: worker::Error) -> ApiError {
    ApiError::internal(format!("import job storage: {e}"))
}

fn gone() -> ApiError {
    ApiError::internal("an import job command for an item it does not hold")
}

#[cfg(feature = "objects")]
impl ImportJob {
    async fn remember(&self, fresh: ImportId) -> ApiResult<ImportId> {
        let st = durable::storage(&self.state);
        let known = st.get::<Claimed>(CLAIMED).await.map_err(storage)?;
        let now = unix_now();
        let claimed = idempotent_import(known.as_ref(), fresh, now);
        if known.as_ref() != Some(&claimed) {
            st.put(CLAIMED, &claimed).await.map_err(storage)?;
            // Forgotten once its day is over (the alarm finds no import here, and deletes).
            st.set_alarm(IDEMPOTENCY_WINDOW_SECS * 1000)
                .await
                .map_err(storage)?;
        }
        Ok(claimed.import)
    }

    async fn record(&self) -> ApiResult<Option<ImportRecord>> {
        durable::storage(&self.state)
            .get::<ImportRecord>(RECORD)
            .await
            .map_err(storage)
    }

    async fn create(&self, record: ImportRecord, items: Vec<ItemRecord>) -> ApiResult<Created> {
        if let Some(existing) = self.record().await? {
            return Ok(Created {
                new: false,
                record: Box::new(existing),
            });
        }
        let st = durable::storage(&self.state);
        // Items first, the record last: a request that died half-way is created again whole
        // by the same request repeated (with its idempotency key).
        for item in &items {
            st.put(&item_key(item.index), item).await.map_err(storage)?;
        }
        st.put(RECORD, &record).await.map_err(storage)?;
        // Rings soon when every item was settled by the body's rules (`import.finished`), else
        // as the watchdog.
        let first = if record.finished_at.is_some() {
            1
        } else {
            WATCHDOG_SECS
        };
        st.set_alarm(first * 1000).await.map_err(storage)?;
        Ok(Created {
            new: true,
            record: Box::new(record),
        })
    }

    async fn item(&self, index: u32) -> ApiResult<ItemRecord> {
        durable::storage(&self.state)
            .get::<ItemRecord>(&item_key(index))
            .await
            .map_err(storage)?
            .ok_or_else(gone)
    }

    /// Applies a worker's step to the item and stores it when it took; answers that.
    async fn step(&self, index: u32, step: Step) -> ApiResult<bool> {
        let mut item = self.item(index).await?;
        let changed = item.apply(step, unix_now());
        if changed {
            durable::storage(&self.state)
                .put(&item_key(index), &item)
                .await
                .map_err(storage)?;
        }
        Ok(changed)
    }

    /// Counts an item just settled. The last one rings the alarm at once: it sends
    /// `import.finished`.
    async fn counted(&self, item: &ItemRecord) -> ApiResult<()> {
        let Some(outcome) = item.outcome() else {
            return Ok(());
        };
        let mut record = self.record().await?.ok_or_else(gone)?;
        let finished = record.count(outcome, unix_now());
        let st = durable::storage(&self.state);
        st.put(RECORD, &record).await.map_err(storage)?;
        if finished {
            st.set_alarm(1).await.map_err(storage)?;
        }
        Ok(())
    }

    /// Queues again every item no worker holds (claims are safe to repeat).
    async fn requeue(&self, record: &ImportRecord, now: UnixTime) -> ApiResult<()> {
        let mut jobs = Vec::new();
        for index in 0..record.total {
            if self.item(index).await?.waiting(now) {
                jobs.push(Job::Import {
                    import: record.id.clone(),
                    index,
                });
            }
        }
        if !jobs.is_empty() {
            enqueue(&self.env, jobs).await?;
        }
        Ok(())
    }

    async fn claim(&self, index: u32) -> ApiResult<ItemClaim> {
        let mut item = self.item(index).await?;
        let (claim, settled_now) = item.claim(unix_now());
        if !matches!(claim, Claim::Busy(_)) || settled_now {
            durable::storage(&self.state)
                .put(&item_key(index), &item)
                .await
                .map_err(storage)?;
        }
        if settled_now {
            self.counted(&item).await?;
        }
        let partner = self.record().await?.ok_or_else(gone)?.partner;
        Ok(ItemClaim {
            claim,
            partner,
            user: item.user,
            hint: item.hint,
        })
    }

    async fn settle(&self, index: u32, settled: Settled) -> ApiResult<()> {
        let mut item = self.item(index).await?;
        if !item.settle(settled) {
            return Ok(());
        }
        // The sealed tokens go with the pending state: nothing of them is kept.
        durable::storage(&self.state)
            .put(&item_key(index), &item)
            .await
            .map_err(storage)?;
        self.counted(&item).await
    }

    async fn view(&self, partner: &PartnerId, cursor: Option<&str>) -> ApiResult<ImportView> {
        let record = self
            .record()
            .await?
            .filter(|r| r.partner == *partner)
            .ok_or_else(no_import)?;
        let (start, end, next) = page(cursor, record.total)?;
        let mut items = Vec::with_capacity((end - start) as usize);
        for index in start..end {
            items.push(self.item(index).await?);
        }
        Ok(record.to_api(&items, next))
    }
}

pub fn no_import() -> ApiError {
    ApiError::new(ErrorCode::NoImport, "No such import.")
}

/// Asks the object to do `command`. This and the calls below that only ask are plain functions
/// returning the answer as a future, not `async fn`s (`guard::ask` says why).
fn ask<A: serde::de::DeserializeOwned>(
    env: &Env,
    name: &str,
    command: &Command,
) -> impl Future<Output = ApiResult<A>> {
    durable::call(env, IMPORT_BINDING, name, command)
}

/// The import an idempotency key (by its object's name) names now.
pub fn remember(
    env: &Env,
    key_object: &str,
    fresh: ImportId,
) -> impl Future<Output = ApiResult<ImportId>> {
    ask(env, key_object, &Command::Remember { fresh })
}

pub fn create(
    env: &Env,
    record: ImportRecord,
    items: Vec<ItemRecord>,
) -> impl Future<Output = ApiResult<Created>> {
    let name = record.id.as_str().to_owned();
    let command = Command::Create {
        record: Box::new(record),
        items,
    };
    ask(env, &name, &command)
}

pub fn claim(
    env: &Env,
    import: &ImportId,
    index: u32,
) -> impl Future<Output = ApiResult<ItemClaim>> {
    ask(env, import.as_str(), &Command::Claim { index })
}

/// A worker's step on an item it holds (`false`: it no longer holds it; for a refresh's mark,
/// send nothing).
pub fn step(
    env: &Env,
    import: &ImportId,
    index: u32,
    step: Step,
) -> impl Future<Output = ApiResult<bool>> {
    ask(env, import.as_str(), &Command::Step { index, step })
}

pub fn settle(
    env: &Env,
    import: &ImportId,
    index: u32,
    settled: Settled,
) -> impl Future<Output = ApiResult<()>> {
    let command = Command::Settle {
        index,
        settled: Box::new(settled),
    };
    ask(env, import.as_str(), &command)
}

/// The import's view (`ImportView`) as JSON text, for the answer.
pub fn view(
    env: &Env,
    import: &ImportId,
    partner: &PartnerId,
    cursor: Option<String>,
) -> impl Future<Output = ApiResult<String>> {
    let command = Command::View {
        partner: partner.clone(),
        cursor,
    };
    ask(env, import.as_str(), &command)
}

pub fn app_name(
    env: &Env,
    import: &ImportId,
    app: &KeapApp,
) -> impl Future<Output = ApiResult<Option<Option<String>>>> {
    ask(env, import.as_str(), &Command::AppName { app: app.clone() })
}

pub fn set_app_name(
    env: &Env,
    import: &ImportId,
    app: &KeapApp,
    name: Option<String>,
) -> impl Future<Output = ApiResult<()>> {
    let command = Command::SetAppName {
        app: app.clone(),
        name,
    };
    ask(env, import.as_str(), &command)
}
