//! The release config file: parsing (unknown keys rejected), templates, and their expansion
//! with the variables of one build. Nothing here reads a build or talks to a registry; the
//! caller hands in [`BuildVars`].
//!
//! Every error is one line naming the file and, where it can, the line and the stage.

use std::collections::BTreeMap;
use std::fmt;

use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;

use crate::plan::MissingArch;
use crate::platform::Arch;
use crate::reference::{Repository, Tag};

/// Variables every release has, taken from the build records.
pub const BUILTINS: [&str; 4] = ["buildid", "version", "name", "basearch"];

/// A bad config file, or a config that does not fit the build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub path: Utf8PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

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

/// `missing-arch` as the config spells it.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawMissingArch {
    #[default]
    Refuse,
    Keep,
    Drop,
}

impl From<RawMissingArch> for MissingArch {
    fn from(m: RawMissingArch) -> MissingArch {
        match m {
            RawMissingArch::Refuse => MissingArch::Refuse,
            RawMissingArch::Keep => MissingArch::Keep,
            RawMissingArch::Drop => MissingArch::Drop,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    vars: BTreeMap<String, String>,
    #[serde(default)]
    stage: Vec<toml::Spanned<toml::Table>>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum RawStage {
    ContainerManifest(RawContainerManifest),
    ArchTags(RawArchTags),
    CopyTag(RawCopyTag),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawContainerManifest {
    name: String,
    artifact: String,
    metajsonname: String,
    repo: String,
    tags: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    missing_arch: RawMissingArch,
    #[serde(default)]
    v2s2: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawArchTags {
    name: String,
    artifact: String,
    repo: String,
    tags: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCopyTag {
    name: String,
    repo: String,
    from: String,
    to: Vec<String>,
}

/// A parsed, checked config: every template names only known variables.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: Utf8PathBuf,
    pub vars: BTreeMap<String, String>,
    pub stages: Vec<StageSpec>,
}

#[derive(Debug, Clone)]
pub struct StageSpec {
    pub name: String,
    /// Where the stage starts in the file, for messages.
    pub line: usize,
    pub repo: Template,
    pub kind: KindSpec,
}

#[derive(Debug, Clone)]
pub enum KindSpec {
    ContainerManifest {
        artifact: String,
        metajsonname: String,
        tags: Vec<Template>,
        arches: Vec<Arch>,
        missing_arch: MissingArch,
        v2s2: bool,
    },
    ArchTags {
        artifact: String,
        tags: Vec<Template>,
        arches: Vec<Arch>,
    },
    CopyTag {
        from: Template,
        to: Vec<Template>,
    },
}

/// The kinds of stage, as the config and the report name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    ContainerManifest,
    ArchTags,
    CopyTag,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ContainerManifest => "container-manifest",
            Kind::ArchTags => "arch-tags",
            Kind::CopyTag => "copy-tag",
        }
    }
}

impl KindSpec {
    pub fn kind(&self) -> Kind {
        match self {
            KindSpec::ContainerManifest { .. } => Kind::ContainerManifest,
            KindSpec::ArchTags { .. } => Kind::ArchTags,
            KindSpec::CopyTag { .. } => Kind::CopyTag,
        }
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Reads a config from its text. Unknown keys, unknown kinds and unknown `{variables}` are
/// errors here, before any build is read.
pub fn parse(path: &Utf8Path, text: &str) -> Result<Config, ConfigError> {
    let fail = |line: Option<usize>, message: String| ConfigError {
        path: path.to_owned(),
        line,
        message,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        fail(
            e.span().map(|s| line_of(text, s.start)),
            e.message().trim().to_owned(),
        )
    })?;
    for key in raw.vars.keys() {
        if BUILTINS.contains(&key.as_str()) {
            return Err(fail(
                None,
                format!("[vars] cannot redefine {{{key}}}: it comes from the build records"),
            ));
        }
    }
    if raw.stage.is_empty() {
        return Err(fail(
            None,
            "no [[stage]]: a release needs at least one".into(),
        ));
    }
    let mut stages: Vec<StageSpec> = Vec::new();
    for (i, spanned) in raw.stage.into_iter().enumerate() {
        let line = line_of(text, spanned.span().start);
        let table = spanned.into_inner();
        let label = match table.get("name").and_then(toml::Value::as_str) {
            Some(name) => format!("stage {name:?}"),
            None => format!("stage {}", i + 1),
        };
        let stage: RawStage =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    fail(Some(line), format!("{label}: {}", e.message().trim()))
                })?;
        let spec = check_stage(stage, line, &raw.vars)
            .map_err(|message| fail(Some(line), format!("{label}: {message}")))?;
        if spec.name.is_empty() {
            return Err(fail(Some(line), format!("{label}: name is empty")));
        }
        if stages.iter().any(|s| s.name == spec.name) {
            return Err(fail(
                Some(line),
                format!("{label}: another stage has the same name"),
            ));
        }
        stages.push(spec);
    }
    Ok(Config {
        path: path.to_owned(),
        vars: raw.vars,
        stages,
    })
}

/// Checks one template field: it parses, and names only variables the release has.
/// `{basearch}` means one arch, so only an arch-tags stage's tags may use it.
fn template(
    field: &str,
    raw: &str,
    vars: &BTreeMap<String, String>,
    per_arch: bool,
) -> Result<Template, String> {
    let t = Template::parse(raw).map_err(|e| format!("{field}: {e}"))?;
    for v in t.vars() {
        if v == "basearch" && !per_arch {
            return Err(format!(
                "{field}: {{basearch}} names one arch; only the tags of an arch-tags stage may use it"
            ));
        }
        if !BUILTINS.contains(&v) && !vars.contains_key(v) {
            let mut known: Vec<&str> = BUILTINS.to_vec();
            known.extend(vars.keys().map(String::as_str));
            return Err(format!(
                "{field}: unknown variable {{{v}}} (known: {})",
                known.join(", ")
            ));
        }
    }
    Ok(t)
}

fn templates(
    field: &str,
    raws: &[String],
    vars: &BTreeMap<String, String>,
    per_arch: bool,
) -> Result<Vec<Template>, String> {
    if raws.is_empty() {
        return Err(format!("{field} is empty"));
    }
    raws.iter()
        .enumerate()
        .map(|(i, raw)| template(&format!("{field}[{i}]"), raw, vars, per_arch))
        .collect()
}

fn arches(raws: &[String]) -> Result<Vec<Arch>, String> {
    let mut out: Vec<Arch> = Vec::new();
    for (i, raw) in raws.iter().enumerate() {
        let a = Arch::parse(raw).map_err(|e| format!("arches[{i}]: {e}"))?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

fn check_stage(
    stage: RawStage,
    line: usize,
    vars: &BTreeMap<String, String>,
) -> Result<StageSpec, String> {
    Ok(match stage {
        RawStage::ContainerManifest(s) => StageSpec {
            repo: template("repo", &s.repo, vars, false)?,
            kind: KindSpec::ContainerManifest {
                tags: templates("tags", &s.tags, vars, false)?,
                arches: arches(&s.arches)?,
                artifact: s.artifact,
                metajsonname: s.metajsonname,
                missing_arch: s.missing_arch.into(),
                v2s2: s.v2s2,
            },
            name: s.name,
            line,
        },
        RawStage::ArchTags(s) => StageSpec {
            repo: template("repo", &s.repo, vars, false)?,
            kind: KindSpec::ArchTags {
                tags: templates("tags", &s.tags, vars, true)?,
                arches: arches(&s.arches)?,
                artifact: s.artifact,
            },
            name: s.name,
            line,
        },
        RawStage::CopyTag(s) => StageSpec {
            repo: template("repo", &s.repo, vars, false)?,
            kind: KindSpec::CopyTag {
                from: template("from", &s.from, vars, false)?,
                to: templates("to", &s.to, vars, false)?,
            },
            name: s.name,
            line,
        },
    })
}

/// What the build records give the templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildVars {
    pub buildid: String,
    /// The build's arches, in builds.json order.
    pub arches: Vec<Arch>,
    /// meta.json `name`, if every arch records the same one.
    pub name: Option<String>,
    /// meta.json `ostree-version`, if every arch records the same one.
    pub version: Option<String>,
}

/// A stage with every template expanded and every name parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub name: String,
    pub repo: Repository,
    pub kind: StageKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageKind {
    ContainerManifest {
        artifact: String,
        metajsonname: String,
        tags: Vec<Tag>,
        arches: Vec<Arch>,
        missing_arch: MissingArch,
        v2s2: bool,
    },
    ArchTags {
        artifact: String,
        /// Only these arches (all of the build's when empty).
        arches: Vec<Arch>,
        /// Every tag to write, with the arch whose manifest it holds.
        tags: Vec<(Arch, Tag)>,
    },
    CopyTag {
        from: Tag,
        to: Vec<Tag>,
    },
}

impl StageKind {
    pub fn kind(&self) -> Kind {
        match self {
            StageKind::ContainerManifest { .. } => Kind::ContainerManifest,
            StageKind::ArchTags { .. } => Kind::ArchTags,
            StageKind::CopyTag { .. } => Kind::CopyTag,
        }
    }
}

/// Expands every stage's templates with the build's variables and parses the results.
pub fn expand(config: &Config, build: &BuildVars) -> Result<Vec<Stage>, ConfigError> {
    config
        .stages
        .iter()
        .map(|s| {
            expand_stage(config, build, s).map_err(|message| ConfigError {
                path: config.path.clone(),
                line: Some(s.line),
                message: format!("stage {:?}: {message}", s.name),
            })
        })
        .collect()
}

/// The value of one variable; `arch` is the arch meant, where one is.
fn value(
    config: &Config,
    build: &BuildVars,
    arch: Option<&Arch>,
    var: &str,
) -> Result<String, String> {
    let missing = |key: &str| {
        format!(
            "{{{var}}}: the meta.json files of build {} do not all record the same {key:?}",
            build.buildid
        )
    };
    match var {
        "buildid" => Ok(build.buildid.clone()),
        "version" => build
            .version
            .clone()
            .ok_or_else(|| missing("ostree-version")),
        "name" => build.name.clone().ok_or_else(|| missing("name")),
        "basearch" => arch
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| "{basearch} names one arch".to_owned()),
        other => config
            .vars
            .get(other)
            .cloned()
            .ok_or_else(|| format!("unknown variable {{{other}}}")),
    }
}

fn expand_stage(config: &Config, build: &BuildVars, s: &StageSpec) -> Result<Stage, String> {
    let expand = |field: &str, t: &Template, arch: Option<&Arch>| {
        t.expand(|var| value(config, build, arch, var))
            .map_err(|e| format!("{field}: {e}"))
    };
    let tag = |field: &str, t: &Template, arch: Option<&Arch>, suffix: Option<&Arch>| {
        let mut s = expand(field, t, arch)?;
        if let Some(a) = suffix {
            s = format!("{s}-{a}");
        }
        Tag::parse(&s).map_err(|e| format!("{field}: {:?} expands to {e}", t.as_str()))
    };
    let tags = |field: &str, ts: &[Template]| -> Result<Vec<Tag>, String> {
        let mut out: Vec<Tag> = Vec::new();
        for (i, t) in ts.iter().enumerate() {
            let t = tag(&format!("{field}[{i}]"), t, None, None)?;
            if !out.contains(&t) {
                out.push(t);
            }
        }
        Ok(out)
    };
    let repo_str = expand("repo", &s.repo, None)?;
    let repo = Repository::parse(&repo_str).map_err(|e| format!("repo: {e}"))?;
    let kind = match &s.kind {
        KindSpec::ContainerManifest {
            artifact,
            metajsonname,
            tags: ts,
            arches,
            missing_arch,
            v2s2,
        } => StageKind::ContainerManifest {
            artifact: artifact.clone(),
            metajsonname: metajsonname.clone(),
            tags: tags("tags", ts)?,
            arches: arches.clone(),
            missing_arch: *missing_arch,
            v2s2: *v2s2,
        },
        KindSpec::ArchTags {
            artifact,
            tags: ts,
            arches,
        } => {
            for a in arches {
                if !build.arches.contains(a) {
                    return Err(format!(
                        "arches: {a} is not in build {} (it has {})",
                        build.buildid,
                        crate::platform::join(&build.arches)
                    ));
                }
            }
            let selected = if arches.is_empty() {
                &build.arches
            } else {
                arches
            };
            let mut out: Vec<(Arch, Tag)> = Vec::new();
            for arch in selected {
                for (i, t) in ts.iter().enumerate() {
                    // A tag that names its arch is taken as written; any other gets
                    // `-<arch>`, so each arch has its own tag.
                    let suffix = (!t.uses("basearch")).then_some(arch);
                    let t = tag(&format!("tags[{i}]"), t, Some(arch), suffix)?;
                    if let Some((other, _)) = out.iter().find(|(_, o)| o == &t) {
                        if other != arch {
                            return Err(format!("tags: {t} would hold both {other} and {arch}"));
                        }
                        continue;
                    }
                    out.push((arch.clone(), t));
                }
            }
            StageKind::ArchTags {
                artifact: artifact.clone(),
                arches: arches.clone(),
                tags: out,
            }
        }
        KindSpec::CopyTag { from, to } => {
            let from = tag("from", from, None, None)?;
            let to = tags("to", to)?;
            if to.contains(&from) {
                return Err(format!("to: {from} is also the from tag"));
            }
            StageKind::CopyTag { from, to }
        }
    };
    Ok(Stage {
        name: s.name.clone(),
        repo,
        kind,
    })
}
