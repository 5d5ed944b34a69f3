//! `delete-tags` stages: staging tags removed, never at the cost of something that must
//! stay. A tag already gone is done. Before anything is deleted, every `keep` reference in
//! the same repository is read: if it holds the tag's manifest, or an index listing it, the
//! stage is refused and names it (deleting by digest would break that index). A tag is
//! deleted by tag where the registry can; where it deletes only by digest (Docker
//! Distribution), which removes every tag of the manifest, the repository's other tags are
//! read first: one that holds the same manifest (it would go too) or an index listing it (it
//! would break) refuses the stage. Every delete is read back.

use std::collections::HashMap;

use futures_util::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;

use super::StageError;
use super::clients::Clients;
use crate::reference::{Digest, Reference, Repository, Tag};
use crate::registry::{ConnectOptions, Deleted, Fetched};

/// One tag of a delete-tags stage.
#[derive(Debug, Clone, Serialize)]
pub struct DeleteStep {
    pub tag: Reference,
    /// What it held when planned; `None`: already gone.
    pub before: Option<Digest>,
    /// `tag` or `digest` once deleted; `None` until then or when there was nothing to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_by: Option<&'static str>,
}

/// A delete-tags stage planned.
pub(super) struct DeleteWork {
    pub(super) clients: Clients,
    pub(super) steps: Vec<DeleteStep>,
    /// Why nothing may be deleted: a `keep` reference needs one of the manifests.
    pub(super) refusal: Option<String>,
}

impl DeleteWork {
    pub(super) fn has_work(&self) -> bool {
        self.steps.iter().any(|s| s.before.is_some())
    }
}

/// Reads each tag and each `keep` reference of the same repository; refuses when a keep
/// reference needs a manifest a tag holds.
pub(super) async fn plan(
    opts: &ConnectOptions,
    repos: &[Repository],
    tags: &[Tag],
    keep: &[Reference],
) -> Result<DeleteWork, StageError> {
    let mut clients = Clients::new(opts);
    let mut steps = Vec::new();
    let mut kept: HashMap<String, Option<Fetched>> = HashMap::new();
    let mut refusal = None;
    for repo in repos {
        let client = clients.get(repo).await?;
        for tag in tags {
            let r = repo.tagged(tag);
            let before = client.resolve(&r).await?;
            if let Some(d) = &before
                && refusal.is_none()
            {
                for k in keep.iter().filter(|k| k.repository() == repo) {
                    if let std::collections::hash_map::Entry::Vacant(slot) =
                        kept.entry(k.to_string())
                    {
                        slot.insert(client.fetch_manifest(k).await?);
                    }
                    if let Some(why) = needs(kept[&k.to_string()].as_ref(), d) {
                        refusal = Some(format!(
                            "{r} is not deleted: {k} still needs its manifest {d} from {repo} \
                             ({why}); copy {k} to another repository or take it out of keep"
                        ));
                    }
                }
            }
            steps.push(DeleteStep {
                tag: r,
                before,
                deleted_by: None,
            });
        }
    }
    Ok(DeleteWork {
        clients,
        steps,
        refusal,
    })
}

/// Whether a kept manifest needs `digest`: it is that manifest, or an index listing it.
fn needs(kept: Option<&Fetched>, digest: &Digest) -> Option<&'static str> {
    let kept = kept?;
    if &kept.digest == digest {
        return Some("it holds that manifest");
    }
    let doc: serde_json::Value = serde_json::from_slice(&kept.bytes).ok()?;
    let listed = doc
        .get("manifests")?
        .as_array()?
        .iter()
        .any(|m| m.get("digest").and_then(|d| d.as_str()) == Some(digest.as_str()));
    listed.then_some("its index lists that manifest")
}

/// What applying came to: the steps as done, or a refusal met on the way.
pub(super) struct Applied {
    pub(super) steps: Vec<DeleteStep>,
    pub(super) refusal: Option<String>,
}

/// Deletes the planned tags in order, each read back. Stops with a refusal when a delete by
/// digest would take another tag with it.
pub(super) async fn apply(mut work: DeleteWork) -> Result<Applied, StageError> {
    let deleting: Vec<Reference> = work.steps.iter().map(|s| s.tag.clone()).collect();
    let mut others: HashMap<Repository, Vec<(Tag, Fetched)>> = HashMap::new();
    // Registries seen to delete by digest only: not asked to delete by tag again.
    let mut digest_only: Vec<String> = Vec::new();
    for i in 0..work.steps.len() {
        let Some(digest) = work.steps[i].before.clone() else {
            continue;
        };
        let r = work.steps[i].tag.clone();
        let repo = r.repository().clone();
        let client = work.clients.get(&repo).await?;
        tracing::info!(tag = %r, digest = %digest, "deleting tag");
        let by_tag = if digest_only.iter().any(|d| d == repo.registry()) {
            Deleted::NotByTag
        } else {
            client.delete_tag(&r).await?
        };
        let by = match by_tag {
            Deleted::Deleted | Deleted::Absent => "tag",
            Deleted::NotByTag => {
                if !digest_only.iter().any(|d| d == repo.registry()) {
                    digest_only.push(repo.registry().to_owned());
                }
                if !others.contains_key(&repo) {
                    let held = other_tags(&client, &repo, &deleting).await?;
                    others.insert(repo.clone(), held);
                }
                let needed = others[&repo]
                    .iter()
                    .find_map(|(t, held)| Some((t, needs(Some(held), &digest)?)));
                if let Some((t, why)) = needed {
                    return Ok(Applied {
                        refusal: Some(format!(
                            "{r} is not deleted: {} deletes only by digest, which would take \
                             {digest} from {} too ({why}); add that tag to tags, or copy it \
                             to another repository first",
                            repo.registry(),
                            repo.tagged(t)
                        )),
                        steps: work.steps,
                    });
                }
                client.delete_manifest(&repo, &digest).await?;
                "digest"
            }
        };
        client.verify_absent(&r).await?;
        work.steps[i].deleted_by = Some(by);
    }
    Ok(Applied {
        steps: work.steps,
        refusal: None,
    })
}

/// The repository's tags other than those being deleted, each with the manifest it holds
/// (an index must be read to see what it lists).
async fn other_tags(
    client: &crate::registry::Client,
    repo: &Repository,
    deleting: &[Reference],
) -> Result<Vec<(Tag, Fetched)>, StageError> {
    let tags = client.list_tags(repo).await?;
    let found: Vec<Option<(Tag, Fetched)>> = futures_util::stream::iter(
        tags.into_iter()
            .filter(|t| !deleting.contains(&repo.tagged(t)))
            .map(|t| async move {
                let held = client.fetch_manifest(&repo.tagged(&t)).await?;
                Ok::<_, StageError>(held.map(|h| (t, h)))
            }),
    )
    .buffer_unordered(client.jobs())
    .try_collect()
    .await?;
    Ok(found.into_iter().flatten().collect())
}
