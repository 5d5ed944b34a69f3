//! The release config and the tag decision as tables of cases.

use super::config::{self, BuildVars, StageKind, Template};
use super::*;
use crate::reference::Repository;

fn d(c: char) -> Digest {
    Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
}

fn tag(s: &str) -> Tag {
    Tag::parse(s).unwrap()
}

fn arch(s: &str) -> Arch {
    Arch::parse(s).unwrap()
}

#[test]
fn a_tag_is_done_only_when_it_holds_the_wanted_digest() {
    let want = d('a');
    let other = d('b');
    let cases: &[(Option<&Digest>, bool, TagAction, &str)] = &[
        (None, false, TagAction::Push, "tag absent"),
        (Some(&other), false, TagAction::Push, "holds another digest"),
        (Some(&want), false, TagAction::Unchanged, "up to date"),
        (None, true, TagAction::Push, "--force"),
        (Some(&want), true, TagAction::Push, "--force"),
    ];
    for (have, force, action, reason) in cases {
        assert_eq!(
            tag_step(&want, *have, *force),
            (*action, *reason),
            "have {have:?}, force {force}"
        );
    }
}

const DEMO: &str = r#"
[vars]
stream = "stable"

[[stage]]
name = "per-arch"
kind = "arch-tags"
artifact = "ostree"
repo = "quay.io/fedora/{name}"
tags = ["{version}", "{stream}-{basearch}"]

[[stage]]
name = "base"
kind = "container-manifest"
artifact = "ostree"
metajsonname = "base-oscontainer"
repo = "quay.io/fedora/{name}"
tags = ["{stream}", "{version}", "{stream}"]
missing-arch = "keep"
v2s2 = true

[[stage]]
name = "promote"
kind = "copy-tag"
repo = "quay.io/fedora/{name}"
from = "{stream}"
to = ["latest", "{buildid}"]
"#;

fn build() -> BuildVars {
    BuildVars {
        buildid: "40.20261101.3.0".into(),
        arches: vec![arch("x86_64"), arch("aarch64")],
        name: Some("fedora-coreos".into()),
        version: Some("40.20261101.3".into()),
        metas: vec![
            (
                arch("x86_64"),
                "builds/40.20261101.3.0/x86_64/meta.json".into(),
            ),
            (
                arch("aarch64"),
                "builds/40.20261101.3.0/aarch64/meta.json".into(),
            ),
        ],
    }
}

fn parse(text: &str) -> Result<config::Config, String> {
    config::parse(Utf8Path::new("release.toml"), text).map_err(|e| e.to_string())
}

fn expand(text: &str, build: &BuildVars) -> Result<Vec<Stage>, String> {
    config::expand(&parse(text)?, build).map_err(|e| e.to_string())
}

#[test]
fn templates_expand_from_the_build_and_vars() {
    let stages = expand(DEMO, &build()).unwrap();
    let repo = Repository::parse("quay.io/fedora/fedora-coreos").unwrap();
    assert!(stages.iter().all(|s| s.repos == [repo.clone()]));
    assert_eq!(
        stages[0].kind,
        StageKind::ArchTags {
            artifact: "ostree".into(),
            arches: vec![],
            tags: vec![
                (arch("x86_64"), tag("40.20261101.3-x86_64")),
                (arch("x86_64"), tag("stable-x86_64")),
                (arch("aarch64"), tag("40.20261101.3-aarch64")),
                (arch("aarch64"), tag("stable-aarch64")),
            ],
        },
        "a tag without {{basearch}} gets -<arch>; one with it is taken as written"
    );
    assert_eq!(
        stages[1].kind,
        StageKind::ContainerManifest {
            artifact: "ostree".into(),
            metajsonname: "base-oscontainer".into(),
            tags: vec![tag("stable"), tag("40.20261101.3")],
            arches: vec![],
            missing_arch: crate::plan::MissingArch::Keep,
            v2s2: true,
            annotations: Default::default(),
        },
        "a tag named twice is one tag"
    );
    assert_eq!(
        stages[2].kind,
        StageKind::CopyTag {
            from: repo.tagged(&tag("stable")),
            to: vec![
                repo.tagged(&tag("latest")),
                repo.tagged(&tag("40.20261101.3.0"))
            ],
            referrers: true,
        }
    );
}

#[test]
fn an_unknown_key_is_an_error_naming_the_stage_and_line() {
    let text = DEMO.replace("v2s2 = true", "v2s2 = true\ntag = \"oops\"");
    let err = parse(&text).unwrap_err();
    assert!(
        err.starts_with("release.toml:12: stage \"base\": unknown field `tag`"),
        "{err}"
    );
    let err = parse("[vars]\n[[stage]\n").unwrap_err();
    assert!(err.starts_with("release.toml:2: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let err = parse("bogus = 1\n[[stage]]\n").unwrap_err();
    assert!(err.contains("unknown field `bogus`"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn an_unknown_kind_or_missing_field_is_an_error() {
    let err = parse("[[stage]]\nname = \"x\"\nkind = \"teleport\"\n").unwrap_err();
    assert!(
        err.contains("stage \"x\"") && err.contains("unknown variant `teleport`"),
        "{err}"
    );
    let err =
        parse("[[stage]]\nname = \"x\"\nkind = \"copy-tag\"\nrepo = \"a.io/b\"\nto = [\"l\"]\n")
            .unwrap_err();
    assert!(err.contains("missing field `from`"), "{err}");
}

#[test]
fn an_unknown_variable_is_an_error_naming_the_stage_and_field() {
    let text = DEMO.replace(
        r#"tags = ["{stream}", "{version}", "{stream}"]"#,
        r#"tags = ["{stream}", "{strem}"]"#,
    );
    let err = parse(&text).unwrap_err();
    assert!(
        err.starts_with("release.toml:12: stage \"base\": tags[1]: unknown variable {strem}"),
        "{err}"
    );
    assert!(err.contains("stream"), "lists the known ones: {err}");
}

#[test]
fn basearch_is_only_for_arch_tags_tags() {
    let text = DEMO.replace(r#"to = ["latest", "{buildid}"]"#, r#"to = ["{basearch}"]"#);
    let err = parse(&text).unwrap_err();
    assert!(
        err.contains("stage \"promote\": to[0]: {basearch} names one arch"),
        "{err}"
    );
}

#[test]
fn vars_cannot_shadow_build_variables() {
    let text = DEMO.replace(
        "stream = \"stable\"",
        "stream = \"stable\"\nversion = \"1\"",
    );
    let err = parse(&text).unwrap_err();
    assert!(err.contains("[vars] cannot redefine {version}"), "{err}");
}

#[test]
fn duplicate_stage_names_are_an_error() {
    let text = DEMO.replace("name = \"promote\"", "name = \"base\"");
    let err = parse(&text).unwrap_err();
    assert!(err.contains("another stage has the same name"), "{err}");
}

#[test]
fn an_expansion_that_is_not_a_tag_is_an_error() {
    let text = DEMO.replace("stream = \"stable\"", "stream = \"not a tag\"");
    let err = expand(&text, &build()).unwrap_err();
    assert!(
        err.contains("stage \"per-arch\": tags[1]") && err.contains("invalid tag"),
        "{err}"
    );
}

#[test]
fn a_version_the_arches_disagree_on_cannot_be_used() {
    let mut b = build();
    b.version = None;
    let err = expand(DEMO, &b).unwrap_err();
    assert!(
        err.contains("stage \"per-arch\": tags[0]: {version}") && err.contains("ostree-version"),
        "{err}"
    );
}

#[test]
fn arch_tags_arches_must_be_in_the_build() {
    let text = DEMO.replace(
        "tags = [\"{version}\", \"{stream}-{basearch}\"]",
        "tags = [\"{version}\"]\narches = [\"s390x\"]",
    );
    let err = expand(&text, &build()).unwrap_err();
    assert!(err.contains("arches: s390x is not in build"), "{err}");
}

#[test]
fn template_braces_must_pair() {
    assert!(Template::parse("{version").is_err());
    assert!(Template::parse("version}").is_err());
    assert!(Template::parse("{}").is_err());
    assert!(Template::parse("{a{b}").is_err());
    let t = Template::parse("a-{b}-{c_d}").unwrap();
    assert_eq!(t.vars().collect::<Vec<_>>(), ["b", "c_d"]);
    assert_eq!(t.expand(|v| Ok(v.to_uppercase())).unwrap(), "a-B-C_D");
}

#[test]
fn a_bad_template_or_arch_is_an_error_naming_the_field() {
    let stage = "[[stage]]\nname = \"x\"\nrepo = \"a.io/b\"\n";
    let err = parse(&format!(
        "{stage}kind = \"copy-tag\"\nfrom = \"{{a\"\nto = [\"l\"]\n"
    ))
    .unwrap_err();
    assert_eq!(
        err,
        "release.toml:1: stage \"x\": from: \"{a\" has a '{' that is never closed"
    );
    let err = parse(&format!(
        "{stage}kind = \"arch-tags\"\nartifact = \"o\"\ntags = [\"l\"]\narches = [\"x86_64\", \"mips\"]\n"
    ))
    .unwrap_err();
    assert!(
        err.starts_with("release.toml:1: stage \"x\": arches[1]: unknown architecture \"mips\""),
        "{err}"
    );
    let err = parse(&format!(
        "{stage}kind = \"copy-tag\"\nfrom = \"a\"\nto = [\"l\", \"m}}\"]\n"
    ))
    .unwrap_err();
    assert!(
        err.starts_with("release.toml:1: stage \"x\": to[1]: "),
        "{err}"
    );
    let err = parse(&format!(
        "{stage}kind = \"container-manifest\"\nartifact = \"o\"\nmetajsonname = \"m\"\ntags = [\"l\"]\nmissing-arch = \"maybe\"\n"
    ))
    .unwrap_err();
    assert!(err.contains("unknown variant `maybe`"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn an_arch_named_twice_is_one_arch() {
    let text = DEMO.replace(
        "tags = [\"{version}\", \"{stream}-{basearch}\"]",
        "tags = [\"{version}\"]\narches = [\"x86_64\", \"x86_64\"]",
    );
    let stages = expand(&text, &build()).unwrap();
    let StageKind::ArchTags { arches, .. } = &stages[0].kind else {
        panic!("{:?}", stages[0].kind);
    };
    assert_eq!(arches, &vec![arch("x86_64")]);
}
