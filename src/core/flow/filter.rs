//! The configured filter: built once when Envoy hands over the
//! configuration, and kept for every request.

use std::cell::RefCell;

use crate::core::config::Config;
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
        let sealer = Sealer::new(&config.cookie_secret, &config.issuer, &config.client_id);
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
