//! The configured filter: built once when Envoy hands over the
//! configuration, and kept for every request.

use std::cell::RefCell;

use crate::core::config::{Config, ProviderConfig};
use crate::core::flow::tokens::TokenCache;
use crate::core::session::{Sealer, SessionCache};
use crate::core::shared;

/// The configured filter: built once when Envoy hands over the configuration.
#[derive(Debug)]
pub struct Filter {
    pub config: Config,
    pub sealer: Sealer,
    /// Bearer tokens checked lately (this VM's).
    pub tokens: RefCell<TokenCache>,
    /// Sessions opened lately (this VM's).
    pub sessions: RefCell<SessionCache>,
    /// Prefix of this configuration's keys in Envoy's shared data.
    pub shared_ns: String,
}

impl Filter {
    pub fn new(config: Config) -> Self {
        let bindings: Vec<(&str, &str)> = config
            .providers
            .iter()
            .map(|p| (p.issuer.as_str(), p.client_id.as_str()))
            .collect();
        let sealer = Sealer::for_providers(&config.cookie_secret, &bindings);
        let shared_ns = shared::namespace(&config);
        Filter {
            config,
            sealer,
            tokens: RefCell::new(TokenCache::default()),
            sessions: RefCell::new(SessionCache::default()),
            shared_ns,
        }
    }
}

impl Filter {
    /// The provider at `index` (the first when out of range: indices come
    /// from this configuration).
    pub fn provider(&self, index: usize) -> &ProviderConfig {
        self.config
            .providers
            .get(index)
            .unwrap_or(&self.config.providers[0])
    }
}
