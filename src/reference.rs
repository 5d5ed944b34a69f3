//! Image references and digests as types.
//!
//! Owns parsing, normalising and formatting of everything that names content in a registry:
//! [`Digest`] (`sha256:<hex>`), [`Repository`] (`host[:port]/path`), [`Tag`], and [`Reference`]
//! (`repo:tag` or `repo@sha256:…`). Strings from the command line are parsed here once, at the
//! edge; the rest of reprise never handles a raw reference string. It does not talk to a
//! registry.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// Why a reference, tag, repository or digest string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid digest {0:?}: expected sha256: followed by 64 lowercase hex digits")]
    Digest(String),
    #[error("invalid tag {0:?}: a digest is not a tag; to name content by digest write repo@{0}")]
    DigestAsTag(String),
    #[error(
        "invalid tag {0:?}: tags are 1-128 characters of [A-Za-z0-9_.-] and cannot start with '.' or '-'"
    )]
    Tag(String),
    #[error("invalid repository {0:?}: {1}")]
    Repository(String, &'static str),
    #[error("invalid reference {0:?}: {1}")]
    Reference(String, &'static str),
}

/// A content digest. Only sha256 is accepted: it is what every registry and OCI archive in
/// the release path uses, and refusing others keeps comparisons exact.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Digest, ParseError> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| ParseError::Digest(s.to_owned()))?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ParseError::Digest(s.to_owned()));
        }
        Ok(Digest(s.to_owned()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_sha256(Sha256::new_with_prefix(bytes))
    }

    /// Finishes a running hash into a digest.
    pub fn from_sha256(hasher: Sha256) -> Digest {
        Digest(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Digest {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A tag, as the distribution spec allows it: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Tag, ParseError> {
        if s.starts_with("sha256:") {
            return Err(ParseError::DigestAsTag(s.to_owned()));
        }
        let bare = format!("sha256:{s}");
        if Digest::parse(&bare).is_ok() {
            // A bare 64-hex string is a legal tag, but in a release pipeline it is always a
            // digest pasted in the wrong place.
            return Err(ParseError::DigestAsTag(bare));
        }
        let mut bytes = s.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !first_ok || !rest_ok || s.len() > 128 {
            return Err(ParseError::Tag(s.to_owned()));
        }
        Ok(Tag(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Tag {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tag::parse(s)
    }
}

/// The registry Docker Hub references resolve to when no host is written.
const DOCKER_HUB: &str = "docker.io";

/// A repository in a registry: `registry` is `host[:port]`, `path` the slash-separated name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    registry: String,
    path: String,
}

impl Repository {
    /// Parses `host[:port]/path` as cosa's `--repo` takes it. A first component without a dot
    /// or a port that is not `localhost` means Docker Hub, as in every container tool.
    pub fn parse(s: &str) -> Result<Repository, ParseError> {
        let bad = |why| ParseError::Repository(s.to_owned(), why);
        if s.contains("://") {
            return Err(bad("write host/path without a URL scheme"));
        }
        if s.contains('@') {
            return Err(bad(
                "a repository cannot carry a digest; pass the repository alone",
            ));
        }
        let (registry, path) = match s.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            Some(_) => (DOCKER_HUB.to_owned(), s.to_owned()),
            None => (DOCKER_HUB.to_owned(), format!("library/{s}")),
        };
        if path.contains(':') {
            return Err(bad("a repository cannot carry a tag; pass tags with --tag"));
        }
        if registry.is_empty() || !valid_host(&registry) {
            return Err(bad("the registry host is not a valid host[:port]"));
        }
        if path.is_empty() || !path.split('/').all(valid_path_component) {
            return Err(bad(
                "path components are lowercase letters and digits separated by '.', '_', '__' or '-'",
            ));
        }
        if path.len() > 255 {
            return Err(bad("the path is longer than 255 characters"));
        }
        Ok(Repository { registry, path })
    }

    /// `host[:port]`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository name inside the registry.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The registry's host without a port.
    pub fn host(&self) -> &str {
        match self.registry.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => &self.registry,
        }
    }

    /// Whether the registry is on this machine; such registries are spoken to over plain
    /// HTTP, as Docker and podman do.
    pub fn is_loopback(&self) -> bool {
        let host = self.host().trim_start_matches('[').trim_end_matches(']');
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    pub fn tagged(&self, tag: &Tag) -> Reference {
        Reference::Tagged(self.clone(), tag.clone())
    }

    pub fn digested(&self, digest: &Digest) -> Reference {
        Reference::Digested(self.clone(), digest.clone())
    }
}

fn valid_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(']') || host.starts_with('[') => (name, Some(port)),
        _ => (host, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok());
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    port_ok && name_ok
}

fn valid_path_component(c: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !alnum_lower(b[0]) || !alnum_lower(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum_lower(b[i]) {
            i += 1;
            continue;
        }
        let sep_start = i;
        while i < b.len() && !alnum_lower(b[i]) {
            i += 1;
        }
        let sep = &c[sep_start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

impl FromStr for Repository {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Repository::parse(s)
    }
}

impl Serialize for Repository {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A fully qualified reference: a repository and either a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tagged(Repository, Tag),
    Digested(Repository, Digest),
}

impl Reference {
    /// Parses `repo:tag` or `repo@sha256:…`. `repo:sha256:…` is the classic slip and gets an
    /// error that says what was meant.
    pub fn parse(s: &str) -> Result<Reference, ParseError> {
        let bad = |why| ParseError::Reference(s.to_owned(), why);
        if let Some((repo, digest)) = s.split_once('@') {
            let repo = Repository::parse(repo)?;
            return Ok(Reference::Digested(repo, Digest::parse(digest)?));
        }
        if let Some(idx) = s.find(":sha256:") {
            let after_host = s.find('/').is_some_and(|slash| idx > slash);
            if after_host {
                return Err(bad("a digest follows '@', not ':' (write repo@sha256:...)"));
            }
        }
        let last_slash = s.rfind('/').unwrap_or(0);
        match s[last_slash..].rfind(':') {
            Some(colon) => {
                let colon = last_slash + colon;
                let repo = Repository::parse(&s[..colon])?;
                Ok(Reference::Tagged(repo, Tag::parse(&s[colon + 1..])?))
            }
            None => Err(bad("expected repo:tag or repo@sha256:...")),
        }
    }

    pub fn repository(&self) -> &Repository {
        match self {
            Reference::Tagged(r, _) | Reference::Digested(r, _) => r,
        }
    }

    /// The tag or digest part, as it appears in a registry URL.
    pub fn target(&self) -> &str {
        match self {
            Reference::Tagged(_, t) => t.as_str(),
            Reference::Digested(_, d) => d.as_str(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tagged(r, t) => write!(f, "{r}:{t}"),
            Reference::Digested(r, d) => write!(f, "{r}@{d}"),
        }
    }
}

impl FromStr for Reference {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn digest_requires_sha256_and_64_lowercase_hex() {
        assert!(Digest::parse(&format!("sha256:{HEX}")).is_ok());
        assert!(Digest::parse(HEX).is_err());
        assert!(Digest::parse(&format!("sha256:{}", HEX.to_uppercase())).is_err());
        assert!(Digest::parse(&format!("sha512:{HEX}")).is_err());
        assert!(Digest::parse(&format!("sha256:{}", &HEX[1..])).is_err());
    }

    #[test]
    fn digest_of_empty_input_is_the_well_known_one() {
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn tag_rules() {
        for ok in ["stable", "40", "40.20261101.3.0", "x86_64", "_a", "A-b.c"] {
            assert!(Tag::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"x".repeat(129)] {
            assert!(matches!(Tag::parse(bad), Err(ParseError::Tag(_))), "{bad}");
        }
    }

    #[test]
    fn digest_passed_as_tag_is_named_as_such() {
        let err = Tag::parse(&format!("sha256:{HEX}")).unwrap_err();
        assert!(matches!(err, ParseError::DigestAsTag(_)));
        assert!(err.to_string().contains("repo@sha256:"));
        assert!(matches!(Tag::parse(HEX), Err(ParseError::DigestAsTag(_))));
    }

    #[test]
    fn repository_forms() {
        let r = Repository::parse("quay.io/fedora/fedora-coreos").unwrap();
        assert_eq!(
            (r.registry(), r.path()),
            ("quay.io", "fedora/fedora-coreos")
        );
        let r = Repository::parse("127.0.0.1:5000/coreos").unwrap();
        assert_eq!(
            (r.registry(), r.path(), r.host()),
            ("127.0.0.1:5000", "coreos", "127.0.0.1")
        );
        assert!(r.is_loopback());
        let r = Repository::parse("localhost/a/b").unwrap();
        assert!(r.is_loopback());
        let r = Repository::parse("fedora/coreos").unwrap();
        assert_eq!((r.registry(), r.path()), ("docker.io", "fedora/coreos"));
        assert!(!r.is_loopback());
        let r = Repository::parse("busybox").unwrap();
        assert_eq!(r.path(), "library/busybox");
        assert_eq!(r.to_string(), "docker.io/library/busybox");
    }

    #[test]
    fn repository_rejects_tags_digests_schemes_and_bad_names() {
        for bad in [
            "quay.io/fedora/coreos:stable",
            &format!("quay.io/fedora/coreos@sha256:{HEX}"),
            "https://quay.io/fedora/coreos",
            "quay.io/Fedora/coreos",
            "quay.io/fedora//coreos",
            "quay.io/fedora/coreos/",
            "quay.io:99999/a",
            "",
        ] {
            assert!(Repository::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reference_round_trips() {
        for s in [
            "quay.io/fedora/fedora-coreos:stable",
            "127.0.0.1:5000/x:40",
            &format!("quay.io/a/b@sha256:{HEX}"),
            &format!("127.0.0.1:5000/a@sha256:{HEX}"),
        ] {
            assert_eq!(Reference::parse(s).unwrap().to_string(), *s);
        }
    }

    #[test]
    fn colon_digest_confusion_is_explained() {
        let err = Reference::parse(&format!("quay.io/a/b:sha256:{HEX}")).unwrap_err();
        assert!(err.to_string().contains("repo@sha256"), "{err}");
        let err = Reference::parse("127.0.0.1:5000/a").unwrap_err();
        assert!(matches!(err, ParseError::Reference(..)));
    }
}
