//! Calling a Durable Object: a JSON command to the object of a name, and its typed JSON reply.
//! Errors cross the boundary as `ApiError` values (code, message and cause), never as strings.
//! Also an object's own storage, its values as JSON text.

use crate::http::subrequest;
use crate::js_json;
use keaplink_core::{ApiError, ApiResult};
use serde::de::{DeserializeOwned, Error as _, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Env, Headers, Request, Response, State, Storage};

/// Sends `command` to the object named `name` in the namespace bound as `binding`; answers what
/// it replied.
///
/// Not an `async fn`, for size: the command is written to JSON now and the round trip is one
/// future compiled once (`exchange`), so what is compiled per (command, answer) pair is only the
/// JSON on either side and a one-await wrapper, not a state machine around the whole exchange.
/// The future borrows nothing; callers may return it as theirs.
pub fn call<C: Serialize, A: DeserializeOwned>(
    env: &Env,
    binding: &'static str,
    name: &str,
    command: &C,
) -> impl Future<Output = ApiResult<A>> {
    let body = serde_json::to_string(command).map_err(ApiError::internal);
    let answer = exchange(env, binding, name, false, body);
    async move {
        let answer = answer.await?;
        serde_json::from_slice(answer.as_bytes()).map_err(|e| unreadable_answer(binding, e))
    }
}

/// The round trip of a command already written, boxed: the MCP commands' calls (eight of them)
/// share this one future instead of each inlining the exchange. `by_id`: `name` is the object's
/// id (64 hex, as `ObjectId` prints it), as an MCP token names the guard that holds its grant.
pub fn call_text(
    env: &Env,
    binding: &'static str,
    name: &str,
    by_id: bool,
    body: ApiResult<String>,
) -> futures_util::future::LocalBoxFuture<'static, ApiResult<String>> {
    Box::pin(exchange(env, binding, name, by_id, body))
}

/// Reads what [`call_text`] answered.
pub fn read_answer<A: DeserializeOwned>(binding: &str, answer: ApiResult<String>) -> ApiResult<A> {
    serde_json::from_slice(answer?.as_bytes()).map_err(|e| unreadable_answer(binding, e))
}

fn unreadable_answer(binding: &str, e: serde_json::Error) -> ApiError {
    ApiError::internal(format!(
        "{binding} answered something unreadable: {}",
        js_json::where_broken(&e)
    ))
}

/// The `Ok` payload of a reply (`{"ok":<payload>}`, as `reply` writes it), or its error. Read
/// apart from the payload's type, so the reply's own decoding (and `ApiError`'s) is compiled
/// once, not once per answer type.
fn payload(binding: &str, status: u16, mut text: String) -> ApiResult<String> {
    const OK: &str = "{\"ok\":";
    const ERR: &str = "{\"err\":";
    if text.starts_with(OK) && text.ends_with('}') {
        text.truncate(text.len() - 1);
        text.drain(..OK.len());
        return Ok(text);
    }
    let err = text
        .strip_prefix(ERR)
        .and_then(|rest| rest.strip_suffix('}'))
        .ok_or_else(|| {
            // Not a reply of ours (the runtime's own error page, say): its status says which.
            ApiError::internal(format!(
                "{binding} answered in an unknown shape (HTTP {status}, {} bytes)",
                text.len()
            ))
        })?;
    Err(serde_json::from_slice::<ApiError>(err.as_bytes())
        .unwrap_or_else(|e| unreadable_answer(binding, e)))
}

/// The round trip itself, apart from the generic JSON on either side: one future type, whatever
/// the command. The stub and the request are made before it runs (so it borrows nothing); it
/// answers the reply's payload.
fn exchange(
    env: &Env,
    binding: &'static str,
    name: &str,
    by_id: bool,
    body: ApiResult<String>,
) -> impl Future<Output = ApiResult<String>> + 'static {
    let failed = move |e: worker::Error| ApiError::internal(format!("{binding} call: {e}"));
    let sent = body.and_then(|body| {
        let namespace = env.durable_object(binding).map_err(failed)?;
        let id = if by_id {
            namespace.id_from_string(name)
        } else {
            namespace.id_from_name(name)
        };
        let stub = id.and_then(|id| id.get_stub()).map_err(failed)?;
        // The host is never resolved: the stub routes the request to the object.
        let body = JsValue::from(body);
        let req = subrequest(
            &format!("https://{binding}/"),
            "POST",
            &Headers::new(),
            Some(&body),
            false,
        )
        .map_err(failed)?;
        Ok((stub, req))
    });
    async move {
        let (stub, req) = sent?;
        let mut resp = stub.fetch_with_request(req).await.map_err(failed)?;
        let status = resp.status_code();
        payload(binding, status, resp.text().await.map_err(failed)?)
    }
}

/// Reads an object's command from its request (serde_json, the one JSON reader the Worker links).
/// As `call`, a plain function: the body is read by one future for every command type.
pub fn command<'a, C: DeserializeOwned>(
    req: &'a mut Request,
    binding: &'a str,
) -> impl Future<Output = ApiResult<C>> + 'a {
    let text = command_text(req, binding);
    async move {
        let text = text.await?;
        serde_json::from_slice(text.as_bytes())
            .map_err(|e| unreadable(binding, js_json::where_broken(&e)))
    }
}

async fn command_text(req: &mut Request, binding: &str) -> ApiResult<String> {
    req.text().await.map_err(|e| unreadable(binding, e))
}

/// A command as it crosses, `{"<name>": {<fields>}}` (how serde writes an externally tagged
/// enum of struct variants), read as its name and `F`: one struct of every field any of the
/// object's commands carries, each optional. The object then builds its command enum from the two
/// (`Command::read`). Why not derive `Deserialize` on the enum: serde then compiles a map reader
/// and a sequence reader for every variant, all inlined in one `visit_enum` (11-15 KB of wasm per
/// object); here one reader of `F` serves every command.
pub struct Named<F> {
    pub name: String,
    pub fields: F,
}

impl<'de, F: Deserialize<'de>> Deserialize<'de> for Named<F> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OneEntry<F>(PhantomData<F>);
        impl<'de, F: Deserialize<'de>> Visitor<'de> for OneEntry<F> {
            type Value = Named<F>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command: an object of one entry")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Named<F>, M::Error> {
                let Some((name, fields)) = map.next_entry()? else {
                    return Err(M::Error::invalid_length(0, &self));
                };
                if map.next_key::<IgnoredAny>()?.is_some() {
                    return Err(M::Error::invalid_length(2, &self));
                }
                Ok(Named { name, fields })
            }
        }
        d.deserialize_map(OneEntry(PhantomData))
    }
}

/// A command `read` from `Named` fields: a missing field (or an unknown name) is a command the
/// object cannot read, as a JSON error is.
pub fn read_command<F, C>(
    binding: &str,
    named: Named<F>,
    read: impl FnOnce(&str, F) -> Result<C, &'static str>,
) -> ApiResult<C> {
    read(&named.name, named.fields)
        .map_err(|lack| unreadable(binding, format!("{}: {lack}", named.name)))
}

/// An object's answer: its result, typed by the command, as the caller reads it. Only the
/// payload's JSON is per type; the envelope is written once (`envelope`).
pub fn reply<T: Serialize>(result: ApiResult<T>) -> worker::Result<Response> {
    envelope(result.map(|t| serde_json::to_string(&t)))
}

/// What an object answers to a command: `{"ok":<payload>}` or `{"err":<ApiError>}` (read back
/// by `payload`).
fn envelope(result: ApiResult<serde_json::Result<String>>) -> worker::Result<Response> {
    let text = match result {
        Ok(payload) => format!("{{\"ok\":{}}}", payload?),
        Err(e) => format!("{{\"err\":{}}}", serde_json::to_string(&e)?),
    };
    Response::ok(text)
}

/// A command the object could not read (a bug on the caller's side, or a version mismatch
/// during a deploy).
pub fn unreadable(binding: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("{binding} got a command it cannot read: {e}"))
}

fn does_not_read(key: &str, e: &str) -> worker::Error {
    worker::Error::RustError(format!("the stored {key:?} does not read: {e}"))
}

/// An object's storage, as `worker::Storage` with its values as JSON text: serde_json is then the
/// only (de)serializer of stored types (through `Storage::get`, each type stored also compiled
/// its own serde-wasm-bindgen decoder, ~2-5 KB of wasm apiece). Values written by earlier
/// releases, JS objects, still read (`js_json`); the reverse does not hold: a release from before
/// this encoding cannot read what this one stores (roll back no further than this one).
pub struct ObjectStorage(Storage);

pub fn storage(state: &State) -> ObjectStorage {
    ObjectStorage(state.storage())
}

impl ObjectStorage {
    // `get` and `put` are generic only where they must be: the JSON text is read into `T` (or
    // written from it) by a plain function; the storage calls, and their state machines, are
    // compiled once, not once per stored type.

    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> worker::Result<Option<T>> {
        let text = self.get_text(key).await?;
        match text {
            None => Ok(None),
            // from_slice, as everywhere: serde_json's reader of `&str` would compile every
            // type's decoder a second time.
            Some(text) => serde_json::from_slice(text.as_bytes())
                .map(Some)
                .map_err(|e| does_not_read(key, &js_json::where_broken(&e))),
        }
    }

    /// The stored value's JSON text (a JS object an earlier release stored, turned into JSON).
    async fn get_text(&self, key: &str) -> worker::Result<Option<String>> {
        let v = JsFuture::from(self.0.as_raw().get(key)?).await?;
        if v.is_undefined() {
            return Ok(None);
        }
        // No type stored here is a bare string, so a string is always JSON text.
        match v.as_string() {
            Some(text) => Ok(Some(text)),
            None => js_json::legacy_json(&v)
                .map(Some)
                .map_err(|e| does_not_read(key, &e)),
        }
    }

    /// Writes `value` (serialized before this returns; the write is the future's).
    pub fn put<'a, T: Serialize>(
        &'a self,
        key: &'a str,
        value: T,
    ) -> impl std::future::Future<Output = worker::Result<()>> + 'a {
        self.put_text(key, serde_json::to_string(&value))
    }

    async fn put_text(&self, key: &str, text: serde_json::Result<String>) -> worker::Result<()> {
        let text = text.map_err(|e| worker::Error::RustError(js_json::where_broken(&e)))?;
        self.0.put_raw(key, JsValue::from_str(&text)).await
    }

    pub async fn delete(&self, key: &str) -> worker::Result<bool> {
        self.0.delete(key).await
    }

    pub async fn delete_all(&self) -> worker::Result<()> {
        self.0.delete_all().await
    }

    pub async fn set_alarm(&self, delay_ms: i64) -> worker::Result<()> {
        self.0.set_alarm(delay_ms).await
    }
}

/// A value as JSON text, for an answer the caller relays as it is rather than decodes (each type
/// decoded costs its own deserializer in the wasm).
pub fn text<T: Serialize>(value: ApiResult<T>) -> ApiResult<String> {
    serde_json::to_string(&value?).map_err(ApiError::internal)
}
