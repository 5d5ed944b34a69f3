//! Planning one stage of a release: what it would do, read from the registry, the
//! metadata, and what earlier stages of the run plan to write (the overlay). Nothing here
//! writes; applying a planned stage is `release.rs`'s, and which digest a tag should hold is
//! [`super::tag_step`]'s rule.

use std::collections::BTreeMap;

use crate::apply::ArchImage;
use crate::plan::TagAction;
use crate::platform::Arch;
use crate::push;
use crate::reference::{Digest, Reference, Repository, Tag};
use crate::registry::Client;
use crate::report::Skipped;

use super::command::{self, Predicate};
use super::config::Invocation;
use super::copy::{self, CopyWork};
use super::delete::{self, DeleteWork};
use super::{RunRequest, Stage, StageError, StageKind, push_request, tag_step};

/// Tags that earlier stages of this run plan to write, with the digest and the stage.
pub(super) type Overlay = BTreeMap<(Repository, Tag), (Digest, String)>;

/// One tag an `arch-tags` stage owns.
#[derive(Debug, Clone)]
pub(super) struct TagStep {
    pub(super) tag: Tag,
    pub(super) arch: Option<Arch>,
    pub(super) want: Digest,
    pub(super) before: Option<Digest>,
    pub(super) action: TagAction,
    pub(super) reason: &'static str,
}

/// A stage planned, ready to apply.
pub(super) enum Work {
    /// container-manifest: one push per repository, the record's own first.
    Push(Vec<push::Prepared>),
    /// arch-tags: one per repository.
    Tags(Vec<TagsWork>),
    Copy(Box<CopyWork>),
    Command(CommandWork),
    Delete(Box<DeleteWork>),
    /// A stage whose `needs` are not done; it does nothing.
    Blocked(String),
    /// A stage that cannot be planned before an earlier command stage runs (what the program
    /// will do is not known until it has); planned when its turn comes.
    Deferred {
        after: String,
        why: String,
    },
}

/// An `arch-tags` stage planned for one repository.
pub(super) struct TagsWork {
    pub(super) client: Client,
    pub(super) repo: Repository,
    pub(super) steps: Vec<TagStep>,
    /// The arch images the stage pushes.
    pub(super) images: Vec<ArchImage>,
    /// The build's arches left out (no artifact), whose tags are not written.
    pub(super) skipped: Vec<Skipped>,
}

/// A command stage planned: each invocation with whether `done-when` already holds.
pub(super) struct CommandWork {
    pub(super) runs: Vec<(Invocation, Predicate)>,
}

pub(super) struct Planned {
    pub(super) work: Work,
    /// Earlier stages whose planned writes this plan reads.
    pub(super) after: Vec<String>,
}

impl Planned {
    /// Refused: by an arch policy, a `keep` reference, or needs not done.
    pub(super) fn refused(&self) -> bool {
        match &self.work {
            Work::Push(p) => p.iter().any(|p| p.plan.is_err()),
            Work::Delete(d) => d.refusal.is_some(),
            Work::Blocked(_) => true,
            _ => false,
        }
    }

    /// Whether applying would change anything (or is refused, which is not done either).
    pub(super) fn has_work(&self) -> bool {
        match &self.work {
            Work::Push(p) => p.iter().any(|p| p.plan.is_err() || p.planned().pending()),
            Work::Tags(t) => t
                .iter()
                .any(|t| t.steps.iter().any(|s| s.action == TagAction::Push)),
            Work::Copy(c) => c.has_work(),
            Work::Command(c) => c.runs.iter().any(|(_, p)| !p.holds),
            Work::Delete(d) => d.has_work() || d.refusal.is_some(),
            Work::Blocked(_) | Work::Deferred { .. } => true,
        }
    }

    /// Records what this stage will write, for the stages after it.
    pub(super) fn project(&self, stage: &Stage, overlay: &mut Overlay) {
        let mut put = |repo: &Repository, tag: &Tag, digest: &Digest| {
            overlay.insert(
                (repo.clone(), tag.clone()),
                (digest.clone(), stage.name.clone()),
            );
        };
        match &self.work {
            Work::Push(pushes) => {
                for p in pushes {
                    if let Ok(plan) = &p.plan {
                        for t in plan.tags.iter().filter(|t| t.action == TagAction::Push) {
                            put(&p.req.repo, &t.tag, &plan.index.digest);
                        }
                    }
                }
            }
            Work::Tags(works) => {
                for w in works {
                    for s in w.steps.iter().filter(|s| s.action == TagAction::Push) {
                        put(&w.repo, &s.tag, &s.want);
                    }
                }
            }
            Work::Copy(c) => {
                for t in c.targets.iter().filter(|t| t.action == TagAction::Push) {
                    if let Reference::Tagged(repo, tag) = &t.to {
                        put(repo, tag, &c.want);
                    }
                }
            }
            Work::Command(_) | Work::Delete(_) | Work::Blocked(_) | Work::Deferred { .. } => {}
        }
    }
}

/// What a tag holds for this stage's plan: an earlier stage's planned write if there is one
/// (and which stage), else what the registry says now.
pub(super) async fn read_tag(
    client: &Client,
    r: &Reference,
    overlay: &Overlay,
    after: &mut Vec<String>,
) -> Result<Option<Digest>, StageError> {
    if let Reference::Tagged(repo, tag) = r
        && let Some((digest, by)) = overlay.get(&(repo.clone(), tag.clone()))
    {
        if !after.contains(by) {
            after.push(by.clone());
        }
        return Ok(Some(digest.clone()));
    }
    Ok(client.resolve(r).await?)
}

/// Plans one stage against the registry, the metadata and the writes earlier stages plan
/// (`overlay`).
pub(super) async fn plan_stage(
    req: &RunRequest,
    build_id: &str,
    stage: &Stage,
    overlay: &Overlay,
) -> Result<Planned, StageError> {
    let mut after = Vec::new();
    let work = match &stage.kind {
        StageKind::ContainerManifest { tags, .. } => {
            // Planned against the registry as it is; if an earlier stage writes one of these
            // tags it is named, and the stage is planned again before it runs.
            for repo in &stage.repos {
                for t in tags {
                    if let Some((_, by)) = overlay.get(&(repo.clone(), t.clone()))
                        && !after.contains(by)
                    {
                        after.push(by.clone());
                    }
                }
            }
            let mut pushes = Vec::new();
            for repo in &stage.repos {
                pushes.push(push::prepare(&push_request(req, build_id, stage, repo)).await?);
            }
            Work::Push(pushes)
        }
        StageKind::ArchTags { tags, .. } => {
            let mut works = Vec::new();
            for repo in &stage.repos {
                let prepared = push::prepare(&push_request(req, build_id, stage, repo)).await?;
                let steps = arch_tag_steps(req, repo, tags, &prepared, overlay, &mut after).await?;
                works.push(TagsWork {
                    client: prepared.client,
                    repo: repo.clone(),
                    steps,
                    images: prepared.images,
                    skipped: prepared.skipped,
                });
            }
            Work::Tags(works)
        }
        StageKind::CopyTag {
            from,
            to,
            referrers,
        } => Work::Copy(Box::new(
            copy::plan(&req.connect, from, to, req.force, overlay, &mut after)
                .await?
                .with_referrers(*referrers)
                .await?,
        )),
        StageKind::Command { runs, timeout, .. } => {
            let mut planned = Vec::new();
            for inv in runs {
                let label = command::label(&stage.name, inv.arch.as_ref());
                let p = command::evaluate(&inv.done_when, &req.workdir, &label, *timeout).await?;
                planned.push((inv.clone(), p));
            }
            Work::Command(CommandWork { runs: planned })
        }
        StageKind::DeleteTags { tags, keep } => Work::Delete(Box::new(
            delete::plan(&req.connect, &stage.repos, tags, keep).await?,
        )),
    };
    Ok(Planned { work, after })
}

/// An arch-tags stage's steps in one repository: each tag to the manifest of its arch's
/// image. An arch without the artifact has no image for its tags, as in a push.
async fn arch_tag_steps(
    req: &RunRequest,
    repo: &Repository,
    tags: &[(Arch, Tag)],
    prepared: &push::Prepared,
    overlay: &Overlay,
    after: &mut Vec<String>,
) -> Result<Vec<TagStep>, StageError> {
    let skipped_arch = |a: &Arch| prepared.skipped.iter().any(|s| &s.arch == a);
    let mut steps = Vec::new();
    for (arch, tag) in tags.iter().filter(|(a, _)| !skipped_arch(a)) {
        let img = prepared
            .images
            .iter()
            .find(|i| &i.arch == arch)
            .ok_or_else(|| StageError::NoImage {
                arch: arch.clone(),
                tag: tag.clone(),
            })?;
        let want = img.image.manifest_digest.clone();
        let before = read_tag(&prepared.client, &repo.tagged(tag), overlay, after).await?;
        let (action, reason) = tag_step(&want, before.as_ref(), req.force);
        steps.push(TagStep {
            tag: tag.clone(),
            arch: Some(arch.clone()),
            want,
            before,
            action,
            reason,
        });
    }
    Ok(steps)
}
