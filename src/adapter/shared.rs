//! What every context of one VM shares: the worker (the configured filter
//! and its copies of the shared state), and the VM's host: its metrics and
//! its clock.

use proxy_wasm::types::LogLevel;

use super::metrics::Metrics;
use super::{dispatch, log, HostStore, VmClock};
use crate::core::http::ProviderCall;
use crate::core::shared::SharedStore;
use crate::host::worker::Worker;
use crate::host::{Host, Level};

/// What every context of this VM shares.
pub struct Shared {
    pub worker: Worker,
    pub host: WasmHost,
}

/// The proxy-wasm host, as the shared code sees it.
#[derive(Default)]
pub struct WasmHost {
    pub metrics: Metrics,
    /// The clock requests take their bounds from (read by the timer).
    pub clock: VmClock,
}

impl Host for WasmHost {
    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
            Level::Critical => LogLevel::Critical,
        };
        log(level, message);
    }

    /// Reads the host's clock (and so renews the VM's reading).
    fn now(&self) -> u64 {
        self.clock.read()
    }

    fn store(&self) -> &dyn SharedStore {
        &HostStore
    }

    fn count(&self, name: &str, frequent: bool) {
        if frequent {
            self.metrics.count_later(name);
        } else {
            self.metrics.increment(name);
        }
    }

    fn set_gauge(&self, name: &str, value: u64) {
        self.metrics.set_gauge(name, value);
    }

    fn dispatch(&self, cluster: &str, call: &ProviderCall, timeout_ms: u64) -> Result<u64, String> {
        dispatch(cluster, call, timeout_ms)
            .map(u64::from)
            .map_err(|status| format!("{status:?}"))
    }
}
