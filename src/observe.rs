//! Observed state: what each tag resolves to in the registry, read as an index.
//!
//! One HEAD per tag; the body is fetched (by digest, so it cannot change under us) only when
//! the digest is not the one reprise would push. A tag holding a single image manifest is read
//! as what it is, with its platform taken from its config: the plan shows that platform and
//! weighs it under the missing-arch policy, but never takes the image for an index. A 404 is
//! "absent"; any other failure is an error, never "absent".
//!
//! Under `--missing-arch keep` it also reads the manifests a carry would have to put in the
//! list's format (see [`read_carry_sources`]), so the plan can convert them without I/O.

use futures_util::future::try_join_all;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};

use crate::index::{self, Entry, Parsed};
use crate::plan::{ContentKind, Desired, MissingArch, Observed, Policy, RemoteContent, TagState};
use crate::platform::Platform;
use crate::reference::{Digest, Repository, Tag};
use crate::registry::{self, Client};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Registry(#[from] registry::Error),
    #[error("{target}: {source}")]
    Index {
        target: String,
        source: index::Error,
    },
    #[error("{target}: tag changed while being read (it no longer resolves to {digest})")]
    Vanished { target: String, digest: Digest },
}

/// Reads every tag concurrently.
pub async fn observe(
    client: &Client,
    repo: &Repository,
    tags: &[Tag],
    own_index: &Digest,
) -> Result<Observed, Error> {
    let states = try_join_all(tags.iter().map(|t| observe_tag(client, repo, t, own_index))).await?;
    Ok(Observed {
        tags: tags.iter().cloned().zip(states).collect(),
        manifests: Default::default(),
    })
}

/// Under `--missing-arch keep`, reads into `observed.manifests` every remote manifest of a
/// platform this build lacks whose media type is not the list's format: the ones a carry
/// would convert. Reads only; a manifest the registry does not serve is left out, and the
/// plan refuses to carry it.
pub async fn read_carry_sources(
    client: &Client,
    desired: &Desired,
    policy: &Policy,
    observed: &mut Observed,
) -> Result<(), Error> {
    if policy.missing_arch != MissingArch::Keep {
        return Ok(());
    }
    let own: Vec<_> = desired
        .arches
        .iter()
        .map(|a| a.entry.platform.key())
        .collect();
    let mut wanted: Vec<Digest> = Vec::new();
    for state in observed.tags.values() {
        let TagState::Present {
            content: Some(content),
            ..
        } = state
        else {
            continue;
        };
        for e in &content.platforms {
            if own.contains(&e.platform.key())
                || crate::v2s2::format_of(&e.media_type) == Some(desired.format)
            {
                continue;
            }
            if content.kind == ContentKind::Image {
                // The tag holds this manifest itself: its bytes are already here.
                observed
                    .manifests
                    .insert(e.digest.clone(), content.bytes.clone());
            } else if !wanted.contains(&e.digest) {
                wanted.push(e.digest.clone());
            }
        }
    }
    wanted.retain(|d| !observed.manifests.contains_key(d));
    let repo = &desired.repo;
    let fetched: Vec<_> = stream::iter(wanted.into_iter().map(|digest| async move {
        let got = client.fetch_manifest(&repo.digested(&digest)).await?;
        Ok::<_, Error>((digest, got))
    }))
    .buffered(client.jobs())
    .try_collect()
    .await?;
    for (digest, got) in fetched {
        if let Some(f) = got {
            observed.manifests.insert(digest, f.bytes.to_vec());
        }
    }
    Ok(())
}

async fn observe_tag(
    client: &Client,
    repo: &Repository,
    tag: &Tag,
    own_index: &Digest,
) -> Result<TagState, Error> {
    let Some(digest) = client.resolve(&repo.tagged(tag)).await? else {
        return Ok(TagState::Absent);
    };
    if &digest == own_index {
        return Ok(TagState::Present {
            digest,
            content: None,
        });
    }
    let by_digest = repo.digested(&digest);
    let target = format!("{}", repo.tagged(tag));
    let fetched = client
        .fetch_manifest(&by_digest)
        .await?
        .ok_or_else(|| Error::Vanished {
            target: target.clone(),
            digest: digest.clone(),
        })?;
    let parsed = index::parse_remote(&fetched.bytes, None).map_err(|source| Error::Index {
        target: target.clone(),
        source,
    })?;
    let content = match parsed {
        Parsed::Index(remote) => RemoteContent {
            bytes: fetched.bytes.to_vec(),
            media_type: remote.media_type,
            kind: ContentKind::Index,
            platforms: remote.platforms,
            other: remote.other,
            annotations: remote.annotations,
        },
        Parsed::Image { config } => {
            let platform = client.fetch_platform(repo, &config).await?;
            let media_type = index::media_type_of(&fetched.bytes);
            RemoteContent {
                bytes: fetched.bytes.to_vec(),
                media_type: media_type.clone(),
                kind: ContentKind::Image,
                platforms: platform
                    .into_iter()
                    .filter(Platform::is_real)
                    .map(|platform| Entry {
                        platform,
                        digest: digest.clone(),
                        size: fetched.bytes.len() as u64,
                        media_type: media_type.clone(),
                    })
                    .collect(),
                other: vec![],
                annotations: Default::default(),
            }
        }
    };
    Ok(TagState::Present {
        digest,
        content: Some(content),
    })
}
