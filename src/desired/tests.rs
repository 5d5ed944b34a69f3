//! The pure steps of reading inputs: which arches, where blobs may be mounted from, what a
//! format refusal suggests.

use serde_json::json;

use super::*;
use crate::archive::OCI_MANIFEST;

fn arch(s: &str) -> Arch {
    Arch::parse(s).unwrap()
}

fn repo(s: &str) -> Repository {
    Repository::parse(s).unwrap()
}

fn build(arches: &[&str]) -> Build {
    Build {
        id: "40.1".to_owned(),
        arches: arches.iter().map(|a| arch(a)).collect(),
    }
}

/// A build of `arches` publishing to `repo`, each arch recorded as `records` says.
fn desired(records: &[Option<serde_json::Value>]) -> Desired {
    let arches = ["x86_64", "aarch64", "s390x", "ppc64le"];
    Desired {
        repo: repo("quay.io/fedora/fedora-coreos"),
        tags: vec![Tag::parse("stable").unwrap()],
        arches: records
            .iter()
            .zip(arches)
            .map(|(rec, a)| DesiredArch {
                arch: arch(a),
                entry: Entry {
                    platform: Platform::new("linux", arch(a).oci_architecture(), None),
                    digest: Digest::of(a.as_bytes()),
                    size: 500,
                    media_type: OCI_MANIFEST.to_owned(),
                },
                existing_record: rec.clone(),
            })
            .collect(),
        format: index::Format::Oci,
        records: true,
        annotations: None,
    }
}

#[test]
fn without_arch_names_every_arch_of_the_build_is_selected() {
    let b = build(&["x86_64", "aarch64"]);
    assert_eq!(select_arches(&b, &[]).unwrap(), b.arches);
}

#[test]
fn arches_named_are_selected_in_the_order_named() {
    let b = build(&["x86_64", "aarch64", "s390x"]);
    let asked = [arch("s390x"), arch("x86_64")];
    assert_eq!(select_arches(&b, &asked).unwrap(), asked.to_vec());
}

#[test]
fn an_arch_named_that_the_build_lacks_is_an_error_naming_what_it_has() {
    let b = build(&["x86_64", "aarch64"]);
    let err = select_arches(&b, &[arch("x86_64"), arch("s390x")]).unwrap_err();
    assert!(matches!(&err, Error::ArchNotInBuild { arch: a, .. } if a.as_str() == "s390x"));
    assert_eq!(
        err.to_string(),
        "requested architecture s390x is not in build 40.1 (it has x86_64, aarch64)"
    );
}

#[test]
fn mount_sources_list_mount_from_first_then_the_records_repositories() {
    let rec = json!({
        "image": "quay.io/fedora/fedora-coreos-staging",
        "additional-images": [{"image": "quay.io/coreos/other"}],
    });
    let d = desired(&[Some(rec), None]);
    let got = mount_sources(&d, &[repo("quay.io/fedora/from")]);
    assert_eq!(
        got,
        vec![
            repo("quay.io/fedora/from"),
            repo("quay.io/fedora/fedora-coreos-staging"),
            repo("quay.io/coreos/other"),
        ]
    );
}

#[test]
fn mount_sources_leave_out_the_target_other_registries_and_repeats() {
    let rec = json!({
        "image": "quay.io/fedora/fedora-coreos",
        "additional-images": [
            {"image": "registry.example.com/fedora/fedora-coreos"},
            {"image": "quay.io/fedora/from"},
            {"image": "not a repository"},
        ],
    });
    let d = desired(&[Some(rec.clone()), Some(rec)]);
    let got = mount_sources(
        &d,
        &[
            repo("quay.io/fedora/from"),
            repo("quay.io/fedora/fedora-coreos"),
        ],
    );
    assert_eq!(got, vec![repo("quay.io/fedora/from")]);
}

#[test]
fn a_build_without_records_mounts_only_from_what_it_is_told() {
    assert!(mount_sources(&desired(&[None, None]), &[]).is_empty());
}

#[test]
fn a_format_refusal_suggests_the_other_format() {
    assert_eq!(
        convert_hint(index::Format::Docker),
        "publish it without --v2s2"
    );
    assert_eq!(convert_hint(index::Format::Oci), "publish it with --v2s2");
}

#[test]
fn a_record_key_reads_as_the_key() {
    let key = RecordKey::new("base-oscontainer");
    assert_eq!(key.as_str(), "base-oscontainer");
    assert_eq!(key.to_string(), "base-oscontainer");
}
