//! Planning one stage of a release: what each of its tags should hold, read from the
//! registry and from what earlier stages of the run plan to write (the overlay). Nothing here
//! writes; applying a planned stage is `release.rs`'s, and which digest a tag should hold is
//! [`super::tag_step`]'s rule.

use std::collections::BTreeMap;

use crate::apply::ArchImage;
use crate::plan::TagAction;
use crate::platform::Arch;
use crate::push;
use crate::reference::{Digest, Repository, Tag};
use crate::registry::Client;
use crate::report::Skipped;

use super::{RunRequest, Stage, StageError, StageKind, push_request, tag_step};

/// Tags that earlier stages of this run plan to write, with the digest and the stage.
pub(super) type Overlay = BTreeMap<(Repository, Tag), (Digest, String)>;

/// One tag an `arch-tags` or `copy-tag` stage owns.
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
    Push(Box<push::Prepared>),
    Tags(Box<TagsWork>),
}

/// An `arch-tags` or `copy-tag` stage planned.
pub(super) struct TagsWork {
    pub(super) client: Client,
    pub(super) steps: Vec<TagStep>,
    /// The arch images an `arch-tags` stage pushes; empty for `copy-tag`.
    pub(super) images: Vec<ArchImage>,
    /// For `copy-tag`: the source tag and what it holds.
    pub(super) source: Option<(Tag, Digest)>,
    /// For `arch-tags`: the build's arches left out (no artifact), whose tags are not written.
    pub(super) skipped: Vec<Skipped>,
}

pub(super) struct Planned {
    pub(super) work: Work,
    /// Earlier stages whose planned writes this plan reads.
    pub(super) after: Vec<String>,
}

impl Planned {
    pub(super) fn refused(&self) -> bool {
        matches!(&self.work, Work::Push(p) if p.plan.is_err())
    }

    /// Records what this stage will write, for the stages after it.
    pub(super) fn project(&self, stage: &Stage, overlay: &mut Overlay) {
        let mut put = |tag: &Tag, digest: &Digest| {
            overlay.insert(
                (stage.repo.clone(), tag.clone()),
                (digest.clone(), stage.name.clone()),
            );
        };
        match &self.work {
            Work::Push(p) => {
                if let Ok(plan) = &p.plan {
                    for t in plan.tags.iter().filter(|t| t.action == TagAction::Push) {
                        put(&t.tag, &plan.index.digest);
                    }
                }
            }
            Work::Tags(t) => {
                for s in t.steps.iter().filter(|s| s.action == TagAction::Push) {
                    put(&s.tag, &s.want);
                }
            }
        }
    }
}

/// What a tag holds for this stage's plan: an earlier stage's planned write if there is one
/// (and which stage), else what the registry says now.
async fn read_tag(
    client: &Client,
    repo: &Repository,
    tag: &Tag,
    overlay: &Overlay,
    after: &mut Vec<String>,
) -> Result<Option<Digest>, StageError> {
    if let Some((digest, by)) = overlay.get(&(repo.clone(), tag.clone())) {
        if !after.contains(by) {
            after.push(by.clone());
        }
        return Ok(Some(digest.clone()));
    }
    Ok(client.resolve(&repo.tagged(tag)).await?)
}

/// Plans one stage against the registry and the writes earlier stages plan (`overlay`).
pub(super) async fn plan_stage(
    req: &RunRequest,
    build_id: &str,
    stage: &Stage,
    overlay: &Overlay,
) -> Result<Planned, StageError> {
    let mut after = Vec::new();
    let repo = &stage.repo;
    let work = match &stage.kind {
        StageKind::ContainerManifest { tags, .. } => {
            // Planned against the registry as it is; if an earlier stage writes one of these
            // tags it is named, and the stage is planned again before it runs.
            for t in tags {
                if let Some((_, by)) = overlay.get(&(repo.clone(), t.clone()))
                    && !after.contains(by)
                {
                    after.push(by.clone());
                }
            }
            let prepared = push::prepare(&push_request(req, build_id, stage)).await?;
            Work::Push(Box::new(prepared))
        }
        StageKind::ArchTags { tags, .. } => {
            let prepared = push::prepare(&push_request(req, build_id, stage)).await?;
            let steps = arch_tag_steps(req, repo, tags, &prepared, overlay, &mut after).await?;
            Work::Tags(Box::new(TagsWork {
                client: prepared.client,
                steps,
                images: prepared.images,
                source: None,
                skipped: prepared.skipped,
            }))
        }
        StageKind::CopyTag { from, to } => {
            let client = Client::connect(repo, &req.connect).await?;
            let want = read_tag(&client, repo, from, overlay, &mut after)
                .await?
                .ok_or_else(|| StageError::FromAbsent(repo.tagged(from).to_string()))?;
            let steps = tag_steps(req, &client, repo, to, &want, overlay, &mut after).await?;
            Work::Tags(Box::new(TagsWork {
                client,
                steps,
                images: vec![],
                source: Some((from.clone(), want)),
                skipped: vec![],
            }))
        }
    };
    Ok(Planned { work, after })
}

/// An arch-tags stage's steps: each tag to the manifest of its arch's image. An arch without
/// the artifact has no image for its tags, as in a push.
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
        let before = read_tag(&prepared.client, repo, tag, overlay, after).await?;
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

/// A copy-tag stage's steps: each of `to` to `want`.
async fn tag_steps(
    req: &RunRequest,
    client: &Client,
    repo: &Repository,
    to: &[Tag],
    want: &Digest,
    overlay: &Overlay,
    after: &mut Vec<String>,
) -> Result<Vec<TagStep>, StageError> {
    let mut steps = Vec::new();
    for tag in to {
        let before = read_tag(client, repo, tag, overlay, after).await?;
        let (action, reason) = tag_step(want, before.as_ref(), req.force);
        steps.push(TagStep {
            tag: tag.clone(),
            arch: None,
            want: want.clone(),
            before,
            action,
            reason,
        });
    }
    Ok(steps)
}
