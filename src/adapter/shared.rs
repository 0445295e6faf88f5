//! What every context of one VM shares: the configured filter, this VM's
//! copy of each provider's state (and the shared copies it adopts), the
//! metrics, and the VM's clock.

use std::cell::{Cell, RefCell};

use proxy_wasm::types::LogLevel;

use super::metrics::Metrics;
use super::{log, HostStore, VmClock};
use crate::core::flow::Filter;
use crate::core::oidc::provider::ProviderState;
use crate::core::shared::{access_key, provider_key, SharedStore};
use crate::core::Clock;

/// What every context of this VM shares.
pub struct Shared {
    pub filter: Filter,
    /// One state per configured provider, in the configuration's order.
    pub providers: RefCell<Vec<ProviderState>>,
    pub metrics: Metrics,
    /// Version of each provider's shared state last adopted.
    pub seen: RefCell<Vec<Option<u32>>>,
    /// The clock's bound when a request that found a provider not ready
    /// last looked at the shared state.
    pub looked_at: Cell<u64>,
    /// The clock requests take their bounds from (read by the timer).
    pub clock: VmClock,
    /// Version of the shared access state last adopted.
    pub access_seen: Cell<Option<u32>>,
}

impl Shared {
    /// Takes the provider states other workers shared, when they changed.
    pub fn adopt_providers(&self) {
        for index in 0..self.filter.config.providers.len() {
            self.adopt_provider(index);
        }
    }

    fn adopt_provider(&self, index: usize) {
        let config = self.filter.provider(index);
        if config.discovery_url.is_none() {
            return; // Configured, not discovered: nothing is shared.
        }
        let key = provider_key(&self.filter.shared_ns, index);
        let Some((bytes, version)) = HostStore.get(&key) else {
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
            Ok(()) if provider.ready() && !was_ready => log(
                LogLevel::Info,
                &format!(
                    "provider {} ready (documents shared by another worker)",
                    config.issuer
                ),
            ),
            Ok(()) => {}
            Err(e) => log(
                LogLevel::Warn,
                &format!(
                    "ignoring the state of provider {} shared by another worker: {e}",
                    config.issuer
                ),
            ),
        }
    }

    /// A request found a provider not ready: the documents may already be
    /// in shared data (another worker fetched them since this VM's last
    /// tick). Looks at most once per reading of the VM's clock (each second).
    pub fn adopt_providers_if_not_ready(&self, clock: &dyn Clock) {
        if self.providers.borrow().iter().all(ProviderState::ready) {
            return;
        }
        let bound = clock.upper_bound();
        if self.looked_at.get() == bound {
            return;
        }
        self.looked_at.set(bound);
        self.adopt_providers();
    }

    /// A request is about to be answered 503 because a provider is not
    /// ready here: another worker may have shared its documents a moment
    /// ago, since this VM last looked (at most once a second otherwise).
    /// Looks now; true when a provider became ready, so that the request
    /// is decided again rather than refused while a fresh copy is there.
    pub fn adopt_providers_now(&self) -> bool {
        let ready = || self.providers.borrow().iter().filter(|p| p.ready()).count();
        let before = ready();
        self.adopt_providers();
        ready() > before
    }

    /// Takes the access document another worker shared, when it changed;
    /// what this VM decided with the old one is decided again. True when a
    /// new document came into force.
    pub fn adopt_access(&self) -> bool {
        if self.filter.config.access_source.is_none() {
            return false;
        }
        let Some((bytes, version)) = HostStore.get(&access_key(&self.filter.shared_ns)) else {
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
                log(
                    LogLevel::Warn,
                    &format!("ignoring the access document shared by another worker: {e}"),
                );
                false
            }
        }
    }

    /// Shares this VM's access state with the other workers, when it changed.
    pub fn publish_access(&self) {
        let mut access = self.filter.access.borrow_mut();
        if !std::mem::take(&mut access.changed) {
            return;
        }
        let key = access_key(&self.filter.shared_ns);
        if !HostStore.set(&key, &access.snapshot(), None) {
            log(
                LogLevel::Warn,
                "cannot share the access document with the other workers",
            );
        }
    }

    /// The access source's gauges: whether a document is in force, and
    /// how long ago the source last gave or confirmed it.
    pub fn record_access_gauges(&self, now: u64) {
        let Some(source) = &self.filter.config.access_source else {
            return;
        };
        let access = self.filter.access.borrow();
        let ready = access.in_force(source, now).is_some();
        self.metrics
            .set_gauge("access_source_ready", u64::from(ready));
        let age = if ready {
            now.saturating_sub(access.confirmed_at)
        } else {
            0
        };
        self.metrics.set_gauge("access_document_age", age);
    }

    /// Shares our copy of each provider's state with the other workers,
    /// when something changed.
    pub fn publish_providers(&self) {
        let mut providers = self.providers.borrow_mut();
        for (index, provider) in providers.iter_mut().enumerate() {
            if !provider.changed {
                continue;
            }
            provider.changed = false;
            if let Some(bytes) = provider.snapshot() {
                let key = provider_key(&self.filter.shared_ns, index);
                if !HostStore.set(&key, &bytes, None) {
                    log(
                        LogLevel::Warn,
                        "cannot share the provider's documents with the other workers",
                    );
                }
            }
        }
    }

    /// The providers' gauges, from this VM's copy of their state:
    /// `provider_ready` is 1 when every provider is ready, and with several
    /// providers each has its own (`provider_ready.<id>`).
    pub fn record_provider_gauges(&self) {
        let providers = self.providers.borrow();
        let all = providers.iter().all(ProviderState::ready);
        self.metrics.set_gauge("provider_ready", u64::from(all));
        let failures = providers.iter().map(|p| p.failures).max().unwrap_or(0);
        self.metrics
            .set_gauge("provider_consecutive_failures", u64::from(failures));
        if providers.len() > 1 {
            for (config, state) in self.filter.config.providers.iter().zip(providers.iter()) {
                self.metrics.set_gauge(
                    &format!("provider_ready.{}", config.id),
                    u64::from(state.ready()),
                );
            }
        }
    }
}
