//! Owns the recording, fault-injecting HTTP/1.1 proxy that tests put between reprise and the
//! real registry: it forwards every request (bodies streamed, `Host` kept so the registry's
//! absolute upload `Location`s point back at the proxy), records what it saw, and injects
//! statuses, connection resets, delays, stale manifest reads, held requests and canned
//! responses on demand.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::runtime::Runtime;

type Body = BoxBody<Bytes, hyper::Error>;

/// Given a forwarded request's `Authorization`, the value to send upstream instead, if any.
pub type AuthorizationRewrite = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;
type Upstream = Client<HttpConnector, Body>;

/// Asked for when snapshotting a manifest, so the registry returns whatever kind is stored
/// instead of negotiating (or refusing) by the writer's Accept header.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Connection-level headers that must not be relayed; hyper re-frames bodies itself on each leg.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    // The proxy already answered the client's expectation; upstream gets the body right away.
    "expect",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// Path plus `?query` if there was one.
    pub path: String,
    /// Status returned to the client (injected or upstream); 0 for an injected reset.
    pub status: u16,
}

/// Which requests a rule applies to; `None` matches anything.
#[derive(Clone, Debug, Default)]
pub struct Match {
    pub method: Option<String>,
    pub path_contains: Option<String>,
}

impl Match {
    pub fn any() -> Match {
        Match::default()
    }

    pub fn new(method: &str, path_contains: &str) -> Match {
        Match {
            method: Some(method.to_string()),
            path_contains: Some(path_contains.to_string()),
        }
    }

    fn path_matches(&self, path: &str) -> bool {
        self.path_contains
            .as_deref()
            .is_none_or(|p| path.contains(p))
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path_matches(path)
    }
}

#[derive(Clone, Debug)]
pub enum Action {
    /// Answer with this status and an OCI-style JSON error body, optionally with `Retry-After`
    /// (seconds), without contacting upstream.
    Status { code: u16, retry_after: Option<u64> },
    /// Read up to this many request body bytes, then drop the connection without answering and
    /// without contacting upstream.
    ResetAfterRequestBytes(u64),
    /// Forward matching requests until their bodies add up to `at` bytes; the request that
    /// would cross it is read up to there and reset as `ResetAfterRequestBytes` does: a cut in
    /// the middle of a blob sent in chunks. `seen` counts what went by (start it at 0).
    ResetAtTotalBytes { at: u64, seen: u64 },
    /// Forward, then hold the upstream response back this long before answering.
    Delay(Duration),
    /// Forward, and drop the connection once this many bytes of the response body went out
    /// (its `Content-Length` kept): a store or registry connection lost mid-download.
    CutResponseAfter(u64),
    /// After a successful manifest PUT, GET/HEAD of that path get the pre-PUT answer (the old
    /// manifest or its 404) for this long. `Match::method` is ignored.
    StaleReadsFor(Duration),
    /// Like `StaleReadsFor`, for ever.
    StaleReadsForever,
    /// Hold the request at the gate, before it reaches the registry, until the gate opens.
    Hold(Arc<Gate>),
    /// Answer with this status, `Content-Type` and body, without contacting upstream: a
    /// registry (or something in front of it) serving a document reprise must refuse.
    Respond {
        code: u16,
        content_type: String,
        body: Bytes,
    },
}

/// Where the proxy holds requests until a test lets them go, so a test can act while the
/// client is known to be waiting on a given request.
#[derive(Debug)]
pub struct Gate {
    arrived: Mutex<u32>,
    arrival: Condvar,
    /// (open for all, how many of the first arrivals are let through).
    open: tokio::sync::watch::Sender<(bool, u32)>,
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate {
            arrived: Mutex::new(0),
            arrival: Condvar::new(),
            open: tokio::sync::watch::Sender::new((false, 0)),
        })
    }

    /// Blocks until `n` requests are at the gate (or went through it); false if `timeout`
    /// passed first.
    pub fn wait_arrived(&self, n: u32, timeout: Duration) -> bool {
        let arrived = self.arrived.lock().expect("gate lock");
        let (arrived, _) = self
            .arrival
            .wait_timeout_while(arrived, timeout, |a| *a < n)
            .expect("gate lock");
        *arrived >= n
    }

    /// Lets every held request, and every later one, through.
    pub fn open(&self) {
        self.open.send_modify(|(open, _)| *open = true);
    }

    /// Lets the next `n` requests through, in the order they arrived (those already waiting
    /// first); the rest stay held.
    pub fn release(&self, n: u32) {
        self.open.send_modify(|(_, released)| *released += n);
    }

    async fn pass(&self) {
        let ticket = {
            let mut arrived = self.arrived.lock().expect("gate lock");
            *arrived += 1;
            *arrived - 1
        };
        self.arrival.notify_all();
        let mut open = self.open.subscribe();
        // Err only if the sender is gone, which the Arc held here rules out.
        let _ = open
            .wait_for(|(open, released)| *open || ticket < *released)
            .await;
    }
}

#[derive(Clone, Debug)]
pub struct Fault {
    pub matcher: Match,
    pub action: Action,
    /// How many more times the rule fires; `None` = always. Stale rules fire once per stale read.
    pub times: Option<u32>,
    /// How many matching requests go by untouched before the rule starts firing.
    pub skip: u32,
}

impl Fault {
    pub fn new(matcher: Match, action: Action) -> Fault {
        Fault {
            matcher,
            action,
            times: None,
            skip: 0,
        }
    }

    pub fn status(method: &str, path_contains: &str, code: u16) -> Fault {
        let action = Action::Status {
            code,
            retry_after: None,
        };
        Fault::new(Match::new(method, path_contains), action)
    }

    /// See [`Action::ResetAtTotalBytes`].
    pub fn reset_at_total(method: &str, path_contains: &str, at: u64) -> Fault {
        let action = Action::ResetAtTotalBytes { at, seen: 0 };
        Fault::new(Match::new(method, path_contains), action)
    }

    pub fn reset_after(method: &str, path_contains: &str, bytes: u64) -> Fault {
        let action = Action::ResetAfterRequestBytes(bytes);
        Fault::new(Match::new(method, path_contains), action)
    }

    pub fn cut_response_after(method: &str, path_contains: &str, bytes: u64) -> Fault {
        Fault::new(
            Match::new(method, path_contains),
            Action::CutResponseAfter(bytes),
        )
    }

    pub fn delay(method: &str, path_contains: &str, by: Duration) -> Fault {
        Fault::new(Match::new(method, path_contains), Action::Delay(by))
    }

    pub fn hold(method: &str, path_contains: &str, gate: &Arc<Gate>) -> Fault {
        Fault::new(
            Match::new(method, path_contains),
            Action::Hold(Arc::clone(gate)),
        )
    }

    pub fn stale_reads_for(path_contains: &str, window: Duration) -> Fault {
        let matcher = Match {
            method: None,
            path_contains: Some(path_contains.to_string()),
        };
        Fault::new(matcher, Action::StaleReadsFor(window))
    }

    pub fn stale_reads_forever(path_contains: &str) -> Fault {
        Fault {
            action: Action::StaleReadsForever,
            ..Fault::stale_reads_for(path_contains, Duration::ZERO)
        }
    }

    pub fn respond(method: &str, path_contains: &str, content_type: &str, body: Vec<u8>) -> Fault {
        let action = Action::Respond {
            code: 200,
            content_type: content_type.to_owned(),
            body: Bytes::from(body),
        };
        Fault::new(Match::new(method, path_contains), action)
    }

    /// Leaves the first `n` matching requests alone (not for stale rules).
    pub fn after(mut self, n: u32) -> Fault {
        self.skip = n;
        self
    }

    pub fn times(mut self, n: u32) -> Fault {
        self.times = Some(n);
        self
    }

    /// Only meaningful on a `Status` fault.
    pub fn retry_after(mut self, secs: u64) -> Fault {
        match &mut self.action {
            Action::Status { retry_after, .. } => *retry_after = Some(secs),
            other => panic!("retry_after needs a Status fault, not {other:?}"),
        }
        self
    }

    fn stale_window(&self) -> Option<Option<Duration>> {
        match self.action {
            Action::StaleReadsFor(window) => Some(Some(window)),
            Action::StaleReadsForever => Some(None),
            _ => None,
        }
    }

    fn armed(&self) -> bool {
        self.times != Some(0)
    }

    fn fire(&mut self) {
        if let Some(n) = &mut self.times {
            *n -= 1;
        }
    }
}

pub struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    // Option so Drop can move it out for `shutdown_background`, which, unlike a plain drop, is
    // allowed inside an async test.
    runtime: Option<Runtime>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr) -> Proxy {
        // Bound before returning, so a client may connect immediately: the backlog holds it.
        let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind proxy on loopback");
        listener
            .set_nonblocking(true)
            .expect("make proxy listener non-blocking");
        let addr = listener.local_addr().expect("proxy local addr");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-proxy")
            .enable_all()
            .build()
            .expect("build proxy runtime");
        let state = Arc::new(Mutex::new(State::default()));
        runtime.spawn(serve(listener, upstream, Arc::clone(&state)));
        Proxy {
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    /// "127.0.0.1:PORT"
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every request seen, in the order its response status was decided.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().recorded.clone()
    }

    /// Every request seen, with how many body bytes the proxy read from it (forwarded, or read
    /// before an injected reset).
    pub fn requests_with_body_bytes(&self) -> Vec<(Recorded, u64)> {
        let state = self.lock();
        state
            .recorded
            .iter()
            .cloned()
            .zip(state.body_bytes.iter().copied())
            .collect()
    }

    /// Requests whose method is neither GET nor HEAD.
    pub fn writes(&self) -> Vec<Recorded> {
        let recorded = self.requests();
        recorded
            .into_iter()
            .filter(|r| r.method != "GET" && r.method != "HEAD")
            .collect()
    }

    /// Response body bytes relayed so far for request paths ending with `suffix` (counted as
    /// they pass, so a body still streaming counts what it sent).
    pub fn bytes_served(&self, suffix: &str) -> u64 {
        let state = self.lock();
        state
            .served
            .iter()
            .filter(|(path, _)| path.ends_with(suffix))
            .map(|(_, n)| n.load(Ordering::Relaxed))
            .sum()
    }

    pub fn clear(&self) {
        let mut state = self.lock();
        state.recorded.clear();
        state.body_bytes.clear();
        state.served.clear();
    }

    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Passes every forwarded request's `Authorization` through `rewrite` (the token issuer
    /// uses it to make a token run out after some uses).
    pub fn rewrite_authorization(&self, rewrite: AuthorizationRewrite) {
        self.lock().rewrite = Some(rewrite);
    }

    /// Also forgets stale-read snapshots, so reads see the registry's real state again.
    pub fn clear_faults(&self) {
        let mut state = self.lock();
        state.faults.clear();
        state.snapshots.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("proxy state lock")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[derive(Default)]
struct State {
    faults: Vec<Fault>,
    recorded: Vec<Recorded>,
    /// Request body bytes read, one entry per `recorded`.
    body_bytes: Vec<u64>,
    /// Response body bytes relayed from upstream, by request path (a build store's reads).
    served: Vec<(String, Arc<AtomicU64>)>,
    rewrite: Option<AuthorizationRewrite>,
    /// Keyed by manifest path (no query).
    snapshots: HashMap<String, Snapshot>,
}

#[derive(Clone)]
struct Snapshot {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    /// None = for ever.
    until: Option<Instant>,
}

impl Snapshot {
    fn live(&self) -> bool {
        self.until.is_none_or(|until| Instant::now() < until)
    }

    fn response(&self, head: bool) -> Response<Body> {
        let body = if head {
            empty()
        } else {
            full(self.body.clone())
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        response
    }
}

enum Plan {
    Forward {
        delay: Option<Duration>,
        hold: Option<Arc<Gate>>,
        cut: Option<u64>,
    },
    Status {
        code: u16,
        retry_after: Option<u64>,
    },
    Reset(u64),
    Stale(Snapshot),
    Respond {
        code: u16,
        content_type: String,
        body: Bytes,
    },
}

#[derive(Clone)]
struct Ctx {
    upstream: SocketAddr,
    client: Upstream,
    state: Arc<Mutex<State>>,
}

/// Accepts until the runtime is shut down by `Proxy::drop`, which drops this task.
async fn serve(listener: StdTcpListener, upstream: SocketAddr, state: Arc<Mutex<State>>) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("register proxy listener");
    let client = Client::builder(TokioExecutor::new())
        // The client's own Host header is what makes upload Locations point at the proxy.
        .set_host(false)
        .build_http();
    let ctx = Ctx {
        upstream,
        client,
        state,
    };
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("test proxy: accept failed, no longer serving: {e}");
                return;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| ctx.clone().handle(req));
            // An error here is an injected reset or a client hanging up; both are expected.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Ctx {
    async fn handle(self, req: Request<Incoming>) -> Result<Response<Body>, io::Error> {
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let full_path = req
            .uri()
            .path_and_query()
            .map_or_else(|| path.clone(), |pq| pq.as_str().to_string());
        let content_length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let counted = Arc::new(AtomicU64::new(0));
        let response = match self.plan(&method, &path, &full_path, content_length) {
            Plan::Stale(snapshot) => snapshot.response(req.method() == Method::HEAD),
            Plan::Status { code, retry_after } => injected(code, retry_after),
            Plan::Respond {
                code,
                content_type,
                body,
            } => canned(code, &content_type, body, req.method() == Method::HEAD),
            Plan::Reset(limit) => {
                let read = read_some(req.into_body(), limit).await;
                counted.store(read, Ordering::Relaxed);
                self.record(method, full_path, 0, &counted);
                // A service error makes hyper drop the connection without writing a response.
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "reset injected by the test proxy",
                ));
            }
            Plan::Forward { delay, hold, cut } => {
                if let Some(gate) = hold {
                    gate.pass().await;
                }
                let response = self.forward(req, &path, &counted, cut).await;
                if let Some(delay) = delay {
                    tokio::time::sleep(delay).await;
                }
                response
            }
        };
        self.record(method, full_path, response.status().as_u16(), &counted);
        Ok(response)
    }

    fn plan(&self, method: &str, path: &str, full_path: &str, content_length: Option<u64>) -> Plan {
        let mut guard = self.state.lock().expect("proxy state lock");
        let state = &mut *guard;
        if (method == "GET" || method == "HEAD") && is_manifest_path(path) {
            let snapshot = state.snapshots.get(path).filter(|s| s.live());
            let rule = state
                .faults
                .iter_mut()
                .find(|f| f.stale_window().is_some() && f.armed() && f.matcher.path_matches(path));
            if let (Some(snapshot), Some(rule)) = (snapshot, rule) {
                rule.fire();
                return Plan::Stale(snapshot.clone());
            }
        }
        let mut rule = None;
        for f in state.faults.iter_mut() {
            if f.stale_window().is_some() || !f.armed() || !f.matcher.matches(method, full_path) {
                continue;
            }
            if f.skip > 0 {
                f.skip -= 1;
                continue;
            }
            rule = Some(f);
            break;
        }
        let forward = Plan::Forward {
            delay: None,
            hold: None,
            cut: None,
        };
        let Some(rule) = rule else {
            return forward;
        };
        if let Action::ResetAtTotalBytes { at, seen } = &mut rule.action {
            let len = content_length.unwrap_or(0);
            if *seen + len <= *at {
                *seen += len;
                return forward;
            }
            let limit = *at - *seen;
            *seen = *at;
            rule.fire();
            return Plan::Reset(limit);
        }
        rule.fire();
        match rule.action {
            Action::Status { code, retry_after } => Plan::Status { code, retry_after },
            Action::ResetAfterRequestBytes(limit) => Plan::Reset(limit),
            Action::ResetAtTotalBytes { .. } => unreachable!("handled above"),
            Action::Delay(delay) => Plan::Forward {
                delay: Some(delay),
                hold: None,
                cut: None,
            },
            Action::CutResponseAfter(bytes) => Plan::Forward {
                delay: None,
                hold: None,
                cut: Some(bytes),
            },
            Action::Hold(ref gate) => Plan::Forward {
                delay: None,
                hold: Some(Arc::clone(gate)),
                cut: None,
            },
            Action::Respond {
                code,
                ref content_type,
                ref body,
            } => Plan::Respond {
                code,
                content_type: content_type.clone(),
                body: body.clone(),
            },
            Action::StaleReadsFor(_) | Action::StaleReadsForever => {
                unreachable!("stale rules are filtered out above")
            }
        }
    }

    /// `Some(window)` if a stale rule covers `path` and no live snapshot exists yet: the oldest
    /// pre-write state stays the one served, however many PUTs follow within the window.
    fn wants_snapshot(&self, path: &str) -> Option<Option<Duration>> {
        let state = self.state.lock().expect("proxy state lock");
        if state.snapshots.get(path).is_some_and(Snapshot::live) {
            return None;
        }
        state
            .faults
            .iter()
            .filter(|f| f.armed() && f.matcher.path_matches(path))
            .find_map(Fault::stale_window)
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        path: &str,
        counted: &Arc<AtomicU64>,
        cut: Option<u64>,
    ) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let stale_window = if parts.method == Method::PUT && is_manifest_path(path) {
            self.wants_snapshot(path)
        } else {
            None
        };
        let snapshot = match stale_window {
            Some(_) => self.snapshot(path, parts.headers.get(header::HOST)).await,
            None => None,
        };

        let served = Arc::new(AtomicU64::new(0));
        self.state
            .lock()
            .expect("proxy state lock")
            .served
            .push((path.to_string(), Arc::clone(&served)));
        let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        parts.uri = format!("http://{}{path_and_query}", self.upstream)
            .parse()
            .expect("upstream URI");
        strip_hop_by_hop(&mut parts.headers);
        self.rewrite_authorization(&mut parts.headers);
        let response = match self
            .client
            .request(Request::from_parts(parts, counting(body, counted)))
            .await
        {
            Ok(response) => response,
            Err(e) => {
                let message = format!("test proxy: upstream request failed: {e}");
                return error_response(StatusCode::BAD_GATEWAY, "UNAVAILABLE", &message, None);
            }
        };

        if let (Some(mut snapshot), Some(window)) = (snapshot, stale_window)
            && response.status().is_success()
        {
            // The window starts once the write is visible upstream.
            snapshot.until = window.map(|w| Instant::now() + w);
            let mut state = self.state.lock().expect("proxy state lock");
            if !state.snapshots.get(path).is_some_and(Snapshot::live) {
                state.snapshots.insert(path.to_string(), snapshot);
            }
        }

        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = match cut {
            Some(left) => Cut {
                inner: body.boxed(),
                left,
                served,
            }
            .boxed(),
            None => counting(body, &served),
        };
        Response::from_parts(parts, body)
    }

    fn rewrite_authorization(&self, headers: &mut HeaderMap) {
        let rewrite = self.state.lock().expect("proxy state lock").rewrite.clone();
        let replacement = rewrite.and_then(|rewrite| {
            let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
            rewrite(value)
        });
        if let Some(value) = replacement {
            let value = HeaderValue::from_str(&value).expect("rewritten Authorization");
            headers.insert(header::AUTHORIZATION, value);
        }
    }

    /// The manifest as upstream serves it right now, buffered (manifests are small).
    async fn snapshot(&self, path: &str, host: Option<&HeaderValue>) -> Option<Snapshot> {
        let mut request = Request::get(format!("http://{}{path}", self.upstream))
            .header(header::ACCEPT, MANIFEST_TYPES);
        if let Some(host) = host {
            request = request.header(header::HOST, host);
        }
        let request = request.body(empty()).expect("snapshot request");
        let response = match self.client.request(request).await {
            Ok(response) => response,
            Err(e) => {
                eprintln!("test proxy: manifest snapshot of {path} failed: {e}");
                return None;
            }
        };
        let (mut parts, body) = response.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                eprintln!("test proxy: manifest snapshot body of {path} failed: {e}");
                return None;
            }
        };
        strip_hop_by_hop(&mut parts.headers);
        // Re-framed as a known-length body, so the upstream framing must not leak through.
        parts
            .headers
            .insert(header::CONTENT_LENGTH, body.len().into());
        Some(Snapshot {
            status: parts.status,
            headers: parts.headers,
            body,
            until: None,
        })
    }

    fn record(&self, method: String, path: String, status: u16, body_bytes: &AtomicU64) {
        let recorded = Recorded {
            method,
            path,
            status,
        };
        let mut state = self.state.lock().expect("proxy state lock");
        state.recorded.push(recorded);
        state.body_bytes.push(body_bytes.load(Ordering::Relaxed));
    }
}

/// `/v2/<name>/manifests/<reference>`, where `<name>` may itself contain slashes.
fn is_manifest_path(path: &str) -> bool {
    path.strip_prefix("/v2/")
        .and_then(|rest| rest.rsplit_once("/manifests/"))
        .is_some_and(|(name, reference)| {
            !name.is_empty() && !reference.is_empty() && !reference.contains('/')
        })
}

/// Stops at `limit` bytes, at the end of the body, or when the client goes away; returns how
/// many bytes it read (the last frame may carry it past `limit`).
async fn read_some(mut body: Incoming, limit: u64) -> u64 {
    let mut seen = 0u64;
    while seen < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                seen += frame.data_ref().map_or(0, |data| data.len() as u64);
            }
            Some(Err(_)) | None => break,
        }
    }
    seen
}

/// `body`, counting its data bytes into `counted` as they are forwarded.
fn counting(body: Incoming, counted: &Arc<AtomicU64>) -> Body {
    let counted = Arc::clone(counted);
    body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            counted.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        frame
    })
    .boxed()
}

/// A response body that ends after `left` bytes though its `Content-Length` says more, so
/// the server drops the connection there.
struct Cut {
    inner: Body,
    left: u64,
    /// Counts what went out.
    served: Arc<AtomicU64>,
}

impl hyper::body::Body for Cut {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        use std::task::Poll;
        if self.left == 0 {
            return Poll::Ready(None);
        }
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    data.truncate(self.left.min(data.len() as u64) as usize);
                    self.left -= data.len() as u64;
                    self.served.fetch_add(data.len() as u64, Ordering::Relaxed);
                    Poll::Ready(Some(Ok(hyper::body::Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }
}

fn injected(code: u16, retry_after: Option<u64>) -> Response<Body> {
    let status = StatusCode::from_u16(code).expect("injected status must be a valid code");
    let error = match code {
        401 => "UNAUTHORIZED",
        403 => "DENIED",
        404 => "NAME_UNKNOWN",
        429 => "TOOMANYREQUESTS",
        _ => "UNAVAILABLE",
    };
    error_response(status, error, "injected by the test proxy", retry_after)
}

fn canned(code: u16, content_type: &str, body: Bytes, head: bool) -> Response<Body> {
    let status = StatusCode::from_u16(code).expect("canned status must be a valid code");
    let len = body.len();
    let body = if head { empty() } else { full(body) };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, len)
        .body(body)
        .expect("canned response")
}

fn error_response(
    status: StatusCode,
    error: &str,
    message: &str,
    retry_after: Option<u64>,
) -> Response<Body> {
    let body = serde_json::json!({
        "errors": [{ "code": error, "message": message, "detail": null }]
    })
    .to_string();
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8");
    if let Some(secs) = retry_after {
        response = response.header(header::RETRY_AFTER, secs);
    }
    response
        .body(full(Bytes::from(body)))
        .expect("injected response")
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}
