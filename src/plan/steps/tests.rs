//! Each plan step on its own: small inputs, one behaviour per test.

use super::*;
use crate::archive::OCI_MANIFEST;
use crate::plan::DesiredArch;
use crate::plan::tests::{d, entry, tag};
use crate::platform::Arch;
use crate::reference::Repository;

fn holds(platforms: Vec<Entry>, other: Vec<OtherEntry>) -> TagState {
    let bytes = format!("index {platforms:?} {other:?}").into_bytes();
    TagState::Present {
        digest: Digest::of(&bytes),
        content: Some(RemoteContent {
            bytes,
            media_type: index::OCI_INDEX.to_owned(),
            kind: ContentKind::Index,
            platforms,
            other,
            annotations: Default::default(),
        }),
    }
}

fn attestation(c: char, refers_to: char) -> OtherEntry {
    OtherEntry {
        digest: d(c),
        media_type: OCI_MANIFEST.to_owned(),
        refers_to: Some(d(refers_to)),
        size: 800,
        raw: Some(serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d(c).as_str()})),
    }
}

fn carried(c: char, tags: &[&str]) -> RemoteEntry {
    RemoteEntry {
        platform: None,
        digest: d(c),
        converted_from: None,
        tags: tags.iter().map(|t| tag(t)).collect(),
    }
}

fn foreign_of(tags: &[(&str, TagState)]) -> Foreign {
    let tags: Vec<(Tag, TagState)> = tags.iter().map(|(t, s)| (tag(t), s.clone())).collect();
    let states: Vec<(&Tag, &TagState)> = tags.iter().map(|(t, s)| (t, s)).collect();
    foreign_platforms(&[entry("x86_64", 'a')], &states)
}

fn built(arches: &[(&str, char)]) -> Built {
    Built::new(
        index::build(arches.iter().map(|(a, c)| entry(a, *c)).collect()),
        None,
    )
}

fn built_state(b: &Built) -> TagState {
    TagState::Present {
        digest: b.index.digest.clone(),
        content: Some(RemoteContent {
            bytes: b.index.bytes.clone(),
            media_type: b.index.media_type.clone(),
            kind: ContentKind::Index,
            platforms: b.index.entries.clone(),
            other: vec![],
            annotations: Default::default(),
        }),
    }
}

#[test]
fn tag_states_follow_the_given_order_and_default_to_absent() {
    let tags = vec![tag("b"), tag("a")];
    let mut observed = Observed::default();
    observed.tags.insert(tag("a"), holds(vec![], vec![]));
    let states = tag_states(&tags, &observed);
    assert_eq!(states[0], (&tag("b"), &TagState::Absent));
    assert_eq!(states[1].0, &tag("a"));
    assert!(matches!(states[1].1, TagState::Present { .. }));
}

#[test]
fn foreign_platforms_are_the_remote_ones_this_build_lacks() {
    let f = foreign_of(&[
        (
            "a",
            holds(vec![entry("x86_64", 'e'), entry("aarch64", 'b')], vec![]),
        ),
        (
            "b",
            holds(vec![entry("aarch64", 'b')], vec![attestation('c', 'b')]),
        ),
        ("c", TagState::Absent),
    ]);
    let key = entry("aarch64", 'b').platform.key();
    assert_eq!(f.platforms.keys().collect::<Vec<_>>(), vec![&key]);
    let at: Vec<&Tag> = f.platforms[&key].iter().map(|(t, _)| t).collect();
    assert_eq!(at, vec![&tag("a"), &tag("b")]);
    assert_eq!(f.other, vec![(tag("b"), attestation('c', 'b'))]);
    assert!(f.duplicates.is_empty());
}

#[test]
fn foreign_platforms_report_a_platform_listed_twice() {
    let f = foreign_of(&[(
        "a",
        holds(vec![entry("aarch64", 'b'), entry("aarch64", 'c')], vec![]),
    )]);
    assert_eq!(
        f.duplicates,
        vec![(tag("a"), entry("aarch64", 'b').platform.key())]
    );
}

#[test]
fn arch_policy_refuse_names_each_missing_arch_once_per_tag() {
    let f = foreign_of(&[
        ("a", holds(vec![entry("aarch64", 'b')], vec![])),
        ("b", holds(vec![entry("aarch64", 'b')], vec![])),
    ]);
    let Err(Refusal::MissingArches(missing)) = arch_policy(
        MissingArch::Refuse,
        &f,
        index::Format::Oci,
        &BTreeMap::new(),
    ) else {
        panic!("expected a refusal");
    };
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].tags, vec![tag("a"), tag("b")]);
}

#[test]
fn arch_policy_refuse_with_nothing_foreign_changes_nothing() {
    let f = foreign_of(&[("a", holds(vec![entry("x86_64", 'a')], vec![]))]);
    let r = arch_policy(
        MissingArch::Refuse,
        &f,
        index::Format::Oci,
        &BTreeMap::new(),
    )
    .unwrap();
    assert_eq!(r, Remote::default());
}

#[test]
fn arch_policy_keep_carries_the_entry_the_tags_agree_on() {
    let f = foreign_of(&[
        ("a", holds(vec![entry("aarch64", 'b')], vec![])),
        ("b", holds(vec![entry("aarch64", 'b')], vec![])),
    ]);
    let r = arch_policy(MissingArch::Keep, &f, index::Format::Oci, &BTreeMap::new()).unwrap();
    assert_eq!(r.entries, vec![entry("aarch64", 'b')]);
    assert_eq!(r.carried.len(), 1);
    assert_eq!(r.carried[0].digest, d('b'));
    assert_eq!(r.carried[0].tags, vec![tag("a"), tag("b")]);
    assert!(r.converted.is_empty() && r.dropped.is_empty());
}

#[test]
fn arch_policy_keep_refuses_tags_that_disagree() {
    let f = foreign_of(&[
        ("a", holds(vec![entry("aarch64", 'b')], vec![])),
        ("b", holds(vec![entry("aarch64", 'c')], vec![])),
    ]);
    let r = arch_policy(MissingArch::Keep, &f, index::Format::Oci, &BTreeMap::new());
    assert!(matches!(r, Err(Refusal::ConflictingCarry { .. })), "{r:?}");
}

#[test]
fn arch_policy_keep_refuses_a_platform_a_tag_lists_twice() {
    let f = foreign_of(&[(
        "a",
        holds(vec![entry("aarch64", 'b'), entry("aarch64", 'c')], vec![]),
    )]);
    let r = arch_policy(MissingArch::Keep, &f, index::Format::Oci, &BTreeMap::new());
    assert!(matches!(r, Err(Refusal::DuplicateCarry { .. })), "{r:?}");
}

#[test]
fn arch_policy_keep_refuses_an_entry_it_cannot_read_to_convert() {
    let f = foreign_of(&[("a", holds(vec![entry("aarch64", 'b')], vec![]))]);
    let r = arch_policy(
        MissingArch::Keep,
        &f,
        index::Format::Docker,
        &BTreeMap::new(),
    );
    assert!(matches!(r, Err(Refusal::Unconvertible(_))), "{r:?}");
}

#[test]
fn arch_policy_drop_reports_each_tag_entry_dropped() {
    let f = foreign_of(&[
        ("a", holds(vec![entry("aarch64", 'b')], vec![])),
        ("b", holds(vec![entry("aarch64", 'b')], vec![])),
    ]);
    let r = arch_policy(MissingArch::Drop, &f, index::Format::Oci, &BTreeMap::new()).unwrap();
    assert!(r.entries.is_empty() && r.carried.is_empty());
    let tags: Vec<&[Tag]> = r.dropped.iter().map(|e| e.tags.as_slice()).collect();
    assert_eq!(tags, vec![&[tag("a")][..], &[tag("b")][..]]);
}

#[test]
fn attestations_go_along_with_a_carried_manifest_once() {
    let other = vec![
        (tag("a"), attestation('c', 'b')),
        (tag("b"), attestation('c', 'b')),
    ];
    let a = carried_attestations(&other, &[carried('b', &["a"])], index::Format::Oci);
    assert_eq!(a.entries, vec![attestation('c', 'b')]);
    assert_eq!(a.carried, vec![carried('c', &["a", "b"])]);
    assert!(a.dropped.is_empty());
}

#[test]
fn attestations_of_a_manifest_not_carried_are_dropped() {
    let other = vec![(tag("a"), attestation('c', 'b'))];
    let a = carried_attestations(&other, &[], index::Format::Oci);
    assert!(a.entries.is_empty() && a.carried.is_empty());
    assert_eq!(a.dropped, vec![carried('c', &["a"])]);
}

#[test]
fn attestations_without_their_raw_entry_are_dropped() {
    let mut att = attestation('c', 'b');
    att.raw = None;
    let a = carried_attestations(
        &[(tag("a"), att)],
        &[carried('b', &["a"])],
        index::Format::Oci,
    );
    assert_eq!(a.dropped, vec![carried('c', &["a"])]);
}

#[test]
fn choose_index_reuses_an_equivalent_index_a_tag_holds() {
    let b = built(&[("x86_64", 'a')]);
    let twin = holds(vec![entry("x86_64", 'a')], vec![]);
    let t = tag("a");
    let i = choose_index(&[(&t, &twin)], &b, false);
    assert_eq!(i.source, IndexSource::Reused { tag: tag("a") });
    assert_ne!(i.digest, b.index.digest);
}

#[test]
fn choose_index_builds_under_force_or_when_a_tag_holds_the_built_bytes() {
    let b = built(&[("x86_64", 'a')]);
    let twin = holds(vec![entry("x86_64", 'a')], vec![]);
    let own = built_state(&b);
    let (t1, t2) = (tag("a"), tag("b"));
    assert_eq!(
        choose_index(&[(&t1, &twin)], &b, true).source,
        IndexSource::Built
    );
    let i = choose_index(&[(&t1, &twin), (&t2, &own)], &b, false);
    assert_eq!(i.source, IndexSource::Built);
    assert_eq!(i.digest, b.index.digest);
}

#[test]
fn tag_plans_give_each_tag_its_reason() {
    let b = built(&[("x86_64", 'a')]);
    let own = built_state(&b);
    let twin = holds(vec![entry("x86_64", 'a')], vec![]);
    let other = holds(vec![entry("x86_64", 'e')], vec![]);
    let tags = [tag("own"), tag("twin"), tag("other"), tag("absent")];
    let states = [&own, &twin, &other, &TagState::Absent];
    let states: Vec<(&Tag, &TagState)> = tags.iter().zip(states).collect();
    let plans = tag_plans(&states, &b.as_target(), &b, false);
    let got: Vec<(TagAction, &str)> = plans.iter().map(|p| (p.action, p.reason)).collect();
    assert_eq!(
        got,
        vec![
            (TagAction::Unchanged, "up to date"),
            (TagAction::Push, "equivalent index; aligning to one digest"),
            (TagAction::Push, "index differs"),
            (TagAction::Push, "tag absent"),
        ]
    );
    let forced = tag_plans(&states, &b.as_target(), &b, true);
    assert!(forced.iter().all(|p| p.reason == "--force"));
}

#[test]
fn record_plans_write_only_records_that_are_not_current() {
    let index_digest = d('f');
    let mut desired = Desired {
        repo: Repository::parse("quay.io/fedora/fedora-coreos").unwrap(),
        tags: vec![tag("stable")],
        arches: vec![DesiredArch {
            arch: Arch::parse("x86_64").unwrap(),
            entry: entry("x86_64", 'a'),
            existing_record: None,
        }],
        format: index::Format::Oci,
        records: true,
        annotations: None,
    };
    let plans = record_plans(&desired, &index_digest);
    assert_eq!(plans.len(), 1);
    assert!(plans[0].write);
    assert_eq!(plans[0].record.manifest_list_digest, index_digest);
    desired.records = false;
    assert!(record_plans(&desired, &index_digest).is_empty());
}

#[test]
fn keep_pushed_tags_forgets_tags_left_unchanged() {
    let plan = |t: &str, action| TagPlan {
        tag: tag(t),
        before: None,
        single_image: None,
        action,
        reason: "",
    };
    let tags = [plan("a", TagAction::Push), plan("b", TagAction::Unchanged)];
    let mut entries = vec![carried('c', &["a", "b"]), carried('d', &["b"])];
    keep_pushed_tags(&tags, &mut entries);
    assert_eq!(entries, vec![carried('c', &["a"])]);
}
