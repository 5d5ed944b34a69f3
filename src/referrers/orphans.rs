//! What replacing a tag's index leaves behind: signatures and attestations refer to a digest,
//! so when a tag moves to a new index, those of the old one no longer describe what the tag
//! holds. Read only when a plan replaces a tag; a plan that writes no tag sends nothing here.

use serde::Serialize;

use super::{Kind, Referrer, list};
use crate::plan::{Plan, TagAction};
use crate::reference::{Digest, Repository, Tag};
use crate::registry::Client;

/// The referrers of what some tags held before a plan replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Orphaned {
    /// The tags that held it and are replaced.
    pub tags: Vec<Tag>,
    /// What they held.
    pub old: Digest,
    /// `index`, or `image` for a tag that held a single image manifest.
    pub old_kind: &'static str,
    pub referrers: Vec<Referrer>,
    /// The index the tags end at.
    pub new: Digest,
    /// The referrers the new index already has.
    pub new_referrers: Vec<Referrer>,
    /// Set when the referrers could not be listed; the push goes on, and the summary says
    /// that nothing is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Orphaned {
    /// The summary's warning: "stable: the old index has 2 signatures; the new index has
    /// none — sign it".
    pub fn warning(&self) -> String {
        let tags: Vec<&str> = self.tags.iter().map(Tag::as_str).collect();
        let tags = tags.join(", ");
        if let Some(e) = &self.error {
            return format!(
                "{tags}: cannot tell what refers to the old {} {}: {e}",
                self.old_kind, self.old
            );
        }
        let now = match self.new_referrers.len() {
            0 => "the new index has none — sign it".to_owned(),
            _ => format!("the new index has {}", counted(&self.new_referrers)),
        };
        format!(
            "{tags}: the old {} has {}; {now}",
            self.old_kind,
            counted(&self.referrers)
        )
    }
}

/// "2 signatures and 1 attestation".
fn counted(referrers: &[Referrer]) -> String {
    let mut kinds: Vec<Kind> = referrers.iter().map(|r| r.kind).collect();
    kinds.sort();
    kinds.dedup();
    let parts: Vec<String> = kinds
        .iter()
        .map(|k| k.count(referrers.iter().filter(|r| r.kind == *k).count()))
        .collect();
    match parts.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => parts.join(""),
    }
}

/// The replaced digests of `plan` that have referrers, with the referrers of the new index.
/// One listing per replaced digest (and one of the new index when any has referrers); none at
/// all when the plan replaces no tag. A listing that fails is reported, not fatal: the push
/// itself does not depend on it.
pub async fn orphans(client: &Client, repo: &Repository, plan: &Plan) -> Vec<Orphaned> {
    let mut replaced: Vec<Orphaned> = Vec::new();
    for t in plan.tags.iter().filter(|t| t.action == TagAction::Push) {
        let Some(old) = t.before.as_ref().filter(|d| *d != &plan.index.digest) else {
            continue;
        };
        match replaced.iter_mut().find(|o| &o.old == old) {
            Some(o) => o.tags.push(t.tag.clone()),
            None => replaced.push(Orphaned {
                tags: vec![t.tag.clone()],
                old: old.clone(),
                old_kind: if t.single_image.is_some() {
                    "image"
                } else {
                    "index"
                },
                referrers: vec![],
                new: plan.index.digest.clone(),
                new_referrers: vec![],
                error: None,
            }),
        }
    }
    let listings =
        futures_util::future::join_all(replaced.iter().map(|o| list(client, repo, &o.old))).await;
    for (o, listing) in replaced.iter_mut().zip(listings) {
        match listing {
            Ok(l) => o.referrers = l.referrers,
            Err(e) => o.error = Some(e.to_string()),
        }
    }
    replaced.retain(|o| o.error.is_some() || !o.referrers.is_empty());
    if replaced.iter().any(|o| !o.referrers.is_empty()) {
        match list(client, repo, &plan.index.digest).await {
            Ok(l) => replaced
                .iter_mut()
                .for_each(|o| o.new_referrers = l.referrers.clone()),
            Err(e) => tracing::warn!("listing the referrers of the new index: {e}"),
        }
    }
    replaced
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::referrers::Found;

    fn referrer(kind: Kind, c: char) -> Referrer {
        Referrer {
            digest: Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap(),
            media_type: crate::media::OCI_MANIFEST.to_owned(),
            artifact_type: None,
            kind,
            found: Found::TagSchema,
            tag: None,
            descriptor: serde_json::Value::Null,
            manifest: None,
        }
    }

    fn orphaned(referrers: Vec<Referrer>, new_referrers: Vec<Referrer>) -> Orphaned {
        Orphaned {
            tags: vec![Tag::parse("stable").unwrap(), Tag::parse("40").unwrap()],
            old: referrer(Kind::Other, 'a').digest,
            old_kind: "index",
            referrers,
            new: referrer(Kind::Other, 'b').digest,
            new_referrers,
            error: None,
        }
    }

    #[test]
    fn the_warning_counts_each_kind_and_asks_for_a_signature() {
        let two = vec![
            referrer(Kind::Signature, '1'),
            referrer(Kind::Signature, '2'),
        ];
        assert_eq!(
            orphaned(two.clone(), vec![]).warning(),
            "stable, 40: the old index has 2 signatures; the new index has none — sign it"
        );
        let mixed = vec![
            referrer(Kind::Attestation, '1'),
            referrer(Kind::Signature, '2'),
            referrer(Kind::Sbom, '3'),
        ];
        assert_eq!(
            orphaned(mixed, vec![referrer(Kind::Signature, '4')]).warning(),
            "stable, 40: the old index has 1 signature, 1 attestation and 1 SBOM; \
             the new index has 1 signature"
        );
    }

    #[test]
    fn a_listing_that_failed_says_nothing_is_known() {
        let mut o = orphaned(vec![], vec![]);
        o.error = Some("HTTP 500".to_owned());
        let w = o.warning();
        assert!(w.contains("cannot tell") && w.contains("HTTP 500"), "{w}");
    }
}
