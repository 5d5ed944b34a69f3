//! Plan cases about annotations on the index: asked for, they are part of equality; not asked
//! for, a remote index's annotations are not compared.

use super::*;

const TWO: &[(&str, char)] = &[("x86_64", 'a'), ("aarch64", 'b')];

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A build of TWO to `stable` asking for `asked` annotations (`None`: none asked).
fn annotated(asked: Option<&[(&str, &str)]>) -> Desired {
    Desired {
        annotations: asked.map(annotations),
        ..desired(TWO, &["stable"])
    }
}

/// `stable` holding an index of TWO with `carried` annotations, in another tool's bytes.
fn holds_annotated(carried: &[(&str, &str)]) -> TagState {
    let TagState::Present {
        content: Some(mut c),
        ..
    } = holds_foreign(TWO)
    else {
        unreachable!()
    };
    c.annotations = annotations(carried);
    c.bytes.extend(format!("{carried:?}").bytes());
    TagState::Present {
        digest: Digest::of(&c.bytes),
        content: Some(c),
    }
}

fn against(d: &Desired, state: TagState) -> Plan {
    plan(d, &observed(&[("stable", state)]), &Policy::default()).unwrap()
}

const V1: &[(&str, &str)] = &[("org.opencontainers.image.version", "40.1")];
const V2: &[(&str, &str)] = &[("org.opencontainers.image.version", "40.2")];

#[test]
fn asked_annotations_go_into_the_built_index() {
    let p = against(&annotated(Some(V1)), TagState::Absent);
    let text = String::from_utf8(p.index.bytes.clone()).unwrap();
    assert!(
        text.contains(r#""annotations":{"org.opencontainers.image.version":"40.1"}"#),
        "{text}"
    );
    assert_ne!(p.index.digest, built_of(TWO).digest);
}

#[test]
fn the_same_platforms_with_other_annotation_values_are_replaced() {
    let p = against(&annotated(Some(V2)), holds_annotated(V1));
    assert_eq!(actions(&p), [("stable", TagAction::Push)]);
    assert_eq!(p.tags[0].reason, "annotations differ");
    assert_eq!(p.index.source, IndexSource::Built);
}

#[test]
fn an_index_without_the_asked_annotations_is_replaced() {
    let p = against(&annotated(Some(V1)), holds_foreign(TWO));
    assert_eq!(p.tags[0].reason, "annotations differ");
    let extra = [V1[0], ("org.example.other", "x")];
    let p = against(&annotated(Some(V1)), holds_annotated(&extra));
    assert_eq!(
        p.tags[0].reason, "annotations differ",
        "exactly the asked annotations"
    );
}

#[test]
fn an_index_with_exactly_the_asked_annotations_is_up_to_date_and_reused() {
    let held = holds_annotated(V1);
    let TagState::Present { digest, .. } = &held else {
        unreachable!()
    };
    let p = against(&annotated(Some(V1)), held.clone());
    assert_eq!(actions(&p), [("stable", TagAction::Unchanged)]);
    assert_eq!(&p.index.digest, digest);
}

#[test]
fn the_built_annotated_index_is_a_noop_on_rerun() {
    let d = annotated(Some(V1));
    let first = against(&d, TagState::Absent);
    let rerun = against(
        &with_records(d, &first.index.digest),
        TagState::Present {
            digest: first.index.digest.clone(),
            content: None,
        },
    );
    assert_eq!(rerun.outcome(), Outcome::Noop);
}

#[test]
fn without_asked_annotations_remote_ones_are_not_compared() {
    let p = against(&annotated(None), holds_annotated(V1));
    assert_eq!(actions(&p), [("stable", TagAction::Unchanged)]);
    assert_eq!(p.index.source, IndexSource::Reused { tag: tag("stable") });
}
