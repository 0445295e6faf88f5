//! Sessions that stay fresh: before the access token expires, the provider's
//! refresh token gets a new one (RFC 6749 §6), the identity is read again
//! (new ID token, userinfo) and the access rules are applied to it again.
//!
//! One refresh per session at a time across all of Envoy's workers (a slot in
//! shared data, see [`crate::core::shared`]): the other requests of that session go on
//! with the current session meanwhile, and those that arrive with the old
//! cookie just after it get the refreshed session instead of refreshing again.
//! Refreshing twice with one refresh token is what makes providers that rotate
//! refresh tokens revoke the whole grant, and sign the person out.

use serde_json::{Map, Value};

use crate::core::access::policy::merge_userinfo;
use crate::core::access::routes::RouteSet;
use crate::core::flow::headers::{identity_headers, Upstream};
use crate::core::flow::login::display_name;
use crate::core::flow::state::{Pending, RefreshPending, RefreshStage, TokenResponse};
use crate::core::flow::{Action, Filter, Outcome, Step};
use crate::core::http::{ProviderResponse, Request};
use crate::core::oidc::provider::ProviderState;
use crate::core::oidc::token;
use crate::core::pages::Lang;
use crate::core::session::cookies;
use crate::core::session::Session;
use crate::core::shared::{
    claim_refresh, finish_refresh, generation, RefreshClaim, RefreshEnd, SharedStore,
};
use crate::core::Entropy;

/// How a refresh failed, for the counter and the log.
struct Failure {
    reason: &'static str,
    detail: String,
}

impl Filter {
    /// Whether this session should be refreshed now: it has a refresh token
    /// and its access token expires within `refresh_margin`.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn refresh_due(&self, session: &Session, now: u64) -> bool {
        self.refresh_at(session).is_some_and(|at| now >= at)
    }

    /// When this session becomes due for a refresh, if it ever does.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn refresh_at(&self, session: &Session) -> Option<u64> {
        if !self.config.refresh_sessions
            || session.refresh_token.is_none()
            || session.sid.is_empty()
        {
            return None;
        }
        session
            .access_expires_at
            .map(|at| at.saturating_sub(self.config.refresh_margin))
    }

    /// A request whose session is due for a refresh: refresh it, or go on
    /// with the current session while another request does.
    #[allow(clippy::too_many_arguments)]
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn begin_refresh(
        &self,
        req: &Request,
        upstream: Upstream,
        session: Session,
        routes: RouteSet,
        provider: &ProviderState,
        now: u64,
        store: &dyn SharedStore,
        lang: Lang,
    ) -> Step {
        let token_endpoint = provider
            .metadata
            .as_ref()
            .filter(|_| provider.ready())
            .map(|m| &m.token_endpoint);
        let (Some(endpoint), Some(refresh_token)) = (token_endpoint, &session.refresh_token) else {
            // The provider is unreachable: the session is still valid.
            return self.pass(upstream, &session, Vec::new(), Outcome::Passed);
        };
        let busy_for = 2 * self.config.provider_timeout_ms.div_ceil(1000) + 5;
        let from = generation(session.access_token.as_deref());
        match claim_refresh(store, &self.shared_ns, &session.sid, &from, now, busy_for) {
            RefreshClaim::Mine => {
                let call = self.token_call(
                    session.provider,
                    endpoint,
                    vec![
                        ("grant_type", "refresh_token"),
                        ("refresh_token", refresh_token),
                    ],
                );
                let pending = RefreshPending {
                    lang,
                    request: req.to_owned_request(),
                    upstream,
                    session,
                    routes,
                    stage: RefreshStage::Token,
                };
                Step {
                    action: Action::Call(call, Box::new(Pending::Refresh(pending))),
                    outcome: Outcome::Waiting,
                }
            }
            RefreshClaim::InFlight | RefreshClaim::Later => {
                self.pass(upstream, &session, Vec::new(), Outcome::Passed)
            }
            RefreshClaim::Refreshed(sealed) => {
                let refreshed = self
                    .session_cookie()
                    .open(&sealed, now)
                    .filter(|s| s.sid == session.sid && s.provider == session.provider);
                match refreshed {
                    Some(new) => {
                        let cookies = cookies::parse(req.header_values("cookie"));
                        let set = self.session_cookie().write_sealed(
                            &sealed,
                            new.expires_at.saturating_sub(now),
                            &self.cookie_attrs("/"),
                            &cookies,
                        );
                        match self.check_rules(routes, new.provider, &new.claims) {
                            Ok(()) => self.pass(upstream, &new, set, Outcome::RefreshAdopted),
                            Err(denial) => self.denied(&new, &denial, lang),
                        }
                    }
                    None => self.pass(upstream, &session, Vec::new(), Outcome::Passed),
                }
            }
        }
    }

    /// Sends the request upstream as `session`, setting `set_cookies` on the answer.
    #[cfg_attr(sesame_size, optimize(size))]
    fn pass(
        &self,
        upstream: Upstream,
        session: &Session,
        set_cookies: Vec<String>,
        outcome: Outcome,
    ) -> Step {
        let upstream = upstream.with(identity_headers(&self.config, session).into());
        let action = if set_cookies.is_empty() {
            Action::ContinueWith(upstream)
        } else {
            Action::ContinueWithCookies(upstream, set_cookies)
        };
        Step { action, outcome }
    }

    /// Continues a refresh with the provider's answer.
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn on_refresh_response(
        &self,
        mut p: RefreshPending,
        resp: &ProviderResponse,
        provider: &mut ProviderState,
        now: u64,
        entropy: &mut dyn Entropy,
        store: &dyn SharedStore,
    ) -> Step {
        let ns = &self.shared_ns;
        // This request's call only: it does not decide whether the provider is up.
        if resp.status == 0 || resp.status == 429 || resp.status >= 500 {
            finish_refresh(store, ns, &p.session.sid, RefreshEnd::Retry, now);
            let outcome = Outcome::RefreshFailed {
                reason: "provider_unavailable",
                detail: format!("HTTP {}; the current session goes on", resp.status),
            };
            return self.pass(p.upstream, &p.session, Vec::new(), outcome);
        }
        let stage = std::mem::replace(&mut p.stage, RefreshStage::Token);
        let result = match stage {
            RefreshStage::Token => match self.refreshed_session(&p.session, resp, provider, now) {
                // Read userinfo again with the new access token.
                Ok(new) => {
                    match self.userinfo_call(new.provider, provider, new.access_token.as_deref()) {
                        Some(call) => {
                            let pending = RefreshPending {
                                stage: RefreshStage::Userinfo(Box::new(new)),
                                ..p
                            };
                            return Step {
                                action: Action::Call(call, Box::new(Pending::Refresh(pending))),
                                outcome: Outcome::Waiting,
                            };
                        }
                        None => Ok(new),
                    }
                }
                Err(failure) => Err(failure),
            },
            RefreshStage::Userinfo(new) => {
                match self.userinfo_about(new.provider, resp, provider, &new.claims, now) {
                    // A plain OAuth 2.0 provider: its answer is the identity.
                    Ok(info) if self.provider(new.provider).is_oauth2() => {
                        let mut new = *new;
                        new.claims = info;
                        Ok(new)
                    }
                    Ok(info) => {
                        let mut new = *new;
                        merge_userinfo(&mut new.claims, info);
                        Ok(new)
                    }
                    Err((_, reason, detail)) => Err(Failure { reason, detail }),
                }
            }
        };
        let mut new = match result {
            Ok(new) => new,
            Err(failure) => {
                finish_refresh(store, ns, &p.session.sid, RefreshEnd::Released, now);
                return self.session_ended(p, failure, provider, now, entropy);
            }
        };
        display_name(&mut new.claims);
        new.claims
            .retain(|k, _| self.config.kept_claims.contains(k));
        if let Err(denial) = self.check_rules(p.routes, new.provider, &new.claims) {
            finish_refresh(store, ns, &p.session.sid, RefreshEnd::Released, now);
            let mut step = self.denied(&new, &denial, p.lang);
            if let Action::Respond(r) = &mut step.action {
                let cookies = p.cookies();
                for c in self
                    .session_cookie()
                    .clear(&cookies, &self.cookie_attrs("/"))
                {
                    r.headers.push(("set-cookie".into(), c));
                }
            }
            return step;
        }
        let Some(sealed) = self.seal_session(&mut new, entropy) else {
            finish_refresh(store, ns, &p.session.sid, RefreshEnd::Released, now);
            let failure = Failure {
                reason: "session_too_large",
                detail: "the refreshed session would not fit in the session cookies".into(),
            };
            return self.session_ended(p, failure, provider, now, entropy);
        };
        let cookies = p.cookies();
        let set = self.session_cookie().write_sealed(
            &sealed,
            new.expires_at.saturating_sub(now),
            &self.cookie_attrs("/"),
            &cookies,
        );
        finish_refresh(store, ns, &new.sid, RefreshEnd::Done(sealed), now);
        let outcome = Outcome::Refreshed {
            sub: new.sub().to_string(),
        };
        self.pass(p.upstream, &new, set, outcome)
    }

    /// The session after a token endpoint answer: new tokens, and the claims
    /// of the new ID token when there is one.
    #[cfg_attr(sesame_size, optimize(size))]
    fn refreshed_session(
        &self,
        old: &Session,
        resp: &ProviderResponse,
        provider: &ProviderState,
        now: u64,
    ) -> Result<Session, Failure> {
        if resp.status != 200 {
            let error = resp.oauth_error();
            return Err(Failure {
                reason: "refresh_refused",
                detail: format!("HTTP {} {error}", resp.status),
            });
        }
        let tokens = TokenResponse::parse(&resp.body).map_err(|e| Failure {
            reason: "token_response_invalid",
            detail: e.into(),
        })?;
        let Some(access_token) = tokens.access_token.clone() else {
            return Err(Failure {
                reason: "token_response_invalid",
                detail: "no access_token in the refresh response".into(),
            });
        };
        let mut claims: Map<String, Value> = old.claims.clone();
        if let Some(id_token) = tokens.id_token.as_deref() {
            let keys = provider.keys.clone().unwrap_or_default();
            let fresh = token::validate_refreshed_id_token(
                id_token,
                &keys,
                &self.expectations(old.provider, now),
                old.sub(),
            )
            .map_err(|e| Failure {
                reason: "id_token_invalid",
                detail: e.to_string(),
            })?;
            self.check_acr(old.provider, &fresh, None)
                .map_err(|detail| Failure {
                    reason: "acr_not_satisfied",
                    detail,
                })?;
            claims.extend(fresh);
        }
        let new = Session {
            claims,
            id_token: tokens.id_token.clone().or_else(|| old.id_token.clone()),
            access_token: Some(access_token),
            created_at: old.created_at,
            expires_at: old.expires_at,
            sid: old.sid.clone(),
            // Providers that do not rotate refresh tokens send none back.
            refresh_token: tokens
                .refresh_token
                .clone()
                .or_else(|| old.refresh_token.clone()),
            access_expires_at: tokens.access_expires_at(now),
            provider: old.provider,
        };
        Ok(new)
    }

    /// The session could not be refreshed: it is over. A page navigation
    /// starts a new sign-in that returns to the same page; anything else gets
    /// 401. The session cookies are cleared either way.
    #[cfg_attr(sesame_size, optimize(size))]
    fn session_ended(
        &self,
        p: RefreshPending,
        failure: Failure,
        provider: &ProviderState,
        now: u64,
        entropy: &mut dyn Entropy,
    ) -> Step {
        let cookies = p.cookies();
        // Signed in again at the same provider.
        let at = Some((p.session.provider, provider));
        let mut step =
            self.unauthenticated_at(&p.request.as_request(), &cookies, at, now, entropy, p.lang);
        step.outcome = Outcome::RefreshFailed {
            reason: failure.reason,
            detail: format!("{}; the session ends", failure.detail),
        };
        step
    }
}
