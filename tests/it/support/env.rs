//! A test world for running the reprise binary: a real registry, the recording proxy in front
//! of it, and a working directory holding cosa build trees, plus the independent client
//! (skopeo) to read back what reprise wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::fixtures::{self, BuildSpec, WrittenArch};
use super::proxy::Proxy;
use super::registry::{Options, Registry};

pub const KEY: &str = "base-oscontainer";

pub struct Env {
    pub registry: Registry,
    pub proxy: Proxy,
    pub work: tempfile::TempDir,
    /// What the fixture generator wrote, every build in order.
    pub written: Vec<WrittenArch>,
}

impl Env {
    pub fn new() -> Env {
        Env::with_builds(&[BuildSpec::demo()])
    }

    pub fn with_builds(builds: &[BuildSpec]) -> Env {
        Env::with_registry(&Options::default(), builds)
    }

    /// As [`Env::with_builds`], with a registry set up as `options` says (e.g. htpasswd).
    pub fn with_registry(options: &Options, builds: &[BuildSpec]) -> Env {
        let registry = Registry::start_with(options);
        let proxy = Proxy::start(registry.addr());
        let work = tempfile::tempdir().expect("tempdir");
        let written = fixtures::write_tree(work.path(), builds).expect("fixture tree");
        Env {
            registry,
            proxy,
            work,
            written,
        }
    }

    /// Writes `build` and makes it the latest, as a new cosa build does.
    pub fn add_build(&mut self, build: &BuildSpec) -> Vec<WrittenArch> {
        let written = fixtures::add_build(self.work.path(), build).expect("add build");
        self.written.extend(written.clone());
        written
    }

    /// The demo repository, through the proxy.
    pub fn repo(&self) -> String {
        self.repo_named("fedora/fedora-coreos")
    }

    pub fn repo_named(&self, path: &str) -> String {
        format!("{}/{path}", self.proxy.host())
    }

    pub fn dir(&self) -> &Path {
        self.work.path()
    }

    pub fn arch(&self, build: &str, arch: &str) -> &WrittenArch {
        self.written
            .iter()
            .find(|w| w.build_id == build && w.arch == arch)
            .unwrap_or_else(|| panic!("no {build}/{arch} written"))
    }

    pub fn of_build(&self, build: &str) -> Vec<WrittenArch> {
        self.written
            .iter()
            .filter(|w| w.build_id == build)
            .cloned()
            .collect()
    }

    /// Every meta.json of every build, in order, as bytes.
    pub fn metas(&self) -> Vec<Vec<u8>> {
        self.written
            .iter()
            .map(|w| std::fs::read(&w.meta).expect("meta.json"))
            .collect()
    }

    pub fn record(&self, w: &WrittenArch) -> Value {
        let meta: Value = serde_json::from_slice(&std::fs::read(&w.meta).unwrap()).unwrap();
        meta[KEY].clone()
    }

    /// Runs reprise with `args` in the working directory, with no ambient credentials.
    pub fn reprise(&self, args: &[String]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_reprise"))
            .args(args)
            .current_dir(self.dir())
            .env_remove("REGISTRY_AUTH_FILE")
            .output()
            .expect("run reprise");
        Run::from(out)
    }

    /// `COMMAND --repo REPO --artifact ostree --metajsonname KEY --json --tag T...` plus
    /// `extra`: the usual arguments of the commands that plan a push of the latest build.
    pub fn command_args(
        &self,
        command: &str,
        repo: &str,
        tags: &[&str],
        extra: &[&str],
    ) -> Vec<String> {
        let mut args: Vec<String> = [
            command,
            "--repo",
            repo,
            "--artifact",
            "ostree",
            "--metajsonname",
            KEY,
            "--json",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for t in tags {
            args.push("--tag".to_owned());
            args.push((*t).to_owned());
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    }

    /// `push-container-manifest --json` of the latest build's ostree artifact to `repo`.
    pub fn push_to(&self, repo: &str, tags: &[&str], extra: &[&str]) -> Run {
        self.reprise(&self.command_args("push-container-manifest", repo, tags, extra))
    }

    pub fn push(&self, tags: &[&str], extra: &[&str]) -> Run {
        self.push_to(&self.repo(), tags, extra)
    }

    /// `skopeo inspect --raw` of a reference, parsed.
    pub fn skopeo_raw(&self, reference: &str) -> Value {
        let out = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ]);
        serde_json::from_slice(&out.stdout).expect("skopeo printed JSON")
    }
}

/// Copies everything `reference` (a tag's index) names with `skopeo copy --all` into a
/// fresh `TRANSPORT:` destination (`oci` or `dir`): an independent client proving every
/// blob and manifest is there.
pub fn copy_all_with_skopeo(reference: &str, transport: &str) {
    let dest = tempfile::tempdir().expect("tempdir");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("{transport}:{}", dest.path().join("copy").display()),
    ]);
}

/// Runs skopeo and insists it succeeds.
pub fn skopeo(args: &[&str]) -> Output {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub struct Run {
    pub code: i32,
    pub report: Value,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        Run {
            code: out.status.code().unwrap_or(-1),
            report,
            stderr,
        }
    }
}

impl Run {
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "reprise failed:\n{}", self.stderr);
        self
    }

    pub fn outcome(&self) -> &str {
        self.report["outcome"].as_str().unwrap_or("<none>")
    }

    pub fn index_digest(&self) -> String {
        self.report["index_digest"]
            .as_str()
            .expect("index_digest")
            .to_owned()
    }
}

/// An index's entries as sorted (architecture, digest) pairs.
pub fn platforms_of(index: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            (
                m["platform"]["architecture"].as_str().unwrap().to_owned(),
                m["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

pub fn oci_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The (architecture, manifest digest) pairs an index of `written` should list.
pub fn expected_platforms(written: &[WrittenArch]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = written
        .iter()
        .map(|w| (oci_arch(&w.arch).to_owned(), w.manifest_digest.clone()))
        .collect();
    v.sort();
    v
}

/// Asserts `instance` validates against `schemas/<schema_file>`.
pub fn validate(schema_file: &str, instance: &Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(schema_file);
    let schema: Value = serde_json::from_slice(&std::fs::read(&path).expect("schema")).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{schema_file}: {errors:?}\n{instance:#}");
}

/// Helpers for the reliability, crash, bad-input and security tests.
impl Env {
    /// The meta.json of `arch` in the first build written.
    pub fn meta_path(&self, arch: &str) -> PathBuf {
        self.written
            .iter()
            .find(|w| w.arch == arch)
            .map(|w| w.meta.clone())
            .expect("arch in the build")
    }

    /// The usual `push-container-manifest` arguments for `tags`, plus `extra`.
    pub fn push_args(&self, tags: &[&str], extra: &[&str]) -> Vec<String> {
        self.command_args("push-container-manifest", &self.repo(), tags, extra)
    }

    /// reprise in the working directory, not yet started, with no ambient credentials,
    /// log filter or crash point.
    pub fn command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reprise"));
        cmd.args(args)
            .current_dir(self.dir())
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("RUST_LOG")
            .env_remove("REPRISE_FAIL_AT")
            .env_remove("REPRISE_FAIL_LOG");
        cmd
    }

    /// The manifest bytes `suffix` (":tag" or "@sha256:…") names in the demo repository,
    /// read straight from the registry (not through the proxy, so injected faults and stale
    /// reads do not blur what is really stored), or `None` if the registry does not have it.
    pub fn stored(&self, suffix: &str) -> Option<Vec<u8>> {
        let direct = format!("{}/fedora/fedora-coreos{suffix}", self.registry.host());
        let out = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{direct}"))
            .output()
            .expect("run skopeo");
        if out.status.success() {
            return Some(out.stdout);
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("manifest unknown") || err.contains("not found"),
            "skopeo inspect {direct}: {err}"
        );
        None
    }

    /// "sha256:…" of what `tag` holds in the registry, or `None`.
    pub fn tag_digest(&self, tag: &str) -> Option<String> {
        self.stored(&format!(":{tag}"))
            .map(|b| fixtures::sha256_digest(&b))
    }

    /// The platforms (OCI architecture) and digests `tag`'s index names, sorted.
    pub fn tag_platforms(&self, tag: &str) -> Vec<(String, String)> {
        let bytes = self.stored(&format!(":{tag}")).expect("tag exists");
        platforms_of(&serde_json::from_slice(&bytes).expect("index is JSON"))
    }
}
