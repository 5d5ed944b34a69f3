//! What tests hold reprise's output to: the platforms an index lists, the JSON Schemas in
//! `schemas/`, and JSON files that must parse. coreos-assembler's own rules for records are
//! `cosa`'s.

use std::path::{Path, PathBuf};

use reprise_fixtures::WrittenArch;
use serde_json::Value;

/// An index's entries as sorted (architecture, digest) pairs.
pub fn platforms_of(index: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            (
                m["platform"]["architecture"].as_str().unwrap().to_owned(),
                m["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

pub fn oci_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The (architecture, manifest digest) pairs an index of `written` should list.
pub fn expected_platforms(written: &[WrittenArch]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = written
        .iter()
        .map(|w| (oci_arch(&w.arch).to_owned(), w.manifest_digest.clone()))
        .collect();
    v.sort();
    v
}

/// Asserts `instance` validates against `schemas/<schema_file>`.
pub fn validate(schema_file: &str, instance: &Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(schema_file);
    let schema = read_json(&path);
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{schema_file}: {errors:?}\n{instance:#}");
}

/// The JSON document at `path`; a missing or invalid file fails the test, naming it.
pub fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}
