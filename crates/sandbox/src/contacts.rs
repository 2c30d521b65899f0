//! Contacts, the one Keap record type the sandbox keeps: each belongs to one app, and is shown in
//! REST v1's shape (numeric id, `date_created`) or v2's (string id, `create_time`, unset fields
//! left out). Input is checked field by field so an error names the field, never the value.

use crate::seed;
use keaplink_core::clock::rfc3339;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct Email {
    pub email: String,
    pub field: String,
}

#[derive(Debug, Clone)]
pub struct Phone {
    pub number: String,
    pub field: String,
    pub kind: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Contact {
    pub id: u64,
    pub app: &'static str,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub middle_name: Option<String>,
    pub job_title: Option<String>,
    pub emails: Vec<Email>,
    pub phones: Vec<Phone>,
    pub created: i64,
    pub updated: i64,
}

/// v1 writes times with milliseconds and a numeric offset (`2024-01-10T08:00:00.000+0000`).
fn v1_time(t: i64) -> String {
    let z = rfc3339(t);
    match z.strip_suffix('Z') {
        Some(base) => format!("{base}.000+0000"),
        None => z,
    }
}

impl Contact {
    pub fn v1(&self) -> Value {
        json!({
            "id": self.id,
            "given_name": self.given_name,
            "family_name": self.family_name,
            "middle_name": self.middle_name,
            "job_title": self.job_title,
            "email_addresses": self.emails.iter()
                .map(|e| json!({"email": e.email, "field": e.field})).collect::<Vec<_>>(),
            "phone_numbers": self.phones.iter()
                .map(|p| json!({"number": p.number, "field": p.field, "type": p.kind}))
                .collect::<Vec<_>>(),
            "addresses": [],
            "tag_ids": [],
            "company": null,
            "owner_id": null,
            "email_opted_in": false,
            "email_status": "UnengagedMarketable",
            "date_created": v1_time(self.created),
            "last_updated": v1_time(self.updated),
        })
    }

    pub fn v2(&self) -> Value {
        let mut o = Map::new();
        o.insert("id".into(), json!(self.id.to_string()));
        for (k, v) in [
            ("given_name", &self.given_name),
            ("family_name", &self.family_name),
            ("middle_name", &self.middle_name),
            ("job_title", &self.job_title),
        ] {
            if let Some(v) = v {
                o.insert(k.into(), json!(v));
            }
        }
        let emails: Vec<Value> = self
            .emails
            .iter()
            .map(|e| {
                json!({"email": e.email, "field": e.field, "is_opt_in": false,
                    "email_opt_status": "UNENGAGED_MARKETABLE"})
            })
            .collect();
        o.insert("email_addresses".into(), json!(emails));
        let phones: Vec<Value> = self
            .phones
            .iter()
            .map(|p| {
                let mut v = json!({"number": p.number, "field": p.field});
                if let Some(k) = &p.kind {
                    v["type"] = json!(k);
                }
                v
            })
            .collect();
        o.insert("phone_numbers".into(), json!(phones));
        o.insert("create_time".into(), json!(rfc3339(self.created)));
        o.insert("update_time".into(), json!(rfc3339(self.updated)));
        Value::Object(o)
    }

    pub fn has_email(&self, email: &str) -> bool {
        self.emails
            .iter()
            .any(|e| e.email.eq_ignore_ascii_case(email))
    }
}

#[derive(Debug)]
pub struct Contacts {
    by_id: BTreeMap<u64, Contact>,
    next_id: u64,
    /// Tags applied: (contact id, tag id).
    pub applied: std::collections::BTreeSet<(u64, u64)>,
    /// Notes: (id, contact id, title, text, created).
    pub notes: Vec<(u64, u64, Option<String>, String, i64)>,
}

/// The tags every sandbox app has: (id, name, category).
pub const TAGS: &[(u64, &str, &str)] = &[
    (101, "Customer", "Lifecycle"),
    (102, "Lead", "Lifecycle"),
    (103, "VIP", "Priority"),
];

impl Contacts {
    pub fn seeded() -> Self {
        let mut c = Contacts {
            by_id: BTreeMap::new(),
            next_id: seed::FIRST_CONTACT_ID,
            applied: Default::default(),
            notes: Vec::new(),
        };
        for (i, (app, given, family)) in seed::CONTACTS.iter().enumerate() {
            let at = seed::CONTACTS_CREATED_AT + 3_600 * i as i64;
            let id = c.next_id;
            c.next_id += 1;
            let email = format!(
                "{}.{}@mail.example",
                given.to_lowercase(),
                family.to_lowercase()
            );
            c.by_id.insert(
                id,
                Contact {
                    id,
                    app,
                    given_name: Some((*given).into()),
                    family_name: Some((*family).into()),
                    middle_name: None,
                    job_title: None,
                    emails: vec![Email {
                        email,
                        field: "EMAIL1".into(),
                    }],
                    phones: vec![Phone {
                        number: format!("555-01{:02}", id % 100),
                        field: "PHONE1".into(),
                        kind: Some("Mobile".into()),
                    }],
                    created: at,
                    updated: at,
                },
            );
        }
        c
    }

    /// An app's contacts in id order.
    pub fn of<'a>(&'a self, app: &'a str) -> impl Iterator<Item = &'a Contact> + 'a {
        self.by_id.values().filter(move |c| c.app == app)
    }

    /// Another app's contact is not found, exactly like one that never existed.
    pub fn get(&self, app: &str, id: u64) -> Option<&Contact> {
        self.by_id.get(&id).filter(|c| c.app == app)
    }

    pub fn get_mut(&mut self, app: &str, id: u64) -> Option<&mut Contact> {
        self.by_id.get_mut(&id).filter(|c| c.app == app)
    }

    pub fn remove(&mut self, app: &str, id: u64) -> bool {
        if self.get(app, id).is_none() {
            return false;
        }
        self.by_id.remove(&id).is_some()
    }

    pub fn create(
        &mut self,
        app: &'static str,
        fields: &Map<String, Value>,
        now: i64,
    ) -> Result<Contact, String> {
        let mut c = Contact {
            id: 0,
            app,
            given_name: None,
            family_name: None,
            middle_name: None,
            job_title: None,
            emails: vec![],
            phones: vec![],
            created: now,
            updated: now,
        };
        apply(&mut c, fields, None)?;
        if c.emails.is_empty() && c.phones.is_empty() {
            return Err("a contact needs at least one of email_addresses or phone_numbers".into());
        }
        c.id = self.next_id;
        self.next_id += 1;
        self.by_id.insert(c.id, c.clone());
        Ok(c)
    }
}

/// Contact properties Keap's v2 `update_mask` accepts. Only some are modelled here; naming one
/// that is not is accepted (as Keap would) and changes nothing.
pub const UPDATE_MASK_FIELDS: &[&str] = &[
    "addresses",
    "anniversary_date",
    "birth_date",
    "company",
    "contact_type",
    "create_time",
    "custom_fields",
    "email_addresses",
    "family_name",
    "fax_numbers",
    "given_name",
    "id",
    "job_title",
    "leadsource_id",
    "links",
    "middle_name",
    "notes",
    "origin",
    "owner_id",
    "phone_numbers",
    "preferred_locale",
    "preferred_name",
    "prefix",
    "referral_code",
    "score_value",
    "social_accounts",
    "source_type",
    "spouse_name",
    "suffix",
    "tag_ids",
    "time_zone",
    "update_time",
    "utm_parameters",
    "website",
    "account_id",
    "assistant_name",
    "assistant_phone",
    "billing_information",
    "created_by",
    "groups",
    "last_updated_by",
];

fn text(body: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= 255 => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(format!("{key} is longer than 255 characters")),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

fn slots(
    body: &Map<String, Value>,
    key: &str,
    value_key: &str,
    slot_prefix: &str,
    max_slots: usize,
) -> Result<Vec<(String, String, Option<String>)>, String> {
    let items = match body.get(key) {
        None | Some(Value::Null) => return Ok(vec![]),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(format!("{key} must be an array")),
    };
    if items.len() > max_slots {
        return Err(format!("{key} holds at most {max_slots} entries"));
    }
    let mut out: Vec<(String, String, Option<String>)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(o) = item.as_object() else {
            return Err(format!("{key}[{i}] must be an object"));
        };
        let value = match o.get(value_key) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
            _ => return Err(format!("{key}[{i}].{value_key} must be a non-empty string")),
        };
        let slot = match o.get("field") {
            None | Some(Value::Null) => format!("{slot_prefix}{}", i + 1),
            Some(Value::String(f))
                if f.strip_prefix(slot_prefix)
                    .and_then(|n| n.parse::<usize>().ok())
                    .is_some_and(|n| (1..=max_slots).contains(&n)) =>
            {
                f.clone()
            }
            Some(_) => {
                return Err(format!(
                    "{key}[{i}].field must be one of {slot_prefix}1..{slot_prefix}{max_slots}"
                ))
            }
        };
        if out.iter().any(|(_, s, _)| *s == slot) {
            return Err(format!("{key}[{i}].field repeats {slot}"));
        }
        let kind = match o.get("type") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) => Some(t.clone()),
            Some(_) => return Err(format!("{key}[{i}].type must be a string")),
        };
        out.push((value, slot, kind));
    }
    Ok(out)
}

/// Sets the modelled properties `body` carries (or, with `only`, the ones named there: a named
/// property missing from the body is cleared, as a field mask means).
pub fn apply(
    c: &mut Contact,
    body: &Map<String, Value>,
    only: Option<&[String]>,
) -> Result<(), String> {
    let wanted = |k: &str| match only {
        Some(names) => names.iter().any(|n| n == k),
        None => body.contains_key(k),
    };
    // Everything is checked before anything changes: a bad field leaves the contact as it was.
    let given = text(body, "given_name")?;
    let family = text(body, "family_name")?;
    let middle = text(body, "middle_name")?;
    let job = text(body, "job_title")?;
    let emails = slots(body, "email_addresses", "email", "EMAIL", 3)?;
    if let Some(i) = emails
        .iter()
        .position(|(e, _, _)| !e.contains('@') || e.len() > 100)
    {
        return Err(format!(
            "email_addresses[{i}].email is not an email address"
        ));
    }
    let phones = slots(body, "phone_numbers", "number", "PHONE", 5)?;
    if wanted("given_name") {
        c.given_name = given;
    }
    if wanted("family_name") {
        c.family_name = family;
    }
    if wanted("middle_name") {
        c.middle_name = middle;
    }
    if wanted("job_title") {
        c.job_title = job;
    }
    if wanted("email_addresses") {
        c.emails = emails
            .into_iter()
            .map(|(email, field, _)| Email { email, field })
            .collect();
    }
    if wanted("phone_numbers") {
        c.phones = phones
            .into_iter()
            .map(|(number, field, kind)| Phone {
                number,
                field,
                kind,
            })
            .collect();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn seeds_belong_to_their_apps_and_ids_are_global() {
        let c = Contacts::seeded();
        let ab: Vec<u64> = c.of("ab123").map(|c| c.id).collect();
        assert_eq!(ab, [101, 102, 103]);
        assert!(
            c.get("cd456", 101).is_none(),
            "another app's id is not found"
        );
        assert_eq!(
            c.get("cd456", 104).unwrap().given_name.as_deref(),
            Some("Gus")
        );
    }

    #[test]
    fn shapes_follow_the_api_version() {
        let c = Contacts::seeded();
        let ben = c.get("ab123", 101).unwrap();
        let v1 = ben.v1();
        assert_eq!(v1["id"], 101);
        assert_eq!(v1["date_created"], "2024-01-10T08:00:00.000+0000");
        assert_eq!(v1["email_addresses"][0]["email"], "ben.crumb@mail.example");
        let v2 = ben.v2();
        assert_eq!(v2["id"], "101");
        assert_eq!(v2["create_time"], "2024-01-10T08:00:00Z");
        assert!(v2.get("middle_name").is_none(), "unset fields are left out");
    }

    #[test]
    fn bad_fields_are_named_and_change_nothing() {
        let mut c = Contacts::seeded();
        let ben = c.get_mut("ab123", 101).unwrap();
        let err = apply(
            ben,
            &obj(json!({"given_name": "Benny", "family_name": 7})),
            None,
        )
        .unwrap_err();
        assert_eq!(err, "family_name must be a string");
        assert_eq!(ben.given_name.as_deref(), Some("Ben"));
        let err = apply(
            ben,
            &obj(json!({"email_addresses": [{"email": "x@y", "field": "EMAIL9"}]})),
            None,
        )
        .unwrap_err();
        assert!(err.contains("EMAIL1..EMAIL3"), "{err}");
        let err = c
            .create("ab123", &obj(json!({"given_name": "Nobody"})), 0)
            .unwrap_err();
        assert!(err.contains("at least one"), "{err}");
    }

    #[test]
    fn a_mask_clears_what_it_names_and_the_body_lacks() {
        let mut c = Contacts::seeded();
        let ben = c.get_mut("ab123", 101).unwrap();
        let only = ["family_name".to_owned(), "job_title".to_owned()];
        apply(
            ben,
            &obj(json!({"given_name": "Ignored", "job_title": "Chef"})),
            Some(&only),
        )
        .unwrap();
        assert_eq!(ben.given_name.as_deref(), Some("Ben"));
        assert_eq!(ben.family_name, None);
        assert_eq!(ben.job_title.as_deref(), Some("Chef"));
    }
}
