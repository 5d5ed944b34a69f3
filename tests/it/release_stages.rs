//! The rest of a release, against real registries: command stages (done-when, retries,
//! timeouts, a kill in the middle), delete-tags and its refusals, copy-tag to a second
//! registry, and choosing stages (--only, needs, --check). Every report is checked against
//! the schema.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::support::check::validate;
use crate::support::env::Env;
use crate::support::proxy::Proxy;
use crate::support::registry::{Options, Registry};
use crate::support::run::Run;
use crate::support::skopeo::inspect_raw;
use reprise_fixtures::{self as fixtures, BuildSpec};
use serde_json::Value;

/// `reprise run --config CONFIG --json EXTRA...`, its report checked against the schema when
/// it printed one.
fn release(env: &Env, config: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "run".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
        "--json".to_owned(),
        "--retry-delay".to_owned(),
        "0".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let run = env.reprise(&args);
    if !run.report.is_null() {
        validate("report.schema.json", &run.report);
    }
    run
}

fn stage<'a>(run: &'a Run, name: &str) -> &'a Value {
    run.report["stages"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no stage {name}: {}\n{}", run.report, run.stderr))
}

fn outcomes(run: &Run) -> Vec<String> {
    run.report["stages"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| s["outcome"].as_str().unwrap_or("?").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A command stage running `sh -c SCRIPT` in the working directory, then a copy-tag stage
/// that must not run when the command fails.
fn command_then_copy(env: &Env, script: &str, keys: &str) -> PathBuf {
    env.release_config(&format!(
        r#"
[[stage]]
name = "cmd"
kind = "command"
run = ["sh", "-c", {script:?}]
{keys}

[[stage]]
name = "promote"
kind = "copy-tag"
repo = "{}"
from = "stable"
to = ["latest"]
"#,
        env.repo()
    ))
}

#[test]
fn a_program_that_exits_0_without_making_done_when_true_fails_the_stage() {
    let env = Env::new();
    env.push(&["stable"], &[]).ok();
    let config = command_then_copy(&env, "echo working", "done-when = { meta = \"/never\" }");
    env.proxy.clear();
    let run = release(&env, &config, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(outcomes(&run), ["failed", "not-run"]);
    let error = stage(&run, "cmd")["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("sh exited 0, but the metadata does not show it done")
            && error.contains("/never is absent"),
        "{error}"
    );
    assert!(run.stderr.contains("[cmd] working"), "{}", run.stderr);
    let attempts = &stage(&run, "cmd")["runs"][0]["attempts"];
    assert_eq!(
        attempts.as_array().map(Vec::len),
        Some(1),
        "exit 0 is not retried"
    );
    assert_eq!(env.proxy.writes(), vec![], "the copy never ran");
}

#[test]
fn a_program_that_exits_non_zero_is_retried_until_its_retries_are_spent() {
    let env = Env::new();
    env.push(&["stable"], &[]).ok();
    // Fails twice, then succeeds and leaves the file done-when looks for.
    let script = "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; \
                  echo attempt $n; [ $n -ge 3 ] && touch done";
    let config = command_then_copy(&env, script, "done-when = { file = \"done\" }\nretries = 1");
    let run = release(&env, &config, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(outcomes(&run), ["failed", "not-run"]);
    let attempts = stage(&run, "cmd")["runs"][0]["attempts"].clone();
    assert_eq!(attempts.as_array().map(Vec::len), Some(2), "{attempts}");
    assert!(attempts.as_array().unwrap().iter().all(|a| a["exit"] == 1));

    let config = command_then_copy(&env, script, "done-when = { file = \"done\" }\nretries = 2");
    let run = release(&env, &config, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(outcomes(&run), ["ran", "pushed"]);
    let cmd = stage(&run, "cmd");
    assert_eq!(cmd["runs"][0]["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(cmd["runs"][0]["after"]["holds"], true);
    assert!(env.dir().join("done").exists());

    // Done now: the program is not run again.
    let again = release(&env, &config, &[]).ok();
    assert_eq!(outcomes(&again), ["noop", "noop"]);
    assert_eq!(
        std::fs::read_to_string(env.dir().join("count"))
            .unwrap()
            .trim(),
        "3"
    );
}

#[test]
fn a_timeout_kills_the_program_s_whole_process_group() {
    let env = Env::new();
    env.push(&["stable"], &[]).ok();
    let config = command_then_copy(
        &env,
        "sleep 600 & echo $! > child.pid; wait",
        "done-when = { file = \"done\" }\ntimeout = \"1s\"",
    );
    let run = release(&env, &config, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let attempt = &stage(&run, "cmd")["runs"][0]["attempts"][0];
    assert_eq!(attempt["timed_out"], true, "{attempt}");
    let error = stage(&run, "cmd")["error"].as_str().unwrap_or_default();
    assert!(error.contains("was killed after its timeout"), "{error}");
    let pid = std::fs::read_to_string(env.dir().join("child.pid")).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
    // Gone, or a zombie waiting for init: either way no longer running.
    assert!(
        stat.as_ref().map_or(true, |s| s.contains(") Z ")),
        "the background child survived: {stat:?}"
    );
}

#[test]
fn killing_the_release_inside_the_command_stage_then_rerunning_finishes_it() {
    let env = Env::new();
    let config = env.demo_release_config();
    let mut child = env
        .command(&[
            "run".into(),
            "--config".into(),
            config.display().to_string(),
        ])
        .env("DEMO_UPLOAD_HANG", "1")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start reprise");
    // The program says it is uploading, then waits: the release is inside the stage.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let program_pid = loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).expect("read stderr");
        assert!(n > 0, "reprise ended before the command stage:\n{seen}");
        seen.push_str(&line);
        if let Some(rest) = line.strip_prefix("[cloud/x86_64] uploading x86_64 (pid ") {
            break rest.trim_end().trim_end_matches(')').to_owned();
        }
    };
    child.kill().expect("kill reprise");
    child.wait().unwrap();
    // reprise died with SIGKILL; its program, in a process group of its own, is killed too.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{program_pid}")])
        .status()
        .unwrap();
    assert!(killed.success());
    let meta: Value =
        serde_json::from_slice(&std::fs::read(env.meta_path("x86_64")).unwrap()).unwrap();
    assert!(
        meta.get("demo-uploads").is_none(),
        "killed before it recorded"
    );

    env.proxy.clear();
    let resumed = release(&env, &config, &[]).ok();
    assert_eq!(
        outcomes(&resumed),
        ["noop", "noop", "noop", "noop", "ran", "noop"]
    );
    assert_eq!(env.proxy.writes(), vec![], "the container stages were done");
    for w in &env.written {
        let meta: Value = serde_json::from_slice(&std::fs::read(&w.meta).unwrap()).unwrap();
        assert!(meta["demo-uploads"][0]["image"].is_string(), "{}", w.arch);
    }
}

/// Each arch on `{version}-{arch}` in `staging`, then the index in `index_repo`, then the
/// clean-up of the staging tags with `keep`.
fn cleanup_config(env: &Env, index_repo: &str, keep: &str) -> PathBuf {
    let staging = env.repo_named("fcos/staging");
    env.release_config(&format!(
        r#"
[[stage]]
name = "staging"
kind = "arch-tags"
artifact = "ostree"
repo = "{staging}"
tags = ["{{version}}"]

[[stage]]
name = "base"
kind = "container-manifest"
artifact = "ostree"
metajsonname = "base-oscontainer"
repo = "{index_repo}"
tags = ["stable"]

[[stage]]
name = "cleanup"
kind = "delete-tags"
repo = "{staging}"
tags = ["{{version}}-{{basearch}}"]
keep = [{keep:?}]
"#
    ))
}

fn staging_tag(env: &Env, arch: &str) -> Option<Vec<u8>> {
    inspect_raw(&format!(
        "{}/fcos/staging:{}-{arch}",
        env.registry.host(),
        fixtures::DEMO_ID
    ))
}

#[test]
fn delete_tags_is_refused_while_a_keep_index_in_the_same_repository_needs_the_manifest() {
    let env = Env::new();
    let staging = env.repo_named("fcos/staging");
    let config = cleanup_config(&env, &staging, "stable");
    let run = release(&env, &config, &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(outcomes(&run), ["pushed", "pushed", "refused"]);
    let refusal = stage(&run, "cleanup")["refusal"]
        .as_str()
        .unwrap_or_default();
    assert!(
        refusal.contains(&format!("{staging}:stable still needs its manifest")),
        "{refusal}"
    );
    assert!(run.stderr.contains("refused:"), "{}", run.stderr);
    assert!(
        env.proxy.writes().iter().all(|w| w.method != "DELETE"),
        "nothing deleted"
    );
    for w in &env.written {
        assert!(staging_tag(&env, &w.arch).is_some(), "{}", w.arch);
    }
}

#[test]
fn delete_by_digest_is_refused_when_another_tag_s_index_lists_the_manifest() {
    let env = Env::new();
    let staging = env.repo_named("fcos/staging");
    // No keep at all: the staging repository's own `stable` index still lists the manifests.
    let config = cleanup_config(&env, &staging, &format!("{}:other", env.repo()));
    let run = release(&env, &config, &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let refusal = stage(&run, "cleanup")["refusal"]
        .as_str()
        .unwrap_or_default();
    assert!(
        refusal.contains("deletes only by digest")
            && refusal.contains(&format!("{staging}:stable"))
            && refusal.contains("its index lists that manifest"),
        "{refusal}"
    );
    let deletes: Vec<_> = env
        .proxy
        .writes()
        .into_iter()
        .filter(|w| w.method == "DELETE")
        .collect();
    assert!(
        deletes
            .iter()
            .all(|d| !d.path.contains("/manifests/sha256:")),
        "asked by tag only, never by digest: {deletes:?}"
    );
    let bytes = inspect_raw(&format!("{}/fcos/staging:stable", env.registry.host()));
    assert!(bytes.is_some(), "the index is intact");
}

#[test]
fn delete_tags_succeeds_once_the_index_lives_in_another_repository_and_reruns_as_a_noop() {
    let env = Env::new();
    let config = cleanup_config(&env, &env.repo(), &format!("{}:stable", env.repo()));
    let run = release(&env, &config, &[]).ok();
    assert_eq!(outcomes(&run), ["pushed", "pushed", "deleted"]);
    let deletes = stage(&run, "cleanup")["deletes"]
        .as_array()
        .cloned()
        .unwrap();
    assert_eq!(deletes.len(), 4);
    assert!(
        deletes.iter().all(|d| d["deleted_by"] == "digest"),
        "{deletes:?}"
    );
    for w in &env.written {
        assert_eq!(staging_tag(&env, &w.arch), None, "{}", w.arch);
        // The index's own copy of each manifest is untouched.
        let child = inspect_raw(&format!("{}@{}", env.direct_repo(), w.manifest_digest));
        assert!(child.is_some(), "{}", w.arch);
    }

    // A rerun: the staging stage pushes its tags again (it is the build jobs' part, here in
    // the same file), so only the clean-up is asked for: nothing left to delete.
    env.proxy.clear();
    let again = release(&env, &config, &["--only", "cleanup"]).ok();
    assert_eq!(outcomes(&again), ["not-selected", "not-selected", "noop"]);
    assert_eq!(
        env.proxy.writes(),
        vec![],
        "a second clean-up sends no write"
    );
}

#[test]
fn a_registry_with_deletes_turned_off_gets_one_clear_line() {
    let env = Env::with_registry(
        &Options {
            deletes_disabled: true,
            ..Options::default()
        },
        &[BuildSpec::demo()],
    );
    let config = cleanup_config(&env, &env.repo(), &format!("{}:stable", env.repo()));
    let run = release(&env, &config, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = stage(&run, "cleanup")["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("does not allow deletes (HTTP 405)") && error.lines().count() == 1,
        "{error}"
    );
    assert!(!run.stderr.contains("retrying"), "{}", run.stderr);
}

#[test]
fn copy_tag_to_a_second_registry_brings_every_child_and_reruns_with_zero_writes() {
    let env = Env::new();
    env.push(&["stable"], &[]).ok();
    let second = Registry::start();
    let proxy2 = Proxy::start(second.addr());
    let config = env.release_config(&format!(
        r#"
[[stage]]
name = "mirror"
kind = "copy-tag"
from = "{}:stable"
to = ["{}/mirror/fcos:stable", "{}/mirror/fcos:{{buildid}}"]
"#,
        env.repo(),
        proxy2.host(),
        proxy2.host()
    ));
    env.proxy.clear();
    let run = release(&env, &config, &[]).ok();
    assert_eq!(outcomes(&run), ["pushed"]);
    let index = env.tag_digest("stable").expect("stable");
    let target = format!("{}/mirror/fcos", second.host());
    let copied = inspect_raw(&format!("{target}:stable")).expect("copied index");
    assert_eq!(fixtures::sha256_digest(&copied), index);
    let body: Value = serde_json::from_slice(&copied).unwrap();
    for child in body["manifests"].as_array().unwrap() {
        let digest = child["digest"].as_str().unwrap();
        let manifest = inspect_raw(&format!("{target}@{digest}")).expect("child there");
        let manifest: Value = serde_json::from_slice(&manifest).unwrap();
        // Every blob, fetched by an independent client from the second registry.
        let layers = manifest["layers"].as_array().unwrap();
        for blob in layers.iter().chain([&manifest["config"]]) {
            let url = format!(
                "http://{}/v2/mirror/fcos/blobs/{}",
                second.host(),
                blob["digest"].as_str().unwrap()
            );
            let got = std::process::Command::new("curl")
                .args(["-fsS", "-o", "/dev/null", "-w", "%{size_download}", &url])
                .output()
                .unwrap();
            assert!(got.status.success(), "{url}");
            assert_eq!(
                String::from_utf8_lossy(&got.stdout),
                blob["size"].to_string(),
                "{url}"
            );
        }
    }
    assert_eq!(
        env.proxy.writes(),
        vec![],
        "the source registry is only read"
    );
    let uploaded = &stage(&run, "mirror")["uploaded"];
    assert!(uploaded["blobs"].as_u64().unwrap_or(0) > 0, "{uploaded}");
    assert_eq!(uploaded["mounted"], 0, "no mount across registries");

    proxy2.clear();
    env.proxy.clear();
    let again = release(&env, &config, &[]).ok();
    assert_eq!(outcomes(&again), ["noop"]);
    assert_eq!(proxy2.writes(), vec![], "zero writes at the target");
    assert_eq!(env.proxy.writes(), vec![]);
    assert_eq!(
        proxy2.requests().len(),
        2,
        "one HEAD per target tag: {:?}",
        proxy2.requests()
    );
}

#[test]
fn check_exits_4_before_the_release_and_0_after_and_only_refuses_unmet_needs() {
    let env = Env::new();
    let config = env.demo_release_config();

    let check = release(&env, &config, &["--check"]);
    assert_eq!(check.code, 4, "{}", check.stderr);
    assert_eq!(check.report["release"]["check"], true);
    assert!(stage(&check, "cloud")["pending"].as_bool().unwrap());
    // --dry-run says, per arch, whether it is done and why.
    for w in &env.written {
        assert!(
            check.stderr.contains(&format!(
                "{:<8} would run: /demo-uploads is absent in",
                w.arch
            )),
            "{}",
            check.stderr
        );
    }
    assert_eq!(env.proxy.writes(), vec![], "--check writes nothing");

    // cleanup needs base, which has not run: refused, nothing deleted.
    let only = release(&env, &config, &["--only", "cleanup"]);
    assert_eq!(only.code, 3, "{}", only.stderr);
    let refusal = stage(&only, "cleanup")["refusal"]
        .as_str()
        .unwrap_or_default();
    assert!(
        refusal.contains("needs stage \"base\", which is not done"),
        "{refusal}"
    );
    assert_eq!(stage(&only, "base")["outcome"], "not-selected");
    assert_eq!(env.proxy.writes(), vec![]);

    release(&env, &config, &[]).ok();
    let done = release(&env, &config, &["--check"]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    assert!(
        done.report["stages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["pending"] == false)
    );

    let from = release(&env, &config, &["--from", "cloud"]).ok();
    assert_eq!(
        outcomes(&from),
        [
            "not-selected",
            "not-selected",
            "not-selected",
            "not-selected",
            "noop",
            "noop"
        ]
    );
    let unknown = release(&env, &config, &["--only", "clud"]);
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("has no stage \"clud\""),
        "{}",
        unknown.stderr
    );
}

#[test]
fn a_container_manifest_stage_with_two_repositories_records_the_second_as_an_additional_image() {
    let env = Env::new();
    let second = env.repo_named("mirror/fcos");
    let config = env.release_config(&format!(
        r#"
[[stage]]
name = "base"
kind = "container-manifest"
artifact = "ostree"
metajsonname = "base-oscontainer"
repo = ["{}", "{second}"]
tags = ["stable"]
"#,
        env.repo()
    ));
    let run = release(&env, &config, &[]).ok();
    assert_eq!(outcomes(&run), ["pushed"]);
    let base = stage(&run, "base");
    assert_eq!(base["additional_pushes"].as_array().map(Vec::len), Some(1));
    assert!(
        base["additional_pushes"][0]["uploaded"]["mounted"]
            .as_u64()
            .unwrap()
            > 0,
        "blobs mounted from the first repository: {base}"
    );
    for w in &env.written {
        let record = env.record(w);
        assert_eq!(record["image"], env.repo(), "{record}");
        assert_eq!(record["additional-images"][0]["image"], second, "{record}");
    }
    assert_eq!(
        env.tag_digest("stable"),
        inspect_raw(&format!("{}/mirror/fcos:stable", env.registry.host()))
            .map(|b| fixtures::sha256_digest(&b))
    );
    env.proxy.clear();
    let again = release(&env, &config, &[]).ok();
    assert_eq!(outcomes(&again), ["noop"]);
    assert_eq!(env.proxy.writes(), vec![]);
}

#[test]
fn a_stage_reading_what_a_command_will_push_is_planned_when_its_turn_comes() {
    let env = Env::new();
    env.push(&["stable"], &[]).ok();
    let skopeo_ref = |tag: &str| format!("docker://{}:{tag}", env.repo());
    let config = env.release_config(&format!(
        r#"
[[stage]]
name = "push-next"
kind = "command"
run = ["skopeo", "copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false", {:?}, {:?}]
done-when = {{ check = ["skopeo", "inspect", "--raw", "--tls-verify=false", {:?}] }}

[[stage]]
name = "promote"
kind = "copy-tag"
repo = "{}"
from = "next"
to = ["latest"]
"#,
        skopeo_ref("stable"),
        skopeo_ref("next"),
        skopeo_ref("next"),
        env.repo()
    ));
    let plan = release(&env, &config, &["--dry-run"]).ok();
    let promote = stage(&plan, "promote");
    assert_eq!(promote["outcome"], "planned");
    assert_eq!(promote["after"], serde_json::json!(["push-next"]));
    assert!(
        promote["deferred"]
            .as_str()
            .unwrap_or_default()
            .contains("does not exist"),
        "{promote}"
    );

    let run = release(&env, &config, &[]).ok();
    assert_eq!(outcomes(&run), ["ran", "pushed"]);
    assert_eq!(env.tag_digest("latest"), env.tag_digest("stable"));
    let again = release(&env, &config, &[]).ok();
    assert_eq!(outcomes(&again), ["noop", "noop"]);
}

/// A release killed while recording leaves coreos-assembler's lock on meta.json files it
/// held. cosa's lock library never breaks a lock before its 52-week lifetime, so the command
/// stage's program would wait for ever; reprise clears locks whose holder is provably gone
/// before it hands meta.json to a program.
#[cfg(feature = "fail-points")]
#[test]
fn a_release_killed_while_recording_leaves_no_lock_for_the_command_to_wait_on() {
    let env = Env::new();
    let config = env.demo_release_config();
    let mut crash = env.command(&[
        "run".into(),
        "--config".into(),
        config.display().to_string(),
    ]);
    crash.env("REPRISE_FAIL_AT", "after-record:ppc64le");
    let crashed = Run::of(&mut crash);
    assert_ne!(crashed.code, 0, "{}", crashed.stderr);
    let lock = env
        .meta_path("x86_64")
        .parent()
        .unwrap()
        .join(".meta.json.lock");
    assert!(lock.exists(), "the dead run left the lock behind");

    let resumed = release(&env, &config, &["--lock-timeout", "5"]).ok();
    assert_eq!(
        outcomes(&resumed),
        ["noop", "recorded", "pushed", "pushed", "ran", "noop"]
    );
    assert!(!lock.exists());
    for w in &env.written {
        let meta: Value = serde_json::from_slice(&std::fs::read(&w.meta).unwrap()).unwrap();
        assert!(meta["demo-uploads"][0]["image"].is_string(), "{}", w.arch);
    }
}
