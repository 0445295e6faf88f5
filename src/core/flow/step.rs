//! The vocabulary every step of a request shares: what the adapter must do
//! (`Action`), what happened (`Outcome`, for counters and logs), and the
//! two together (`Step`).

use std::borrow::Cow;

use crate::core::flow::headers::Upstream;
use crate::core::flow::state::Pending;
use crate::core::flow::who::Who;
use crate::core::http::{ProviderCall, Response};

/// What the adapter must do with the request.
#[derive(Debug)]
pub enum Action {
    /// Let the request through unchanged.
    Continue,
    /// Let the request through with these changes to its headers.
    ContinueWith(Upstream),
    /// Let the request through with these changes to its headers, and add
    /// these `Set-Cookie` values to its answer (a refreshed session).
    ContinueWithCookies(Upstream, Vec<String>),
    /// Answer the request locally.
    Respond(Response),
    /// Call the provider, then resume with [`Filter::on_provider_response`].
    Call(ProviderCall, Box<Pending>),
}

/// What happened, for counters and logs. Never carries a secret or a token.
/// (Compared in tests only: the adapter matches on it.)
#[derive(Debug, Clone)]
#[cfg_attr(test, derive(PartialEq, Eq))]
pub enum Outcome {
    /// An authenticated request went upstream.
    Passed,
    /// A `skip_auth_routes` request went upstream without login.
    Public,
    /// No session, not a page navigation: 401.
    Unauthenticated,
    /// Sent to the provider to sign in.
    LoginStarted,
    /// Waiting for the provider.
    Waiting,
    LoginSucceeded {
        who: Box<Who>,
    },
    LoginFailed {
        reason: &'static str,
        detail: String,
    },
    /// The access rules (or a revocation) refused a person: at the
    /// callback (`sign_in`), or on a request.
    Denied {
        who: Box<Who>,
        /// What the log line says.
        reason: String,
        /// The denial's stable name (`Denial::code`), for the audit line.
        code: &'static str,
        sign_in: bool,
    },
    ProviderUnavailable,
    /// `/oauth2/sign_out`: who (when a session came with it), and whether
    /// the browser goes on to the provider's logout.
    SignedOut {
        who: Option<Box<Who>>,
        at_provider: bool,
        /// Whether the session's tokens were revoked at the provider
        /// (`None`: nothing to revoke, or no revocation endpoint).
        revoked: Option<bool>,
    },
    /// The session was refreshed; the request went upstream.
    Refreshed {
        sub: String,
    },
    /// The request came with the cookie of a session refreshed a moment ago
    /// (by another request): it went upstream with the refreshed one.
    RefreshAdopted,
    /// The session could not be refreshed (the detail says what followed).
    RefreshFailed {
        reason: &'static str,
        detail: String,
    },
    /// A request with a valid bearer token went upstream.
    BearerPassed,
    /// Our public key was served (`jwks_path`).
    KeysServed,
    /// A bearer request was refused (401, 403 or 502).
    BearerRefused {
        reason: &'static str,
        detail: String,
    },
    /// The sign-in page (with the provider's button) was shown.
    SignInPage,
    /// Back from the provider's logout with our `state`: sent on to `rd`.
    LogoutReturned,
    /// `/oauth2/auth` or `/oauth2/userinfo` answered.
    Endpoint {
        ok: bool,
    },
    NotFound,
    /// An API key was refused (`key`: its id, when it is a listed one).
    KeyRefused {
        key: Option<String>,
        reason: &'static str,
    },
    /// A personal token was issued at `<proxy_prefix>/token`.
    TokenIssued {
        who: Box<Who>,
    },
    /// A personal token was refused, or not issued.
    TokenRefused {
        who: Option<Box<Who>>,
        reason: &'static str,
    },
    /// No access document is in force yet: 503.
    AccessUnavailable,
    /// A page at a clean address: a refused sign-in's (the refusal itself
    /// was counted at the callback), or the "signed out" page.
    PageShown,
    /// A path that cannot be read safely, or whose readings fall on routes
    /// no request can satisfy at once: 400.
    PathRefused {
        detail: String,
    },
}

impl Outcome {
    /// The counter this outcome increments (without the `sesame.` prefix).
    pub fn counter(&self) -> Cow<'static, str> {
        match self {
            Outcome::Passed => Cow::Borrowed("requests_passed"),
            Outcome::Public => Cow::Borrowed("requests_public"),
            Outcome::Unauthenticated => Cow::Borrowed("requests_unauthenticated"),
            Outcome::LoginStarted => Cow::Borrowed("login_started"),
            Outcome::Waiting => Cow::Borrowed(""),
            Outcome::LoginSucceeded { .. } => Cow::Borrowed("login_success"),
            Outcome::LoginFailed { reason, .. } => Cow::Owned(format!("login_failure.{reason}")),
            Outcome::Denied { .. } => Cow::Borrowed("access_denied"),
            Outcome::ProviderUnavailable => Cow::Borrowed("provider_unavailable"),
            Outcome::SignedOut { .. } => Cow::Borrowed("sign_out"),
            Outcome::Refreshed { .. } => Cow::Borrowed("session_refresh_success"),
            Outcome::RefreshAdopted => Cow::Borrowed("session_refresh_adopted"),
            Outcome::RefreshFailed { reason, .. } => {
                Cow::Owned(format!("session_refresh_failure.{reason}"))
            }
            Outcome::BearerPassed => Cow::Borrowed("bearer_passed"),
            Outcome::KeysServed => Cow::Borrowed("jwks_served"),
            Outcome::BearerRefused { reason, .. } => Cow::Owned(format!("bearer_refused.{reason}")),
            Outcome::SignInPage => Cow::Borrowed("sign_in_page"),
            Outcome::LogoutReturned => Cow::Borrowed("logout_returned"),
            Outcome::Endpoint { ok: true } => Cow::Borrowed("endpoint_authorized"),
            Outcome::Endpoint { ok: false } => Cow::Borrowed("endpoint_unauthorized"),
            Outcome::NotFound => Cow::Borrowed("not_found"),
            Outcome::PageShown => Cow::Borrowed(""),
            Outcome::PathRefused { .. } => Cow::Borrowed("path_refused"),
            Outcome::KeyRefused { reason, .. } => Cow::Owned(format!("api_key_refused.{reason}")),
            Outcome::TokenIssued { .. } => Cow::Borrowed("personal_token_issued"),
            Outcome::TokenRefused { reason, .. } => {
                Cow::Owned(format!("personal_token_refused.{reason}"))
            }
            Outcome::AccessUnavailable => Cow::Borrowed("access_source_unavailable"),
        }
    }

    /// A second counter some outcomes also increment: how a sign-out's
    /// revocation at the provider went.
    pub fn second_counter(&self) -> Option<&'static str> {
        match self {
            Outcome::SignedOut {
                revoked: Some(true),
                ..
            } => Some("revocation_success"),
            Outcome::SignedOut {
                revoked: Some(false),
                ..
            } => Some("revocation_failure"),
            _ => None,
        }
    }

    /// The outcomes of nearly every request: sent upstream, or admitted by
    /// `/oauth2/auth` or `/oauth2/userinfo` (which a proxy in front may ask
    /// for each of its requests). The adapter adds their counts to Envoy's
    /// stats in batches, once a second, rather than with a hostcall each.
    pub fn frequent(&self) -> bool {
        matches!(
            self,
            Outcome::Passed
                | Outcome::Public
                | Outcome::BearerPassed
                | Outcome::Endpoint { ok: true }
        )
    }

    /// A log line for outcomes worth one (never with tokens or secrets).
    pub fn log_line(&self) -> Option<String> {
        match self {
            Outcome::LoginSucceeded { who } => Some(format!(
                "login succeeded: sub={:?} email={:?}",
                who.sub,
                who.email.as_deref().unwrap_or("")
            )),
            Outcome::LoginFailed { reason, detail } => {
                Some(format!("login failed ({reason}): {detail}"))
            }
            Outcome::Denied { who, reason, .. } => Some(format!(
                "access denied: email={:?}: {reason}",
                who.email.as_deref().unwrap_or("")
            )),
            Outcome::AccessUnavailable => {
                Some("no access document in force (none loaded yet, or older than max_age): answered 503".into())
            }
            Outcome::ProviderUnavailable => {
                Some("identity provider unavailable: answered 503".into())
            }
            Outcome::Refreshed { sub } => Some(format!("session refreshed: sub={sub:?}")),
            Outcome::RefreshFailed { reason, detail } => {
                Some(format!("session refresh failed ({reason}): {detail}"))
            }
            Outcome::BearerRefused { reason, detail } if *reason != "missing_token" => {
                Some(format!("bearer token refused ({reason}): {detail}"))
            }
            Outcome::PathRefused { detail } => Some(format!("request refused (400): {detail}")),
            Outcome::SignedOut {
                who,
                at_provider,
                revoked,
            } => Some(format!(
                "signed out: sub={:?}{}{}",
                who.as_ref().map_or("", |w| w.sub.as_str()),
                match revoked {
                    Some(true) => ", tokens revoked at the provider",
                    Some(false) => ", the provider's revocation failed",
                    None => "",
                },
                if *at_provider {
                    ", on to the provider's logout"
                } else {
                    ""
                }
            )),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct Step {
    pub action: Action,
    pub outcome: Outcome,
}

impl Step {
    pub fn respond(response: Response, outcome: Outcome) -> Step {
        Step {
            action: Action::Respond(response),
            outcome,
        }
    }
}
