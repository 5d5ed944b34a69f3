//! reprise among the container tools: credentials from where they keep them, TLS with a CA
//! of the test's own, and the read-only commands (`inspect`, `status --check`), against real
//! registries.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::check::{expected_platforms, platforms_of};
use crate::support::env::{Env, KEY};
use crate::support::registry::{Options, Registry};
use crate::support::run::{self, Run, output_ok};
use crate::support::skopeo::skopeo;
use base64::Engine as _;
use reprise_fixtures::{self as fixtures, BuildSpec};

const USER: &str = "releng";
const PASSWORD: &str = "s3cret-Pa55word-for-tests";

/// A build tree and a registry that wants a password, with a fresh HOME and no ambient
/// container-tool configuration.
struct AuthWorld {
    registry: Registry,
    work: tempfile::TempDir,
    home: PathBuf,
}

impl AuthWorld {
    fn new() -> AuthWorld {
        let registry = Registry::start_with(&Options {
            htpasswd: Some((USER.into(), PASSWORD.into())),
            ..Options::default()
        });
        let work = tempfile::tempdir().unwrap();
        fixtures::write_tree(work.path(), &[BuildSpec::demo()]).unwrap();
        let home = work.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        AuthWorld {
            registry,
            work,
            home,
        }
    }

    fn repo(&self) -> String {
        format!("{}/fedora/fedora-coreos", self.registry.host())
    }

    /// An auth.json/config.json body with `password` for this registry, in the `auths` form.
    fn auths(&self, password: &str) -> String {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            self.registry.host()
        )
    }

    fn write(&self, rel: &str, body: &str) -> PathBuf {
        let path = self.work.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, body).unwrap();
        path
    }

    /// reprise with only the given environment for credentials (HOME is the world's).
    fn reprise(&self, args: &[&str], envs: &[(&str, String)]) -> Run {
        let mut cmd = run::reprise(self.work.path());
        cmd.args(args).env("HOME", &self.home);
        // Where the container tools look for credentials besides REGISTRY_AUTH_FILE.
        for var in ["XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "DOCKER_CONFIG"] {
            cmd.env_remove(var);
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Run::of(&mut cmd)
    }

    fn push(&self, tag: &str, extra: &[&str], envs: &[(&str, String)]) -> Run {
        let repo = self.repo();
        let mut args = vec![
            "push-container-manifest",
            "--repo",
            &repo,
            "--tag",
            tag,
            "--artifact",
            "ostree",
            "--metajsonname",
            KEY,
            "--json",
        ];
        args.extend_from_slice(extra);
        self.reprise(&args, envs)
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn credentials_are_found_in_every_place_the_container_tools_keep_them() {
    let w = AuthWorld::new();
    let body = w.auths(PASSWORD);
    // Anonymous first: the registry really wants a password.
    let anon = w.push("anon", &[], &[]);
    assert_eq!(anon.code, 1, "{}", anon.stderr);

    let flag = w.write("flag/auth.json", &body);
    w.push("authfile", &["--authfile", &s(&flag)], &[]).ok();

    let env_file = w.write("env/auth.json", &body);
    w.push("env", &[], &[("REGISTRY_AUTH_FILE", s(&env_file))])
        .ok();

    w.write("run/containers/auth.json", &body);
    let run_dir = s(&w.work.path().join("run"));
    w.push("runtime", &[], &[("XDG_RUNTIME_DIR", run_dir)]).ok();

    let cfg = w.write("cfg/containers/auth.json", &body);
    let cfg_home = s(cfg.parent().unwrap().parent().unwrap());
    w.push("xdg-config", &[], &[("XDG_CONFIG_HOME", cfg_home)])
        .ok();

    let docker = w.write("docker-cfg/config.json", &body);
    let docker_dir = s(docker.parent().unwrap());
    w.push("docker-config", &[], &[("DOCKER_CONFIG", docker_dir)])
        .ok();

    w.write("home/.docker/config.json", &body);
    w.push("home-docker", &[], &[]).ok();
    std::fs::remove_file(w.home.join(".docker/config.json")).unwrap();

    w.write("home/.config/containers/auth.json", &body);
    let run = w.push("home-config", &[], &[]).ok();
    assert_eq!(run.outcome(), "pushed");
}

#[test]
fn a_credential_helper_is_asked_for_the_registry() {
    let w = AuthWorld::new();
    // A helper that answers only for this registry, like docker-credential-pass does.
    let bin = w.work.path().join("bin");
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread server\n\
         if [ \"$server\" = \"{host}\" ]; then\n\
         printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n\
         else echo 'credentials not found in native keychain'; exit 1; fi\n",
        host = w.registry.host()
    );
    let helper = bin.join("docker-credential-reprise-test");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(&helper, script).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", s(&bin), std::env::var("PATH").unwrap_or_default());

    w.write(
        "home/.docker/config.json",
        &format!(
            r#"{{"credHelpers":{{"{}":"reprise-test"}}}}"#,
            w.registry.host()
        ),
    );
    w.push("helper", &[], &[("PATH", path.clone())]).ok();

    // credsStore serves every registry without an entry of its own.
    w.write(
        "home/.docker/config.json",
        r#"{"credsStore":"reprise-test"}"#,
    );
    let run = w.push("store", &["-v"], &[("PATH", path)]).ok();
    assert!(!run.stderr.contains(PASSWORD));
}

#[test]
fn a_wrong_password_fails_with_one_line_naming_registry_and_source() {
    let w = AuthWorld::new();
    let file = w.write("auth.json", &w.auths("not-the-password"));
    let metas_before = std::fs::read(
        w.work
            .path()
            .join(format!("builds/{}/x86_64/meta.json", fixtures::DEMO_ID)),
    )
    .unwrap();
    let run = w.push("stable", &["--authfile", &s(&file)], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("reprise: error"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        errors[0].contains("access denied")
            && errors[0].contains(&w.registry.host())
            && errors[0].contains("auth.json"),
        "{}",
        errors[0]
    );
    assert!(!run.stderr.contains("not-the-password"));
    let metas_after = std::fs::read(
        w.work
            .path()
            .join(format!("builds/{}/x86_64/meta.json", fixtures::DEMO_ID)),
    )
    .unwrap();
    assert_eq!(metas_before, metas_after);
}

#[test]
fn no_secret_reaches_any_output_even_at_trace() {
    let w = AuthWorld::new();
    let file = w.write("auth.json", &w.auths(PASSWORD));
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    for (extra, rust_log) in [(vec!["-vvv"], None), (vec!["-vvv"], Some("trace"))] {
        let mut args = vec!["--authfile", file.to_str().unwrap()];
        args.extend(extra);
        let mut envs = vec![];
        if let Some(level) = rust_log {
            envs.push(("RUST_LOG", level.to_owned()));
        }
        let run = w.push("stable", &args, &envs).ok();
        let all = format!("{}\n{}", run.stderr, run.report);
        assert!(
            run.stderr.len() > 1000,
            "trace output is there: {}",
            run.stderr.len()
        );
        assert!(!all.contains(PASSWORD), "password leaked at {rust_log:?}");
        assert!(!all.contains(&encoded), "basic auth leaked at {rust_log:?}");
    }
}

/// A CA and a server certificate for 127.0.0.1, made with openssl.
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        output_ok(Command::new("openssl").args(args).current_dir(dir));
    };
    let new_key = |out: &str| {
        run(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            out,
        ])
    };
    std::fs::write(
        dir.join("ca.ext"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    new_key("ca.key");
    run(&[
        "req",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/CN=reprise test CA",
        "-out",
        "ca.csr",
    ]);
    run(&[
        "x509", "-req", "-in", "ca.csr", "-signkey", "ca.key", "-days", "2", "-extfile", "ca.ext",
        "-out", "ca.crt",
    ]);
    new_key("server.key");
    run(&[
        "req",
        "-new",
        "-key",
        "server.key",
        "-subj",
        "/CN=127.0.0.1",
        "-out",
        "server.csr",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
    (
        dir.join("ca.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
    )
}

#[test]
fn tls_registry_is_trusted_with_cert_dir_and_refused_without() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(certs.path());
    let registry = Registry::start_with(&Options {
        tls: Some((cert, key)),
        ..Options::default()
    });
    let work = tempfile::tempdir().unwrap();
    let written = fixtures::write_tree(work.path(), &[BuildSpec::demo()]).unwrap();
    let cert_dir = work.path().join("certs.d");
    std::fs::create_dir_all(&cert_dir).unwrap();
    std::fs::copy(&ca, cert_dir.join("ca.crt")).unwrap();
    let repo = format!("{}/fedora/fedora-coreos", registry.host());
    let push = |extra: &[&str]| {
        let mut cmd = run::reprise(work.path());
        cmd.args([
            "push-container-manifest",
            "--repo",
            &repo,
            "--tag",
            "stable",
            "--artifact",
            "ostree",
            "--metajsonname",
            KEY,
            "--json",
        ])
        .args(extra);
        Run::of(&mut cmd)
    };
    // Asked for TLS without the CA: a certificate error, said plainly, nothing recorded.
    let run = push(&["--tls-verify=true"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = run.stderr.lines().find(|l| l.contains("error")).unwrap();
    assert!(line.to_lowercase().contains("certificate"), "{line}");
    assert!(line.contains(&registry.host()), "{line}");

    let run = push(&["--cert-dir", cert_dir.to_str().unwrap()]).ok();
    assert_eq!(run.outcome(), "pushed");
    // skopeo, trusting the same CA, reads back what was pushed.
    let out = skopeo(&[
        "inspect",
        "--raw",
        "--cert-dir",
        &s(&cert_dir),
        &format!("docker://{repo}:stable"),
    ]);
    let index: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(platforms_of(&index), expected_platforms(&written));
}

/// A registry that speaks only HTTPS, with a CA reprise was not told about: both ways of
/// getting it wrong fail at once, in one line that says what to do, and nothing is recorded.
#[test]
fn an_https_registry_reached_wrongly_fails_at_once_in_one_line_naming_the_fix() {
    let certs = tempfile::tempdir().unwrap();
    let (_ca, cert, key) = make_certs(certs.path());
    let registry = Registry::start_with(&Options {
        tls: Some((cert, key)),
        ..Options::default()
    });
    let work = tempfile::tempdir().unwrap();
    let written = fixtures::write_tree(work.path(), &[BuildSpec::demo()]).unwrap();
    let metas = || -> Vec<Vec<u8>> {
        written
            .iter()
            .map(|w| std::fs::read(&w.meta).unwrap())
            .collect()
    };
    let before = metas();
    let repo = format!("{}/fedora/fedora-coreos", registry.host());
    let push = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_reprise"))
            .args([
                "push-container-manifest",
                "--repo",
                &repo,
                "--tag",
                "stable",
            ])
            .args(["--artifact", "ostree", "--metajsonname", KEY])
            .args(extra)
            .current_dir(work.path())
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        Run::from(out)
    };
    let one_line = |run: &Run| -> String {
        assert_eq!(run.code, 1, "{}", run.stderr);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "one line, no retries, no library log:\n{}",
            run.stderr
        );
        lines[0].to_owned()
    };

    // Loopback means plain HTTP unless asked otherwise; the server's 400 is recognised.
    let line = one_line(&push(&[]));
    assert!(
        line.contains(&format!("{} speaks HTTPS", registry.host()))
            && line.contains("--tls-verify=true")
            && line.contains("--cert-dir"),
        "{line}"
    );

    // Asked for TLS, but the CA is unknown: a certificate error is not worth a retry.
    let run = push(&["--tls-verify=true"]);
    let line = one_line(&run);
    assert!(
        line.contains("not signed by a CA reprise trusts")
            && line.contains(&registry.host())
            && line.contains("--cert-dir"),
        "{line}"
    );
    assert!(!run.stderr.contains("retrying"), "{}", run.stderr);
    // The registry saw one handshake, refused by reprise, and no second one.
    let handshakes = registry.wait_for_log("TLS handshake error", 1, Duration::from_secs(10));
    assert_eq!(handshakes.len(), 1, "{handshakes:?}");

    assert_eq!(metas(), before, "nothing recorded");
}

#[test]
fn inspect_prints_the_platforms_and_checks_a_record() {
    let env = Env::new();
    let pushed = env.push(&["stable"], &[]).ok();
    let reference = format!("{}:stable", env.repo());
    let table = env.reprise(&["inspect".into(), format!("docker://{reference}")]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    let text = env
        .reprise(&["inspect".into(), reference.clone()])
        .ok()
        .stdout;
    for w in &env.written {
        let line = text
            .lines()
            .find(|l| l.contains(&w.manifest_digest))
            .unwrap();
        assert!(line.starts_with("linux/"), "{line}");
    }
    let meta = env.written[0].meta.to_str().unwrap().to_owned();
    let json = env.reprise(&[
        "inspect".into(),
        reference.clone(),
        "--json".into(),
        "--meta".into(),
        meta.clone(),
        "--metajsonname".into(),
        KEY.into(),
    ]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    assert_eq!(json.report["digest"], pushed.index_digest());
    assert_eq!(json.report["entries"].as_array().unwrap().len(), 4);
    assert_eq!(json.report["meta"]["matches"], true);

    // Another tag holding something else does not match the record: exit 4.
    env.push(&["other"], &["--arch", "x86_64", "--missing-arch", "drop"])
        .ok();
    let other = env.reprise(&[
        "inspect".into(),
        format!("{}:stable", env.repo()),
        "--meta".into(),
        meta,
        "--metajsonname".into(),
        KEY.into(),
    ]);
    assert_eq!(other.code, 4, "{}", other.stderr);
}

#[test]
fn status_check_exits_4_while_work_is_pending_and_never_writes() {
    let env = Env::new();
    let status =
        |extra: &[&str]| env.reprise(&env.command_args("status", &env.repo(), &["stable"], extra));
    let metas = env.metas();
    let pending = status(&["--check"]);
    assert_eq!(pending.code, 4, "{}", pending.stderr);
    assert_eq!(pending.report["tags"][0]["action"], "push");
    assert_eq!(env.proxy.writes(), vec![]);
    assert_eq!(env.metas(), metas);

    env.push(&["stable"], &[]).ok();
    env.proxy.clear();
    assert_eq!(status(&["--check"]).code, 0);
    // A lost record is pending work too.
    let w = &env.written[1];
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&w.meta).unwrap()).unwrap();
    meta.as_object_mut().unwrap().remove(KEY);
    std::fs::write(&w.meta, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
    let run = status(&["--check"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(env.proxy.writes(), vec![]);
    // Without --check the same state is only reported.
    assert_eq!(status(&[]).code, 0);
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definitions() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = env.reprise(&["completions".into(), shell.into()]);
        assert!(
            out.code == 0 && out.stdout.contains("push-container-manifest"),
            "{shell}"
        );
    }
    let out = env.reprise(&["man".into(), "push-container-manifest".into()]);
    assert_eq!(out.code, 0);
    let page = out.stdout;
    assert!(
        page.starts_with(".ie") && page.contains("missing\\-arch"),
        "{page:.200}"
    );
    let version = env.reprise(&["--version".into()]).ok();
    assert!(version.stdout.starts_with("reprise "), "{}", version.stdout);
}
