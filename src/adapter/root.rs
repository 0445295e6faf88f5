//! Root context: takes the configuration, keeps the provider's metadata and
//! keys fresh on a timer, and creates one HTTP context per request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use super::http::SesameHttp;
use super::metrics::Metrics;
use super::{call_response, dispatch, log, now};
use crate::core::config::Config;
use crate::core::filter::Filter;
use crate::core::provider::{Fetch, FetchResult, ProviderState};

/// What every context of this VM shares.
pub struct Shared {
    pub filter: Filter,
    pub provider: RefCell<ProviderState>,
    pub metrics: Metrics,
}

#[derive(Default)]
pub struct SesameRoot {
    shared: Option<Rc<Shared>>,
    fetches: HashMap<u32, Fetch>,
}

impl SesameRoot {
    /// Starts a refresh of discovery and keys when one is due.
    fn refresh(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let config = &shared.filter.config;
        let next = shared.provider.borrow_mut().start_refresh(config, now());
        if let Some((call, fetch)) = next {
            self.send(&shared, call, fetch);
        }
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
                shared.metrics.set_gauge("provider_ready", 0);
            }
        }
    }
}

impl Context for SesameRoot {
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
                shared.metrics.set_gauge("provider_ready", 1);
            }
            FetchResult::Failed(message) => {
                let retry = shared.provider.borrow().next_fetch_at.saturating_sub(now());
                log(
                    LogLevel::Warn,
                    &format!("provider refresh failed: {message}; retrying in {retry}s"),
                );
                shared.metrics.increment("provider_fetch_failure");
                shared.metrics.set_gauge("provider_ready", 0);
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
        let shared = Rc::new(Shared {
            filter: Filter::new(config),
            provider: RefCell::new(ProviderState::default()),
            metrics: Metrics::default(),
        });
        shared.metrics.set_gauge("provider_ready", 0);
        self.shared = Some(shared);
        self.fetches.clear();
        self.set_tick_period(Duration::from_secs(1));
        self.refresh();
        true
    }

    fn on_tick(&mut self) {
        self.refresh();
        if let Some(shared) = &self.shared {
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
