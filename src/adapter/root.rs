//! Root context: takes the configuration, keeps each provider's metadata and
//! keys (and the access document) fresh on a timer, and creates one HTTP
//! context per request.
//!
//! Every worker runs its own VM with its own root context; they share one copy
//! of each provider's documents through Envoy's shared data. Each second, a VM
//! adopts the shared copies that changed; when a refresh is due, only the VM
//! that takes its lease fetches, then publishes what it got (or its failure)
//! ([`crate::host::refresh`]).

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use super::http::SesameHttp;
use super::shared::{Shared, WasmHost};
use super::{call_response, log};
use crate::core::config::Config;
use crate::host::refresh::Refresher;
use crate::host::worker::Worker;

#[derive(Default)]
pub struct SesameRoot {
    shared: Option<Rc<Shared>>,
    refresher: Refresher,
    /// The timer has not fired yet since the configuration.
    first_tick: bool,
}

/// Delay of the first timer tick after the configuration.
const FIRST_TICK_MS: u64 = 50;

impl Context for SesameRoot {
    /// The plugin is going away (a new configuration, or Envoy stopping):
    /// the counts not yet added go to Envoy's stats now.
    #[cfg_attr(sesame_size, optimize(size))]
    fn on_done(&mut self) -> bool {
        if let Some(shared) = &self.shared {
            shared.host.metrics.flush();
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
        let id = u64::from(token_id);
        if !self.refresher.expects(id) {
            return;
        }
        let response = call_response(body_size);
        self.refresher
            .on_response(&shared.worker, &shared.host, id, &response);
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
                for line in crate::core::config::refusal_lines(&errors) {
                    log(LogLevel::Critical, &line);
                }
                return false;
            }
        };
        let shared = Rc::new(Shared {
            worker: Worker::new(config),
            host: WasmHost::default(),
        });
        Refresher::announce(&shared.worker, &shared.host);
        self.shared = Some(shared);
        self.refresher.reset();
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
        if let Some(shared) = self.shared.clone() {
            self.refresher.tick(&shared.worker, &shared.host);
            shared.host.metrics.flush();
            shared.host.metrics.record_vm_memory();
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
