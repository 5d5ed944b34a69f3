//! Architecture names: coreos basearch (`x86_64`, `aarch64`, …) and OCI platforms
//! (`linux/amd64`, `linux/arm64/v8`, …), and the normalisation that decides when two platforms
//! are the same one. It does not read images or indexes.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// The basearches coreos-assembler builds, with their OCI architecture.
const BASEARCHES: &[(&str, &str)] = &[
    ("x86_64", "amd64"),
    ("aarch64", "arm64"),
    ("ppc64le", "ppc64le"),
    ("s390x", "s390x"),
    ("riscv64", "riscv64"),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown architecture {0:?}: expected one of x86_64, aarch64, ppc64le, s390x, riscv64")]
pub struct UnknownArch(pub String);

/// A coreos basearch, as it appears in builds.json and `builds/<id>/<arch>/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Arch(&'static str);

impl Arch {
    pub fn parse(s: &str) -> Result<Arch, UnknownArch> {
        BASEARCHES
            .iter()
            .find(|(base, _)| *base == s)
            .map(|(base, _)| Arch(base))
            .ok_or_else(|| UnknownArch(s.to_owned()))
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }

    /// The OCI `architecture` value of this basearch.
    pub fn oci_architecture(&self) -> &'static str {
        BASEARCHES
            .iter()
            .find(|(base, _)| *base == self.0)
            .map(|(_, oci)| *oci)
            .unwrap_or(self.0)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl FromStr for Arch {
    type Err = UnknownArch;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Arch::parse(s)
    }
}

impl Serialize for Arch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

/// An OCI platform: what an index entry says it runs on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_owned),
        }
    }

    /// The key two platforms are compared by. Variants that are the only or default one for
    /// their architecture are dropped, so `arm64` and `arm64/v8` (and `amd64/v1`) are equal,
    /// as containerd's platform matcher treats them.
    pub fn key(&self) -> Platform {
        let default_variant = matches!(
            (self.architecture.as_str(), self.variant.as_deref()),
            ("arm64", Some("v8")) | ("amd64", Some("v1"))
        );
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: if default_variant {
                None
            } else {
                self.variant.clone()
            },
        }
    }

    /// Whether this names a platform an image can run on. Attestations and other
    /// non-image entries say `unknown/unknown`.
    pub fn is_real(&self) -> bool {
        self.os != "unknown" && self.architecture != "unknown" && !self.os.is_empty()
    }

    /// The coreos basearch this platform is, if it is a Linux platform coreos builds.
    pub fn basearch(&self) -> Option<Arch> {
        if self.os != "linux" {
            return None;
        }
        let key = self.key();
        if key.variant.is_some() {
            return None;
        }
        BASEARCHES
            .iter()
            .find(|(_, oci)| *oci == key.architecture)
            .map(|(base, _)| Arch(base))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Serialize for Platform {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `x86_64, aarch64`: arches for a message.
pub fn join(arches: &[Arch]) -> String {
    arches
        .iter()
        .map(Arch::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basearch_maps_to_oci_architecture() {
        let pairs = [
            ("x86_64", "amd64"),
            ("aarch64", "arm64"),
            ("ppc64le", "ppc64le"),
            ("s390x", "s390x"),
            ("riscv64", "riscv64"),
        ];
        for (base, oci) in pairs {
            let arch = Arch::parse(base).unwrap();
            assert_eq!(arch.oci_architecture(), oci);
            assert_eq!(Platform::new("linux", oci, None).basearch(), Some(arch));
        }
        assert!(Arch::parse("amd64").is_err());
        assert!(Arch::parse("i686").is_err());
    }

    #[test]
    fn arm64_with_or_without_v8_is_aarch64() {
        let a = Platform::new("linux", "arm64", Some("v8"));
        let b = Platform::new("linux", "arm64", None);
        assert_eq!(a.key(), b.key());
        assert_eq!(a.basearch(), Arch::parse("aarch64").ok());
        assert_ne!(
            Platform::new("linux", "arm", Some("v7")).key(),
            Platform::new("linux", "arm", Some("v6")).key()
        );
    }

    #[test]
    fn unknown_platforms_are_not_real() {
        assert!(!Platform::new("unknown", "unknown", None).is_real());
        assert!(Platform::new("linux", "s390x", None).is_real());
        assert_eq!(Platform::new("windows", "amd64", None).basearch(), None);
    }

    #[test]
    fn display_includes_variant() {
        assert_eq!(
            Platform::new("linux", "arm64", Some("v8")).to_string(),
            "linux/arm64/v8"
        );
        assert_eq!(
            Platform::new("linux", "amd64", Some("")).to_string(),
            "linux/amd64"
        );
    }
}
