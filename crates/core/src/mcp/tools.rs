//! The Keap tools an MCP client gets: which a grant lists and may call, the Keap REST v2 call
//! each makes, and the answer trimmed to what an agent needs (Keap ids kept). Failures are tool
//! results a model can act on, not protocol errors.

use super::oauth::Access;
use keaplink_api::McpTools;
use serde_json::{json, Map, Value};
use url::form_urlencoded;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    SearchContacts,
    GetContact,
    ListTags,
    CreateContact,
    ApplyTags,
    AddNote,
}

pub const ALL: [Tool; 6] = [
    Tool::SearchContacts,
    Tool::GetContact,
    Tool::ListTags,
    Tool::CreateContact,
    Tool::ApplyTags,
    Tool::AddNote,
];

/// Keap REST v2, under the deployment's Keap API URL.
const V2: &str = "/crm/rest/v2";
pub const MAX_SEARCH: u64 = 50;

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::SearchContacts => "search_contacts",
            Tool::GetContact => "get_contact",
            Tool::ListTags => "list_tags",
            Tool::CreateContact => "create_contact",
            Tool::ApplyTags => "apply_tags",
            Tool::AddNote => "add_note",
        }
    }

    pub fn parse(name: &str) -> Option<Tool> {
        ALL.into_iter().find(|t| t.name() == name)
    }

    pub fn writes(self) -> bool {
        matches!(self, Tool::CreateContact | Tool::ApplyTags | Tool::AddNote)
    }

    /// Whether a grant of `access` may list and call it.
    pub fn granted(self, access: Access) -> bool {
        !self.writes() || access == McpTools::ReadWrite
    }
}

/// The read tools as `tools/list` lists them (JSON, written out: a `json!` per tool cost the
/// Worker ~9 KB of wasm).
const READ_TOOLS: &str = r#"{"name":"search_contacts","description":"Find contacts in the linked Keap account by exact email address, or by name (\"Ada\" matches first names starting with Ada; \"Ada Lovelace\" matches first name Ada and last name starting with Lovelace). Answers each contact's Keap id, names, emails and phones.","inputSchema":{"type":"object","properties":{"email":{"type":"string","description":"An exact email address."},"name":{"type":"string","description":"A first name, or a first and a last name."},"limit":{"type":"integer","minimum":1,"maximum":50,"default":10}},"additionalProperties":false},"annotations":{"readOnlyHint":true,"destructiveHint":false,"openWorldHint":true}},{"name":"get_contact","description":"Read one contact by its Keap id: names, job title, emails, phones, when created and updated.","inputSchema":{"type":"object","properties":{"contact_id":{"type":"string","pattern":"^[0-9]{1,19}$","description":"The contact's Keap id."}},"required":["contact_id"],"additionalProperties":false},"annotations":{"readOnlyHint":true,"destructiveHint":false,"openWorldHint":true}},{"name":"list_tags","description":"List the tags defined in the linked Keap account, with their Keap ids (apply_tags takes a tag id).","inputSchema":{"type":"object","properties":{},"additionalProperties":false},"annotations":{"readOnlyHint":true,"destructiveHint":false,"openWorldHint":true}}"#;

/// The write tools, listed after the read tools for a read-write grant.
const WRITE_TOOLS: &str = r#"{"name":"create_contact","description":"Create a contact in the linked Keap account. Search first: Keap does not refuse a duplicate email. Answers the new contact with its Keap id.","inputSchema":{"type":"object","properties":{"email":{"type":"string","description":"The contact's email address."},"given_name":{"type":"string"},"family_name":{"type":"string"}},"required":["email"],"additionalProperties":false},"annotations":{"readOnlyHint":false,"destructiveHint":false,"openWorldHint":true}},{"name":"apply_tags","description":"Apply one tag (by its Keap id, from list_tags) to one or more contacts (by their Keap ids).","inputSchema":{"type":"object","properties":{"tag_id":{"type":"string","pattern":"^[0-9]{1,19}$","description":"The tag's Keap id."},"contact_ids":{"type":"array","items":{"type":"string","pattern":"^[0-9]{1,19}$"},"minItems":1,"maxItems":100}},"required":["tag_id","contact_ids"],"additionalProperties":false},"annotations":{"readOnlyHint":false,"destructiveHint":false,"openWorldHint":true}},{"name":"add_note","description":"Add a note to a contact's record (by the contact's Keap id).","inputSchema":{"type":"object","properties":{"contact_id":{"type":"string","pattern":"^[0-9]{1,19}$","description":"The contact's Keap id."},"text":{"type":"string","minLength":1,"maxLength":10000},"title":{"type":"string","maxLength":255}},"required":["contact_id","text"],"additionalProperties":false},"annotations":{"readOnlyHint":false,"destructiveHint":false,"openWorldHint":true}}"#;

/// `tools/list`'s result for a grant of `access`, as JSON text: the tools outside it are not
/// listed.
pub fn list(access: Access) -> String {
    match access {
        McpTools::Read => format!("{{\"tools\":[{READ_TOOLS}]}}"),
        McpTools::ReadWrite => format!("{{\"tools\":[{READ_TOOLS},{WRITE_TOOLS}]}}"),
    }
}

/// The call to Keap a tool makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeapCall {
    pub method: &'static str,
    /// From `/`, with its query.
    pub path_and_query: String,
    pub body: Option<Vec<u8>>,
}

fn text<'a>(
    args: &'a Map<String, Value>,
    key: &str,
    max: usize,
) -> Result<Option<&'a str>, String> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(format!("{key} must not be empty.")),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.trim())),
        Some(Value::String(_)) => Err(format!("{key} is at most {max} characters.")),
        Some(_) => Err(format!("{key} must be a string.")),
    }
}

fn keap_id(v: Option<&Value>, key: &str) -> Result<String, String> {
    let s = match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        None | Some(Value::Null) => return Err(format!("{key} is required.")),
        _ => return Err(format!("{key} must be a Keap id (a string of digits).")),
    };
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{key} must be a Keap id (a string of digits), e.g. \"12\"."
        ));
    }
    Ok(s)
}

fn no_others(args: &Map<String, Value>, known: &[&str]) -> Result<(), String> {
    match args.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "Unknown argument {k:?}; this tool takes {}.",
            known.join(", ")
        )),
        None => Ok(()),
    }
}

/// A value in a Keap v2 filter: no `;` or `==`, which would change the filter.
fn filter_value(v: &str) -> Result<&str, String> {
    if v.contains(';') || v.contains("==") || v.contains('*') {
        return Err("A search value may not contain ;, == or *.".into());
    }
    Ok(v)
}

/// The Keap call `tool` makes with `args`; an error is a sentence for the model.
pub fn plan(tool: Tool, args: &Value) -> Result<KeapCall, String> {
    let empty = Map::new();
    let args = match args {
        Value::Object(o) => o,
        Value::Null => &empty,
        _ => return Err("arguments must be an object.".into()),
    };
    let get = |path: String| KeapCall {
        method: "GET",
        path_and_query: path,
        body: None,
    };
    let post = |path: String, body: Value| KeapCall {
        method: "POST",
        path_and_query: path,
        body: Some(body.to_string().into_bytes()),
    };
    match tool {
        Tool::SearchContacts => {
            no_others(args, &["email", "name", "limit"])?;
            let limit = match args.get("limit") {
                None | Some(Value::Null) => 10,
                Some(v) => v
                    .as_u64()
                    .filter(|n| (1..=MAX_SEARCH).contains(n))
                    .ok_or("limit must be a whole number from 1 to 50.")?,
            };
            let filter = match (text(args, "email", 254)?, text(args, "name", 200)?) {
                (Some(e), None) => format!("email=={}", filter_value(e)?),
                (None, Some(n)) => match n.split_once(' ') {
                    Some((first, last)) => format!(
                        "given_name=={};family_name=={}*",
                        filter_value(first)?,
                        filter_value(last.trim())?
                    ),
                    None => format!("given_name=={}*", filter_value(n)?),
                },
                _ => return Err("Give exactly one of email or name.".into()),
            };
            let q = form_urlencoded::Serializer::new(String::new())
                .append_pair("filter", &filter)
                .append_pair("page_size", &limit.to_string())
                .finish();
            Ok(get(format!("{V2}/contacts?{q}")))
        }
        Tool::GetContact => {
            no_others(args, &["contact_id"])?;
            let id = keap_id(args.get("contact_id"), "contact_id")?;
            Ok(get(format!("{V2}/contacts/{id}")))
        }
        Tool::ListTags => {
            no_others(args, &[])?;
            Ok(get(format!("{V2}/tags?page_size=1000")))
        }
        Tool::CreateContact => {
            no_others(args, &["email", "given_name", "family_name"])?;
            let email = text(args, "email", 254)?.ok_or("email is required.")?;
            if !email.contains('@') {
                return Err("email must be an email address.".into());
            }
            let mut body = json!({"email_addresses": [{"email": email, "field": "EMAIL1"}]});
            for k in ["given_name", "family_name"] {
                if let Some(v) = text(args, k, 255)? {
                    body[k] = json!(v);
                }
            }
            Ok(post(format!("{V2}/contacts"), body))
        }
        Tool::ApplyTags => {
            no_others(args, &["tag_id", "contact_ids"])?;
            let tag = keap_id(args.get("tag_id"), "tag_id")?;
            let ids = match args.get("contact_ids") {
                Some(Value::Array(a)) if !a.is_empty() && a.len() <= 100 => a
                    .iter()
                    .map(|v| keap_id(Some(v), "each of contact_ids"))
                    .collect::<Result<Vec<_>, _>>()?,
                _ => return Err("contact_ids must list 1-100 contact ids.".into()),
            };
            Ok(post(
                format!("{V2}/tags/{tag}/contacts:applyTags"),
                json!({ "contact_ids": ids }),
            ))
        }
        Tool::AddNote => {
            no_others(args, &["contact_id", "text", "title"])?;
            let id = keap_id(args.get("contact_id"), "contact_id")?;
            let body_text = text(args, "text", 10_000)?.ok_or("text is required.")?;
            let mut body = json!({ "text": body_text });
            if let Some(t) = text(args, "title", 255)? {
                body["title"] = json!(t);
            }
            Ok(post(format!("{V2}/contacts/{id}/notes"), body))
        }
    }
}

/// A tool result: `content` as text (JSON for data), `isError` when the model must change course.
pub fn result(text: String, is_error: bool) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": is_error})
}

fn contact(c: &Value) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), c.get("id").cloned().unwrap_or(Value::Null));
    for k in [
        "given_name",
        "family_name",
        "job_title",
        "create_time",
        "update_time",
    ] {
        if let Some(v) = c.get(k).filter(|v| !v.is_null()) {
            o.insert(k.into(), v.clone());
        }
    }
    let list = |key: &str, field: &str| -> Value {
        c.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|e| e.get(field).cloned()).collect())
            .unwrap_or_else(|| json!([]))
    };
    o.insert("emails".into(), list("email_addresses", "email"));
    o.insert("phones".into(), list("phone_numbers", "number"));
    if let Some(t) = c.get("tag_ids").filter(|t| t.is_array()) {
        o.insert("tag_ids".into(), t.clone());
    }
    Value::Object(o)
}

/// Keap's error message, if its answer carries one (v2: `{"message"}`).
fn keap_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("message")
        .and_then(Value::as_str)
        .map(|m| m.chars().take(300).collect())
}

/// The tool result for Keap's answer (`status`, `body`) to the call `tool` made with `args`.
pub fn answer(tool: Tool, args: &Value, status: u16, body: &[u8]) -> (Value, &'static str) {
    if !(200..300).contains(&status) {
        let said = keap_message(body)
            .map(|m| format!(" Keap said: {m}"))
            .unwrap_or_default();
        let text = match status {
            404 => format!("Keap has no such record in this account (check the id; search or list first).{said}"),
            400 | 422 => format!("Keap refused the request as invalid; correct the arguments and try again.{said}"),
            403 => format!("This Keap account does not allow that operation for its user.{said}"),
            _ => format!("Keap answered HTTP {status}; try again later.{said}"),
        };
        return (result(text, true), "keap_refused");
    }
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let out = match tool {
        Tool::SearchContacts => {
            let contacts: Vec<Value> = v
                .get("contacts")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(contact).collect())
                .unwrap_or_default();
            let more = v
                .get("next_page_token")
                .and_then(Value::as_str)
                .is_some_and(|t| !t.is_empty());
            json!({"contacts": contacts, "more": more})
        }
        Tool::GetContact | Tool::CreateContact => contact(&v),
        Tool::ListTags => {
            let tags: Vec<Value> = v
                .get("tags")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|t| {
                            json!({"id": t.get("id"), "name": t.get("name"),
                                "category": t.get("category").and_then(|c| c.get("name"))})
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({ "tags": tags })
        }
        Tool::ApplyTags => json!({
            "applied": true,
            "tag_id": args.get("tag_id"),
            "contact_ids": args.get("contact_ids"),
        }),
        Tool::AddNote => json!({
            "note_id": v.get("id"),
            "contact_id": args.get("contact_id"),
        }),
    };
    (result(out.to_string(), false), "ok")
}

/// The tool result of a link that needs its user.
pub fn needs_reauth(partner_name: &str) -> Value {
    result(
        format!("needs_reauth: Keap no longer accepts this link. Ask the user to reconnect their Keap account in {partner_name} (its Keap connection settings), then try again; this MCP connection keeps working once they have."),
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &Value) -> Vec<&str> {
        v["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn a_read_grant_lists_no_write_tool() {
        let read: Value = serde_json::from_str(&list(McpTools::Read)).unwrap();
        let all: Value = serde_json::from_str(&list(McpTools::ReadWrite)).unwrap();
        assert_eq!(
            names(&read),
            ["search_contacts", "get_contact", "list_tags"]
        );
        let listed: Vec<&str> = names(&all);
        assert_eq!(listed, ALL.map(Tool::name));
        for t in ALL {
            assert_eq!(t.granted(McpTools::Read), !t.writes());
            assert!(t.granted(McpTools::ReadWrite));
            assert_eq!(Tool::parse(t.name()), Some(t));
        }
        for (t, tool) in all["tools"].as_array().unwrap().iter().zip(ALL) {
            assert_eq!(t["inputSchema"]["type"], "object");
            assert!(t["description"].as_str().unwrap().len() > 20);
            assert_eq!(t["annotations"]["readOnlyHint"], !tool.writes());
        }
        assert_eq!(
            all["tools"][0]["inputSchema"]["properties"]["limit"]["maximum"],
            MAX_SEARCH
        );
    }

    #[test]
    fn plans_the_keap_v2_calls() {
        let p = plan(Tool::SearchContacts, &json!({"email": "ada@example.com"})).unwrap();
        assert_eq!(p.method, "GET");
        assert_eq!(
            p.path_and_query,
            "/crm/rest/v2/contacts?filter=email%3D%3Dada%40example.com&page_size=10"
        );
        let p = plan(
            Tool::SearchContacts,
            &json!({"name": "Ada Love", "limit": 3}),
        )
        .unwrap();
        assert!(p
            .path_and_query
            .contains("given_name%3D%3DAda%3Bfamily_name%3D%3DLove*"));
        assert_eq!(
            plan(Tool::GetContact, &json!({"contact_id": 12}))
                .unwrap()
                .path_and_query,
            "/crm/rest/v2/contacts/12"
        );
        let p = plan(
            Tool::ApplyTags,
            &json!({"tag_id": "3", "contact_ids": ["1", "2"]}),
        )
        .unwrap();
        assert_eq!(p.path_and_query, "/crm/rest/v2/tags/3/contacts:applyTags");
        assert_eq!(p.body.unwrap(), br#"{"contact_ids":["1","2"]}"#);
        let p = plan(Tool::AddNote, &json!({"contact_id": "5", "text": "Called"})).unwrap();
        assert_eq!(p.path_and_query, "/crm/rest/v2/contacts/5/notes");
        let p = plan(
            Tool::CreateContact,
            &json!({"email": "a@b.example", "given_name": "A"}),
        )
        .unwrap();
        let body: Value = serde_json::from_slice(&p.body.unwrap()).unwrap();
        assert_eq!(body["email_addresses"][0]["email"], "a@b.example");
    }

    #[test]
    fn bad_arguments_are_sentences_for_the_model() {
        for (tool, args) in [
            (Tool::SearchContacts, json!({})),
            (Tool::SearchContacts, json!({"email": "a@b", "name": "x"})),
            (Tool::SearchContacts, json!({"email": "a;b==c"})),
            (Tool::SearchContacts, json!({"name": "x", "limit": 500})),
            (Tool::GetContact, json!({"contact_id": "../tags"})),
            (Tool::GetContact, json!({"id": "1"})),
            (Tool::ApplyTags, json!({"tag_id": "1", "contact_ids": []})),
            (Tool::AddNote, json!({"contact_id": "1"})),
            (Tool::CreateContact, json!({"email": "nope"})),
            (Tool::ListTags, json!([1])),
        ] {
            assert!(plan(tool, &args).is_err(), "{tool:?} {args}");
        }
    }

    #[test]
    fn answers_are_trimmed_with_keap_ids_and_refusals_explained() {
        let keap = json!({"contacts": [{"id": "7", "given_name": "Ada", "email_addresses": [{"email": "ada@example.com", "field": "EMAIL1", "is_opt_in": false}], "phone_numbers": [], "owner_id": null}], "next_page_token": ""});
        let (r, outcome) = answer(
            Tool::SearchContacts,
            &json!({}),
            200,
            keap.to_string().as_bytes(),
        );
        assert_eq!(outcome, "ok");
        let text: Value = serde_json::from_str(r["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(
            text,
            json!({"contacts": [{"id": "7", "given_name": "Ada", "emails": ["ada@example.com"], "phones": []}], "more": false})
        );
        let (r, outcome) = answer(
            Tool::GetContact,
            &json!({}),
            404,
            br#"{"code":404,"message":"Contact 9 not found"}"#,
        );
        assert_eq!(outcome, "keap_refused");
        assert_eq!(r["isError"], true);
        assert!(r["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Contact 9 not found"));
        assert!(needs_reauth("Acme")["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("needs_reauth"));
    }
}
