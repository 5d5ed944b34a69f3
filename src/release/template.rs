//! Release templates: strings with `{variable}` placeholders, split into literals and names
//! when read. Which variables exist, and their values, are the config's business
//! (`release/config.rs`), not this file's.

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(String),
}

/// A string with `{variable}` placeholders, checked when the config is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    raw: String,
    parts: Vec<Part>,
}

impl Template {
    /// Splits `raw` into literals and `{name}`s; a brace that does not open or close a
    /// variable name is an error (no tag, repository or digest contains one).
    pub fn parse(raw: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = raw;
        while let Some(at) = rest.find(['{', '}']) {
            let (lit, tail) = rest.split_at(at);
            if !lit.is_empty() {
                parts.push(Part::Lit(lit.to_owned()));
            }
            if tail.starts_with('}') {
                return Err(format!("{raw:?} has a '}}' that closes no variable"));
            }
            let Some(close) = tail.find('}') else {
                return Err(format!("{raw:?} has a '{{' that is never closed"));
            };
            let name = &tail[1..close];
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid {
                return Err(format!("{raw:?}: {{{name}}} is not a variable name"));
            }
            parts.push(Part::Var(name.to_owned()));
            rest = &tail[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_owned()));
        }
        Ok(Template {
            raw: raw.to_owned(),
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Lit(_) => None,
        })
    }

    pub fn uses(&self, var: &str) -> bool {
        self.vars().any(|v| v == var)
    }

    /// The template with every variable replaced; the error is the first variable `value`
    /// has no value for, with the reason it gives.
    pub fn expand(&self, value: impl Fn(&str) -> Result<String, String>) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => out.push_str(&value(v)?),
            }
        }
        Ok(out)
    }
}
