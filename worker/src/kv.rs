//! Workers KV through its JS binding, values and metadata as JSON text (and `binding` and
//! `call`, which the queue's producer and the rate limiters use too). `worker::kv` decodes
//! every listing with serde-wasm-bindgen into `serde_json::Value`s, which our types were then
//! decoded from a second time (9.5 KB gzip of wasm, measured); here a key's metadata comes back as the
//! JSON text it is, for serde_json alone.

use worker::js_sys::{Array, Function, Object, Promise, Reflect, JSON};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::Env;

/// A KV namespace binding.
pub struct Kv {
    this: Object,
}

/// One page of a listing: each key's name and metadata (JSON text), and where the next page
/// starts (`None`: this was the last).
pub struct Listed {
    pub keys: Vec<(String, Option<String>)>,
    pub next: Option<String>,
}

/// What a put may carry besides its value.
#[derive(Default)]
pub struct PutOptions<'a> {
    /// JSON text of the key's metadata.
    pub metadata: Option<&'a str>,
    pub expiration_ttl: Option<u64>,
}

/// A JS error as text (its message), for causes in the log; never carries a value of ours.
fn error_text(e: JsValue) -> String {
    match e.dyn_ref::<worker::js_sys::Error>() {
        Some(err) => String::from(err.message()),
        None => e.as_string().unwrap_or_else(|| "an unknown error".into()),
    }
}

fn set(target: &Object, name: &str, value: &JsValue) {
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(target, &JsValue::from_str(name), value);
}

/// The binding `name` of `env`, as the JS object it is.
pub fn binding(env: &Env, name: &str) -> Result<Object, String> {
    let this = Reflect::get(env, &JsValue::from_str(name)).map_err(error_text)?;
    if this.is_undefined() {
        return Err(format!("no binding {name}"));
    }
    Ok(this.unchecked_into())
}

/// Calls the binding's method `name` and waits for its promise.
pub async fn call(this: &Object, name: &str, args: &Array) -> Result<JsValue, String> {
    let f: Function = Reflect::get(this, &JsValue::from_str(name))
        .map_err(error_text)?
        .dyn_into()
        .map_err(|_| format!("the binding has no {name}"))?;
    let promise: Promise = f
        .apply(this, args)
        .map_err(error_text)?
        .dyn_into()
        .map_err(|_| format!("{name} did not answer a promise"))?;
    JsFuture::from(promise).await.map_err(error_text)
}

impl Kv {
    pub fn open(env: &Env, name: &str) -> Result<Kv, String> {
        Ok(Kv {
            this: binding(env, name)?,
        })
    }

    async fn call(&self, name: &str, args: &Array) -> Result<JsValue, String> {
        call(&self.this, name, args).await
    }

    pub async fn get_text(&self, key: &str) -> Result<Option<String>, String> {
        let args = Array::of2(&JsValue::from_str(key), &JsValue::from_str("text"));
        Ok(self.call("get", &args).await?.as_string())
    }

    pub async fn put(&self, key: &str, value: &str, opts: PutOptions<'_>) -> Result<(), String> {
        let options = Object::new();
        if let Some(m) = opts.metadata {
            set(&options, "metadata", &JSON::parse(m).map_err(error_text)?);
        }
        if let Some(ttl) = opts.expiration_ttl {
            set(&options, "expirationTtl", &JsValue::from_f64(ttl as f64));
        }
        let args = Array::of3(&JsValue::from_str(key), &JsValue::from_str(value), &options);
        self.call("put", &args).await.map(|_| ())
    }

    pub async fn delete(&self, key: &str) -> Result<(), String> {
        self.call("delete", &Array::of1(&JsValue::from_str(key)))
            .await
            .map(|_| ())
    }

    pub async fn list(
        &self,
        prefix: &str,
        limit: u64,
        cursor: Option<&str>,
    ) -> Result<Listed, String> {
        let options = Object::new();
        set(&options, "prefix", &JsValue::from_str(prefix));
        set(&options, "limit", &JsValue::from_f64(limit as f64));
        if let Some(c) = cursor {
            set(&options, "cursor", &JsValue::from_str(c));
        }
        let page = self.call("list", &Array::of1(&options)).await?;
        let field = |target: &JsValue, name: &str| {
            Reflect::get(target, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
        };
        let listed = field(&page, "keys")
            .dyn_into::<Array>()
            .map_err(|_| "KV list answered no keys array".to_owned())?;
        let mut keys = Vec::new();
        for k in listed.iter() {
            let Some(name) = field(&k, "name").as_string() else {
                continue;
            };
            let metadata = field(&k, "metadata");
            let metadata = if metadata.is_undefined() || metadata.is_null() {
                None
            } else {
                JSON::stringify(&metadata).ok().map(String::from)
            };
            keys.push((name, metadata));
        }
        let complete = field(&page, "list_complete").as_bool().unwrap_or(true);
        let next = if complete {
            None
        } else {
            field(&page, "cursor").as_string()
        };
        Ok(Listed { keys, next })
    }
}
