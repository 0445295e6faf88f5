//! The proxy-wasm side: configuration, timers, provider fetches, metrics (root
//! context) and one context per HTTP request.

mod http;
mod metrics;
mod root;
mod shared;

use std::cell::Cell;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::RootContext;
use proxy_wasm::types::{LogLevel, MapType, Status};

use crate::core::http::{ProviderCall, ProviderResponse};
use crate::core::shared::SharedStore;
use crate::core::Clock;

/// Envoy's shared data: one map for every VM of this plugin, on every worker.
pub(crate) struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), cas)) => Some((value, cas.unwrap_or(0))),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas.filter(|c| *c != 0)).is_ok()
    }
}

pub fn register() {
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(root::SesameRoot::default())
    });
}

pub(crate) fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// Current time in unix seconds, from the host. Without a clock, a time far in
/// the future: every session and token then counts as expired (fail closed).
pub(crate) fn now() -> u64 {
    match hostcalls::get_current_time().map(|t| t.duration_since(UNIX_EPOCH)) {
        Ok(Ok(d)) => d.as_secs(),
        _ => {
            log(
                LogLevel::Error,
                "the host gave no current time; treating sessions as expired",
            );
            u64::MAX / 4
        }
    }
}

/// This VM's last reading of the host's clock, taken by the timer each second
/// and by any request that needed the exact time. Requests answered from a
/// cache take an upper bound from it instead of a hostcall of their own.
#[derive(Default)]
pub(crate) struct VmClock {
    /// Unix seconds of the last reading; 0 before the first.
    read_at: Cell<u64>,
    /// Bounds still to give from that reading before reading again.
    uses_left: Cell<u32>,
}

/// How much later than the VM's last reading the time may be when a request
/// asks for a bound: the timer reads the clock every second; the rest allows
/// for a late timer and for whole seconds. A cache entry expiring within this
/// margin is looked at with the exact time (a miss, not a wrong answer).
const CLOCK_MARGIN_SECS: u64 = 3;

/// Requests given a bound from one reading at most, should the timer stop: a
/// busy VM reads the clock once in every so many requests.
const CLOCK_USES: u32 = 64;

impl VmClock {
    /// Takes a reading of the host's clock.
    pub fn read(&self) -> u64 {
        let t = now();
        self.read_at.set(t);
        self.uses_left.set(CLOCK_USES);
        t
    }
}

/// The time for one request: the VM's bound for cache lookups, the host's
/// clock read once, when first needed, for everything else.
pub(crate) struct RequestClock<'a> {
    vm: &'a VmClock,
    exact: Cell<Option<u64>>,
    bound: Cell<Option<u64>>,
}

impl<'a> RequestClock<'a> {
    pub fn new(vm: &'a VmClock) -> Self {
        RequestClock {
            vm,
            exact: Cell::new(None),
            bound: Cell::new(None),
        }
    }
}

impl Clock for RequestClock<'_> {
    fn now(&self) -> u64 {
        if let Some(t) = self.exact.get() {
            return t;
        }
        let t = self.vm.read();
        self.exact.set(Some(t));
        t
    }

    fn upper_bound(&self) -> u64 {
        if let Some(bound) = self.bound.get() {
            return bound;
        }
        if self.vm.uses_left.get() == 0 {
            self.now();
        }
        self.vm
            .uses_left
            .set(self.vm.uses_left.get().saturating_sub(1));
        let bound = self.vm.read_at.get().saturating_add(CLOCK_MARGIN_SECS);
        self.bound.set(Some(bound));
        bound
    }
}

/// Sends a call to the provider through the configured cluster.
pub(crate) fn dispatch(cluster: &str, call: &ProviderCall, timeout_ms: u64) -> Result<u32, Status> {
    let mut headers: Vec<(&str, &str)> = vec![
        (":method", call.method),
        (":path", &call.path),
        (":authority", &call.authority),
        (":scheme", &call.scheme),
        ("user-agent", crate::host::USER_AGENT),
    ];
    headers.extend(call.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    hostcalls::dispatch_http_call(
        cluster,
        headers,
        call.body.as_deref(),
        vec![],
        Duration::from_millis(timeout_ms),
    )
}

/// Reads the answer to a dispatched call; status 0 when there was none.
pub(crate) fn call_response(body_size: usize) -> ProviderResponse {
    let map = HeaderMap::read(MapType::HttpCallResponseHeaders);
    let headers: Vec<(String, String)> = map
        .pairs()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let body = if body_size > 0 {
        hostcalls::get_buffer(
            proxy_wasm::types::BufferType::HttpCallResponseBody,
            0,
            body_size,
        )
        .ok()
        .flatten()
        .unwrap_or_default()
    } else {
        Vec::new()
    };
    ProviderResponse::from_parts(headers, body)
}

#[link(wasm_import_module = "env")]
extern "C" {
    /// The proxy-wasm ABI call behind `hostcalls::get_map`, whose parsing
    /// aborts the VM on a header value that is not UTF-8 (HTTP allows such
    /// bytes) and copies every header into two `String`s.
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
}

/// A header map as the host serialised it, read in one hostcall: a count,
/// then each name's and value's length, then the names and values, each
/// followed by a NUL. Read in place.
pub(crate) struct HeaderMap {
    bytes: Box<[u8]>,
    /// Every name and value is ASCII (the usual case).
    ascii: bool,
    /// Values that are not UTF-8, replaced as text (U+FFFD), by index.
    lossy: Vec<(usize, String, String)>,
}

impl HeaderMap {
    /// The map; empty when the host has none (or answers with an error).
    pub fn read(map: MapType) -> HeaderMap {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: on success the host hands over a buffer of `size` bytes it
        // obtained from `proxy_on_memory_allocate` (the SDK's allocator, a
        // boxed slice of exactly that length): ours to free.
        let bytes: Box<[u8]> = unsafe {
            match proxy_get_header_map_pairs(map, &mut data, &mut size) {
                Status::Ok if !data.is_null() => {
                    Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, size))
                }
                _ => Box::default(),
            }
        };
        let mut out = HeaderMap {
            bytes,
            ascii: false,
            lossy: Vec::new(),
        };
        out.ascii = out.text_is_ascii();
        if out.ascii {
            return out;
        }
        let lossy = out
            .raw_pairs()
            .enumerate()
            .filter(|(_, (k, v))| {
                std::str::from_utf8(k).is_err() || std::str::from_utf8(v).is_err()
            })
            .map(|(i, (k, v))| {
                let text = |b| String::from_utf8_lossy(b).into_owned();
                (i, text(k), text(v))
            })
            .collect();
        out.lossy = lossy;
        out
    }

    /// Whether every name and value is ASCII (the usual case: no UTF-8
    /// check can fail then).
    fn text_is_ascii(&self) -> bool {
        self.data_start()
            .and_then(|start| self.bytes.get(start..))
            .is_none_or(crate::core::flow::headers::all_ascii)
    }

    /// The little-endian 32-bit number at `at`.
    fn word(&self, at: usize) -> Option<usize> {
        let w: [u8; 4] = self.bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(w)).ok()
    }

    /// Where the names and values begin: after the count and the lengths.
    fn data_start(&self) -> Option<usize> {
        self.word(0).unwrap_or(0).checked_mul(8)?.checked_add(4)
    }

    /// Each (name, value) as bytes; stops at the first inconsistency.
    fn raw_pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let count = self.word(0).unwrap_or(0);
        let mut data = self.data_start();
        (0..count).map_while(move |i| {
            let at = data?;
            let name_len = self.word(4 + i * 8)?;
            let value_len = self.word(8 + i * 8)?;
            let name_end = at.checked_add(name_len)?;
            let value_at = name_end.checked_add(1)?;
            let value_end = value_at.checked_add(value_len)?;
            let name = self.bytes.get(at..name_end)?;
            let value = self.bytes.get(value_at..value_end)?;
            data = value_end.checked_add(1);
            Some((name, value))
        })
    }

    /// Each (name, value) as text.
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        if self.ascii {
            // SAFETY: ASCII bytes are valid UTF-8 (checked in `read`).
            let text = |b| unsafe { std::str::from_utf8_unchecked(b) };
            return self.raw_pairs().map(|(k, v)| (text(k), text(v))).collect();
        }
        self.raw_pairs()
            .enumerate()
            .map(
                |(i, (k, v))| match (std::str::from_utf8(k), std::str::from_utf8(v)) {
                    (Ok(k), Ok(v)) => (k, v),
                    _ => self
                        .lossy
                        .iter()
                        .find(|(at, ..)| *at == i)
                        .map_or(("", ""), |(_, k, v)| (k.as_str(), v.as_str())),
                },
            )
            .collect()
    }
}
