//! Root context: takes the configuration, keeps the provider's metadata and
//! keys fresh on a timer, and creates one HTTP context per request.
//!
//! Every worker runs its own VM with its own root context; they share one copy
//! of the provider's documents through Envoy's shared data. Each second, a VM
//! adopts the shared copy when it changed; when a refresh is due, only the VM
//! that takes the lease fetches, then publishes what it got (or its failure).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use super::http::SesameHttp;
use super::metrics::Metrics;
use super::shared::Shared;
use super::{call_response, dispatch, log, now, HostStore, VmClock};
use crate::core::config::Config;
use crate::core::flow::Filter;
use crate::core::oidc::provider::{Fetch, FetchResult, ProviderState};
use crate::core::shared::{provider_lease_key, release_lease, take_lease};
use crate::core::{random_token, Entropy, OsEntropy};

#[derive(Default)]
pub struct SesameRoot {
    shared: Option<Rc<Shared>>,
    fetches: HashMap<u32, Fetch>,
    /// This VM's name for the fetch lease.
    holder: String,
    /// The timer has not fired yet since the configuration.
    first_tick: bool,
}

/// Delay of the first timer tick after the configuration.
const FIRST_TICK_MS: u64 = 50;

impl SesameRoot {
    /// Adopts the shared provider state when another worker changed it, then
    /// starts a refresh of discovery and keys when one is due and this VM
    /// gets the lease.
    fn refresh(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let config = &shared.filter.config;
        let ns = &shared.filter.shared_ns;
        shared.adopt_provider();
        shared.record_provider_gauges();
        let now = shared.clock.read();
        if !shared.provider.borrow().fetch_due(now) {
            return;
        }
        // Two calls (discovery, then keys), each within the provider timeout.
        let lease_for = 2 * config.provider_timeout_ms.div_ceil(1000) + 2;
        if !take_lease(
            &HostStore,
            &provider_lease_key(ns),
            &self.holder,
            now,
            lease_for,
        ) {
            return; // Another worker is fetching.
        }
        let next = shared.provider.borrow_mut().start_refresh(config, now);
        if let Some((call, fetch)) = next {
            self.send(&shared, call, fetch);
        }
    }

    /// The refresh ended (either way): share the result, free the lease.
    fn refresh_ended(&mut self, shared: &Shared) {
        shared.publish_provider();
        release_lease(
            &HostStore,
            &provider_lease_key(&shared.filter.shared_ns),
            &self.holder,
        );
        shared.record_provider_gauges();
    }

    fn send(&mut self, shared: &Shared, call: crate::core::http::ProviderCall, fetch: Fetch) {
        let config = &shared.filter.config;
        match dispatch(&config.idp_cluster, &call, config.provider_timeout_ms) {
            Ok(token) => {
                self.fetches.insert(token, fetch);
            }
            Err(status) => {
                let message = format!("cannot call cluster {:?}: {status:?}", config.idp_cluster);
                log(LogLevel::Warn, &message);
                shared
                    .provider
                    .borrow_mut()
                    .failed(message, now(), config.provider_retry_max);
                shared.metrics.increment("provider_fetch_failure");
                self.refresh_ended(shared);
            }
        }
    }
}

impl Context for SesameRoot {
    /// The plugin is going away (a new configuration, or Envoy stopping):
    /// the counts not yet added go to Envoy's stats now.
    fn on_done(&mut self) -> bool {
        if let Some(shared) = &self.shared {
            shared.metrics.flush();
        }
        true
    }

    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(fetch) = self.fetches.remove(&token_id) else {
            return;
        };
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let response = call_response(body_size);
        let config = &shared.filter.config;
        let (result, next) = shared
            .provider
            .borrow_mut()
            .on_fetch(config, fetch, &response, now());
        match result {
            FetchResult::Next => {}
            FetchResult::Refreshed { keys, skipped } => {
                log(
                    LogLevel::Info,
                    &format!(
                        "provider {} ready: {keys} signing key(s), {skipped} other key(s) ignored",
                        config.issuer
                    ),
                );
                shared.metrics.increment("provider_fetch_success");
                self.refresh_ended(&shared);
            }
            FetchResult::Failed(message) => {
                let retry = shared.provider.borrow().next_fetch_at.saturating_sub(now());
                log(
                    LogLevel::Warn,
                    &format!("provider refresh failed: {message}; retrying in {retry}s"),
                );
                shared.metrics.increment("provider_fetch_failure");
                self.refresh_ended(&shared);
            }
        }
        if let Some((call, fetch)) = next {
            self.send(&shared, call, fetch);
        }
    }
}

impl RootContext for SesameRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = proxy_wasm::hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        let config = match Config::parse(&bytes) {
            Ok(config) => config,
            Err(errors) => {
                for e in &errors {
                    log(LogLevel::Critical, &format!("invalid configuration: {e}"));
                }
                log(
                    LogLevel::Critical,
                    &format!(
                        "configuration refused ({} problem(s)); the filter will not start",
                        errors.len()
                    ),
                );
                return false;
            }
        };
        log(
            LogLevel::Info,
            &format!(
                "configured for issuer {} (client {}, cluster {})",
                config.issuer, config.client_id, config.idp_cluster
            ),
        );
        let mut seed = [0u8; 8];
        OsEntropy.fill(&mut seed);
        let provider = ProviderState {
            jitter: u64::from_le_bytes(seed),
            ..Default::default()
        };
        let shared = Rc::new(Shared {
            filter: Filter::new(config),
            provider: RefCell::new(provider),
            metrics: Metrics::default(),
            seen: Cell::new(None),
            looked_at: Cell::new(0),
            clock: VmClock::default(),
        });
        self.holder = random_token(&mut OsEntropy, 12);
        self.shared = Some(shared);
        self.fetches.clear();
        // No fetch from here: Envoy also configures a short-lived copy of the
        // plugin on its main thread, which would take the fetch lease and
        // never finish. Only VMs whose timer runs fetch; the first tick comes
        // quickly so that start-up stays fast.
        self.first_tick = true;
        self.set_tick_period(Duration::from_millis(FIRST_TICK_MS));
        true
    }

    fn on_tick(&mut self) {
        if std::mem::take(&mut self.first_tick) {
            self.set_tick_period(Duration::from_secs(1));
        }
        self.refresh();
        if let Some(shared) = &self.shared {
            shared.metrics.flush();
            shared.metrics.record_vm_memory();
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(SesameHttp::new(shared)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
