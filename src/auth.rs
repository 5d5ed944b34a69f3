//! Registry credentials, found where the container tools keep them.
//!
//! Owns the search order, reading `auth.json`/`config.json` files, choosing the entry for a
//! repository (most specific key first, with the legacy spellings `https://host/v1/` and
//! Docker Hub's `index.docker.io` folded in), and running `docker-credential-<name> get`
//! helpers. It never logs or formats a secret: what it says about credentials names only
//! where they came from.
//!
//! The order is the one skopeo and podman use: an auth file named with `--authfile` or
//! `REGISTRY_AUTH_FILE` is the only file read; otherwise `$XDG_RUNTIME_DIR/containers/
//! auth.json`, `$XDG_CONFIG_HOME/containers/auth.json` (default `~/.config`), then
//! `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`. The first file with something for
//! the registry wins. Within a file: `credHelpers.<registry>`, then an `auths` entry, then the
//! `credsStore` helper.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::Value;

use crate::reference::Repository;

/// How long a credential helper may take before it is killed.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading auth file {path}: {detail}")]
    File { path: Utf8PathBuf, detail: String },
    #[error("credential helper docker-credential-{helper} for {registry}: {detail}")]
    Helper {
        helper: String,
        registry: String,
        detail: String,
    },
}

/// Where to look: the environment, captured once so tests can describe their own.
#[derive(Debug, Clone, Default)]
pub struct Places {
    pub authfile: Option<Utf8PathBuf>,
    pub registry_auth_file: Option<Utf8PathBuf>,
    pub xdg_runtime_dir: Option<Utf8PathBuf>,
    pub xdg_config_home: Option<Utf8PathBuf>,
    pub docker_config: Option<Utf8PathBuf>,
    pub home: Option<Utf8PathBuf>,
}

impl Places {
    /// The places of this process's environment, with `--authfile` if given.
    pub fn from_env(authfile: Option<&Utf8Path>) -> Places {
        let var = |k: &str| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Utf8PathBuf::from)
        };
        Places {
            authfile: authfile.map(Utf8Path::to_owned),
            registry_auth_file: var("REGISTRY_AUTH_FILE"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            docker_config: var("DOCKER_CONFIG"),
            home: var("HOME"),
        }
    }

    /// The files to read, in order, and whether the user named one (then it must exist).
    pub fn files(&self) -> (Vec<Utf8PathBuf>, bool) {
        if let Some(p) = self.authfile.as_ref().or(self.registry_auth_file.as_ref()) {
            return (vec![p.clone()], true);
        }
        let mut files = Vec::new();
        if let Some(run) = &self.xdg_runtime_dir {
            files.push(run.join("containers/auth.json"));
        }
        match (&self.xdg_config_home, &self.home) {
            (Some(cfg), _) => files.push(cfg.join("containers/auth.json")),
            (None, Some(home)) => files.push(home.join(".config/containers/auth.json")),
            (None, None) => {}
        }
        match (&self.docker_config, &self.home) {
            (Some(dir), _) => files.push(dir.join("config.json")),
            (None, Some(home)) => files.push(home.join(".docker/config.json")),
            (None, None) => {}
        }
        (files, false)
    }
}

/// What reprise authenticates with. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Anonymous,
    Basic { user: String, password: String },
}

impl Credentials {
    pub fn basic(user: &str, password: &str) -> Credentials {
        Credentials::Basic {
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    pub fn is_anonymous(&self) -> bool {
        matches!(self, Credentials::Anonymous)
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

/// Credentials for one registry and where they came from.
pub struct Found {
    pub auth: Credentials,
    /// For messages: "credentials from FILE", "docker-credential-NAME (via FILE)", or where
    /// nothing was found. Never a secret.
    pub source: String,
}

/// Finds the credentials for `repo`'s registry, or anonymous access if there are none.
pub fn find(places: &Places, repo: &Repository) -> Result<Found, Error> {
    let (files, explicit) = places.files();
    for path in &files {
        let raw = match std::fs::read(path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => continue,
            Err(e) => {
                return Err(Error::File {
                    path: path.clone(),
                    detail: e.to_string(),
                });
            }
        };
        let json: Value = serde_json::from_slice(&raw).map_err(|e| Error::File {
            path: path.clone(),
            detail: format!("invalid JSON: {e}"),
        })?;
        if let Some(found) = from_file(path, &json, repo)? {
            return Ok(found);
        }
    }
    let looked = if files.is_empty() {
        "no auth file location is known (HOME is not set)".to_owned()
    } else {
        format!(
            "none found in {}",
            files
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Ok(Found {
        auth: Credentials::Anonymous,
        source: format!("anonymous: {looked}"),
    })
}

fn from_file(path: &Utf8Path, json: &Value, repo: &Repository) -> Result<Option<Found>, Error> {
    let registry = normalise_host(repo.registry());
    let file_err = |detail: String| Error::File {
        path: path.to_owned(),
        detail,
    };
    if let Some(helper) = json
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|helpers| {
            helpers
                .iter()
                .find(|(k, _)| normalise_key(k) == registry)
                .map(|(_, v)| v)
        })
    {
        let helper = helper
            .as_str()
            .ok_or_else(|| file_err(format!("credHelpers entry for {registry} is not a string")))?;
        return run_helper(helper, repo).map(|auth| {
            Some(Found {
                auth,
                source: format!(
                    "credential helper docker-credential-{helper} (credHelpers in {path})"
                ),
            })
        });
    }
    if let Some((key, entry)) = auths_entry(json, repo)
        && let Some(auth) = decode_entry(entry, &key).map_err(file_err)?
    {
        return Ok(Some(Found {
            auth,
            source: format!("credentials for {key:?} in {path}"),
        }));
    }
    if let Some(store) = json.get("credsStore").and_then(Value::as_str) {
        let auth = run_helper(store, repo)?;
        if !matches!(auth, Credentials::Anonymous) {
            return Ok(Some(Found {
                auth,
                source: format!(
                    "credential helper docker-credential-{store} (credsStore in {path})"
                ),
            }));
        }
    }
    Ok(None)
}

/// The most specific `auths` entry for the repository: `host/a/b`, then `host/a`, then
/// `host` (in any of its legacy spellings).
fn auths_entry<'a>(json: &'a Value, repo: &Repository) -> Option<(String, &'a Value)> {
    let auths = json.get("auths")?.as_object()?;
    let registry = normalise_host(repo.registry());
    let mut candidates = Vec::new();
    let parts: Vec<&str> = repo.path().split('/').collect();
    for n in (1..=parts.len()).rev() {
        candidates.push(format!("{registry}/{}", parts[..n].join("/")));
    }
    candidates.push(registry);
    candidates.into_iter().find_map(|want| {
        auths
            .iter()
            .find(|(k, _)| normalise_key(k) == want)
            .map(|(k, v)| (k.clone(), v))
    })
}

/// `Some` credentials from an auths entry, `None` for an empty placeholder (Docker writes
/// `{}` when a credential store holds the secret).
fn decode_entry(entry: &Value, key: &str) -> Result<Option<Credentials>, String> {
    if entry
        .get("identitytoken")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty())
    {
        return Err(format!(
            "the entry for {key:?} holds an identity token, which reprise cannot use; log in with a username and password"
        ));
    }
    if let Some(encoded) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| format!("the auth entry for {key:?} is not valid base64"))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| format!("the auth entry for {key:?} is not UTF-8"))?;
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| format!("the auth entry for {key:?} is not user:password"))?;
        return Ok(Some(Credentials::basic(user, pass)));
    }
    let field = |k: &str| {
        entry
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    match (field("username"), field("password")) {
        (Some(u), Some(p)) => Ok(Some(Credentials::basic(u, p))),
        _ => Ok(None),
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://host:5000/v2/` → `host:5000`;
/// `host/ns/repo` stays as it is.
fn normalise_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.trim_end_matches('/');
    let k = k
        .strip_suffix("/v1")
        .or_else(|| k.strip_suffix("/v2"))
        .unwrap_or(k);
    match k.split_once('/') {
        Some((host, rest)) => format!("{}/{rest}", normalise_host(host)),
        None => normalise_host(k),
    }
}

fn normalise_host(host: &str) -> String {
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        other => other.to_owned(),
    }
}

/// What a helper is asked for: Docker Hub by its legacy URL, as helpers store it.
fn helper_server(repo: &Repository) -> String {
    match normalise_host(repo.registry()).as_str() {
        "docker.io" => "https://index.docker.io/v1/".to_owned(),
        other => other.to_owned(),
    }
}

/// Runs `docker-credential-<helper> get` with the server on stdin. "Not found" from the
/// helper means anonymous; a missing helper or any other failure is an error.
fn run_helper(helper: &str, repo: &Repository) -> Result<Credentials, Error> {
    let fail = |detail: String| Error::Helper {
        helper: helper.to_owned(),
        registry: repo.registry().to_owned(),
        detail,
    };
    if helper.is_empty()
        || !helper
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(fail("the helper name is not a plain name".into()));
    }
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is its own business.
        let _ = stdin.write_all(helper_server(repo).as_bytes());
    }
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.take(1 << 20).read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.take(64 << 10).read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + HELPER_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("did not answer within {HELPER_TIMEOUT:?}")));
            }
            Err(e) => return Err(fail(e.to_string())),
        }
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        // Helpers print this (or "credentials not found") when they hold nothing for the
        // server; their output is about the lookup, never the secret.
        let text = String::from_utf8_lossy(if out.is_empty() { &err } else { &out });
        if text.to_ascii_lowercase().contains("credentials not found") {
            return Ok(Credentials::Anonymous);
        }
        return Err(fail(format!("exited with {status}")));
    }
    let json: Value = serde_json::from_slice(&out)
        .map_err(|_| fail("did not print a JSON object with Username and Secret".into()))?;
    let field = |k: &str| json.get(k).and_then(Value::as_str).unwrap_or_default();
    match (field("Username"), field("Secret")) {
        ("<token>", _) => Err(fail(
            "returned an identity token, which reprise cannot use".into(),
        )),
        (_, "") => Err(fail("returned no Secret".into())),
        (user, secret) => Ok(Credentials::basic(user, secret)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> Repository {
        Repository::parse(s).unwrap()
    }

    fn basic(found: &Found) -> (String, String) {
        match &found.auth {
            Credentials::Basic { user, password } => (user.clone(), password.clone()),
            _ => panic!("not basic: {}", found.source),
        }
    }

    fn write(dir: &Utf8Path, rel: &str, body: &str) -> Utf8PathBuf {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, body).unwrap();
        path
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn tmp() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        (dir, path)
    }

    #[test]
    fn the_first_file_with_an_entry_wins_in_the_container_tools_order() {
        let (_t, dir) = tmp();
        let places = Places {
            xdg_runtime_dir: Some(dir.join("run")),
            home: Some(dir.join("home")),
            ..Places::default()
        };
        let entry = |who: &str| {
            format!(
                r#"{{"auths":{{"quay.io":{{"auth":"{}"}}}}}}"#,
                b64(&format!("{who}:pw"))
            )
        };
        write(&dir, "home/.docker/config.json", &entry("docker"));
        assert_eq!(
            basic(&find(&places, &repo("quay.io/a/b")).unwrap()).0,
            "docker"
        );
        write(&dir, "home/.config/containers/auth.json", &entry("config"));
        assert_eq!(
            basic(&find(&places, &repo("quay.io/a/b")).unwrap()).0,
            "config"
        );
        write(&dir, "run/containers/auth.json", &entry("runtime"));
        let found = find(&places, &repo("quay.io/a/b")).unwrap();
        assert_eq!(basic(&found).0, "runtime");
        assert!(
            found.source.contains("run/containers/auth.json"),
            "{}",
            found.source
        );
        // A registry nobody has an entry for is anonymous, and says where it looked.
        let none = find(&places, &repo("ghcr.io/a/b")).unwrap();
        assert!(matches!(none.auth, Credentials::Anonymous));
        assert!(
            none.source.contains(".docker/config.json"),
            "{}",
            none.source
        );
    }

    #[test]
    fn a_named_auth_file_is_the_only_one_read_and_must_exist() {
        let (_t, dir) = tmp();
        write(
            &dir,
            "home/.docker/config.json",
            &format!(r#"{{"auths":{{"quay.io":{{"auth":"{}"}}}}}}"#, b64("u:p")),
        );
        let named = dir.join("named.json");
        std::fs::write(&named, r#"{"auths":{}}"#).unwrap();
        let places = Places {
            registry_auth_file: Some(named.clone()),
            home: Some(dir.join("home")),
            ..Places::default()
        };
        assert!(matches!(
            find(&places, &repo("quay.io/a/b")).unwrap().auth,
            Credentials::Anonymous
        ));
        std::fs::remove_file(&named).unwrap();
        let err = find(&places, &repo("quay.io/a/b"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("named.json"), "{err}");
    }

    #[test]
    fn keys_match_most_specific_first_and_in_legacy_spellings() {
        let (_t, dir) = tmp();
        let file = write(
            &dir,
            "auth.json",
            &format!(
                r#"{{"auths":{{
                    "https://index.docker.io/v1/":{{"auth":"{hub}"}},
                    "quay.io":{{"auth":"{host}"}},
                    "quay.io/org":{{"auth":"{org}"}},
                    "http://reg.example:5000/v2/":{{"username":"plain","password":"pw"}}
                }}}}"#,
                hub = b64("hub:pw"),
                host = b64("host:pw"),
                org = b64("org:p:w")
            ),
        );
        let places = Places {
            authfile: Some(file),
            ..Places::default()
        };
        let user = |r: &str| basic(&find(&places, &repo(r)).unwrap());
        assert_eq!(user("fedora/fedora").0, "hub");
        assert_eq!(user("quay.io/other/x").0, "host");
        assert_eq!(user("quay.io/org/x"), ("org".to_owned(), "p:w".to_owned()));
        assert_eq!(user("reg.example:5000/a").0, "plain");
    }

    #[test]
    fn bad_entries_are_errors_that_show_no_secret() {
        let (_t, dir) = tmp();
        let file = write(
            &dir,
            "auth.json",
            r#"{"auths":{"quay.io":{"auth":"not base64 secret!"}}}"#,
        );
        let places = Places {
            authfile: Some(file),
            ..Places::default()
        };
        let err = find(&places, &repo("quay.io/a/b"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("not valid base64") && !err.contains("secret!"),
            "{err}"
        );
    }

    #[test]
    fn normalised_keys() {
        assert_eq!(normalise_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalise_key("registry-1.docker.io"), "docker.io");
        assert_eq!(normalise_key("http://h:5000/v2/"), "h:5000");
        assert_eq!(normalise_key("quay.io/org/repo"), "quay.io/org/repo");
    }
}
