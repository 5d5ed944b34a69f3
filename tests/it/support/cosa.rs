//! What coreos-assembler accepts in the meta.json keys reprise writes, as a small JSON Schema
//! of the tests' own, derived from the rules of cosa's `src/v1.json` (not a copy of it):
//!
//! - `base-oscontainer`, `oscontainer`, `extensions-container` and `kubevirt` are each a
//!   `primary-image`;
//! - a `primary-image` is an object that requires `image` (a string) and may have `digest`,
//!   `manifest-list-digest` and `comment` (strings), `tags` (an array of strings) and
//!   `additional-images` (an array).
//!
//! Two rules are stricter than cosa's, on purpose: a record holds no field cosa does not
//! name (reprise must not invent any), and each `additional-images` entry is itself a
//! `primary-image` without a nested list (the shape cosa's own push appends).

use serde_json::{Value, json};

/// The meta.json keys whose value cosa's schema says is a `primary-image`.
pub const PRIMARY_IMAGE_KEYS: [&str; 4] = [
    "base-oscontainer",
    "oscontainer",
    "extensions-container",
    "kubevirt",
];

pub fn schema() -> Value {
    let image_fields = json!({
        "image": { "type": "string" },
        "digest": { "type": "string" },
        "manifest-list-digest": { "type": "string" },
        "comment": { "type": "string" },
        "tags": { "type": "array", "items": { "type": "string" } },
    });
    let mut primary_fields = image_fields.clone();
    primary_fields["additional-images"] = json!({
        "type": "array",
        "items": { "$ref": "#/$defs/additional-image" },
    });
    let keys: serde_json::Map<String, Value> = PRIMARY_IMAGE_KEYS
        .iter()
        .map(|k| ((*k).to_owned(), json!({ "$ref": "#/$defs/primary-image" })))
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": keys,
        "$defs": {
            "primary-image": {
                "type": "object",
                "required": ["image"],
                "additionalProperties": false,
                "properties": primary_fields,
            },
            "additional-image": {
                "type": "object",
                "required": ["image"],
                "additionalProperties": false,
                "properties": image_fields,
            },
        },
    })
}

/// Every way `meta` (a whole meta.json) breaks the rules above; empty when cosa can read it.
pub fn violations(meta: &Value) -> Vec<String> {
    let schema = schema();
    let validator = jsonschema::validator_for(&schema).expect("the cosa-derived schema is valid");
    validator
        .iter_errors(meta)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

/// Asserts that coreos-assembler can read every record in `meta`.
pub fn assert_readable(meta: &Value) {
    let errors = violations(meta);
    assert!(
        errors.is_empty(),
        "cosa could not read: {errors:?}\n{meta:#}"
    );
}
