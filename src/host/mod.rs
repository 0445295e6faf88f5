//! What both builds do the same way around the core, whatever carries it
//! out: the proxy-wasm module (`adapter`) and the Envoy dynamic module
//! (`native`). Each supplies a [`Host`]: its log, its clock, the state its
//! workers share, its counters and its calls to the provider.
//!
//! - [`worker::Worker`]: one worker's configured filter and its copy of the
//!   providers' and the access document's state, adopted from and shared
//!   through the host's store;
//! - [`refresh::Refresher`]: the background fetches of each provider's
//!   discovery and keys and of the access document;
//! - [`request`]: a request decided, and its outcome counted, logged and
//!   audited.

pub mod refresh;
pub mod request;
pub mod worker;

use crate::core::http::ProviderCall;
use crate::core::shared::SharedStore;

/// A log line's level (Envoy's levels, in their order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

/// What a build offers the shared code.
pub trait Host {
    /// Writes a line to Envoy's log.
    fn log(&self, level: Level, message: &str);
    /// The time now, in unix seconds.
    fn now(&self) -> u64;
    /// The state every worker of this configuration shares.
    fn store(&self) -> &dyn SharedStore;
    /// Adds one to a counter. `frequent`: the outcome of nearly every
    /// request (a build may add those in batches).
    fn count(&self, name: &str, frequent: bool);
    /// Sets a gauge.
    fn set_gauge(&self, name: &str, value: u64);
    /// Sends a call to the provider through `cluster`; the call's id, whose
    /// answer the build hands back, or why it could not be sent.
    fn dispatch(&self, cluster: &str, call: &ProviderCall, timeout_ms: u64) -> Result<u64, String>;
}

/// The `user-agent` of Sésame's calls to providers.
pub const USER_AGENT: &str = concat!("sesame/", env!("CARGO_PKG_VERSION"));

#[cfg(test)]
pub(crate) mod testing {
    //! A host in memory, for the shared code's tests.

    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::{Host, Level};
    use crate::core::http::ProviderCall;
    use crate::core::shared::{MemoryStore, SharedStore};

    #[derive(Default)]
    pub struct FakeHost {
        pub time: std::cell::Cell<u64>,
        pub store: MemoryStore,
        pub lines: RefCell<Vec<(Level, String)>>,
        pub counters: RefCell<HashMap<String, u64>>,
        pub gauges: RefCell<HashMap<String, u64>>,
        /// Calls sent: (id, cluster, call).
        pub calls: RefCell<Vec<(u64, String, ProviderCall)>>,
        /// Refuse every call with this reason.
        pub refuse_calls: Option<String>,
    }

    impl FakeHost {
        pub fn at(time: u64) -> FakeHost {
            let host = FakeHost::default();
            host.time.set(time);
            host
        }

        pub fn counter(&self, name: &str) -> u64 {
            self.counters.borrow().get(name).copied().unwrap_or(0)
        }

        pub fn gauge(&self, name: &str) -> Option<u64> {
            self.gauges.borrow().get(name).copied()
        }

        pub fn logged(&self, text: &str) -> bool {
            self.lines.borrow().iter().any(|(_, l)| l.contains(text))
        }
    }

    impl Host for FakeHost {
        fn log(&self, level: Level, message: &str) {
            self.lines.borrow_mut().push((level, message.to_string()));
        }
        fn now(&self) -> u64 {
            self.time.get()
        }
        fn store(&self) -> &dyn SharedStore {
            &self.store
        }
        fn count(&self, name: &str, _frequent: bool) {
            *self.counters.borrow_mut().entry(name.into()).or_default() += 1;
        }
        fn set_gauge(&self, name: &str, value: u64) {
            self.gauges.borrow_mut().insert(name.into(), value);
        }
        fn dispatch(&self, cluster: &str, call: &ProviderCall, _: u64) -> Result<u64, String> {
            if let Some(reason) = &self.refuse_calls {
                return Err(reason.clone());
            }
            let mut calls = self.calls.borrow_mut();
            let id = calls.len() as u64 + 1;
            calls.push((id, cluster.to_string(), call.clone()));
            Ok(id)
        }
    }
}
