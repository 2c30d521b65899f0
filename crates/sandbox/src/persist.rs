//! The sandbox's memory across restarts (`--state FILE`): its Keap sessions and live tokens, so a
//! link made before `./scripts/dev` stopped still refreshes after it starts again, as it would
//! with Keap. Dead tokens are not kept (an unknown token is refused as a dead one is), nor are
//! faults, counts or quota windows. The file is written a moment after a change (atomically:
//! a temporary file renamed over it) and read once at start; one it cannot read is reported and
//! ignored, never half-loaded.

use crate::seed::{self, USERS};
use crate::{AccessGrant, Inner, RefreshGrant, Shared};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    version: u32,
    /// SSO session id → the user's email.
    sessions: BTreeMap<String, String>,
    access: BTreeMap<String, SavedAccess>,
    refresh: BTreeMap<String, SavedRefresh>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedAccess {
    email: String,
    app: String,
    expires_at: u64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedRefresh {
    email: String,
    app: String,
}

const VERSION: u32 = 1;

fn snapshot(g: &Inner) -> Saved {
    let email = |u: usize| USERS[u].email.to_owned();
    Saved {
        version: VERSION,
        sessions: g
            .sessions
            .iter()
            .map(|(sid, u)| (sid.clone(), email(*u)))
            .collect(),
        access: g
            .access
            .iter()
            .filter(|(_, a)| a.alive)
            .map(|(t, a)| {
                let saved = SavedAccess {
                    email: email(a.user),
                    app: a.app.into(),
                    expires_at: a.expires_at,
                };
                (t.clone(), saved)
            })
            .collect(),
        refresh: g
            .refresh
            .iter()
            .filter(|(_, r)| r.alive)
            .map(|(t, r)| {
                let saved = SavedRefresh {
                    email: email(r.user),
                    app: r.app.into(),
                };
                (t.clone(), saved)
            })
            .collect(),
    }
}

/// The user and the app as the sandbox knows them; `None` for one it does not have (any more).
fn known(email: &str, app: &str) -> Option<(usize, &'static str)> {
    let u = seed::user_index(email)?;
    let app = *USERS[u].apps.iter().find(|a| **a == app)?;
    Some((u, app))
}

/// Reads `path` into `g`: everything or nothing. A missing file is a first start.
pub(crate) fn load(path: &Path, g: &mut Inner) -> Result<usize, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let saved: Saved = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a sandbox state file: {e}", path.display()))?;
    if saved.version != VERSION {
        return Err(format!(
            "{} is version {}, this sandbox reads {VERSION}",
            path.display(),
            saved.version
        ));
    }
    let mut sessions = Vec::new();
    let mut access = Vec::new();
    let mut refresh = Vec::new();
    for (sid, email) in saved.sessions {
        if let Some(u) = seed::user_index(&email) {
            sessions.push((sid, u));
        }
    }
    for (t, a) in saved.access {
        if let Some((user, app)) = known(&a.email, &a.app) {
            let grant = AccessGrant {
                user,
                app,
                expires_at: a.expires_at,
                alive: true,
            };
            access.push((t, grant));
        }
    }
    for (t, r) in saved.refresh {
        if let Some((user, app)) = known(&r.email, &r.app) {
            // Only live tokens are kept: none was rotated yet.
            let grant = RefreshGrant {
                user,
                app,
                alive: true,
                rotated: false,
                answer_lost: false,
            };
            refresh.push((t, grant));
        }
    }
    let n = refresh.len();
    g.sessions.extend(sessions);
    g.access.extend(access);
    g.refresh.extend(refresh);
    Ok(n)
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    std::fs::write(&tmp, text)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, path)
}

/// Writes the state to `path` whenever it changed, checking every `every`; runs until the
/// process ends.
pub(crate) async fn keep(s: Shared, path: PathBuf, every: Duration) {
    let mut last = String::new();
    loop {
        tokio::time::sleep(every).await;
        let text = {
            let g = s.lock();
            serde_json::to_string_pretty(&snapshot(&g)).unwrap_or_default()
        };
        if text != last {
            match write(&path, &text) {
                Ok(()) => last = text,
                Err(e) => eprintln!("keaplink-sandbox: cannot write {}: {e}", path.display()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_saved_loads_back_and_dead_tokens_are_not_kept() {
        let mut g = Inner::default();
        g.sessions.insert("sid".into(), 1);
        let grant = |alive| RefreshGrant {
            user: 4,
            app: "ij345",
            alive,
            rotated: !alive,
            answer_lost: false,
        };
        g.refresh.insert("live".into(), grant(true));
        g.refresh.insert("dead".into(), grant(false));
        g.access.insert(
            "a".into(),
            AccessGrant {
                user: 0,
                app: "ab123",
                expires_at: 99,
                alive: true,
            },
        );
        let saved = snapshot(&g);
        assert_eq!(saved.refresh.len(), 1);
        let dir = std::env::temp_dir().join(format!("keaplink-sandbox-{}", std::process::id()));
        let path = dir.join("state.json");
        write(&path, &serde_json::to_string(&saved).unwrap()).unwrap();
        let mut back = Inner::default();
        assert_eq!(load(&path, &mut back), Ok(1));
        assert_eq!(snapshot(&back), saved);
        assert_eq!(back.refresh["live"].app, "ij345");
        assert!(!back.refresh.contains_key("dead"));

        // Bad files change nothing and say why.
        std::fs::write(
            &path,
            r#"{"version": 1, "sessions": {}, "access": {}, "refresh": {"t": {"email": 1}}}"#,
        )
        .unwrap();
        let mut none = Inner::default();
        let err = load(&path, &mut none).unwrap_err();
        assert!(err.contains("not a sandbox state file"), "{err}");
        assert!(none.refresh.is_empty() && none.sessions.is_empty());
        std::fs::write(
            &path,
            r#"{"version": 9, "sessions": {}, "access": {}, "refresh": {}}"#,
        )
        .unwrap();
        assert!(load(&path, &mut none).unwrap_err().contains("version 9"));
        // A user or app the sandbox no longer has is skipped, not guessed.
        std::fs::write(&path, r#"{"version": 1, "sessions": {}, "access": {}, "refresh": {"t": {"email": "ann@ab123.example", "app": "zz999"}}}"#).unwrap();
        assert_eq!(load(&path, &mut none), Ok(0));
        assert_eq!(load(&dir.join("missing.json"), &mut none), Ok(0));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
