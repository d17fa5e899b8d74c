//! The OpenAPI 3.1 document served at `/v1/openapi.json` (without auth).

use serde_json::{json, Value};

pub fn document() -> Value {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    let errors = |codes: &[&str]| -> Value {
        let mut m = serde_json::Map::new();
        for c in codes {
            m.insert(
                (*c).to_string(),
                json!({"description": "error", "content": {"application/json": {"schema": error}}}),
            );
        }
        Value::Object(m)
    };
    let ok = |description: &str, schema: Value| json!({"description": description, "content": {"application/json": {"schema": schema}}});
    // Every endpoint can answer these: the error body is the same everywhere.
    let common = ["401", "405", "408", "413", "414", "500"];
    let with = |codes: &[&str]| -> Value { errors(&[codes, &common[..]].concat()) };
    let mut trigger_responses = with(&["400", "404", "409", "422"]);
    trigger_responses["202"] = ok(
        "enrolled",
        json!({"type": "object", "required": ["enrolled", "already_enrolled", "not_in_audience"], "properties": {
        "enrolled": {"type": "integer", "description": "contacts enrolled by this request"},
        "already_enrolled": {"type": "integer", "description": "contacts in the audience that were already in the campaign; nothing changed for them"},
        "not_in_audience": {"type": "integer", "description": "contacts outside the campaign's audience, not enrolled"}}}),
    );
    let mut status_responses = with(&["400", "404"]);
    status_responses["200"] = ok("campaign status", json!({"$ref": "#/components/schemas/Status"}));
    let mut list_responses = with(&[]);
    list_responses["200"] = ok(
        "campaigns",
        json!({"type": "object", "required": ["campaigns"], "properties": {"campaigns": {"type": "array", "items": {
        "type": "object", "required": ["id", "state", "version"], "properties": {"id": {"type": "string"}, "state": {"$ref": "#/components/schemas/CampaignState"}, "version": {"type": "string"}}}}}}),
    );
    let mut pause_responses = with(&["400", "404", "409"]);
    pause_responses["200"] = ok(
        "paused",
        json!({"type": "object", "required": ["id", "state"], "properties": {"id": {"type": "string"}, "state": {"const": "PAUSED"}}}),
    );
    let mut resume_responses = with(&["400", "404", "409"]);
    resume_responses["200"] = ok(
        "running again",
        json!({"type": "object", "required": ["id", "state", "was"], "properties": {"id": {"type": "string"}, "state": {"const": "RUNNING"},
        "was": {"enum": ["PAUSED", "PAUSED_ERROR", "PAUSED_BALANCE"], "description": "the state the campaign left"}}}),
    );
    let mut contacts_responses = with(&["400", "422"]);
    contacts_responses["200"] = ok(
        "upserted",
        json!({"type": "object", "required": ["upserted"], "properties": {
        "upserted": {"type": "integer", "description": "contact objects accepted; one invalid contact refuses the whole request"}}}),
    );
    let mut events_responses = with(&["400", "422"]);
    events_responses["202"] = ok(
        "stored, the campaigns it enrolled the contact in, and the waiting executions it woke",
        json!({"type": "object", "required": ["stored", "enrolled_in", "woken"], "properties": {
        "stored": {"const": true, "description": "the event was recorded"},
        "enrolled_in": {"type": "array", "items": {"type": "string"}, "description": "ids of the event-triggered campaigns this event enrolled the contact in"},
        "woken": {"type": "integer", "minimum": 0, "description": "waiting executions of the contact made due at the event's time (a `wait until` arm or an exit waits on it)"}}}),
    );
    let mut account_get = with(&[]);
    account_get["200"] = ok("the account", json!({"$ref": "#/components/schemas/Account"}));
    let mut account_post = with(&["400", "422"]);
    account_post["200"] = ok("the account after the change", json!({"$ref": "#/components/schemas/Account"}));
    let money = json!({"type": "number", "exclusiveMinimum": 0, "maximum": 1e9, "description": "EUR"});
    let contact = json!({"type": "object", "required": ["id"], "description": "a contact as in a contacts file (docs/contacts.md): `id`, the built-in and declared contact fields, `tags`, `consent`, `capabilities` and `events`; absent fields keep their stored value, null clears an optional one",
        "properties": {"id": {"type": "string", "minLength": 1}, "tags": {"type": ["array", "null"], "items": {"type": "string"}},
            "consent": {"type": ["array", "null"], "items": {"type": "string"}}, "capabilities": {"type": ["array", "null"], "items": {"type": "string"}},
            "events": {"type": "array", "items": {"type": "object", "required": ["name", "at"]}}}});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "flowc campaign API", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"],
                    "properties": {"code": {"enum": ["invalid-json", "invalid-body", "invalid-path", "invalid-request", "unauthorized", "unknown-campaign", "not-found",
                        "method-not-allowed", "timeout", "wrong-trigger", "not-accepting", "invalid-transition", "too-large", "uri-too-long", "unknown-contacts",
                        "invalid-contact", "unknown-event", "invalid-event", "internal"]}, "message": {"type": "string"}}}}},
                "Account": {"type": "object", "required": ["amount", "currency", "auto_reload"], "properties": {
                    "amount": {"type": "number", "description": "the prepaid balance, shared by every campaign"}, "currency": {"const": "EUR"},
                    "auto_reload": {"description": "top up `amount` when the balance falls below `threshold`; null when off",
                        "oneOf": [{"type": "null"}, {"type": "object", "required": ["threshold", "amount"], "properties": {"threshold": {"type": "number"}, "amount": {"type": "number"}}}]}}},
                "CampaignState": {"enum": ["DRAFT", "SCHEDULED", "RUNNING", "PAUSED", "PAUSED_ERROR", "PAUSED_BALANCE", "COMPLETED", "COMPLETED_PARTIAL"]},
                "Status": {"type": "object", "required": ["id", "state", "version", "executions", "balance"], "properties": {"id": {"type": "string"},
                    "state": {"$ref": "#/components/schemas/CampaignState"}, "version": {"type": "string", "description": "the program's version hash"},
                    "executions": {"type": "object", "description": "executions per state; all five states are present",
                        "properties": {"pending": {"type": "integer"}, "processing": {"type": "integer"}, "completed": {"type": "integer"}, "failed": {"type": "integer"}, "skipped": {"type": "integer"}}},
                    "balance": {"type": "object", "description": "the account's prepaid balance, shared by every campaign",
                        "properties": {"amount": {"type": "number"}, "currency": {"const": "EUR"}}}}},
                "Trigger": {"type": "object", "required": ["contacts"], "additionalProperties": false, "properties": {
                    "contacts": {"type": "array", "minItems": 1, "maxItems": super::MAX_TRIGGER_CONTACTS, "items": {"type": "string", "minLength": 1, "maxLength": 200}},
                    "data": {"type": "object"}}},
                "Event": {"type": "object", "required": ["contact", "name"], "additionalProperties": false, "properties": {
                    "contact": {"type": "string"}, "name": {"type": "string"}, "at": {"type": "string", "format": "date-time"}, "props": {"type": "object"}}}
            }
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/campaigns": {"get": {"summary": "List campaigns", "responses": list_responses}},
            "/v1/campaigns/{id}": {"get": {"summary": "Campaign status", "parameters": [id], "responses": status_responses}},
            "/v1/campaigns/{id}/trigger": {"post": {"summary": "Enroll contacts in an API-triggered campaign", "parameters": [id],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Trigger"}}}}, "responses": trigger_responses}},
            "/v1/campaigns/{id}/pause": {"post": {"summary": "Pause", "parameters": [id], "responses": pause_responses}},
            "/v1/campaigns/{id}/resume": {"post": {"summary": "Resume", "parameters": [id], "responses": resume_responses}},
            "/v1/contacts": {"post": {"summary": "Upsert (merge) contacts", "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "oneOf": [contact.clone(), {"type": "array", "minItems": 1, "maxItems": 1000, "items": contact}]}}}}, "responses": contacts_responses}},
            "/v1/events": {"post": {"summary": "Ingest an event", "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Event"}}}}, "responses": events_responses}},
            "/v1/balance": {"get": {"summary": "The account's balance and auto-reload", "responses": account_get}},
            "/v1/balance/top-up": {"post": {"summary": "Add money (never resumes a paused campaign)", "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "required": ["amount"], "additionalProperties": false, "properties": {"amount": money.clone()}}}}}, "responses": account_post.clone()}},
            "/v1/balance/auto-reload": {"post": {"summary": "Set or turn off auto-reload", "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "oneOf": [{"type": "object", "required": ["threshold", "amount"], "additionalProperties": false, "properties": {"threshold": money.clone(), "amount": money}},
                    {"type": "object", "required": ["off"], "additionalProperties": false, "properties": {"off": {"const": true}}}]}}}}, "responses": account_post}},
            "/v1/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI document"}}}}
        }
    })
}
