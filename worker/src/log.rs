//! One way to write a log event: a JSON object with an `event` name, one line, through the
//! runtime's console (Workers Logs, `wrangler tail`). Nothing written here may hold a token or
//! secret: events carry ids, codes, counts and causes.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// Writes `fields` (a JSON object) with `"event": name` first.
pub fn event(level: Level, name: &str, fields: serde_json::Value) {
    let name = serde_json::to_string(name).unwrap_or_default();
    let rest = match &fields {
        serde_json::Value::Object(m) if !m.is_empty() => serde_json::to_string(&fields)
            .map(|s| format!(",{}", &s[1..]))
            .unwrap_or_else(|_| "}".into()),
        _ => "}".into(),
    };
    raw(level, &format!("{{\"event\":{name}{rest}"));
}

/// Writes a value that already carries its own `event` field (a report struct).
pub fn write<T: Serialize>(level: Level, value: &T) {
    raw(level, &serde_json::to_string(value).unwrap_or_default());
}

/// Writes one line already serialized (one JSON object).
pub fn raw(level: Level, text: &str) {
    match level {
        Level::Info => worker::console_log!("{text}"),
        Level::Warn => worker::console_warn!("{text}"),
        Level::Error => worker::console_error!("{text}"),
    }
}
