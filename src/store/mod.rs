//! The build store: where `--builds-url` says builds live (`file://`, `http(s)://`, `s3://`).
//!
//! Owns parsing that URL, opening the object store behind it (the `object_store` crate: SigV4
//! for S3, range GETs over HTTP), and the few operations reading a build needs: an object's
//! size, a small object whole (builds.json, meta.json) with its ETag, a byte range as a reader,
//! and a conditional write of a small object (S3 only; an HTTP(S) store is read-only). Every
//! byte read from a remote store is counted. Objects are named by their URL, so an error
//! names the object the way an error about a local file names the file.
//!
//! A `file://` URL is a local directory and is read with the local code paths; it never
//! reaches this module's remote side.

mod range;
mod record;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use camino::{Utf8Path, Utf8PathBuf};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt as _};

pub use range::{RangeReader, SeekReader};
pub use record::{WRITE_TRIES, write_record, write_record_with};

/// Where builds are read from.
#[derive(Debug, Clone)]
pub enum BuildsUrl {
    /// A local `builds/` directory (`file://`).
    Local(Utf8PathBuf),
    /// A remote store.
    Remote(Store),
}

/// How to reach a remote store: the connection flags of the command line.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Verify TLS certificates (`--tls-verify`); plain `http://` is allowed only to loopback
    /// or with verification off, as for registries.
    pub tls_verify: bool,
    /// `--aws-config-file`: an AWS shared credentials file, as coreos-assembler spells it.
    pub aws_config_file: Option<Utf8PathBuf>,
    /// `--s3-endpoint`: an S3-compatible endpoint (path-style addressing).
    pub endpoint: Option<String>,
    /// `--s3-region`.
    pub region: Option<String>,
    /// `--retry-times` and `--retry-delay`: store requests retry as registry requests do.
    pub retry_times: u32,
    pub retry_delay: std::time::Duration,
}

impl Default for StoreOptions {
    /// Verified TLS, no S3 settings, and the command line's default retries.
    fn default() -> StoreOptions {
        StoreOptions {
            tls_verify: true,
            aws_config_file: None,
            endpoint: None,
            region: None,
            retry_times: 5,
            retry_delay: std::time::Duration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--builds-url {url:?}: {why}")]
    Url { url: String, why: String },
    #[error("{url}: not found")]
    NotFound { url: String },
    #[error(
        "{url}: access denied (credentials from {source_of}); check that they may read this bucket"
    )]
    Denied { url: String, source_of: String },
    #[error("{url}: {message}")]
    Other { url: String, message: String },
    #[error("{url}: changed by another writer {tries} times in a row; giving up")]
    Conflict { url: String, tries: u32 },
    #[error(
        "{url}: an HTTP(S) build store is read-only and this run must record there; fetch the build's meta.json files into --workdir's builds/ (they are read and written there)"
    )]
    ReadOnly { url: String },
    #[error("--aws-config-file {path}: {why}")]
    AwsConfig { path: Utf8PathBuf, why: String },
}

/// A remote build store. Cheap to clone; clones share the byte counter.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// The URL as given, without a trailing slash: every object's name starts with it.
    base: String,
    /// Keys of objects under the URL start with this (an S3 URL's path).
    prefix: String,
    writable: bool,
    /// Where S3 credentials came from, to name in a 403 (never the secret itself).
    credentials: String,
    bytes_read: Arc<AtomicU64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.base).finish()
    }
}

impl BuildsUrl {
    /// Parses `--builds-url` and opens the store it names. Opening sends no request.
    pub fn open(url: &str, options: &StoreOptions) -> Result<BuildsUrl, Error> {
        let bad = |why: &str| Error::Url {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let base = url.trim_end_matches('/');
        if let Some(path) = base.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad("a file:// URL needs an absolute path (file:///...)"));
            }
            return Ok(BuildsUrl::Local(path.into()));
        }
        if base.starts_with("http://") || base.starts_with("https://") {
            return Ok(BuildsUrl::Remote(open_http(base, options)?));
        }
        if let Some(rest) = base.strip_prefix("s3://") {
            return Ok(BuildsUrl::Remote(s3_store(base, rest, options)?));
        }
        Err(bad(
            "expected s3://BUCKET/PATH, https://..., http://... or file:///...",
        ))
    }
}

fn open_http(base: &str, options: &StoreOptions) -> Result<Store, Error> {
    let loopback = is_loopback(base);
    if base.starts_with("http://") && options.tls_verify && !loopback {
        return Err(Error::Url {
            url: base.to_owned(),
            why: "plain http:// is only used for loopback or with --tls-verify=false".into(),
        });
    }
    let client = object_store::ClientOptions::new()
        .with_allow_http(true)
        .with_allow_invalid_certificates(!options.tls_verify);
    let inner = object_store::http::HttpBuilder::new()
        .with_url(base)
        .with_client_options(client)
        .with_retry(retry_config(options))
        .build()
        .map_err(|e| Error::Url {
            url: base.to_owned(),
            why: e.to_string(),
        })?;
    Ok(Store {
        inner: Arc::new(inner),
        base: base.to_owned(),
        prefix: String::new(),
        writable: false,
        credentials: "none (anonymous HTTP)".into(),
        bytes_read: Arc::default(),
    })
}

mod s3;
use s3::s3_store;

/// Whether an `http://` URL's host is a loopback address.
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Store requests retry as registry requests do: `--retry-times` times, on connection
/// errors, 408, 429 and 5xx, after `--retry-delay` doubling up to 30 s (with the crate's
/// jitter; it does not read `Retry-After`). A body cut off mid-way is read on from where it
/// stopped, by range, if the object's ETag has not changed. Permanent refusals (403, 404)
/// are not retried.
fn retry_config(options: &StoreOptions) -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: options.retry_times as usize,
        retry_timeout: std::time::Duration::from_secs(300),
        backoff: object_store::BackoffConfig {
            init_backoff: options.retry_delay,
            max_backoff: std::time::Duration::from_secs(30),
            base: 2.0,
        },
    }
}

impl Store {
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Whether records can be written back here (S3, by conditional write), or only read
    /// (HTTP(S)).
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Bytes of object bodies read from this store so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// The name of `rel` (a `/`-separated path under the URL), as errors show it.
    pub fn url_of(&self, rel: &str) -> Utf8PathBuf {
        format!("{}/{rel}", self.base).into()
    }

    /// The key of the object named `url` (one of [`Store::url_of`]'s names).
    fn key(&self, url: &Utf8Path) -> Result<Key, Error> {
        let rel = url
            .as_str()
            .strip_prefix(&self.base)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| Error::Other {
                url: url.to_string(),
                message: format!("is not under {}", self.base),
            })?;
        let full = format!("{}{rel}", self.prefix);
        Key::parse(&full).map_err(|e| Error::Other {
            url: url.to_string(),
            message: e.to_string(),
        })
    }

    fn error(&self, url: &Utf8Path, e: object_store::Error) -> Error {
        let url = url.to_string();
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound { url },
            e if denied(&e) => Error::Denied {
                url,
                source_of: self.credentials.clone(),
            },
            e => Error::Other {
                url,
                message: e.to_string(),
            },
        }
    }

    /// Runs one store request from a blocking thread.
    fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Handle::current().block_on(f)
    }

    /// The object's size, from a HEAD request (no body bytes).
    pub fn len(&self, url: &Utf8Path) -> Result<u64, Error> {
        let key = self.key(url)?;
        let meta = self
            .block_on(self.inner.head(&key))
            .map_err(|e| self.error(url, e))?;
        Ok(meta.size)
    }

    /// A small object whole, with its ETag; `None` when there is no such object.
    pub fn get_if_present(&self, url: &Utf8Path) -> Result<Option<(Bytes, Option<String>)>, Error> {
        let key = self.key(url)?;
        let got = self.block_on(async {
            let got = self.inner.get(&key).await?;
            let etag = got.meta.e_tag.clone();
            Ok::<_, object_store::Error>((got.bytes().await?, etag))
        });
        match got {
            Ok((bytes, etag)) => {
                self.count(bytes.len());
                Ok(Some((bytes, etag)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(url, e)),
        }
    }

    /// A small object whole, with its ETag.
    pub fn get(&self, url: &Utf8Path) -> Result<(Bytes, Option<String>), Error> {
        self.get_if_present(url)?.ok_or_else(|| Error::NotFound {
            url: url.to_string(),
        })
    }

    /// A reader over `len` bytes of the object from `offset`, fetched by one range request
    /// and streamed.
    pub fn range_reader(
        &self,
        url: &Utf8Path,
        offset: u64,
        len: u64,
    ) -> Result<RangeReader, Error> {
        Ok(RangeReader::new(
            self.clone(),
            url.to_owned(),
            self.key(url)?,
            offset,
            len,
        ))
    }

    /// Replaces the object with `bytes` if it still has `etag`; `false` when another writer
    /// changed it since (412), so the caller reads it again.
    pub fn put_if_match(&self, url: &Utf8Path, bytes: Vec<u8>, etag: &str) -> Result<bool, Error> {
        let key = self.key(url)?;
        let options = object_store::PutOptions {
            mode: object_store::PutMode::Update(object_store::UpdateVersion {
                e_tag: Some(etag.to_owned()),
                version: None,
            }),
            ..Default::default()
        };
        let put = self.block_on(self.inner.put_opts(&key, bytes.into(), options));
        match put {
            Ok(_) => Ok(true),
            Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.error(url, e)),
        }
    }

    fn count(&self, n: usize) {
        self.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Whether a store error is an authorisation refusal (401/403).
fn denied(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    )
}

#[cfg(test)]
mod tests;
