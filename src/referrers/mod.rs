//! Referrers: the manifests that refer to another one by digest (signatures, attestations,
//! SBOMs), found the three ways registries keep them:
//! - the referrers API of the OCI distribution spec 1.1, when the registry answers it;
//! - else the referrers tag schema: the tag `sha256-<hex>` of the subject, holding an image
//!   index that lists them (what clients keep on a registry without the API, such as Docker
//!   Distribution 2.8);
//! - and cosign's tags `sha256-<hex>.sig`, `.att` and `.sbom`, each holding one manifest.
//!
//! Owns reading those into one list ([`list`]), naming what each referrer is ([`Kind`]), what
//! a tag's replacement leaves behind ([`orphans`](mod@orphans)), and bringing referrers along when an
//! image moves to another repository or registry ([`copy`]). The HTTP is `registry`'s.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::reference::{Digest, Repository, Tag};
use crate::registry::{self, Client};

pub mod copy;
pub mod orphans;

pub use copy::{CopyPlan, CopyStats, Side};
pub use orphans::{Orphaned, orphans};

/// How a referrer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Found {
    /// Listed by the registry's referrers API.
    ReferrersApi,
    /// Listed in the index at the subject's `sha256-<hex>` tag.
    TagSchema,
    /// Held by one of cosign's `sha256-<hex>.sig|.att|.sbom` tags.
    CosignTag,
}

/// What a referrer is, from its artifact type (or its cosign tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Signature,
    Attestation,
    Sbom,
    Other,
}

impl Kind {
    /// `n` of this kind, for a sentence: "2 signatures", "1 SBOM".
    pub fn count(self, n: usize) -> String {
        let (one, many) = match self {
            Kind::Signature => ("signature", "signatures"),
            Kind::Attestation => ("attestation", "attestations"),
            Kind::Sbom => ("SBOM", "SBOMs"),
            Kind::Other => ("other referrer", "other referrers"),
        };
        format!("{n} {}", if n == 1 { one } else { many })
    }

    /// The kind an artifact type names. Signatures are cosign's, Notation's and sigstore
    /// bundles; attestations in-toto statements and provenance; SBOMs SPDX and CycloneDX.
    pub fn of_artifact_type(artifact_type: &str, predicate_type: Option<&str>) -> Kind {
        let t = artifact_type.to_ascii_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
        if has(&["in-toto", "attestation", "provenance", "slsa"]) {
            Kind::Attestation
        } else if has(&["sbom", "spdx", "cyclonedx"]) {
            Kind::Sbom
        } else if t.contains("sigstore.bundle") {
            // A sigstore bundle holds a signature or an attestation; its predicate type says
            // which (cosign's own for a plain signature).
            match predicate_type {
                Some(p) if !p.contains("cosign/sign") => Kind::Attestation,
                _ => Kind::Signature,
            }
        } else if has(&[
            "signature",
            "cosign.artifact.sig",
            "notary",
            "simplesigning",
        ]) {
            Kind::Signature
        } else {
            Kind::Other
        }
    }
}

/// One manifest that refers to a subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub kind: Kind,
    pub found: Found,
    /// For a cosign tag: the tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<Tag>,
    /// Its descriptor as the list gives it (made from the manifest for a cosign tag), to be
    /// listed as it is in another tag-schema index.
    #[serde(skip)]
    pub descriptor: Value,
    /// For a cosign tag: the manifest, read when the tag was.
    #[serde(skip)]
    pub manifest: Option<Bytes>,
}

/// The referrers of one subject in one repository.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Whether the registry answered the referrers API (else the tag schema was read).
    pub api: bool,
    /// The index at the subject's tag-schema tag, as stored, when there is one.
    pub tag_schema: Option<Value>,
    /// Each referrer once, in the order found.
    pub referrers: Vec<Referrer>,
}

impl Listing {
    pub fn contains(&self, digest: &Digest) -> bool {
        self.referrers.iter().any(|r| &r.digest == digest)
    }
}

/// Why referrers could not be read or moved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Registry(#[from] registry::Error),
    #[error("{target}: {message}")]
    Invalid { target: String, message: String },
    #[error(
        "{target} already holds {held}, another {kind:?} manifest than the source's {want}; refusing to overwrite it"
    )]
    CosignConflict {
        target: String,
        held: Digest,
        want: Digest,
        kind: Kind,
    },
    #[error("{target}: after copying, {missing} is not listed among the referrers of {subject}")]
    NotListed {
        target: String,
        subject: Digest,
        missing: Digest,
    },
}

/// cosign's tags for a subject, with what each holds.
const COSIGN: [(&str, Kind); 3] = [
    ("sig", Kind::Signature),
    ("att", Kind::Attestation),
    ("sbom", Kind::Sbom),
];

/// The referrers tag schema's tag for `subject`: `sha256-<hex>`.
pub fn schema_tag(subject: &Digest) -> Tag {
    tag_named(&format!("sha256-{}", subject.hex()))
}

/// cosign's tag for `subject` with `suffix` (`sig`, `att`, `sbom`).
pub fn cosign_tag(subject: &Digest, suffix: &str) -> Tag {
    tag_named(&format!("sha256-{}.{suffix}", subject.hex()))
}

fn tag_named(s: &str) -> Tag {
    // "sha256-", 64 hex digits and at most ".sbom": always a tag.
    Tag::parse(s).expect("a digest's tag is a valid tag")
}

/// Every referrer of `subject` in `repo`: from the referrers API, or (on a 404) the tag
/// schema, and from cosign's tags. A failure is an error, never "no referrers".
pub async fn list(client: &Client, repo: &Repository, subject: &Digest) -> Result<Listing, Error> {
    let (listed, cosign) = tokio::try_join!(
        listed_referrers(client, repo, subject),
        cosign_referrers(client, repo, subject)
    )?;
    let mut listing = listed;
    for r in cosign {
        if !listing.contains(&r.digest) {
            listing.referrers.push(r);
        }
    }
    Ok(listing)
}

/// The referrers the API lists, or else the tag-schema index.
async fn listed_referrers(
    client: &Client,
    repo: &Repository,
    subject: &Digest,
) -> Result<Listing, Error> {
    if let Some(pages) = client.referrers_api(repo, subject).await? {
        let target = format!("{repo}/referrers/{subject}");
        let mut listing = Listing {
            api: true,
            ..Listing::default()
        };
        for page in pages {
            let index: Value = serde_json::from_slice(&page).map_err(|e| Error::Invalid {
                target: target.clone(),
                message: format!("the referrers list is not JSON: {e}"),
            })?;
            add_listed(&mut listing, &index, Found::ReferrersApi, &target)?;
        }
        return Ok(listing);
    }
    let tag = repo.tagged(&schema_tag(subject));
    let mut listing = Listing::default();
    let Some(fetched) = client.fetch_manifest(&tag).await? else {
        return Ok(listing);
    };
    match serde_json::from_slice::<Value>(&fetched.bytes) {
        Ok(index) if index.get("manifests").is_some_and(Value::is_array) => {
            add_listed(&mut listing, &index, Found::TagSchema, &tag.to_string())?;
            listing.tag_schema = Some(index);
        }
        // The spec: a tag-schema tag that holds no index means no referrers.
        _ => tracing::debug!(%tag, "holds no image index; no referrers listed there"),
    }
    Ok(listing)
}

/// Adds each descriptor of a referrers index to `listing`, once.
fn add_listed(
    listing: &mut Listing,
    index: &Value,
    found: Found,
    target: &str,
) -> Result<(), Error> {
    let invalid = |message: String| Error::Invalid {
        target: target.to_owned(),
        message,
    };
    let entries = index
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("the referrers list is not an image index".to_owned()))?;
    for (i, d) in entries.iter().enumerate() {
        let digest = d
            .get("digest")
            .and_then(Value::as_str)
            .and_then(|s| Digest::parse(s).ok())
            .ok_or_else(|| invalid(format!("referrer {i} has no usable digest")))?;
        if listing.contains(&digest) {
            continue;
        }
        let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let artifact_type = str_of(d, "artifactType");
        let predicate = d
            .get("annotations")
            .and_then(|a| str_of(a, "dev.sigstore.bundle.predicateType"));
        listing.referrers.push(Referrer {
            kind: Kind::of_artifact_type(
                artifact_type.as_deref().unwrap_or(""),
                predicate.as_deref(),
            ),
            digest,
            media_type: str_of(d, "mediaType").unwrap_or_default(),
            artifact_type,
            found,
            tag: None,
            descriptor: d.clone(),
            manifest: None,
        });
    }
    Ok(())
}

/// The manifests cosign's tags of `subject` hold.
async fn cosign_referrers(
    client: &Client,
    repo: &Repository,
    subject: &Digest,
) -> Result<Vec<Referrer>, Error> {
    let reads = COSIGN.map(|(suffix, kind)| async move {
        let tag = cosign_tag(subject, suffix);
        let fetched = client.fetch_manifest(&repo.tagged(&tag)).await?;
        Ok::<_, Error>(fetched.map(|f| {
            let media_type = crate::index::media_type_of(&f.bytes);
            Referrer {
                descriptor: serde_json::json!({
                    "mediaType": media_type,
                    "digest": f.digest,
                    "size": f.bytes.len(),
                }),
                digest: f.digest,
                media_type,
                artifact_type: None,
                kind,
                found: Found::CosignTag,
                tag: Some(tag),
                manifest: Some(f.bytes),
            }
        }))
    });
    let found = futures_util::future::try_join_all(reads).await?;
    Ok(found.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests;
