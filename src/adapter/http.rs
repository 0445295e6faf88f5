//! One HTTP request: read the headers once, run the core, carry out its decision.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action as HostAction, LogLevel, MapType};

use super::shared::Shared;
use super::{call_response, dispatch, log, now, HeaderMap, HostStore, RequestClock};
use crate::core::flow::headers::{identity_removals, Upstream, SET_COOKIE_CACHE_CONTROL};
use crate::core::flow::Pending;
use crate::core::flow::{Action, Outcome, Step};
use crate::core::http::{str_pairs, Request, Response};
use crate::core::{audit, OsEntropy};

pub struct SesameHttp {
    shared: Rc<Shared>,
    pending: Option<(u32, Box<Pending>)>,
    /// `Set-Cookie` values to add to the upstream's answer.
    set_cookies: Vec<String>,
    /// The request's path and `x-request-id`, kept for its audit line
    /// (only when its outcome has one, or it waits for the provider).
    audit_at: Option<(String, Option<String>)>,
}

impl SesameHttp {
    pub fn new(shared: Rc<Shared>) -> Self {
        SesameHttp {
            shared,
            pending: None,
            set_cookies: Vec::new(),
            audit_at: None,
        }
    }

    fn respond(&self, response: &Response) {
        let headers = str_pairs(&response.headers);
        let body = (!response.body.is_empty()).then_some(response.body.as_slice());
        if let Err(status) =
            hostcalls::send_http_response(u32::from(response.status), headers, body)
        {
            log(
                LogLevel::Error,
                &format!("cannot send local response: {status:?}"),
            );
        }
    }

    /// Carries out a step; returns what to tell Envoy now.
    fn perform(&mut self, step: Step) -> HostAction {
        let metrics = &self.shared.metrics;
        if step.outcome.frequent() {
            metrics.count_later(&step.outcome.counter());
        } else {
            metrics.increment(&step.outcome.counter());
        }
        if let Some(counter) = step.outcome.second_counter() {
            metrics.increment(counter);
        }
        if matches!(step.outcome, Outcome::ProviderUnavailable) {
            // What this VM knows of the provider (a failed call for one
            // request does not change it).
            self.shared.record_provider_gauges();
        }
        if let Some(line) = step.outcome.log_line() {
            log(LogLevel::Info, &line);
        }
        if audit::audited(&step.outcome) {
            let (path, request_id) = self
                .audit_at
                .as_ref()
                .map_or(("", None), |(p, id)| (p.as_str(), id.as_deref()));
            let at = audit::Context {
                time: now(),
                path,
                request_id,
            };
            if let Some(line) = audit::request_line(&self.shared.filter.config, &step.outcome, &at)
            {
                log(LogLevel::Info, &line);
            }
        }
        match step.action {
            Action::Continue => HostAction::Continue,
            Action::ContinueWith(upstream) => {
                change_request_headers(&upstream);
                HostAction::Continue
            }
            Action::ContinueWithCookies(upstream, set_cookies) => {
                change_request_headers(&upstream);
                self.set_cookies = set_cookies;
                HostAction::Continue
            }
            Action::Respond(response) => {
                self.respond(&response);
                HostAction::Pause
            }
            Action::Call(call, pending) => {
                let config = &self.shared.filter.config;
                let cluster = &self.shared.filter.provider(pending.provider()).idp_cluster;
                match dispatch(cluster, &call, config.provider_timeout_ms) {
                    Ok(token) => {
                        self.pending = Some((token, pending));
                        HostAction::Pause
                    }
                    Err(status) => {
                        log(
                            LogLevel::Warn,
                            &format!("cannot call cluster {cluster:?}: {status:?}"),
                        );
                        // This request's call only: the provider's state is
                        // left to the discovery and key fetches. A sign-out
                        // goes on; anything else gets the 503 page.
                        let step = self.shared.filter.call_failed(*pending);
                        self.perform(step)
                    }
                }
            }
        }
    }
}

/// Removes the client's copies of identity headers, then adds Sésame's: one
/// hostcall per name, none for the rest of the request (a request with a
/// session and no spoofed header costs one call per identity header, where
/// writing every header back costs Envoy a removal and a copy of each).
fn change_request_headers(upstream: &Upstream) {
    for name in &upstream.remove {
        let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
    }
    if let Some(cookie) = &upstream.cookie {
        let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, "cookie");
        if !cookie.is_empty() {
            let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, "cookie", cookie);
        }
    }
    for (name, value) in upstream.add.iter() {
        let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value);
    }
}

impl Context for SesameHttp {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some((token, pending)) = self.pending.take() else {
            return;
        };
        if token != token_id {
            // Not the call this request waits for: keep waiting for ours.
            self.pending = Some((token, pending));
            return;
        }
        let response = call_response(body_size);
        let shared = self.shared.clone();
        let step = {
            let mut providers = shared.providers.borrow_mut();
            shared.filter.on_provider_response(
                *pending,
                &response,
                &mut providers,
                now(),
                &mut OsEntropy,
                &HostStore,
            )
        };
        shared.publish_providers();
        if let HostAction::Continue = self.perform(step) {
            let _ = hostcalls::resume_http_request();
        }
    }
}

impl HttpContext for SesameHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> HostAction {
        let map = HeaderMap::read(MapType::HttpRequestHeaders);
        let request = Request::from_headers(map.pairs());
        let shared = self.shared.clone();
        let clock = RequestClock::new(&shared.clock);
        shared.adopt_providers_if_not_ready(&clock);
        let decide = || {
            let providers = shared.providers.borrow();
            shared.filter.on_request_shared(
                &request,
                &providers,
                &clock,
                &mut OsEntropy,
                &HostStore,
            )
        };
        let mut step = decide();
        // Never refused while a fresh copy is in shared data: look at once,
        // and decide again if a provider became ready (or a first access
        // document is there).
        if (matches!(step.outcome, Outcome::ProviderUnavailable) && shared.adopt_providers_now())
            || (matches!(step.outcome, Outcome::AccessUnavailable) && shared.adopt_access())
        {
            step = decide();
        }
        if matches!(step.action, Action::Respond(_) | Action::Call(..)) {
            // Answered here (or later): the client's copies of identity
            // headers go all the same, so that Envoy's access log, which
            // reads the request's headers, never shows them as the
            // request's identity.
            let config = &shared.filter.config;
            for name in identity_removals(config, &request.headers) {
                let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, &name);
            }
        }
        if audit::audited(&step.outcome) || matches!(step.action, Action::Call(..)) {
            self.audit_at = Some((
                request.path_only().to_string(),
                request.header("x-request-id").map(str::to_string),
            ));
        }
        self.perform(step)
    }

    fn on_http_response_headers(
        &mut self,
        _num_headers: usize,
        _end_of_stream: bool,
    ) -> HostAction {
        if !self.set_cookies.is_empty() {
            // A refreshed session's cookie rides on the upstream's answer: no
            // shared cache in front may keep that answer for others.
            let _ = hostcalls::set_map_value(
                MapType::HttpResponseHeaders,
                "cache-control",
                Some(SET_COOKIE_CACHE_CONTROL),
            );
        }
        for cookie in self.set_cookies.drain(..) {
            let _ = hostcalls::add_map_value(MapType::HttpResponseHeaders, "set-cookie", &cookie);
        }
        HostAction::Continue
    }
}
