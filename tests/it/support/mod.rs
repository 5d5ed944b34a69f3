//! Test support shared by every integration test: a real registry (`registry`), a
//! fault-injecting proxy in front of it (`proxy`), a bearer-token issuer for the registry's
//! token mode (`token`), a test world that runs the reprise binary
//! (`env`, `run`), the independent client that reads back what it wrote (`skopeo`), and what
//! its output is held to (`check`, `cosa`). Build trees come from the `reprise-fixtures` crate.

use std::io::{BufRead as _, BufReader, Read};

/// Reads `pipe` (a server's output) line by line until one contains `marker`, then keeps
/// draining it on a thread of its own so the server never blocks on a full pipe. `false` if
/// the pipe closed first: the server exited (bounded: it either says it is ready or exits).
pub fn ready_on(pipe: impl Read + Send + 'static, marker: &str) -> bool {
    let mut lines = BufReader::new(pipe).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains(marker));
    if ready {
        std::thread::spawn(move || lines.for_each(drop));
    }
    ready
}

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
