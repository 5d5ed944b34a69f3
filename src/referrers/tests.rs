//! Reading referrers lists and naming what each referrer is.

use super::*;

fn d(c: char) -> Digest {
    Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
}

#[test]
fn artifact_types_name_their_kind() {
    let cases = [
        (
            "application/vnd.dev.cosign.artifact.sig.v1+json",
            None,
            Kind::Signature,
        ),
        (
            "application/vnd.cncf.notary.signature",
            None,
            Kind::Signature,
        ),
        (
            "application/vnd.dev.cosign.simplesigning.v1+json",
            None,
            Kind::Signature,
        ),
        ("application/vnd.in-toto+json", None, Kind::Attestation),
        (
            "application/vnd.dev.sigstore.bundle.v0.3+json",
            None,
            Kind::Signature,
        ),
        (
            "application/vnd.dev.sigstore.bundle.v0.3+json",
            Some("https://slsa.dev/provenance/v1"),
            Kind::Attestation,
        ),
        (
            "application/vnd.dev.sigstore.bundle.v0.3+json",
            Some("https://sigstore.dev/cosign/sign/v1"),
            Kind::Signature,
        ),
        ("application/spdx+json", None, Kind::Sbom),
        ("application/vnd.cyclonedx+json", None, Kind::Sbom),
        ("application/vnd.example.thing", None, Kind::Other),
        ("", None, Kind::Other),
    ];
    for (t, predicate, want) in cases {
        assert_eq!(
            Kind::of_artifact_type(t, predicate),
            want,
            "{t} {predicate:?}"
        );
    }
    assert_eq!(Kind::Sbom.count(2), "2 SBOMs");
    assert_eq!(Kind::Signature.count(1), "1 signature");
}

#[test]
fn the_tag_schema_and_cosign_tags_are_named_from_the_digest() {
    assert_eq!(
        schema_tag(&d('a')).as_str(),
        format!("sha256-{}", "a".repeat(64))
    );
    assert_eq!(
        cosign_tag(&d('a'), "sig").as_str(),
        format!("sha256-{}.sig", "a".repeat(64))
    );
}

#[test]
fn a_referrers_index_is_read_once_per_digest_with_its_descriptor_kept() {
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d('1'), "size": 10,
             "artifactType": "application/vnd.in-toto+json", "annotations": {"k": "v"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d('2'), "size": 11,
             "artifactType": "application/vnd.cncf.notary.signature"},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d('1'), "size": 10}
        ]
    });
    let mut listing = Listing::default();
    add_listed(&mut listing, &index, Found::TagSchema, "t").unwrap();
    assert_eq!(listing.referrers.len(), 2);
    assert_eq!(listing.referrers[0].kind, Kind::Attestation);
    assert_eq!(listing.referrers[1].kind, Kind::Signature);
    assert_eq!(listing.referrers[0].descriptor, index["manifests"][0]);
    assert!(listing.contains(&d('2')) && !listing.contains(&d('3')));

    let bad = serde_json::json!({"manifests": [{"digest": "sha256:nothex"}]});
    let err = add_listed(&mut Listing::default(), &bad, Found::ReferrersApi, "t").unwrap_err();
    assert!(err.to_string().contains("referrer 0"), "{err}");
}
