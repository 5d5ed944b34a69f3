//! Tests for the test support itself: the real registry answers, and the proxy in front of it
//! forwards, records and injects faults the way the integration tests rely on.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::support::proxy::{Action, Fault, Match, Proxy, Recorded};
use crate::support::registry::Registry;
use reprise_fixtures::sha256_digest;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_TIMEOUT: Duration = Duration::from_secs(10);
const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The registry accepts an index with no manifests, so no blobs are needed to create a tag.
const EMPTY_INDEX: &str =
    r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }
}

/// A blocking HTTP/1.1 client for plain `#[test]` functions.
struct Http {
    runtime: tokio::runtime::Runtime,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    fn new() -> Http {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime");
        let client = Client::builder(TokioExecutor::new()).build_http();
        Http { runtime, client }
    }

    fn send(&self, method: Method, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body)))
            .expect("request");
        self.runtime.block_on(async {
            let exchange = async {
                let response = self.client.request(request).await.expect("response");
                let (parts, body) = response.into_parts();
                let body = body.collect().await.expect("response body").to_bytes();
                Reply {
                    status: parts.status.as_u16(),
                    headers: parts.headers,
                    body,
                }
            };
            tokio::time::timeout(REQUEST_TIMEOUT, exchange)
                .await
                .unwrap_or_else(|_| panic!("no answer to {url} within {REQUEST_TIMEOUT:?}"))
        })
    }

    fn get(&self, url: &str) -> Reply {
        self.send(Method::GET, url, &[], b"")
    }
}

fn start() -> (Registry, Proxy, Http) {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.addr());
    (registry, proxy, Http::new())
}

fn recorded(method: &str, path: &str, status: u16) -> Recorded {
    Recorded {
        method: method.to_string(),
        path: path.to_string(),
        status,
    }
}

/// Starts an upload through the proxy and returns its Location, checked to point at the proxy.
fn start_upload(proxy: &Proxy, http: &Http, repo: &str) -> String {
    let url = format!("http://{}/v2/{repo}/blobs/uploads/", proxy.host());
    let reply = http.send(Method::POST, &url, &[], b"");
    assert_eq!(reply.status, 202, "upload start: {:?}", reply.body);
    let location = reply
        .header("location")
        .expect("Location header")
        .to_string();
    let prefix = format!("http://{}/v2/{repo}/blobs/uploads/", proxy.host());
    assert!(
        location.starts_with(&prefix),
        "Location {location} must point back at the proxy"
    );
    location
}

#[test]
fn registry_answers_v2_through_proxy() {
    let (registry, proxy, http) = start();

    let reply = http.get(&format!("http://{}/v2/", proxy.host()));

    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    assert_eq!(proxy.requests(), vec![recorded("GET", "/v2/", 200)]);
    let seen = registry.wait_for_log(r#""GET /v2/ HTTP/1.1" 200"#, 1, LOG_TIMEOUT);
    assert_eq!(
        seen.len(),
        1,
        "registry access log: {:?}",
        registry.log_lines()
    );
}

#[test]
fn blob_upload_goes_through_proxy() {
    let (registry, proxy, http) = start();
    let blob = b"hello from the reprise smoke test\n";
    let digest = sha256_digest(blob);

    let location = start_upload(&proxy, &http, "smoke");
    let put = http.send(
        Method::PUT,
        &format!("{location}&digest={digest}"),
        &[("content-type", "application/octet-stream")],
        blob,
    );
    assert_eq!(put.status, 201, "upload finish: {:?}", put.body);
    let blob_url = format!("http://{}/v2/smoke/blobs/{digest}", proxy.host());
    let head = http.send(Method::HEAD, &blob_url, &[], b"");

    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(&*blob.len().to_string())
    );
    assert_eq!(head.header("docker-content-digest"), Some(&*digest));
    let writes = proxy.writes();
    let shape: Vec<_> = writes.iter().map(|r| (&*r.method, r.status)).collect();
    assert_eq!(shape, [("POST", 202), ("PUT", 201)]);
    assert_eq!(writes[0].path, "/v2/smoke/blobs/uploads/");
    assert!(writes[1].path.ends_with(&format!("&digest={digest}")));
    let seen = registry.wait_for_log(r#""PUT /v2/smoke/blobs/uploads/"#, 1, LOG_TIMEOUT);
    assert_eq!(
        seen.len(),
        1,
        "registry access log: {:?}",
        registry.log_lines()
    );
}

#[test]
fn injected_status_fires_n_times() {
    let (_registry, proxy, http) = start();
    proxy.inject(Fault::status("GET", "/v2/", 503).times(2));
    let url = format!("http://{}/v2/", proxy.host());

    let first = http.get(&url);
    let statuses: Vec<u16> = [first.status, http.get(&url).status, http.get(&url).status].into();

    assert_eq!(statuses, [503, 503, 200]);
    let error: serde_json::Value = serde_json::from_slice(&first.body).expect("JSON error body");
    assert_eq!(error["errors"][0]["code"], "UNAVAILABLE");
    let seen: Vec<u16> = proxy.requests().iter().map(|r| r.status).collect();
    assert_eq!(seen, [503, 503, 200]);
}

#[test]
fn a_rule_for_any_request_fires_whatever_the_method_and_path() {
    let (_registry, proxy, http) = start();
    let action = Action::Status {
        code: 502,
        retry_after: None,
    };
    proxy.inject(Fault::new(Match::any(), action).times(2));
    let v2 = format!("http://{}/v2/", proxy.host());
    let blob = format!(
        "http://{}/v2/smoke/blobs/{}",
        proxy.host(),
        sha256_digest(b"")
    );

    let statuses = [
        http.get(&v2).status,
        http.send(Method::HEAD, &blob, &[], b"").status,
        http.get(&v2).status,
    ];

    assert_eq!(statuses, [502, 502, 200]);
    let seen: Vec<(String, u16)> = proxy
        .requests()
        .into_iter()
        .map(|r| (r.method, r.status))
        .collect();
    assert_eq!(
        seen,
        [
            ("GET".into(), 502),
            ("HEAD".into(), 502),
            ("GET".into(), 200)
        ]
    );
}

#[test]
fn retry_after_header_is_sent() {
    let (_registry, proxy, http) = start();
    proxy.inject(
        Fault::status("HEAD", "/manifests/stable", 429)
            .retry_after(7)
            .times(1),
    );
    let url = format!("http://{}/v2/smoke/manifests/stable", proxy.host());

    let limited = http.send(Method::HEAD, &url, &[], b"");
    let passed = http.send(Method::HEAD, &url, &[], b"");

    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("7"));
    assert_eq!(passed.status, 404, "the tag does not exist upstream");
    assert_eq!(passed.header("retry-after"), None);
}

#[test]
fn reset_during_upload_closes_connection() {
    let (_registry, proxy, http) = start();
    let blob = vec![0x5a_u8; 256 * 1024];
    let digest = sha256_digest(&blob);
    let location = start_upload(&proxy, &http, "smoke");
    let target = location
        .strip_prefix(&format!("http://{}", proxy.host()))
        .expect("absolute Location on the proxy");
    proxy.inject(Fault::reset_after("PUT", "/blobs/uploads/", 1024));

    // Raw socket, so "no response at all" is observable rather than a client error variant.
    let mut stream = TcpStream::connect(proxy.host()).expect("connect to proxy");
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(REQUEST_TIMEOUT))
        .expect("write timeout");
    let head = format!(
        "PUT {target}&digest={digest} HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        proxy.host(),
        blob.len()
    );
    stream
        .write_all(head.as_bytes())
        .expect("send request head");
    // Writes start failing once the proxy hangs up; that is the point.
    for chunk in blob.chunks(16 * 1024) {
        if stream.write_all(chunk).is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {}
        Err(e) => panic!("proxy neither answered nor hung up: {e}"),
    }

    assert!(
        answer.is_empty(),
        "expected no response, got {:?}",
        String::from_utf8_lossy(&answer)
    );
    let last = proxy
        .requests()
        .pop()
        .expect("the reset request is recorded");
    assert_eq!((&*last.method, last.status), ("PUT", 0));

    // The proxy keeps serving, and the untouched upload session can still be finished.
    proxy.clear_faults();
    let put = http.send(
        Method::PUT,
        &format!("{location}&digest={digest}"),
        &[],
        &blob,
    );
    assert_eq!(put.status, 201, "upload after reset: {:?}", put.body);
}

#[test]
fn delay_holds_the_response() {
    let (_registry, proxy, http) = start();
    let delay = Duration::from_millis(300);
    proxy.inject(Fault::delay("GET", "/v2/", delay).times(1));

    let started = Instant::now();
    let reply = http.get(&format!("http://{}/v2/", proxy.host()));

    assert_eq!(reply.status, 200);
    assert!(
        started.elapsed() >= delay,
        "answered after {:?}",
        started.elapsed()
    );
}

#[test]
fn stale_reads_serve_old_manifest() {
    let (_registry, proxy, http) = start();
    proxy.inject(Fault::stale_reads_forever("/manifests/stable"));
    let url = format!("http://{}/v2/smoke/manifests/stable", proxy.host());
    let accept = [("accept", INDEX_TYPE)];

    let put = http.send(
        Method::PUT,
        &url,
        &[("content-type", INDEX_TYPE)],
        EMPTY_INDEX.as_bytes(),
    );
    assert_eq!(put.status, 201, "manifest PUT: {:?}", put.body);
    let stale_get = http.send(Method::GET, &url, &accept, b"");
    let stale_head = http.send(Method::HEAD, &url, &accept, b"");
    proxy.clear_faults();
    let fresh = http.send(Method::GET, &url, &accept, b"");

    assert_eq!(stale_get.status, 404);
    assert_eq!(stale_head.status, 404);
    assert_eq!(fresh.status, 200);
    assert_eq!(fresh.body, EMPTY_INDEX.as_bytes());
    assert_eq!(fresh.header("content-type"), Some(INDEX_TYPE));
    assert_eq!(
        fresh.header("docker-content-digest"),
        Some(&*sha256_digest(EMPTY_INDEX.as_bytes()))
    );
}

#[test]
fn stale_reads_show_the_previous_manifest_a_limited_number_of_times() {
    let (_registry, proxy, http) = start();
    let url = format!("http://{}/v2/smoke/manifests/stable", proxy.host());
    let put = |body: &str| {
        let reply = http.send(
            Method::PUT,
            &url,
            &[("content-type", INDEX_TYPE)],
            body.as_bytes(),
        );
        assert_eq!(reply.status, 201, "manifest PUT: {:?}", reply.body);
    };
    let get = || http.send(Method::GET, &url, &[("accept", INDEX_TYPE)], b"");
    let newer = EMPTY_INDEX.replace(
        r#""manifests":[]"#,
        r#""manifests":[],"annotations":{"v":"2"}"#,
    );
    put(EMPTY_INDEX);
    proxy.inject(Fault::stale_reads_for("/manifests/stable", Duration::from_secs(600)).times(1));

    put(&newer);
    let stale = get();
    let fresh = get();

    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, EMPTY_INDEX.as_bytes());
    assert_eq!(fresh.body, newer.as_bytes());
    // Snapshots are taken straight from upstream, so only client traffic is recorded.
    let shape: Vec<_> = proxy
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.status))
        .collect();
    let expected: Vec<_> = [("PUT", 201), ("PUT", 201), ("GET", 200), ("GET", 200)]
        .map(|(m, s)| (m.to_string(), s))
        .into();
    assert_eq!(shape, expected);
}
