//! The events keaplink sends to a partner's `webhook_url`, as the document's `webhooks` (OpenAPI
//! 3.1): one entry of [`events`] per event `type`, each with its payload's fields beside the
//! envelope every event shares (`id`, `type`, `created_at`, `partner_id`). Adding an event is
//! one entry there; a test fails while a kind the core sends has none.
//!
//! Each payload is a component schema of its own (`ConnectionCreatedEvent`, …) and
//! `WebhookEvent` is their union, discriminated by `type`, so generated clients get one type per
//! event and one for "any event".

use crate::build::Schemas;
use keaplink_core::webhook::{EventKind, WebhookEvent, EVENT_ID_HEADER, SIGNATURE_HEADER};
use serde_json::{json, Map, Value};

/// One event keaplink sends.
pub struct Event {
    /// Its `type`, as sent (`connection.created`).
    pub name: &'static str,
    pub summary: &'static str,
    pub description: &'static str,
    /// The payload's fields beside the envelope's: (name, schema, required).
    pub fields: fn(&mut Schemas) -> Vec<(&'static str, Value, bool)>,
    /// A payload as the Worker sends it.
    pub example: fn() -> Value,
}

/// Every event, in the order the document lists them.
pub fn events() -> Vec<Event> {
    vec![
        Event {
            name: "connection.created",
            summary: "A user linked a Keap app",
            description: "A new link: a first Connect of this user to this Keap app (a reconnect of an existing link is `connection.recovered`, or nothing when it was active).",
            fields: |s| connection_fields(s, false),
            example: || connection_example(EventKind::Created),
        },
        Event {
            name: "connection.deleted",
            summary: "A link was removed",
            description: "The link and its tokens are gone: the user disconnected (the widget), the partner deleted it (`DELETE /v1/connections/{id}`). `connection` is the link as it last was.",
            fields: |s| connection_fields(s, false),
            example: || connection_example(EventKind::Deleted),
        },
        Event {
            name: "connection.needs_reauth",
            summary: "A link needs its user",
            description: "Keap refused the link's refresh token (`connection.last_error.code`: `refresh_token_invalid`, or `refresh_lost` when the answer of a refresh that rotated it was lost): only its user can restore it, by Reconnect in the widget or a repair link. `POST /v1/token` and the proxy answer `409 needs_reauth` for it until then.",
            fields: |s| connection_fields(s, true),
            example: || connection_example(EventKind::NeedsReauth),
        },
        Event {
            name: "connection.recovered",
            summary: "A link that needed its user works again",
            description: "Its user reconnected (the widget's Reconnect, or a repair link): the same connection id, fresh tokens, `status: active`.",
            fields: |s| connection_fields(s, false),
            example: || connection_example(EventKind::Recovered),
        },
        Event {
            name: "connection.expiring",
            summary: "A link will die unless its user reconnects",
            description: "Refreshes of this link keep failing and its refresh token has under a week left: the user should reconnect before `connection.reconnect_before`. Sent once.",
            fields: |s| connection_fields(s, true),
            example: || connection_example(EventKind::Expiring),
        },
        Event {
            name: "connection.exported",
            summary: "A link was handed out",
            description: "`POST /v1/connections/export` froze this link and handed its tokens to the partner: `status: exported`, never refreshed by keaplink again, `POST /v1/token` and the proxy answer `409 exported`. The partner deletes it once its cut-over is done. No token is in the event.",
            fields: |s| connection_fields(s, false),
            example: || connection_example(EventKind::Exported),
        },
        Event {
            name: "import.finished",
            summary: "Every item of an import has its outcome",
            description: "Sent once per import (`POST /v1/imports`), when its last item settled: the counts by outcome. It is about no one link, so it has no `user` or `connection`; read the items with `GET /v1/imports/{import_id}`. Each imported link was also sent as `connection.created`.",
            fields: |s| {
                vec![
                    ("import_id", json!({"type": "string", "pattern": "^imp_[0-9a-f]{32}$"}), true),
                    ("total", json!({"type": "integer", "minimum": 1, "maximum": 1000}), true),
                    ("counts", s.of::<keaplink_api::ImportCounts>(), true),
                ]
            },
            example: || {
                let event = keaplink_core::webhook::ImportFinishedEvent {
                    id: "evt_0f1e2d3c4b5a69788796a5b4c3d2e1f0".into(),
                    kind: EventKind::ImportFinished,
                    created_at: "2026-01-02T06:20:00Z".into(),
                    partner_id: keaplink_core::ids::PartnerId::parse("acme").expect("an id"),
                    import: keaplink_api::ImportFinished {
                        import_id: "imp_0123456789abcdef0123456789abcdef".into(),
                        total: 1000,
                        counts: keaplink_api::ImportCounts {
                            imported: 990,
                            already_linked: 6,
                            dead: 3,
                            duplicate: 1,
                            ..Default::default()
                        },
                    },
                };
                serde_json::to_value(event).expect("an event is JSON")
            },
        },
        Event {
            name: KEAP_EVENT,
            summary: "Keap posted an event to one of a link's hooks",
            description: "One type per Keap event key (`keap.contact.add`, `keap.invoice.payment.add`, ...), for the links whose hooks list it (`PUT /v1/connections/{id}/hooks`). `connection` is the link whose hook URL Keap posted to (the URL alone decides it); `keap_event` is what Keap sent: the event key, the object type and the objects' ids with when they changed (up to 1,000). Keap sends a batch again when it thinks a try failed: keaplink delivers each batch once (its `id` is the same for every delivery of that batch). With `hydrate`, `objects` holds each object as Keap's REST API answers it, read through the link's token, and `unread` names each one that could not be read and why (`needs_reauth` when the link needs its user: its events still come); a batch of more than 50 objects then comes as several events (`part`).",
            fields: |s| {
                let mut f = connection_fields(s, false);
                f.push(("keap_event", s.of::<keaplink_api::KeapEvent>(), true));
                f
            },
            example: || {
                let event = keaplink_api::KeapEventDelivery {
                    id: "evt_5d41402abc4b2a76b9719d911017c592".into(),
                    kind: "keap.contact.add".into(),
                    created_at: "2026-01-02T06:20:00Z".into(),
                    partner_id: "acme".into(),
                    user: "user-42".into(),
                    connection: crate::ops::sample_connection(),
                    keap_event: keaplink_api::KeapEvent {
                        event_key: "contact.add".into(),
                        object_type: "contact".into(),
                        object_keys: vec![
                            keaplink_api::KeapObjectKey { id: 5, timestamp: Some("2026-01-02T06:19:58Z".into()) },
                            keaplink_api::KeapObjectKey { id: 6, timestamp: Some("2026-01-02T06:19:59Z".into()) },
                        ],
                        objects: Some(vec![json!({"id": 5, "given_name": "Ann", "family_name": "Baker", "email_addresses": [{"email": "ann@mail.example", "field": "EMAIL1"}]})]),
                        unread: Some(vec![keaplink_core::hooks::unread(6, "not_found")]),
                        part: None,
                    },
                };
                serde_json::to_value(event).expect("an event is JSON")
            },
        },
    ]
}

/// The webhook that stands for every `keap.<event_key>`.
pub const KEAP_EVENT: &str = "keap.{event_key}";

/// `user` and `connection`, and (`repair`) the optional `repair_url`.
fn connection_fields(s: &mut Schemas, repair: bool) -> Vec<(&'static str, Value, bool)> {
    let mut fields = vec![
        (
            "user",
            json!({"type": "string", "description": "The partner's id of the user whose link this is (the `sub` of their session JWT)."}),
            true,
        ),
        ("connection", s.of::<keaplink_api::Connection>(), true),
    ];
    if repair {
        fields.push((
            "repair_url",
            json!({"type": "string", "format": "uri", "description": "Only when the partner set `webhook_repair_links`: a fresh single-use repair link (7 days) for this link, to mail to the user. A secret of the partner's: keep it out of logs."}),
            false,
        ));
    }
    fields
}

fn connection_example(kind: EventKind) -> Value {
    let mut connection = crate::ops::sample_connection();
    if matches!(kind, EventKind::Exported) {
        connection.status = keaplink_api::ConnectionStatus::Exported;
    }
    if matches!(kind, EventKind::NeedsReauth) {
        connection.status = keaplink_api::ConnectionStatus::NeedsReauth;
        connection.last_error = Some(keaplink_api::LastError {
            code: "refresh_token_invalid".into(),
            message: "Keap refused the refresh token: the user must reconnect.".into(),
            at: "2026-01-02T06:00:00Z".into(),
        });
    }
    let event = WebhookEvent {
        id: "evt_8b1f2c3d4e5f60718293a4b5c6d7e8f9".into(),
        kind,
        created_at: "2026-01-02T06:00:01Z".into(),
        partner_id: keaplink_core::ids::PartnerId::parse("acme").expect("an id"),
        user: keaplink_core::ids::UserId::parse("user-42").expect("an id"),
        connection,
        repair_url: kind
            .carries_repair_link()
            .then(|| "https://keaplink.example/link/opaque-single-use-token".into()),
    };
    serde_json::to_value(event).expect("an event is JSON")
}

/// `connection.needs_reauth` → `ConnectionNeedsReauthEvent`.
pub fn schema_name(event: &str) -> String {
    if event == KEAP_EVENT {
        return "KeapHookEvent".into();
    }
    let mut out = String::new();
    for word in event.split(['.', '_', '-']) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out.push_str("Event");
    out
}

/// How a receiver checks a delivery: said once, in every event's description and the headers'.
pub const VERIFY: &str = "Verify every delivery before trusting it: `keaplink-signature` is \
`t=<unix seconds>,v1=<hex>`, where `<hex>` is the HMAC-SHA256 of `<t>.<raw body>` (the bytes \
as received, before any JSON parsing) keyed with the webhook key, and the webhook key is the \
HMAC-SHA256 of the ASCII text `keaplink-webhook-v1` keyed with the partner's `session_secret` \
(so rotating the session secret rotates it). Compare in constant time and refuse a `t` more \
than 5 minutes from your clock. Then deduplicate on `keaplink-event-id` (the same as the body's \
`id`, on every retry and redelivery). Answer 2xx once stored: a 429, a 5xx or no answer within \
the deployment's `KEAP_TIMEOUT_MS` (10 s by default) is retried with growing waits for a day; \
any other status drops the delivery. The TypeScript client's `verifyWebhook` does all of it.";

/// The document's `webhooks`, and the event schemas registered in `schemas`.
pub fn webhooks(schemas: &mut Map<String, Value>, registry: &mut Schemas) -> Value {
    let mut out = Map::new();
    let mut union = Vec::new();
    let mut mapping = Map::new();
    for e in events() {
        let name = schema_name(e.name);
        let mut properties = Map::new();
        let mut required = vec![
            json!("id"),
            json!("type"),
            json!("created_at"),
            json!("partner_id"),
        ];
        properties.insert("id".into(), json!({"type": "string", "pattern": "^evt_[0-9a-f]{32}$", "description": "The event's id, the same on every retry and redelivery (and in `keaplink-event-id`): deduplicate on it."}));
        if e.name == KEAP_EVENT {
            properties.insert("type".into(), json!({"type": "string", "pattern": "^keap\\.[A-Za-z]+(\\.[A-Za-z_]+)+$", "description": "`keap.` and the Keap event key (`keap.contact.add`)."}));
        } else {
            properties.insert("type".into(), json!({"type": "string", "const": e.name}));
        }
        properties.insert("created_at".into(), json!({"type": "string", "format": "date-time", "description": "When it happened (RFC 3339 UTC), not when this attempt was sent."}));
        properties.insert("partner_id".into(), json!({"type": "string", "pattern": "^[a-z0-9-]{1,64}$", "description": "The partner the event is for."}));
        for (field, schema, req) in (e.fields)(registry) {
            assert!(
                properties.insert(field.into(), schema).is_none(),
                "{}: {field} twice",
                e.name
            );
            if req {
                required.push(json!(field));
            }
        }
        schemas.insert(
            name.clone(),
            json!({
                "type": "object",
                "description": format!("`{}`: {}", e.name, e.description),
                "required": required,
                "properties": properties,
            }),
        );
        let reference = json!({"$ref": format!("#/components/schemas/{name}")});
        union.push(reference.clone());
        if e.name == KEAP_EVENT {
            for k in keaplink_core::hooks::EVENT_KEYS {
                mapping.insert(
                    format!("keap.{k}"),
                    json!(format!("#/components/schemas/{name}")),
                );
            }
        } else {
            mapping.insert(e.name.into(), json!(format!("#/components/schemas/{name}")));
        }
        out.insert(
            e.name.into(),
            json!({"post": {
                "operationId": format!("webhook{}", name.trim_end_matches("Event")),
                "tags": ["webhooks"],
                "summary": e.summary,
                "description": format!("{}\n\n{VERIFY}", e.description),
                "parameters": [
                    {"name": SIGNATURE_HEADER, "in": "header", "required": true,
                     "description": "`t=<unix seconds>,v1=<hex HMAC-SHA256>`: see the description for how to verify it.",
                     "schema": {"type": "string", "pattern": "^t=[0-9]+,v1=[0-9a-f]{64}$"},
                     "example": "t=1767333601,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd"},
                    {"name": EVENT_ID_HEADER, "in": "header", "required": true,
                     "description": "The event's id (the body's `id`): the same on every retry and redelivery.",
                     "schema": {"type": "string", "pattern": "^evt_[0-9a-f]{32}$"}},
                ],
                "requestBody": {
                    "required": true,
                    "content": {"application/json": {"schema": reference, "example": (e.example)()}},
                },
                "responses": {
                    "2XX": {"description": "Received: the delivery is done (any body is ignored)."},
                    "429": {"description": "Retried later, with growing waits, for a day."},
                    "5XX": {"description": "Retried later, with growing waits, for a day (as is no answer within `KEAP_TIMEOUT_MS`)."},
                    "4XX": {"description": "Any other 4xx: the delivery is dropped (it shows as failed at `GET /v1/webhooks/deliveries`, and can be sent again with its redeliver)."},
                },
            }}),
        );
    }
    schemas.insert(
        "WebhookEvent".into(),
        json!({
            "description": format!("Any event keaplink sends to the partner's `webhook_url`, told apart by `type`. {VERIFY}"),
            "oneOf": union,
            "discriminator": {"propertyName": "type", "mapping": mapping},
        }),
    );
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_the_core_sends_is_described_once() {
        let names: Vec<&str> = events().iter().map(|e| e.name).collect();
        for k in EventKind::ALL {
            assert_eq!(
                names.iter().filter(|n| **n == k.name()).count(),
                1,
                "{} is not described once in crates/openapi/src/webhooks.rs",
                k.name()
            );
        }
    }

    #[test]
    fn each_example_is_a_payload_of_its_own_event_with_exactly_its_fields() {
        let mut registry = Schemas::default();
        let mut schemas = Map::new();
        let hooks = webhooks(&mut schemas, &mut registry);
        for e in events() {
            let op = &hooks[e.name]["post"];
            let example = &op["requestBody"]["content"]["application/json"]["example"];
            if e.name == KEAP_EVENT {
                assert!(example["type"].as_str().unwrap().starts_with("keap."));
            } else {
                assert_eq!(example["type"], e.name);
            }
            let schema = &schemas[&schema_name(e.name)];
            let props = schema["properties"].as_object().unwrap();
            for field in example.as_object().unwrap().keys() {
                assert!(
                    props.contains_key(field),
                    "{}: {field} undocumented",
                    e.name
                );
            }
            for r in schema["required"].as_array().unwrap() {
                assert!(
                    example.get(r.as_str().unwrap()).is_some(),
                    "{}: {r}",
                    e.name
                );
            }
        }
        assert_eq!(
            schemas["WebhookEvent"]["oneOf"].as_array().unwrap().len(),
            events().len()
        );
    }

    #[test]
    fn schema_names_read_as_types() {
        assert_eq!(
            schema_name("connection.needs_reauth"),
            "ConnectionNeedsReauthEvent"
        );
        assert_eq!(schema_name("import.finished"), "ImportFinishedEvent");
    }
}
