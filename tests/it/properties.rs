//! Property tests over the public API: references survive formatting and parsing unchanged,
//! and the index reprise builds depends only on the set of entries, not on their order.

use proptest::prelude::*;
use reprise::index::{self, Entry};
use reprise::platform::Platform;
use reprise::reference::{Digest, Reference, Repository, Tag};

fn hex64() -> impl Strategy<Value = String> {
    "[0-9a-f]{64}"
}

fn tag() -> impl Strategy<Value = String> {
    // A 64-hex tag is refused on purpose (it is always a misplaced digest); leave it out.
    "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}".prop_filter("not a bare digest", |s| {
        !(s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
    })
}

fn registry() -> impl Strategy<Value = String> {
    (
        "[a-z][a-z0-9-]{0,10}[a-z0-9]",
        proptest::collection::vec("[a-z]{2,6}", 1..3),
        proptest::option::of(1u16..),
    )
        .prop_map(|(first, rest, port)| {
            let host = format!("{first}.{}", rest.join("."));
            match port {
                Some(p) => format!("{host}:{p}"),
                None => host,
            }
        })
}

fn path() -> impl Strategy<Value = String> {
    let component = "[a-z0-9]{1,8}(([._]|__|-{1,2})[a-z0-9]{1,8}){0,2}";
    proptest::collection::vec(component, 1..4).prop_map(|c| c.join("/"))
}

fn repository() -> impl Strategy<Value = String> {
    (registry(), path()).prop_map(|(r, p)| format!("{r}/{p}"))
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        prop_oneof!["amd64", "arm64", "ppc64le", "s390x", "riscv64"],
        proptest::option::of(prop_oneof!["v7", "v8"]),
        hex64(),
        1u64..1_000_000,
    )
        .prop_map(|(arch, variant, hex, size)| Entry {
            platform: Platform::new("linux", &arch, variant.as_deref()),
            digest: Digest::parse(&format!("sha256:{hex}")).unwrap(),
            size,
            media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
        })
}

proptest! {
    #[test]
    fn a_digest_formats_as_it_was_written(hex in hex64()) {
        let text = format!("sha256:{hex}");
        let d = Digest::parse(&text).unwrap();
        prop_assert_eq!(d.to_string(), text);
        prop_assert_eq!(d.hex(), hex.as_str());
    }

    #[test]
    fn a_digest_in_upper_case_is_refused(hex in "[0-9a-f]{63}[A-F]") {
        let text = format!("sha256:{hex}");
        prop_assert!(Digest::parse(&text).is_err());
    }

    #[test]
    fn a_tag_formats_as_it_was_written(t in tag()) {
        prop_assert_eq!(Tag::parse(&t).unwrap().to_string(), t);
    }

    #[test]
    fn a_repository_formats_as_it_was_written(r in repository()) {
        prop_assert_eq!(Repository::parse(&r).unwrap().to_string(), r);
    }

    #[test]
    fn a_tagged_reference_round_trips(r in repository(), t in tag()) {
        let text = format!("{r}:{t}");
        let parsed = Reference::parse(&text).unwrap();
        prop_assert!(matches!(parsed, Reference::Tagged(..)));
        prop_assert_eq!(parsed.to_string(), text);
        prop_assert_eq!(parsed.target(), t.as_str());
    }

    #[test]
    fn a_digested_reference_round_trips(r in repository(), hex in hex64()) {
        let text = format!("{r}@sha256:{hex}");
        let parsed = Reference::parse(&text).unwrap();
        prop_assert!(matches!(parsed, Reference::Digested(..)));
        prop_assert_eq!(parsed.to_string(), text);
    }

    #[test]
    fn a_digest_after_a_colon_is_never_taken_for_a_tag(r in repository(), hex in hex64()) {
        let text = format!("{r}:sha256:{hex}");
        prop_assert!(Reference::parse(&text).is_err());
    }

    #[test]
    fn parsing_anything_never_panics_and_what_parses_is_a_fixed_point(
        s in prop_oneof!["\\PC{0,80}", "[a-zA-Z0-9./:@_-]{0,60}", "[a-z0-9.]{1,12}(/[a-z0-9._-]{1,8}){0,3}(:[A-Za-z0-9._-]{1,8})?"]
    ) {
        if let Ok(parsed) = Reference::parse(&s) {
            let again = Reference::parse(&parsed.to_string()).unwrap();
            prop_assert_eq!(again, parsed);
        }
        if let Ok(repo) = Repository::parse(&s) {
            prop_assert_eq!(Repository::parse(&repo.to_string()).unwrap(), repo);
        }
    }

    #[test]
    fn the_index_does_not_depend_on_the_order_of_its_entries(
        (entries, shuffled) in proptest::collection::vec(entry(), 0..8)
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle()))
    ) {
        let a = index::build(entries);
        let b = index::build(shuffled);
        prop_assert_eq!(&a.bytes, &b.bytes);
        prop_assert_eq!(&a.digest, &b.digest);
    }

    #[test]
    fn the_index_is_deterministic_and_its_digest_is_that_of_its_bytes(
        entries in proptest::collection::vec(entry(), 0..8)
    ) {
        let a = index::build(entries.clone());
        let b = index::build(entries);
        prop_assert_eq!(&a.bytes, &b.bytes);
        prop_assert_eq!(a.digest, Digest::of(&a.bytes));
    }

    #[test]
    fn the_index_lists_each_distinct_entry_once(
        entries in proptest::collection::vec(entry(), 1..8)
    ) {
        let mut doubled = entries.clone();
        doubled.extend(entries.iter().cloned());
        let once = index::build(entries);
        let twice = index::build(doubled);
        prop_assert_eq!(&once.bytes, &twice.bytes);
        let doc: serde_json::Value = serde_json::from_slice(&once.bytes).unwrap();
        prop_assert_eq!(doc["manifests"].as_array().unwrap().len(), once.entries.len());
    }
}
