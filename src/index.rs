//! Image indexes: building the one reprise publishes, reading the ones registries hold, and
//! comparing the two by platform.
//!
//! Owns the deterministic serialisation of the desired index (canonical JSON, entries sorted
//! by platform, so the same inputs always give the same bytes and digest), parsing remote OCI
//! indexes, Docker manifest lists and single image manifests into one view, and the
//! platform → digest comparison that decides whether a tag is already right. It does not
//! fetch anything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::platform::Platform;
use crate::reference::Digest;

pub use crate::media::{DOCKER_LIST, MAX_REMOTE_MANIFEST, OCI_INDEX};

/// Annotation Docker's buildkit puts on attestation manifests inside an index.
const DOCKER_REFERENCE_TYPE: &str = "vnd.docker.reference.type";
const DOCKER_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("manifest is {0} bytes, over the {MAX_REMOTE_MANIFEST}-byte limit")]
    TooLarge(usize),
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("manifest has unsupported media type {0:?}")]
    MediaType(String),
    #[error("index entry {0} has an invalid digest")]
    Digest(usize),
}

/// One entry of an index: a manifest for a platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub platform: Platform,
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

impl Entry {
    /// The index entry that names `image`'s manifest.
    pub fn of_image(image: &crate::archive::Image) -> Entry {
        Entry {
            platform: image.platform.clone(),
            digest: image.manifest_digest.clone(),
            size: image.manifest.len() as u64,
            media_type: image.media_type.clone(),
        }
    }
}

/// An index reprise built: its exact bytes and what they list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltIndex {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
    pub entries: Vec<Entry>,
}

/// Which kind of index reprise publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// An OCI image index of OCI image manifests.
    #[default]
    Oci,
    /// A Docker manifest list of Docker schema 2 manifests (`--v2s2`).
    Docker,
}

impl Format {
    pub fn index_media_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_INDEX,
            Format::Docker => DOCKER_LIST,
        }
    }

    /// What a list of this format is called, for messages.
    pub fn list_name(self) -> &'static str {
        match self {
            Format::Oci => "an OCI image index",
            Format::Docker => "a Docker manifest list",
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexDoc<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: Vec<IndexItem<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

/// An entry of a built index: one of this build's platforms, or a carried entry without a
/// platform (an attestation), kept exactly as the remote index listed it.
#[derive(Serialize)]
#[serde(untagged)]
enum IndexItem<'a> {
    Platform(EntryDoc<'a>),
    Carried(&'a serde_json::Value),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryDoc<'a> {
    media_type: &'a str,
    digest: &'a Digest,
    size: u64,
    platform: PlatformDoc<'a>,
}

#[derive(Serialize, Deserialize, Default)]
struct PlatformDoc<'a> {
    #[serde(borrow, default)]
    architecture: &'a str,
    #[serde(borrow, default)]
    os: &'a str,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    variant: Option<&'a str>,
}

/// Builds the OCI image index listing `entries`. The bytes depend only on the set of
/// entries: they are sorted by platform and written as canonical JSON (sorted keys, no
/// insignificant whitespace), so any run over the same inputs pushes the same digest.
pub fn build(entries: Vec<Entry>) -> BuiltIndex {
    build_with(Format::Oci, entries, Vec::new(), &BTreeMap::new())
}

/// Builds the index of `format` listing `entries` and then `carried` (entries without a
/// platform, kept verbatim), each group in a fixed order, with `annotations` at its top level
/// (an OCI index only: a Docker manifest list has no place for them), as canonical JSON.
pub fn build_with(
    format: Format,
    mut entries: Vec<Entry>,
    mut carried: Vec<OtherEntry>,
    annotations: &BTreeMap<String, String>,
) -> BuiltIndex {
    entries.sort_by(|a, b| (&a.platform, &a.digest).cmp(&(&b.platform, &b.digest)));
    entries.dedup();
    carried.sort_by(|a, b| a.digest.cmp(&b.digest));
    carried.dedup_by(|a, b| a.digest == b.digest);
    let media_type = format.index_media_type();
    let none = BTreeMap::new();
    let doc = IndexDoc {
        schema_version: 2,
        media_type,
        annotations: match format {
            Format::Oci => annotations,
            Format::Docker => &none,
        },
        manifests: entries
            .iter()
            .map(|e| {
                IndexItem::Platform(EntryDoc {
                    media_type: &e.media_type,
                    digest: &e.digest,
                    size: e.size,
                    platform: PlatformDoc {
                        architecture: &e.platform.architecture,
                        os: &e.platform.os,
                        variant: e.platform.variant.as_deref(),
                    },
                })
            })
            .chain(
                carried
                    .iter()
                    .filter_map(|o| o.raw.as_ref().map(IndexItem::Carried)),
            )
            .collect(),
    };
    let mut bytes = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut bytes, olpc_cjson::CanonicalFormatter::new());
    // Canonical JSON refuses only non-integer numbers, and carried entries holding one are
    // never carried (see `integers_only`).
    doc.serialize(&mut ser)
        .expect("an index of strings and integers always serialises");
    BuiltIndex {
        digest: Digest::of(&bytes),
        bytes,
        media_type: media_type.to_owned(),
        entries,
    }
}

/// What a remote manifest says, read as an index whatever it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub media_type: String,
    /// Entries with a real platform, in the order the document lists them.
    pub platforms: Vec<Entry>,
    /// Entries that are not images for a platform (attestations, `unknown/unknown`).
    pub other: Vec<OtherEntry>,
    /// The index's own annotations (its top-level `annotations`).
    pub annotations: BTreeMap<String, String>,
}

/// An index entry that names no runnable platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherEntry {
    pub digest: Digest,
    pub media_type: String,
    /// For attestations: the manifest they describe.
    pub refers_to: Option<Digest>,
    pub size: u64,
    /// The entry exactly as the remote index lists it, so it can be carried unchanged; `None`
    /// when it holds something canonical JSON cannot write again (a non-integer number), in
    /// which case it is never carried.
    pub raw: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RemoteDoc<'a> {
    #[serde(borrow, default)]
    media_type: Option<&'a str>,
    #[serde(default)]
    manifests: Option<Vec<RemoteEntryDoc<'a>>>,
    #[serde(default)]
    config: Option<serde_json::Value>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RemoteEntryDoc<'a> {
    #[serde(borrow, default)]
    media_type: &'a str,
    #[serde(borrow)]
    digest: &'a str,
    #[serde(default)]
    size: u64,
    #[serde(borrow, default)]
    platform: Option<PlatformDoc<'a>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// The kind of document a manifest is, from its body and Content-Type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Index(Remote),
    /// A single image manifest; its platform is in its config, which the caller must fetch.
    Image {
        config: Digest,
    },
}

/// Parses a manifest a registry returned. `content_type` is the header value, used when the
/// body carries no `mediaType`.
pub fn parse_remote(bytes: &[u8], content_type: Option<&str>) -> Result<Parsed, Error> {
    if bytes.len() > MAX_REMOTE_MANIFEST {
        return Err(Error::TooLarge(bytes.len()));
    }
    let doc: RemoteDoc = serde_json::from_slice(bytes).map_err(|e| Error::Json(e.to_string()))?;
    // The whole document again as a value, so an entry can be carried byte-for-byte in
    // meaning (canonical JSON re-serialises it) without a lossy typed round trip.
    let raw_entries: Vec<serde_json::Value> = match doc.manifests {
        Some(_) => serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| v.get("manifests")?.as_array().cloned())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let media_type = doc
        .media_type
        .or(content_type)
        .unwrap_or_default()
        .to_owned();
    if let Some(entries) = doc.manifests {
        if !(media_type == OCI_INDEX || media_type == DOCKER_LIST || media_type.is_empty()) {
            return Err(Error::MediaType(media_type));
        }
        let mut platforms = Vec::new();
        let mut other = Vec::new();
        for (i, e) in entries.into_iter().enumerate() {
            let digest = Digest::parse(e.digest).map_err(|_| Error::Digest(i))?;
            let annotations = e.annotations.unwrap_or_default();
            let platform = e
                .platform
                .map(|p| Platform::new(p.os, p.architecture, p.variant))
                .filter(|p| p.is_real() && !annotations.contains_key(DOCKER_REFERENCE_TYPE));
            match platform {
                Some(platform) => platforms.push(Entry {
                    platform,
                    digest,
                    size: e.size,
                    media_type: e.media_type.to_owned(),
                }),
                None => other.push(OtherEntry {
                    digest,
                    media_type: e.media_type.to_owned(),
                    refers_to: annotations
                        .get(DOCKER_REFERENCE_DIGEST)
                        .and_then(|d| Digest::parse(d).ok()),
                    size: e.size,
                    raw: raw_entries.get(i).filter(|v| integers_only(v)).cloned(),
                }),
            }
        }
        return Ok(Parsed::Index(Remote {
            media_type: if media_type.is_empty() {
                OCI_INDEX.to_owned()
            } else {
                media_type
            },
            platforms,
            other,
            annotations: doc.annotations.unwrap_or_default(),
        }));
    }
    let config = doc
        .config
        .as_ref()
        .and_then(|c| c.get("digest"))
        .and_then(|d| d.as_str())
        .and_then(|d| Digest::parse(d).ok());
    match config {
        Some(config) => Ok(Parsed::Image { config }),
        None => Err(Error::MediaType(media_type)),
    }
}

/// The media type a manifest's bytes declare; without a `mediaType` field, an OCI index if
/// it lists manifests and an OCI image manifest otherwise (the OCI spec's two optional cases).
pub fn media_type_of(bytes: &[u8]) -> String {
    let json: Option<serde_json::Value> = serde_json::from_slice(bytes).ok();
    if let Some(m) = json
        .as_ref()
        .and_then(|v| v.get("mediaType"))
        .and_then(|m| m.as_str())
    {
        return m.to_owned();
    }
    if json.as_ref().is_some_and(|v| v.get("manifests").is_some()) {
        OCI_INDEX.to_owned()
    } else {
        crate::archive::OCI_MANIFEST.to_owned()
    }
}

/// Whether canonical JSON can write `v` again: it has no non-integer numbers.
fn integers_only(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => n.is_i64() || n.is_u64(),
        serde_json::Value::Array(items) => items.iter().all(integers_only),
        serde_json::Value::Object(map) => map.values().all(integers_only),
        _ => true,
    }
}

/// Platform → manifest digest, keyed by the normalised platform.
pub type PlatformMap = BTreeMap<Platform, Digest>;

/// The normalised platform map of a list of entries, and the platforms listed more than
/// once (which are reported, never merged).
pub fn platform_map(entries: &[Entry]) -> (PlatformMap, Vec<Platform>) {
    let mut map = PlatformMap::new();
    let mut duplicates = Vec::new();
    for e in entries {
        let key = e.platform.key();
        if map.insert(key.clone(), e.digest.clone()).is_some() && !duplicates.contains(&key) {
            duplicates.push(key);
        }
    }
    (map, duplicates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    fn entry(arch: &str, variant: Option<&str>, c: char) -> Entry {
        Entry {
            platform: Platform::new("linux", arch, variant),
            digest: d(c),
            size: 100,
            media_type: crate::archive::OCI_MANIFEST.to_owned(),
        }
    }

    #[test]
    fn build_is_deterministic_and_order_independent() {
        let a = build(vec![
            entry("amd64", None, 'a'),
            entry("arm64", Some("v8"), 'b'),
        ]);
        let b = build(vec![
            entry("arm64", Some("v8"), 'b'),
            entry("amd64", None, 'a'),
        ]);
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(a.digest, Digest::of(&a.bytes));
        let text = String::from_utf8(a.bytes.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"manifests":[{"digest":"sha256:aaaa"#),
            "{text}"
        );
        assert!(text.contains(r#""mediaType":"application/vnd.oci.image.index.v1+json""#));
        assert!(text.contains(r#""variant":"v8""#));
        assert!(!text.contains(' '));
    }

    #[test]
    fn built_index_parses_back_to_the_same_platforms() {
        let built = build(vec![entry("amd64", None, 'a'), entry("s390x", None, 'c')]);
        let Parsed::Index(remote) = parse_remote(&built.bytes, None).unwrap() else {
            panic!("not an index")
        };
        assert_eq!(remote.platforms, built.entries);
        assert!(remote.other.is_empty());
    }

    #[test]
    fn docker_list_and_attestations() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[
              {{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"{a}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{b}","size":1,"platform":{{"architecture":"unknown","os":"unknown"}},
                "annotations":{{"vnd.docker.reference.type":"attestation-manifest","vnd.docker.reference.digest":"{a}"}}}}]}}"#,
            a = d('a'),
            b = d('b')
        );
        let Parsed::Index(remote) = parse_remote(body.as_bytes(), None).unwrap() else {
            panic!()
        };
        assert_eq!(remote.media_type, DOCKER_LIST);
        assert_eq!(remote.platforms.len(), 1);
        assert_eq!(remote.other.len(), 1);
        assert_eq!(remote.other[0].refers_to, Some(d('a')));
        let (map, dups) = platform_map(&remote.platforms);
        assert!(dups.is_empty());
        assert_eq!(
            map.get(&Platform::new("linux", "arm64", None)),
            Some(&d('a'))
        );
    }

    #[test]
    fn an_entry_canonical_json_cannot_rewrite_is_never_carried() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
              {{"mediaType":"x","digest":"{a}","size":1,"platform":{{"architecture":"unknown","os":"unknown"}},"x-score":0.5}},
              {{"mediaType":"x","digest":"{b}","size":2,"platform":{{"architecture":"unknown","os":"unknown"}}}}]}}"#,
            a = d('a'),
            b = d('b')
        );
        let Parsed::Index(remote) = parse_remote(body.as_bytes(), None).unwrap() else {
            panic!()
        };
        assert!(
            remote.other[0].raw.is_none(),
            "a float cannot be written again"
        );
        assert!(remote.other[1].raw.is_some());
        // Building with both still works: the float entry is simply left out.
        let built = build_with(Format::Oci, vec![], remote.other.clone(), &BTreeMap::new());
        let text = String::from_utf8(built.bytes).unwrap();
        assert!(
            text.contains(d('b').as_str()) && !text.contains(d('a').as_str()),
            "{text}"
        );
    }

    #[test]
    fn annotations_are_part_of_the_bytes_and_read_back() {
        let entries = vec![entry("amd64", None, 'a')];
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "org.opencontainers.image.version".to_owned(),
            "40.1".to_owned(),
        );
        annotations.insert("a.first".to_owned(), "x".to_owned());
        let plain = build(entries.clone());
        let annotated = build_with(Format::Oci, entries.clone(), vec![], &annotations);
        assert_ne!(plain.digest, annotated.digest);
        assert_eq!(
            annotated,
            build_with(Format::Oci, entries.clone(), vec![], &annotations)
        );
        let text = String::from_utf8(annotated.bytes.clone()).unwrap();
        assert!(
            text.starts_with(
                r#"{"annotations":{"a.first":"x","org.opencontainers.image.version":"40.1"},"manifests""#
            ),
            "{text}"
        );
        let Parsed::Index(remote) = parse_remote(&annotated.bytes, None).unwrap() else {
            panic!()
        };
        assert_eq!(remote.annotations, annotations);
        // A Docker manifest list has no place for them.
        let docker = build_with(Format::Docker, entries.clone(), vec![], &annotations);
        assert_eq!(
            docker,
            build_with(Format::Docker, entries, vec![], &BTreeMap::new())
        );
    }

    #[test]
    fn duplicates_are_reported() {
        let (map, dups) =
            platform_map(&[entry("amd64", None, 'a'), entry("amd64", Some("v1"), 'b')]);
        assert_eq!(map.len(), 1);
        assert_eq!(dups, vec![Platform::new("linux", "amd64", None)]);
    }

    #[test]
    fn single_image_manifest_names_its_config() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"x","digest":"{}","size":1}},"layers":[]}}"#,
            d('c')
        );
        assert_eq!(
            parse_remote(body.as_bytes(), None).unwrap(),
            Parsed::Image { config: d('c') }
        );
    }

    #[test]
    fn garbage_and_oversized_are_errors() {
        assert!(matches!(
            parse_remote(b"not json", None),
            Err(Error::Json(_))
        ));
        let big = vec![b' '; MAX_REMOTE_MANIFEST + 1];
        assert!(matches!(parse_remote(&big, None), Err(Error::TooLarge(_))));
    }
}
