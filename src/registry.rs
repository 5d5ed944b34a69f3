//! The only place reprise talks HTTP to a registry.
//!
//! Owns connection settings (TLS, plain HTTP for loopback), credentials from an auth file,
//! the one normalisation of "not found", retries (with `Retry-After` honoured), bounded reads
//! of manifests and configs, streaming blob uploads straight from an archive, and
//! read-after-write verification. Everything that is not a success and not a 404 is an
//! [`Error`], never "absent".
//!
//! Requests are sent with `reqwest` directly, because a retry policy needs each response's
//! status and headers (`Retry-After`, `Content-Length`, `Docker-Content-Digest`). The token
//! exchange is in [`token`]; the resulting header is cached per set of scopes, marked
//! sensitive, and never logged. Which failures are retried is decided in [`transient`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use camino::{Utf8Path, Utf8PathBuf};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::archive::{self, BlobMismatch, BlobRef, VerifyingReader};
use crate::auth::Credentials;
use crate::index::MAX_REMOTE_MANIFEST;
use crate::reference::{Digest, Reference, Repository};

mod token;
mod transient;

use token::{Access, Challenge, Scopes};
pub use transient::TransportKind;

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

/// How much of an error body is read to explain a failure.
const MAX_ERROR_BODY: usize = 64 << 10;

/// A `Retry-After` longer than this is cut to it: a registry asking for an hour would
/// otherwise hold a release job silently.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

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
        /// What the registry asked for in `Retry-After`, if anything.
        retry_after: Option<Duration>,
    },
    #[error("{target}: {message}")]
    Transport {
        target: String,
        message: String,
        kind: TransportKind,
    },
    /// The TLS handshake failed; `detail` says why and what to do.
    #[error("{target}: {detail}")]
    Tls { target: String, detail: String },
    /// Plain HTTP reached a server that speaks only HTTPS.
    #[error("{target}: {registry} speaks HTTPS; {advice}")]
    SpeaksHttps {
        target: String,
        registry: String,
        advice: String,
    },
    #[error("{target}: {message}")]
    Protocol { target: String, message: String },
    #[error("{target} still resolves to {observed} after {waited:?}; expected {expected}")]
    Verify {
        target: String,
        expected: Digest,
        observed: String,
        waited: Duration,
    },
    #[error("{target}: the token service of {registry} issued no token (down or throttling)")]
    Token { target: String, registry: String },
    #[error("{target}: the registry asked for credentials again during the upload")]
    Reauthenticate { target: String },
    #[error(
        "{target}: refusing to send credentials for {registry} over plain HTTP; reach it over HTTPS (leave out --tls-verify=false; --cert-dir trusts a private CA)"
    )]
    PlainHttpCredentials { target: String, registry: String },
    #[error(
        "{target}: the registry sends credentials to a token service over plain HTTP ({realm}); refusing"
    )]
    PlainHttpRealm { target: String, realm: String },
    #[error(transparent)]
    Auth(#[from] crate::auth::Error),
    #[error("{path}: {detail}")]
    CertDir { path: Utf8PathBuf, detail: String },
    #[error(transparent)]
    Archive(#[from] archive::Error),
}

impl Error {
    /// Whether trying again may help: a passing network failure, a timeout, or a status
    /// registries use for "busy" or "down for a moment" (see [`transient`]).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Token { .. } | Error::Reauthenticate { .. } => true,
            Error::Status { status, .. } => transient::status_is_transient(*status),
            Error::Transport { kind, .. } => kind.is_transient(),
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Status { retry_after, .. } => *retry_after,
            _ => None,
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

/// The pause before the next try: the backoff, but never less than what the registry asked
/// for with `Retry-After` (up to [`MAX_RETRY_AFTER`]).
fn pause_before_retry(backoff: Duration, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(asked) => backoff.max(asked.min(MAX_RETRY_AFTER)),
        None => backoff,
    }
}

/// `Retry-After` in its delta-seconds form. The HTTP-date form is rare from registries and
/// falls back to the backoff.
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
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
    /// How many blobs are checked for or moved at once.
    pub jobs: usize,
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
            jobs: 4,
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
}

impl Client {
    /// How many blobs callers should check for or move at once.
    pub fn jobs(&self) -> usize {
        self.jobs
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
        })
    }

    /// Runs `op`, trying again after transient failures (connection errors, timeouts, 408,
    /// 429, 500, 502, 503, 504) with exponential backoff and jitter, waiting at least as long
    /// as a `Retry-After` asks, at most `retry_times` more times. Anything else, and the last
    /// failure, is returned as is.
    async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut delay = self.retry_delay;
        let mut attempt = 0;
        loop {
            match op().await {
                // A token ran out and a fresh one is in hand: no reason to wait.
                Err(e @ Error::Reauthenticate { .. }) if attempt < self.retry_times => {
                    attempt += 1;
                    tracing::info!("{what}: {e}; trying again with a fresh token");
                }
                Err(e) if attempt < self.retry_times && e.is_transient() => {
                    attempt += 1;
                    let pause = pause_before_retry(jitter(delay), e.retry_after());
                    let asked = match e.retry_after() {
                        Some(d) => format!(" (Retry-After: {}s)", d.as_secs()),
                        None => String::new(),
                    };
                    tracing::warn!(
                        "{what}: {e}; retrying in {pause:?}{asked} (retry {attempt} of {})",
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

    fn url(&self, repo: &Repository, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.base, repo.path())
    }

    fn manifest_url(&self, r: &Reference) -> String {
        self.url(r.repository(), &format!("manifests/{}", r.target()))
    }

    /// The `Authorization` header for a request needing `scopes` on `repo`'s registry: the
    /// cached one, or a fresh one when the registry refused `refused` (what was last sent).
    /// Nothing is sent until the registry has said how it wants to be authenticated.
    async fn authorization(
        &self,
        repo: &Repository,
        scopes: &Scopes,
        refused: Option<Option<&HeaderValue>>,
        target: &str,
    ) -> Result<Option<HeaderValue>, Error> {
        let usable = |cached: Option<&Option<HeaderValue>>| match (cached, refused) {
            (Some(value), None) => Some(value.clone()),
            // Someone else already replaced the refused one.
            (Some(value), Some(refused)) if value.as_ref() != refused => Some(value.clone()),
            _ => None,
        };
        if let Some(value) = usable(self.tokens.lock().await.get(scopes)) {
            return Ok(value);
        }
        // Parallel requests that need the same token wait for one fetch; the cache itself
        // stays free for requests that have theirs.
        let _one_fetch = self.fetching.lock().await;
        if let Some(value) = usable(self.tokens.lock().await.get(scopes)) {
            return Ok(value);
        }
        let challenge = self.challenge(repo, target).await?;
        let value = match &challenge {
            // Not cached: the first 401 says what to send, for every scope.
            Challenge::Unknown => return Ok(None),
            Challenge::Open => None,
            Challenge::Basic => match &self.credentials {
                Credentials::Anonymous => None,
                Credentials::Basic { user, password } => {
                    self.refuse_plain_http(repo)?;
                    Some(basic_authorization(user, password, target, repo)?)
                }
            },
            Challenge::Bearer(realm) => {
                if !self.credentials.is_anonymous() {
                    self.refuse_plain_http(repo)?;
                }
                let token =
                    token::fetch(&self.http, realm, scopes, &self.credentials, target, repo)
                        .await?;
                Some(token)
            }
        };
        self.tokens
            .lock()
            .await
            .insert(scopes.clone(), value.clone());
        Ok(value)
    }

    /// How the registry asks to be authenticated. A client with credentials asks `/v2/`
    /// once, so they are used from the first request on; an anonymous one learns it from
    /// its first 401 instead. Credentials for a registry beyond this machine reached over
    /// plain HTTP stop the run before anything is sent.
    async fn challenge(&self, repo: &Repository, target: &str) -> Result<Challenge, Error> {
        let mut known = self.challenge.lock().await;
        if *known != Challenge::Unknown || self.credentials.is_anonymous() {
            return Ok(known.clone());
        }
        self.refuse_plain_http(repo)?;
        let response = self
            .http
            .get(format!("{}/v2/", self.base))
            .send()
            .await
            .map_err(|e| transport(target, &e))?;
        // Anything but a challenge: send nothing until a request's own 401 says what to send
        // (and leave any other failure for the request itself to run into and report).
        *known = match response.status() {
            StatusCode::UNAUTHORIZED => {
                token::challenge(response.headers()).unwrap_or(Challenge::Open)
            }
            _ => Challenge::Open,
        };
        Ok(known.clone())
    }

    /// Credentials, or tokens got with them, never go over plain HTTP beyond this machine.
    fn refuse_plain_http(&self, repo: &Repository) -> Result<(), Error> {
        if self.base.starts_with("http://") && !repo.is_loopback() {
            return Err(Error::PlainHttpCredentials {
                target: repo.to_string(),
                registry: repo.registry().to_owned(),
            });
        }
        Ok(())
    }

    /// Sends one request built by `build`; on a 401 learns the registry's challenge, gets a
    /// fresh token and sends it once more. Returns whatever the registry answered, success or
    /// not; only the network failing, or a registry that speaks only HTTPS, is an error here.
    async fn send(
        &self,
        repo: &Repository,
        scopes: &Scopes,
        target: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let mut refused: Option<Option<HeaderValue>> = None;
        loop {
            let mut request = build(&self.http);
            let sent = self
                .authorization(repo, scopes, refused.as_ref().map(Option::as_ref), target)
                .await?;
            if let Some(value) = &sent {
                request = request.header(header::AUTHORIZATION, value.clone());
            }
            let response = request.send().await.map_err(|e| transport(target, &e))?;
            if response.status() == StatusCode::UNAUTHORIZED && refused.is_none() {
                if let Some(learned) = token::challenge(response.headers()) {
                    *self.challenge.lock().await = learned;
                }
                refused = Some(sent);
                continue;
            }
            if response.status() == StatusCode::BAD_REQUEST && self.speaks_https().await {
                return Err(Error::SpeaksHttps {
                    target: target.to_owned(),
                    registry: repo.registry().to_owned(),
                    advice: if self.tls_verify {
                        "pass --tls-verify=true, or --cert-dir DIR for a private CA".to_owned()
                    } else {
                        "reprise speaks HTTPS only with certificates verified: leave out \
                         --tls-verify=false (and pass --cert-dir DIR for a private CA)"
                            .to_owned()
                    },
                });
            }
            return Ok(response);
        }
    }

    /// Whether a registry spoken to in plain HTTP answered a 400 because it speaks only
    /// HTTPS. A HEAD's 400 has no body, so the server's own words are read from a GET of
    /// `/v2/`: Go's HTTP server says "Client sent an HTTP request to an HTTPS server.",
    /// nginx "The plain HTTP request was sent to HTTPS port".
    async fn speaks_https(&self) -> bool {
        if !self.base.starts_with("http://") {
            return false;
        }
        let Ok(mut response) = self.http.get(format!("{}/v2/", self.base)).send().await else {
            return false;
        };
        let mut body = Vec::new();
        while body.len() < 4096 {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&body);
        text.contains("HTTP request to an HTTPS server")
            || text.contains("plain HTTP request was sent to HTTPS port")
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

    async fn push_blob_once<R>(
        &self,
        repo: &Repository,
        blob: &BlobRef,
        reader: VerifyingReader<R>,
    ) -> Result<(), Error>
    where
        R: std::io::Read + Send + 'static,
    {
        let target = repo.digested(&blob.digest).to_string();
        let mismatch: Arc<Mutex<Option<BlobMismatch>>> = Arc::default();
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
        if let Some(BlobMismatch(kind)) = mismatch.lock().map(|mut m| m.take()).unwrap_or(None) {
            return Err(Error::Protocol {
                target,
                message: format!("not uploaded: {kind}"),
            });
        }
        pushed
    }

    /// Opens an upload session and sends `body` as the whole blob in one PUT. What keeps a
    /// wrong blob out of the registry is the `?digest=` the registry checks before it
    /// commits (and the archive check before any upload): a body whose error comes only at
    /// its end may already have been sent in full.
    async fn upload(
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
            return Err(status_error(target, repo, response).await);
        }
        Ok(())
    }

    async fn put_manifest_once(
        &self,
        r: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), Error> {
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
        Ok(())
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

    fn mount_refused(&self, repo: &Repository, from: &Repository) -> bool {
        let key = (repo.path().to_owned(), from.path().to_owned());
        self.refused_mounts
            .lock()
            .is_ok_and(|refused| refused.contains(&key))
    }

    /// Remembers that blobs of `from` cannot be mounted into `repo`, saying so once.
    fn refuse_mounts(&self, repo: &Repository, from: &Repository, why: &str) {
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

    async fn mount_blob_once(
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

        let src = from.digested(&blob.digest).to_string();
        let url = source.url(from, &format!("blobs/{}", blob.digest));
        let response = source
            .send(from, &Scopes::new(from, Access::Pull), &src, |http| {
                http.get(&url)
            })
            .await?;
        if response.status() != StatusCode::OK {
            return Err(status_error(&src, from, response).await);
        }
        let expected = blob.clone();
        let mismatch: Arc<Mutex<Option<String>>> = Arc::default();
        let seen = mismatch.clone();
        // Hash as the bytes pass; at the end, an error item instead of the end of the body
        // aborts the upload before the registry can commit a wrong blob.
        let state = (
            response.bytes_stream().boxed(),
            sha2::Sha256::new(),
            0u64,
            false,
        );
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
                        Some(Err(e)) => {
                            Some((Err(std::io::Error::other(e)), (inner, hasher, n, true)))
                        }
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
                            Some((Err(std::io::Error::other(why)), (inner, hasher, n, true)))
                        }
                    }
                }
            },
        );
        let target = repo.digested(&blob.digest).to_string();
        let pushed = self
            .upload(repo, blob, &target, reqwest::Body::wrap_stream(body))
            .await;
        if let Some(why) = mismatch.lock().map(|mut m| m.take()).unwrap_or(None) {
            return Err(Error::Protocol {
                target,
                message: format!("not copied: {why}"),
            });
        }
        pushed
    }
}

/// Reads a blob in chunks and feeds them to the request body. A digest or size mismatch is
/// recorded for the caller and also sent as an error, which aborts the upload before the
/// registry can commit it.
fn pump<R: std::io::Read>(
    mut reader: VerifyingReader<R>,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
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
                Err(std::io::Error::other(text))
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

/// The host requests go to; Docker Hub's API lives on another name than its references use.
fn api_host(repo: &Repository) -> &str {
    match repo.registry() {
        "docker.io" => "index.docker.io",
        other => other,
    }
}

/// A request that failed below HTTP. The URL is left out: after a redirect it may be a
/// presigned storage URL whose query string grants access, and `target` already names what
/// failed.
fn transport(target: &str, e: &reqwest::Error) -> Error {
    if let Some(tls) = transient::tls_cause(e) {
        let host = e.url().map(url_host).unwrap_or_default();
        return Error::Tls {
            target: target.to_owned(),
            detail: transient::explain_tls(tls, &host),
        };
    }
    let kind = transient::classify(e);
    let mut message = describe_request_error(e);
    if let Some(url) = e.url() {
        message = message
            .replace(&format!(" for url ({url})"), "")
            .replace(url.as_str(), "<url>");
        message.push_str(&format!(" (over {})", url.scheme().to_uppercase()));
    }
    Error::Transport {
        target: target.to_owned(),
        message,
        kind,
    }
}

/// `host[:port]` of a URL, as users name registries.
fn url_host(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => String::new(),
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

/// Turns a response that is neither success nor 404 into an error, keeping what the
/// registry said and how long it asked to wait.
async fn status_error(target: &str, repo: &Repository, mut response: reqwest::Response) -> Error {
    let status = response.status().as_u16();
    let retry_after = parse_retry_after(response.headers());
    let short_scope = token::bearer(response.headers())
        .filter(|b| b.error.as_deref() == Some("insufficient_scope"))
        .and_then(|b| b.scope);
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    match classify_status(target, repo, status, retry_after, &body) {
        // The registry's challenge names what the token lacked: say that, not just "401".
        Error::Denied {
            target,
            registry,
            auth,
            ..
        } if let Some(scope) = short_scope => Error::Denied {
            target,
            registry,
            detail: format!("HTTP {status}: the token does not grant {scope}"),
            auth,
        },
        other => other,
    }
}

/// OCI error codes that mean "who you are is not allowed", whatever the status says.
const DENIED_CODES: &[&str] = &["DENIED", "UNAUTHORIZED"];

fn classify_status(
    target: &str,
    repo: &Repository,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Error {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: String,
        #[serde(default)]
        message: String,
    }
    let (codes, message) = match serde_json::from_slice::<Envelope>(body) {
        Ok(env) if !env.errors.is_empty() => (
            env.errors.iter().map(|e| e.code.clone()).collect(),
            env.errors
                .iter()
                .map(|e| format!("{}: {}", e.code, first_line(&e.message)))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => (
            Vec::<String>::new(),
            first_line(&String::from_utf8_lossy(body)),
        ),
    };
    let denied = codes.iter().any(|c| DENIED_CODES.contains(&c.as_str()));
    if status == 401 || status == 403 || denied {
        return Error::Denied {
            target: target.to_owned(),
            registry: repo.registry().to_owned(),
            detail: format!("HTTP {status} {message}").trim().to_owned(),
            auth: check_credentials(repo),
        };
    }
    Error::Status {
        target: target.to_owned(),
        status,
        message,
        retry_after,
    }
}

/// `Basic` credentials for a registry that asks for them, marked sensitive.
fn basic_authorization(
    user: &str,
    password: &str,
    target: &str,
    repo: &Repository,
) -> Result<HeaderValue, Error> {
    use base64::Engine as _;
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {pair}")).map_err(|_| Error::Denied {
        target: target.to_owned(),
        registry: repo.registry().to_owned(),
        detail: "the credentials do not fit in an HTTP header".to_owned(),
        auth: check_credentials(repo),
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Where the registry wants the blob: its `Location`, relative or absolute.
fn upload_location(
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
fn load_cert_dir(dir: &Utf8Path) -> Result<Vec<Vec<u8>>, Error> {
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
        certs.push(data);
    }
    if certs.is_empty() {
        return Err(fail(dir, "holds no *.crt certificate".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> Repository {
        Repository::parse("quay.io/a/b").unwrap()
    }

    fn status(code: u16, body: &str) -> Error {
        classify_status("t", &repo(), code, None, body.as_bytes())
    }

    #[test]
    fn only_network_timeouts_throttling_and_5xx_are_transient() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(status(code, "").is_transient(), "{code}");
        }
        for code in [400, 401, 403, 404, 405, 409, 501] {
            assert!(!status(code, "").is_transient(), "{code}");
        }
        let transport = Error::Transport {
            target: "t".into(),
            message: "connection reset".into(),
            kind: TransportKind::Connection,
        };
        assert!(transport.is_transient());
        let invalid = r#"{"errors":[{"code":"MANIFEST_INVALID","message":"bad"}]}"#;
        assert!(!status(400, invalid).is_transient());
    }

    #[test]
    fn throttling_with_an_oci_error_body_is_still_retried() {
        let body = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#;
        let e = status(429, body);
        assert!(e.is_transient(), "{e:?}");
        assert!(e.to_string().contains("TOOMANYREQUESTS: slow down"), "{e}");
    }

    #[test]
    fn retry_after_sets_the_floor_of_the_pause_up_to_a_cap() {
        let backoff = Duration::from_millis(50);
        assert_eq!(pause_before_retry(backoff, None), backoff);
        assert_eq!(
            pause_before_retry(backoff, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        assert_eq!(
            pause_before_retry(Duration::from_secs(8), Some(Duration::from_secs(1))),
            Duration::from_secs(8)
        );
        assert_eq!(
            pause_before_retry(backoff, Some(Duration::from_secs(86400))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(parse_retry_after(&h), None);
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(parse_retry_after(&h), None);
    }

    #[test]
    fn jitter_stays_within_half_to_one_and_a_half() {
        let d = Duration::from_millis(1000);
        let j = jitter(d);
        assert!(j >= d / 2 && j < d * 3 / 2, "{j:?}");
    }

    #[test]
    fn denied_is_its_own_error() {
        assert!(matches!(status(403, ""), Error::Denied { .. }));
        assert!(matches!(status(401, ""), Error::Denied { .. }));
        let body = r#"{"errors":[{"code":"DENIED","message":"no"}]}"#;
        assert!(matches!(status(400, body), Error::Denied { .. }));
        assert!(matches!(status(503, ""), Error::Status { status: 503, .. }));
    }

    #[test]
    fn https_unless_loopback_or_tls_verify_is_off() {
        let base = |repo: &str, tls_verify: bool| {
            let opts = ConnectOptions {
                tls_verify,
                ..ConnectOptions::default()
            };
            let repo = Repository::parse(repo).unwrap();
            Client::new(&repo, &opts).unwrap().base
        };
        assert_eq!(base("quay.io/a/b", true), "https://quay.io");
        assert_eq!(base("quay.io/a/b", false), "http://quay.io");
        assert_eq!(base("127.0.0.1:5000/a", true), "http://127.0.0.1:5000");
        assert_eq!(base("localhost:5000/a", true), "http://localhost:5000");
        assert_eq!(base("[::1]:5000/a", true), "http://[::1]:5000");
        assert_eq!(base("fedora/fedora", true), "https://index.docker.io");
    }

    #[test]
    fn a_digest_reference_must_come_back_as_that_digest() {
        let d = Digest::of(b"a");
        let other = Digest::of(b"b");
        let r = repo().digested(&d);
        assert!(check_reference_digest("t", &r, &d).is_ok());
        assert!(check_reference_digest("t", &r, &other).is_err());
    }
}
