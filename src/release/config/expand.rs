//! A checked config made concrete for one build: every template expanded with the build's
//! variables and parsed into tags, references, argv and paths. A stage expanded here is
//! exactly what runs; nothing is looked up later.

use std::time::Duration;

use camino::Utf8PathBuf;

use super::{CommandSpec, Config, ConfigError, DoneWhenSpec, Kind, KindSpec, StageSpec, Template};
use crate::annotations::Annotations;
use crate::plan::MissingArch;
use crate::platform::Arch;
use crate::reference::{Reference, Repository, Tag};

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
    /// Each arch's meta.json, for `done-when = { meta = ... }`.
    pub metas: Vec<(Arch, Utf8PathBuf)>,
}

/// A stage with every template expanded and every name parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub name: String,
    /// The stage's repositories; the first is the record's `image`. Empty for a command
    /// stage, and for a copy-tag stage given full references only.
    pub repos: Vec<Repository>,
    pub needs: Vec<String>,
    pub kind: StageKind,
}

impl Stage {
    /// The stage's first repository, if it has one.
    pub fn repo(&self) -> Option<&Repository> {
        self.repos.first()
    }
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
        /// With the `[vars]` their values name.
        annotations: Annotations,
    },
    ArchTags {
        artifact: String,
        /// Only these arches (all of the build's when empty).
        arches: Vec<Arch>,
        /// Every tag to write in each repository, with the arch whose manifest it holds.
        tags: Vec<(Arch, Tag)>,
    },
    CopyTag {
        from: Reference,
        /// Every reference that must end at what `from` holds.
        to: Vec<Reference>,
        /// Whether the referrers of what `from` holds go along to other repositories.
        referrers: bool,
    },
    Command {
        per_arch: bool,
        /// One per selected arch with `per-arch`, else one.
        runs: Vec<Invocation>,
        timeout: Option<Duration>,
        retries: u32,
    },
    DeleteTags {
        /// The tags to delete from each repository.
        tags: Vec<Tag>,
        /// References whose manifests must survive.
        keep: Vec<Reference>,
    },
}

/// One run of a command stage's program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The arch it runs for (`per-arch`), else `None`.
    pub arch: Option<Arch>,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub done_when: DoneWhen,
}

/// What says an invocation's work is done, made concrete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoneWhen {
    /// The pointer is present and not empty in every one of these meta.json files.
    Meta {
        pointer: String,
        metas: Vec<(Arch, Utf8PathBuf)>,
    },
    /// The file exists (relative paths are from the working directory).
    File(Utf8PathBuf),
    /// The program exits 0.
    Check(Vec<String>),
}

impl StageKind {
    pub fn kind(&self) -> Kind {
        match self {
            StageKind::ContainerManifest { .. } => Kind::ContainerManifest,
            StageKind::ArchTags { .. } => Kind::ArchTags,
            StageKind::CopyTag { .. } => Kind::CopyTag,
            StageKind::Command { .. } => Kind::Command,
            StageKind::DeleteTags { .. } => Kind::DeleteTags,
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

    /// The arches a stage works on: `arches` if given (each must be in the build), else the
    /// build's.
    fn selected<'b>(&'b self, arches: &'b [Arch]) -> Result<&'b [Arch], String> {
        let build = self.build;
        if let Some(a) = arches.iter().find(|a| !build.arches.contains(a)) {
            return Err(format!(
                "arches: {a} is not in build {} (it has {})",
                build.buildid,
                crate::platform::join(&build.arches)
            ));
        }
        Ok(if arches.is_empty() {
            &build.arches
        } else {
            arches
        })
    }

    /// An arch-tags stage's tags for each selected arch (the build's, when `arches` is empty).
    /// A tag that names its arch is taken as written; any other gets `-<arch>`, so each arch
    /// has its own tag.
    fn arch_tags(&self, ts: &[Template], arches: &[Arch]) -> Result<Vec<(Arch, Tag)>, String> {
        let mut out: Vec<(Arch, Tag)> = Vec::new();
        for arch in self.selected(arches)? {
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

    /// A delete-tags stage's tags: one per selected arch for a tag naming `{basearch}`, the
    /// tag as written otherwise; each once.
    fn delete_tags(&self, ts: &[Template], arches: &[Arch]) -> Result<Vec<Tag>, String> {
        let selected = self.selected(arches)?;
        let mut out: Vec<Tag> = Vec::new();
        for (i, t) in ts.iter().enumerate() {
            let field = format!("tags[{i}]");
            let expanded = if t.uses("basearch") {
                selected
                    .iter()
                    .map(|a| self.tag(&field, t, Some(a), None))
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                vec![self.tag(&field, t, None, None)?]
            };
            for tag in expanded {
                if !out.contains(&tag) {
                    out.push(tag);
                }
            }
        }
        Ok(out)
    }

    /// A `from`, `to` or `keep` value: a full reference (it has a `/`), or a tag in each of
    /// the stage's repositories.
    fn references(
        &self,
        field: &str,
        t: &Template,
        repos: &[Repository],
    ) -> Result<Vec<Reference>, String> {
        let s = self.text(field, t, None)?;
        if s.contains('/') {
            let r = Reference::parse(&s).map_err(|e| format!("{field}: {e}"))?;
            return Ok(vec![r]);
        }
        if repos.is_empty() {
            return Err(format!(
                "{field}: {s:?} is a tag, and the stage has no repo; give a full reference \
                 (registry/repository:tag) or a repo"
            ));
        }
        let tag =
            Tag::parse(&s).map_err(|e| format!("{field}: {:?} expands to {e}", t.as_str()))?;
        Ok(repos.iter().map(|r| r.tagged(&tag)).collect())
    }

    /// Each of a list field's references, each once.
    fn reference_list(
        &self,
        field: &str,
        ts: &[Template],
        repos: &[Repository],
    ) -> Result<Vec<Reference>, String> {
        let mut out: Vec<Reference> = Vec::new();
        for (i, t) in ts.iter().enumerate() {
            for r in self.references(&format!("{field}[{i}]"), t, repos)? {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    fn copy_tag(
        &self,
        from: &Template,
        to: &[Template],
        repos: &[Repository],
    ) -> Result<StageKind, String> {
        // `from` is read in the first repository when it is a tag.
        let from = self
            .references("from", from, repos.get(..1).unwrap_or_default())?
            .remove(0);
        let to = self.reference_list("to", to, repos)?;
        if to.contains(&from) {
            return Err(format!("to: {from} is also the from reference"));
        }
        if let Some(r) = to.iter().find(|r| matches!(r, Reference::Digested(..))) {
            return Err(format!(
                "to: {r} names a digest; a copy is written to a tag"
            ));
        }
        Ok(StageKind::CopyTag {
            from,
            to,
            referrers: true,
        })
    }

    fn command(&self, c: &CommandSpec) -> Result<StageKind, String> {
        let selected = self.selected(&c.arches)?.to_vec();
        let arches: Vec<Option<Arch>> = if c.per_arch {
            selected.iter().cloned().map(Some).collect()
        } else {
            vec![None]
        };
        let runs = arches
            .into_iter()
            .map(|arch| self.invocation(c, arch, &selected))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StageKind::Command {
            per_arch: c.per_arch,
            runs,
            timeout: c.timeout,
            retries: c.retries,
        })
    }

    /// One run of a command: for `arch`, or (`None`) once for the `selected` arches.
    fn invocation(
        &self,
        c: &CommandSpec,
        arch: Option<Arch>,
        selected: &[Arch],
    ) -> Result<Invocation, String> {
        let a = arch.as_ref();
        let list = |field: &str, ts: &[Template]| -> Result<Vec<String>, String> {
            ts.iter()
                .enumerate()
                .map(|(i, t)| self.text(&format!("{field}[{i}]"), t, a))
                .collect()
        };
        let argv = list("run", &c.run)?;
        let env = c
            .env
            .iter()
            .map(|(k, t)| Ok((k.clone(), self.text(&format!("env.{k}"), t, a)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let done_when = match &c.done_when {
            DoneWhenSpec::Meta(pointer) => DoneWhen::Meta {
                pointer: pointer.clone(),
                metas: self
                    .build
                    .metas
                    .iter()
                    .filter(|(m, _)| match a {
                        Some(a) => m == a,
                        None => selected.contains(m),
                    })
                    .cloned()
                    .collect(),
            },
            DoneWhenSpec::File(t) => DoneWhen::File(self.text("done-when.file", t, a)?.into()),
            DoneWhenSpec::Check(ts) => DoneWhen::Check(list("done-when.check", ts)?),
        };
        Ok(Invocation {
            arch,
            argv,
            env,
            done_when,
        })
    }

    fn kind(&self, kind: &KindSpec, repos: &[Repository]) -> Result<StageKind, String> {
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
            KindSpec::CopyTag {
                from,
                to,
                referrers,
            } => match self.copy_tag(from, to, repos)? {
                StageKind::CopyTag { from, to, .. } => StageKind::CopyTag {
                    from,
                    to,
                    referrers: *referrers,
                },
                other => other,
            },
            KindSpec::Command(c) => self.command(c)?,
            KindSpec::DeleteTags { tags, keep, arches } => StageKind::DeleteTags {
                tags: self.delete_tags(tags, arches)?,
                keep: self.reference_list("keep", keep, repos)?,
            },
        })
    }
}

fn expand_stage(config: &Config, build: &BuildVars, s: &StageSpec) -> Result<Stage, String> {
    let x = Expander { config, build };
    let mut repos: Vec<Repository> = Vec::new();
    for (i, t) in s.repos.iter().enumerate() {
        let field = if s.repos.len() == 1 {
            "repo".to_owned()
        } else {
            format!("repo[{i}]")
        };
        let text = x.text(&field, t, None)?;
        let repo = Repository::parse(&text).map_err(|e| format!("{field}: {e}"))?;
        if !repos.contains(&repo) {
            repos.push(repo);
        }
    }
    Ok(Stage {
        name: s.name.clone(),
        kind: x.kind(&s.kind, &repos)?,
        repos,
        needs: s.needs.clone(),
    })
}
