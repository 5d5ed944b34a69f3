//! The manifest media types reprise reads and writes, OCI and Docker schema 2, and the bound
//! on how large a manifest read from a registry may be. Shared vocabulary: the archive
//! reader, the index builder and the registry client all speak it.

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Remote manifests (and image configs) larger than this are refused instead of parsed.
pub const MAX_REMOTE_MANIFEST: usize = 4 << 20;
