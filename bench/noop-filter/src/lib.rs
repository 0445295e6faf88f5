//! The baseline of `make bench`: a proxy-wasm HTTP filter that does nothing
//! but continue, built like Sésame, so that setup 2 measures what any wasm
//! filter costs in Envoy (VM entry and exit, context creation) and setup 3
//! what Sésame adds to it.
//!
//! Its plugin configuration may name hostcalls to make on each request
//! (`{"steps": ["get_map", "time", ...]}`): the benchmark's hostcall profile
//! loads one such filter per step list, to price each call Sésame's hot path
//! makes. With `{}` it makes none. `"headers": ["name", "value", ...]` sets
//! the headers the `add_header*` and `set_map*` steps add (by default, short
//! stand-ins), so that a probe can add exactly the bytes Sésame adds.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(NoopRoot {
            steps: Rc::new(Vec::new()),
            headers: Rc::new(Vec::new()),
        })
    });
}}

/// One hostcall (or group) to make per request.
#[derive(Clone, Copy)]
enum Step {
    /// Every request header in one call (`proxy_get_header_map_pairs`).
    GetMap,
    /// The `:path` header alone (`proxy_get_header_map_value`).
    GetPath,
    /// The clock (`proxy_get_current_time_nanoseconds`).
    Time,
    /// One counter increment (`proxy_increment_metric`).
    Counter(u32),
    /// Every request header written back in one call, with this many more
    /// (`proxy_set_header_map_pairs`).
    SetMap(usize),
    /// This many headers added, one call each (`proxy_add_header_map_value`).
    AddHeaders(usize),
    /// The `Cookie` header removed (`proxy_remove_header_map_value`), as
    /// Sésame does when the request carries its own cookies only.
    RemoveCookie,
}

/// Headers the probes add, like Sésame's identity headers.
const PROBE_HEADERS: [(&str, &str); 8] = [
    ("x-probe-1", "alice-7f3a"),
    ("x-probe-2", "alice@numerique.gouv.fr"),
    ("x-probe-3", "alice"),
    ("x-probe-4", "alice-7f3a"),
    ("x-probe-5", "alice@numerique.gouv.fr"),
    ("x-probe-6", "alice"),
    ("x-probe-7", "13002526500013"),
    ("x-probe-8", "idp-1"),
];

struct NoopRoot {
    steps: Rc<Vec<Step>>,
    headers: Rc<Vec<(String, String)>>,
}

/// The quoted strings of the list after `"key"`, up to its `]`: no JSON
/// parser in the baseline, so they must not contain `"`, `\` or `]`.
fn list<'a>(text: &'a str, key: &str) -> Option<Vec<&'a str>> {
    let rest = text.split(&format!("\"{key}\"")).nth(1)?;
    let rest = rest.split(']').next().unwrap_or_default();
    Some(rest.split('"').skip(1).step_by(2).collect())
}

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&config);
        let headers: Vec<(String, String)> = match list(&text, "headers") {
            Some(items) if items.len() % 2 == 0 => items
                .chunks(2)
                .map(|pair| (pair[0].to_string(), pair[1].to_string()))
                .collect(),
            Some(_) => return false,
            None => PROBE_HEADERS
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        };
        let mut steps = Vec::new();
        if let Some(names) = list(&text, "steps") {
            for name in names {
                steps.push(match name {
                    "get_map" => Step::GetMap,
                    "get_path" => Step::GetPath,
                    "time" => Step::Time,
                    "counter" => match hostcalls::define_metric(MetricType::Counter, "probe") {
                        Ok(id) => Step::Counter(id),
                        Err(_) => return false,
                    },
                    "set_map" => Step::SetMap(1),
                    "set_map8" => Step::SetMap(8),
                    "add_header" => Step::AddHeaders(1),
                    "add_header8" => Step::AddHeaders(8),
                    "remove_cookie" => Step::RemoveCookie,
                    _ => return false,
                });
                if let Some(Step::SetMap(n) | Step::AddHeaders(n)) = steps.last() {
                    if *n > headers.len() {
                        return false;
                    }
                }
            }
        }
        self.steps = Rc::new(steps);
        self.headers = Rc::new(headers);
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop {
            steps: self.steps.clone(),
            headers: self.headers.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop {
    steps: Rc<Vec<Step>>,
    headers: Rc<Vec<(String, String)>>,
}

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let mut headers = Vec::new();
        for step in self.steps.iter() {
            match *step {
                Step::GetMap => {
                    headers = hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default()
                }
                Step::GetPath => {
                    let _ = hostcalls::get_map_value(MapType::HttpRequestHeaders, ":path");
                }
                Step::Time => {
                    let _ = hostcalls::get_current_time();
                }
                Step::Counter(id) => {
                    let _ = hostcalls::increment_metric(id, 1);
                }
                Step::SetMap(n) => {
                    let mut pairs: Vec<(&str, &str)> = headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    pairs.extend(
                        self.headers
                            .iter()
                            .take(n)
                            .map(|(k, v)| (k.as_str(), v.as_str())),
                    );
                    let _ = hostcalls::set_map(MapType::HttpRequestHeaders, pairs);
                }
                Step::RemoveCookie => {
                    let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, "cookie");
                }
                Step::AddHeaders(n) => {
                    for (name, value) in self.headers.iter().take(n) {
                        let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value);
                    }
                }
            }
        }
        Action::Continue
    }
}
