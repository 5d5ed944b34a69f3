//! The HTTP of referrers (OCI distribution spec 1.1): listing them through the referrers API
//! (`GET /v2/<name>/referrers/<digest>`, every page of it), and putting a manifest that names
//! a `subject` while learning whether the registry took note of it (the `OCI-Subject` header).
//! The fallbacks (the referrers tag schema, cosign's tags) are ordinary manifest reads and
//! writes; reading any of it as referrers is [`crate::referrers`]'s job.

use super::*;

/// How many pages of one referrers list are followed before giving up: a registry must not
/// keep reprise reading forever.
const MAX_REFERRER_PAGES: usize = 64;

impl Client {
    /// The pages of the referrers list of `subject` in `repo`, each an image index as the
    /// registry sent it; `None` when the registry answers 404, which the spec reserves for a
    /// registry without the referrers API (the caller then reads the tag schema).
    pub async fn referrers_api(
        &self,
        repo: &Repository,
        subject: &Digest,
    ) -> Result<Option<Vec<Bytes>>, Error> {
        let mut url = self.url(repo, &format!("referrers/{subject}"));
        let mut pages = Vec::new();
        for _ in 0..MAX_REFERRER_PAGES {
            let target = format!("{}/referrers/{subject}", repo);
            let page = self
                .retry(&format!("listing referrers of {subject}"), || {
                    self.referrers_page_once(repo, &url, &target)
                })
                .await?;
            let Some((body, next)) = page else {
                return Ok(None);
            };
            pages.push(body);
            match next {
                Some(next) => url = next,
                None => return Ok(Some(pages)),
            }
        }
        Err(Error::Protocol {
            target: format!("{repo}/referrers/{subject}"),
            message: format!("more than {MAX_REFERRER_PAGES} pages of referrers"),
        })
    }

    /// One page: its body, and the URL of the next page if the `Link` header names one.
    async fn referrers_page_once(
        &self,
        repo: &Repository,
        url: &str,
        target: &str,
    ) -> Result<Option<(Bytes, Option<String>)>, Error> {
        let response = self
            .send(repo, &Scopes::new(repo, Access::Pull), target, |http| {
                http.get(url).header(header::ACCEPT, media::OCI_INDEX)
            })
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            StatusCode::OK => {}
            _ => return Err(status_error(target, repo, response).await),
        }
        let next = next_link(url, response.headers());
        let body = read_capped(target, "referrers list", response, MAX_REMOTE_MANIFEST).await?;
        Ok(Some((body, next)))
    }

    /// Puts a manifest at a tag or digest, and returns the digest the registry names in
    /// `OCI-Subject`: set when it processed the manifest's `subject` (it keeps the referrers
    /// list itself), `None` when the client must keep the referrers tag schema instead.
    pub async fn put_manifest_noting_subject(
        &self,
        r: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Option<Digest>, Error> {
        self.retry(&format!("pushing {r}"), || {
            self.put_manifest_subject_once(r, bytes, media_type)
        })
        .await
    }

    async fn put_manifest_subject_once(
        &self,
        r: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Option<Digest>, Error> {
        let headers = self.put_manifest_once(r, bytes, media_type).await?;
        Ok(headers
            .get("oci-subject")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v.trim()).ok()))
    }
}

/// The `rel="next"` target of a `Link` header (RFC 5988), resolved against the page's URL;
/// only on the same origin, since the next request carries this registry's credentials.
/// Paged lists (referrers, tags) follow it.
pub(super) fn next_link(url: &str, headers: &HeaderMap) -> Option<String> {
    let base = reqwest::Url::parse(url).ok()?;
    headers
        .get_all(header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|link| {
            let (target, params) = link.split_once(';')?;
            let is_next = params.split(';').any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            let next = base
                .join(target)
                .ok()
                .filter(|n| n.origin() == base.origin())?;
            is_next.then(|| String::from(next))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_is_the_rel_next_link_resolved_against_the_page() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::LINK,
            HeaderValue::from_static(
                r#"</v2/a/referrers/sha256:00?n=10&last=x>; rel="next", <https://other/>; rel="prev""#,
            ),
        );
        assert_eq!(
            next_link("http://127.0.0.1:5000/v2/a/referrers/sha256:00", &headers).as_deref(),
            Some("http://127.0.0.1:5000/v2/a/referrers/sha256:00?n=10&last=x")
        );
        assert_eq!(next_link("http://h/v2/", &HeaderMap::new()), None);
        let mut elsewhere = HeaderMap::new();
        elsewhere.insert(
            header::LINK,
            HeaderValue::from_static(r#"<https://elsewhere/v2/x>; rel="next""#),
        );
        assert_eq!(
            next_link("http://h/v2/", &elsewhere),
            None,
            "same origin only"
        );
        let mut prev_only = HeaderMap::new();
        prev_only.insert(header::LINK, HeaderValue::from_static("</x>; rel=prev"));
        assert_eq!(next_link("http://h/v2/", &prev_only), None);
    }
}
