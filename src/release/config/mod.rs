//! The release config file: parsing (serde reads each stage into one [`KindSpec`] enum,
//! unknown keys and kinds rejected), the check that templates name known variables and that
//! `needs` name earlier stages, and (`expand.rs`) their expansion with the variables of one
//! build. The template syntax itself is `release/template.rs`'s. Nothing here reads a build,
//! runs a program or talks to a registry; the caller hands in [`BuildVars`].
//!
//! Every error is one line naming the file and, where it can, the line and the stage.

mod expand;
mod field;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;

use crate::annotations::{self, Annotations};
use crate::plan::MissingArch;
use crate::platform::Arch;

pub use super::template::Template;
pub use expand::{BuildVars, DoneWhen, Invocation, Stage, StageKind, expand};

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Where the build is read from, as `--builds-url` says it (the flag wins).
    #[serde(default, rename = "builds-url")]
    builds_url: Option<String>,
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
    /// One repository or several: the first is the record's `image`, the rest are
    /// `additional-images`. A command stage has none.
    #[serde(default, deserialize_with = "field::repos")]
    repo: Vec<Template>,
    #[serde(default)]
    needs: Vec<String>,
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
        for key in ["name", "repo", "needs"] {
            if let Some(v) = table.remove(key) {
                head.insert(key.to_owned(), v);
            }
        }
        let kind = KindSpec::deserialize(toml::Value::Table(table))?;
        let head = StageHead::deserialize(toml::Value::Table(head))?;
        Ok(RawStage { head, kind })
    }
}

/// A parsed, checked config: every template names only known variables, every need an
/// earlier stage.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: Utf8PathBuf,
    /// `builds-url`: the build store the build is read from (`--builds-url` wins).
    pub builds_url: Option<String>,
    pub vars: BTreeMap<String, String>,
    pub stages: Vec<StageSpec>,
}

#[derive(Debug, Clone)]
pub struct StageSpec {
    pub name: String,
    /// Where the stage starts in the file, for messages.
    pub line: usize,
    pub repos: Vec<Template>,
    /// Earlier stages that must be done before this one runs.
    pub needs: Vec<String>,
    pub kind: KindSpec,
}

/// A stage's kind and the keys that only it has, as serde reads them from the file: the
/// `kind` key picks the variant, unknown keys are errors, templates and arches are parsed.
/// Whether the templates name known variables is checked after (see `check_stage`).
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
        /// Copy the referrers (signatures, attestations) of what is copied along with it to
        /// another repository or registry.
        #[serde(default = "field::yes")]
        referrers: bool,
    },
    #[serde(rename_all = "kebab-case")]
    Command(CommandSpec),
    DeleteTags {
        #[serde(deserialize_with = "field::tags")]
        tags: Vec<Template>,
        #[serde(default, deserialize_with = "field::keep")]
        keep: Vec<Template>,
        #[serde(default, deserialize_with = "field::arches")]
        arches: Vec<Arch>,
    },
}

/// A `command` stage's keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CommandSpec {
    /// The program and its arguments; no shell.
    #[serde(deserialize_with = "field::run")]
    pub run: Vec<Template>,
    #[serde(default)]
    pub per_arch: bool,
    #[serde(default, deserialize_with = "field::arches")]
    pub arches: Vec<Arch>,
    #[serde(default, deserialize_with = "field::env")]
    pub env: BTreeMap<String, Template>,
    #[serde(default, deserialize_with = "field::timeout")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub retries: u32,
    pub done_when: DoneWhenSpec,
}

/// What says a command's work is done, as the config writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum DoneWhenSpec {
    /// A JSON pointer into meta.json: present and not empty.
    Meta(#[serde(deserialize_with = "field::pointer")] String),
    /// A file (relative to the working directory) exists.
    File(#[serde(deserialize_with = "field::file")] Template),
    /// A program that exits 0.
    Check(#[serde(deserialize_with = "field::check")] Vec<Template>),
}

/// The kinds of stage, as the config and the report name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    ContainerManifest,
    ArchTags,
    CopyTag,
    Command,
    DeleteTags,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ContainerManifest => "container-manifest",
            Kind::ArchTags => "arch-tags",
            Kind::CopyTag => "copy-tag",
            Kind::Command => "command",
            Kind::DeleteTags => "delete-tags",
        }
    }
}

impl KindSpec {
    pub fn kind(&self) -> Kind {
        match self {
            KindSpec::ContainerManifest { .. } => Kind::ContainerManifest,
            KindSpec::ArchTags { .. } => Kind::ArchTags,
            KindSpec::CopyTag { .. } => Kind::CopyTag,
            KindSpec::Command(_) => Kind::Command,
            KindSpec::DeleteTags { .. } => Kind::DeleteTags,
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

/// Reads a config from its text. Unknown keys, unknown kinds, unknown `{variables}` and
/// needs that name no earlier stage are errors here, before any build is read.
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
            .and_then(|spec| check_place(spec, &stages))
            .map_err(|message| fail(Some(line), format!("{label}: {message}")))?;
        stages.push(spec);
    }
    Ok(Config {
        path: path.to_owned(),
        builds_url: raw.builds_url,
        vars: raw.vars,
        stages,
    })
}

/// What a stage's name and needs must be, given the stages before it.
fn check_place(spec: StageSpec, before: &[StageSpec]) -> Result<StageSpec, String> {
    if spec.name.is_empty() {
        return Err("name is empty".into());
    }
    if before.iter().any(|s| s.name == spec.name) {
        return Err("another stage has the same name".into());
    }
    for need in &spec.needs {
        if !before.iter().any(|s| &s.name == need) {
            return Err(format!(
                "needs: {need:?} is not the name of an earlier stage (stages run in file order)"
            ));
        }
    }
    Ok(spec)
}

/// Where `{basearch}` may appear in a field: it names one arch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ArchScope {
    /// The field is expanded once for the whole build.
    Build,
    /// The field is expanded once per arch.
    PerArch,
}

/// Checks one template field names only variables the release has.
fn check_template(
    field: &str,
    t: &Template,
    vars: &BTreeMap<String, String>,
    scope: ArchScope,
) -> Result<(), String> {
    for v in t.vars() {
        if v == "basearch" && scope == ArchScope::Build {
            return Err(format!(
                "{field}: {{basearch}} names one arch; only the tags of arch-tags and \
                 delete-tags stages and the fields of a per-arch command may use it"
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
    scope: ArchScope,
) -> Result<(), String> {
    if ts.is_empty() {
        return Err(format!("{field} is empty"));
    }
    ts.iter()
        .enumerate()
        .try_for_each(|(i, t)| check_template(&format!("{field}[{i}]"), t, vars, scope))
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

/// What serde cannot check: every template names a known variable, a stage that needs a
/// repository has one (and a command stage none), and no arch is listed twice.
fn check_stage(
    stage: RawStage,
    line: usize,
    vars: &BTreeMap<String, String>,
) -> Result<StageSpec, String> {
    use ArchScope::{Build, PerArch};
    let RawStage {
        head: StageHead { name, repo, needs },
        mut kind,
    } = stage;
    let repo_check = |required: bool| -> Result<(), String> {
        if required && repo.is_empty() {
            return Err("missing field `repo`".into());
        }
        repo.iter().enumerate().try_for_each(|(i, t)| {
            let field = if repo.len() == 1 {
                "repo".to_owned()
            } else {
                format!("repo[{i}]")
            };
            check_template(&field, t, vars, Build)
        })
    };
    match &mut kind {
        KindSpec::ContainerManifest {
            tags,
            arches,
            v2s2,
            annotations,
            ..
        } => {
            repo_check(true)?;
            check_templates("tags", tags, vars, Build)?;
            dedup_arches(arches);
            if *v2s2 && !annotations.is_empty() {
                return Err("annotations: a Docker manifest list (v2s2 = true) has none".into());
            }
            for a in &annotations.entries {
                annotations::check_vars(a, vars)?;
            }
        }
        KindSpec::ArchTags { tags, arches, .. } => {
            repo_check(true)?;
            check_templates("tags", tags, vars, PerArch)?;
            dedup_arches(arches);
        }
        KindSpec::CopyTag { from, to, .. } => {
            // Without a repo, `from` and `to` must expand to full references; that is
            // checked when they are expanded.
            repo_check(false)?;
            check_template("from", from, vars, Build)?;
            check_templates("to", to, vars, Build)?;
        }
        KindSpec::DeleteTags { tags, keep, arches } => {
            repo_check(true)?;
            check_templates("tags", tags, vars, PerArch)?;
            keep.iter()
                .enumerate()
                .try_for_each(|(i, t)| check_template(&format!("keep[{i}]"), t, vars, Build))?;
            dedup_arches(arches);
        }
        KindSpec::Command(c) => {
            if !repo.is_empty() {
                return Err("repo: a command stage has no repository".into());
            }
            check_command(c, vars)?;
        }
    }
    Ok(StageSpec {
        name,
        line,
        repos: repo,
        needs,
        kind,
    })
}

fn check_command(c: &mut CommandSpec, vars: &BTreeMap<String, String>) -> Result<(), String> {
    let scope = if c.per_arch {
        ArchScope::PerArch
    } else {
        ArchScope::Build
    };
    check_templates("run", &c.run, vars, scope)?;
    for (key, t) in &c.env {
        check_template(&format!("env.{key}"), t, vars, scope)?;
    }
    match &c.done_when {
        DoneWhenSpec::Meta(_) => {}
        DoneWhenSpec::File(t) => check_template("done-when.file", t, vars, scope)?,
        DoneWhenSpec::Check(ts) => check_templates("done-when.check", ts, vars, scope)?,
    }
    dedup_arches(&mut c.arches);
    Ok(())
}

#[cfg(test)]
mod tests;
