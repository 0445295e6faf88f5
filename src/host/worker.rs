//! One worker's filter: the configured core, and its copy of each
//! provider's state and of the access document, adopted from the state the
//! workers share (and shared back when this worker changed it).

use std::cell::{Cell, RefCell};

use super::{Host, Level};
use crate::core::config::Config;
use crate::core::flow::Filter;
use crate::core::oidc::provider::ProviderState;
use crate::core::shared::{access_key, provider_key};
use crate::core::{Clock, Entropy, OsEntropy};

/// One worker's filter and its copies of the shared state.
pub struct Worker {
    pub filter: Filter,
    /// One state per configured provider, in the configuration's order.
    pub providers: RefCell<Vec<ProviderState>>,
    /// Version of each provider's shared state last adopted.
    pub seen: RefCell<Vec<Option<u32>>>,
    /// The clock's bound when a request that found a provider not ready
    /// last looked at the shared state.
    pub looked_at: Cell<u64>,
    /// Version of the shared access state last adopted.
    pub access_seen: Cell<Option<u32>>,
}

impl Worker {
    /// The filter for `config`; each discovered provider starts unknown,
    /// with its own jitter for the refresh times.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn new(config: Config) -> Worker {
        let states: Vec<ProviderState> = config
            .providers
            .iter()
            .map(|p| {
                let mut seed = [0u8; 8];
                OsEntropy.fill(&mut seed);
                ProviderState::configured(p).unwrap_or_else(|| ProviderState {
                    jitter: u64::from_le_bytes(seed),
                    ..Default::default()
                })
            })
            .collect();
        let seen = vec![None; states.len()];
        Worker {
            filter: Filter::new(config),
            providers: RefCell::new(states),
            seen: RefCell::new(seen),
            looked_at: Cell::new(0),
            access_seen: Cell::new(None),
        }
    }

    /// Takes the provider states other workers shared, when they changed.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn adopt_providers(&self, host: &dyn Host) {
        for index in 0..self.filter.config.providers.len() {
            self.adopt_provider(host, index);
        }
    }

    #[cfg_attr(sesame_size, optimize(size))]
    fn adopt_provider(&self, host: &dyn Host, index: usize) {
        let config = self.filter.provider(index);
        if config.discovery_url.is_none() {
            return; // Configured, not discovered: nothing is shared.
        }
        let key = provider_key(&self.filter.shared_ns, index);
        let Some((bytes, version)) = host.store().get(&key) else {
            return;
        };
        {
            let mut seen = self.seen.borrow_mut();
            if seen.get(index).copied().flatten() == Some(version) {
                return;
            }
            if let Some(slot) = seen.get_mut(index) {
                *slot = Some(version);
            }
        }
        let mut providers = self.providers.borrow_mut();
        let Some(provider) = providers.get_mut(index) else {
            return;
        };
        let was_ready = provider.ready();
        match provider.adopt(config, &bytes) {
            Ok(()) if provider.ready() && !was_ready => host.log(
                Level::Info,
                &format!(
                    "provider {} ready (documents shared by another worker)",
                    config.issuer
                ),
            ),
            Ok(()) => {}
            Err(e) => host.log(
                Level::Warn,
                &format!(
                    "ignoring the state of provider {} shared by another worker: {e}",
                    config.issuer
                ),
            ),
        }
    }

    /// A request found a provider not ready: the documents may already be
    /// in shared data (another worker fetched them since this worker last
    /// looked). Looks at most once per second of the clock's bound.
    pub fn adopt_providers_if_not_ready(&self, host: &dyn Host, clock: &dyn Clock) {
        if self.providers.borrow().iter().all(ProviderState::ready) {
            return;
        }
        let bound = clock.upper_bound();
        if self.looked_at.get() == bound {
            return;
        }
        self.looked_at.set(bound);
        self.adopt_providers(host);
    }

    /// A request is about to be answered 503 because a provider is not
    /// ready here: another worker may have shared its documents a moment
    /// ago. Looks now; true when a provider became ready, so that the
    /// request is decided again rather than refused while a fresh copy is
    /// there.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn adopt_providers_now(&self, host: &dyn Host) -> bool {
        let ready = || self.providers.borrow().iter().filter(|p| p.ready()).count();
        let before = ready();
        self.adopt_providers(host);
        ready() > before
    }

    /// Takes the access document another worker shared, when it changed;
    /// what this worker decided with the old one is decided again. True
    /// when a new document came into force.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn adopt_access(&self, host: &dyn Host) -> bool {
        if self.filter.config.access_source.is_none() {
            return false;
        }
        let Some((bytes, version)) = host.store().get(&access_key(&self.filter.shared_ns)) else {
            return false;
        };
        if self.access_seen.replace(Some(version)) == Some(version) {
            return false;
        }
        let adopted = self
            .filter
            .access
            .borrow_mut()
            .adopt(&self.filter.config, &bytes);
        match adopted {
            Ok(true) => {
                self.filter.access_changed();
                true
            }
            Ok(false) => false,
            Err(e) => {
                host.log(
                    Level::Warn,
                    &format!("ignoring the access document shared by another worker: {e}"),
                );
                false
            }
        }
    }

    /// Shares this worker's access state with the others, when it changed.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn publish_access(&self, host: &dyn Host) {
        let mut access = self.filter.access.borrow_mut();
        if !std::mem::take(&mut access.changed) {
            return;
        }
        let key = access_key(&self.filter.shared_ns);
        if !host.store().set(&key, &access.snapshot(), None) {
            host.log(
                Level::Warn,
                "cannot share the access document with the other workers",
            );
        }
    }

    /// The access source's gauges: whether a document is in force, and
    /// how long ago the source last gave or confirmed it.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn record_access_gauges(&self, host: &dyn Host, now: u64) {
        let Some(source) = &self.filter.config.access_source else {
            return;
        };
        let access = self.filter.access.borrow();
        let ready = access.in_force(source, now).is_some();
        host.set_gauge("access_source_ready", u64::from(ready));
        let age = if ready {
            now.saturating_sub(access.confirmed_at)
        } else {
            0
        };
        host.set_gauge("access_document_age", age);
    }

    /// Shares this worker's copy of each provider's state with the others,
    /// when something changed.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn publish_providers(&self, host: &dyn Host) {
        let mut providers = self.providers.borrow_mut();
        for (index, provider) in providers.iter_mut().enumerate() {
            if !provider.changed {
                continue;
            }
            provider.changed = false;
            if let Some(bytes) = provider.snapshot() {
                let key = provider_key(&self.filter.shared_ns, index);
                if !host.store().set(&key, &bytes, None) {
                    host.log(
                        Level::Warn,
                        "cannot share the provider's documents with the other workers",
                    );
                }
            }
        }
    }

    /// The providers' gauges, from this worker's copy of their state:
    /// `provider_ready` is 1 when every provider is ready, and with several
    /// providers each has its own (`provider_ready.<id>`).
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn record_provider_gauges(&self, host: &dyn Host) {
        let providers = self.providers.borrow();
        let all = providers.iter().all(ProviderState::ready);
        host.set_gauge("provider_ready", u64::from(all));
        let failures = providers.iter().map(|p| p.failures).max().unwrap_or(0);
        host.set_gauge("provider_consecutive_failures", u64::from(failures));
        if providers.len() > 1 {
            for (config, state) in self.filter.config.providers.iter().zip(providers.iter()) {
                host.set_gauge(
                    &format!("provider_ready.{}", config.id),
                    u64::from(state.ready()),
                );
            }
        }
    }
}
