//! Moving blobs into a repository: a monolithic upload streamed from a reader that verifies
//! as it goes (big blobs go in chunks instead, see `chunked`), a cross-repository mount (with
//! a token that may pull from the source), and a copy from another repository or registry
//! when a mount is not possible.

use super::*;

impl Client {
    /// Uploads one blob whose bytes `source` holds. A blob over twice the chunk size goes in
    /// chunks, resumed where the registry says it stopped after a failure
    /// (`chunked`); a smaller one in one monolithic PUT, which a failure restarts from
    /// a fresh session. Either way the bytes are checked against `blob` as they stream, and
    /// a blob that does not match is never committed.
    pub async fn push_blob<S: BlobSource>(
        &self,
        repo: &Repository,
        blob: &BlobRef,
        source: &S,
    ) -> Result<(), Error> {
        if self.chunking(blob.size) && !self.chunks_refused() {
            match self.push_chunked(repo, blob, source).await {
                Err(Error::ChunksRefused { target, message }) => {
                    tracing::info!(
                        "{target}: the registry refuses chunked uploads ({message}); \
                         sending blobs whole"
                    );
                    self.refuse_chunks();
                }
                other => return other,
            }
        }
        self.retry(&format!("uploading blob {}", blob.digest), || async {
            let reader = source.open_at(0).map_err(|e| Error::Source(Box::new(e)))?;
            if source.checked_elsewhere() {
                self.push_blob_once(repo, blob, reader).await
            } else {
                let reader = VerifyingReader::new(reader, blob.clone());
                self.push_blob_once(repo, blob, reader).await
            }
        })
        .await
    }

    pub(super) async fn push_blob_once<R>(
        &self,
        repo: &Repository,
        blob: &BlobRef,
        reader: R,
    ) -> Result<(), Error>
    where
        R: ReadChunks + 'static,
    {
        let target = repo.digested(&blob.digest).to_string();
        let mismatch: Arc<Mutex<Option<Mismatch>>> = Arc::default();
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        let seen = mismatch.clone();
        let producer = tokio::task::spawn_blocking(move || pump(reader, tx, seen));
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let pushed = self
            .upload(repo, blob, &target, reqwest::Body::wrap_stream(stream))
            .await;
        // The producer ends once the body is consumed or dropped.
        let _ = producer.await;
        if let Some(mismatch) = mismatch.lock().map(|mut m| m.take()).unwrap_or(None) {
            return Err(Error::Mismatch { target, mismatch });
        }
        pushed
    }

    /// Opens an upload session and sends `body` as the whole blob in one PUT. What keeps a
    /// wrong blob out of the registry is the `?digest=` the registry checks before it
    /// commits (and the archive check before any upload): a body whose error comes only at
    /// its end may already have been sent in full.
    pub(super) async fn upload(
        &self,
        repo: &Repository,
        blob: &BlobRef,
        target: &str,
        body: reqwest::Body,
    ) -> Result<(), Error> {
        let start_url = self.url(repo, "blobs/uploads/");
        let push = Scopes::new(repo, Access::Push);
        let started = self
            .send(repo, &push, target, |http| {
                http.post(&start_url).header(header::CONTENT_LENGTH, 0)
            })
            .await?;
        if started.status() != StatusCode::ACCEPTED {
            return Err(status_error(target, repo, started).await);
        }
        let mut put_url = upload_location(target, &start_url, started.headers())?;
        put_url
            .query_pairs_mut()
            .append_pair("digest", blob.digest.as_str());
        // The body is a one-shot stream, so this request is not simply resent on a 401; the
        // whole upload is retried instead (below).
        let mut request = self
            .http
            .request(Method::PUT, put_url)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, blob.size)
            .body(body);
        let sent = self.authorization(repo, &push, None, target).await?;
        if let Some(value) = &sent {
            request = request.header(header::AUTHORIZATION, value.clone());
        }
        let response = request.send().await.map_err(|e| transport(target, &e))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            // The token ran out while the blob was on its way (registries issue them for
            // minutes). Fetch a new one now; the retry starts the upload over with it.
            self.authorization(repo, &push, Some(sent.as_ref()), target)
                .await?;
            return Err(Error::Reauthenticate {
                target: target.to_owned(),
            });
        }
        if response.status() != StatusCode::CREATED {
            return Err(refused_digest(
                status_error(target, repo, response).await,
                blob,
            ));
        }
        Ok(())
    }

    /// Asks the registry to link `digest` from `from` into `repo` without moving its bytes
    /// (`POST …/blobs/uploads/?mount=&from=`), with a token for push on `repo` and pull on
    /// `from`. `false` when the registry declines (it may not have the blob there, not allow
    /// mounts, or not let these credentials read `from`); the caller then copies the blob.
    pub async fn mount_blob(
        &self,
        repo: &Repository,
        from: &Repository,
        digest: &Digest,
    ) -> Result<bool, Error> {
        if self.mount_refused(repo, from) {
            return Ok(false);
        }
        self.retry(&format!("mounting blob {digest} from {from}"), || {
            self.mount_blob_once(repo, from, digest)
        })
        .await
    }

    /// [`Client::mount_blob`], asked only when `from` holds the blob, so a declined mount
    /// leaves no upload session behind. Credentials that may not read `from` mean copying.
    pub async fn mount_if_present(
        &self,
        repo: &Repository,
        from: &Repository,
        digest: &Digest,
    ) -> Result<bool, Error> {
        if self.mount_refused(repo, from) {
            return Ok(false);
        }
        match self.blob_exists(from, digest).await {
            Ok(true) => self.mount_blob(repo, from, digest).await,
            Ok(false) => Ok(false),
            Err(Error::Denied { detail, .. }) => {
                self.refuse_mounts(repo, from, &detail);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    pub(super) fn mount_refused(&self, repo: &Repository, from: &Repository) -> bool {
        let key = (repo.path().to_owned(), from.path().to_owned());
        self.refused_mounts
            .lock()
            .is_ok_and(|refused| refused.contains(&key))
    }

    /// Remembers that blobs of `from` cannot be mounted into `repo`, saying so once.
    pub(super) fn refuse_mounts(&self, repo: &Repository, from: &Repository, why: &str) {
        let key = (repo.path().to_owned(), from.path().to_owned());
        let first = self
            .refused_mounts
            .lock()
            .is_ok_and(|mut refused| refused.insert(key));
        if first {
            tracing::info!(
                "mounting blobs from {from} into {repo} was refused ({why}); copying them instead"
            );
        }
    }

    pub(super) async fn mount_blob_once(
        &self,
        repo: &Repository,
        from: &Repository,
        digest: &Digest,
    ) -> Result<bool, Error> {
        let target = repo.digested(digest).to_string();
        let mut url = reqwest::Url::parse(&self.url(repo, "blobs/uploads/")).map_err(|e| {
            Error::Protocol {
                target: target.clone(),
                message: format!("bad upload URL: {e}"),
            }
        })?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from.path());
        let response = self
            .send(repo, &Scopes::mount(repo, from), &target, |http| {
                http.post(url.clone()).header(header::CONTENT_LENGTH, 0)
            })
            .await?;
        match response.status() {
            StatusCode::CREATED => Ok(true),
            // The registry opened an ordinary upload session instead; it expires unused.
            StatusCode::ACCEPTED => Ok(false),
            _ => match status_error(&target, repo, response).await {
                // Even with pull on `from` asked for, the registry refuses: these credentials
                // may not read it, or the registry does not mount across repositories. If
                // they may not push here either, the copy says so.
                Error::Denied { detail, .. } => {
                    self.refuse_mounts(repo, from, &detail);
                    Ok(false)
                }
                e if e.is_transient() => Err(e),
                e => {
                    tracing::debug!("mounting {digest} from {from} declined: {e}");
                    Ok(false)
                }
            },
        }
    }

    /// Copies one blob from `from` (through `source`, which may talk to another registry)
    /// into `repo`, streaming it and checking its digest and size on the way: a blob whose
    /// bytes do not match is never committed.
    pub async fn copy_blob(
        &self,
        repo: &Repository,
        source: &Client,
        from: &Repository,
        blob: &BlobRef,
    ) -> Result<(), Error> {
        self.retry(&format!("copying blob {} from {from}", blob.digest), || {
            self.copy_blob_once(repo, source, from, blob)
        })
        .await
    }

    pub(super) async fn copy_blob_once(
        &self,
        repo: &Repository,
        source: &Client,
        from: &Repository,
        blob: &BlobRef,
    ) -> Result<(), Error> {
        use futures_util::StreamExt as _;

        let src = from.digested(&blob.digest).to_string();
        let url = source.url(from, &format!("blobs/{}", blob.digest));
        // Errors from the source are the source client's to attribute: its registry refused,
        // with its credentials.
        let response = source
            .send(from, &Scopes::new(from, Access::Pull), &src, |http| {
                http.get(&url)
            })
            .await
            .map_err(|e| source.attribute(e))?;
        if response.status() != StatusCode::OK {
            return Err(source.attribute(status_error(&src, from, response).await));
        }
        let mismatch: Arc<Mutex<Option<Mismatch>>> = Arc::default();
        let body = verified_stream(response.bytes_stream().boxed(), blob, mismatch.clone());
        let target = repo.digested(&blob.digest).to_string();
        let pushed = self
            .upload(repo, blob, &target, reqwest::Body::wrap_stream(body))
            .await;
        if let Some(why) = mismatch.lock().map(|mut m| m.take()).unwrap_or(None) {
            return Err(Error::Protocol {
                target,
                message: format!("not copied: the source sent wrong bytes: {why}"),
            });
        }
        pushed
    }
}

/// `inner` passed through a [`Verifier`] for `blob`: at its end, an error item instead of the
/// end of the body aborts the upload before the registry can commit a wrong blob, and the
/// mismatch is left in `mismatch` for the caller to report.
pub(super) fn verified_stream(
    inner: futures_util::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    blob: &BlobRef,
    mismatch: Arc<Mutex<Option<Mismatch>>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + use<> {
    use futures_util::StreamExt as _;
    let state = (inner, Some(Verifier::new(blob.clone())));
    futures_util::stream::unfold(state, move |(mut inner, verifier)| {
        let mismatch = mismatch.clone();
        async move {
            let mut verifier = verifier?;
            match inner.next().await {
                Some(Ok(chunk)) => {
                    verifier.update(&chunk);
                    Some((Ok(chunk), (inner, Some(verifier))))
                }
                Some(Err(e)) => Some((Err(std::io::Error::other(e)), (inner, None))),
                None => match verifier.finish() {
                    Ok(()) => None,
                    Err(m) => {
                        let err = std::io::Error::other(m.to_string());
                        if let Ok(mut slot) = mismatch.lock() {
                            *slot = Some(m);
                        }
                        Some((Err(err), (inner, None)))
                    }
                },
            }
        }
    })
}

/// Size of the chunks a blob is streamed in; with a small channel in front of the request
/// body this bounds the memory an upload holds.
pub(super) const STREAM_CHUNK: usize = 256 << 10;

/// Reads a blob in chunks and feeds them to the request body. A digest or size mismatch is
/// recorded for the caller and also sent as an error, which aborts the upload before the
/// registry can commit it.
pub(super) fn pump<R: ReadChunks>(
    mut reader: R,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    mismatch: Arc<Mutex<Option<Mismatch>>>,
) {
    loop {
        let item = match reader.read_chunk(STREAM_CHUNK) {
            Ok(chunk) if chunk.is_empty() => return,
            Ok(chunk) => Ok(chunk),
            Err(e) => {
                let text = e.to_string();
                if let Some(m) = crate::hash::mismatch_of(&e)
                    && let Ok(mut slot) = mismatch.lock()
                {
                    *slot = Some(m.clone());
                }
                Err(std::io::Error::other(text))
            }
        };
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
    }
}

/// Where the registry wants the blob: its `Location`, relative or absolute.
pub(super) fn upload_location(
    target: &str,
    start_url: &str,
    headers: &HeaderMap,
) -> Result<reqwest::Url, Error> {
    let bad = |message: String| Error::Protocol {
        target: target.to_owned(),
        message,
    };
    let location = headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| bad("the upload session has no usable Location".to_owned()))?;
    let base = reqwest::Url::parse(start_url).map_err(|e| bad(format!("bad upload URL: {e}")))?;
    base.join(location)
        .map_err(|e| bad(format!("the upload Location is not a URL: {e}")))
}

/// A registry's refusal of a blob's bytes at commit (`DIGEST_INVALID`, `SIZE_INVALID`) as the
/// mismatch it is; any other error as it is.
pub(super) fn refused_digest(e: Error, blob: &BlobRef) -> Error {
    match e {
        Error::Status {
            status: 400,
            message,
            target,
            ..
        } if message.contains("DIGEST_INVALID") || message.contains("SIZE_INVALID") => {
            Error::DigestRefused {
                target,
                digest: blob.digest.clone(),
            }
        }
        other => other,
    }
}
