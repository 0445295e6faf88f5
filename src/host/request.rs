//! One request, the same in both builds: decided by the core (looking at
//! the shared state again before refusing for want of a provider or an
//! access document), and its outcome counted, logged and audited.

use super::worker::Worker;
use super::{Host, Level};
use crate::core::audit;
use crate::core::flow::headers::identity_removals;
use crate::core::flow::{Action, Outcome, Pending, Step};
use crate::core::http::{ProviderResponse, Request};
use crate::core::{Clock, OsEntropy};

/// What a request's audit line needs from the request: its path (without
/// the query) and its `x-request-id`.
#[derive(Debug, Default, Clone)]
pub struct AuditAt {
    pub path: String,
    pub request_id: Option<String>,
}

/// A request decided: the step, the client's identity headers to remove
/// when Sésame answers it itself (or makes it wait), and what its audit
/// line needs when it has one.
pub struct Decision {
    pub step: Step,
    /// Identity headers the client sent, to take off a request answered
    /// here (the access log reads the request's headers), or that waits.
    pub removals: Vec<String>,
    pub audit_at: Option<AuditAt>,
}

/// Decides what to do with a request.
pub fn decide(worker: &Worker, host: &dyn Host, request: &Request, clock: &dyn Clock) -> Decision {
    worker.adopt_providers_if_not_ready(host, clock);
    let decide = || {
        let providers = worker.providers.borrow();
        worker
            .filter
            .on_request_shared(request, &providers, clock, &mut OsEntropy, host.store())
    };
    let mut step = decide();
    // Never refused while a fresh copy is in shared data: look at once, and
    // decide again if a provider became ready (or a first access document
    // is there).
    if (matches!(step.outcome, Outcome::ProviderUnavailable) && worker.adopt_providers_now(host))
        || (matches!(step.outcome, Outcome::AccessUnavailable) && worker.adopt_access(host))
    {
        step = decide();
    }
    let removals = if matches!(step.action, Action::Respond(_) | Action::Call(..)) {
        // Answered here (or later): the client's copies of identity headers
        // go all the same, so that Envoy's access log, which reads the
        // request's headers, never shows them as the request's identity.
        identity_removals(&worker.filter.config, &request.headers)
    } else {
        Vec::new()
    };
    let audit_at =
        (audit::audited(&step.outcome) || matches!(step.action, Action::Call(..))).then(|| {
            AuditAt {
                path: request.path_only().to_string(),
                request_id: request.header("x-request-id").map(str::to_string),
            }
        });
    Decision {
        step,
        removals,
        audit_at,
    }
}

/// Counts a step's outcome, and writes its log and audit lines.
pub fn account(worker: &Worker, host: &dyn Host, outcome: &Outcome, audit_at: Option<&AuditAt>) {
    let counter = outcome.counter();
    if !counter.is_empty() {
        host.count(&counter, outcome.frequent());
    }
    if let Some(counter) = outcome.second_counter() {
        host.count(counter, false);
    }
    if let Some(line) = outcome.log_line() {
        host.log(Level::Info, &line);
    }
    if audit::audited(outcome) {
        let (path, request_id) =
            audit_at.map_or(("", None), |a| (a.path.as_str(), a.request_id.as_deref()));
        let at = audit::Context {
            time: host.now(),
            path,
            request_id,
        };
        if let Some(line) = audit::request_line(&worker.filter.config, outcome, &at) {
            host.log(Level::Info, &line);
        }
    }
}

/// The provider answered a request's call (status 0: no answer): what to
/// do with the request now.
pub fn on_provider_response(
    worker: &Worker,
    host: &dyn Host,
    pending: Pending,
    response: &ProviderResponse,
) -> Step {
    let step = {
        let mut providers = worker.providers.borrow_mut();
        worker.filter.on_provider_response(
            pending,
            response,
            &mut providers,
            host.now(),
            &mut OsEntropy,
            host.store(),
        )
    };
    worker.publish_providers(host);
    step
}

/// A request's call could not be sent: logged; a sign-out goes on,
/// anything else gets the 503 page.
pub fn call_not_sent(
    worker: &Worker,
    host: &dyn Host,
    pending: Pending,
    cluster: &str,
    why: &str,
) -> Step {
    host.log(
        Level::Warn,
        &format!("cannot call cluster {cluster:?}: {why}"),
    );
    // This request's call only: the provider's state is left to the
    // discovery and key fetches.
    worker.filter.call_failed(pending)
}
