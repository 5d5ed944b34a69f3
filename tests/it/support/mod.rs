//! Test support shared by every integration test: a real registry (`registry`), a
//! fault-injecting proxy in front of it (`proxy`), a bearer-token issuer for the registry's
//! token mode (`token`), a test world that runs the reprise binary
//! (`env`, `run`), the independent client that reads back what it wrote (`skopeo`), and what
//! its output is held to (`check`, `cosa`). Build trees come from the `reprise-fixtures` crate.

pub mod check;
pub mod cosa;
pub mod env;
pub mod nginx;
pub mod proxy;
pub mod referrers;
pub mod registry;
pub mod run;
pub mod s3;
pub mod skopeo;
pub mod token;
