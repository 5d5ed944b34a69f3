//! The stage kinds beyond container pushes (command, delete-tags), repository lists, full
//! references and needs, as tables of configs and what they expand to.

use camino::Utf8Path;

use super::*;
use crate::reference::{Reference, Repository, Tag};

fn arch(s: &str) -> Arch {
    Arch::parse(s).unwrap()
}

fn build() -> BuildVars {
    BuildVars {
        buildid: "40.1".into(),
        arches: vec![arch("x86_64"), arch("aarch64")],
        name: Some("fcos".into()),
        version: Some("40.1".into()),
        metas: vec![
            (arch("x86_64"), "b/x86_64/meta.json".into()),
            (arch("aarch64"), "b/aarch64/meta.json".into()),
        ],
    }
}

fn parse(text: &str) -> Result<Config, String> {
    super::parse(Utf8Path::new("r.toml"), text).map_err(|e| e.to_string())
}

fn one(text: &str) -> Result<Stage, String> {
    let config = parse(text)?;
    let mut stages = expand(&config, &build()).map_err(|e| e.to_string())?;
    Ok(stages.pop().expect("a stage"))
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

#[test]
fn a_per_arch_command_expands_once_per_arch_with_that_arch_s_meta() {
    let stage = one(r#"
[[stage]]
name = "aws"
kind = "command"
per-arch = true
run = ["cosa", "aws-replicate", "--build={buildid}", "--arch={basearch}"]
env = { REGION = "us-{basearch}" }
done-when = { meta = "/amis" }
timeout = "1h30m"
retries = 2
"#)
    .unwrap();
    let StageKind::Command {
        per_arch,
        runs,
        timeout,
        retries,
    } = stage.kind
    else {
        panic!("{:?}", stage.kind);
    };
    assert!(per_arch);
    assert_eq!(timeout, Some(std::time::Duration::from_secs(5400)));
    assert_eq!(retries, 2);
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].arch, Some(arch("aarch64")));
    assert_eq!(
        runs[1].argv,
        ["cosa", "aws-replicate", "--build=40.1", "--arch=aarch64"]
    );
    assert_eq!(
        runs[1].env,
        [("REGION".to_owned(), "us-aarch64".to_owned())]
    );
    assert_eq!(
        runs[1].done_when,
        DoneWhen::Meta {
            pointer: "/amis".into(),
            metas: vec![(arch("aarch64"), "b/aarch64/meta.json".into())],
        }
    );
    assert!(stage.repos.is_empty());
}

#[test]
fn a_command_run_once_checks_the_pointer_in_every_selected_arch() {
    let stage = one(r#"
[[stage]]
name = "meta"
kind = "command"
run = ["true"]
arches = ["x86_64"]
done-when = { meta = "/release" }
"#)
    .unwrap();
    let StageKind::Command { runs, .. } = stage.kind else {
        panic!();
    };
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].arch, None);
    assert_eq!(
        runs[0].done_when,
        DoneWhen::Meta {
            pointer: "/release".into(),
            metas: vec![(arch("x86_64"), "b/x86_64/meta.json".into())],
        }
    );
}

#[test]
fn command_keys_are_checked_before_anything_runs() {
    let base = "[[stage]]\nname = \"c\"\nkind = \"command\"\n";
    let cases: &[(&str, &str)] = &[
        (
            "run = [\"x\"]\ndone-when = { meta = \"amis\" }\n",
            "done-when.meta: \"amis\" is not a JSON pointer",
        ),
        (
            "run = [\"x\", \"{basearch}\"]\ndone-when = { file = \"f\" }\n",
            "run[1]: {basearch} names one arch",
        ),
        ("run = []\ndone-when = { file = \"f\" }\n", "run is empty"),
        ("run = [\"x\"]\n", "missing field `done-when`"),
        (
            "run = [\"x\"]\ndone-when = { file = \"f\" }\ntimeout = \"2 hours\"\n",
            "timeout: \"2 hours\" is not a duration",
        ),
        (
            "run = [\"x\"]\ndone-when = { file = \"f\" }\ntimeout = \"0s\"\n",
            "timeout: must be more than 0",
        ),
        (
            "run = [\"x\"]\ndone-when = { file = \"f\" }\nenv = { \"A-B\" = \"1\" }\n",
            "env: \"A-B\" is not an environment variable name",
        ),
        (
            "run = [\"x\"]\ndone-when = { mtime = \"f\" }\n",
            "unknown variant `mtime`",
        ),
        (
            "run = [\"x\"]\ndone-when = { file = \"f\" }\nrepo = \"a.io/b\"\n",
            "a command stage has no repository",
        ),
    ];
    for (keys, want) in cases {
        let err = parse(&format!("{base}{keys}")).unwrap_err();
        assert!(err.contains(want), "{keys}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn needs_name_earlier_stages_only() {
    let a = "[[stage]]\nname = \"a\"\nkind = \"command\"\nrun = [\"x\"]\ndone-when = { file = \"f\" }\n";
    let b = "[[stage]]\nname = \"b\"\nkind = \"command\"\nrun = [\"x\"]\ndone-when = { file = \"f\" }\nneeds = [\"a\"]\n";
    assert_eq!(parse(&format!("{a}{b}")).unwrap().stages[1].needs, ["a"]);
    let err = parse(&format!("{b}{a}")).unwrap_err();
    assert!(
        err.contains("needs: \"a\" is not the name of an earlier stage"),
        "{err}"
    );
}

#[test]
fn delete_tags_name_one_tag_per_arch_with_basearch_and_keep_full_references() {
    let stage = one(r#"
[[stage]]
name = "cleanup"
kind = "delete-tags"
repo = ["a.io/staging", "b.io/staging"]
tags = ["{basearch}-{buildid}", "{buildid}"]
keep = ["a.io/coreos:main", "main"]
"#)
    .unwrap();
    assert_eq!(
        stage.repos,
        [
            Repository::parse("a.io/staging").unwrap(),
            Repository::parse("b.io/staging").unwrap()
        ]
    );
    let StageKind::DeleteTags { tags, keep } = stage.kind else {
        panic!();
    };
    let tags: Vec<&str> = tags.iter().map(Tag::as_str).collect();
    assert_eq!(tags, ["x86_64-40.1", "aarch64-40.1", "40.1"]);
    assert_eq!(
        keep,
        [
            r("a.io/coreos:main"),
            r("a.io/staging:main"),
            r("b.io/staging:main")
        ],
        "a bare tag in keep is kept in each of the stage's repositories"
    );
}

#[test]
fn copy_tag_takes_full_references_across_registries_and_tags_in_each_repo() {
    let stage = one(r#"
[[stage]]
name = "promote"
kind = "copy-tag"
from = "a.io/fcos:{buildid}"
to = ["b.io/mirror/fcos:stable", "c.io/fcos:stable"]
"#)
    .unwrap();
    assert_eq!(
        stage.kind,
        StageKind::CopyTag {
            from: r("a.io/fcos:40.1"),
            to: vec![r("b.io/mirror/fcos:stable"), r("c.io/fcos:stable")],
            referrers: true,
        }
    );
    let stage = one(r#"
[[stage]]
name = "promote"
kind = "copy-tag"
repo = ["a.io/fcos", "b.io/fcos"]
from = "next"
to = ["stable"]
referrers = false
"#)
    .unwrap();
    assert_eq!(
        stage.kind,
        StageKind::CopyTag {
            from: r("a.io/fcos:next"),
            to: vec![r("a.io/fcos:stable"), r("b.io/fcos:stable")],
            referrers: false,
        },
        "a bare from is read in the first repository; a bare to is written in each"
    );
    let err =
        one("[[stage]]\nname = \"p\"\nkind = \"copy-tag\"\nfrom = \"next\"\nto = [\"a.io/b:c\"]\n")
            .unwrap_err();
    assert!(
        err.contains("from: \"next\" is a tag, and the stage has no repo"),
        "{err}"
    );
    let err = one(&format!(
        "[[stage]]\nname = \"p\"\nkind = \"copy-tag\"\nfrom = \"a.io/b:c\"\nto = [\"a.io/b@sha256:{}\"]\n",
        "0".repeat(64)
    ))
    .unwrap_err();
    assert!(err.contains("names a digest"), "{err}");
}

#[test]
fn a_repo_list_may_not_be_empty_and_stages_that_write_need_one() {
    let err = parse("[[stage]]\nname = \"x\"\nkind = \"delete-tags\"\nrepo = []\ntags = [\"a\"]\n")
        .unwrap_err();
    assert!(err.contains("repo is empty"), "{err}");
    let err =
        parse("[[stage]]\nname = \"x\"\nkind = \"delete-tags\"\ntags = [\"a\"]\n").unwrap_err();
    assert!(err.contains("missing field `repo`"), "{err}");
}

#[test]
fn durations_read_as_written() {
    use std::time::Duration;
    let cases: &[(&str, Option<u64>)] = &[
        ("45s", Some(45)),
        ("90m", Some(5400)),
        ("2h", Some(7200)),
        ("1h30m", Some(5400)),
        ("1h1m1s", Some(3661)),
        ("5", None),
        ("h", None),
        ("1d", None),
        ("-1s", None),
    ];
    for (text, want) in cases {
        assert_eq!(
            field::parse_duration(text),
            want.map(Duration::from_secs),
            "{text}"
        );
    }
}
