//! Annotations asked for on the published index (`--annotation KEY=VALUE`, a release stage's
//! `annotations = { … }`): reading them, the fields of the build record their values may
//! name, and expanding them into the exact strings the index carries.
//!
//! A value is a template in the release config's syntax ([`Template`]): `{buildid}`,
//! `{version}` (meta.json `ostree-version`), `{name}` and `{build-timestamp}` (meta.json
//! `coreos-assembler.build-timestamp`), plus a release's `[vars]`. Every value comes from the
//! build records, never from the clock, so the same build gives the same index bytes on every
//! run. Braces are reserved for variables: a value cannot hold a literal `{` or `}`.
//!
//! Owns nothing of the index itself (that is [`crate::index`]) or of when annotations make a
//! tag out of date (that is [`crate::plan`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use camino::Utf8PathBuf;

use crate::builds::Meta;
use crate::release::config::Template;

/// The variables an annotation value may name, all read from the build records.
pub const VARIABLES: [&str; 4] = ["buildid", "version", "name", "build-timestamp"];

/// meta.json's field for `{build-timestamp}`.
const BUILD_TIMESTAMP: &str = "coreos-assembler.build-timestamp";

/// Annotations, as the index carries them: sorted by key.
pub type Expanded = BTreeMap<String, String>;

/// One annotation as asked for: a key and a value template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    pub key: String,
    pub value: Template,
}

impl Annotation {
    /// `key` with `value` read as a template; the key must be non-empty and printable, with
    /// no whitespace and no `=`.
    pub fn new(key: &str, value: &str) -> Result<Annotation, String> {
        if key.is_empty() {
            return Err("the key is empty".to_owned());
        }
        if let Some(c) = key
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || *c == '=')
        {
            return Err(format!("the key {key:?} holds {c:?}"));
        }
        let value = Template::parse(value)?;
        Ok(Annotation {
            key: key.to_owned(),
            value,
        })
    }
}

impl FromStr for Annotation {
    type Err = String;

    /// `KEY=VALUE`, the value a template naming only [`VARIABLES`].
    fn from_str(s: &str) -> Result<Annotation, String> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
        let a = Annotation::new(key, value)?;
        if let Some(v) = a.value.vars().find(|v| !VARIABLES.contains(v)) {
            return Err(format!(
                "unknown variable {{{v}}} (known: {})",
                VARIABLES.join(", ")
            ));
        }
        Ok(a)
    }
}

impl fmt::Display for Annotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value.as_str())
    }
}

/// The annotations a push asks for, with the extra variables their values may name (a
/// release's `[vars]`). Empty means none were asked for: the index then carries none, and
/// annotations on a remote index are not compared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations {
    pub entries: Vec<Annotation>,
    pub vars: BTreeMap<String, String>,
}

/// A release stage's `annotations = { KEY = "VALUE", … }`: each value read as a template (its
/// variables are checked against the config's `[vars]` later, by [`check_vars`]).
impl<'de> serde::Deserialize<'de> for Annotations {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Annotations, D::Error> {
        use serde::de::Error as _;
        let raw = BTreeMap::<String, String>::deserialize(d)?;
        let entries = raw
            .iter()
            .map(|(k, v)| {
                Annotation::new(k, v).map_err(|e| D::Error::custom(format!("annotations.{k}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Annotations::new(entries))
    }
}

/// Why annotations could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {key}: {message}")]
pub struct Error {
    pub key: String,
    pub message: String,
}

impl Annotations {
    pub fn new(entries: Vec<Annotation>) -> Annotations {
        Annotations {
            entries,
            vars: BTreeMap::new(),
        }
    }

    /// `entries` with the variables of `vars` (a release's `[vars]`) that their values name.
    pub fn with_vars(entries: Vec<Annotation>, vars: &BTreeMap<String, String>) -> Annotations {
        let vars = vars
            .iter()
            .filter(|(k, _)| entries.iter().any(|a| a.value.uses(k)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Annotations { entries, vars }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first annotation whose value names a field of the build record, if any: such a
    /// value needs a build (images given with `--image` have none).
    pub fn needing_a_build(&self) -> Option<&Annotation> {
        self.entries.iter().find(|a| {
            a.value
                .vars()
                .any(|v| VARIABLES.contains(&v) && !self.vars.contains_key(v))
        })
    }

    /// A key asked for twice, if any.
    pub fn duplicate_key(&self) -> Option<&str> {
        self.entries.iter().enumerate().find_map(|(i, a)| {
            self.entries[..i]
                .iter()
                .any(|b| b.key == a.key)
                .then_some(a.key.as_str())
        })
    }

    /// Every value expanded with `build`'s fields (and [`Annotations::vars`]); `None` when
    /// none were asked for. Without a build, a value naming one of its fields is an error.
    pub fn expand(&self, build: Option<&BuildFields>) -> Result<Option<Expanded>, Error> {
        if self.is_empty() {
            return Ok(None);
        }
        let mut out = Expanded::new();
        for a in &self.entries {
            let value = a
                .value
                .expand(|var| self.value_of(var, build))
                .map_err(|message| Error {
                    key: a.key.clone(),
                    message,
                })?;
            out.insert(a.key.clone(), value);
        }
        Ok(Some(out))
    }

    fn value_of(&self, var: &str, build: Option<&BuildFields>) -> Result<String, String> {
        if VARIABLES.contains(&var) {
            return match build {
                Some(b) => b.value(var),
                None => Err(format!(
                    "{{{var}}} is a field of the build record, and images given with --image have none"
                )),
            };
        }
        self.vars
            .get(var)
            .cloned()
            .ok_or_else(|| format!("unknown variable {{{var}}}"))
    }
}

/// Checks `a` names only [`VARIABLES`] and keys of `vars` (a release's `[vars]`), and that
/// `vars` redefines none of them where it is used.
pub fn check_vars(a: &Annotation, vars: &BTreeMap<String, String>) -> Result<(), String> {
    for v in a.value.vars() {
        if VARIABLES.contains(&v) && vars.contains_key(v) {
            return Err(format!(
                "annotations.{}: {{{v}}} comes from the build records; [vars] cannot redefine it",
                a.key
            ));
        }
        if !VARIABLES.contains(&v) && !vars.contains_key(v) {
            let mut known: Vec<&str> = VARIABLES.to_vec();
            known.extend(vars.keys().map(String::as_str));
            return Err(format!(
                "annotations.{}: unknown variable {{{v}}} (known: {})",
                a.key,
                known.join(", ")
            ));
        }
    }
    Ok(())
}

/// What a build's records say for the variables, from every arch's meta.json that was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildFields {
    pub buildid: String,
    /// Each meta.json read, with its `ostree-version`, `name` and build timestamp.
    pub arches: Vec<ArchFields>,
}

/// One arch's meta.json fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchFields {
    pub path: Utf8PathBuf,
    pub version: Option<String>,
    pub name: Option<String>,
    pub build_timestamp: Option<String>,
}

impl ArchFields {
    pub fn of(meta: &Meta) -> ArchFields {
        let field = |k: &str| meta.str(k).map(str::to_owned);
        ArchFields {
            path: meta.path.clone(),
            version: field("ostree-version"),
            name: field("name"),
            build_timestamp: field(BUILD_TIMESTAMP),
        }
    }
}

impl BuildFields {
    fn value(&self, var: &str) -> Result<String, String> {
        match var {
            "buildid" => Ok(self.buildid.clone()),
            "version" => self.agreed("ostree-version", |a| a.version.as_deref()),
            "name" => self.agreed("name", |a| a.name.as_deref()),
            "build-timestamp" => self.latest_timestamp(),
            other => Err(format!("unknown variable {{{other}}}")),
        }
    }

    /// A field every arch records, with one value; otherwise which meta.json says otherwise.
    fn agreed(
        &self,
        key: &str,
        get: impl Fn(&ArchFields) -> Option<&str>,
    ) -> Result<String, String> {
        let first = self.arches.first().ok_or("the build has no arch")?;
        let value = get(first).ok_or_else(|| format!("{} has no {key:?}", first.path))?;
        match self.arches.iter().find(|a| get(a) != Some(value)) {
            None => Ok(value.to_owned()),
            Some(other) => Err(format!(
                "{} and {} record different {key:?}",
                first.path, other.path
            )),
        }
    }

    /// The latest `coreos-assembler.build-timestamp` of the arches: the index is made when its
    /// last image was built. Each must be RFC 3339 in UTC as cosa writes it
    /// (`2020-03-12T00:18:45Z`), so the latest is also the greatest string.
    fn latest_timestamp(&self) -> Result<String, String> {
        let mut latest: Option<&str> = None;
        for a in &self.arches {
            let ts = a
                .build_timestamp
                .as_deref()
                .ok_or_else(|| format!("{} has no {BUILD_TIMESTAMP:?}", a.path))?;
            if !is_utc_timestamp(ts) {
                return Err(format!(
                    "{}: {BUILD_TIMESTAMP} {ts:?} is not YYYY-MM-DDTHH:MM:SSZ",
                    a.path
                ));
            }
            if latest.is_none_or(|l| ts > l) {
                latest = Some(ts);
            }
        }
        latest
            .map(str::to_owned)
            .ok_or_else(|| "the build has no arch".to_owned())
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, digits where digits go.
fn is_utc_timestamp(s: &str) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:ddZ";
    s.len() == SHAPE.len()
        && s.bytes().zip(SHAPE).all(|(c, &want)| match want {
            b'd' => c.is_ascii_digit(),
            other => c == other,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(arches: &[(&str, &str)]) -> BuildFields {
        BuildFields {
            buildid: "40.1".to_owned(),
            arches: arches
                .iter()
                .enumerate()
                .map(|(i, (version, ts))| ArchFields {
                    path: format!("builds/40.1/a{i}/meta.json").into(),
                    version: Some((*version).to_owned()),
                    name: Some("fedora-coreos".to_owned()),
                    build_timestamp: Some((*ts).to_owned()),
                })
                .collect(),
        }
    }

    fn asked(pairs: &[&str]) -> Annotations {
        Annotations::new(pairs.iter().map(|p| p.parse().unwrap()).collect())
    }

    #[test]
    fn key_value_is_split_at_the_first_equals_sign() {
        let a: Annotation = "org.example.query=a=b".parse().unwrap();
        assert_eq!(a.key, "org.example.query");
        assert_eq!(a.value.as_str(), "a=b");
        assert_eq!(a.to_string(), "org.example.query=a=b");
    }

    #[test]
    fn bad_annotations_are_refused_with_a_reason() {
        for bad in ["novalue", "=v", "a b=v", "k={unknown}", "k={", "k=}"] {
            assert!(bad.parse::<Annotation>().is_err(), "{bad}");
        }
        let err = "k={stream}".parse::<Annotation>().unwrap_err();
        assert!(err.contains("unknown variable {stream}"), "{err}");
        assert!(err.contains("build-timestamp"), "{err}");
    }

    #[test]
    fn values_expand_from_the_build_records_never_the_clock() {
        let a = asked(&[
            "org.opencontainers.image.version={version}",
            "org.opencontainers.image.created={build-timestamp}",
            "org.example.id={name}-{buildid}",
        ]);
        let b = fields(&[
            ("40.1", "2026-11-01T10:00:00Z"),
            ("40.1", "2026-11-01T11:30:00Z"),
        ]);
        let got = a.expand(Some(&b)).unwrap().unwrap();
        assert_eq!(got["org.opencontainers.image.version"], "40.1");
        assert_eq!(
            got["org.opencontainers.image.created"], "2026-11-01T11:30:00Z",
            "the latest arch's timestamp"
        );
        assert_eq!(got["org.example.id"], "fedora-coreos-40.1");
        assert_eq!(a.expand(Some(&b)).unwrap().unwrap(), got, "same every time");
    }

    #[test]
    fn a_field_the_arches_disagree_on_or_lack_is_an_error_naming_the_file() {
        let a = asked(&["v={version}"]);
        let b = fields(&[
            ("40.1", "2026-11-01T10:00:00Z"),
            ("40.2", "2026-11-01T10:00:00Z"),
        ]);
        let err = a.expand(Some(&b)).unwrap_err().to_string();
        assert!(
            err.contains("a1/meta.json") && err.contains("ostree-version"),
            "{err}"
        );

        let mut b = fields(&[("40.1", "2026-11-01T10:00:00Z")]);
        b.arches[0].build_timestamp = None;
        let err = asked(&["c={build-timestamp}"])
            .expand(Some(&b))
            .unwrap_err();
        assert!(err.to_string().contains(BUILD_TIMESTAMP), "{err}");

        let b = fields(&[("40.1", "yesterday")]);
        let err = asked(&["c={build-timestamp}"])
            .expand(Some(&b))
            .unwrap_err();
        assert!(err.to_string().contains("YYYY-MM-DD"), "{err}");
    }

    #[test]
    fn without_a_build_only_literal_values_expand() {
        assert_eq!(
            asked(&["k=v"]).expand(None).unwrap().unwrap()["k"],
            "v".to_owned()
        );
        let err = asked(&["k={version}"]).expand(None).unwrap_err();
        assert!(err.to_string().contains("--image"), "{err}");
        assert!(asked(&["k={version}"]).needing_a_build().is_some());
        assert!(asked(&["k=v"]).needing_a_build().is_none());
    }

    #[test]
    fn nothing_asked_expands_to_none_and_duplicates_are_found() {
        assert_eq!(Annotations::default().expand(None), Ok(None));
        assert_eq!(asked(&["a=1", "b=2", "a=3"]).duplicate_key(), Some("a"));
        assert_eq!(asked(&["a=1", "b=2"]).duplicate_key(), None);
    }

    fn release_stage(extra: &str) -> Result<crate::release::config::Config, String> {
        let text = format!(
            r#"
[vars]
stream = "stable"
unused = "x"

[[stage]]
name = "base"
kind = "container-manifest"
artifact = "ostree"
metajsonname = "base-oscontainer"
repo = "quay.io/fedora/fedora-coreos"
tags = ["{{stream}}"]
{extra}
"#
        );
        crate::release::config::parse("release.toml".into(), &text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_release_stage_takes_annotations_with_the_build_fields_and_its_vars() {
        use crate::release::config::{BuildVars, StageKind, expand};
        let config = release_stage(
            r#"annotations = { "org.opencontainers.image.version" = "{version}", "org.example.stream" = "{stream}" }"#,
        )
        .unwrap();
        let build = BuildVars {
            buildid: "40.1".into(),
            arches: vec![],
            name: None,
            version: Some("40.1".into()),
            metas: vec![],
        };
        let stages = expand(&config, &build).unwrap();
        let StageKind::ContainerManifest { annotations, .. } = &stages[0].kind else {
            panic!("{:?}", stages[0].kind)
        };
        // The build fields are the push's to fill in from the records it reads.
        let fields = fields(&[("40.1", "2026-11-01T10:00:00Z")]);
        let got = annotations.expand(Some(&fields)).unwrap().unwrap();
        assert_eq!(got["org.opencontainers.image.version"], "40.1");
        assert_eq!(got["org.example.stream"], "stable");
        assert_eq!(
            annotations.vars.keys().collect::<Vec<_>>(),
            ["stream"],
            "only the vars the values name"
        );
    }

    #[test]
    fn a_release_stage_refuses_bad_annotations_in_one_line_naming_the_stage() {
        for (extra, want) in [
            (
                r#"annotations = { k = "{basearch}" }"#,
                "unknown variable {basearch}",
            ),
            (r#"annotations = { k = "{" }"#, "annotations.k"),
            (
                "v2s2 = true\nannotations = { k = \"v\" }",
                "Docker manifest list",
            ),
        ] {
            let err = release_stage(extra).unwrap_err();
            assert!(
                err.contains("stage \"base\"") && err.contains(want),
                "{extra}: {err}"
            );
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }

    #[test]
    fn on_the_command_line_v2s2_and_build_fields_without_a_build_are_usage_errors() {
        let parse = |extra: &[&str]| {
            let mut args = vec![
                "reprise",
                "push-container-manifest",
                "--repo",
                "quay.io/a/b",
                "--tag",
                "stable",
            ];
            args.extend_from_slice(extra);
            crate::cli::try_parse_from(args)
        };
        let build = ["--artifact", "ostree", "--metajsonname", "k"];
        let ok = [&build[..], &["--annotation", "k={version}"]].concat();
        assert!(parse(&ok).is_ok());
        for (extra, want) in [
            (vec!["--v2s2", "--annotation", "k=v"], "--v2s2"),
            (
                vec!["--annotation", "k=1", "--annotation", "k=2"],
                "more than once",
            ),
        ] {
            let err = parse(&[&build[..], &extra[..]].concat()).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            let text = err.to_string();
            assert!(text.contains(want), "{text}");
            assert_eq!(text.trim_end().lines().count(), 1, "{text}");
        }
        let images = ["--image", "oci:dir", "--annotation", "k={name}"];
        let err = parse(&images).unwrap_err().to_string();
        assert!(err.contains("--image"), "{err}");
        assert!(parse(&["--image", "oci:dir", "--annotation", "k=v"]).is_ok());
    }

    #[test]
    fn release_vars_are_variables_but_cannot_shadow_the_build_fields() {
        let mut vars = BTreeMap::new();
        vars.insert("stream".to_owned(), "stable".to_owned());
        let a = Annotation::new("k", "{stream}").unwrap();
        assert!(check_vars(&a, &vars).is_ok());
        let mut with_vars = Annotations::new(vec![a]);
        with_vars.vars = vars.clone();
        assert_eq!(with_vars.expand(None).unwrap().unwrap()["k"], "stable");
        vars.insert("build-timestamp".to_owned(), "x".to_owned());
        let b = Annotation::new("c", "{build-timestamp}").unwrap();
        assert!(
            check_vars(&b, &vars)
                .unwrap_err()
                .contains("cannot redefine")
        );
    }
}
