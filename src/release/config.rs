//! The release config file: parsing (serde reads each stage into one [`KindSpec`] enum,
//! unknown keys and kinds rejected), the check that templates name known variables, and their
//! expansion with the variables of one build. The template syntax itself is
//! `release/template.rs`'s. Nothing here reads a build or talks to a registry; the caller
//! hands in [`BuildVars`].
//!
//! Every error is one line naming the file and, where it can, the line and the stage.

use std::collections::BTreeMap;
use std::fmt;

use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;

use crate::annotations::{self, Annotations};
use crate::plan::MissingArch;
use crate::platform::Arch;
use crate::reference::{Repository, Tag};

pub use super::template::Template;

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

/// Deserializers for the fields serde parses into templates and arches. Each names its field
/// (and index) in the error, so a message says which value is wrong.
mod field {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};

    use super::Template;
    use crate::platform::Arch;

    fn one<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<Template, D::Error> {
        let raw = String::deserialize(d)?;
        Template::parse(&raw).map_err(|e| D::Error::custom(format!("{field}: {e}")))
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
        raws.iter()
            .enumerate()
            .map(|(i, raw)| parse(raw).map_err(|e| D::Error::custom(format!("{field}[{i}]: {e}"))))
            .collect()
    }

    pub fn repo<'de, D: Deserializer<'de>>(d: D) -> Result<Template, D::Error> {
        one(d, "repo")
    }

    pub fn from<'de, D: Deserializer<'de>>(d: D) -> Result<Template, D::Error> {
        one(d, "from")
    }

    pub fn tags<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Template>, D::Error> {
        each(d, "tags", Template::parse)
    }

    pub fn to<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Template>, D::Error> {
        each(d, "to", Template::parse)
    }

    pub fn arches<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Arch>, D::Error> {
        each(d, "arches", Arch::parse)
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

/// The keys every kind of stage has.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StageHead {
    name: String,
    #[serde(deserialize_with = "field::repo")]
    repo: Template,
}

/// One `[[stage]]` as read, before its variables are checked.
struct RawStage {
    head: StageHead,
    kind: KindSpec,
}

impl RawStage {
    /// The kind and its keys first, so an unknown kind is reported before a missing name or
    /// repo, then the keys every kind has.
    fn read(mut table: toml::Table) -> Result<RawStage, toml::de::Error> {
        let mut head = toml::Table::new();
        for key in ["name", "repo"] {
            if let Some(v) = table.remove(key) {
                head.insert(key.to_owned(), v);
            }
        }
        let kind = KindSpec::deserialize(toml::Value::Table(table))?;
        let head = StageHead::deserialize(toml::Value::Table(head))?;
        Ok(RawStage { head, kind })
    }
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

/// A stage's kind and the keys that only it has, as serde reads them from the file: the
/// `kind` key picks the variant, unknown keys are errors, templates and arches are parsed.
/// Whether the templates name known variables is checked after (see [`check_stage`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum KindSpec {
    #[serde(rename_all = "kebab-case")]
    ContainerManifest {
        artifact: String,
        metajsonname: String,
        #[serde(deserialize_with = "field::tags")]
        tags: Vec<Template>,
        #[serde(default, deserialize_with = "field::arches")]
        arches: Vec<Arch>,
        #[serde(default)]
        missing_arch: MissingArch,
        #[serde(default)]
        v2s2: bool,
        /// Annotations on the index; their values may name the build's fields.
        #[serde(default)]
        annotations: Annotations,
    },
    ArchTags {
        artifact: String,
        #[serde(deserialize_with = "field::tags")]
        tags: Vec<Template>,
        #[serde(default, deserialize_with = "field::arches")]
        arches: Vec<Arch>,
    },
    CopyTag {
        #[serde(deserialize_with = "field::from")]
        from: Template,
        #[serde(deserialize_with = "field::to")]
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
        let stage = RawStage::read(table)
            .map_err(|e| fail(Some(line), format!("{label}: {}", e.message().trim())))?;
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

/// Checks one template field names only variables the release has. `{basearch}` means one
/// arch, so only an arch-tags stage's tags may use it.
fn check_template(
    field: &str,
    t: &Template,
    vars: &BTreeMap<String, String>,
    per_arch: bool,
) -> Result<(), String> {
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
    Ok(())
}

/// [`check_template`] for each of a list field, which may not be empty.
fn check_templates(
    field: &str,
    ts: &[Template],
    vars: &BTreeMap<String, String>,
    per_arch: bool,
) -> Result<(), String> {
    if ts.is_empty() {
        return Err(format!("{field} is empty"));
    }
    ts.iter()
        .enumerate()
        .try_for_each(|(i, t)| check_template(&format!("{field}[{i}]"), t, vars, per_arch))
}

/// An arch named twice is one arch.
fn dedup_arches(arches: &mut Vec<Arch>) {
    let mut seen: Vec<Arch> = Vec::with_capacity(arches.len());
    arches.retain(|a| {
        let new = !seen.contains(a);
        if new {
            seen.push(a.clone());
        }
        new
    });
}

/// What serde cannot check: every template names a known variable, and no arch is listed
/// twice.
fn check_stage(
    stage: RawStage,
    line: usize,
    vars: &BTreeMap<String, String>,
) -> Result<StageSpec, String> {
    let RawStage {
        head: StageHead { name, repo },
        mut kind,
    } = stage;
    check_template("repo", &repo, vars, false)?;
    match &mut kind {
        KindSpec::ContainerManifest {
            tags,
            arches,
            v2s2,
            annotations,
            ..
        } => {
            check_templates("tags", tags, vars, false)?;
            dedup_arches(arches);
            if *v2s2 && !annotations.is_empty() {
                return Err("annotations: a Docker manifest list (v2s2 = true) has none".into());
            }
            for a in &annotations.entries {
                annotations::check_vars(a, vars)?;
            }
        }
        KindSpec::ArchTags { tags, arches, .. } => {
            check_templates("tags", tags, vars, true)?;
            dedup_arches(arches);
        }
        KindSpec::CopyTag { from, to } => {
            check_template("from", from, vars, false)?;
            check_templates("to", to, vars, false)?;
        }
    }
    Ok(StageSpec {
        name,
        line,
        repo,
        kind,
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
        /// With the config's `[vars]`, for their values.
        annotations: Annotations,
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

/// Expands templates for one build: the variables come from the config and the build.
struct Expander<'a> {
    config: &'a Config,
    build: &'a BuildVars,
}

impl Expander<'_> {
    fn text(&self, field: &str, t: &Template, arch: Option<&Arch>) -> Result<String, String> {
        t.expand(|var| value(self.config, self.build, arch, var))
            .map_err(|e| format!("{field}: {e}"))
    }

    /// One tag; `suffix` is appended as `-<arch>`.
    fn tag(
        &self,
        field: &str,
        t: &Template,
        arch: Option<&Arch>,
        suffix: Option<&Arch>,
    ) -> Result<Tag, String> {
        let mut s = self.text(field, t, arch)?;
        if let Some(a) = suffix {
            s = format!("{s}-{a}");
        }
        Tag::parse(&s).map_err(|e| format!("{field}: {:?} expands to {e}", t.as_str()))
    }

    /// A list of tags, each once.
    fn tags(&self, field: &str, ts: &[Template]) -> Result<Vec<Tag>, String> {
        let mut out: Vec<Tag> = Vec::new();
        for (i, t) in ts.iter().enumerate() {
            let t = self.tag(&format!("{field}[{i}]"), t, None, None)?;
            if !out.contains(&t) {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// An arch-tags stage's tags for each selected arch (the build's, when `arches` is empty).
    /// A tag that names its arch is taken as written; any other gets `-<arch>`, so each arch
    /// has its own tag.
    fn arch_tags(&self, ts: &[Template], arches: &[Arch]) -> Result<Vec<(Arch, Tag)>, String> {
        let build = self.build;
        if let Some(a) = arches.iter().find(|a| !build.arches.contains(a)) {
            return Err(format!(
                "arches: {a} is not in build {} (it has {})",
                build.buildid,
                crate::platform::join(&build.arches)
            ));
        }
        let selected = if arches.is_empty() {
            &build.arches
        } else {
            arches
        };
        let mut out: Vec<(Arch, Tag)> = Vec::new();
        for arch in selected {
            for (i, t) in ts.iter().enumerate() {
                let suffix = (!t.uses("basearch")).then_some(arch);
                let t = self.tag(&format!("tags[{i}]"), t, Some(arch), suffix)?;
                if let Some((other, _)) = out.iter().find(|(_, o)| o == &t) {
                    if other != arch {
                        return Err(format!("tags: {t} would hold both {other} and {arch}"));
                    }
                    continue;
                }
                out.push((arch.clone(), t));
            }
        }
        Ok(out)
    }

    fn kind(&self, kind: &KindSpec) -> Result<StageKind, String> {
        Ok(match kind {
            KindSpec::ContainerManifest {
                artifact,
                metajsonname,
                tags,
                arches,
                missing_arch,
                v2s2,
                annotations,
            } => StageKind::ContainerManifest {
                artifact: artifact.clone(),
                metajsonname: metajsonname.clone(),
                tags: self.tags("tags", tags)?,
                arches: arches.clone(),
                missing_arch: *missing_arch,
                v2s2: *v2s2,
                annotations: Annotations::with_vars(annotations.entries.clone(), &self.config.vars),
            },
            KindSpec::ArchTags {
                artifact,
                tags,
                arches,
            } => StageKind::ArchTags {
                artifact: artifact.clone(),
                arches: arches.clone(),
                tags: self.arch_tags(tags, arches)?,
            },
            KindSpec::CopyTag { from, to } => {
                let from = self.tag("from", from, None, None)?;
                let to = self.tags("to", to)?;
                if to.contains(&from) {
                    return Err(format!("to: {from} is also the from tag"));
                }
                StageKind::CopyTag { from, to }
            }
        })
    }
}

fn expand_stage(config: &Config, build: &BuildVars, s: &StageSpec) -> Result<Stage, String> {
    let x = Expander { config, build };
    let repo_str = x.text("repo", &s.repo, None)?;
    let repo = Repository::parse(&repo_str).map_err(|e| format!("repo: {e}"))?;
    Ok(Stage {
        name: s.name.clone(),
        repo,
        kind: x.kind(&s.kind)?,
    })
}
