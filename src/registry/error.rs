//! What can go wrong talking to a registry, and the one place that turns a response or a
//! transport failure into an [`Error`]: 404 is never an error here (callers get `None`),
//! a denial names the credentials tried, and everything else keeps enough to decide on a
//! retry ([`super::transient`] decides which).

use super::*;

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
    /// A manifest refused because a blob it names is not in the repository, as far as the
    /// registry could tell (`MANIFEST_BLOB_UNKNOWN`): missing, or being linked by another
    /// writer at that moment.
    #[error("{target}: registry answered HTTP {status}: {message}")]
    BlobUnknown {
        target: String,
        status: u16,
        message: String,
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
    #[error("{target} was deleted but still resolves to {observed} after {waited:?}")]
    StillPresent {
        target: String,
        observed: String,
        waited: Duration,
    },
    #[error(
        "{target}: {registry} does not allow deletes (HTTP 405); turn on storage.delete.enabled in its config, or delete by hand"
    )]
    DeletesDisabled { target: String, registry: String },
    /// Another writer changed a tag while this run was publishing to it.
    /// `found: None`: the tag was deleted.
    #[error(
        "{target}: another writer put {} there while this run was publishing",
        found_text(found.as_ref())
    )]
    Moved {
        target: String,
        found: Option<Digest>,
    },
    #[error("{target}: the token service of {registry} issued no token (down or throttling)")]
    Token { target: String, registry: String },
    /// The registry refused a blob's bytes: they do not match its digest (or size).
    #[error("{target}: the registry refused the blob's bytes: they do not match {digest}")]
    DigestRefused { target: String, digest: Digest },
    /// A blob's bytes were not what its descriptor says; nothing was committed.
    #[error("{target}: not uploaded: {mismatch}")]
    Mismatch { target: String, mismatch: Mismatch },
    /// The registry does not take blobs in chunks (it refused the first one outright).
    #[error("{target}: the registry refuses chunked uploads: {message}")]
    ChunksRefused { target: String, message: String },
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
    /// The blob's bytes could not be opened where they live (an archive, a layout).
    #[error(transparent)]
    Source(Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// Whether trying again may help: a passing network failure, a timeout, or a status
    /// registries use for "busy" or "down for a moment" (see `transient`).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Token { .. } | Error::Reauthenticate { .. } => true,
            Error::Status { status, .. } => transient::status_is_transient(*status),
            Error::Transport { kind, .. } => kind.is_transient(),
            _ => false,
        }
    }

    pub(super) fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A tag's digest as a message names it; one that vanished holds nothing.
pub fn found_text(found: Option<&Digest>) -> String {
    found.map_or_else(|| "nothing (deleted)".to_owned(), ToString::to_string)
}

/// A request that failed below HTTP. The URL is left out: after a redirect it may be a
/// presigned storage URL whose query string grants access, and `target` already names what
/// failed.
pub(super) fn transport(target: &str, e: &reqwest::Error) -> Error {
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
pub(super) fn url_host(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => String::new(),
    }
}

/// Turns a response that is neither success nor 404 into an error, keeping what the
/// registry said and how long it asked to wait.
pub(super) async fn status_error(
    target: &str,
    repo: &Repository,
    mut response: reqwest::Response,
) -> Error {
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
pub(super) const DENIED_CODES: &[&str] = &["DENIED", "UNAUTHORIZED"];

pub(super) fn classify_status(
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
    if codes.iter().any(|c| c == "MANIFEST_BLOB_UNKNOWN") {
        return Error::BlobUnknown {
            target: target.to_owned(),
            status,
            message,
        };
    }
    Error::Status {
        target: target.to_owned(),
        status,
        message,
        retry_after,
    }
}

/// reqwest's Display stops at the outermost layer ("error sending request"); the cause
/// (connection refused, certificate invalid) is what a user needs.
pub(super) fn describe_request_error(e: &dyn std::error::Error) -> String {
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

pub(super) fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    line.chars().take(200).collect()
}

pub(super) fn check_credentials(repo: &Repository) -> String {
    check_credentials_for(repo.registry())
}

/// What a denial says before the client that got it names the credentials it tried.
pub(super) fn check_credentials_for(registry: &str) -> String {
    format!("check the credentials for {registry}")
}
