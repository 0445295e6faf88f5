//! Counters in Envoy's stats (`wasmcustom.sesame.*`), one per outcome, and
//! gauges.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

/// Metric ids by name, defined on first use (one hostcall), then cached.
#[derive(Default)]
pub struct Metrics {
    ids: RefCell<HashMap<String, u32>>,
    /// Counts not yet added to Envoy's counters, by metric id.
    pending: RefCell<Vec<(u32, i64)>>,
}

impl Metrics {
    fn id(&self, kind: MetricType, name: &str) -> Option<u32> {
        if let Some(id) = self.ids.borrow().get(name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(kind, &format!("sesame.{name}")).ok()?;
        self.ids.borrow_mut().insert(name.to_string(), id);
        Some(id)
    }

    pub fn increment(&self, name: &str) {
        if name.is_empty() {
            return;
        }
        if let Some(id) = self.id(MetricType::Counter, name) {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    /// Counts `name` at the next `flush` (the timer's, each second) rather
    /// than with a hostcall now: for the outcomes of nearly every request.
    pub fn count_later(&self, name: &str) {
        let Some(id) = self.id(MetricType::Counter, name) else {
            return;
        };
        let mut pending = self.pending.borrow_mut();
        match pending.iter_mut().find(|(i, _)| *i == id) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => pending.push((id, 1)),
        }
    }

    /// Adds the counts kept by `count_later` to Envoy's counters.
    pub fn flush(&self) {
        for (id, n) in self.pending.borrow_mut().drain(..) {
            let _ = hostcalls::increment_metric(id, n);
        }
    }

    pub fn set_gauge(&self, name: &str, value: u64) {
        if let Some(id) = self.id(MetricType::Gauge, name) {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    /// Adds this VM's change of linear memory size since its last report to
    /// the gauge `vm_memory_bytes`, which so holds the sum over every Sésame
    /// VM of the Envoy process (the main thread's and one per worker).
    pub fn record_vm_memory(&self) {
        let bytes = (core::arch::wasm32::memory_size(0) as u64).saturating_mul(65536);
        let reported = REPORTED_MEMORY.with(Cell::get);
        if bytes == reported {
            return;
        }
        let Some(id) = self.id(MetricType::Gauge, "vm_memory_bytes") else {
            return;
        };
        let delta = i64::try_from(bytes)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(reported).unwrap_or(i64::MAX));
        if hostcalls::increment_metric(id, delta).is_ok() {
            REPORTED_MEMORY.with(|r| r.set(bytes));
        }
    }
}

thread_local! {
    /// This VM's linear memory size as last added to `vm_memory_bytes`: kept
    /// per VM, not per root context, so that a new configuration on the same
    /// VM does not count its memory twice.
    static REPORTED_MEMORY: Cell<u64> = const { Cell::new(0) };
}
