//! `keaplink-seed`: prints connection records as the Worker stores them, one JSON line per KV
//! entry (`{"key", "value", "metadata"?}`), for tests and benchmarks that need many links.
//!
//! Reads `{"partner", "token_keys", "now", "count", "due_every", "margin_secs", "tokens": [{"access_token", "refresh_token"}]}`
//! on stdin. Every `due_every`-th connection gets an access token inside the refresh margin and
//! the next of `tokens` (live at the sandbox); the others are fresh, with tokens Keap would refuse
//! (or, with `"unreadable_idle": true`, an unreadable value under intact metadata). Every link is
//! written as just linked (a use now: in use for the sweep until its window passes);
//! `"refresh_lifetime_secs"` sets its refresh token's expected life (default 45 days).

use keaplink_core::connection::{
    ConnectionKey, ConnectionRecord, NewConnection, DEFAULT_REFRESH_LIFETIME_SECS,
};
use keaplink_core::ids::{ConnectionId, PartnerId, UserId};
use keaplink_core::keap::{KeapApp, KeapIdentity};
use keaplink_core::keys as kv_keys;
use keaplink_core::seal::Keyring;
use keaplink_core::Secret;
use serde::Deserialize;
use serde_json::json;
use std::io::{BufWriter, Read, Write};

#[derive(Deserialize)]
struct Input {
    partner: String,
    token_keys: String,
    now: i64,
    count: usize,
    due_every: usize,
    margin_secs: i64,
    tokens: Vec<Tokens>,
    /// Write an unreadable value (metadata intact) for connections that are not due: whoever
    /// reads one fails, so a test can prove nobody does.
    #[serde(default)]
    unreadable_idle: bool,
    /// Also write each link's search index entries, as its guard would (the console's search).
    #[serde(default)]
    index: bool,
    /// The refresh tokens' lifetime, as the Worker is configured (default 45 days).
    #[serde(default)]
    refresh_lifetime_secs: Option<i64>,
}

#[derive(Deserialize)]
struct Tokens {
    access_token: String,
    refresh_token: String,
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS has randomness");
    b
}

fn main() {
    let mut raw = String::new();
    std::io::stdin().read_to_string(&mut raw).expect("stdin");
    let input: Input = serde_json::from_str(&raw).expect("the input JSON described at the top");
    let keys = Keyring::parse(&input.token_keys).expect("TOKEN_KEYS");
    let partner = PartnerId::parse(&input.partner).expect("a partner id");
    let app = KeapApp::parse("ab123").expect("an app");
    let mut live = input.tokens.into_iter();
    let out = std::io::stdout();
    let mut out = BufWriter::new(out.lock());
    for i in 0..input.count {
        let user = UserId::parse(&format!("seed-{i:06}")).expect("a user id");
        let key = ConnectionKey::new(&partner, &user, &app);
        let due = input.due_every > 0 && i % input.due_every == 0;
        let (access, refresh, expires_in) = match (due, due.then(|| live.next()).flatten()) {
            // Half the margin, and at most 10 minutes: due for any sweep lead.
            (true, Some(t)) => (
                t.access_token,
                t.refresh_token,
                (input.margin_secs / 2).min(600),
            ),
            (true, None) => panic!("fewer live tokens than due connections"),
            (false, _) => (format!("idle-at-{i}"), format!("idle-rt-{i}"), 86_400),
        };
        let id = ConnectionId::from_random(random());
        let record = ConnectionRecord::create(
            NewConnection {
                key: &key,
                id: id.clone(),
                user: &user,
                // The sandbox's Ann (its `sub` and app), whose tokens these are.
                who: KeapIdentity {
                    email: "ann@ab123.example".into(),
                    name: "Ann Bee".into(),
                    sub: Some("1".into()),
                    tenant_id: Some(app.as_str().into()),
                },
                app_name: Some("Ann's Bakery".into()),
                access_token: Secret::new(access),
                refresh_token: Secret::new(refresh),
                expires_in,
                refresh_lifetime_secs: input
                    .refresh_lifetime_secs
                    .unwrap_or(DEFAULT_REFRESH_LIFETIME_SECS),
                now: input.now,
                nonce: random(),
            },
            &keys,
        );
        let value = if !due && input.unreadable_idle {
            "unreadable: a sweep must decide from metadata alone".to_owned()
        } else {
            serde_json::to_string(&record).expect("json")
        };
        let line = json!({"key": key.as_str(), "value": value, "metadata": record.metadata()});
        writeln!(out, "{line}").expect("stdout");
        writeln!(
            out,
            "{}",
            json!({"key": kv_keys::connection_id(&id), "value": key.as_str()})
        )
        .expect("stdout");
        if input.index {
            for entry in keaplink_core::search::entries(&record) {
                let meta = keaplink_core::search::Entry { key: key.clone() };
                writeln!(
                    out,
                    "{}",
                    json!({"key": entry, "value": "", "metadata": meta})
                )
                .expect("stdout");
            }
        }
    }
    out.flush().expect("stdout");
}
