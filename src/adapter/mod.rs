//! The proxy-wasm side: configuration, timers, provider fetches, metrics (root
//! context) and one context per HTTP request.

mod http;
mod metrics;
mod root;

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::RootContext;
use proxy_wasm::types::{LogLevel, Status};

use crate::core::http::{ProviderCall, ProviderResponse};
use crate::core::shared::SharedStore;

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

/// Sends a call to the provider through the configured cluster.
pub(crate) fn dispatch(cluster: &str, call: &ProviderCall, timeout_ms: u64) -> Result<u32, Status> {
    let mut headers: Vec<(&str, &str)> = vec![
        (":method", call.method),
        (":path", &call.path),
        (":authority", &call.authority),
        (":scheme", &call.scheme),
        ("user-agent", concat!("sesame/", env!("CARGO_PKG_VERSION"))),
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
    use proxy_wasm::types::MapType;
    let headers = hostcalls::get_map(MapType::HttpCallResponseHeaders).unwrap_or_default();
    let status = headers
        .iter()
        .find(|(k, _)| k == ":status")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
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
    ProviderResponse {
        status,
        headers,
        body,
    }
}
