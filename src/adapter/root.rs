//! Root context: takes the configuration, keeps each provider's metadata and
//! keys fresh on a timer, and creates one HTTP context per request.
//!
//! Every worker runs its own VM with its own root context; they share one copy
//! of each provider's documents through Envoy's shared data. Each second, a VM
//! adopts the shared copies that changed; when a provider's refresh is due,
//! only the VM that takes that provider's lease fetches, then publishes what
//! it got (or its failure). Providers are fetched independently: one that
//! cannot be reached delays no other.

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
use crate::core::access::source::AccessFetch;
use crate::core::audit;
use crate::core::config::Config;
use crate::core::flow::Filter;
use crate::core::oidc::provider::{Fetch, FetchResult, ProviderState};
use crate::core::shared::{access_lease_key, provider_lease_key, release_lease, take_lease};
use crate::core::{random_token, Entropy, OsEntropy};

#[derive(Default)]
pub struct SesameRoot {
    shared: Option<Rc<Shared>>,
    /// Fetches under way: the provider's index, and what is fetched.
    fetches: HashMap<u32, (usize, Fetch)>,
    /// This VM's name for the fetch lease.
    holder: String,
    /// The timer has not fired yet since the configuration.
    first_tick: bool,
    /// The access document's fetch under way.
    access_fetch: Option<u32>,
}

/// Delay of the first timer tick after the configuration.
const FIRST_TICK_MS: u64 = 50;

impl SesameRoot {
    /// Adopts the shared provider states that another worker changed, then
    /// starts a refresh of each provider's discovery and keys when one is
    /// due and this VM gets that provider's lease.
    #[cfg_attr(sesame_size, optimize(size))]
    fn refresh(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        shared.adopt_providers();
        shared.record_provider_gauges();
        for index in 0..shared.filter.config.providers.len() {
            self.refresh_provider(&shared, index);
        }
        self.refresh_access(&shared);
    }

    /// Adopts the access document another worker shared; fetches it when
    /// due and this VM gets the lease.
    #[cfg_attr(sesame_size, optimize(size))]
    fn refresh_access(&mut self, shared: &Shared) {
        let Some(source) = &shared.filter.config.access_source else {
            return;
        };
        shared.adopt_access();
        let now = shared.clock.read();
        shared.record_access_gauges(now);
        if self.access_fetch.is_some() || !shared.filter.access.borrow().fetch_due(now) {
            return;
        }
        let lease_for = shared.filter.config.provider_timeout_ms.div_ceil(1000) + 2;
        let lease = access_lease_key(&shared.filter.shared_ns);
        if !take_lease(&HostStore, &lease, &self.holder, now, lease_for) {
            return;
        }
        let Some(call) = shared.filter.access.borrow_mut().start_fetch(source, now) else {
            return;
        };
        let config = &shared.filter.config;
        match dispatch(&source.cluster, &call, config.provider_timeout_ms) {
            Ok(token) => self.access_fetch = Some(token),
            Err(status) => {
                log(
                    LogLevel::Warn,
                    &format!(
                        "cannot call cluster {:?} for the access document: {status:?}",
                        source.cluster
                    ),
                );
                shared.filter.access.borrow_mut().call_failed(config, now);
                self.access_ended(shared, AccessFetch::Failed(String::new()), now);
            }
        }
    }

    /// The access document's fetch ended: count it, say what changed,
    /// share the state, free the lease.
    #[cfg_attr(sesame_size, optimize(size))]
    fn access_ended(&mut self, shared: &Shared, result: AccessFetch, now: u64) {
        self.access_fetch = None;
        match &result {
            AccessFetch::Changed => {
                shared.filter.access_changed();
                if let Some(document) = shared.filter.access.borrow().document.as_ref() {
                    log(LogLevel::Info, &audit::document_line(document, now));
                }
            }
            AccessFetch::Unchanged => {}
            AccessFetch::Failed(message) => {
                if !message.is_empty() {
                    let kept = if shared.filter.access.borrow().document.is_some() {
                        "the last good document stays in force"
                    } else {
                        "no document is in force yet: nobody is admitted"
                    };
                    log(LogLevel::Warn, &format!("{message}; {kept}"));
                }
            }
        }
        let counter = match result {
            AccessFetch::Failed(_) => "access_fetch_failure",
            _ => "access_fetch_success",
        };
        shared.metrics.increment(counter);
        shared.publish_access();
        release_lease(
            &HostStore,
            &access_lease_key(&shared.filter.shared_ns),
            &self.holder,
        );
        shared.record_access_gauges(now);
    }

    #[cfg_attr(sesame_size, optimize(size))]
    fn refresh_provider(&mut self, shared: &Shared, index: usize) {
        let config = &shared.filter.config;
        let provider = shared.filter.provider(index);
        let now = shared.clock.read();
        let due = shared
            .providers
            .borrow()
            .get(index)
            .is_some_and(|p| p.fetch_due(now));
        if !due || provider.discovery_url.is_none() {
            return;
        }
        // Two calls (discovery, then keys), each within the provider timeout.
        let lease_for = 2 * config.provider_timeout_ms.div_ceil(1000) + 2;
        let lease = provider_lease_key(&shared.filter.shared_ns, index);
        if !take_lease(&HostStore, &lease, &self.holder, now, lease_for) {
            return; // Another worker is fetching.
        }
        let next = shared.providers.borrow_mut()[index].start_refresh(provider, now);
        if let Some((call, fetch)) = next {
            self.send(shared, index, call, fetch);
        }
    }

    /// A provider's refresh ended (either way): share the result, free the
    /// lease.
    #[cfg_attr(sesame_size, optimize(size))]
    fn refresh_ended(&mut self, shared: &Shared, index: usize) {
        shared.publish_providers();
        release_lease(
            &HostStore,
            &provider_lease_key(&shared.filter.shared_ns, index),
            &self.holder,
        );
        shared.record_provider_gauges();
    }

    #[cfg_attr(sesame_size, optimize(size))]
    fn send(
        &mut self,
        shared: &Shared,
        index: usize,
        call: crate::core::http::ProviderCall,
        fetch: Fetch,
    ) {
        let config = &shared.filter.config;
        let cluster = &shared.filter.provider(index).idp_cluster;
        match dispatch(cluster, &call, config.provider_timeout_ms) {
            Ok(token) => {
                self.fetches.insert(token, (index, fetch));
            }
            Err(status) => {
                let message = format!("cannot call cluster {cluster:?}: {status:?}");
                log(LogLevel::Warn, &message);
                shared.providers.borrow_mut()[index].failed(
                    message,
                    now(),
                    config.provider_retry_max,
                );
                shared.metrics.increment("provider_fetch_failure");
                self.refresh_ended(shared, index);
            }
        }
    }
}

impl Context for SesameRoot {
    /// The plugin is going away (a new configuration, or Envoy stopping):
    /// the counts not yet added go to Envoy's stats now.
    #[cfg_attr(sesame_size, optimize(size))]
    fn on_done(&mut self) -> bool {
        if let Some(shared) = &self.shared {
            shared.metrics.flush();
        }
        true
    }

    #[cfg_attr(sesame_size, optimize(size))]
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        if self.access_fetch == Some(token_id) {
            let response = call_response(body_size);
            let now = now();
            let result =
                shared
                    .filter
                    .access
                    .borrow_mut()
                    .on_fetch(&shared.filter.config, &response, now);
            self.access_ended(&shared, result, now);
            return;
        }
        let Some((index, fetch)) = self.fetches.remove(&token_id) else {
            return;
        };
        let response = call_response(body_size);
        let config = &shared.filter.config;
        let provider = shared.filter.provider(index);
        let (result, next) = shared.providers.borrow_mut()[index].on_fetch(
            config,
            provider,
            fetch,
            &response,
            now(),
        );
        match result {
            FetchResult::Next => {}
            FetchResult::Refreshed { keys, skipped } => {
                log(
                    LogLevel::Info,
                    &format!(
                        "provider {} ready: {keys} signing key(s), {skipped} other key(s) ignored",
                        provider.issuer
                    ),
                );
                shared.metrics.increment("provider_fetch_success");
                self.refresh_ended(&shared, index);
            }
            FetchResult::Failed(message) => {
                let retry = shared.providers.borrow()[index]
                    .next_fetch_at
                    .saturating_sub(now());
                log(
                    LogLevel::Warn,
                    &format!(
                        "provider {} refresh failed: {message}; retrying in {retry}s",
                        provider.issuer
                    ),
                );
                shared.metrics.increment("provider_fetch_failure");
                self.refresh_ended(&shared, index);
            }
        }
        if let Some((call, fetch)) = next {
            self.send(&shared, index, call, fetch);
        }
    }
}

impl RootContext for SesameRoot {
    #[cfg_attr(sesame_size, optimize(size))]
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
        let mut states = Vec::with_capacity(config.providers.len());
        for p in &config.providers {
            log(
                LogLevel::Info,
                &format!(
                    "configured for provider {:?}: issuer {} (client {}, cluster {})",
                    p.id, p.issuer, p.client_id, p.idp_cluster
                ),
            );
            let mut seed = [0u8; 8];
            OsEntropy.fill(&mut seed);
            states.push(
                ProviderState::configured(p).unwrap_or_else(|| ProviderState {
                    jitter: u64::from_le_bytes(seed),
                    ..Default::default()
                }),
            );
        }
        let seen = vec![None; states.len()];
        let shared = Rc::new(Shared {
            filter: Filter::new(config),
            providers: RefCell::new(states),
            metrics: Metrics::default(),
            seen: RefCell::new(seen),
            looked_at: Cell::new(0),
            clock: VmClock::default(),
            access_seen: Cell::new(None),
        });
        if let Some(source) = &shared.filter.config.access_source {
            log(
                LogLevel::Info,
                &format!(
                    "access rules from {} (cluster {}, every {}s): nobody is admitted until a first document is loaded",
                    source.url, source.cluster, source.refresh_interval
                ),
            );
        }
        self.holder = random_token(&mut OsEntropy, 12);
        self.shared = Some(shared);
        self.fetches.clear();
        self.access_fetch = None;
        // No fetch from here: Envoy also configures a short-lived copy of the
        // plugin on its main thread, which would take the fetch lease and
        // never finish. Only VMs whose timer runs fetch; the first tick comes
        // quickly so that start-up stays fast.
        self.first_tick = true;
        self.set_tick_period(Duration::from_millis(FIRST_TICK_MS));
        true
    }

    #[cfg_attr(sesame_size, optimize(size))]
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

    #[cfg_attr(sesame_size, optimize(size))]
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(SesameHttp::new(shared)))
    }

    #[cfg_attr(sesame_size, optimize(size))]
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
