//! Tool input schemas adapted to what OpenAI-compatible servers accept.
//!
//! Claude Code's tool schemas are written for Anthropic's validator. Local servers turn a
//! schema into a sampling grammar (llama.cpp behind LMStudio and Ollama, xgrammar/outlines in
//! vLLM) and some reject, or fail on, parts of it. [`adapt_schema`] changes only keywords in
//! schema positions (never a property that happens to be *named* `format` or `pattern`):
//!
//! | keyword | change | why |
//! |---|---|---|
//! | `$schema`, `$id`, `$comment` | removed | meta keywords; strict validators reject a draft they do not know |
//! | `format` other than `date`, `time`, `date-time`, `uuid` | removed | grammar converters know only these (`uri`, `email`, … fail or are rejected) |
//! | `pattern` with `\p{…}`/`\P{…}` | removed | Unicode property escapes are not in the regex dialects of grammar engines or OpenAI |
//! | `additionalProperties: {}` | removed | means "anything", like omitting it; some servers accept only booleans |
//! | `required: null` | removed | not valid JSON Schema (seen from Claude Code) |
//! | root without `type` | `"type": "object"` added | function parameters must be an object |
//! | object root without `properties` | `"properties": {}` added | OpenAI rejects an object schema without it |
//!
//! Descriptions, enums, `required`, `additionalProperties: false` and everything else are
//! kept: they are how the model learns to call the tool.

use serde_json::{Map, Value};

const KEPT_FORMATS: [&str; 4] = ["date", "time", "date-time", "uuid"];

/// Keywords whose value is one schema.
const SCHEMA_KEYS: [&str; 8] = [
    "items",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
];
/// Keywords whose value is an array of schemas.
const SCHEMA_ARRAY_KEYS: [&str; 4] = ["anyOf", "oneOf", "allOf", "prefixItems"];
/// Keywords whose value maps names to schemas.
const SCHEMA_MAP_KEYS: [&str; 5] = [
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];

/// Adapts a tool's `input_schema` into Chat Completions `parameters` (see the module docs
/// for every change).
pub fn adapt_schema(schema: &Value) -> Value {
    let mut schema = match schema {
        Value::Object(map) => Value::Object(map.clone()),
        // Not a schema object: the most permissive object schema instead.
        _ => Value::Object(Map::new()),
    };
    adapt_node(&mut schema);
    if let Value::Object(map) = &mut schema {
        map.remove("$id");
        if !map.contains_key("type") {
            map.insert("type".into(), Value::String("object".into()));
        }
        if map.get("type").and_then(Value::as_str) == Some("object")
            && !map.contains_key("properties")
        {
            map.insert("properties".into(), Value::Object(Map::new()));
        }
    }
    schema
}

fn adapt_node(node: &mut Value) {
    let Value::Object(map) = node else { return };
    map.remove("$schema");
    map.remove("$comment");
    if let Some(format) = map.get("format").and_then(Value::as_str) {
        if !KEPT_FORMATS.contains(&format) {
            map.remove("format");
        }
    }
    if let Some(pattern) = map.get("pattern").and_then(Value::as_str) {
        if pattern.contains("\\p{") || pattern.contains("\\P{") {
            map.remove("pattern");
        }
    }
    if matches!(map.get("additionalProperties"), Some(Value::Object(m)) if m.is_empty()) {
        map.remove("additionalProperties");
    }
    if matches!(map.get("required"), Some(Value::Null)) {
        map.remove("required");
    }
    for key in SCHEMA_KEYS {
        if let Some(child) = map.get_mut(key) {
            match child {
                // `items` may still be an array of schemas (draft-07 tuples).
                Value::Array(items) => items.iter_mut().for_each(adapt_node),
                other => adapt_node(other),
            }
        }
    }
    for key in SCHEMA_ARRAY_KEYS {
        if let Some(Value::Array(items)) = map.get_mut(key) {
            items.iter_mut().for_each(adapt_node);
        }
    }
    for key in SCHEMA_MAP_KEYS {
        if let Some(Value::Object(children)) = map.get_mut(key) {
            children.values_mut().for_each(adapt_node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strips_meta_formats_and_unicode_patterns_but_keeps_properties_named_like_keywords() {
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "url": {"type": "string", "format": "uri", "description": "the URL"},
                "when": {"type": "string", "format": "date-time"},
                "format": {"type": "string", "enum": ["a", "b"]},
                "pattern": {"type": "string", "pattern": "^\\p{L}+$"},
                "plain": {"type": "string", "pattern": "^[a-z]+$"},
                "list": {"type": "array", "items": {"type": "string", "format": "email"}},
                "any": {"anyOf": [{"type": "string", "format": "uri"}, {"type": "null"}]},
                "open": {"type": "object", "additionalProperties": {}},
            },
            "required": ["url"],
            "additionalProperties": false,
        });
        let adapted = adapt_schema(&schema);
        assert_eq!(
            adapted,
            json!({
                "type": "object",
                "properties": {
                    "url": {"type": "string", "description": "the URL"},
                    "when": {"type": "string", "format": "date-time"},
                    "format": {"type": "string", "enum": ["a", "b"]},
                    "pattern": {"type": "string"},
                    "plain": {"type": "string", "pattern": "^[a-z]+$"},
                    "list": {"type": "array", "items": {"type": "string"}},
                    "any": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                    "open": {"type": "object"},
                },
                "required": ["url"],
                "additionalProperties": false,
            })
        );
    }

    #[test]
    fn fills_in_an_object_root() {
        assert_eq!(
            adapt_schema(&json!({"$schema": "x", "required": null})),
            json!({"type": "object", "properties": {}})
        );
        assert_eq!(
            adapt_schema(&json!("not a schema")),
            json!({"type": "object", "properties": {}})
        );
    }
}
