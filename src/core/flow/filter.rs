//! The configured filter: built once when Envoy hands over the
//! configuration, and kept for every request.

use std::cell::RefCell;

use crate::core::access::source::AccessState;
use crate::core::config::{Config, ProviderConfig};
use crate::core::flow::step::{Action, Step};
use crate::core::flow::tokens::TokenCache;
use crate::core::http::Request;
use crate::core::oidc::provider::ProviderState;
use crate::core::pages;
use crate::core::session::{Sealer, SessionCache};
use crate::core::shared;
use crate::core::shared::SharedStore;
use crate::core::{Clock, Entropy};

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
    /// The access document in force, and its source's state (this VM's
    /// copy).
    pub access: RefCell<AccessState>,
    /// The keys of personal tokens, when they have a secret of their own.
    pub token_sealer: Option<Sealer>,
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
        let token_sealer = config
            .personal_tokens
            .as_ref()
            .and_then(|t| t.secret.as_ref())
            .map(|secret| Sealer::for_providers(secret, &bindings));
        Filter {
            config,
            sealer,
            tokens: RefCell::new(TokenCache::default()),
            sessions: RefCell::new(SessionCache::default()),
            shared_ns,
            access: RefCell::new(AccessState::default()),
            token_sealer,
        }
    }

    /// A new access document came into force: what this VM decided with
    /// the old one about sessions and tokens is decided again.
    pub fn access_changed(&self) {
        self.sessions.borrow_mut().clear();
        self.tokens.borrow_mut().clear();
    }

    /// Whether the rules come from an access document and none is in force
    /// (none loaded yet, or one older than `max_age`): nobody can be
    /// admitted. The clock is read only with `max_age` (the exact time:
    /// a request's bound may be seconds ahead).
    pub fn access_missing(&self, clock: &dyn Clock) -> bool {
        let Some(source) = &self.config.access_source else {
            return false;
        };
        let now = if source.max_age.is_some() {
            clock.now()
        } else {
            0
        };
        self.access.borrow().in_force(source, now).is_none()
    }
}

impl Filter {
    /// Decides what to do with a request ([`Filter::decide_request`]);
    /// `store` is the state shared by Envoy's workers. Its pages get their
    /// configured parts here ([`Filter::with_help`]).
    pub fn on_request_shared(
        &self,
        req: &Request,
        providers: &[ProviderState],
        clock: &dyn Clock,
        entropy: &mut dyn Entropy,
        store: &dyn SharedStore,
    ) -> Step {
        self.with_help(self.decide_request(req, providers, clock, entropy, store))
    }

    /// What a step ends on, with the part of Sésame's pages that depends on
    /// the configuration: whom to ask for help, on a refusal page.
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn with_help(&self, mut step: Step) -> Step {
        if let Action::Respond(response) = &mut step.action {
            let contact = self.config.help_contact.as_ref();
            pages::fill_help(
                response,
                contact.map(|c| (c.href.as_str(), c.text.as_str())),
            );
        }
        step
    }

    /// The provider at `index` (the first when out of range: indices come
    /// from this configuration).
    pub fn provider(&self, index: usize) -> &ProviderConfig {
        self.config
            .providers
            .get(index)
            .unwrap_or(&self.config.providers[0])
    }
}
