//! `copy-tag` stages: every `to` reference ends at exactly what `from` holds (same digest),
//! in the same repository, another repository, or another registry. Owns moving what the
//! copy needs to a target repository that lacks it: each child manifest of an index and
//! each blob, mounted when source and target share a registry, streamed and digest-checked
//! otherwise; then the manifest itself at each tag, read back. A target already holding the
//! digest costs one HEAD.

use futures_util::{StreamExt as _, TryStreamExt as _};

use super::StageError;
use super::clients::Clients;
use super::stage::{Overlay, read_tag};
use crate::apply::Stats;
use crate::hash::BlobRef;
use crate::plan::TagAction;
use crate::reference::{Digest, Reference, Repository};
use crate::referrers::copy::Summary as ReferrersCopy;
use crate::referrers::{self, CopyPlan, Side};
use crate::registry::{Client, ConnectOptions};

/// How deep indexes may nest inside an index before the copy gives up.
const MAX_DEPTH: usize = 4;

/// One `to` reference of a copy.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) to: Reference,
    pub(super) before: Option<Digest>,
    pub(super) action: TagAction,
    pub(super) reason: &'static str,
}

/// A copy-tag stage planned.
pub(super) struct CopyWork {
    pub(super) clients: Clients,
    pub(super) from: Reference,
    /// What `from` holds.
    pub(super) want: Digest,
    pub(super) targets: Vec<Target>,
    /// The referrers of `want` to bring to each target repository other than the source's.
    pub(super) referrers: Vec<CopyPlan>,
}

impl CopyWork {
    pub(super) fn has_work(&self) -> bool {
        self.targets.iter().any(|t| t.action == TagAction::Push)
            || self.referrers.iter().any(CopyPlan::pending)
    }

    /// Plans copying the referrers of what `from` holds into every target repository other
    /// than the source's (`enabled`: the stage's `referrers`). Within one repository a copy
    /// has the same digest, so its referrers are already there.
    pub(super) async fn with_referrers(mut self, enabled: bool) -> Result<CopyWork, StageError> {
        if !enabled {
            return Ok(self);
        }
        let src_repo = self.from.repository().clone();
        let source = Side {
            client: self.clients.get(&src_repo).await?,
            repo: src_repo.clone(),
        };
        let mut repos: Vec<Repository> = Vec::new();
        for t in &self.targets {
            let repo = t.to.repository();
            if repo != &src_repo && !repos.contains(repo) {
                repos.push(repo.clone());
            }
        }
        for repo in repos {
            let target = Side {
                client: self.clients.get(&repo).await?,
                repo,
            };
            let plan = referrers::copy::plan(source.clone(), target, &self.want).await?;
            self.referrers.push(plan);
        }
        Ok(self)
    }

    /// The referrers part of the stage's report.
    pub(super) fn referrers_report(&self) -> Vec<ReferrersCopy> {
        self.referrers.iter().map(CopyPlan::summary).collect()
    }
}

/// Plans a copy: what `from` holds (as an earlier stage leaves it, if one writes it), and
/// whether each `to` already holds that.
pub(super) async fn plan(
    opts: &ConnectOptions,
    from: &Reference,
    to: &[Reference],
    force: bool,
    overlay: &Overlay,
    after: &mut Vec<String>,
) -> Result<CopyWork, StageError> {
    let mut clients = Clients::new(opts);
    let source = clients.get(from.repository()).await?;
    let want = match from {
        Reference::Digested(_, d) => source.resolve(from).await?.map(|_| d.clone()),
        Reference::Tagged(..) => read_tag(&source, from, overlay, after).await?,
    }
    .ok_or_else(|| StageError::FromAbsent(from.to_string()))?;
    let mut targets = Vec::new();
    for r in to {
        let client = clients.get(r.repository()).await?;
        let before = read_tag(&client, r, overlay, after).await?;
        let (action, reason) = super::tag_step(&want, before.as_ref(), force);
        targets.push(Target {
            to: r.clone(),
            before,
            action,
            reason,
        });
    }
    Ok(CopyWork {
        clients,
        from: from.clone(),
        want,
        targets,
        referrers: vec![],
    })
}

/// Writes the planned copies: content first, into each target repository that is not the
/// source's, then each tag, then every written tag read back.
pub(super) async fn apply(mut work: CopyWork) -> Result<Stats, StageError> {
    let mut stats = Stats::default();
    let to_write: Vec<Target> = work
        .targets
        .iter()
        .filter(|t| t.action == TagAction::Push)
        .cloned()
        .collect();
    let referrers: Vec<&CopyPlan> = work.referrers.iter().filter(|p| p.pending()).collect();
    if to_write.is_empty() && referrers.is_empty() {
        return Ok(stats);
    }
    let src_repo = work.from.repository().clone();
    let source = work.clients.get(&src_repo).await?;
    let top = source
        .fetch_manifest(&src_repo.digested(&work.want))
        .await?
        .ok_or_else(|| StageError::Vanished(src_repo.digested(&work.want).to_string()))?;
    let media_type = crate::index::media_type_of(&top.bytes);
    let mut filled: Vec<Repository> = vec![src_repo.clone()];
    for t in &to_write {
        let repo = t.to.repository();
        if filled.contains(repo) {
            continue;
        }
        let target = work.clients.get(repo).await?;
        let copier = Copier {
            source: &source,
            src_repo: &src_repo,
            target: &target,
            dst_repo: repo,
        };
        copier.children(&top.bytes, 0, &mut stats).await?;
        filled.push(repo.clone());
    }
    // The referrers before the tags: a copy is signed by the time it can be pulled by tag.
    for plan in referrers {
        let copied = referrers::copy::apply(plan).await?;
        stats.pushed_manifests += copied.copied + copied.tag_schema_written;
        stats.uploaded_blobs += copied.blobs_uploaded;
        stats.uploaded_bytes += copied.bytes_uploaded;
        stats.mounted_blobs += copied.blobs_mounted;
        stats.skipped_blobs += copied.blobs_present;
    }
    for t in &to_write {
        let target = work.clients.get(t.to.repository()).await?;
        tracing::info!(tag = %t.to, digest = %work.want, "writing tag");
        target.put_manifest(&t.to, &top.bytes, &media_type).await?;
        stats.pushed_manifests += 1;
    }
    // Never trust a tag that has not been read back.
    for t in &to_write {
        let target = work.clients.get(t.to.repository()).await?;
        target.verify(&t.to, &work.want).await?;
    }
    Ok(stats)
}

/// Moves what one manifest needs from one repository to another.
struct Copier<'a> {
    source: &'a Client,
    src_repo: &'a Repository,
    target: &'a Client,
    dst_repo: &'a Repository,
}

impl Copier<'_> {
    /// Everything `bytes` (a manifest or an index) refers to, present at the target: an
    /// index's children (each with what it needs, then itself by digest), or an image's
    /// config and layers.
    async fn children(
        &self,
        bytes: &[u8],
        depth: usize,
        stats: &mut Stats,
    ) -> Result<(), StageError> {
        let refs = Refs::of(bytes).map_err(|message| StageError::Copy {
            target: self.dst_repo.to_string(),
            message,
        })?;
        self.blobs(&refs.blobs, stats).await?;
        for child in &refs.manifests {
            let at_target = self.dst_repo.digested(&child.digest);
            if self.target.resolve(&at_target).await?.is_some() {
                continue;
            }
            if depth >= MAX_DEPTH {
                return Err(StageError::Copy {
                    target: at_target.to_string(),
                    message: format!("indexes nest more than {MAX_DEPTH} deep"),
                });
            }
            let at_source = self.src_repo.digested(&child.digest);
            let fetched = self
                .source
                .fetch_manifest(&at_source)
                .await?
                .ok_or_else(|| StageError::Vanished(at_source.to_string()))?;
            Box::pin(self.children(&fetched.bytes, depth + 1, stats)).await?;
            let media_type = crate::index::media_type_of(&fetched.bytes);
            self.target
                .put_manifest(&at_target, &fetched.bytes, &media_type)
                .await?;
            stats.pushed_manifests += 1;
        }
        Ok(())
    }

    /// Each blob present at the target: already there, mounted, or streamed across.
    async fn blobs(&self, blobs: &[BlobRef], stats: &mut Stats) -> Result<(), StageError> {
        let same_registry = self.src_repo.registry() == self.dst_repo.registry();
        let moved: Vec<Moved> = futures_util::stream::iter(blobs.iter().map(|b| async move {
            if self.target.blob_exists(self.dst_repo, &b.digest).await? {
                return Ok(Moved::Present);
            }
            if same_registry
                && self
                    .target
                    .mount_if_present(self.dst_repo, self.src_repo, &b.digest)
                    .await?
            {
                return Ok(Moved::Mounted);
            }
            self.target
                .copy_blob(self.dst_repo, self.source, self.src_repo, b)
                .await?;
            Ok::<_, StageError>(Moved::Copied(b.size))
        }))
        .buffer_unordered(self.target.jobs())
        .try_collect()
        .await?;
        for m in moved {
            match m {
                Moved::Present => stats.skipped_blobs += 1,
                Moved::Mounted => stats.mounted_blobs += 1,
                Moved::Copied(size) => {
                    stats.uploaded_blobs += 1;
                    stats.uploaded_bytes += size;
                }
            }
        }
        Ok(())
    }
}

enum Moved {
    Present,
    Mounted,
    Copied(u64),
}

/// What a manifest refers to: child manifests (an index) or blobs (an image: config and
/// layers). Blobs with `urls` (non-distributable layers) are not the registry's to hold.
#[derive(Debug, Default, PartialEq, Eq)]
struct Refs {
    manifests: Vec<BlobRef>,
    blobs: Vec<BlobRef>,
}

impl Refs {
    fn of(bytes: &[u8]) -> Result<Refs, String> {
        let doc: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("manifest is not JSON: {e}"))?;
        let descriptor = |v: &serde_json::Value| -> Result<Option<BlobRef>, String> {
            if v.get("urls")
                .is_some_and(|u| u.as_array().is_some_and(|a| !a.is_empty()))
            {
                return Ok(None);
            }
            let digest = v
                .get("digest")
                .and_then(|d| d.as_str())
                .ok_or("a descriptor has no digest")?;
            Ok(Some(BlobRef {
                digest: Digest::parse(digest).map_err(|e| e.to_string())?,
                size: v
                    .get("size")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0),
                media_type: v
                    .get("mediaType")
                    .and_then(|m| m.as_str())
                    .unwrap_or_default()
                    .to_owned(),
            }))
        };
        let list = |key: &str| -> Result<Vec<BlobRef>, String> {
            let Some(items) = doc.get(key).and_then(|v| v.as_array()) else {
                return Ok(Vec::new());
            };
            Ok(items
                .iter()
                .map(descriptor)
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect())
        };
        let mut refs = Refs {
            manifests: list("manifests")?,
            blobs: Vec::new(),
        };
        if let Some(config) = doc.get("config") {
            refs.blobs.extend(descriptor(config)?);
        }
        refs.blobs.extend(list("layers")?);
        Ok(refs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn an_index_refers_to_its_children_and_an_image_to_its_blobs() {
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"m","digest":"{}","size":3}}]}}"#,
            d('a')
        );
        let refs = Refs::of(index.as_bytes()).unwrap();
        assert_eq!(refs.manifests.len(), 1);
        assert_eq!(refs.manifests[0].size, 3);
        assert!(refs.blobs.is_empty());
        let image = format!(
            r#"{{"config":{{"digest":"{}","size":2}},"layers":[{{"digest":"{}","size":5}},{{"digest":"{}","size":7,"urls":["https://x"]}}]}}"#,
            d('b'),
            d('c'),
            d('e')
        );
        let refs = Refs::of(image.as_bytes()).unwrap();
        let digests: Vec<String> = refs.blobs.iter().map(|b| b.digest.to_string()).collect();
        assert_eq!(digests, [d('b'), d('c')], "a foreign layer is not copied");
        assert!(Refs::of(br#"{"layers":[{"size":1}]}"#).is_err());
    }
}
