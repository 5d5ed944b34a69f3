//! A test world for running the reprise binary: a real registry, the recording proxy in front
//! of it, and a working directory holding cosa build trees. Reading back what reprise wrote is
//! `skopeo`'s; starting the binary is `run`'s.

use std::path::{Path, PathBuf};
use std::process::Command;

use reprise_fixtures::{self as fixtures, BuildSpec, WrittenArch};
use serde_json::Value;

use super::check::{platforms_of, read_json};
use super::proxy::Proxy;
use super::registry::{Options, Registry};
use super::run::{self, Run};
use super::skopeo;

pub const KEY: &str = "base-oscontainer";
/// The demo repository's path in every test registry.
pub const DEMO_REPO: &str = "fedora/fedora-coreos";

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
        self.repo_named(DEMO_REPO)
    }

    /// `path` of the registry, through the proxy: as reprise addresses it.
    pub fn repo_named(&self, path: &str) -> String {
        format!("{}/{path}", self.proxy.host())
    }

    /// The demo repository straight at the registry, bypassing the proxy: for setting a tag
    /// up and reading what is really stored, without injected faults or recorded requests.
    pub fn direct_repo(&self) -> String {
        self.direct_named(DEMO_REPO)
    }

    /// `path` of the registry, straight at it (see [`Env::direct_repo`]).
    pub fn direct_named(&self, path: &str) -> String {
        format!("{}/{path}", self.registry.host())
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

    /// The meta.json of `arch` in the first build written.
    pub fn meta_path(&self, arch: &str) -> PathBuf {
        self.written
            .iter()
            .find(|w| w.arch == arch)
            .map(|w| w.meta.clone())
            .expect("arch in the build")
    }

    /// Every meta.json of every build, in order, as bytes.
    pub fn metas(&self) -> Vec<Vec<u8>> {
        self.written
            .iter()
            .map(|w| std::fs::read(&w.meta).expect("meta.json"))
            .collect()
    }

    /// The record under [`KEY`] in `w`'s meta.json.
    pub fn record(&self, w: &WrittenArch) -> Value {
        read_json(&w.meta)[KEY].clone()
    }

    /// reprise with `args` in the working directory, not yet started, with no ambient
    /// credentials, log filter or crash point ([`run::reprise`]).
    pub fn command(&self, args: &[String]) -> Command {
        let mut cmd = run::reprise(self.dir());
        cmd.args(args);
        cmd
    }

    /// Runs reprise with `args` in the working directory, as [`Env::command`] sets it up.
    pub fn reprise(&self, args: &[String]) -> Run {
        Run::of(&mut self.command(args))
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

    /// The usual `push-container-manifest` arguments for `tags`, plus `extra`.
    pub fn push_args(&self, tags: &[&str], extra: &[&str]) -> Vec<String> {
        self.command_args("push-container-manifest", &self.repo(), tags, extra)
    }

    /// The push request the command line would make for the usual arguments plus `args`,
    /// for tests that call reprise as a library (its plan, the bytes it reads).
    pub fn push_request(&self, args: &[&str]) -> reprise::push::PushRequest {
        use clap::Parser as _;
        use reprise::cli::{Cli, Command};
        let repo = self.repo();
        let dir = self.dir().to_str().expect("UTF-8 temp dir").to_owned();
        let mut argv = vec![
            "reprise",
            "push-container-manifest",
            "--repo",
            &repo,
            "--artifact",
            "ostree",
            "--metajsonname",
            KEY,
            "--workdir",
            &dir,
        ];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).expect("valid arguments").command {
            Command::PushContainerManifest(a) => {
                a.into_request().expect("a build store that opens")
            }
            _ => unreachable!(),
        }
    }

    /// `push-container-manifest --json` of the latest build's ostree artifact to `repo`.
    pub fn push_to(&self, repo: &str, tags: &[&str], extra: &[&str]) -> Run {
        self.reprise(&self.command_args("push-container-manifest", repo, tags, extra))
    }

    pub fn push(&self, tags: &[&str], extra: &[&str]) -> Run {
        self.reprise(&self.push_args(tags, extra))
    }

    /// `push-container-manifest --repo REPO --tag stable --json` plus `images` (`--image`
    /// arguments): a push of images named on the command line rather than from a build.
    pub fn push_images(&self, images: &[String]) -> Run {
        let mut args: Vec<String> = vec![
            "push-container-manifest".into(),
            "--repo".into(),
            self.repo(),
            "--tag".into(),
            "stable".into(),
            "--json".into(),
        ];
        args.extend(images.iter().cloned());
        self.reprise(&args)
    }

    /// `fixtures/demo/release.toml`, pointed at this test's proxy and written into the working
    /// directory, with the program its command stage runs (`cloud-upload`).
    pub fn demo_release_config(&self) -> PathBuf {
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo");
        std::fs::copy(demo.join("cloud-upload"), self.dir().join("cloud-upload"))
            .expect("copy fixtures/demo/cloud-upload");
        let text = self.demo_config_text("release.toml");
        self.release_config(&text)
    }

    /// `fixtures/demo/build-jobs.toml` (each arch's image to the staging repository), pointed
    /// at this test's proxy and written into the working directory.
    pub fn demo_build_jobs_config(&self) -> PathBuf {
        let text = self.demo_config_text("build-jobs.toml");
        let path = self.dir().join("build-jobs.toml");
        std::fs::write(&path, text).expect("write build-jobs.toml");
        path
    }

    /// A demo config's text with its `registry` variable set to this test's proxy.
    fn demo_config_text(&self, name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/demo")
            .join(name);
        let text = std::fs::read_to_string(&path).expect("a demo config");
        let text = text.replace(
            "registry = \"localhost:5000\"",
            &format!("registry = {:?}", self.proxy.host()),
        );
        assert!(
            text.contains(&self.proxy.host()),
            "{name} has a registry var"
        );
        text
    }

    /// Writes `text` as the working directory's `release.toml`.
    pub fn release_config(&self, text: &str) -> PathBuf {
        let path = self.dir().join("release.toml");
        std::fs::write(&path, text).expect("write release.toml");
        path
    }

    /// Puts `bytes` at `tag` of the demo repository straight at the registry, as another
    /// tool would: with curl, not reprise's own client.
    pub fn put_manifest(&self, tag: &str, bytes: &[u8], media_type: &str) {
        let body = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(body.path(), bytes).expect("write the manifest");
        let url = format!(
            "http://{}/v2/{DEMO_REPO}/manifests/{tag}",
            self.registry.host()
        );
        run::output_ok(
            Command::new("curl")
                .args(["-fsS", "-X", "PUT", "-H"])
                .arg(format!("Content-Type: {media_type}"))
                .arg("--data-binary")
                .arg(format!("@{}", body.path().display()))
                .arg(url),
        );
    }

    /// The manifest bytes `suffix` (":tag" or "@sha256:…") names in the demo repository,
    /// read straight from the registry (not through the proxy, so injected faults and stale
    /// reads do not blur what is really stored), or `None` if the registry does not have it.
    pub fn stored(&self, suffix: &str) -> Option<Vec<u8>> {
        skopeo::inspect_raw(&format!("{}{suffix}", self.direct_repo()))
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
