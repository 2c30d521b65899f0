//! Who and what the sandbox starts with: its Keap apps (tenants) with their business profiles,
//! the Keap users who can sign in (one shared password) and which apps each can reach, and the
//! few contacts every app holds. Fixed data: tests and the login page name these users.

/// A Keap app (a tenant, e.g. `ab123.infusionsoft.com`) and the business that owns it.
#[derive(Debug, Clone)]
pub struct SeedApp {
    pub id: &'static str,
    /// The business name (`name` of the v2 business profile).
    pub name: &'static str,
    pub business_type: &'static str,
    pub city: &'static str,
}

pub const APPS: &[SeedApp] = &[
    SeedApp {
        id: "ab123",
        name: "Ann's Bakery",
        business_type: "Bakery",
        city: "Phoenix",
    },
    SeedApp {
        id: "cd456",
        name: "Bob's Bikes",
        business_type: "Bicycle shop",
        city: "Tucson",
    },
    SeedApp {
        id: "ef789",
        name: "Cat's Cafe",
        business_type: "Cafe",
        city: "Mesa",
    },
    SeedApp {
        id: "gh012",
        name: "Dan's Deli",
        business_type: "Delicatessen",
        city: "Tempe",
    },
    SeedApp {
        id: "ij345",
        name: "Dan's Dive Shop",
        business_type: "Dive shop",
        city: "Yuma",
    },
];

/// A Keap user of the sandbox and the apps they can sign in to (the first is preselected on
/// the consent page; with one app there is no choice to make).
#[derive(Debug, Clone)]
pub struct SeedUser {
    pub email: &'static str,
    pub given_name: &'static str,
    pub family_name: &'static str,
    pub apps: &'static [&'static str],
    /// Keap's user id (`sub` of both userinfo endpoints): stable across runs.
    pub sub: &'static str,
    pub is_admin: bool,
    /// What a partner rehearses with this user (the landing page and the README say it).
    pub for_trying: &'static str,
}

pub const USERS: &[SeedUser] = &[
    SeedUser {
        email: "ann@ab123.example",
        given_name: "Ann",
        family_name: "Bee",
        apps: &["ab123"],
        sub: "1",
        is_admin: true,
        for_trying: "a first link; every rehearsal of the README's \"Rehearse the hard paths\" uses her link",
    },
    SeedUser {
        email: "bob@cd456.example",
        given_name: "Bob",
        family_name: "Cee",
        apps: &["cd456"],
        sub: "2",
        is_admin: true,
        for_trying: "a second person on the same browser: Keap's single sign-on must not link Ann again",
    },
    SeedUser {
        email: "cat@ef789.example",
        given_name: "Cat",
        family_name: "Dee",
        apps: &["ef789"],
        sub: "3",
        is_admin: true,
        for_trying: "one more independent link",
    },
    // Another Keap user of Ann's app: same tenant, different person.
    SeedUser {
        email: "amy@ab123.example",
        given_name: "Amy",
        family_name: "Ash",
        apps: &["ab123"],
        sub: "4",
        is_admin: false,
        for_trying: "another person in Ann's Keap app: a Reconnect of Ann's link signed in as Amy is refused (identity lock)",
    },
    // One person, two apps: the consent page asks which one to link.
    SeedUser {
        email: "dan@gh012.example",
        given_name: "Dan",
        family_name: "Fox",
        apps: &["gh012", "ij345"],
        sub: "5",
        is_admin: true,
        for_trying: "a person with two Keap apps: the consent page asks which app to link",
    },
];

/// Every seeded user's password. It is a sandbox: the login page says so.
pub const PASSWORD: &str = "keap";

pub fn app(id: &str) -> Option<&'static SeedApp> {
    APPS.iter().find(|a| a.id == id)
}

pub fn user_index(email: &str) -> Option<usize> {
    USERS
        .iter()
        .position(|u| u.email.eq_ignore_ascii_case(email.trim()))
}

/// `(app, given name, family name)` of the contacts each app starts with; emails and phones are
/// derived from the names. Ids are handed out in this order, from [`FIRST_CONTACT_ID`].
pub const CONTACTS: &[(&str, &str, &str)] = &[
    ("ab123", "Ben", "Crumb"),
    ("ab123", "Dora", "Dough"),
    ("ab123", "Eli", "Rye"),
    ("cd456", "Gus", "Gear"),
    ("cd456", "Hana", "Spoke"),
    ("cd456", "Ivo", "Pedal"),
    ("ef789", "Jo", "Bean"),
    ("ef789", "Kai", "Latte"),
    ("ef789", "Lia", "Mocha"),
    ("gh012", "Max", "Pickle"),
    ("gh012", "Nia", "Bagel"),
    ("gh012", "Oto", "Salami"),
    ("ij345", "Pia", "Reef"),
    ("ij345", "Quin", "Fin"),
    ("ij345", "Rae", "Coral"),
];

/// Ids are global, not per app, so an id of another app's contact is simply not found.
pub const FIRST_CONTACT_ID: u64 = 101;

/// When the seeded contacts were created (2024-01-10T08:00:00Z), one hour apart.
pub const CONTACTS_CREATED_AT: i64 = 1_704_873_600;
