//! reprise's integration tests, as one test binary: each module is one area, and the support
//! code (registry, proxy, test world) is compiled once for all of them.
//!
//! Every test that talks to a registry starts its own on 127.0.0.1 (`support::registry`), so the
//! areas run side by side in one process without sharing state.

mod support;

mod annotations;
mod arch_policy;
mod bad_input;
mod crash;
mod ecosystem;
mod fixtures_gen;
mod performance;
mod pipeline_shapes;
mod pipelines;
mod properties;
mod push;
mod race;
mod records;
mod referrers;
mod release;
mod release_stages;
mod reliability;
mod resumable;
mod security;
mod soak;
mod store_http;
mod store_s3;
mod support_smoke;
mod token_auth;
mod verification;
