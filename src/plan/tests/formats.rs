//! Plan cases about what a tag holds and in which format: a bare image manifest is never an
//! index, and a list never mixes OCI and Docker media types.

use super::*;

const X86: &[(&str, char)] = &[("x86_64", 'a')];

/// One arch published to `stable` holding `state`: (action, reason, index source).
fn one_arch_against(state: TagState) -> (TagAction, &'static str, IndexSource) {
    let p = plan(
        &desired(X86, &["stable"]),
        &observed(&[("stable", state)]),
        &Policy::default(),
    )
    .unwrap();
    (p.tags[0].action, p.tags[0].reason, p.index.source)
}

#[test]
fn only_an_index_can_be_up_to_date() {
    use IndexSource::Built;
    let foreign = holds_foreign(X86);
    let reused = IndexSource::Reused { tag: tag("stable") };
    let cases: Vec<(&str, TagState, (TagAction, &str, IndexSource))> = vec![
        (
            "the bare manifest of the same image",
            holds_image("x86_64", 'a'),
            (
                TagAction::Push,
                "holds a single image manifest, not an index",
                Built,
            ),
        ),
        (
            "the bare manifest of an older image",
            holds_image("x86_64", '0'),
            (
                TagAction::Push,
                "holds a single image manifest, not an index",
                Built,
            ),
        ),
        (
            "reprise's own one-entry index",
            holds_built(X86),
            (TagAction::Unchanged, "up to date", Built),
        ),
        (
            "another tool's one-entry list",
            foreign,
            (TagAction::Unchanged, "up to date", reused),
        ),
        (
            "nothing",
            TagState::Absent,
            (TagAction::Push, "tag absent", Built),
        ),
    ];
    for (what, state, want) in cases {
        assert_eq!(one_arch_against(state), want, "stable holds {what}");
    }
}

#[test]
fn a_bare_image_at_a_tag_is_replaced_by_the_index_and_never_copied_to_other_tags() {
    let built = built_of(X86);
    // The record the old behaviour wrote: the bare manifest posing as the list.
    let p = plan(
        &with_records(desired(X86, &["stable", "40"]), &d('a')),
        &observed(&[
            ("stable", holds_image("x86_64", 'a')),
            ("40", TagState::Absent),
        ]),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(p.index.source, IndexSource::Built);
    assert_eq!(p.index.digest, built.digest);
    assert_eq!(p.index.media_type, index::OCI_INDEX);
    assert_eq!(
        actions(&p),
        [("stable", TagAction::Push), ("40", TagAction::Push)]
    );
    assert!(p.push_images);
    assert_eq!(
        p.tags[0].single_image,
        Some(SingleImage {
            platform: Some(Platform::new("linux", "amd64", None))
        })
    );
    assert_eq!(p.tags[1].single_image, None);
    // Records are rewritten to name the index.
    assert!(p.records.iter().all(|r| r.write
        && r.state == RecordState::Stale
        && r.record.manifest_list_digest == built.digest));
}

#[test]
fn a_bare_image_at_every_tag_is_never_reused_even_under_keep() {
    for policy in [MissingArch::Refuse, MissingArch::Keep, MissingArch::Drop] {
        let p = plan(
            &desired(X86, &["stable", "40"]),
            &observed(&[
                ("stable", holds_image("x86_64", 'a')),
                ("40", holds_image("x86_64", 'a')),
            ]),
            &Policy {
                missing_arch: policy,
                ..Policy::default()
            },
        )
        .unwrap();
        assert_eq!(p.index.source, IndexSource::Built, "{policy:?}");
        assert_eq!(p.outcome(), Outcome::Pushed, "{policy:?}");
        assert!(p.carried.is_empty() && p.dropped.is_empty(), "{policy:?}");
    }
}

#[test]
fn a_bare_image_of_another_arch_counts_for_the_missing_arch_policy() {
    let state = || observed(&[("stable", holds_image("s390x", 'e'))]);
    let err = plan(&desired(X86, &["stable"]), &state(), &Policy::default()).unwrap_err();
    let Refusal::MissingArches(missing) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(missing[0].arch, Arch::parse("s390x").ok());

    let keep = plan(
        &desired(X86, &["stable"]),
        &state(),
        &Policy {
            missing_arch: MissingArch::Keep,
            ..Policy::default()
        },
    )
    .unwrap();
    assert_eq!(keep.index.source, IndexSource::Built);
    assert_eq!(
        keep.index.digest,
        built_of(&[("x86_64", 'a'), ("s390x", 'e')]).digest
    );
    assert_eq!(keep.carried.len(), 1);
    assert_eq!(keep.carried[0].digest, d('e'));
}

#[test]
fn the_index_that_replaced_a_bare_image_is_a_noop_on_rerun() {
    let built = built_of(X86);
    let p = plan(
        &with_records(desired(X86, &["stable", "40"]), &built.digest),
        &observed(&[("stable", holds_built(X86)), ("40", holds_built(X86))]),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(p.outcome(), Outcome::Noop);
    assert!(p.tags.iter().all(|t| t.single_image.is_none()));
}

/// An OCI image manifest of one layer of `layer_type`, as a registry would serve it.
fn oci_manifest(layer_type: &str) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{c}","size":10}},"layers":[{{"mediaType":"{layer_type}","digest":"{l}","size":20}}],"annotations":{{"ostree.commit":"x"}}}}"#,
        c = d('c'),
        l = d('1')
    )
    .into_bytes()
}

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// `d` with every arch's entry (and the list) in Docker schema 2, as `--v2s2` makes it.
fn in_docker(mut d: Desired) -> Desired {
    d.format = index::Format::Docker;
    for a in &mut d.arches {
        a.entry.media_type = crate::archive::DOCKER_MANIFEST.to_owned();
    }
    d
}

fn keep() -> Policy {
    Policy {
        missing_arch: MissingArch::Keep,
        ..Policy::default()
    }
}

/// `stable` holds the four-arch OCI index, with s390x's manifest ('e') readable.
fn four_oci_with_s390x_readable(s390x: Vec<u8>) -> Observed {
    let mut o = observed(&[("stable", holds_built(FOUR))]);
    o.manifests.insert(d('e'), s390x);
    o
}

fn media_types_of(index_bytes: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(index_bytes).unwrap();
    let mut out = vec![v["mediaType"].as_str().unwrap().to_owned()];
    for m in v["manifests"].as_array().unwrap() {
        out.push(m["mediaType"].as_str().unwrap().to_owned());
    }
    out
}

#[test]
fn keep_under_v2s2_converts_a_carried_oci_manifest_to_docker() {
    let three = &FOUR[..3];
    let p = plan(
        &in_docker(desired(three, &["stable"])),
        &four_oci_with_s390x_readable(oci_manifest(GZIP)),
        &keep(),
    )
    .unwrap();
    let want = v2s2::convert_manifest(&oci_manifest(GZIP), index::Format::Docker).unwrap();
    assert_eq!(p.converted.len(), 1);
    let c = &p.converted[0];
    assert_eq!(
        (&c.from, &c.digest, &c.bytes, c.media_type.as_str()),
        (
            &d('e'),
            &want.digest,
            &want.bytes,
            crate::archive::DOCKER_MANIFEST
        )
    );
    assert_eq!(p.carried.len(), 1);
    assert_eq!(p.carried[0].digest, want.digest);
    assert_eq!(p.carried[0].converted_from, Some(d('e')));
    // Nothing OCI in the list, and it names the converted manifest.
    for mt in media_types_of(&p.index.bytes) {
        assert!(mt.starts_with("application/vnd.docker."), "{mt}");
    }
    let text = String::from_utf8(p.index.bytes.clone()).unwrap();
    assert!(
        text.contains(want.digest.as_str()) && !text.contains(d('e').as_str()),
        "{text}"
    );
    assert!(p.push_images);
}

#[test]
fn keep_without_v2s2_converts_a_carried_docker_manifest_to_oci() {
    let three = &FOUR[..3];
    let docker = v2s2::convert_manifest(&oci_manifest(GZIP), index::Format::Docker).unwrap();
    let mut remote = holds_foreign(FOUR);
    if let TagState::Present {
        content: Some(c), ..
    } = &mut remote
    {
        for e in &mut c.platforms {
            e.media_type = crate::archive::DOCKER_MANIFEST.to_owned();
        }
    }
    let mut o = observed(&[("stable", remote)]);
    o.manifests.insert(d('e'), docker.bytes);
    let p = plan(&desired(three, &["stable"]), &o, &keep()).unwrap();
    assert_eq!(p.converted.len(), 1);
    assert_eq!(p.converted[0].media_type, OCI_MANIFEST);
    for mt in media_types_of(&p.index.bytes) {
        assert!(mt.starts_with("application/vnd.oci."), "{mt}");
    }
}

#[test]
fn a_tag_holding_the_converted_manifest_agrees_with_one_holding_the_original() {
    let three = &FOUR[..3];
    let want = v2s2::convert_manifest(&oci_manifest(GZIP), index::Format::Docker).unwrap();
    // "stable" was written by an interrupted run: it holds the new list already.
    let mut written: Vec<Entry> = three
        .iter()
        .map(|(a, c)| Entry {
            media_type: crate::archive::DOCKER_MANIFEST.to_owned(),
            ..entry(a, *c)
        })
        .collect();
    written.push(Entry {
        digest: want.digest.clone(),
        size: want.bytes.len() as u64,
        media_type: want.media_type.clone(),
        ..entry("s390x", 'e')
    });
    let built = index::build_with(index::Format::Docker, written, vec![], &BTreeMap::new());
    let holds_new = TagState::Present {
        digest: built.digest.clone(),
        content: Some(RemoteContent {
            bytes: built.bytes.clone(),
            media_type: built.media_type.clone(),
            kind: ContentKind::Index,
            platforms: built.entries.clone(),
            other: vec![],
            annotations: Default::default(),
        }),
    };
    let mut o = observed(&[("stable", holds_new), ("40", holds_built(FOUR))]);
    o.manifests.insert(d('e'), oci_manifest(GZIP));
    let p = plan(&in_docker(desired(three, &["stable", "40"])), &o, &keep()).unwrap();
    assert_eq!(p.index.digest, built.digest);
    assert_eq!(
        actions(&p),
        [("stable", TagAction::Unchanged), ("40", TagAction::Push)]
    );

    // Once both hold it, the rerun is a no-op and converts nothing.
    let new_list = o.tags[&tag("stable")].clone();
    let again = observed(&[("stable", new_list.clone()), ("40", new_list)]);
    let p = plan(
        &with_records(in_docker(desired(three, &["stable", "40"])), &built.digest),
        &again,
        &keep(),
    )
    .unwrap();
    assert_eq!(p.outcome(), Outcome::Noop);
    assert!(p.converted.is_empty());
}

#[test]
fn a_carry_that_cannot_be_converted_is_refused_in_one_line() {
    let three = &FOUR[..3];
    let zstd = oci_manifest("application/vnd.oci.image.layer.v1.tar+zstd");
    let cases = [
        (four_oci_with_s390x_readable(zstd), "zstd"),
        (
            observed(&[("stable", holds_built(FOUR))]),
            "does not serve its manifest",
        ),
    ];
    for (o, why) in cases {
        let err = plan(&in_docker(desired(three, &["stable"])), &o, &keep()).unwrap_err();
        assert!(matches!(err, Refusal::Unconvertible(_)), "{err:?}");
        let msg = err.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        for part in [
            why,
            "linux/s390x",
            "a Docker manifest list",
            "stable",
            "--missing-arch drop",
        ] {
            assert!(msg.contains(part), "{part:?} not in {msg}");
        }
    }
}

#[test]
fn drop_and_refuse_convert_nothing() {
    let three = &FOUR[..3];
    let o = four_oci_with_s390x_readable(oci_manifest(GZIP));
    let want = in_docker(desired(three, &["stable"]));
    let p = plan(
        &want,
        &o,
        &Policy {
            missing_arch: MissingArch::Drop,
            ..Policy::default()
        },
    )
    .unwrap();
    assert!(p.converted.is_empty());
    assert_eq!(p.dropped[0].converted_from, None);
    assert!(plan(&want, &o, &Policy::default()).is_err());
}

#[test]
fn attestations_are_never_carried_into_a_docker_list() {
    let three = &FOUR[..3];
    let mut o = observed(&[(
        "stable",
        with_other(holds_built(FOUR), vec![attestation('5', 'e')]),
    )]);
    o.manifests.insert(d('e'), oci_manifest(GZIP));
    let p = plan(&in_docker(desired(three, &["stable"])), &o, &keep()).unwrap();
    assert_eq!(p.carried.len(), 1, "only the s390x image");
    let dropped: Vec<_> = p.dropped.iter().map(|e| e.digest.clone()).collect();
    assert_eq!(dropped, [d('5')]);
    for mt in media_types_of(&p.index.bytes) {
        assert!(mt.starts_with("application/vnd.docker."), "{mt}");
    }
}
