//! Deserializers for the fields serde parses into templates, arches, durations and pointers.
//! Each names its field (and index) in the error, so a message says which value is wrong.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::Error;
use serde::{Deserialize, Deserializer};

use super::Template;
use crate::platform::Arch;

fn one<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<Template, D::Error> {
    let raw = String::deserialize(d)?;
    Template::parse(&raw).map_err(|e| D::Error::custom(format!("{field}: {e}")))
}

fn parse_each<T, E: std::fmt::Display>(
    raws: &[String],
    field: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Vec<T>, String> {
    raws.iter()
        .enumerate()
        .map(|(i, raw)| parse(raw).map_err(|e| format!("{field}[{i}]: {e}")))
        .collect()
}

fn each<'de, D, T, E>(
    d: D,
    field: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    E: std::fmt::Display,
{
    let raws = Vec::<String>::deserialize(d)?;
    parse_each(&raws, field, parse).map_err(D::Error::custom)
}

/// `repo = "a"` or `repo = ["a", "b"]`.
pub fn repos<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Template>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let raw = OneOrMany::deserialize(d)
        .map_err(|_| D::Error::custom("repo: expected a string or a list of strings"))?;
    match raw {
        OneOrMany::One(s) => Template::parse(&s)
            .map(|t| vec![t])
            .map_err(|e| D::Error::custom(format!("repo: {e}"))),
        OneOrMany::Many(v) if v.is_empty() => Err(D::Error::custom("repo is empty")),
        OneOrMany::Many(v) => parse_each(&v, "repo", Template::parse).map_err(D::Error::custom),
    }
}

pub fn from<'de, D: Deserializer<'de>>(d: D) -> Result<Template, D::Error> {
    one(d, "from")
}

pub fn file<'de, D: Deserializer<'de>>(d: D) -> Result<Template, D::Error> {
    one(d, "done-when.file")
}

pub fn tags<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Template>, D::Error> {
    each(d, "tags", Template::parse)
}

pub fn to<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Template>, D::Error> {
    each(d, "to", Template::parse)
}

pub fn keep<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Template>, D::Error> {
    each(d, "keep", Template::parse)
}

pub fn run<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Template>, D::Error> {
    each(d, "run", Template::parse)
}

pub fn check<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Template>, D::Error> {
    each(d, "done-when.check", Template::parse)
}

pub fn arches<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Arch>, D::Error> {
    each(d, "arches", Arch::parse)
}

pub fn env<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Template>, D::Error> {
    let raw = BTreeMap::<String, String>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            let valid = !k.is_empty()
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(D::Error::custom(format!(
                    "env: {k:?} is not an environment variable name"
                )));
            }
            let t = Template::parse(&v).map_err(|e| D::Error::custom(format!("env.{k}: {e}")))?;
            Ok((k, t))
        })
        .collect()
}

/// A JSON pointer (RFC 6901) into meta.json; the whole document is not a useful answer.
pub fn pointer<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let raw = String::deserialize(d)?;
    if !raw.starts_with('/') {
        return Err(D::Error::custom(format!(
            "done-when.meta: {raw:?} is not a JSON pointer (write \"/amis\" for the key amis)"
        )));
    }
    Ok(raw)
}

/// `timeout = "2h"`, `"90m"`, `"1h30m"`, `"45s"`, or a number of seconds.
pub fn timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }
    let bad = |raw: &str| {
        D::Error::custom(format!(
            "timeout: {raw:?} is not a duration (write \"45s\", \"90m\", \"2h\" or \"1h30m\")"
        ))
    };
    let d = match Raw::deserialize(d).map_err(|_| bad("?"))? {
        Raw::Seconds(s) => Duration::from_secs(s),
        Raw::Text(t) => parse_duration(&t).ok_or_else(|| bad(&t))?,
    };
    if d.is_zero() {
        return Err(D::Error::custom("timeout: must be more than 0"));
    }
    Ok(Some(d))
}

/// `1h30m`, `90m`, `45s`: numbers each followed by h, m or s.
pub(super) fn parse_duration(s: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits.parse().ok()?;
        digits.clear();
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    digits.is_empty().then_some(Duration::from_secs(total))
}

/// `true`, for keys that default to on.
pub fn yes() -> bool {
    true
}
