//! Bringing referrers along when an image moves to another repository or registry: the
//! signatures, attestations and SBOMs of the image's digest and of each of its child
//! manifests go with it, so they still verify where the image lands.
//!
//! [`plan`] reads both sides (nothing is read at the target for a subject the source has no
//! referrers of) and [`apply`] writes what is missing: each referrer's blobs (mounted on one
//! registry, streamed and digest-checked across two), its manifest, and how the target lists
//! it: by the registry itself when it answers a manifest's `subject` with `OCI-Subject`, else
//! in the subject's referrers tag-schema index (created or appended to); cosign's tags as
//! tags. Then every referrer is read back at the target. A rerun writes nothing.
//!
//! Not copied: the referrers of referrers (a signature of an SBOM). A cosign tag that already
//! holds another manifest at the target is refused, never overwritten: it may hold that
//! registry's own signatures.

use serde::Serialize;
use serde_json::{Value, json};

use super::{Error, Found, Listing, Referrer, list, schema_tag};
use crate::hash::BlobRef;
use crate::media::OCI_INDEX;
use crate::reference::{Digest, Repository};
use crate::registry::Client;

/// How deep a referrer that is an index may nest manifests.
const MAX_DEPTH: usize = 4;
/// How many times a target that lists referrers itself is read again after the writes.
const READ_BACK_ATTEMPTS: u32 = 6;

/// One end of a copy: a registry client and a repository on it.
#[derive(Clone)]
pub struct Side {
    pub client: Client,
    pub repo: Repository,
}

/// What a copy of referrers did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CopyStats {
    /// Referrer manifests written at the target.
    pub copied: u64,
    /// Referrers the target already had.
    pub present: u64,
    /// Referrers tag-schema indexes written at the target.
    pub tag_schema_written: u64,
    pub blobs_uploaded: u64,
    pub bytes_uploaded: u64,
    pub blobs_mounted: u64,
    pub blobs_present: u64,
}

/// A copy of referrers in a report: to which repository, how many the source has, and how
/// many of those the target lacks (before the copy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub repo: Repository,
    pub referrers: usize,
    pub missing: usize,
}

/// The referrers of one subject at both ends.
struct SubjectPlan {
    subject: Digest,
    /// Every referrer the source has.
    wanted: Vec<Referrer>,
    /// Those the target lacks.
    missing: Vec<Referrer>,
    /// The target's listing, for its tag-schema index.
    target: Listing,
}

/// What copying the referrers of a digest (and of its children) takes.
pub struct CopyPlan {
    source: Side,
    target: Side,
    subjects: Vec<SubjectPlan>,
}

impl CopyPlan {
    /// Whether anything is to be written.
    pub fn pending(&self) -> bool {
        self.missing() > 0
    }

    /// How many referrers the target lacks.
    pub fn missing(&self) -> usize {
        self.subjects.iter().map(|s| s.missing.len()).sum()
    }

    /// How many referrers the source has, over every subject.
    pub fn wanted(&self) -> usize {
        self.subjects.iter().map(|s| s.wanted.len()).sum()
    }

    pub fn target(&self) -> &Repository {
        &self.target.repo
    }

    pub fn summary(&self) -> Summary {
        Summary {
            repo: self.target.repo.clone(),
            referrers: self.wanted(),
            missing: self.missing(),
        }
    }
}

/// Reads what copying the referrers of `subject` from `source` to `target` takes: the
/// referrers of `subject` and of each manifest it lists (when it is an index) at the source,
/// and which of them the target has. Sends no write. A subject the source does not hold (yet:
/// an earlier stage of a release may write it) has nothing to copy.
pub async fn plan(source: Side, target: Side, subject: &Digest) -> Result<CopyPlan, Error> {
    let at = source.repo.digested(subject);
    let Some(top) = source.client.fetch_manifest(&at).await? else {
        return Ok(CopyPlan {
            source,
            target,
            subjects: vec![],
        });
    };
    let mut digests = vec![subject.clone()];
    digests.extend(listed_manifests(&top.bytes).into_iter().map(|b| b.digest));
    let mut subjects = Vec::new();
    for digest in digests {
        let wanted = list(&source.client, &source.repo, &digest).await?.referrers;
        if wanted.is_empty() {
            continue;
        }
        let there = list(&target.client, &target.repo, &digest).await?;
        let mut missing = Vec::new();
        for r in &wanted {
            if !present(&target, &there, r).await? {
                missing.push(r.clone());
            }
        }
        subjects.push(SubjectPlan {
            subject: digest,
            wanted,
            missing,
            target: there,
        });
    }
    Ok(CopyPlan {
        source,
        target,
        subjects,
    })
}

/// Whether the target has `r` for its subject: listed (or at its cosign tag) and served.
async fn present(target: &Side, there: &Listing, r: &Referrer) -> Result<bool, Error> {
    if let (Found::CosignTag, Some(tag)) = (r.found, &r.tag) {
        let held = there.referrers.iter().find(|t| t.tag.as_ref() == Some(tag));
        return match held {
            None => Ok(false),
            Some(t) if t.digest == r.digest => Ok(true),
            Some(t) => Err(Error::CosignConflict {
                target: target.repo.tagged(tag).to_string(),
                held: t.digest.clone(),
                want: r.digest.clone(),
                kind: r.kind,
            }),
        };
    }
    if !there.contains(&r.digest) {
        return Ok(false);
    }
    let at = target.repo.digested(&r.digest);
    Ok(target.client.resolve(&at).await?.is_some())
}

/// Writes what `plan` found missing, then reads every referrer back at the target.
pub async fn apply(plan: &CopyPlan) -> Result<CopyStats, Error> {
    let mut stats = CopyStats::default();
    for s in &plan.subjects {
        stats.present += (s.wanted.len() - s.missing.len()) as u64;
        let mut to_list = Vec::new();
        for r in &s.missing {
            if let Some(descriptor) = copy_referrer(plan, r, &mut stats).await? {
                to_list.push(descriptor);
            }
        }
        if !to_list.is_empty() {
            write_tag_schema(&plan.target, s, to_list).await?;
            stats.tag_schema_written += 1;
        }
        read_back(&plan.target, s).await?;
    }
    Ok(stats)
}

/// [`plan`], then [`apply`].
pub async fn copy(source: Side, target: Side, subject: &Digest) -> Result<CopyStats, Error> {
    apply(&plan(source, target, subject).await?).await
}

/// Copies one referrer: its content, then its manifest (at its cosign tag, or by digest).
/// Returns its descriptor when the target must list it in the tag schema: the registry did
/// not answer the manifest's `subject` with `OCI-Subject`.
async fn copy_referrer(
    plan: &CopyPlan,
    r: &Referrer,
    stats: &mut CopyStats,
) -> Result<Option<Value>, Error> {
    let (source, target) = (&plan.source, &plan.target);
    let bytes = match &r.manifest {
        Some(b) => b.clone(),
        None => {
            let at = source.repo.digested(&r.digest);
            let fetched = source.client.fetch_manifest(&at).await?;
            fetched
                .ok_or_else(|| Error::Invalid {
                    target: at.to_string(),
                    message: "listed as a referrer, but the registry does not serve it".into(),
                })?
                .bytes
        }
    };
    let media_type = crate::index::media_type_of(&bytes);
    Box::pin(copy_content(source, target, &bytes, 0, stats)).await?;
    tracing::info!(digest = %r.digest, kind = ?r.kind, to = %target.repo, "copying referrer");
    stats.copied += 1;
    if let (Found::CosignTag, Some(tag)) = (r.found, &r.tag) {
        let at = target.repo.tagged(tag);
        target.client.put_manifest(&at, &bytes, &media_type).await?;
        return Ok(None);
    }
    let at = target.repo.digested(&r.digest);
    let noted = target
        .client
        .put_manifest_noting_subject(&at, &bytes, &media_type)
        .await?;
    Ok(noted
        .is_none()
        .then(|| descriptor_of(&r.digest, &bytes, &media_type)))
}

/// A referrer's descriptor as the spec lists it: `artifactType` (else the config's media
/// type) and the manifest's annotations.
fn descriptor_of(digest: &Digest, bytes: &[u8], media_type: &str) -> Value {
    let doc: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let mut d = json!({"mediaType": media_type, "digest": digest, "size": bytes.len()});
    let artifact_type = doc
        .get("artifactType")
        .or_else(|| doc.get("config").and_then(|c| c.get("mediaType")));
    if let Some(t) = artifact_type.filter(|t| t.is_string()) {
        d["artifactType"] = t.clone();
    }
    if let Some(a) = doc.get("annotations").filter(|a| a.is_object()) {
        d["annotations"] = a.clone();
    }
    d
}

/// Appends `descriptors` to the subject's tag-schema index at the target (a fresh index when
/// it has none), writes it and reads the tag back.
async fn write_tag_schema(
    target: &Side,
    s: &SubjectPlan,
    descriptors: Vec<Value>,
) -> Result<(), Error> {
    let mut index =
        s.target.tag_schema.clone().unwrap_or_else(
            || json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
        );
    let Some(list) = index.get_mut("manifests").and_then(Value::as_array_mut) else {
        unreachable!("a listing keeps only a tag-schema index with a manifests array")
    };
    for d in descriptors {
        if !list.iter().any(|e| e.get("digest") == d.get("digest")) {
            list.push(d);
        }
    }
    let bytes = serde_json::to_vec(&index).map_err(|e| Error::Invalid {
        target: target.repo.to_string(),
        message: format!("writing the referrers index: {e}"),
    })?;
    let at = target.repo.tagged(&schema_tag(&s.subject));
    tracing::info!(tag = %at, "writing the referrers tag-schema index");
    target.client.put_manifest(&at, &bytes, OCI_INDEX).await?;
    target.client.verify(&at, &Digest::of(&bytes)).await?;
    Ok(())
}

/// Every referrer of the subject at the source is listed at the target and served by digest.
/// A registry that lists referrers itself may take a moment to show a new one, so the list is
/// read again a bounded number of times.
async fn read_back(target: &Side, s: &SubjectPlan) -> Result<(), Error> {
    let mut delay = std::time::Duration::from_millis(100);
    let mut attempt = 1;
    let there = loop {
        let there = list(&target.client, &target.repo, &s.subject).await?;
        let complete = s.wanted.iter().all(|r| there.contains(&r.digest));
        if complete || !there.api || attempt >= READ_BACK_ATTEMPTS {
            break there;
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
        attempt += 1;
    };
    for r in &s.wanted {
        if !there.contains(&r.digest) {
            return Err(Error::NotListed {
                target: target.repo.to_string(),
                subject: s.subject.clone(),
                missing: r.digest.clone(),
            });
        }
        target
            .client
            .verify(&target.repo.digested(&r.digest), &r.digest)
            .await?;
    }
    Ok(())
}

/// Everything a manifest needs at the target before it can be put there: an image's config
/// and layers, an index's manifests (each with its own content, then itself by digest). Its
/// `subject` is not content: the image being copied brings it.
async fn copy_content(
    source: &Side,
    target: &Side,
    bytes: &[u8],
    depth: usize,
    stats: &mut CopyStats,
) -> Result<(), Error> {
    for b in blobs(bytes) {
        copy_blob(source, target, &b, stats).await?;
    }
    for child in listed_manifests(bytes) {
        let at = target.repo.digested(&child.digest);
        if target.client.resolve(&at).await?.is_some() {
            continue;
        }
        if depth >= MAX_DEPTH {
            return Err(Error::Invalid {
                target: at.to_string(),
                message: format!("a referrer nests manifests more than {MAX_DEPTH} deep"),
            });
        }
        let from = source.repo.digested(&child.digest);
        let fetched = source
            .client
            .fetch_manifest(&from)
            .await?
            .ok_or_else(|| Error::Invalid {
                target: from.to_string(),
                message: "listed, but the registry does not serve it".to_owned(),
            })?;
        Box::pin(copy_content(
            source,
            target,
            &fetched.bytes,
            depth + 1,
            stats,
        ))
        .await?;
        let media_type = crate::index::media_type_of(&fetched.bytes);
        target
            .client
            .put_manifest(&at, &fetched.bytes, &media_type)
            .await?;
    }
    Ok(())
}

/// One blob present at the target: already there, mounted from the source's repository on
/// the same registry, or streamed across with its digest checked.
async fn copy_blob(
    source: &Side,
    target: &Side,
    blob: &BlobRef,
    stats: &mut CopyStats,
) -> Result<(), Error> {
    let (client, repo) = (&target.client, &target.repo);
    if client.blob_exists(repo, &blob.digest).await? {
        stats.blobs_present += 1;
    } else if source.repo.registry() == repo.registry()
        && client
            .mount_if_present(repo, &source.repo, &blob.digest)
            .await?
    {
        stats.blobs_mounted += 1;
    } else {
        client
            .copy_blob(repo, &source.client, &source.repo, blob)
            .await?;
        stats.blobs_uploaded += 1;
        stats.bytes_uploaded += blob.size;
    }
    Ok(())
}

/// The descriptors of a document's `key` array (`manifests`, `layers`), leaving out those
/// whose blobs live elsewhere (`urls`) and any without a usable digest.
fn descriptors(doc: &Value, key: &str) -> Vec<BlobRef> {
    let items = doc.get(key).and_then(Value::as_array);
    items
        .into_iter()
        .flatten()
        .chain(if key == "layers" {
            doc.get("config")
        } else {
            None
        })
        .filter(|d| {
            d.get("urls")
                .is_none_or(|u| u.as_array().is_none_or(Vec::is_empty))
        })
        .filter_map(|d| {
            Some(BlobRef {
                digest: Digest::parse(d.get("digest")?.as_str()?).ok()?,
                size: d.get("size").and_then(Value::as_u64).unwrap_or(0),
                media_type: d
                    .get("mediaType")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            })
        })
        .collect()
}

/// The manifests an index lists (none for an image manifest).
fn listed_manifests(bytes: &[u8]) -> Vec<BlobRef> {
    serde_json::from_slice::<Value>(bytes)
        .map(|doc| descriptors(&doc, "manifests"))
        .unwrap_or_default()
}

/// An image manifest's layers and config.
fn blobs(bytes: &[u8]) -> Vec<BlobRef> {
    serde_json::from_slice::<Value>(bytes)
        .map(|doc| descriptors(&doc, "layers"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    #[test]
    fn a_referrers_content_is_its_config_and_layers_never_its_subject() {
        let manifest = json!({
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": d('c'), "size": 2},
            "layers": [
                {"mediaType": "application/vnd.in-toto+json", "digest": d('1'), "size": 9},
                {"mediaType": "x", "digest": d('f'), "size": 9, "urls": ["https://elsewhere"]}
            ],
            "subject": {"mediaType": OCI_INDEX, "digest": d('5'), "size": 100}
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let got: Vec<Digest> = blobs(&bytes).into_iter().map(|b| b.digest).collect();
        assert_eq!(got, [d('1'), d('c')]);
        assert!(listed_manifests(&bytes).is_empty());
        let index = json!({"manifests": [{"mediaType": "m", "digest": d('a'), "size": 3}]});
        let bytes = serde_json::to_vec(&index).unwrap();
        assert_eq!(listed_manifests(&bytes)[0].digest, d('a'));
    }

    #[test]
    fn a_descriptor_takes_the_artifact_type_else_the_config_type_and_the_annotations() {
        let with_type = json!({
            "artifactType": "application/vnd.in-toto+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json"},
            "annotations": {"k": "v"}
        });
        let bytes = serde_json::to_vec(&with_type).unwrap();
        let desc = descriptor_of(&d('a'), &bytes, crate::media::OCI_MANIFEST);
        assert_eq!(desc["artifactType"], "application/vnd.in-toto+json");
        assert_eq!(desc["annotations"]["k"], "v");
        assert_eq!(desc["size"], bytes.len());
        let config_only = json!({"config": {"mediaType": "application/vnd.cncf.notary.signature"}});
        let bytes = serde_json::to_vec(&config_only).unwrap();
        let desc = descriptor_of(&d('a'), &bytes, crate::media::OCI_MANIFEST);
        assert_eq!(
            desc["artifactType"],
            "application/vnd.cncf.notary.signature"
        );
        assert!(desc.get("annotations").is_none());
    }
}
