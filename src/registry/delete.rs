//! Deleting tags and manifests, and listing a repository's tags (which a delete by digest
//! needs: it removes every tag of the manifest). Whether deleting is safe is the caller's
//! decision; this file only says what the registry did.

use super::*;
use crate::reference::Tag;

/// What a DELETE did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    /// It was already gone (404).
    Absent,
    /// The registry does not delete by tag (Docker Distribution answers 400 `DIGEST_INVALID`,
    /// and 405 when deletes are off); the caller may delete by digest.
    NotByTag,
}

/// How many pages of a tag list are read before giving up: 1000 tags a page.
const MAX_TAG_PAGES: usize = 1000;

impl Client {
    /// Deletes a tag, leaving its manifest (OCI 1.1: `DELETE /v2/<name>/manifests/<tag>`).
    pub async fn delete_tag(&self, r: &Reference) -> Result<Deleted, Error> {
        self.retry(&format!("deleting {r}"), || self.delete_once(r, true))
            .await
    }

    /// Deletes a manifest by digest; with it, every tag that points to it. A registry with
    /// deletes turned off is [`Error::DeletesDisabled`].
    pub async fn delete_manifest(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> Result<Deleted, Error> {
        let r = repo.digested(digest);
        self.retry(&format!("deleting {r}"), || self.delete_once(&r, false))
            .await
    }

    async fn delete_once(&self, r: &Reference, by_tag: bool) -> Result<Deleted, Error> {
        let target = r.to_string();
        let url = self.manifest_url(r);
        let response = self
            .send(
                r.repository(),
                &Scopes::new(r.repository(), Access::Delete),
                &target,
                |http| http.delete(&url),
            )
            .await?;
        match response.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => Ok(Deleted::Deleted),
            StatusCode::NOT_FOUND => Ok(Deleted::Absent),
            StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED if by_tag => {
                Ok(Deleted::NotByTag)
            }
            StatusCode::METHOD_NOT_ALLOWED => Err(Error::DeletesDisabled {
                target,
                registry: r.repository().registry().to_owned(),
            }),
            _ => Err(status_error(&target, r.repository(), response).await),
        }
    }

    /// Every tag of a repository, following the registry's `Link` pages (bounded).
    pub async fn list_tags(&self, repo: &Repository) -> Result<Vec<Tag>, Error> {
        let mut tags = Vec::new();
        let mut next = Some(self.url(repo, "tags/list?n=1000"));
        for _ in 0..MAX_TAG_PAGES {
            let Some(url) = next.take() else {
                return Ok(tags);
            };
            let (page, link) = self
                .retry(&format!("listing the tags of {repo}"), || {
                    self.tags_page(repo, &url)
                })
                .await?;
            tags.extend(page);
            next = link;
        }
        Err(Error::Protocol {
            target: repo.to_string(),
            message: format!("the tag list did not end after {MAX_TAG_PAGES} pages"),
        })
    }

    async fn tags_page(
        &self,
        repo: &Repository,
        url: &str,
    ) -> Result<(Vec<Tag>, Option<String>), Error> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let target = format!("{repo} (tag list)");
        let response = self
            .send(repo, &Scopes::new(repo, Access::Pull), &target, |http| {
                http.get(url)
            })
            .await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok((Vec::new(), None)),
            _ => return Err(status_error(&target, repo, response).await),
        }
        let next = super::referrers::next_link(url, response.headers());
        let bytes = read_capped(&target, "tag list", response, MAX_TAG_LIST).await?;
        let page: Page = serde_json::from_slice(&bytes).map_err(|e| Error::Protocol {
            target: target.clone(),
            message: format!("tag list is not JSON: {e}"),
        })?;
        // A name that is not a valid tag cannot be one of ours; it is skipped, not trusted.
        let tags = page
            .tags
            .unwrap_or_default()
            .iter()
            .filter_map(|t| Tag::parse(t).ok())
            .collect();
        Ok((tags, next))
    }

    /// Reads `r` until the registry says it is gone, for at most the verify timeout: the
    /// delete is trusted only once read back.
    pub async fn verify_absent(&self, r: &Reference) -> Result<(), Error> {
        self.read_until(
            r,
            "deleted, but still there",
            |observed| Ok(observed.is_none()),
            |observed, waited| Error::StillPresent {
                target: r.to_string(),
                observed: found_text(observed),
                waited,
            },
        )
        .await
    }
}

/// A tag list page is names only; 16 MiB is far more than 1000 of them.
const MAX_TAG_LIST: usize = 16 << 20;
