//! Which failures are worth trying again: the one decision the retry loop rests on.
//!
//! Owns the classification of HTTP statuses and of failures below HTTP (connection, name
//! resolution, TLS, timeouts) into transient and permanent. It does not retry anything
//! itself. A permanent failure (an untrusted certificate, a name that does not resolve, a
//! request that cannot be built) gives the same answer however often it is asked, so it
//! fails the run at once instead of after minutes of backoff.

use std::error::Error as StdError;
use std::io;

/// What kind of failure below HTTP a request met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// No answer in time.
    Timeout,
    /// Refused, reset, closed mid-exchange or unreachable: a registry restarting, a load
    /// balancer moving connections, a network hiccup.
    Connection,
    /// The resolver asked to try again later (`EAI_AGAIN`).
    DnsTemporary,
    /// The name does not resolve.
    DnsUnknown,
    /// The TLS handshake failed: an untrusted or invalid certificate, or a peer that does
    /// not speak TLS.
    Tls,
    /// The request could not be built or followed (a bad URL, a redirect loop), or the
    /// system refused to send it.
    Request,
    /// None of the above; retried, as a failure below HTTP usually passes.
    Other,
}

impl TransportKind {
    pub fn is_transient(self) -> bool {
        match self {
            TransportKind::Timeout
            | TransportKind::Connection
            | TransportKind::DnsTemporary
            | TransportKind::Other => true,
            TransportKind::DnsUnknown | TransportKind::Tls | TransportKind::Request => false,
        }
    }
}

/// Statuses registries use for "busy" or "down for a moment". Never a 4xx other than 408
/// and 429: the same request gets the same refusal.
pub fn status_is_transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Classifies a failed request by what its chain of causes holds.
pub fn classify(e: &reqwest::Error) -> TransportKind {
    if tls_cause(e).is_some() {
        return TransportKind::Tls;
    }
    if e.is_timeout() {
        return TransportKind::Timeout;
    }
    if e.is_builder() || e.is_redirect() {
        return TransportKind::Request;
    }
    if e.is_dns() {
        // The C library's words for EAI_AGAIN; every other resolver failure (no such
        // name, no address) repeats.
        let text: String = causes(e)
            .iter()
            .map(|cause| cause.to_string().to_ascii_lowercase())
            .collect();
        return if text.contains("temporary failure") || text.contains("try again") {
            TransportKind::DnsTemporary
        } else {
            TransportKind::DnsUnknown
        };
    }
    causes(e)
        .into_iter()
        .filter_map(|cause| cause.downcast_ref::<io::Error>())
        .map(|io| io_kind(io.kind()))
        .find(|kind| *kind != TransportKind::Other)
        .unwrap_or(TransportKind::Other)
}

/// The TLS error somewhere in `e`'s causes.
pub fn tls_cause(e: &reqwest::Error) -> Option<&rustls::Error> {
    causes(e)
        .into_iter()
        .find_map(|cause| cause.downcast_ref::<rustls::Error>())
}

/// `e` and everything below it. An `io::Error` passes over the error it wraps in
/// `source()` (and the connectors nest them), so each one is opened instead.
fn causes<'a>(e: &'a reqwest::Error) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out: Vec<&'a (dyn StdError + 'static)> = Vec::new();
    let mut next: Option<&'a (dyn StdError + 'static)> = Some(e);
    while let Some(cause) = next {
        out.push(cause);
        next = match cause.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => cause.source(),
        };
    }
    out
}

fn io_kind(kind: io::ErrorKind) -> TransportKind {
    use io::ErrorKind as K;
    match kind {
        K::TimedOut => TransportKind::Timeout,
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::BrokenPipe
        | K::UnexpectedEof
        | K::Interrupted
        | K::WouldBlock
        | K::NetworkUnreachable
        | K::HostUnreachable
        | K::NetworkDown
        | K::AddrNotAvailable
        | K::ResourceBusy => TransportKind::Connection,
        // Data that is not what the protocol allows, or a request the system will not send.
        K::InvalidData | K::InvalidInput | K::PermissionDenied | K::Unsupported => {
            TransportKind::Request
        }
        _ => TransportKind::Other,
    }
}

/// What to tell the user about a failed TLS handshake with `registry`.
pub fn explain_tls(e: &rustls::Error, registry: &str) -> String {
    use rustls::{CertificateError, Error as E};
    match e {
        E::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the certificate of {registry} is not signed by a CA reprise trusts ({e}); \
             for a private CA pass --cert-dir DIR holding its certificate (*.crt)"
        ),
        E::InvalidCertificate(_) => format!("the certificate of {registry} is refused ({e})"),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => format!(
            "{registry} does not answer in TLS ({e}); a registry that speaks plain HTTP \
             needs --tls-verify=false"
        ),
        other => format!("TLS with {registry} failed ({other})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_retried_are_timeouts_throttling_and_passing_server_trouble() {
        let table = [
            (200, false),
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (405, false),
            (408, true),
            (409, false),
            (413, false),
            (429, true),
            (500, true),
            (501, false),
            (502, true),
            (503, true),
            (504, true),
            (505, false),
        ];
        for (status, transient) in table {
            assert_eq!(status_is_transient(status), transient, "HTTP {status}");
        }
    }

    #[test]
    fn transport_kinds_retried_are_the_ones_that_pass() {
        let table = [
            (TransportKind::Timeout, true),
            (TransportKind::Connection, true),
            (TransportKind::DnsTemporary, true),
            (TransportKind::Other, true),
            (TransportKind::DnsUnknown, false),
            (TransportKind::Tls, false),
            (TransportKind::Request, false),
        ];
        for (kind, transient) in table {
            assert_eq!(kind.is_transient(), transient, "{kind:?}");
        }
    }

    #[test]
    fn io_failures_map_to_kinds() {
        use io::ErrorKind as K;
        let table = [
            (K::ConnectionRefused, TransportKind::Connection),
            (K::ConnectionReset, TransportKind::Connection),
            (K::BrokenPipe, TransportKind::Connection),
            (K::UnexpectedEof, TransportKind::Connection),
            (K::HostUnreachable, TransportKind::Connection),
            (K::TimedOut, TransportKind::Timeout),
            (K::InvalidData, TransportKind::Request),
            (K::PermissionDenied, TransportKind::Request),
            (K::OutOfMemory, TransportKind::Other),
        ];
        for (io, kind) in table {
            assert_eq!(io_kind(io), kind, "{io:?}");
        }
    }

    /// Real failures from loopback sockets, so the classification is checked against the
    /// error chains reqwest really builds, not ones written for the test.
    #[tokio::test]
    async fn real_failures_are_classified_from_their_causes() {
        use tokio::io::AsyncWriteExt as _;

        let http = reqwest::Client::builder().build().unwrap();

        // Nothing listens: refused, and worth trying again.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let e = http
            .get(format!("http://127.0.0.1:{port}/v2/"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(classify(&e), TransportKind::Connection, "{e:?}");

        // A plain-HTTP server asked for TLS: the handshake fails, and would again.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let _ = socket
                .write_all(b"HTTP/1.0 400 Bad Request\r\n\r\nnot TLS\n")
                .await;
        });
        let e = http
            .get(format!("https://{addr}/v2/"))
            .send()
            .await
            .unwrap_err();
        server.await.unwrap();
        assert_eq!(classify(&e), TransportKind::Tls, "{e:?}");
        let tls = tls_cause(&e).expect("a rustls error in the chain");
        let said = explain_tls(tls, &addr.to_string());
        assert!(said.contains("--tls-verify=false"), "{said}");
    }
}
