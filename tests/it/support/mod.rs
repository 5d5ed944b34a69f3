//! Test support shared by the integration tests: a real registry, a fault-injecting proxy in
//! front of it, and the deterministic fixture generator.
#![allow(dead_code)]

pub mod cosa;
pub mod env;
pub mod fixtures;
pub mod proxy;
pub mod registry;
