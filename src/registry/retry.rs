//! Trying again: which pause comes before a retry (backoff with jitter, at least what a
//! `Retry-After` asks, up to a cap), and the retry loop every registry operation runs in.

use super::*;

/// A `Retry-After` longer than this is cut to it: a registry asking for an hour would
/// otherwise hold a release job silently.
pub(super) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How many times one operation is tried again with a fresh token.
pub(super) const MAX_REAUTHENTICATIONS: u32 = 10;

/// `delay` scaled by a factor in [0.5, 1.5), so parallel clients do not retry in step.
pub(super) fn jitter(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    delay.mul_f64(0.5 + f64::from(nanos % 1000) / 1000.0)
}

/// The pause before the next try: the backoff, but never less than what the registry asked
/// for with `Retry-After` (up to [`MAX_RETRY_AFTER`]).
pub(super) fn pause_before_retry(backoff: Duration, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(asked) => backoff.max(asked.min(MAX_RETRY_AFTER)),
        None => backoff,
    }
}

/// `Retry-After` in its delta-seconds form. The HTTP-date form is rare from registries and
/// falls back to the backoff.
pub(super) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

impl Client {
    /// Runs `op`, trying again after transient failures (connection errors, timeouts, 408,
    /// 429, 500, 502, 503, 504) with exponential backoff and jitter, waiting at least as long
    /// as a `Retry-After` asks, at most `retry_times` more times. Anything else, and the last
    /// failure, is returned as is.
    pub(super) async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut delay = self.retry_delay;
        let mut attempt = 0;
        let mut reauthentications = 0;
        loop {
            match op().await {
                // A token ran out and a fresh one is in hand: no reason to wait. Requests in
                // flight together share a token, so one may run out under several of them
                // at once; these have a budget of their own.
                Err(e @ Error::Reauthenticate { .. })
                    if reauthentications < MAX_REAUTHENTICATIONS =>
                {
                    reauthentications += 1;
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
                Err(e) => return Err(self.attribute(e)),
                ok => return ok,
            }
        }
    }

    /// Names where this client's credentials came from in a denial that does not yet say
    /// whose credentials were tried. A denial from another client (the source of a copy) is
    /// attributed by that client first, so it keeps naming the registry that refused and
    /// the credentials sent there.
    pub(super) fn attribute(&self, e: Error) -> Error {
        match e {
            Error::Denied {
                target,
                registry,
                detail,
                auth,
            } if auth == check_credentials_for(&registry) => Error::Denied {
                auth: format!("tried {}", self.auth_source),
                target,
                registry,
                detail,
            },
            other => other,
        }
    }
}
