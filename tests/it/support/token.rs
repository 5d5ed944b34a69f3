//! Owns a small bearer-token service for the registry's `auth: token` mode, the way every
//! public registry (Quay, GHCR, Docker Hub) authenticates: the registry answers 401 with a
//! `Bearer realm=…,service=…` challenge, the client asks the realm for a token carrying the
//! scopes it needs, and the registry checks the token's signature and `access` claim.
//!
//! The issuer signs ES256 JWTs with a key whose self-signed certificate is the registry's
//! `rootcertbundle`; each token carries that certificate in its `x5c` header, which is how
//! Docker Distribution 2.8 finds the signing key (`x5c` is tried before `jwk` and `kid`, and
//! must chain to a root of the bundle). It checks basic credentials, grants per repository
//! what the test's [`Policy`] allows of what was asked, and records every request.
//!
//! Expiry without waiting: the registry accepts a token until a minute past its `exp`, so a
//! token cannot be made to run out mid-run without a clock. Instead, with
//! [`Policy::expire_after_uses`], the proxy in front of the registry asks [`TokenIssuer::enforcer`]
//! about each request's token and, once it has been used that many times, sends the registry
//! an already-expired copy of it (same claims, `exp` an hour ago, signed by the issuer). The
//! registry itself then refuses it, exactly as it refuses a token that ran out.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use super::env::Env;
use super::proxy::{AuthorizationRewrite, Proxy};
use super::registry::{Options, Registry, TokenAuth};
use reprise_fixtures::{self as fixtures, BuildSpec};

/// The registry's `service`, sent back by clients as `service=`.
pub const SERVICE: &str = "reprise-test-registry";
/// The `iss` of every token; the registry trusts only this issuer.
pub const ISSUER: &str = "reprise-test-issuer";

/// Who may do what: one user, and per repository the actions granted to them.
#[derive(Clone, Debug)]
pub struct Policy {
    pub user: String,
    pub password: String,
    /// Repository path (or `*` for any) and the actions (`pull`, `push`) granted on it.
    pub grants: Vec<(String, Vec<String>)>,
    /// What a token says it lasts (`expires_in`, and `exp` from now).
    pub lifetime: Duration,
    /// Swap a token for its expired copy after this many requests through the proxy.
    pub uses: Option<u32>,
}

impl Policy {
    /// `user`/`password` may log in and is granted nothing yet.
    pub fn new(user: &str, password: &str) -> Policy {
        Policy {
            user: user.to_owned(),
            password: password.to_owned(),
            grants: Vec::new(),
            lifetime: Duration::from_secs(60),
            uses: None,
        }
    }

    pub fn grant(mut self, repo: &str, actions: &[&str]) -> Policy {
        let actions = actions.iter().map(|a| (*a).to_owned()).collect();
        self.grants.push((repo.to_owned(), actions));
        self
    }

    pub fn expire_after_uses(mut self, uses: u32) -> Policy {
        self.uses = Some(uses);
        self
    }

    fn granted(&self, repo: &str, asked: &[String]) -> Vec<String> {
        asked
            .iter()
            .filter(|action| {
                self.grants.iter().any(|(r, actions)| {
                    (r == "*" || r == repo) && actions.iter().any(|a| a == *action)
                })
            })
            .cloned()
            .collect()
    }
}

/// One request to the token endpoint, as the issuer saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The user that authenticated, `None` for an anonymous request.
    pub user: Option<String>,
    /// The credentials did not match: answered 401, no token.
    pub refused: bool,
    /// Every scope asked for, as sent (`repository:a/b:pull,push`).
    pub asked: Vec<String>,
    /// What the token grants, in the same form (empty when refused or nothing granted).
    pub granted: Vec<String>,
}

#[derive(Default)]
struct State {
    issued: Vec<Issued>,
    /// Every token handed out, by its text.
    tokens: HashMap<String, Uses>,
    swapped: u32,
}

struct Uses {
    count: u32,
    expired_copy: String,
}

struct Signer {
    key: EcdsaKeyPair,
    /// The certificate's DER, base64 (standard, padded) as `x5c` wants it.
    x5c: String,
    rng: SystemRandom,
}

pub struct TokenIssuer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    policy: Arc<Mutex<Policy>>,
    cert: PathBuf,
    _dir: tempfile::TempDir,
    runtime: Option<Runtime>,
}

impl TokenIssuer {
    pub fn start(policy: Policy) -> TokenIssuer {
        let dir = tempfile::Builder::new()
            .prefix("reprise-token-")
            .tempdir()
            .expect("token issuer temp dir");
        let (key, cert) = make_signing_key(dir.path());
        let signer = Arc::new(Signer {
            key: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pem_der(&key))
                .expect("load the signing key"),
            x5c: STANDARD.encode(pem_der(&cert)),
            rng: SystemRandom::new(),
        });
        let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind token issuer");
        listener
            .set_nonblocking(true)
            .expect("make token listener non-blocking");
        let addr = listener.local_addr().expect("token issuer addr");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-token-issuer")
            .enable_all()
            .build()
            .expect("build token issuer runtime");
        let state: Arc<Mutex<State>> = Arc::default();
        let policy = Arc::new(Mutex::new(policy));
        let service = Service {
            state: Arc::clone(&state),
            policy: Arc::clone(&policy),
            signer,
        };
        runtime.spawn(serve(listener, service));
        TokenIssuer {
            addr,
            state,
            policy,
            cert,
            _dir: dir,
            runtime: Some(runtime),
        }
    }

    /// What the registry's `auth: token` section needs to trust this issuer.
    pub fn registry_auth(&self) -> TokenAuth {
        TokenAuth {
            realm: format!("http://{}/token", self.addr),
            service: SERVICE.to_owned(),
            issuer: ISSUER.to_owned(),
            rootcertbundle: self.cert.clone(),
        }
    }

    /// Every token request so far, in order.
    pub fn issued(&self) -> Vec<Issued> {
        self.lock().issued.clone()
    }

    /// How many times a used-up token was swapped for its expired copy.
    pub fn swapped(&self) -> u32 {
        self.lock().swapped
    }

    pub fn set_policy(&self, policy: Policy) {
        *self.policy.lock().expect("policy lock") = policy;
    }

    /// For [`Proxy::rewrite_authorization`]: counts each request's use of a token and, past
    /// the policy's limit, hands the registry the token's expired copy instead.
    pub fn enforcer(&self) -> AuthorizationRewrite {
        let state = Arc::clone(&self.state);
        let policy = Arc::clone(&self.policy);
        Arc::new(move |value: &str| {
            let token = value.strip_prefix("Bearer ")?;
            let limit = policy.lock().expect("policy lock").uses?;
            let mut state = state.lock().expect("issuer state lock");
            let uses = state.tokens.get_mut(token)?;
            uses.count += 1;
            if uses.count <= limit {
                return None;
            }
            let expired = format!("Bearer {}", uses.expired_copy);
            state.swapped += 1;
            Some(expired)
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("issuer state lock")
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[derive(Clone)]
struct Service {
    state: Arc<Mutex<State>>,
    policy: Arc<Mutex<Policy>>,
    signer: Arc<Signer>,
}

type Body = Full<Bytes>;

/// Accepts until the runtime is shut down by `TokenIssuer::drop`.
async fn serve(listener: StdTcpListener, service: Service) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("register token listener");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let service = service.clone();
        tokio::spawn(async move {
            let handler = service_fn(move |req| {
                let service = service.clone();
                async move { Ok::<_, std::convert::Infallible>(service.handle(&req)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler)
                .await;
        });
    }
}

impl Service {
    fn handle(&self, req: &Request<Incoming>) -> Response<Body> {
        if req.uri().path() != "/token" {
            return answer(
                StatusCode::NOT_FOUND,
                json!({"details": "no such endpoint"}),
            );
        }
        let url = reqwest::Url::parse(&format!("http://issuer{}", req.uri()))
            .expect("request URI is a URL path");
        let mut service = None;
        let mut asked = Vec::new();
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "service" => service = Some(v.into_owned()),
                // One scope per parameter, or several separated by spaces.
                "scope" => asked.extend(v.split(' ').filter(|s| !s.is_empty()).map(String::from)),
                _ => {}
            }
        }
        if service.as_deref() != Some(SERVICE) {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"details": format!("unknown service {service:?}")}),
            );
        }
        let policy = self.policy.lock().expect("policy lock").clone();
        let user = match basic_credentials(req.headers().get(header::AUTHORIZATION)) {
            None => None,
            Some((user, password)) if user == policy.user && password == policy.password => {
                Some(user)
            }
            Some((user, _)) => {
                self.record(Issued {
                    user: Some(user),
                    refused: true,
                    asked,
                    granted: Vec::new(),
                });
                return answer(
                    StatusCode::UNAUTHORIZED,
                    json!({"details": "incorrect username or password"}),
                );
            }
        };
        let mut access = Vec::new();
        let mut granted = Vec::new();
        for scope in &asked {
            let mut parts = scope.splitn(3, ':');
            let (Some("repository"), Some(name), Some(actions)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let wanted: Vec<String> = actions.split(',').map(String::from).collect();
            let allowed = match user {
                Some(_) => policy.granted(name, &wanted),
                None => Vec::new(),
            };
            if !allowed.is_empty() {
                granted.push(format!("repository:{name}:{}", allowed.join(",")));
                access.push(json!({"type": "repository", "name": name, "actions": allowed}));
            }
        }
        let now = unix_now();
        let lifetime = policy.lifetime.as_secs();
        let subject = user.clone().unwrap_or_default();
        let token = self.sign(&subject, now, now + lifetime, &access);
        let expired_copy = self.sign(&subject, now - 7200, now - 3600, &access);
        {
            let mut state = self.state.lock().expect("issuer state lock");
            state.tokens.insert(
                token.clone(),
                Uses {
                    count: 0,
                    expired_copy,
                },
            );
        }
        self.record(Issued {
            user,
            refused: false,
            asked,
            granted,
        });
        answer(
            StatusCode::OK,
            json!({"token": token, "access_token": token, "expires_in": lifetime}),
        )
    }

    fn record(&self, issued: Issued) {
        self.state
            .lock()
            .expect("issuer state lock")
            .issued
            .push(issued);
    }

    /// A compact JWS (ES256) the registry accepts from `not_before` until a minute past
    /// `expires`.
    fn sign(&self, subject: &str, not_before: u64, expires: u64, access: &[Value]) -> String {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [self.signer.x5c]});
        let claims = json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": expires,
            "nbf": not_before,
            "iat": not_before,
            "jti": id.to_string(),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .signer
            .key
            .sign(&self.signer.rng, signing_input.as_bytes())
            .expect("sign a token");
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}

fn answer(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("token response")
}

fn basic_credentials(value: Option<&HeaderValue>) -> Option<(String, String)> {
    let encoded = value?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// An EC P-256 key (PKCS #8) and a self-signed certificate for it, made with openssl.
fn make_signing_key(dir: &Path) -> (PathBuf, PathBuf) {
    let (key, cert) = (dir.join("token.key"), dir.join("token.crt"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:prime256v1")
        .args([
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=reprise test token issuer",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (key, cert)
}

/// The DER inside a one-block PEM file.
fn pem_der(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).expect("read PEM");
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("PEM body is base64")
}

/// A registry in token mode behind the recording proxy, the issuer it trusts, a cosa build
/// tree, and an auth file with the policy's credentials for the proxy's address.
pub struct TokenWorld {
    pub env: Env,
    pub issuer: TokenIssuer,
    pub authfile: PathBuf,
}

impl TokenWorld {
    pub fn new(policy: Policy) -> TokenWorld {
        let (user, password) = (policy.user.clone(), policy.password.clone());
        let issuer = TokenIssuer::start(policy);
        let registry = Registry::start_with(&Options {
            token: Some(issuer.registry_auth()),
            ..Options::default()
        });
        let proxy = Proxy::start(registry.addr());
        proxy.rewrite_authorization(issuer.enforcer());
        let work = tempfile::tempdir().expect("tempdir");
        let written = fixtures::write_tree(work.path(), &[BuildSpec::demo()]).expect("fixtures");
        let authfile = work.path().join("auth.json");
        let auth = STANDARD.encode(format!("{user}:{password}"));
        let body = json!({"auths": {proxy.host(): {"auth": auth}}});
        std::fs::write(&authfile, body.to_string()).expect("write auth file");
        TokenWorld {
            env: Env {
                registry,
                proxy,
                work,
                written,
            },
            issuer,
            authfile,
        }
    }

    /// `push-container-manifest --json` of the latest build to `repo` (a path on the
    /// registry, through the proxy) with the world's auth file, plus `extra`.
    pub fn push(&self, repo: &str, tags: &[&str], extra: &[&str]) -> super::run::Run {
        let authfile = self.authfile.to_str().expect("UTF-8 temp path");
        let mut args = vec!["--authfile", authfile];
        args.extend_from_slice(extra);
        self.env.push_to(&self.env.repo_named(repo), tags, &args)
    }
}
