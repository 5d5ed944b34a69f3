//! Uploading a large blob in chunks that survive a reset (OCI distribution spec, "pushing a
//! blob in chunks"): one session, a PATCH with `Content-Range` per chunk, a closing PUT with
//! `?digest=`. When a chunk fails (a reset, a 5xx), the session is asked where it is (a GET
//! on its URL answers `Range: 0-<last byte>`) and the upload goes on from there; only when
//! the registry cannot say (Docker Distribution cancels a session a cut PATCH left part of
//! its bytes in) does the blob start over in a fresh session.
//!
//! A chunk is held in memory until the registry has it, so a resend needs no re-read: the
//! archive is read once, in order, through the verifying reader. The closing PUT is sent only
//! after that reader has seen the blob's last byte and found its digest and size right, so a
//! wrong blob is never committed (the registry checks `?digest=` too).

use super::upload::{read_full, upload_location};
use super::*;

/// What ended one upload session.
enum SessionEnd {
    /// The registry cannot say where the session is: start the blob over.
    Restart(Error),
    /// Anything else: give up (after the usual retries inside).
    Fail(Error),
}

/// Where an upload session is: its URL and how many bytes the registry holds.
struct Session {
    url: reqwest::Url,
    offset: u64,
}

impl Client {
    /// Whether `blob` goes up in chunks rather than in one PUT.
    pub(super) fn chunked(&self, blob: &BlobRef) -> bool {
        blob.size >= self.chunked_threshold
    }

    /// Uploads `blob` in chunks, resuming after a failed chunk where the registry says it
    /// is; a fresh session (and a fresh reader) only when it cannot say, at most
    /// `retry_times` more times.
    pub(super) async fn push_blob_chunked<R, E>(
        &self,
        repo: &Repository,
        blob: &BlobRef,
        open: impl Fn() -> Result<VerifyingReader<R>, E>,
    ) -> Result<(), Error>
    where
        R: std::io::Read + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let target = repo.digested(&blob.digest).to_string();
        let mut sessions = 0;
        loop {
            let reader = open().map_err(|e| Error::Source(Box::new(e)))?;
            match self.chunked_session(repo, blob, &target, reader).await {
                Ok(()) => return Ok(()),
                Err(SessionEnd::Restart(e)) if sessions < self.retry_times => {
                    sessions += 1;
                    tracing::warn!(
                        "uploading blob {}: {e}; the registry cannot say how much of the \
                         upload it holds, so it starts over (session {} of {})",
                        blob.digest,
                        sessions + 1,
                        self.retry_times + 1
                    );
                }
                Err(SessionEnd::Restart(e) | SessionEnd::Fail(e)) => return Err(e),
            }
        }
    }

    async fn chunked_session<R>(
        &self,
        repo: &Repository,
        blob: &BlobRef,
        target: &str,
        reader: VerifyingReader<R>,
    ) -> Result<(), SessionEnd>
    where
        R: std::io::Read + Send + 'static,
    {
        let (mut session, min_chunk) = self
            .retry(&format!("starting the upload of {}", blob.digest), || {
                self.start_session(repo, target)
            })
            .await
            .map_err(SessionEnd::Fail)?;
        let chunk = self.chunk_size.max(min_chunk);
        let mut reader = Some(reader);
        while session.offset < blob.size {
            let len = chunk.min(blob.size - session.offset);
            let (r, bytes) = read_chunk(reader.take(), len, target).await?;
            reader = Some(r);
            session = self.send_chunk(repo, target, session, bytes).await?;
        }
        // Past the last byte: the verifying reader now checks the digest and size.
        read_chunk(reader, 0, target).await?;
        self.close_session(repo, blob, target, session).await
    }

    /// `POST …/blobs/uploads/`: the session's URL, and the smallest chunk the registry
    /// takes (`OCI-Chunk-Min-Length`), if it says.
    async fn start_session(
        &self,
        repo: &Repository,
        target: &str,
    ) -> Result<(Session, u64), Error> {
        let start_url = self.url(repo, "blobs/uploads/");
        let started = self
            .send(repo, &Scopes::new(repo, Access::Push), target, |http| {
                http.post(&start_url).header(header::CONTENT_LENGTH, 0)
            })
            .await?;
        if started.status() != StatusCode::ACCEPTED {
            return Err(status_error(target, repo, started).await);
        }
        let min_chunk = started
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let url = upload_location(target, &start_url, started.headers())?;
        Ok((Session { url, offset: 0 }, min_chunk))
    }

    /// Sends one chunk (the bytes from `session.offset` on). After a transient failure, asks
    /// the session where it is and sends what it lacks, up to `retry_times` times; a session
    /// that cannot say ends in [`SessionEnd::Restart`].
    async fn send_chunk(
        &self,
        repo: &Repository,
        target: &str,
        mut session: Session,
        bytes: Bytes,
    ) -> Result<Session, SessionEnd> {
        let start = session.offset;
        let end = start + bytes.len() as u64;
        let mut delay = self.retry_delay;
        let mut failures = 0;
        loop {
            let from = usize::try_from(session.offset - start).unwrap_or(usize::MAX);
            let part = bytes.slice(from.min(bytes.len())..);
            match self.patch(repo, target, &session, part).await {
                Ok(next) if next.offset == end => return Ok(next),
                Ok(next) => {
                    return Err(SessionEnd::Restart(Error::Protocol {
                        target: target.to_owned(),
                        message: format!(
                            "the registry holds {} bytes after a chunk ending at {end}",
                            next.offset
                        ),
                    }));
                }
                Err(e) if e.is_transient() && failures < self.retry_times => {
                    failures += 1;
                    tracing::warn!(
                        "uploading {target}: a chunk at byte {} failed: {e}; asking the \
                         registry where the upload is (retry {failures} of {})",
                        session.offset,
                        self.retry_times
                    );
                    tokio::time::sleep(retry::pause_before_retry(
                        retry::jitter(delay),
                        e.retry_after(),
                    ))
                    .await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                    let status = match self.upload_status(repo, target, &session.url).await {
                        Ok(status) => status,
                        Err(_) => return Err(SessionEnd::Restart(e)),
                    };
                    if status.offset < start || status.offset > end {
                        return Err(SessionEnd::Restart(e));
                    }
                    tracing::info!(
                        "uploading {target}: the registry holds {} bytes; going on from there",
                        status.offset
                    );
                    session = status;
                    if session.offset == end {
                        return Ok(session);
                    }
                }
                Err(e) if e.is_transient() => return Err(SessionEnd::Restart(e)),
                Err(e) => return Err(SessionEnd::Fail(e)),
            }
        }
    }

    /// One PATCH of `part` at `session.offset`; the session as the registry then reports it.
    async fn patch(
        &self,
        repo: &Repository,
        target: &str,
        session: &Session,
        part: Bytes,
    ) -> Result<Session, Error> {
        let first = session.offset;
        let last = first + part.len() as u64 - 1;
        let url = session.url.clone();
        let response = self
            .send(repo, &Scopes::new(repo, Access::Push), target, |http| {
                http.patch(url.clone())
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_RANGE, format!("{first}-{last}"))
                    .header(header::CONTENT_LENGTH, part.len())
                    .body(part.clone())
            })
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(status_error(target, repo, response).await);
        }
        session_from(target, &session.url, response.headers())
    }

    /// `GET` on the session's URL: where the upload is, or an error when the registry cannot
    /// say (it answers 404 for a session it cancelled).
    async fn upload_status(
        &self,
        repo: &Repository,
        target: &str,
        url: &reqwest::Url,
    ) -> Result<Session, Error> {
        let response = self
            .send(repo, &Scopes::new(repo, Access::Push), target, |http| {
                http.get(url.clone())
            })
            .await?;
        if response.status() != StatusCode::NO_CONTENT && response.status() != StatusCode::OK {
            return Err(status_error(target, repo, response).await);
        }
        session_from(target, url, response.headers())
    }

    /// The closing `PUT …?digest=`, with no body: the registry checks the digest of what it
    /// holds and commits the blob.
    async fn close_session(
        &self,
        repo: &Repository,
        blob: &BlobRef,
        target: &str,
        session: Session,
    ) -> Result<(), SessionEnd> {
        let mut url = session.url;
        url.query_pairs_mut()
            .append_pair("digest", blob.digest.as_str());
        let response = self
            .send(repo, &Scopes::new(repo, Access::Push), target, |http| {
                http.put(url.clone()).header(header::CONTENT_LENGTH, 0)
            })
            .await
            .map_err(SessionEnd::Restart)?;
        if response.status() != StatusCode::CREATED {
            let e = status_error(target, repo, response).await;
            return Err(if e.is_transient() {
                SessionEnd::Restart(e)
            } else {
                SessionEnd::Fail(e)
            });
        }
        Ok(())
    }
}

/// The session a response describes: its `Location` (or `url` if it names none) and the
/// bytes its `Range: 0-<last>` says the registry holds.
fn session_from(target: &str, url: &reqwest::Url, headers: &HeaderMap) -> Result<Session, Error> {
    let bad = |message: String| Error::Protocol {
        target: target.to_owned(),
        message,
    };
    let next = match headers.get(header::LOCATION) {
        Some(_) => upload_location(target, url.as_str(), headers)?,
        None => url.clone(),
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| bad("the upload session reports no Range".to_owned()))?;
    let offset = parse_range_end(range)
        .ok_or_else(|| bad(format!("the upload session reports Range {range:?}")))?;
    Ok(Session { url: next, offset })
}

/// `0-<last>` → bytes held (`last + 1`). Docker Distribution answers `0-0` for an empty
/// session too; a chunk is never a single byte at offset 0 here, so `0-0` reads as 0.
fn parse_range_end(range: &str) -> Option<u64> {
    let range = range.trim().strip_prefix("bytes=").unwrap_or(range.trim());
    let (first, last) = range.split_once('-')?;
    let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
    if first != 0 {
        return None;
    }
    Some(if last == 0 { 0 } else { last + 1 })
}

/// Reads exactly `len` bytes of the blob (0: reads past its end, where the verifying reader
/// checks digest and size) on a blocking thread; the reader comes back for the next chunk.
async fn read_chunk<R>(
    reader: Option<VerifyingReader<R>>,
    len: u64,
    target: &str,
) -> Result<(VerifyingReader<R>, Bytes), SessionEnd>
where
    R: std::io::Read + Send + 'static,
{
    let fail = |message: String| {
        SessionEnd::Fail(Error::Protocol {
            target: target.to_owned(),
            message,
        })
    };
    let mut reader = reader.ok_or_else(|| fail("the blob reader was lost".to_owned()))?;
    let want = usize::try_from(len).map_err(|_| fail("chunk too large".to_owned()))?;
    let read = tokio::task::spawn_blocking(move || {
        // One byte more than asked past the end, so the reader reaches its end and checks.
        let mut buf = vec![0u8; want.max(1)];
        let got = read_full(&mut reader, &mut buf[..want]);
        let got = match got {
            Ok(n) if want == 0 => read_full(&mut reader, &mut buf).map(|extra| (n, extra)),
            Ok(n) => Ok((n, 0)),
            Err(e) => Err(e),
        };
        buf.truncate(want);
        (reader, buf, got)
    })
    .await
    .map_err(|e| fail(format!("reading the blob: {e}")))?;
    let (reader, buf, got) = read;
    match got {
        Ok((n, 0)) if n == want => Ok((reader, Bytes::from(buf))),
        Ok((n, 0)) => Err(fail(format!(
            "not uploaded: the blob ended after {n} of {want} bytes of a chunk"
        ))),
        Ok((_, extra)) => Err(fail(format!(
            "not uploaded: the blob has at least {extra} more bytes than its descriptor says"
        ))),
        Err(e) => Err(fail(format!("not uploaded: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_says_how_many_bytes_the_registry_holds() {
        assert_eq!(parse_range_end("0-1048575"), Some(1 << 20));
        assert_eq!(parse_range_end("bytes=0-9"), Some(10));
        assert_eq!(parse_range_end("0-0"), Some(0));
        assert_eq!(parse_range_end("5-9"), None);
        assert_eq!(parse_range_end("nonsense"), None);
    }
}
