//! The plan as a table: (remote state, records, flags) → expected actions.

use super::*;
use crate::archive::OCI_MANIFEST;
use crate::v2s2;

pub(super) fn d(c: char) -> Digest {
    Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
}

pub(super) fn tag(s: &str) -> Tag {
    Tag::parse(s).unwrap()
}

pub(super) fn entry(arch: &str, c: char) -> Entry {
    let arch = Arch::parse(arch).unwrap();
    Entry {
        platform: Platform::new("linux", arch.oci_architecture(), None),
        digest: d(c),
        size: 500,
        media_type: OCI_MANIFEST.to_owned(),
    }
}

fn repo() -> Repository {
    Repository::parse("quay.io/fedora/fedora-coreos").unwrap()
}

/// A build of (arch, manifest digest char), records as given.
fn desired(arches: &[(&str, char)], tags: &[&str]) -> Desired {
    Desired {
        repo: repo(),
        tags: tags.iter().map(|t| tag(t)).collect(),
        arches: arches
            .iter()
            .map(|(a, c)| DesiredArch {
                arch: Arch::parse(a).unwrap(),
                entry: entry(a, *c),
                existing_record: None,
            })
            .collect(),
        format: index::Format::Oci,
        records: true,
        annotations: None,
    }
}

fn built_of(arches: &[(&str, char)]) -> index::BuiltIndex {
    index::build(arches.iter().map(|(a, c)| entry(a, *c)).collect())
}

/// A tag holding an index with exactly these entries, built the way reprise builds it.
fn holds_built(arches: &[(&str, char)]) -> TagState {
    let b = built_of(arches);
    TagState::Present {
        digest: b.digest,
        content: Some(RemoteContent {
            bytes: b.bytes,
            media_type: b.media_type,
            kind: ContentKind::Index,
            platforms: b.entries,
            other: vec![],
            annotations: Default::default(),
        }),
    }
}

/// A tag holding an index with these entries in other bytes (as another tool writes it).
fn holds_foreign(arches: &[(&str, char)]) -> TagState {
    let platforms: Vec<Entry> = arches.iter().rev().map(|(a, c)| entry(a, *c)).collect();
    let bytes = format!("foreign index {arches:?}").into_bytes();
    TagState::Present {
        digest: Digest::of(&bytes),
        content: Some(RemoteContent {
            bytes,
            media_type: index::DOCKER_LIST.to_owned(),
            kind: ContentKind::Index,
            platforms,
            other: vec![],
            annotations: Default::default(),
        }),
    }
}

/// A tag holding the single image manifest `c` of `arch` (as a per-arch push leaves it).
fn holds_image(arch: &str, c: char) -> TagState {
    let e = entry(arch, c);
    TagState::Present {
        digest: e.digest.clone(),
        content: Some(RemoteContent {
            bytes: format!("image manifest {c}").into_bytes(),
            media_type: OCI_MANIFEST.to_owned(),
            kind: ContentKind::Image,
            platforms: vec![e],
            other: vec![],
            annotations: Default::default(),
        }),
    }
}

fn observed(tags: &[(&str, TagState)]) -> Observed {
    Observed {
        tags: tags.iter().map(|(t, s)| (tag(t), s.clone())).collect(),
        manifests: BTreeMap::new(),
    }
}

fn with_records(mut d: Desired, mld: &Digest) -> Desired {
    let tags = d.tags.clone();
    let repo = d.repo.clone();
    for a in &mut d.arches {
        let rec = Record {
            image: repo.clone(),
            digest: a.entry.digest.clone(),
            manifest_list_digest: mld.clone(),
            tags: tags.clone(),
        };
        a.existing_record = Some(serde_json::to_value(&rec).unwrap());
    }
    d
}

const FOUR: &[(&str, char)] = &[
    ("x86_64", 'a'),
    ("aarch64", 'b'),
    ("ppc64le", 'c'),
    ("s390x", 'e'),
];

fn actions(p: &Plan) -> Vec<(&str, TagAction)> {
    p.tags.iter().map(|t| (t.tag.as_str(), t.action)).collect()
}

#[test]
fn first_push_pushes_images_and_every_tag_and_records() {
    let p = plan(
        &desired(FOUR, &["stable", "40"]),
        &observed(&[("stable", TagState::Absent), ("40", TagState::Absent)]),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(p.outcome(), Outcome::Pushed);
    assert!(p.push_images);
    assert_eq!(p.index.source, IndexSource::Built);
    assert_eq!(p.index.digest, built_of(FOUR).digest);
    assert_eq!(
        actions(&p),
        [("stable", TagAction::Push), ("40", TagAction::Push)]
    );
    assert_eq!(p.records_to_write().count(), 4);
    assert!(p.records.iter().all(|r| r.state == RecordState::Missing));
}

#[test]
fn noop_rerun_sends_no_write_and_records_nothing() {
    let built = built_of(FOUR);
    let p = plan(
        &with_records(desired(FOUR, &["stable", "40"]), &built.digest),
        &observed(&[("stable", holds_built(FOUR)), ("40", holds_built(FOUR))]),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(p.outcome(), Outcome::Noop);
    assert!(!p.push_images);
    assert_eq!(p.records_to_write().count(), 0);
}

#[test]
fn tags_up_to_date_but_record_missing_is_record_only() {
    let built = built_of(FOUR);
    let mut d = with_records(desired(FOUR, &["stable"]), &built.digest);
    d.arches[2].existing_record = None;
    let p = plan(
        &d,
        &observed(&[("stable", holds_built(FOUR))]),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(p.outcome(), Outcome::Recorded);
    assert!(!p.push_images);
    let written: Vec<_> = p.records_to_write().map(|r| r.arch.as_str()).collect();
    assert_eq!(written, ["ppc64le"]);
}

#[test]
fn stale_record_is_rewritten() {
    let built = built_of(FOUR);
    let old = d('9');
    let p = plan(
        &with_records(desired(FOUR, &["stable"]), &old),
        &observed(&[("stable", holds_built(FOUR))]),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(p.outcome(), Outcome::Recorded);
    assert!(
        p.records
            .iter()
            .all(|r| r.state == RecordState::Stale && r.write)
    );
    assert!(
        p.records
            .iter()
            .all(|r| r.record.manifest_list_digest == built.digest)
    );
}

#[test]
fn only_the_drifted_tag_is_rewritten() {
    let built = built_of(FOUR);
    let older = &[
        ("x86_64", 'a'),
        ("aarch64", 'b'),
        ("ppc64le", 'c'),
        ("s390x", '0'),
    ];
    let p = plan(
        &with_records(desired(FOUR, &["stable", "40"]), &built.digest),
        &observed(&[("stable", holds_built(FOUR)), ("40", holds_built(older))]),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(
        actions(&p),
        [("stable", TagAction::Unchanged), ("40", TagAction::Push)]
    );
    assert_eq!(p.tags[1].reason, "index differs");
    // The manifests are pushed (or found present) before the index goes to "40".
    assert!(p.push_images);
    assert_eq!(p.records_to_write().count(), 0);
}

#[test]
fn an_index_written_by_another_tool_with_the_same_mapping_is_left_alone() {
    let foreign = holds_foreign(FOUR);
    let TagState::Present { digest: fd, .. } = &foreign else {
        unreachable!()
    };
    let p = plan(
        &desired(FOUR, &["stable"]),
        &observed(&[("stable", foreign.clone())]),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(actions(&p), [("stable", TagAction::Unchanged)]);
    assert_eq!(p.index.digest, *fd);
    assert_eq!(p.index.source, IndexSource::Reused { tag: tag("stable") });
    assert_eq!(p.outcome(), Outcome::Recorded);
    assert!(
        p.records
            .iter()
            .all(|r| r.record.manifest_list_digest == *fd)
    );
}

#[test]
fn an_equivalent_index_is_reused_for_the_other_tags() {
    let foreign = holds_foreign(FOUR);
    let TagState::Present { digest: fd, .. } = &foreign else {
        unreachable!()
    };
    let p = plan(
        &desired(FOUR, &["stable", "40"]),
        &observed(&[("stable", foreign.clone()), ("40", TagState::Absent)]),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(
        actions(&p),
        [("stable", TagAction::Unchanged), ("40", TagAction::Push)]
    );
    assert_eq!(p.index.digest, *fd);
    assert_eq!(p.index.media_type, index::DOCKER_LIST);
    assert!(
        !p.push_images,
        "a reused index's manifests are already there"
    );
}

#[test]
fn force_pushes_everything_with_reprises_own_index() {
    let built = built_of(FOUR);
    let p = plan(
        &with_records(desired(FOUR, &["stable", "40"]), &built.digest),
        &observed(&[("stable", holds_built(FOUR)), ("40", holds_foreign(FOUR))]),
        &Policy {
            force: true,
            ..Policy::default()
        },
    )
    .unwrap();
    assert_eq!(
        actions(&p),
        [("stable", TagAction::Push), ("40", TagAction::Push)]
    );
    assert_eq!(p.index.source, IndexSource::Built);
    assert!(p.push_images);
    assert_eq!(p.records_to_write().count(), 0, "records already say this");
}

#[test]
fn missing_arch_is_refused_by_default() {
    let three = &FOUR[..3];
    let err = plan(
        &desired(three, &["stable", "40"]),
        &observed(&[("stable", holds_built(FOUR)), ("40", holds_built(FOUR))]),
        &Policy::default(),
    )
    .unwrap_err();
    let Refusal::MissingArches(missing) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].arch, Arch::parse("s390x").ok());
    assert_eq!(missing[0].tags, [tag("stable"), tag("40")]);
    let msg = err.to_string();
    assert!(msg.contains("s390x") && msg.contains("stable, 40"), "{msg}");
}

#[test]
fn keep_carries_the_remote_entry() {
    let three = &FOUR[..3];
    let p = plan(
        &desired(three, &["stable"]),
        &observed(&[(
            "stable",
            holds_built(&[
                ("x86_64", '0'),
                ("aarch64", 'b'),
                ("ppc64le", 'c'),
                ("s390x", 'e'),
            ]),
        )]),
        &Policy {
            missing_arch: MissingArch::Keep,
            ..Policy::default()
        },
    )
    .unwrap();
    assert_eq!(p.index.digest, built_of(FOUR).digest);
    assert_eq!(p.carried.len(), 1);
    assert_eq!(p.carried[0].digest, d('e'));
    assert_eq!(
        p.records.len(),
        3,
        "a carried arch's meta.json is not touched"
    );
}

#[test]
fn keep_refuses_when_tags_disagree_on_a_carried_arch() {
    let three = &FOUR[..3];
    let other = &[
        ("x86_64", 'a'),
        ("aarch64", 'b'),
        ("ppc64le", 'c'),
        ("s390x", '7'),
    ];
    let err = plan(
        &desired(three, &["stable", "40"]),
        &observed(&[("stable", holds_built(FOUR)), ("40", holds_built(other))]),
        &Policy {
            missing_arch: MissingArch::Keep,
            ..Policy::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, Refusal::ConflictingCarry { .. }), "{err:?}");
}

#[test]
fn drop_publishes_only_this_build() {
    let three = &FOUR[..3];
    let p = plan(
        &desired(three, &["stable"]),
        &observed(&[("stable", holds_built(FOUR))]),
        &Policy {
            missing_arch: MissingArch::Drop,
            ..Policy::default()
        },
    )
    .unwrap();
    assert_eq!(p.index.digest, built_of(three).digest);
    assert_eq!(p.dropped.len(), 1);
    assert_eq!(p.dropped[0].digest, d('e'));
    assert_eq!(actions(&p), [("stable", TagAction::Push)]);
}

#[test]
fn a_duplicate_platform_is_never_up_to_date() {
    let mut dup = holds_foreign(FOUR);
    if let TagState::Present {
        content: Some(c), ..
    } = &mut dup
    {
        c.platforms.push(entry("x86_64", 'a'));
    }
    let p = plan(
        &desired(FOUR, &["stable"]),
        &observed(&[("stable", dup)]),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(actions(&p), [("stable", TagAction::Push)]);
    assert_eq!(p.duplicates.len(), 1);
}

/// An attestation entry (buildkit style) describing `refers_to`.
fn attestation(c: char, refers_to: char) -> OtherEntry {
    let raw = serde_json::json!({
        "mediaType": OCI_MANIFEST,
        "digest": d(c).as_str(),
        "size": 800,
        "platform": {"architecture": "unknown", "os": "unknown"},
        "annotations": {
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": d(refers_to).as_str(),
        },
    });
    OtherEntry {
        digest: d(c),
        media_type: OCI_MANIFEST.to_owned(),
        refers_to: Some(d(refers_to)),
        size: 800,
        raw: Some(raw),
    }
}

fn with_other(mut state: TagState, other: Vec<OtherEntry>) -> TagState {
    if let TagState::Present {
        content: Some(c), ..
    } = &mut state
    {
        c.other = other;
    }
    state
}

#[test]
fn keep_carries_an_attestation_with_the_manifest_it_describes() {
    let three = &FOUR[..3];
    // 'e' is s390x (carried); '0' was the old x86_64 (replaced by 'a').
    let remote = with_other(
        holds_foreign(&[
            ("x86_64", '0'),
            ("aarch64", 'b'),
            ("ppc64le", 'c'),
            ("s390x", 'e'),
        ]),
        vec![attestation('5', 'e'), attestation('6', '0')],
    );
    let p = plan(
        &desired(three, &["stable"]),
        &observed(&[("stable", remote)]),
        &Policy {
            missing_arch: MissingArch::Keep,
            ..Policy::default()
        },
    )
    .unwrap();
    let carried: Vec<_> = p.carried.iter().map(|c| c.digest.clone()).collect();
    assert_eq!(carried, [d('e'), d('5')]);
    assert_eq!(p.carried[1].platform, None);
    let dropped: Vec<_> = p.dropped.iter().map(|c| c.digest.clone()).collect();
    assert_eq!(dropped, [d('6')]);
    let text = String::from_utf8(p.index.bytes.clone()).unwrap();
    assert!(text.contains(d('5').as_str()), "{text}");
    assert!(text.contains("attestation-manifest"), "{text}");
    assert!(!text.contains(d('6').as_str()), "{text}");
    // The platform view of the new index is exactly the build plus the carried arch.
    assert_eq!(p.entries.len(), 4);
}

#[test]
fn drop_drops_attestations_and_says_so() {
    let three = &FOUR[..3];
    let remote = with_other(holds_foreign(FOUR), vec![attestation('5', 'e')]);
    let p = plan(
        &desired(three, &["stable"]),
        &observed(&[("stable", remote)]),
        &Policy {
            missing_arch: MissingArch::Drop,
            ..Policy::default()
        },
    )
    .unwrap();
    assert_eq!(p.index.digest, built_of(three).digest);
    let dropped: Vec<_> = p.dropped.iter().map(|c| c.digest.clone()).collect();
    assert_eq!(dropped, [d('e'), d('5')]);
}

#[test]
fn attestations_alone_are_not_arches_so_refuse_does_not_trigger() {
    let remote = with_other(holds_foreign(FOUR), vec![attestation('5', 'a')]);
    let p = plan(
        &desired(FOUR, &["stable"]),
        &observed(&[("stable", remote)]),
        &Policy::default(),
    )
    .unwrap();
    // Same platform mapping: up to date, nothing dropped from an unwritten tag.
    assert_eq!(actions(&p), [("stable", TagAction::Unchanged)]);
    assert!(p.dropped.is_empty());
}

#[test]
fn v2s2_builds_a_docker_manifest_list() {
    let mut want = desired(FOUR, &["stable"]);
    want.format = index::Format::Docker;
    let p = plan(
        &want,
        &observed(&[("stable", TagState::Absent)]),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(p.index.media_type, index::DOCKER_LIST);
    let text = String::from_utf8(p.index.bytes.clone()).unwrap();
    assert!(text.contains(index::DOCKER_LIST), "{text}");
    assert_ne!(p.index.digest, built_of(FOUR).digest);
}

#[test]
fn images_given_directly_plan_no_records() {
    let mut want = desired(FOUR, &["stable"]);
    want.records = false;
    let p = plan(
        &want,
        &observed(&[("stable", holds_built(FOUR))]),
        &Policy::default(),
    )
    .unwrap();
    assert!(p.records.is_empty());
    assert_eq!(p.outcome(), Outcome::Noop);
}

mod annotations;
mod formats;
