//! The event's JSON Schema, and its place in the OpenAPI documents of the
//! ingest and the admin API.

/// The JSON Schema of an event (`schema/alertpost.event.v1.json`), kept in
/// step with [`crate::Event`] by a test; the ingest's OpenAPI document embeds it.
pub const EVENT_JSON_SCHEMA: &str = include_str!("../schema/alertpost.event.v1.json");
/// The OpenAPI reference to the event's schema (the `Event` component the
/// ingest's and the admin API's documents embed from [`EVENT_JSON_SCHEMA`]).
pub fn event_schema_ref() -> utoipa::openapi::Ref {
    utoipa::openapi::Ref::from_schema_name("Event")
}

/// Puts [`EVENT_JSON_SCHEMA`] into an OpenAPI document's
/// `components.schemas` as `Event`, its `$defs` beside it, references
/// rewritten to point there.
pub fn embed_event_schema(doc: &mut serde_json::Value) {
    use serde_json::Value;
    fn rewrite_refs(v: &mut Value) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get_mut("$ref")
                    && let Some(name) = r.strip_prefix("#/$defs/")
                {
                    *r = format!("#/components/schemas/{name}");
                }
                o.values_mut().for_each(rewrite_refs);
            }
            Value::Array(a) => a.iter_mut().for_each(rewrite_refs),
            _ => {}
        }
    }
    let mut event: Value = serde_json::from_str(EVENT_JSON_SCHEMA).unwrap_or_default();
    let defs = event
        .as_object_mut()
        .and_then(|o| {
            o.remove("$schema");
            o.remove("$id");
            o.remove("$defs")
        })
        .unwrap_or_default();
    let mut schemas = serde_json::Map::new();
    if let Value::Object(defs) = defs {
        for (name, mut schema) in defs {
            rewrite_refs(&mut schema);
            schemas.insert(name, schema);
        }
    }
    rewrite_refs(&mut event);
    schemas.insert("Event".to_owned(), event);
    let Some(doc) = doc.as_object_mut() else {
        return;
    };
    let components = doc
        .entry("components")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(components) = components.as_object_mut()
        && let Some(target) = components
            .entry("schemas")
            .or_insert_with(|| Value::Object(Default::default()))
            .as_object_mut()
    {
        target.extend(schemas);
    }
}
