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
    let mut line = serde_json::Map::new();
    line.insert("event".into(), name.into());
    if let serde_json::Value::Object(rest) = fields {
        line.extend(rest);
    }
    write(level, &serde_json::Value::Object(line));
}

/// Writes a value that already carries its own `event` field (a report struct).
pub fn write<T: Serialize>(level: Level, value: &T) {
    let text = serde_json::to_string(value).unwrap_or_default();
    match level {
        Level::Info => worker::console_log!("{text}"),
        Level::Warn => worker::console_warn!("{text}"),
        Level::Error => worker::console_error!("{text}"),
    }
}
