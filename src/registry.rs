//! The only place reprise talks HTTP: a thin layer over `oci-client`.
//!
//! Owns connection settings (TLS, plain HTTP for loopback), credentials from an auth file,
//! the one normalisation of "not found" (a 404 reaches us from oci-client in several shapes),
//! streaming blob uploads straight from an archive, and read-after-write verification.
//! Everything that is not a success and not a 404 is an [`Error`], never "absent".

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use camino::{Utf8Path, Utf8PathBuf};
use oci_client::Client as OciClient;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;

use crate::archive::{self, BlobMismatch, BlobRef, VerifyingReader};
use crate::reference::{Digest, Reference, Repository};

const USER_AGENT: &str = concat!("reprise/", env!("CARGO_PKG_VERSION"));

/// Every manifest type reprise reads; sent as Accept so the registry never converts.
const MANIFEST_TYPES: &[&str] = &[
    crate::index::OCI_INDEX,
    crate::index::DOCKER_LIST,
    archive::OCI_MANIFEST,
    archive::DOCKER_MANIFEST,
];

/// Size of the chunks a blob is streamed in; with a small channel in front of the request
/// body this bounds the memory an upload holds.
const STREAM_CHUNK: usize = 256 << 10;

/// What went wrong talking to a registry, sharp enough for callers to decide on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{target}: access denied ({detail}); {auth}")]
    Denied {
        target: String,
        registry: String,
        detail: String,
        /// Which credentials were tried, never the credentials themselves.
        auth: String,
    },
    #[error("{target}: registry answered HTTP {status}: {message}")]
    Status {
        target: String,
        status: u16,
        message: String,
    },
    #[error("{target}: {message}")]
    Transport { target: String, message: String },
    #[error("{target}: {message}")]
    Protocol { target: String, message: String },
    #[error("{target} still resolves to {observed} after {waited:?}; expected {expected}")]
    Verify {
        target: String,
        expected: Digest,
        observed: String,
        waited: Duration,
    },
    #[error(transparent)]
    Auth(#[from] crate::auth::Error),
    #[error("{path}: {detail}")]
    CertDir { path: Utf8PathBuf, detail: String },
    #[error(transparent)]
    Archive(#[from] archive::Error),
}

impl Error {
    /// Whether trying again may help: the network, a timeout, or a status registries use for
    /// "busy" or "down for a moment". Never a 4xx other than 408 and 429.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Status { status, .. } => matches!(status, 408 | 429 | 500 | 502 | 503 | 504),
            Error::Transport { .. } => true,
            _ => false,
        }
    }
}

/// `delay` scaled by a factor in [0.5, 1.5), so parallel clients do not retry in step.
fn jitter(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    delay.mul_f64(0.5 + f64::from(nanos % 1000) / 1000.0)
}

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Verify TLS certificates. `false` also allows plain HTTP, as skopeo's flag does.
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
}

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
        }
    }
}

/// A manifest as a registry returned it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Bytes,
    pub digest: Digest,
}

/// A client for one registry.
#[derive(Clone)]
pub struct Client {
    inner: OciClient,
    auth: RegistryAuth,
    /// Where `auth` came from, for access-denied messages.
    auth_source: String,
    verify_timeout: Duration,
    retry_times: u32,
    retry_delay: Duration,
}

impl Client {
    pub fn new(registry: &Repository, opts: &ConnectOptions) -> Result<Client, Error> {
        let cert_dir = opts.cert_dir.clone().or_else(|| default_cert_dir(registry));
        let plain_http = !opts.tls_verify
            || (registry.is_loopback() && opts.loopback_http && cert_dir.is_none());
        let extra_root_certificates = match &cert_dir {
            Some(dir) => load_cert_dir(dir)?,
            None => Vec::new(),
        };
        let config = ClientConfig {
            protocol: if plain_http {
                ClientProtocol::HttpsExcept(vec![registry.registry().to_owned()])
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: !opts.tls_verify,
            extra_root_certificates,
            // One PUT per blob: a streamed body, no chunk buffering, fewest requests.
            use_monolithic_push: true,
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(300)),
            user_agent: USER_AGENT,
            ..Default::default()
        };
        let inner = OciClient::try_from(config).map_err(|e| Error::Transport {
            target: registry.registry().to_owned(),
            message: format!("cannot set up the HTTP client: {e}"),
        })?;
        let found = crate::auth::find(
            &crate::auth::Places::from_env(opts.authfile.as_deref()),
            registry,
        )?;
        tracing::debug!(
            registry = registry.registry(),
            "credentials: {}",
            found.source
        );
        Ok(Client {
            inner,
            auth: found.auth,
            auth_source: found.source,
            verify_timeout: opts.verify_timeout,
            retry_times: opts.retry_times,
            retry_delay: opts.retry_delay,
        })
    }

    fn oci_ref(r: &Reference) -> oci_client::Reference {
        let repo = r.repository();
        match r {
            Reference::Tagged(_, t) => oci_client::Reference::with_tag(
                repo.registry().to_owned(),
                repo.path().to_owned(),
                t.to_string(),
            ),
            Reference::Digested(_, d) => oci_client::Reference::with_digest(
                repo.registry().to_owned(),
                repo.path().to_owned(),
                d.to_string(),
            ),
        }
    }

    /// Runs `op`, trying again after transient failures (connection errors, timeouts, 408,
    /// 429, 500, 502, 503, 504) with exponential backoff and jitter, at most `retry_times`
    /// more times. Anything else, and the last failure, is returned as is.
    async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut delay = self.retry_delay;
        let mut attempt = 0;
        loop {
            match op().await {
                Err(e) if attempt < self.retry_times && e.is_transient() => {
                    attempt += 1;
                    let pause = jitter(delay);
                    tracing::warn!(
                        "{what}: {e}; retrying in {pause:?} (retry {attempt} of {})",
                        self.retry_times
                    );
                    tokio::time::sleep(pause).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
                Err(Error::Denied {
                    target,
                    registry,
                    detail,
                    ..
                }) => {
                    return Err(Error::Denied {
                        auth: format!("tried {}", self.auth_source),
                        target,
                        registry,
                        detail,
                    });
                }
                other => return other,
            }
        }
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

    /// Uploads one blob in one monolithic PUT, streaming it from a reader `open` returns
    /// (which verifies it as it goes). A failed upload restarts from a fresh session and a
    /// fresh reader.
    pub async fn push_blob<R>(
        &self,
        repo: &Repository,
        blob: &BlobRef,
        open: impl Fn() -> Result<VerifyingReader<R>, archive::Error>,
    ) -> Result<(), Error>
    where
        R: std::io::Read + Send + 'static,
    {
        self.retry(&format!("uploading blob {}", blob.digest), || async {
            let reader = open()?;
            self.push_blob_once(repo, blob, reader).await
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
    }

    async fn resolve_once(&self, r: &Reference) -> Result<Option<Digest>, Error> {
        let target = r.to_string();
        match self
            .inner
            .fetch_manifest_digest(&Self::oci_ref(r), &self.auth)
            .await
        {
            Ok(d) => parse_digest(&target, &d).map(Some),
            Err(e) => not_found_or(&target, r.repository(), e),
        }
    }

    async fn fetch_manifest_once(&self, r: &Reference) -> Result<Option<Fetched>, Error> {
        let target = r.to_string();
        match self
            .inner
            .pull_manifest_raw(&Self::oci_ref(r), &self.auth, MANIFEST_TYPES)
            .await
        {
            Ok((bytes, digest)) => Ok(Some(Fetched {
                bytes,
                digest: parse_digest(&target, &digest)?,
            })),
            Err(e) => not_found_or(&target, r.repository(), e),
        }
    }

    async fn fetch_platform_once(
        &self,
        repo: &Repository,
        config: &Digest,
    ) -> Result<Option<crate::platform::Platform>, Error> {
        let target = repo.digested(config);
        let mut out: Vec<u8> = Vec::new();
        self.inner
            .store_auth_if_needed(repo.registry(), &self.auth)
            .await;
        self.inner
            .pull_blob(&Self::oci_ref(&target), config.as_str(), &mut out)
            .await
            .map_err(|e| classify(&target.to_string(), repo, e))?;
        let json: serde_json::Value =
            serde_json::from_slice(&out).map_err(|e| Error::Protocol {
                target: target.to_string(),
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
        let target = repo.digested(digest);
        self.inner
            .blob_exists(&Self::oci_ref(&target), digest.as_str())
            .await
            .map_err(|e| classify(&target.to_string(), repo, e))
    }

    async fn push_blob_once<R>(
        &self,
        repo: &Repository,
        blob: &BlobRef,
        reader: VerifyingReader<R>,
    ) -> Result<(), Error>
    where
        R: std::io::Read + Send + 'static,
    {
        let target = repo.digested(&blob.digest);
        let mismatch: Arc<Mutex<Option<BlobMismatch>>> = Arc::default();
        let (tx, rx) = tokio::sync::mpsc::channel::<oci_client::errors::Result<Bytes>>(4);
        let seen = mismatch.clone();
        let producer = tokio::task::spawn_blocking(move || pump(reader, tx, seen));
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        self.inner
            .store_auth_if_needed(repo.registry(), &self.auth)
            .await;
        let pushed = self
            .inner
            .push_blob_stream(
                &Self::oci_ref(&target),
                stream,
                blob.digest.as_str(),
                Some(blob.size),
            )
            .await;
        // The producer ends once the body is consumed or dropped.
        let _ = producer.await;
        if let Some(BlobMismatch(kind)) = mismatch.lock().map(|mut m| m.take()).unwrap_or(None) {
            return Err(Error::Protocol {
                target: target.to_string(),
                message: format!("not uploaded: {kind}"),
            });
        }
        pushed
            .map(|_| ())
            .map_err(|e| classify(&target.to_string(), repo, e))
    }

    async fn put_manifest_once(
        &self,
        r: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), Error> {
        let target = r.to_string();
        let content_type = media_type.parse().map_err(|_| Error::Protocol {
            target: target.clone(),
            message: format!("media type {media_type:?} is not a valid header value"),
        })?;
        self.inner
            .store_auth_if_needed(r.repository().registry(), &self.auth)
            .await;
        self.inner
            .push_manifest_raw(&Self::oci_ref(r), bytes.to_vec(), content_type)
            .await
            .map(|_| ())
            .map_err(|e| classify(&target, r.repository(), e))
    }

    /// Reads `r` back until it resolves to `expected`, with backoff, for at most the
    /// configured verify timeout: a registry or a cache in front of it may answer the old
    /// digest or a 404 for a while after a write.
    pub async fn verify(&self, r: &Reference, expected: &Digest) -> Result<(), Error> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            let observed = self.resolve(r).await?;
            if observed.as_ref() == Some(expected) {
                return Ok(());
            }
            let waited = start.elapsed();
            if waited + delay > self.verify_timeout {
                return Err(Error::Verify {
                    target: r.to_string(),
                    expected: expected.clone(),
                    observed: observed
                        .map_or_else(|| "nothing (404)".to_owned(), |d| d.to_string()),
                    waited,
                });
            }
            tracing::info!(target = %r, "not yet showing the pushed digest; reading again in {delay:?}");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

/// Images that are already in a registry: reading one as an [`archive::Image`], and
/// bringing its blobs into another repository.
impl Client {
    /// The single-platform image `r` names, or `None` on 404. An index is an error: a source
    /// image must be one platform's manifest.
    pub async fn fetch_image(&self, r: &Reference) -> Result<Option<archive::Image>, Error> {
        let target = r.to_string();
        let protocol = |message: String| Error::Protocol {
            target: target.clone(),
            message,
        };
        let Some(fetched) = self.fetch_manifest(r).await? else {
            return Ok(None);
        };
        let config = match crate::index::parse_remote(&fetched.bytes, None) {
            Ok(crate::index::Parsed::Image { config }) => config,
            Ok(crate::index::Parsed::Index(_)) => {
                return Err(protocol(
                    "is an index, not one platform's image; name a per-arch tag or digest".into(),
                ));
            }
            Err(e) => return Err(protocol(e.to_string())),
        };
        let parsed: oci_spec::image::ImageManifest = serde_json::from_slice(&fetched.bytes)
            .map_err(|e| protocol(format!("image manifest is not valid: {e}")))?;
        let blob = |d: &oci_spec::image::Descriptor| -> Result<archive::BlobRef, Error> {
            Ok(archive::BlobRef {
                digest: Digest::parse(d.digest().as_ref())
                    .map_err(|e| protocol(format!("image manifest: {e}")))?,
                size: d.size(),
                media_type: d.media_type().to_string(),
            })
        };
        let config_ref = blob(parsed.config())?;
        let layers = parsed
            .layers()
            .iter()
            .map(blob)
            .collect::<Result<Vec<_>, _>>()?;
        let platform = self
            .fetch_platform(r.repository(), &config)
            .await?
            .filter(crate::platform::Platform::is_real)
            .ok_or_else(|| protocol("its image config names no os and architecture".into()))?;
        let media_type = parsed
            .media_type()
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_else(|| archive::OCI_MANIFEST.to_owned());
        Ok(Some(archive::Image {
            manifest: fetched.bytes.to_vec(),
            manifest_digest: fetched.digest,
            media_type,
            platform,
            config: config_ref,
            layers,
        }))
    }

    /// Asks the registry to link `digest` from `from` into `repo` without moving its bytes
    /// (`POST …/blobs/uploads/?mount=&from=`). `false` when the registry declines (it may
    /// not have the blob there, or not allow mounts); the caller then copies the blob.
    pub async fn mount_blob(
        &self,
        repo: &Repository,
        from: &Repository,
        digest: &Digest,
    ) -> Result<bool, Error> {
        let target = repo.digested(digest);
        let source = from.digested(digest);
        self.inner
            .store_auth_if_needed(repo.registry(), &self.auth)
            .await;
        match self
            .inner
            .mount_blob(
                &Self::oci_ref(&target),
                &Self::oci_ref(&source),
                digest.as_str(),
            )
            .await
        {
            Ok(()) => Ok(true),
            Err(e) => {
                let e = classify(&target.to_string(), repo, e);
                if matches!(e, Error::Denied { .. }) || e.is_transient() {
                    return Err(e);
                }
                tracing::debug!("mounting {digest} from {from} declined: {e}");
                Ok(false)
            }
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
        blob: &archive::BlobRef,
    ) -> Result<(), Error> {
        self.retry(&format!("copying blob {} from {from}", blob.digest), || {
            self.copy_blob_once(repo, source, from, blob)
        })
        .await
    }

    async fn copy_blob_once(
        &self,
        repo: &Repository,
        source: &Client,
        from: &Repository,
        blob: &archive::BlobRef,
    ) -> Result<(), Error> {
        use futures_util::StreamExt as _;
        use sha2::Digest as _;

        let src = from.digested(&blob.digest);
        source
            .inner
            .store_auth_if_needed(from.registry(), &source.auth)
            .await;
        let sized = source
            .inner
            .pull_blob_stream(&Self::oci_ref(&src), blob.digest.as_str())
            .await
            .map_err(|e| classify(&src.to_string(), from, e))?;
        let expected = blob.clone();
        let mismatch: Arc<Mutex<Option<String>>> = Arc::default();
        let seen = mismatch.clone();
        // Hash as the bytes pass; at the end, an error item instead of the end of the body
        // aborts the upload before the registry can commit a wrong blob.
        let state = (sized.stream, sha2::Sha256::new(), 0u64, false);
        let body = futures_util::stream::unfold(
            state,
            move |(mut inner, mut hasher, mut n, done)| {
                let expected = expected.clone();
                let seen = seen.clone();
                async move {
                    if done {
                        return None;
                    }
                    match inner.next().await {
                        Some(Ok(chunk)) => {
                            hasher.update(&chunk);
                            n += chunk.len() as u64;
                            Some((Ok(chunk), (inner, hasher, n, false)))
                        }
                        Some(Err(e)) => Some((
                            Err(OciDistributionError::IoError(e)),
                            (inner, hasher, n, true),
                        )),
                        None => {
                            let actual = Digest::from_sha256(hasher.clone());
                            if actual == expected.digest && n == expected.size {
                                return None;
                            }
                            let why = format!(
                                "source sent {n} bytes hashing to {actual}, expected {} bytes of {}",
                                expected.size, expected.digest
                            );
                            if let Ok(mut slot) = seen.lock() {
                                *slot = Some(why.clone());
                            }
                            Some((
                                Err(OciDistributionError::IoError(std::io::Error::other(why))),
                                (inner, hasher, n, true),
                            ))
                        }
                    }
                }
            },
        );
        let target = repo.digested(&blob.digest);
        self.inner
            .store_auth_if_needed(repo.registry(), &self.auth)
            .await;
        let pushed = self
            .inner
            .push_blob_stream(
                &Self::oci_ref(&target),
                body,
                blob.digest.as_str(),
                Some(blob.size),
            )
            .await;
        if let Some(why) = mismatch.lock().map(|mut m| m.take()).unwrap_or(None) {
            return Err(Error::Protocol {
                target: target.to_string(),
                message: format!("not copied: {why}"),
            });
        }
        pushed
            .map(|_| ())
            .map_err(|e| classify(&target.to_string(), repo, e))
    }
}

/// Reads a blob in chunks and feeds them to the request body. A digest or size mismatch is
/// recorded for the caller and also sent as an error, which aborts the upload before the
/// registry can commit it.
fn pump<R: std::io::Read>(
    mut reader: VerifyingReader<R>,
    tx: tokio::sync::mpsc::Sender<oci_client::errors::Result<Bytes>>,
    mismatch: Arc<Mutex<Option<BlobMismatch>>>,
) {
    loop {
        let mut buf = vec![0u8; STREAM_CHUNK];
        let item = match read_full(&mut reader, &mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                Ok(Bytes::from(buf))
            }
            Err(e) => {
                let text = e.to_string();
                if let Some(m) = e
                    .into_inner()
                    .and_then(|inner| inner.downcast::<BlobMismatch>().ok())
                    && let Ok(mut slot) = mismatch.lock()
                {
                    *slot = Some(*m);
                }
                Err(OciDistributionError::IoError(std::io::Error::other(text)))
            }
        };
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
    }
}

/// Fills `buf` as far as the reader allows, so chunks are full-sized except the last.
fn read_full(reader: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn parse_digest(target: &str, d: &str) -> Result<Digest, Error> {
    Digest::parse(d).map_err(|e| Error::Protocol {
        target: target.to_owned(),
        message: format!("registry reported an unusable digest: {e}"),
    })
}

/// The one place a 404 becomes "absent". oci-client reports it as a typed not-found error,
/// an OCI error envelope with an *_UNKNOWN code, or a plain status error.
fn not_found_or<T>(
    target: &str,
    repo: &Repository,
    e: OciDistributionError,
) -> Result<Option<T>, Error> {
    if is_not_found(&e) {
        Ok(None)
    } else {
        Err(classify(target, repo, e))
    }
}

fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => {
            !envelope.errors.is_empty()
                && envelope.errors.iter().all(|err| {
                    matches!(
                        err.code,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                    )
                })
        }
        _ => false,
    }
}

fn classify(target: &str, repo: &Repository, e: OciDistributionError) -> Error {
    let target = target.to_owned();
    match e {
        OciDistributionError::UnauthorizedError { .. } => Error::Denied {
            target,
            registry: repo.registry().to_owned(),
            detail: "HTTP 401".to_owned(),
            auth: check_credentials(repo),
        },
        OciDistributionError::AuthenticationFailure(_) => Error::Denied {
            target,
            registry: repo.registry().to_owned(),
            detail: "the token service refused the credentials".to_owned(),
            auth: check_credentials(repo),
        },
        OciDistributionError::ServerError { code, message, .. } if code == 401 || code == 403 => {
            Error::Denied {
                target,
                registry: repo.registry().to_owned(),
                detail: format!("HTTP {code} {}", first_line(&message)),
                auth: check_credentials(repo),
            }
        }
        OciDistributionError::ServerError { code, message, .. } => Error::Status {
            target,
            status: code,
            message: first_line(&message),
        },
        OciDistributionError::RegistryError { envelope, .. } => {
            let denied = envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Denied | OciErrorCode::Unauthorized));
            let message = envelope
                .errors
                .iter()
                .map(|e| format!("{:?}: {}", e.code, e.message))
                .collect::<Vec<_>>()
                .join("; ");
            if denied {
                Error::Denied {
                    target,
                    registry: repo.registry().to_owned(),
                    detail: message,
                    auth: check_credentials(repo),
                }
            } else {
                Error::Protocol { target, message }
            }
        }
        OciDistributionError::RequestError(e) => Error::Transport {
            target,
            message: describe_request_error(&e),
        },
        other => Error::Protocol {
            target,
            message: other.to_string(),
        },
    }
}

/// reqwest's Display stops at the outermost layer ("error sending request"); the cause
/// (connection refused, certificate invalid) is what a user needs.
fn describe_request_error(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    line.chars().take(200).collect()
}

fn check_credentials(repo: &Repository) -> String {
    format!("check the credentials for {}", repo.registry())
}

/// `/etc/containers/certs.d/<host:port>` or `/etc/docker/certs.d/<host:port>`, where the
/// container tools look for a registry's CA certificates, if one exists.
fn default_cert_dir(registry: &Repository) -> Option<Utf8PathBuf> {
    ["/etc/containers/certs.d", "/etc/docker/certs.d"]
        .iter()
        .map(|base| Utf8Path::new(base).join(registry.registry()))
        .find(|dir| dir.is_dir())
}

/// Every `*.crt` in `dir` (PEM CA certificates), as the container tools read a cert dir.
fn load_cert_dir(dir: &Utf8Path) -> Result<Vec<oci_client::client::Certificate>, Error> {
    let fail = |path: &Utf8Path, detail: String| Error::CertDir {
        path: path.to_owned(),
        detail,
    };
    let entries = dir
        .read_dir_utf8()
        .map_err(|e| fail(dir, format!("cannot read the certificate directory: {e}")))?;
    let mut certs = Vec::new();
    let mut names: Vec<Utf8PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .filter(|p| p.extension() == Some("crt"))
        .collect();
    names.sort();
    for path in names {
        let data = std::fs::read(&path).map_err(|e| fail(&path, e.to_string()))?;
        if !data.starts_with(b"-----BEGIN") {
            return Err(fail(&path, "not a PEM certificate".into()));
        }
        certs.push(oci_client::client::Certificate {
            encoding: oci_client::client::CertificateEncoding::Pem,
            data,
        });
    }
    if certs.is_empty() {
        return Err(fail(dir, "holds no *.crt certificate".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_client::errors::{OciEnvelope, OciError};

    fn envelope(code: OciErrorCode) -> OciDistributionError {
        OciDistributionError::RegistryError {
            envelope: OciEnvelope {
                errors: vec![OciError {
                    code,
                    message: String::new(),
                    detail: serde_json::Value::Null,
                }],
            },
            url: String::new(),
        }
    }

    fn server(code: u16) -> OciDistributionError {
        OciDistributionError::ServerError {
            code,
            url: String::new(),
            message: String::new(),
        }
    }

    #[test]
    fn every_shape_of_404_is_not_found() {
        assert!(is_not_found(
            &OciDistributionError::ImageManifestNotFoundError(String::new())
        ));
        assert!(is_not_found(&server(404)));
        assert!(is_not_found(&envelope(OciErrorCode::ManifestUnknown)));
        assert!(is_not_found(&envelope(OciErrorCode::NameUnknown)));
    }

    #[test]
    fn server_errors_are_never_not_found() {
        for code in [500, 502, 503, 429, 401, 403, 400] {
            assert!(!is_not_found(&server(code)), "{code}");
        }
        assert!(!is_not_found(&envelope(OciErrorCode::Denied)));
        assert!(!is_not_found(&envelope(OciErrorCode::ManifestInvalid)));
    }

    #[test]
    fn only_network_timeouts_throttling_and_5xx_are_transient() {
        let repo = Repository::parse("quay.io/a/b").unwrap();
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(classify("t", &repo, server(code)).is_transient(), "{code}");
        }
        for code in [400, 401, 403, 404, 405, 409, 501] {
            assert!(!classify("t", &repo, server(code)).is_transient(), "{code}");
        }
        let transport = Error::Transport {
            target: "t".into(),
            message: "connection reset".into(),
        };
        assert!(transport.is_transient());
        assert!(!classify("t", &repo, envelope(OciErrorCode::ManifestInvalid)).is_transient());
    }

    #[test]
    fn jitter_stays_within_half_to_one_and_a_half() {
        let d = Duration::from_millis(1000);
        let j = jitter(d);
        assert!(j >= d / 2 && j < d * 3 / 2, "{j:?}");
    }

    #[test]
    fn denied_is_its_own_error() {
        let repo = Repository::parse("quay.io/a/b").unwrap();
        assert!(matches!(
            classify("t", &repo, server(403)),
            Error::Denied { .. }
        ));
        assert!(matches!(
            classify("t", &repo, envelope(OciErrorCode::Denied)),
            Error::Denied { .. }
        ));
        assert!(matches!(
            classify("t", &repo, server(503)),
            Error::Status { status: 503, .. }
        ));
    }
}
