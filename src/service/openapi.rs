//! The OpenAPI 3.1 document served at `/v1/openapi.json` (without auth).

use serde_json::{json, Value};

pub fn document() -> Value {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    let errors = |codes: &[&str]| -> Value {
        let mut m = serde_json::Map::new();
        for c in codes {
            m.insert((*c).to_string(), json!({"description": "error", "content": {"application/json": {"schema": error}}}));
        }
        Value::Object(m)
    };
    let mut trigger_responses = errors(&["400", "401", "404", "409", "413", "422"]);
    trigger_responses["202"] = json!({"description": "enrolled", "content": {"application/json": {"schema": {"type": "object", "properties": {
        "enrolled": {"type": "integer"}, "already_enrolled": {"type": "integer"}, "not_in_audience": {"type": "integer"}}}}}});
    let mut status_responses = errors(&["401", "404"]);
    status_responses["200"] = json!({"description": "campaign status", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}});
    let mut list_responses = errors(&["401"]);
    list_responses["200"] = json!({"description": "campaigns"});
    let mut transition_responses = errors(&["401", "404", "409"]);
    transition_responses["200"] = json!({"description": "new state"});
    let mut contacts_responses = errors(&["400", "401", "413", "422"]);
    contacts_responses["200"] = json!({"description": "upserted"});
    let mut events_responses = errors(&["400", "401", "413", "422"]);
    events_responses["202"] = json!({"description": "stored, and the campaigns it enrolled the contact in"});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "flowc campaign API", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Status": {"type": "object", "properties": {"id": {"type": "string"}, "state": {"type": "string"}, "version": {"type": "string"},
                    "executions": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "balance": {"type": "object", "properties": {"amount": {"type": "number"}, "currency": {"type": "string"}}}}},
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
            "/v1/campaigns/{id}/pause": {"post": {"summary": "Pause", "parameters": [id], "responses": transition_responses.clone()}},
            "/v1/campaigns/{id}/resume": {"post": {"summary": "Resume", "parameters": [id], "responses": transition_responses}},
            "/v1/contacts": {"post": {"summary": "Upsert contacts", "requestBody": {"required": true, "content": {"application/json": {"schema": {}}}}, "responses": contacts_responses}},
            "/v1/events": {"post": {"summary": "Ingest an event", "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Event"}}}}, "responses": events_responses}},
            "/v1/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI document"}}}}
        }
    })
}
