//! Values the runtime stores for us (Durable Object storage, queue messages) are written as JSON
//! text and read back with serde_json, the Worker's one (de)serializer. Values an earlier release
//! stored as JS objects (serde-wasm-bindgen's encoding: `Map`s for maps, `undefined` for `None`)
//! are turned into the same JSON text first, so they read as they always did.

use js_sys::{Array, BigInt, Map, Object, Uint8Array};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Write;
use wasm_bindgen::{JsCast, JsValue};

/// Where and how JSON text failed to read, for a log line: serde_json's own message quotes the
/// value it met (an email, a sealed token), so only its category and place are kept.
pub fn where_broken(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "an I/O error",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "JSON of another shape",
        serde_json::error::Category::Eof => "JSON cut short",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// What to store: the value's JSON text, as a JS string.
pub fn to_js<T: Serialize>(value: &T) -> Result<JsValue, String> {
    serde_json::to_string(value)
        .map(|text| JsValue::from_str(&text))
        .map_err(|e| where_broken(&e))
}

/// Reads a stored value: JSON text (what this release writes), or a JS object an earlier one
/// wrote (no type stored here is a bare string, so a string is always JSON text).
pub fn from_js<T: DeserializeOwned>(value: &JsValue) -> Result<T, String> {
    let text = match value.as_string() {
        Some(text) => text,
        None => legacy_json(value)?,
    };
    serde_json::from_slice(text.as_bytes()).map_err(|e| where_broken(&e))
}

/// The JSON text of a JS value as serde-wasm-bindgen wrote it: plain objects and `Map`s become
/// JSON objects (a `Map`'s number keys as their decimal text, which serde_json reads back as
/// integer keys), arrays and byte arrays JSON arrays, `undefined` in an object is left out (as
/// serde reads an absent `Option`), elsewhere it is `null`.
pub fn legacy_json(value: &JsValue) -> Result<String, String> {
    let mut out = String::new();
    write_value(value, &mut out, 0)?;
    Ok(out)
}

/// Deeper than any record of ours: a cycle or a hostile value stops here.
const MAX_DEPTH: u32 = 64;

fn write_value(v: &JsValue, out: &mut String, depth: u32) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("a stored value nests too deep".into());
    }
    if v.is_undefined() || v.is_null() {
        out.push_str("null");
    } else if let Some(b) = v.as_bool() {
        out.push_str(if b { "true" } else { "false" });
    } else if let Some(n) = v.as_f64() {
        write_number(n, out);
    } else if let Some(s) = v.as_string() {
        write_string(&s, out);
    } else if v.is_bigint() {
        // Written only for integers past 2^53; JSON keeps every digit.
        let digits = v
            .unchecked_ref::<BigInt>()
            .to_string(10)
            .map_err(|_| "a BigInt")?;
        out.push_str(&String::from(digits));
    } else if Array::is_array(v) {
        out.push('[');
        for (i, item) in v.unchecked_ref::<Array>().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_value(&item, out, depth + 1)?;
        }
        out.push(']');
    } else if let Some(bytes) = v.dyn_ref::<Uint8Array>() {
        out.push('[');
        for (i, b) in bytes.to_vec().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{b}");
        }
        out.push(']');
    } else if let Some(map) = v.dyn_ref::<Map>() {
        let mut first = true;
        out.push('{');
        let mut failed = None;
        map.for_each(&mut |value, key| {
            if failed.is_some() || value.is_undefined() {
                return;
            }
            if !std::mem::take(&mut first) {
                out.push(',');
            }
            match key.as_string() {
                Some(k) => write_string(&k, out),
                None => match key.as_f64() {
                    Some(n) => {
                        out.push('"');
                        write_number(n, out);
                        out.push('"');
                    }
                    None => {
                        failed = Some("a Map key that is neither a string nor a number");
                        return;
                    }
                },
            }
            out.push(':');
            if let Err(e) = write_value(&value, out, depth + 1) {
                failed = Some(if e.contains("deep") {
                    "a stored value nests too deep"
                } else {
                    "a stored value that is not JSON"
                });
            }
        });
        if let Some(e) = failed {
            return Err(e.into());
        }
        out.push('}');
    } else if v.is_object() && !v.is_function() {
        out.push('{');
        let mut first = true;
        for entry in Object::entries(v.unchecked_ref::<Object>()).iter() {
            let pair = entry.unchecked_into::<Array>();
            let value = pair.get(1);
            if value.is_undefined() {
                continue;
            }
            if !std::mem::take(&mut first) {
                out.push(',');
            }
            write_string(&pair.get(0).as_string().unwrap_or_default(), out);
            out.push(':');
            write_value(&value, out, depth + 1)?;
        }
        out.push('}');
    } else {
        return Err("a stored value that is not JSON".into());
    }
    Ok(())
}

/// Integers (every count and time we store) exactly; other finite numbers as Rust prints them
/// (the shortest text that reads back the same); NaN and infinities as `null`, like JSON.stringify.
fn write_number(n: f64, out: &mut String) {
    if n.is_finite() && n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        let _ = write!(out, "{}", n as i64);
    } else if n.is_finite() {
        let _ = write!(out, "{n}");
    } else {
        out.push_str("null");
    }
}

fn write_string(s: &str, out: &mut String) {
    // serde_json's own escaping: the text reads back as exactly `s`.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}
