//! The only place reprise talks HTTP to a registry. It knows OCI data only (references,
//! digests, media types, blob descriptors), never archives, indexes or build records.
//!
//! Owns connection settings, the one normalisation of "not found", bounded reads of
//! manifests and configs, and read-after-write verification; everything that is not a
//! success and not a 404 is an [`Error`], never "absent". Requests are sent with `reqwest`
//! directly, because a retry policy needs each response's status and headers (`Retry-After`,
//! `Content-Length`, `Docker-Content-Digest`). The rest is one job a file:
//! - `error`: the error type, and turning a response or transport failure into one;
//! - `transient`: the one table of which failures are worth a retry;
//! - `retry`: the retry loop, backoff and `Retry-After`;
//! - `request`: sending a request with the credentials or token it needs;
//! - `token`: the token exchange (one token for every scope a request needs), whose result
//!   is cached per set of scopes, marked sensitive, and never logged;
//! - `delete`: deleting tags and manifests, and listing a repository's tags;
//! - `upload`: blob uploads, cross-repository mounts and copies, every byte verified as it
//!   streams ([`crate::hash`]);
//! - `chunked`: big blobs uploaded in chunks, resumed where the registry says it stopped;
//! - `referrers`: the referrers API's list, and manifest pushes that report `OCI-Subject`;
//! - `tls`: the certificate authorities trusted beyond the system's.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use camino::{Utf8Path, Utf8PathBuf};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::auth::Credentials;
use crate::hash::{BlobRef, BlobSource, Mismatch, ReadChunks, Verifier, VerifyingReader};
use crate::media::{self, MAX_REMOTE_MANIFEST};
use crate::reference::{Digest, Reference, Repository};

mod chunked;
mod delete;
mod error;
mod referrers;
mod request;
mod retry;
mod tls;
mod token;
mod transient;
mod upload;

pub use delete::Deleted;
use error::*;
pub use error::{Error, found_text};
use retry::*;
use tls::*;

use token::{Access, Challenge, Scopes};
pub use transient::TransportKind;

const USER_AGENT: &str = concat!("reprise/", env!("CARGO_PKG_VERSION"));

/// Every manifest type reprise reads; sent as Accept so the registry never converts.
const MANIFEST_TYPES: &[&str] = &[
    media::OCI_INDEX,
    media::DOCKER_LIST,
    media::OCI_MANIFEST,
    media::DOCKER_MANIFEST,
];

/// How much of an error body is read to explain a failure.
const MAX_ERROR_BODY: usize = 64 << 10;

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Verify TLS certificates. `false` speaks plain HTTP to the registry (no fallback), and
    /// skips certificate checks wherever HTTPS remains (a token service elsewhere).
    pub tls_verify: bool,
    /// Speak plain HTTP to a registry on a loopback address. Off when `--tls-verify=true`
    /// or `--cert-dir` ask for TLS explicitly.
    pub loopback_http: bool,
    /// Extra CA certificates (`*.crt`), as `--cert-dir` in skopeo and podman. Without it,
    /// `/etc/containers/certs.d/<host:port>` and `/etc/docker/certs.d/<host:port>` are read
    /// when they exist.
    pub cert_dir: Option<Utf8PathBuf>,
    pub authfile: Option<Utf8PathBuf>,
    /// How long read-after-write verification waits for a tag to show what was pushed.
    pub verify_timeout: Duration,
    /// How many times a request that failed transiently is tried again.
    pub retry_times: u32,
    /// The first pause before a retry; it doubles (with jitter) up to 30 s.
    pub retry_delay: Duration,
    /// How many blobs are checked for or moved at once.
    pub jobs: usize,
    /// Blobs over twice this many bytes are uploaded in chunks of it, so a failure costs at
    /// most one chunk; smaller ones in one PUT.
    pub chunk_size: u64,
}

/// The default [`ConnectOptions::chunk_size`]: blobs over 64 MiB go in 32 MiB chunks, so a
/// reset late in a 256 MiB layer resends at most an eighth of it.
pub const DEFAULT_CHUNK_SIZE: u64 = 32 << 20;

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            tls_verify: true,
            loopback_http: true,
            cert_dir: None,
            authfile: None,
            verify_timeout: Duration::from_secs(60),
            retry_times: 5,
            retry_delay: Duration::from_secs(1),
            jobs: 4,
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

/// A manifest as a registry returned it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Bytes,
    pub digest: Digest,
}

/// `Authorization` values per set of scopes; `None` means send none.
type TokenCache = HashMap<Scopes, Option<HeaderValue>>;

/// A client for one registry.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `http://host[:port]` or `https://host[:port]`.
    base: String,
    credentials: Credentials,
    /// Where `credentials` came from, for access-denied messages.
    auth_source: String,
    /// `--tls-verify`: when false, plain HTTP was asked for.
    tls_verify: bool,
    /// How the registry asks to be authenticated, once known; held while `/v2/` is asked,
    /// so parallel requests ask once.
    challenge: Arc<tokio::sync::Mutex<Challenge>>,
    tokens: Arc<tokio::sync::Mutex<TokenCache>>,
    /// Held while a token is fetched, so parallel requests needing it fetch it once.
    fetching: Arc<tokio::sync::Mutex<()>>,
    /// (target, source) repository paths the registry would not mount between: their blobs
    /// are copied instead, without asking again.
    refused_mounts: Arc<Mutex<HashSet<(String, String)>>>,
    verify_timeout: Duration,
    retry_times: u32,
    retry_delay: Duration,
    jobs: usize,
    chunk_size: u64,
    /// Set once the registry refused a chunked upload: every later blob goes whole.
    chunks_refused: Arc<std::sync::atomic::AtomicBool>,
}

impl Client {
    /// How many blobs callers should check for or move at once.
    pub fn jobs(&self) -> usize {
        self.jobs
    }

    /// How many small requests (HEADs, manifests, small blobs) callers should have in flight
    /// at once: sixteen times [`Client::jobs`], since they move few bytes and each costs a
    /// round trip that only concurrency hides.
    pub fn small_jobs(&self) -> usize {
        self.jobs * 16
    }

    /// Whether a blob of `size` bytes goes in chunks.
    fn chunking(&self, size: u64) -> bool {
        size > self.chunk_size.saturating_mul(2)
    }

    fn chunks_refused(&self) -> bool {
        self.chunks_refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn refuse_chunks(&self) {
        self.chunks_refused
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// [`Client::new`] on a blocking thread: it reads auth files and cert dirs and may run a
    /// credential helper, none of which belongs on the async runtime's workers.
    pub async fn connect(registry: &Repository, opts: &ConnectOptions) -> Result<Client, Error> {
        let (registry, opts) = (registry.clone(), opts.clone());
        tokio::task::spawn_blocking(move || Client::new(&registry, &opts))
            .await
            .map_err(|e| Error::Transport {
                target: "setting up the registry client".to_owned(),
                message: e.to_string(),
                kind: TransportKind::Request,
            })?
    }

    pub fn new(registry: &Repository, opts: &ConnectOptions) -> Result<Client, Error> {
        let cert_dir = opts.cert_dir.clone().or_else(|| default_cert_dir(registry));
        let plain_http = !opts.tls_verify
            || (registry.is_loopback() && opts.loopback_http && cert_dir.is_none());
        let extra_root_certificates = match &cert_dir {
            Some(dir) => load_cert_dir(dir)?,
            None => Vec::new(),
        };
        let setup = |e: &dyn std::fmt::Display| Error::Transport {
            target: registry.registry().to_owned(),
            message: format!("cannot set up the HTTP client: {e}"),
            kind: TransportKind::Request,
        };
        let mut http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .danger_accept_invalid_certs(!opts.tls_verify)
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(300));
        for pem in &extra_root_certificates {
            let cert = reqwest::Certificate::from_pem(pem).map_err(|e| Error::CertDir {
                path: cert_dir.clone().unwrap_or_default(),
                detail: format!("not a usable PEM certificate: {e}"),
            })?;
            http = http.add_root_certificate(cert);
        }
        let http = http.build().map_err(|e| setup(&e))?;
        let found = crate::auth::find(
            &crate::auth::Places::from_env(opts.authfile.as_deref()),
            registry,
        )?;
        tracing::debug!(
            registry = registry.registry(),
            "credentials: {}",
            found.source
        );
        let scheme = if plain_http { "http" } else { "https" };
        Ok(Client {
            http,
            base: format!("{scheme}://{}", api_host(registry)),
            credentials: found.auth,
            auth_source: found.source,
            tls_verify: opts.tls_verify,
            challenge: Arc::new(tokio::sync::Mutex::new(Challenge::Unknown)),
            tokens: Arc::default(),
            fetching: Arc::default(),
            refused_mounts: Arc::default(),
            verify_timeout: opts.verify_timeout,
            retry_times: opts.retry_times,
            retry_delay: opts.retry_delay,
            jobs: opts.jobs.max(1),
            chunk_size: opts.chunk_size.max(1),
            chunks_refused: Arc::default(),
        })
    }

    fn url(&self, repo: &Repository, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.base, repo.path())
    }

    fn manifest_url(&self, r: &Reference) -> String {
        self.url(r.repository(), &format!("manifests/{}", r.target()))
    }

    /// The digest a tag or digest reference resolves to, or `None` if the registry says 404.
    pub async fn resolve(&self, r: &Reference) -> Result<Option<Digest>, Error> {
        self.retry(&format!("resolving {r}"), || self.resolve_once(r))
            .await
    }

    /// The manifest a reference names, or `None` on 404. The body is checked against the
    /// digest the registry reports (and the reference's own digest, if it has one).
    pub async fn fetch_manifest(&self, r: &Reference) -> Result<Option<Fetched>, Error> {
        self.retry(&format!("fetching {r}"), || self.fetch_manifest_once(r))
            .await
    }

    /// The platform an image config blob names (`None` if it names none).
    pub async fn fetch_platform(
        &self,
        repo: &Repository,
        config: &Digest,
    ) -> Result<Option<crate::platform::Platform>, Error> {
        self.retry(&format!("fetching config {config}"), || {
            self.fetch_platform_once(repo, config)
        })
        .await
    }

    pub async fn blob_exists(&self, repo: &Repository, digest: &Digest) -> Result<bool, Error> {
        self.retry(&format!("checking blob {digest}"), || {
            self.blob_exists_once(repo, digest)
        })
        .await
    }

    /// Puts a manifest (image manifest or index) at a tag or digest.
    pub async fn put_manifest(
        &self,
        r: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), Error> {
        self.retry(&format!("pushing {r}"), || {
            self.put_manifest_once(r, bytes, media_type)
        })
        .await
        .map(|_| ())
    }

    /// A HEAD or GET of a manifest: `None` on 404, the response on 200, and an error for
    /// anything else, which is never read as "absent".
    async fn manifest_response(
        &self,
        r: &Reference,
        target: &str,
        method: Method,
    ) -> Result<Option<reqwest::Response>, Error> {
        let url = self.manifest_url(r);
        let response = self
            .send(
                r.repository(),
                &Scopes::new(r.repository(), Access::Pull),
                target,
                |http| {
                    http.request(method.clone(), &url)
                        .header(header::ACCEPT, MANIFEST_TYPES.join(", "))
                },
            )
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::OK => Ok(Some(response)),
            _ => Err(status_error(target, r.repository(), response).await),
        }
    }

    async fn resolve_once(&self, r: &Reference) -> Result<Option<Digest>, Error> {
        let target = r.to_string();
        let Some(response) = self.manifest_response(r, &target, Method::HEAD).await? else {
            return Ok(None);
        };
        match digest_header(&target, response.headers())? {
            Some(digest) => {
                check_reference_digest(&target, r, &digest)?;
                Ok(Some(digest))
            }
            // Registries need not send the header; the body's digest is then the answer.
            None => Ok(self.fetch_manifest_once(r).await?.map(|f| f.digest)),
        }
    }

    async fn fetch_manifest_once(&self, r: &Reference) -> Result<Option<Fetched>, Error> {
        let target = r.to_string();
        let Some(response) = self.manifest_response(r, &target, Method::GET).await? else {
            return Ok(None);
        };
        let reported = digest_header(&target, response.headers())?;
        let bytes = read_capped(&target, "manifest", response, MAX_REMOTE_MANIFEST).await?;
        let digest = Digest::of(&bytes);
        if let Some(reported) = reported
            && reported != digest
        {
            return Err(Error::Protocol {
                target,
                message: format!(
                    "the registry says the manifest is {reported} but its bytes are {digest}"
                ),
            });
        }
        check_reference_digest(&target, r, &digest)?;
        Ok(Some(Fetched { bytes, digest }))
    }

    async fn fetch_platform_once(
        &self,
        repo: &Repository,
        config: &Digest,
    ) -> Result<Option<crate::platform::Platform>, Error> {
        let target = repo.digested(config).to_string();
        let url = self.url(repo, &format!("blobs/{config}"));
        let response = self
            .send(repo, &Scopes::new(repo, Access::Pull), &target, |http| {
                http.get(&url)
            })
            .await?;
        if response.status() != StatusCode::OK {
            return Err(status_error(&target, repo, response).await);
        }
        let bytes = read_capped(&target, "image config", response, MAX_REMOTE_MANIFEST).await?;
        if &Digest::of(&bytes) != config {
            return Err(Error::Protocol {
                target,
                message: "the image config's bytes do not match its digest".to_owned(),
            });
        }
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::Protocol {
                target: target.clone(),
                message: format!("image config is not JSON: {e}"),
            })?;
        let field = |k: &str| json.get(k).and_then(|v| v.as_str()).unwrap_or("");
        if field("os").is_empty() || field("architecture").is_empty() {
            return Ok(None);
        }
        Ok(Some(crate::platform::Platform::new(
            field("os"),
            field("architecture"),
            json.get("variant").and_then(|v| v.as_str()),
        )))
    }

    async fn blob_exists_once(&self, repo: &Repository, digest: &Digest) -> Result<bool, Error> {
        let target = repo.digested(digest).to_string();
        let url = self.url(repo, &format!("blobs/{digest}"));
        let response = self
            .send(repo, &Scopes::new(repo, Access::Pull), &target, |http| {
                http.head(&url)
            })
            .await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(&target, repo, response).await),
        }
    }

    /// One PUT of a manifest; the headers of the registry's 201.
    async fn put_manifest_once(
        &self,
        r: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<HeaderMap, Error> {
        let target = r.to_string();
        let content_type = HeaderValue::from_str(media_type).map_err(|_| Error::Protocol {
            target: target.clone(),
            message: format!("media type {media_type:?} is not a valid header value"),
        })?;
        let url = self.manifest_url(r);
        let body = Bytes::copy_from_slice(bytes);
        let response = self
            .send(
                r.repository(),
                &Scopes::new(r.repository(), Access::Push),
                &target,
                |http| {
                    http.put(&url)
                        .header(header::CONTENT_TYPE, content_type.clone())
                        .body(body.clone())
                },
            )
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(status_error(&target, r.repository(), response).await);
        }
        Ok(response.headers().clone())
    }

    /// Reads `r` back until it resolves to `expected`, with backoff, for at most the
    /// configured verify timeout: a registry or a cache in front of it may answer the old
    /// digest or a 404 for a while after a write.
    pub async fn verify(&self, r: &Reference, expected: &Digest) -> Result<(), Error> {
        self.read_back(r, expected, None).await
    }

    /// [`Client::verify`] of a tag that held `before` (`None`: nothing) when the run looked:
    /// a stale read answers that or a 404, so any third digest was put there by another
    /// writer, and waiting would not bring this run's back. That stops the wait at once.
    pub async fn verify_written(
        &self,
        r: &Reference,
        expected: &Digest,
        before: Option<&Digest>,
    ) -> Result<(), Error> {
        self.read_back(r, expected, Some(before)).await
    }

    /// Reads `r` back until it shows `expected`; `before`, when known, is what it held.
    async fn read_back(
        &self,
        r: &Reference,
        expected: &Digest,
        before: Option<Option<&Digest>>,
    ) -> Result<(), Error> {
        self.read_until(
            r,
            "not yet showing the pushed digest",
            |observed| {
                if observed == Some(expected) {
                    return Ok(true);
                }
                match (observed, before) {
                    (Some(found), Some(before)) if Some(found) != before => Err(Error::Moved {
                        target: r.to_string(),
                        found: Some(found.clone()),
                    }),
                    _ => Ok(false),
                }
            },
            |observed, waited| Error::Verify {
                target: r.to_string(),
                expected: expected.clone(),
                observed: observed.map_or_else(|| "nothing (404)".to_owned(), ToString::to_string),
                waited,
            },
        )
        .await
    }

    /// Reads `r` until `done` says what it resolves to is what was wanted (or fails), with
    /// backoff, for at most the verify timeout; then `timed_out` with the last answer and the
    /// time waited. A registry, or a cache in front of it, may answer an old state for a while
    /// after a write: the one read-after-write loop, for writes and deletes alike.
    pub(super) async fn read_until(
        &self,
        r: &Reference,
        waiting_for: &str,
        done: impl Fn(Option<&Digest>) -> Result<bool, Error>,
        timed_out: impl Fn(Option<&Digest>, Duration) -> Error,
    ) -> Result<(), Error> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            let observed = self.resolve(r).await?;
            if done(observed.as_ref())? {
                return Ok(());
            }
            let waited = start.elapsed();
            if waited + delay > self.verify_timeout {
                return Err(timed_out(observed.as_ref(), waited));
            }
            tracing::info!(target = %r, "{waiting_for}; reading again in {delay:?}");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

/// The host requests go to; Docker Hub's API lives on another name than its references use.
fn api_host(repo: &Repository) -> &str {
    match repo.registry() {
        "docker.io" => "index.docker.io",
        other => other,
    }
}

fn digest_header(target: &str, headers: &HeaderMap) -> Result<Option<Digest>, Error> {
    let Some(value) = headers.get("docker-content-digest") else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| Error::Protocol {
        target: target.to_owned(),
        message: "Docker-Content-Digest is not text".to_owned(),
    })?;
    Digest::parse(text.trim())
        .map(Some)
        .map_err(|e| Error::Protocol {
            target: target.to_owned(),
            message: format!("registry reported an unusable digest: {e}"),
        })
}

/// A manifest read by digest must be the one asked for, whatever the registry says.
fn check_reference_digest(target: &str, r: &Reference, got: &Digest) -> Result<(), Error> {
    match r {
        Reference::Digested(_, wanted) if wanted != got => Err(Error::Protocol {
            target: target.to_owned(),
            message: format!("the registry answered with {got} instead"),
        }),
        _ => Ok(()),
    }
}

/// The whole body, refusing (before reading it, when the length is announced) one over
/// `limit` bytes: a registry must not make reprise hold an unbounded document.
async fn read_capped(
    target: &str,
    what: &str,
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, Error> {
    let too_big = |size: String| Error::Protocol {
        target: target.to_owned(),
        message: format!("{what} is {size} bytes, over the {limit}-byte limit"),
    };
    if let Some(len) = response.content_length()
        && len > limit as u64
    {
        return Err(too_big(len.to_string()));
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport(target, &e))? {
        if buf.len() + chunk.len() > limit {
            return Err(too_big(format!("more than {limit}")));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests;
