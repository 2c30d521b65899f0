//! One way to write a log event: a JSON object with an `event` name, one line, through the
//! runtime's console (Workers Logs, `wrangler tail`). Nothing written here may hold a token or
//! secret: events carry ids, codes, counts and causes.

use keaplink_core::ApiError;
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// A field's value in an event line.
pub enum Field<'a> {
    Str(&'a str),
    /// `null` when absent.
    OptStr(Option<&'a str>),
    Num(u64),
    /// `null` when absent.
    OptNum(Option<u64>),
    Bool(bool),
}

/// Writes `{"event": name, ...fields}`, the fields in the order given: callers list them
/// alphabetically, as these lines have always read (they were once written from serde_json maps,
/// which sort their keys). Written by hand rather than through a `serde_json::Value` map: one
/// small writer instead of a map built at every call site.
pub fn event(level: Level, name: &str, fields: &[(&str, Field<'_>)]) {
    raw(level, &line(name, fields));
}

fn line(name: &str, fields: &[(&str, Field<'_>)]) -> String {
    let mut line = String::from("{\"event\":");
    push_str(&mut line, name);
    for (key, value) in fields {
        line.push(',');
        push_str(&mut line, key);
        line.push(':');
        match value {
            Field::Str(s) | Field::OptStr(Some(s)) => push_str(&mut line, s),
            Field::Num(n) | Field::OptNum(Some(n)) => {
                let _ = write!(line, "{n}");
            }
            Field::Bool(b) => line.push_str(if *b { "true" } else { "false" }),
            Field::OptStr(None) | Field::OptNum(None) => line.push_str("null"),
        }
    }
    line.push('}');
    line
}

/// A failure's line: `{"event": name, "cause": ..., "code": ...}`.
pub fn failure(level: Level, name: &str, e: &ApiError) {
    event(
        level,
        name,
        &[
            ("cause", Field::OptStr(e.cause())),
            ("code", Field::Str(e.code.as_str())),
        ],
    );
}

fn push_str(out: &mut String, s: &str) {
    // serde_json's escaping: the line stays one valid JSON object whatever `s` holds.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// Writes a value that already carries its own `event` field (a report struct).
pub fn write<T: Serialize>(level: Level, value: &T) {
    raw(level, &serde_json::to_string(value).unwrap_or_default());
}

/// Writes one line already serialized (one JSON object).
pub fn raw(level: Level, text: &str) {
    // Straight to the console (worker's `console_log!` formats the text into a copy first).
    let text = worker::wasm_bindgen::JsValue::from_str(text);
    match level {
        Level::Info => worker::web_sys::console::log_1(&text),
        Level::Warn => worker::web_sys::console::warn_1(&text),
        Level::Error => worker::web_sys::console::error_1(&text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_reads_as_the_serde_json_map_it_replaced() {
        let fields = [
            ("cause", Field::OptStr(Some("KV get: \"quoted\"\n"))),
            ("code", Field::Str("internal")),
            ("more", Field::Bool(false)),
            ("n", Field::Num(18_446_744_073_709_551_615)),
            ("none", Field::OptStr(None)),
            ("status", Field::OptNum(None)),
        ];
        // What the line was when written from a serde_json map (which sorts its keys).
        let before = serde_json::json!({
            "status": null,
            "none": null,
            "n": u64::MAX,
            "more": false,
            "code": "internal",
            "cause": "KV get: \"quoted\"\n",
        });
        let map = serde_json::to_string(&before).unwrap();
        let expected = format!("{{\"event\":\"x\",{}", &map[1..]);
        assert_eq!(line("x", &fields), expected);
        assert_eq!(line("job_unreadable", &[]), r#"{"event":"job_unreadable"}"#);
    }
}
