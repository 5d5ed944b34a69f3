//! Big blobs in chunks, resumed after a failure: the OCI distribution spec's "pushing a blob
//! in chunks". Each chunk is a `PATCH` with `Content-Range`; after a reset, a 5xx or a 416
//! the session is asked where it stands (`GET` on its latest `Location`, answered with a
//! `Range`) and the upload goes on from there. Only when the registry cannot say (the
//! session is unknown, or the answer has no usable `Range`) does the blob start over in a
//! fresh session. `OCI-Chunk-Min-Length` raises the chunk size when a registry asks for it.
//!
//! The bytes are checked against the blob's descriptor as they stream: the hash of the part
//! the registry holds is kept, so a resumed upload goes on hashing from where it stopped, and
//! a blob whose bytes do not match is never committed. Bytes checked elsewhere (an archive's
//! check pass) are not hashed again: the registry checks the digest before it commits.
//!
//! Docker Distribution keeps the bytes of a chunk cut short but signs the offset into the
//! upload's `Location`, so after a reset that reached it mid-chunk it answers the status with
//! 404 and the blob starts over; behind a proxy that buffers request bodies (nginx's default)
//! a cut chunk never reaches it and the upload resumes.

use super::upload::{STREAM_CHUNK, upload_location};
use super::*;

/// What the registry holds of one upload session: its latest `Location` and how many bytes.
#[derive(Debug, Clone)]
struct Session {
    url: reqwest::Url,
    offset: u64,
    /// The chunk size, raised to the registry's `OCI-Chunk-Min-Length`.
    chunk: u64,
}

/// The hash of a blob's first `offset` bytes; `None` when the source's bytes are checked
/// elsewhere and the digest is left to the registry ([`BlobSource::checked_elsewhere`]).
#[derive(Clone)]
struct Hashed {
    offset: u64,
    verifier: Option<Verifier>,
}

/// What one step of the upload achieved.
enum Step {
    /// The session moved on (opened, or a chunk accepted); with the hash of the bytes sent
    /// up to the new offset when they were all streamed.
    Moved(Session, Option<Box<Hashed>>),
    Done,
}

/// One chunked upload: what is uploaded where, and from which bytes.
struct Upload<'a, S> {
    client: &'a Client,
    repo: &'a Repository,
    blob: &'a BlobRef,
    source: &'a S,
    target: String,
    push: Scopes,
}

impl Client {
    /// Uploads `blob` from `source` in chunks. Failures that make no progress are tried
    /// again up to `retry_times` times, with the usual backoff; a chunk that gets through
    /// starts the count over, so a long upload over a flaky link keeps going as long as it
    /// moves.
    pub(super) async fn push_chunked<S: BlobSource>(
        &self,
        repo: &Repository,
        blob: &BlobRef,
        source: &S,
    ) -> Result<(), Error> {
        let up = Upload {
            client: self,
            repo,
            blob,
            source,
            target: repo.digested(&blob.digest).to_string(),
            push: Scopes::new(repo, Access::Push),
        };
        let mut session: Option<Session> = None;
        let mut hashed = Hashed::start(blob, source);
        let mut failures = 0;
        let mut delay = self.retry_delay;
        loop {
            let step = match &session {
                None => up.open().await,
                Some(s) if s.offset < blob.size => up.patch(s, &hashed).await,
                Some(s) => up.commit(s, &hashed).await,
            };
            let error = match step {
                Ok(Step::Done) => return Ok(()),
                Ok(Step::Moved(next, streamed)) => {
                    hashed = match streamed {
                        Some(h) if h.offset == next.offset => *h,
                        _ => up.hash_to(&hashed, next.offset).await?,
                    };
                    session = Some(next);
                    failures = 0;
                    continue;
                }
                Err(e) => e,
            };
            if !resumable(&error) || failures >= self.retry_times {
                return Err(self.attribute(error));
            }
            failures += 1;
            let pause = pause_before_retry(jitter(delay), error.retry_after());
            tracing::warn!(
                "uploading blob {}: {error}; asking the registry where the upload stands \
                 in {pause:?} (retry {failures} of {})",
                blob.digest,
                self.retry_times
            );
            tokio::time::sleep(pause).await;
            delay = (delay * 2).min(Duration::from_secs(30));
            match up.after_failure(session.as_ref(), &error, &hashed).await? {
                Resumed::Committed => return Ok(()),
                Resumed::At(next, h) => (session, hashed) = (next, *h),
            }
        }
    }
}

/// Where an upload goes on from after a failure.
enum Resumed {
    /// The commit went through; only its answer was lost.
    Committed,
    /// From this session (`None`: a fresh one) and the hash of the bytes it holds.
    At(Option<Session>, Box<Hashed>),
}

impl<S: BlobSource> Upload<'_, S> {
    /// Asks the registry where the upload stands after `error`: the session's offset, or,
    /// when it cannot say, a fresh session (unless the blob got committed after all).
    async fn after_failure(
        &self,
        session: Option<&Session>,
        error: &Error,
        hashed: &Hashed,
    ) -> Result<Resumed, Error> {
        let digest = &self.blob.digest;
        let known = match (session, error) {
            // The session is gone: nothing to ask.
            (_, Error::Status { status: 404, .. }) | (None, _) => None,
            (Some(s), _) => self.status(s).await?,
        };
        if let Some(s) = known {
            tracing::info!(
                "uploading blob {digest}: the registry holds {} of {} bytes; going on from there",
                s.offset,
                self.blob.size
            );
            let hashed = self.hash_to(hashed, s.offset).await?;
            return Ok(Resumed::At(Some(s), Box::new(hashed)));
        }
        let committing = session.is_some_and(|s| s.offset == self.blob.size);
        if committing && self.client.blob_exists(self.repo, digest).await? {
            return Ok(Resumed::Committed);
        }
        if session.is_some() {
            tracing::info!(
                "uploading blob {digest}: the registry cannot say where the upload stands; \
                 starting it over"
            );
        }
        Ok(Resumed::At(
            None,
            Box::new(Hashed::start(self.blob, self.source)),
        ))
    }
}

/// Failures after which the upload is resumed or started over: the network, a busy
/// registry, a token that ran out, a chunk out of order (416) and a session the registry
/// no longer knows (404).
fn resumable(e: &Error) -> bool {
    e.is_transient()
        || matches!(
            e,
            Error::Status {
                status: 404 | 416,
                ..
            }
        )
}

impl<S: BlobSource> Upload<'_, S> {
    /// Opens a session (`POST`), learning the registry's smallest chunk.
    async fn open(&self) -> Result<Step, Error> {
        let start_url = self.client.url(self.repo, "blobs/uploads/");
        let response = self
            .client
            .send(self.repo, &self.push, &self.target, |http| {
                http.post(&start_url).header(header::CONTENT_LENGTH, 0)
            })
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(status_error(&self.target, self.repo, response).await);
        }
        let url = upload_location(&self.target, &start_url, response.headers())?;
        let min = response
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let chunk = self.client.chunk_size.max(min);
        Ok(Step::Moved(
            Session {
                url,
                offset: 0,
                chunk,
            },
            None,
        ))
    }

    /// Sends the next chunk from `s.offset`, hashing it on the way from `hashed` (which
    /// covers the bytes before it).
    async fn patch(&self, s: &Session, hashed: &Hashed) -> Result<Step, Error> {
        let end = (s.offset + s.chunk).min(self.blob.size);
        let len = end - s.offset;
        let reader = self
            .source
            .open_at(s.offset)
            .map_err(|e| Error::Source(Box::new(e)))?;
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        let mut verifier = hashed.verifier.clone();
        let producer = tokio::task::spawn_blocking(move || {
            let sent = pump_range(reader, len, &tx, |bytes| {
                if let Some(v) = verifier.as_mut() {
                    v.update(bytes);
                }
            });
            (sent, verifier)
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let body = reqwest::Body::wrap_stream(stream);
        let range = format!("{}-{}", s.offset, end - 1);
        let sent = self.authorization().await?;
        let mut request = self
            .client
            .http
            .patch(s.url.clone())
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, len)
            .header(header::CONTENT_RANGE, range)
            .body(body);
        if let Some(value) = &sent {
            request = request.header(header::AUTHORIZATION, value.clone());
        }
        let response = request.send().await;
        // The producer ends once the body is consumed or dropped.
        let (read, verifier) = producer.await.map_err(|e| Error::Transport {
            target: self.target.clone(),
            message: format!("reading the blob stopped: {e}"),
            kind: TransportKind::Other,
        })?;
        let read = read.map_err(|e| Error::Source(Box::new(e)))?;
        let response = response.map_err(|e| transport(&self.target, &e))?;
        match response.status() {
            StatusCode::ACCEPTED => {}
            StatusCode::UNAUTHORIZED => return Err(self.reauthenticate(sent).await),
            // A registry that takes no chunks says so on the first one.
            status if s.offset == 0 && refuses_chunks(status) => {
                let message = status_error(&self.target, self.repo, response)
                    .await
                    .to_string();
                return Err(Error::ChunksRefused {
                    target: self.target.clone(),
                    message,
                });
            }
            _ => return Err(status_error(&self.target, self.repo, response).await),
        }
        let next = self.session_from(s, response.headers())?;
        // The registry must hold what it held plus this chunk, or say so.
        let streamed = (read == len && next.offset == end).then(|| {
            Box::new(Hashed {
                offset: end,
                verifier,
            })
        });
        Ok(Step::Moved(next, streamed))
    }

    /// Commits the upload once the registry holds every byte (`PUT …?digest=`, no body),
    /// after checking the hash of what was sent.
    async fn commit(&self, s: &Session, hashed: &Hashed) -> Result<Step, Error> {
        if let Some(verifier) = &hashed.verifier
            && let Err(mismatch) = verifier.clone().finish()
        {
            return Err(Error::Mismatch {
                target: self.target.clone(),
                mismatch,
            });
        }
        let mut url = s.url.clone();
        url.query_pairs_mut()
            .append_pair("digest", self.blob.digest.as_str());
        let response = self
            .client
            .send(self.repo, &self.push, &self.target, |http| {
                http.put(url.clone()).header(header::CONTENT_LENGTH, 0)
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            let e = status_error(&self.target, self.repo, response).await;
            return Err(super::upload::refused_digest(e, self.blob));
        }
        Ok(Step::Done)
    }

    /// Where the session stands (`GET` on its latest `Location`), or `None` when the
    /// registry cannot say: it no longer knows the session, or its answer has no `Range`.
    async fn status(&self, s: &Session) -> Result<Option<Session>, Error> {
        let asked = self
            .client
            .retry(
                &format!("asking where the upload of {} stands", self.target),
                || async {
                    let response = self
                        .client
                        .send(self.repo, &self.push, &self.target, |http| {
                            http.get(s.url.clone())
                        })
                        .await?;
                    match response.status() {
                        StatusCode::NO_CONTENT | StatusCode::OK => {
                            Ok(self.session_from(s, response.headers()).ok())
                        }
                        status
                            if status.is_client_error()
                                && status != StatusCode::TOO_MANY_REQUESTS =>
                        {
                            tracing::debug!("{}: upload status answered {status}", self.target);
                            Ok(None)
                        }
                        _ => Err(status_error(&self.target, self.repo, response).await),
                    }
                },
            )
            .await;
        match asked {
            Ok(known) => Ok(known),
            // Still failing after the retries: start over rather than give up the blob.
            Err(e) if e.is_transient() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The session as a response to it describes it: its new `Location` (the old one when
    /// it sends none) and the offset its `Range` gives.
    fn session_from(&self, s: &Session, headers: &HeaderMap) -> Result<Session, Error> {
        let offset = headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_range)
            .ok_or_else(|| Error::Protocol {
                target: self.target.clone(),
                message: "the upload session answered without a usable Range".to_owned(),
            })?;
        if offset > self.blob.size {
            return Err(Error::Protocol {
                target: self.target.clone(),
                message: format!(
                    "the registry says it holds {offset} bytes of a {}-byte blob",
                    self.blob.size
                ),
            });
        }
        let url = match headers.get(header::LOCATION) {
            Some(_) => upload_location(&self.target, s.url.as_str(), headers)?,
            None => s.url.clone(),
        };
        Ok(Session {
            url,
            offset,
            chunk: s.chunk,
        })
    }

    /// The hash of the blob's first `offset` bytes, from `from` when it covers fewer: the
    /// missing bytes are read again from the source, never from the network.
    async fn hash_to(&self, from: &Hashed, offset: u64) -> Result<Hashed, Error> {
        let start = if from.offset <= offset {
            from.clone()
        } else {
            Hashed::start(self.blob, self.source)
        };
        let Some(mut verifier) = start.verifier else {
            return Ok(Hashed {
                offset,
                verifier: None,
            });
        };
        if start.offset == offset {
            return Ok(Hashed {
                offset,
                verifier: Some(verifier),
            });
        }
        let reader = self
            .source
            .open_at(start.offset)
            .map_err(|e| Error::Source(Box::new(e)))?;
        let len = offset - start.offset;
        let read = tokio::task::spawn_blocking(move || {
            let mut reader = reader;
            let mut read = 0u64;
            while read < len {
                let want = STREAM_CHUNK.min((len - read) as usize);
                let chunk = reader.read_chunk(want)?;
                if chunk.is_empty() {
                    break;
                }
                verifier.update(&chunk);
                read += chunk.len() as u64;
            }
            Ok::<_, std::io::Error>((read, verifier))
        })
        .await
        .map_err(|e| Error::Source(Box::new(e)))?;
        let (read, verifier) = read.map_err(|e| Error::Source(Box::new(e)))?;
        if read != len {
            return Err(Error::Source(Box::new(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("blob {} ends before byte {offset}", self.blob.digest),
            ))));
        }
        Ok(Hashed {
            offset,
            verifier: Some(verifier),
        })
    }

    async fn authorization(&self) -> Result<Option<HeaderValue>, Error> {
        self.client
            .authorization(self.repo, &self.push, None, &self.target)
            .await
    }

    /// A chunk's body is a one-shot stream, so a 401 is not answered by sending it again:
    /// a fresh token is fetched now and the chunk goes again after asking where the upload
    /// stands.
    async fn reauthenticate(&self, sent: Option<HeaderValue>) -> Error {
        match self
            .client
            .authorization(self.repo, &self.push, Some(sent.as_ref()), &self.target)
            .await
        {
            Ok(_) => Error::Reauthenticate {
                target: self.target.clone(),
            },
            Err(e) => e,
        }
    }
}

impl Hashed {
    fn start(blob: &BlobRef, source: &impl BlobSource) -> Hashed {
        Hashed {
            offset: 0,
            verifier: (!source.checked_elsewhere()).then(|| Verifier::new(blob.clone())),
        }
    }
}

/// Statuses a registry that does not take chunks answers the first one with.
fn refuses_chunks(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED
    )
}

/// How many bytes an upload's `Range` (`0-<last>`, or `bytes=0-<last>`) says the registry
/// holds. `0-0` is read as none: Docker Distribution answers it for an empty session, and
/// reading it as one byte would resend nothing that matters.
fn parse_range(value: &str) -> Option<u64> {
    let value = value.trim();
    let value = value.strip_prefix("bytes=").unwrap_or(value);
    let (start, end) = value.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    match (start, end) {
        (0, 0) => Some(0),
        (0, last) => last.checked_add(1),
        _ => None,
    }
}

/// Reads `len` bytes of `reader` in [`STREAM_CHUNK`] pieces into the request body, showing
/// each to `seen`. Returns how many were read; stops early when the request is gone.
fn pump_range(
    mut reader: impl ReadChunks,
    len: u64,
    tx: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    mut seen: impl FnMut(&[u8]),
) -> std::io::Result<u64> {
    let mut read = 0u64;
    while read < len {
        let chunk = reader.read_chunk(STREAM_CHUNK.min((len - read) as usize))?;
        if chunk.is_empty() {
            break;
        }
        seen(&chunk);
        read += chunk.len() as u64;
        if tx.blocking_send(Ok(chunk)).is_err() {
            break;
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn a_range_counts_the_bytes_the_registry_holds() {
        assert_eq!(parse_range("0-0"), Some(0));
        assert_eq!(parse_range("0-999999"), Some(1_000_000));
        assert_eq!(parse_range("bytes=0-1023"), Some(1024));
        assert_eq!(parse_range(" 0-9 "), Some(10));
    }

    #[test]
    fn a_range_that_does_not_start_at_zero_or_is_not_numbers_says_nothing() {
        for bad in ["", "5-9", "0-", "-9", "0-x", "bytes 0-9"] {
            assert_eq!(parse_range(bad), None, "{bad:?}");
        }
    }
}
