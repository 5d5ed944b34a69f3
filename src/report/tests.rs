//! The report of a plan or a push: what each arch's record shows, and the human summary.

use super::*;
use crate::archive::OCI_MANIFEST;
use crate::index::{self, Entry};
use crate::plan::{DesiredArch, Observed, Policy};

fn repo() -> Repository {
    Repository::parse("quay.io/fedora/fedora-coreos").unwrap()
}

fn tag(s: &str) -> Tag {
    Tag::parse(s).unwrap()
}

/// Two arches, published with records (a build) or without (`--image`).
fn desired(records: bool) -> Desired {
    let arches = ["x86_64", "aarch64"].map(|a| {
        let arch = Arch::parse(a).unwrap();
        DesiredArch {
            entry: Entry {
                platform: Platform::new("linux", arch.oci_architecture(), None),
                digest: Digest::of(a.as_bytes()),
                size: 500,
                media_type: OCI_MANIFEST.to_owned(),
            },
            arch,
            existing_record: None,
        }
    });
    Desired {
        repo: repo(),
        tags: vec![tag("stable")],
        arches: arches.to_vec(),
        format: index::Format::Oci,
        records,
        annotations: None,
    }
}

fn refusal() -> Refusal {
    Refusal::MissingArches(vec![Missing {
        platform: Platform::new("linux", "s390x", None),
        arch: Some(Arch::parse("s390x").unwrap()),
        tags: vec![tag("stable")],
    }])
}

fn records(report: &Report) -> Vec<RecordAction> {
    report.arches.iter().map(|a| a.record).collect()
}

/// Regression: a refused `--image` push said `record: unchanged` for images that have no
/// build record at all.
#[test]
fn a_refused_image_push_reports_no_record_for_its_arches() {
    let report = Report::refused(&desired(false), refusal());
    assert_eq!(records(&report), [RecordAction::None, RecordAction::None]);
}

#[test]
fn a_refused_build_push_reports_its_records_unchanged_and_their_state_unknown() {
    let report = Report::refused(&desired(true), refusal());
    assert_eq!(
        records(&report),
        [RecordAction::Unchanged, RecordAction::Unchanged]
    );
    assert!(report.arches.iter().all(|a| a.record_before.is_none()));
    assert_eq!(report.outcome, Outcome::Refused);
    assert_eq!(report.repo, repo());
}

#[test]
fn a_planned_image_push_reports_no_record_and_a_build_push_a_record_to_write() {
    for (with_records, want) in [
        (false, RecordAction::None),
        (true, RecordAction::WouldWrite),
    ] {
        let d = desired(with_records);
        let plan = crate::plan::plan(&d, &Observed::default(), &Policy::default()).unwrap();
        let report = Report::new(&d, &plan, Outcome::Planned, None);
        assert_eq!(records(&report), [want, want], "records: {with_records}");
        assert!(report.pending());
        assert_eq!(report.repo, repo());
    }
}

#[test]
fn the_summary_of_a_refusal_is_its_message_and_the_skipped_arches() {
    let report = Report::refused(&desired(true), refusal()).with_skipped(&[Skipped {
        arch: Arch::parse("ppc64le").unwrap(),
        reason: SkipReason::NoArtifact,
    }]);
    let text = report.human();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0], format!("reprise: {}", refusal()));
    assert_eq!(lines[1], "  ppc64le  skipped: no artifact");
}

#[test]
fn the_summary_of_a_plan_names_each_tag_and_arch_and_no_upload() {
    let d = desired(true);
    let plan = crate::plan::plan(&d, &Observed::default(), &Policy::default()).unwrap();
    let text = Report::new(&d, &plan, Outcome::Planned, None).human();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(
        lines[0],
        format!(
            "reprise: plan (dry run, nothing changed): {} index {}",
            repo(),
            plan.index.digest
        )
    );
    let short = &plan.index.digest.as_str()[..19];
    assert_eq!(
        lines[1],
        format!(
            "  tag {:<20} absent -> {short}  would push (tag absent)",
            "stable"
        )
    );
    assert!(
        lines[2].starts_with("  x86_64   linux/amd64"),
        "{}",
        lines[2]
    );
    assert!(
        lines[2].ends_with("  meta.json would-write"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].starts_with("  aarch64  linux/arm64"),
        "{}",
        lines[3]
    );
}

#[test]
fn the_summary_of_a_push_ends_with_what_was_uploaded() {
    let d = desired(false);
    let plan = crate::plan::plan(&d, &Observed::default(), &Policy::default()).unwrap();
    let stats = Stats {
        uploaded_blobs: 3,
        uploaded_bytes: 1234,
        skipped_blobs: 2,
        mounted_blobs: 1,
        ..Stats::default()
    };
    let text = Report::new(&d, &plan, Outcome::Pushed, Some(stats)).human();
    assert_eq!(
        text.lines().last(),
        Some("  uploaded 3 blobs (1234 bytes), 1 mounted, 2 already present")
    );
    assert!(!text.contains("meta.json"), "{text}");
}

#[test]
fn a_digest_is_shown_short_and_an_absent_one_as_absent() {
    let d = Digest::of(b"x");
    assert_eq!(short(Some(&d)), d.as_str()[..19]);
    assert_eq!(short(None), "absent");
}
