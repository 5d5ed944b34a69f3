//! Bearer tokens end to end, as every public registry hands them out: the real registry in
//! `auth: token` mode, the test token issuer it trusts, and reprise finding its way through
//! challenges, scopes, tokens that run out, and mounts across repositories.

use std::process::Command;

use crate::support::check::{expected_platforms, platforms_of};
use crate::support::run::Run;
use crate::support::token::{Policy, TokenWorld};

const USER: &str = "releng";
const PASSWORD: &str = "t0ken-Pa55word-for-tests";
const REPO: &str = "fedora/fedora-coreos";
const MIRROR: &str = "mirror/fedora-coreos";

fn policy() -> Policy {
    Policy::new(USER, PASSWORD)
}

/// `skopeo inspect --raw` of `reference` with the world's credentials: an independent
/// client through the same token service.
fn skopeo_raw(reference: &str) -> serde_json::Value {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", "--creds"])
        .arg(format!("{USER}:{PASSWORD}"))
        .arg(format!("docker://{reference}"))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("skopeo printed JSON")
}

/// Nothing secret in anything reprise printed.
fn assert_no_secret(run: &Run) {
    let all = format!("{}\n{}", run.stderr, run.report);
    assert!(!all.contains(PASSWORD), "password printed:\n{all}");
    assert!(!all.contains("Bearer "), "a token printed:\n{all}");
    assert!(!all.contains("eyJ"), "a JWT printed:\n{all}");
}

fn error_lines(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn a_push_through_bearer_tokens_then_a_rerun_sends_no_write() {
    let w = TokenWorld::new(policy().grant(REPO, &["pull", "push"]));
    let run = w.push(REPO, &["stable"], &[]).ok();
    assert_eq!(run.outcome(), "pushed");
    assert_no_secret(&run);
    let index = skopeo_raw(&format!("{}:stable", w.env.repo_named(REPO)));
    assert_eq!(platforms_of(&index), expected_platforms(&w.env.written));

    // Every token was asked for with the credentials, for this repository only.
    let issued = w.issuer.issued();
    assert!(!issued.is_empty());
    for i in &issued {
        assert_eq!(i.user.as_deref(), Some(USER), "{i:?}");
        assert!(!i.refused, "{i:?}");
        for scope in &i.asked {
            assert!(scope.starts_with(&format!("repository:{REPO}:")), "{i:?}");
        }
    }
    assert!(
        issued
            .iter()
            .any(|i| i.granted == [format!("repository:{REPO}:pull,push")]),
        "{issued:?}"
    );

    w.env.proxy.clear();
    let again = w.push(REPO, &["stable"], &[]).ok();
    assert_eq!(again.outcome(), "noop");
    assert_eq!(w.env.proxy.writes(), vec![], "a no-op rerun writes nothing");
    assert_no_secret(&again);
}

#[test]
fn a_token_that_runs_out_mid_run_is_replaced_and_the_run_succeeds() {
    // Each token serves twenty requests; after that the registry gets an expired copy of it
    // and refuses it, as it refuses any token past its time. (Small requests go sixteen at
    // once whatever --jobs says, so a token good for fewer uses than that would run out
    // under requests still waiting to use it, over and over: no registry issues those.)
    let w = TokenWorld::new(
        policy()
            .grant(REPO, &["pull", "push"])
            .expire_after_uses(20),
    );
    let run = w.push(REPO, &["stable"], &["--jobs", "1", "-v"]).ok();
    assert_eq!(run.outcome(), "pushed");
    assert_no_secret(&run);
    assert!(w.issuer.swapped() > 0, "no token ran out");
    let refused: Vec<_> = w
        .env
        .proxy
        .requests()
        .into_iter()
        .filter(|r| r.status == 401)
        .collect();
    assert!(
        refused.len() >= w.issuer.swapped() as usize,
        "every expired token was refused by the registry: {refused:?}"
    );
    let push_tokens = w
        .issuer
        .issued()
        .iter()
        .filter(|i| i.asked == [format!("repository:{REPO}:pull,push")])
        .count();
    assert!(push_tokens > 1, "push tokens issued: {push_tokens}");
    let index = skopeo_raw(&format!("{}:stable", w.env.repo_named(REPO)));
    assert_eq!(platforms_of(&index), expected_platforms(&w.env.written));

    // Still running out on the rerun, which still writes nothing.
    w.env.proxy.clear();
    let again = w.push(REPO, &["stable"], &["--jobs", "1"]).ok();
    assert_eq!(again.outcome(), "noop");
    assert_eq!(w.env.proxy.writes(), vec![]);
}

/// The release job's additional-images case: the same build, already in one repository,
/// pushed to a second one. The blobs are mounted from the first, which needs a token that
/// can also pull there.
#[test]
fn a_second_repository_mounts_with_a_token_that_can_pull_the_first() {
    let w = TokenWorld::new(
        policy()
            .grant(REPO, &["pull", "push"])
            .grant(MIRROR, &["pull", "push"]),
    );
    w.push(REPO, &["stable"], &[]).ok();
    w.env.proxy.clear();
    let run = w.push(MIRROR, &["stable"], &[]).ok();
    assert_eq!(run.outcome(), "pushed");
    assert_eq!(run.report["uploaded"]["blobs"], 0, "{:#}", run.report);
    // 4 configs, 4 arch layers and the shared base layer.
    assert_eq!(run.report["uploaded"]["mounted"], 9, "{:#}", run.report);
    let mount_scope = [
        format!("repository:{MIRROR}:pull,push"),
        format!("repository:{REPO}:pull"),
    ];
    let issued = w.issuer.issued();
    let mount_tokens: Vec<_> = issued.iter().filter(|i| i.asked == mount_scope).collect();
    assert_eq!(
        mount_tokens.len(),
        1,
        "one token for every mount: {issued:?}"
    );
    assert_eq!(mount_tokens[0].granted, mount_scope);
    assert!(
        w.env
            .proxy
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .all(|r| r.path.contains("mount=") && r.status == 201),
        "{:?}",
        w.env.proxy.requests()
    );
    let index = skopeo_raw(&format!("{}:stable", w.env.repo_named(MIRROR)));
    assert_eq!(platforms_of(&index), expected_platforms(&w.env.written));
}

#[test]
fn a_mount_the_credentials_cannot_read_from_is_copied_instead() {
    let w = TokenWorld::new(policy().grant("*", &["pull", "push"]));
    w.push(REPO, &["stable"], &[]).ok();
    // From now on these credentials may push the mirror but not read the first repository.
    w.issuer
        .set_policy(policy().grant(MIRROR, &["pull", "push"]));
    let run = w.push(MIRROR, &["stable"], &["-v"]).ok();
    assert_eq!(run.outcome(), "pushed");
    assert_eq!(run.report["uploaded"]["mounted"], 0, "{:#}", run.report);
    assert_eq!(run.report["uploaded"]["blobs"], 9, "{:#}", run.report);
    let said: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("copying them instead"))
        .collect();
    assert_eq!(said.len(), 1, "said once, at -v:\n{}", run.stderr);
    assert!(
        said[0].contains(REPO) && said[0].contains(MIRROR),
        "{}",
        said[0]
    );
    assert_no_secret(&run);
    let index = skopeo_raw(&format!("{}:stable", w.env.repo_named(MIRROR)));
    assert_eq!(platforms_of(&index), expected_platforms(&w.env.written));
}

#[test]
fn a_refused_push_scope_fails_with_one_line_naming_the_repository_and_the_credentials() {
    let w = TokenWorld::new(policy().grant(REPO, &["pull"]));
    let metas = w.env.metas();
    let run = w.push(REPO, &["stable"], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines = error_lines(&run);
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    let line = lines[0];
    assert!(line.starts_with("reprise: error: "), "{line}");
    assert!(line.contains("access denied"), "{line}");
    assert!(
        line.contains(&format!("{}/{REPO}", w.env.proxy.host())),
        "names registry and repository: {line}"
    );
    // The registry lists the actions in no fixed order.
    let lacked = line
        .split_once("does not grant ")
        .and_then(|(_, rest)| rest.split(')').next())
        .unwrap_or_else(|| panic!("names the scope the token lacked: {line}"));
    let actions = lacked
        .strip_prefix(&format!("repository:{REPO}:"))
        .unwrap_or_else(|| panic!("the scope is this repository's: {line}"));
    assert!(actions.split(',').any(|a| a == "push"), "{line}");
    assert!(
        line.contains(w.authfile.to_str().unwrap()),
        "names where the credentials came from: {line}"
    );
    assert_no_secret(&run);
    assert_eq!(w.env.metas(), metas, "nothing recorded");
    assert!(
        w.env.proxy.writes().iter().all(|r| r.status == 401),
        "no write went through: {:?}",
        w.env.proxy.writes()
    );
}

#[test]
fn credentials_the_token_service_refuses_fail_with_one_line() {
    let w = TokenWorld::new(policy().grant(REPO, &["pull", "push"]));
    w.issuer
        .set_policy(Policy::new(USER, "another-password").grant(REPO, &["pull", "push"]));
    let run = w.push(REPO, &["stable"], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines = error_lines(&run);
    assert_eq!(lines.len(), 1, "no retries, one line:\n{}", run.stderr);
    assert!(
        lines[0].contains("token service") && lines[0].contains("refused the credentials"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(w.authfile.to_str().unwrap()),
        "{}",
        lines[0]
    );
    assert_no_secret(&run);
    assert!(w.issuer.issued().iter().all(|i| i.refused));
    assert_eq!(w.env.proxy.writes(), vec![]);
}

#[test]
fn an_anonymous_push_to_a_token_registry_is_refused_in_one_line() {
    let w = TokenWorld::new(policy().grant(REPO, &["pull", "push"]));
    let run = w.env.push_to(&w.env.repo_named(REPO), &["stable"], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines = error_lines(&run);
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(
        lines[0].contains("access denied") && lines[0].contains("anonymous"),
        "{}",
        lines[0]
    );
    // It did ask, anonymously, and was granted nothing.
    let issued = w.issuer.issued();
    assert!(!issued.is_empty());
    assert!(
        issued
            .iter()
            .all(|i| i.user.is_none() && i.granted.is_empty()),
        "{issued:?}"
    );
    assert!(
        w.env.proxy.writes().iter().all(|r| r.status == 401),
        "{:?}",
        w.env.proxy.writes()
    );
}
