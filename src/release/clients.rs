//! The registry clients one stage talks to: one per registry host, made when first needed, so
//! a copy across registries, or a clean-up of several repositories, sets each up once.

use std::collections::HashMap;

use super::StageError;
use crate::reference::Repository;
use crate::registry::{Client, ConnectOptions};

/// One client per registry, made when first needed: a copy across registries talks to two.
#[derive(Clone)]
pub(super) struct Clients {
    opts: ConnectOptions,
    by_registry: HashMap<String, Client>,
}

impl Clients {
    pub(super) fn new(opts: &ConnectOptions) -> Clients {
        Clients {
            opts: opts.clone(),
            by_registry: HashMap::new(),
        }
    }

    pub(super) async fn get(&mut self, repo: &Repository) -> Result<Client, StageError> {
        if let Some(c) = self.by_registry.get(repo.registry()) {
            return Ok(c.clone());
        }
        let c = Client::connect(repo, &self.opts).await?;
        self.by_registry
            .insert(repo.registry().to_owned(), c.clone());
        Ok(c)
    }
}
