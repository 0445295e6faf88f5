//! What every context of one VM shares: the configured filter, this VM's
//! copy of the provider's state (and the shared copy it adopts), the
//! metrics, and the VM's clock.

use std::cell::{Cell, RefCell};

use proxy_wasm::types::LogLevel;

use super::metrics::Metrics;
use super::{log, HostStore, VmClock};
use crate::core::flow::Filter;
use crate::core::oidc::provider::ProviderState;
use crate::core::shared::{provider_key, SharedStore};
use crate::core::Clock;

/// What every context of this VM shares.
pub struct Shared {
    pub filter: Filter,
    pub provider: RefCell<ProviderState>,
    pub metrics: Metrics,
    /// Version of the shared provider state last adopted.
    pub seen: Cell<Option<u32>>,
    /// The clock's bound when a request that found the provider not ready
    /// last looked at the shared state.
    pub looked_at: Cell<u64>,
    /// The clock requests take their bounds from (read by the timer).
    pub clock: VmClock,
}

impl Shared {
    /// Takes the provider state another worker shared, when it changed.
    pub fn adopt_provider(&self) {
        let config = &self.filter.config;
        let Some((bytes, version)) = HostStore.get(&provider_key(&self.filter.shared_ns)) else {
            return;
        };
        if self.seen.get() == Some(version) {
            return;
        }
        self.seen.set(Some(version));
        let mut provider = self.provider.borrow_mut();
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
                &format!("ignoring the provider state shared by another worker: {e}"),
            ),
        }
    }

    /// A request found the provider not ready: the documents may already be
    /// in shared data (another worker fetched them since this VM's last
    /// tick). Looks at most once per reading of the VM's clock (each second).
    pub fn adopt_provider_if_not_ready(&self, clock: &dyn Clock) {
        if self.provider.borrow().ready() {
            return;
        }
        let bound = clock.upper_bound();
        if self.looked_at.get() == bound {
            return;
        }
        self.looked_at.set(bound);
        self.adopt_provider();
    }

    /// Shares our copy of the provider's state with the other workers, when
    /// something changed.
    pub fn publish_provider(&self) {
        let mut provider = self.provider.borrow_mut();
        if !provider.changed {
            return;
        }
        provider.changed = false;
        if let Some(bytes) = provider.snapshot() {
            let key = provider_key(&self.filter.shared_ns);
            if !HostStore.set(&key, &bytes, None) {
                log(
                    LogLevel::Warn,
                    "cannot share the provider's documents with the other workers",
                );
            }
        }
    }

    /// The provider's gauges, from this VM's copy of its state.
    pub fn record_provider_gauges(&self) {
        let provider = self.provider.borrow();
        self.metrics
            .set_gauge("provider_ready", u64::from(provider.ready()));
        self.metrics.set_gauge(
            "provider_consecutive_failures",
            u64::from(provider.failures),
        );
    }
}
