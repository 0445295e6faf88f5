//! One HTTP request: read the headers once, run the core, carry out its decision.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action as HostAction, LogLevel, MapType};

use super::shared::Shared;
use super::{call_response, log, HeaderMap, RequestClock};
use crate::core::flow::headers::{Upstream, SET_COOKIE_CACHE_CONTROL};
use crate::core::flow::Pending;
use crate::core::flow::{Action, Outcome, Step};
use crate::core::http::{str_pairs, Request, Response};
use crate::host::request::{self, AuditAt};
use crate::host::Host;

pub struct SesameHttp {
    shared: Rc<Shared>,
    pending: Option<(u64, Box<Pending>)>,
    /// `Set-Cookie` values to add to the upstream's answer.
    set_cookies: Vec<String>,
    /// What the request's audit line needs (only when its outcome has
    /// one, or it waits for the provider).
    audit_at: Option<AuditAt>,
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
        let shared = &self.shared;
        request::account(
            &shared.worker,
            &shared.host,
            &step.outcome,
            self.audit_at.as_ref(),
        );
        if matches!(step.outcome, Outcome::ProviderUnavailable) {
            // What this VM knows of the provider (a failed call for one
            // request does not change it). The native build leaves its
            // gauges to the one thread that fetches.
            shared.worker.record_provider_gauges(&shared.host);
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
                let config = &shared.worker.filter.config;
                let cluster = &shared
                    .worker
                    .filter
                    .provider(pending.provider())
                    .idp_cluster;
                match shared
                    .host
                    .dispatch(cluster, &call, config.provider_timeout_ms)
                {
                    Ok(token) => {
                        self.pending = Some((token, pending));
                        HostAction::Pause
                    }
                    Err(why) => {
                        let step = request::call_not_sent(
                            &shared.worker,
                            &shared.host,
                            *pending,
                            cluster,
                            &why,
                        );
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
        if token != u64::from(token_id) {
            // Not the call this request waits for: keep waiting for ours.
            self.pending = Some((token, pending));
            return;
        }
        let response = call_response(body_size);
        let shared = self.shared.clone();
        let step = request::on_provider_response(&shared.worker, &shared.host, *pending, &response);
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
        let clock = RequestClock::new(&shared.host.clock);
        let decision = request::decide(&shared.worker, &shared.host, &request, &clock);
        for name in &decision.removals {
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
        }
        self.audit_at = decision.audit_at;
        self.perform(decision.step)
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
