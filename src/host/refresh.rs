//! The background work of a configuration: each provider's discovery and
//! keys, and the access document, fetched when due by the one worker that
//! takes the fetch's lease, then shared with the others.
//!
//! Providers are fetched independently: one that cannot be reached delays
//! no other.

use std::collections::HashMap;

use super::worker::Worker;
use super::{Host, Level};
use crate::core::access::source::AccessFetch;
use crate::core::audit;
use crate::core::http::{ProviderCall, ProviderResponse};
use crate::core::oidc::provider::{Fetch, FetchResult};
use crate::core::shared::{access_lease_key, provider_lease_key, release_lease, take_lease};
use crate::core::{random_token, OsEntropy};

/// The fetches one worker has under way.
pub struct Refresher {
    /// Provider fetches under way, by call id: the provider's index, and
    /// what is fetched.
    fetches: HashMap<u64, (usize, Fetch)>,
    /// This worker's name for the fetch leases.
    holder: String,
    /// The access document's fetch under way.
    access_fetch: Option<u64>,
}

impl Default for Refresher {
    fn default() -> Self {
        Refresher {
            fetches: HashMap::new(),
            holder: random_token(&mut OsEntropy, 12),
            access_fetch: None,
        }
    }
}

impl Refresher {
    /// Logs what the configuration says of its providers and its access
    /// source, once it is taken.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn announce(worker: &Worker, host: &dyn Host) {
        let config = &worker.filter.config;
        for p in &config.providers {
            host.log(
                Level::Info,
                &format!(
                    "configured for provider {:?}: issuer {} (client {}, cluster {})",
                    p.id, p.issuer, p.client_id, p.idp_cluster
                ),
            );
        }
        if let Some(source) = &config.access_source {
            host.log(
                Level::Info,
                &format!(
                    "access rules from {} (cluster {}, every {}s): nobody is admitted until a first document is loaded",
                    source.url, source.cluster, source.refresh_interval
                ),
            );
        }
    }

    /// Whether `id` is one of this worker's background calls.
    pub fn expects(&self, id: u64) -> bool {
        self.access_fetch == Some(id) || self.fetches.contains_key(&id)
    }

    /// Adopts the provider states and the access document that another
    /// worker shared, then starts each fetch that is due and whose lease
    /// this worker gets.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn tick(&mut self, worker: &Worker, host: &dyn Host) {
        worker.adopt_providers(host);
        worker.record_provider_gauges(host);
        for index in 0..worker.filter.config.providers.len() {
            self.refresh_provider(worker, host, index);
        }
        self.refresh_access(worker, host);
    }

    /// Adopts the access document another worker shared; fetches it when
    /// due and this worker gets the lease.
    #[cfg_attr(sesame_size, optimize(size))]
    fn refresh_access(&mut self, worker: &Worker, host: &dyn Host) {
        let filter = &worker.filter;
        let Some(source) = &filter.config.access_source else {
            return;
        };
        worker.adopt_access(host);
        let now = host.now();
        worker.record_access_gauges(host, now);
        if self.access_fetch.is_some() || !filter.access.borrow().fetch_due(now) {
            return;
        }
        let lease_for = filter.config.provider_timeout_ms.div_ceil(1000) + 2;
        let lease = access_lease_key(&filter.shared_ns);
        if !take_lease(host.store(), &lease, &self.holder, now, lease_for) {
            return;
        }
        let Some(call) = filter.access.borrow_mut().start_fetch(source, now) else {
            return;
        };
        match host.dispatch(&source.cluster, &call, filter.config.provider_timeout_ms) {
            Ok(id) => self.access_fetch = Some(id),
            Err(why) => {
                host.log(
                    Level::Warn,
                    &format!(
                        "cannot call cluster {:?} for the access document: {why}",
                        source.cluster
                    ),
                );
                filter.access.borrow_mut().call_failed(&filter.config, now);
                self.access_ended(worker, host, AccessFetch::Failed(String::new()), now);
            }
        }
    }

    /// The access document's fetch ended: count it, say what changed,
    /// share the state, free the lease.
    #[cfg_attr(sesame_size, optimize(size))]
    fn access_ended(&mut self, worker: &Worker, host: &dyn Host, result: AccessFetch, now: u64) {
        let filter = &worker.filter;
        self.access_fetch = None;
        match &result {
            AccessFetch::Changed => {
                filter.access_changed();
                if let Some(document) = filter.access.borrow().document.as_ref() {
                    host.log(Level::Info, &audit::document_line(document, now));
                }
            }
            AccessFetch::Unchanged => {}
            AccessFetch::Failed(message) => {
                if !message.is_empty() {
                    let kept = if filter.access.borrow().document.is_some() {
                        "the last good document stays in force"
                    } else {
                        "no document is in force yet: nobody is admitted"
                    };
                    host.log(Level::Warn, &format!("{message}; {kept}"));
                }
            }
        }
        let counter = match result {
            AccessFetch::Failed(_) => "access_fetch_failure",
            _ => "access_fetch_success",
        };
        worker.publish_access(host);
        release_lease(
            host.store(),
            &access_lease_key(&filter.shared_ns),
            &self.holder,
        );
        worker.record_access_gauges(host, now);
        host.count(counter, false);
    }

    #[cfg_attr(sesame_size, optimize(size))]
    fn refresh_provider(&mut self, worker: &Worker, host: &dyn Host, index: usize) {
        let config = &worker.filter.config;
        let provider = worker.filter.provider(index);
        let now = host.now();
        let due = worker
            .providers
            .borrow()
            .get(index)
            .is_some_and(|p| p.fetch_due(now));
        if !due || provider.discovery_url.is_none() {
            return;
        }
        // Two calls (discovery, then keys), each within the provider timeout.
        let lease_for = 2 * config.provider_timeout_ms.div_ceil(1000) + 2;
        let lease = provider_lease_key(&worker.filter.shared_ns, index);
        if !take_lease(host.store(), &lease, &self.holder, now, lease_for) {
            return; // Another worker is fetching.
        }
        let next = worker.providers.borrow_mut()[index].start_refresh(provider, now);
        if let Some((call, fetch)) = next {
            self.send(worker, host, index, call, fetch);
        }
    }

    /// A provider's refresh ended (either way): share the result, free the
    /// lease.
    #[cfg_attr(sesame_size, optimize(size))]
    fn refresh_ended(&mut self, worker: &Worker, host: &dyn Host, index: usize) {
        worker.publish_providers(host);
        release_lease(
            host.store(),
            &provider_lease_key(&worker.filter.shared_ns, index),
            &self.holder,
        );
        worker.record_provider_gauges(host);
    }

    #[cfg_attr(sesame_size, optimize(size))]
    fn send(
        &mut self,
        worker: &Worker,
        host: &dyn Host,
        index: usize,
        call: ProviderCall,
        fetch: Fetch,
    ) {
        let config = &worker.filter.config;
        let cluster = &worker.filter.provider(index).idp_cluster;
        match host.dispatch(cluster, &call, config.provider_timeout_ms) {
            Ok(id) => {
                self.fetches.insert(id, (index, fetch));
            }
            Err(why) => {
                let message = format!("cannot call cluster {cluster:?}: {why}");
                host.log(Level::Warn, &message);
                worker.providers.borrow_mut()[index].failed(
                    message,
                    host.now(),
                    config.provider_retry_max,
                );
                self.refresh_ended(worker, host, index);
                host.count("provider_fetch_failure", false);
            }
        }
    }

    /// The answer to one of this worker's background calls (or, with
    /// status 0, its failure).
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn on_response(
        &mut self,
        worker: &Worker,
        host: &dyn Host,
        id: u64,
        response: &ProviderResponse,
    ) {
        let filter = &worker.filter;
        if self.access_fetch == Some(id) {
            let now = host.now();
            let result = filter
                .access
                .borrow_mut()
                .on_fetch(&filter.config, response, now);
            self.access_ended(worker, host, result, now);
            return;
        }
        let Some((index, fetch)) = self.fetches.remove(&id) else {
            return;
        };
        let provider = filter.provider(index);
        let (result, next) = worker.providers.borrow_mut()[index].on_fetch(
            &filter.config,
            provider,
            fetch,
            response,
            host.now(),
        );
        match result {
            FetchResult::Next => {}
            FetchResult::Refreshed { keys, skipped } => {
                host.log(
                    Level::Info,
                    &format!(
                        "provider {} ready: {keys} signing key(s), {skipped} other key(s) ignored",
                        provider.issuer
                    ),
                );
                // The state and its gauges first: whoever sees the counter
                // move sees them too.
                self.refresh_ended(worker, host, index);
                host.count("provider_fetch_success", false);
            }
            FetchResult::Failed(message) => {
                let retry = worker.providers.borrow()[index]
                    .next_fetch_at
                    .saturating_sub(host.now());
                host.log(
                    Level::Warn,
                    &format!(
                        "provider {} refresh failed: {message}; retrying in {retry}s",
                        provider.issuer
                    ),
                );
                self.refresh_ended(worker, host, index);
                host.count("provider_fetch_failure", false);
            }
        }
        if let Some((call, fetch)) = next {
            self.send(worker, host, index, call, fetch);
        }
    }

    /// Forgets the fetches under way (a new configuration).
    pub fn reset(&mut self) {
        self.fetches.clear();
        self.access_fetch = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::tests::config_with;
    use crate::core::http::ProviderResponse;
    use crate::host::testing::FakeHost;
    use serde_json::json;

    fn worker() -> Worker {
        Worker::new(config_with(json!({})))
    }

    fn no_answer() -> ProviderResponse {
        ProviderResponse {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    #[test]
    fn one_worker_fetches_discovery_the_others_wait_for_its_lease() {
        let host = FakeHost::at(1_000);
        let (a, b) = (worker(), worker());
        let (mut ra, mut rb) = (Refresher::default(), Refresher::default());
        ra.tick(&a, &host);
        rb.tick(&b, &host);
        let calls = host.calls.borrow();
        assert_eq!(calls.len(), 1, "only the lease holder calls the provider");
        let (id, cluster, call) = &calls[0];
        assert_eq!(cluster, "idp");
        assert!(
            call.path.ends_with("/.well-known/openid-configuration"),
            "{}",
            call.path
        );
        assert!(ra.expects(*id) && !rb.expects(*id));
        assert_eq!(host.gauge("provider_ready"), Some(0));
    }

    #[test]
    fn a_failed_fetch_is_counted_logged_and_frees_the_lease() {
        let host = FakeHost::at(1_000);
        let (a, b) = (worker(), worker());
        let (mut ra, mut rb) = (Refresher::default(), Refresher::default());
        ra.tick(&a, &host);
        let id = host.calls.borrow()[0].0;
        ra.on_response(&a, &host, id, &no_answer());
        assert_eq!(host.counter("provider_fetch_failure"), 1);
        assert!(host.logged("refresh failed"));
        assert!(!ra.expects(id));
        // The other worker adopts the failure (no fetch due before the
        // retry), and takes the lease once the retry is due.
        host.time.set(1_000 + 3_600);
        rb.tick(&b, &host);
        assert_eq!(host.calls.borrow().len(), 2, "the lease was released");
    }

    #[test]
    fn a_call_envoy_refuses_is_a_failed_fetch() {
        let host = FakeHost {
            refuse_calls: Some("no such cluster".into()),
            ..FakeHost::at(1_000)
        };
        let a = worker();
        Refresher::default().tick(&a, &host);
        assert!(host.logged("cannot call cluster \"idp\": no such cluster"));
        assert_eq!(host.counter("provider_fetch_failure"), 1);
        assert_eq!(host.gauge("provider_consecutive_failures"), Some(1));
    }

    #[test]
    fn the_configuration_is_announced_without_secrets() {
        let host = FakeHost::at(1_000);
        Refresher::announce(&worker(), &host);
        assert!(host.logged("configured for provider"));
        assert!(!host
            .lines
            .borrow()
            .iter()
            .any(|(_, l)| l.contains("s3cr3t")));
    }
}
