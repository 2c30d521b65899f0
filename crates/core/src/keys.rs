//! The Workers KV key layout, in one place. Every key the Worker reads, writes or lists is made
//! here; the store offers named listings built on these prefixes, never raw strings.
//!
//! | key | value |
//! |---|---|
//! | `p/<partner>` | partner record (secrets hashed or sealed) |
//! | `o/<sha256(origin)>/<partner>` | `1`: the origin is allowed by that partner (preflights) |
//! | `c/<partner>/<sha256(user)>/<app>` | connection record (tokens sealed); metadata for listings |
//! | `i/<connection id>` | the connection's key |
//! | `s/<sha256(state)>` | pending link (10 min TTL) |
//! | `r/<sha256(repair token)>` | repair link (kept a week past its expiry, so its page can say "expired") |
//! | `q/<partner>/t/<term>/<connection id>` | search index entry (console): a term of the link |
//! | `q/<partner>/s/needs_reauth/<connection id>` | search index entry: the link needs its user |
//!
//! Outside text (user ids, origins, secrets) only ever appears hashed: keys cap at 512 bytes and
//! a KV listing must not show a partner's raw user ids.

use crate::ids::{storage_hash, ConnectionId, PartnerId, UserId};
use crate::keap::KeapApp;

/// Where a connection lives: the KV key `c/<partner>/<user hash>/<app>`. Deterministic, so a
/// token request that names its app costs one read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectionKey(String);

impl ConnectionKey {
    pub fn new(partner: &PartnerId, user: &UserId, app: &KeapApp) -> Self {
        ConnectionKey(format!("{}{}", user_prefix(partner, user), app.as_str()))
    }

    /// Accepts any well-formed connection key (from a list page or a queue message); the
    /// partner is the one the key names.
    pub fn parse(raw: &str) -> Option<Self> {
        let partner = PartnerId::parse(raw.split('/').nth(1)?)?;
        ConnectionKey::parse_under(&partner, raw)
    }

    /// Accepts a stored pointer only if it is a well-formed key under `partner`.
    pub fn parse_under(partner: &PartnerId, raw: &str) -> Option<Self> {
        let rest = raw.strip_prefix(&partner_prefix(partner))?;
        let (user_key, app) = rest.split_once('/')?;
        let ok = user_key.len() == 43 && KeapApp::parse(app).is_some_and(|a| a.as_str() == app);
        ok.then(|| ConnectionKey(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The partner this key lies under.
    pub fn partner(&self) -> PartnerId {
        // A key exists only once `parse_under` or `new` checked its partner segment.
        PartnerId::parse(self.0.split('/').nth(1).unwrap_or_default())
            .expect("a connection key names a valid partner")
    }

    /// The Keap app this key names.
    pub fn app(&self) -> KeapApp {
        KeapApp::parse(self.0.rsplit('/').next().unwrap_or_default())
            .expect("a connection key names a valid app")
    }

    /// Whether the key belongs to this partner user.
    pub fn is_users(&self, partner: &PartnerId, user: &UserId) -> bool {
        self.0.starts_with(&user_prefix(partner, user))
    }
}

crate::ids::string_id_serde!(ConnectionKey, "a connection key");

/// Every connection of every partner: the sweep's and the re-seal walk's listing.
pub const ALL_CONNECTIONS: &str = "c/";
/// Every partner record.
pub const ALL_PARTNERS: &str = "p/";

/// All connections of one partner: `GET /v1/connections`.
pub fn partner_prefix(partner: &PartnerId) -> String {
    format!("c/{}/", partner.as_str())
}

/// All connections of one partner user: `GET /v1/me/connections`.
pub fn user_prefix(partner: &PartnerId, user: &UserId) -> String {
    format!("c/{}/{}/", partner.as_str(), user.storage_key())
}

/// The partner record.
pub fn partner(id: &PartnerId) -> String {
    format!("{ALL_PARTNERS}{}", id.as_str())
}

/// The partner a `p/` listing entry names.
pub fn partner_of(key: &str) -> Option<PartnerId> {
    key.strip_prefix(ALL_PARTNERS).and_then(PartnerId::parse)
}

/// Preflights carry no credential, so an index answers "does any partner allow this origin?":
/// one key per (origin, partner), listed by this prefix.
pub fn origin_prefix(origin: &str) -> String {
    format!("o/{}/", storage_hash(origin))
}

pub fn origin(origin: &str, partner: &PartnerId) -> String {
    format!("{}{}", origin_prefix(origin), partner.as_str())
}

/// The id → connection key pointer.
pub fn connection_id(id: &ConnectionId) -> String {
    format!("i/{}", id.as_str())
}

/// A pending link, by the hash of its state (a KV reader cannot replay it).
pub fn state(state: &str) -> String {
    format!("s/{}", storage_hash(state))
}

/// A repair link, by the hash of its token.
pub fn repair_link(token: &str) -> String {
    repair_link_hashed(&storage_hash(token))
}

/// A repair link, by that hash (what a repair attempt's state carries instead of the token).
pub fn repair_link_hashed(hash: &str) -> String {
    format!("r/{hash}")
}

/// A search index entry for one term of a link (the console's search):
/// `q/<partner>/t/<term>/<id>`.
pub fn search_term_entry(partner: &PartnerId, term: &str, id: &ConnectionId) -> String {
    format!("{}{term}/{}", search_term_prefix(partner, ""), id.as_str())
}

/// Where the entries of every term starting with `term` are listed.
pub fn search_term_prefix(partner: &PartnerId, term: &str) -> String {
    format!("q/{}/t/{term}", partner.as_str())
}

/// The search index entry saying a link needs its user: `q/<partner>/s/needs_reauth/<id>`.
pub fn needs_reauth_entry(partner: &PartnerId, id: &ConnectionId) -> String {
    format!("{}{}", needs_reauth_prefix(partner), id.as_str())
}

/// Where the links that need their user are listed.
pub fn needs_reauth_prefix(partner: &PartnerId) -> String {
    format!("q/{}/s/needs_reauth/", partner.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ConnectionKey {
        ConnectionKey::new(
            &PartnerId::parse("acme").unwrap(),
            &UserId::parse("u1").unwrap(),
            &KeapApp::parse("ab123").unwrap(),
        )
    }

    #[test]
    fn pointers_must_stay_under_their_partner() {
        let key = key();
        let acme = PartnerId::parse("acme").unwrap();
        let other = PartnerId::parse("other").unwrap();
        assert!(ConnectionKey::parse_under(&acme, key.as_str()).is_some());
        assert!(ConnectionKey::parse_under(&other, key.as_str()).is_none());
        assert!(ConnectionKey::parse_under(&acme, "c/acme/../x/ab123").is_none());
        assert_eq!(ConnectionKey::parse(key.as_str()), Some(key.clone()));
        assert_eq!(key.partner(), acme);
        assert_eq!(key.app().as_str(), "ab123");
        assert!(key.is_users(&acme, &UserId::parse("u1").unwrap()));
        assert!(!key.is_users(&acme, &UserId::parse("u2").unwrap()));
        for bad in [
            "",
            "c/",
            "c/ACME/x/ab123",
            "i/abc",
            "c/acme/short/ab123",
            "p/acme",
        ] {
            assert!(ConnectionKey::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_layout_is_what_the_readme_documents() {
        let acme = PartnerId::parse("acme").unwrap();
        let user = UserId::parse("u/../x").unwrap();
        assert_eq!(partner(&acme), "p/acme");
        assert_eq!(partner_of("p/acme"), Some(acme.clone()));
        assert_eq!(partner_of("c/acme"), None);
        assert!(user_prefix(&acme, &user).starts_with("c/acme/"));
        assert!(!user_prefix(&acme, &user).contains("u/../x"));
        assert_eq!(user_prefix(&acme, &user).len(), "c/acme/".len() + 44);
        assert!(origin("https://a.example", &acme).starts_with("o/"));
        assert!(origin("https://a.example", &acme).ends_with("/acme"));
        assert!(!state("secret-state").contains("secret-state"));
        assert!(!repair_link("secret-link").contains("secret-link"));
        let id = ConnectionId::from_random([1; 16]);
        assert_eq!(connection_id(&id), format!("i/{}", id.as_str()));
        // The console's search index: entries stored by earlier releases are listed by these.
        assert_eq!(
            search_term_entry(&acme, "ann@ab123.example", &id),
            format!("q/acme/t/ann@ab123.example/{}", id.as_str())
        );
        assert_eq!(search_term_prefix(&acme, "ann"), "q/acme/t/ann");
        assert!(search_term_entry(&acme, "ann@ab123.example", &id)
            .starts_with(&search_term_prefix(&acme, "ann")));
        assert_eq!(
            needs_reauth_entry(&acme, &id),
            format!("q/acme/s/needs_reauth/{}", id.as_str())
        );
        assert!(needs_reauth_entry(&acme, &id).starts_with(&needs_reauth_prefix(&acme)));
    }

    #[test]
    fn a_key_serializes_as_its_string() {
        let k = key();
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(json, format!("\"{}\"", k.as_str()));
        assert_eq!(serde_json::from_str::<ConnectionKey>(&json).unwrap(), k);
        assert!(serde_json::from_str::<ConnectionKey>(r#""c/acme/x/ab123""#).is_err());
    }
}
