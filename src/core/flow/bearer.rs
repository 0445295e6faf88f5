//! Bearer tokens (RFC 6750): scripts and services call protected routes with
//! `Authorization: Bearer <access token>`.
//!
//! A JWT access token (RFC 9068) is checked here, against the provider's keys;
//! an opaque one by introspection at the provider (RFC 7662), answered as JSON
//! or as a signed JWT (RFC 9701). Either way the result is remembered for a
//! while (bounded, never past the token's `exp`), so that a busy API does not
//! verify a signature or call the provider on every request. Then the route's
//! scopes and the access rules apply, and the request goes upstream with the
//! same identity headers as a browser session.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::core::access::policy::{merge_userinfo, Denial};
use crate::core::access::routes::{holds_provider, RouteSet};
use crate::core::config::ProviderKind;
use crate::core::flow::headers::{identity_headers, Upstream};
use crate::core::flow::personal::{is_own_token, strip_authorization, PERSONAL_TOKEN_PREFIX};
use crate::core::flow::state::{BearerPending, Pending};
use crate::core::flow::tokens::{Checked, Memo, NEGATIVE_TTL};
use crate::core::flow::who::Who;
use crate::core::flow::{Action, Filter, Outcome, Step};
use crate::core::http::{ProviderCall, ProviderResponse, Response};
use crate::core::oidc::provider::ProviderState;
use crate::core::oidc::token::{self, claim_contains, TokenError, MAX_TOKEN_LEN};
use crate::core::session::Session;
use crate::core::Clock;

/// Why a bearer request is refused: RFC 6750 §3.1.
#[derive(Debug)]
struct Refusal {
    status: u16,
    /// `invalid_token`, `insufficient_scope`, or none (no token at all).
    error: Option<&'static str>,
    description: String,
    /// For the counter: a stable name.
    reason: &'static str,
}

impl Refusal {
    fn invalid(reason: &'static str, description: impl Into<String>) -> Refusal {
        Refusal {
            status: 401,
            error: Some("invalid_token"),
            description: description.into(),
            reason,
        }
    }
}

/// Whether an `Authorization` header uses the `Bearer` scheme (a token may
/// still be missing or malformed).
pub(crate) fn is_bearer_scheme(authorization: &str) -> bool {
    authorization
        .trim_start()
        .split_once(' ')
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
}

/// Whether an `Authorization` value carries a bearer token after a comma:
/// the value of several `Authorization` headers that Envoy joined into one
/// (`Basic …,Bearer …`).
pub(crate) fn has_joined_bearer(authorization: &str) -> bool {
    authorization.split(',').skip(1).any(is_bearer_scheme)
}

/// The token of an `Authorization: Bearer` header; `Err` when the header is
/// there but is not a well-formed bearer token.
fn bearer_token(authorization: &str) -> Result<&str, ()> {
    if !is_bearer_scheme(authorization) {
        return Err(());
    }
    let (_, token) = authorization.trim_start().split_once(' ').ok_or(())?;
    let token = token.trim();
    let token68 = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    if token.is_empty() || token.len() > MAX_TOKEN_LEN || !token.chars().all(token68) {
        return Err(());
    }
    Ok(token)
}

/// The scopes a token grants: `scope` (space separated) or `scp` (a list).
fn granted_scopes(claims: &Map<String, Value>) -> Vec<&str> {
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => s.split(' ').filter(|s| !s.is_empty()).collect(),
        (_, Some(Value::Array(items))) => items.iter().filter_map(Value::as_str).collect(),
        (_, Some(Value::String(s))) => s.split(' ').filter(|s| !s.is_empty()).collect(),
        _ => Vec::new(),
    }
}

/// 502: the provider's introspection answer cannot be used (the detail is logged).
#[cfg_attr(sesame_size, optimize(size))]
fn introspection_failed(reason: &'static str, detail: String) -> Step {
    let response =
        Response::new(502).with_body("application/json", r#"{"error":"introspection_failed"}"#);
    Step::respond(response, Outcome::BearerRefused { reason, detail })
}

fn quoted(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .take(200)
        .collect()
}

impl Filter {
    /// A request on a route that takes bearer tokens, with an `Authorization` header.
    pub(crate) fn bearer_request(
        &self,
        upstream: Upstream,
        authorization: Option<&str>,
        routes: RouteSet,
        providers: &[ProviderState],
        clock: &dyn Clock,
    ) -> Step {
        let Some(authorization) = authorization else {
            return self.refuse(Refusal {
                status: 401,
                error: None,
                description: "a bearer token is required".into(),
                reason: "missing_token",
            });
        };
        let Ok(token) = bearer_token(authorization) else {
            return self.refuse(Refusal::invalid(
                "malformed_token",
                "the Authorization header is not a bearer token",
            ));
        };
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let own = is_own_token(token);
        if let Some(api_key) = self.api_key(&key) {
            return self.api_key_request(upstream, api_key, routes, clock.now());
        }
        if own && !token.starts_with(PERSONAL_TOKEN_PREFIX) {
            // Never sent to a provider: Sésame's own kind of token.
            let step = self.refuse_token(401, "invalid_token", "unknown API key", "unknown_key");
            return Step {
                outcome: Outcome::KeyRefused {
                    key: None,
                    reason: "unknown_key",
                },
                ..step
            };
        }
        // Remembered and still valid: at the clock's upper bound (no reading
        // of the clock), or else, near the entry's end, at the exact time.
        let tokens = self.tokens.borrow();
        let remembered = tokens
            .get(&key, clock.upper_bound())
            .or_else(|| tokens.get(&key, clock.now()));
        // A token is held to the providers the route admits whether it was
        // checked just now or remembered from another route.
        let admitted = self.admitted_providers(routes);
        let wrong_issuer = || {
            self.refuse(Refusal::invalid(
                "wrong_issuer",
                "the token is not from a provider this route accepts",
            ))
        };
        if let Some(checked) = remembered {
            // A personal token names no issuer: its provider is checked with
            // the rules ([`Filter::admit`]), as when it was first opened.
            if !own && !holds_provider(admitted, checked.provider) {
                return wrong_issuer();
            }
            return match &checked.claims {
                Some(claims) => self.admit(
                    upstream,
                    authorization,
                    token,
                    claims,
                    routes,
                    checked.provider,
                    &checked.memo,
                ),
                None => self.refuse(Refusal::invalid(
                    "inactive_token",
                    "the token is not active",
                )),
            };
        }
        drop(tokens);
        let now = clock.now();
        if own {
            return self.personal_token_request(upstream, authorization, token, routes, now);
        }
        // The OpenID providers the routes admit: a plain OAuth 2.0 provider
        // issues no token Sésame can check.
        let candidates = self
            .config
            .providers
            .iter()
            .enumerate()
            .filter(move |(i, p)| {
                holds_provider(admitted, *i)
                    && *i < providers.len()
                    && p.kind != ProviderKind::OAuth2
            });
        if token.split('.').count() == 3 {
            // The token's `iss` picks the provider whose keys verify it:
            // never every provider's keys in turn.
            let iss = token::claimed_issuer(token).unwrap_or_default();
            let Some((i, _)) = candidates.clone().find(|(_, p)| p.issuer == iss) else {
                return wrong_issuer();
            };
            return self.jwt_access_token(
                upstream,
                authorization,
                token,
                routes,
                (i, &providers[i]),
                now,
            );
        }
        // An opaque token: introspected by the first of them that can.
        let introspection = candidates.clone().find_map(|(i, p)| {
            p.bearer
                .introspection_endpoint
                .as_ref()
                .or_else(|| {
                    providers[i]
                        .metadata
                        .as_ref()
                        .and_then(|m| m.introspection_endpoint.as_ref())
                })
                .map(|e| (i, e))
        });
        let Some((index, endpoint)) = introspection else {
            return self.refuse(Refusal::invalid(
                "opaque_token",
                "opaque tokens cannot be checked: the provider has no introspection endpoint",
            ));
        };
        if !providers[index].ready() {
            return self.bearer_unavailable();
        }
        let accept = if self.provider(index).bearer.introspection_jwt {
            "application/token-introspection+jwt"
        } else {
            "application/json"
        };
        let call = self
            .token_call(
                index,
                endpoint,
                vec![("token", token), ("token_type_hint", "access_token")],
            )
            .with_header("accept", accept);
        let pending = BearerPending::new(upstream, authorization, token, routes, index);
        Step {
            action: Action::Call(call, Box::new(Pending::Bearer(pending))),
            outcome: Outcome::Waiting,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn jwt_access_token(
        &self,
        upstream: Upstream,
        authorization: &str,
        token: &str,
        routes: RouteSet,
        (index, provider): (usize, &ProviderState),
        now: u64,
    ) -> Step {
        let Some(keys) = provider.keys.as_ref() else {
            return self.bearer_unavailable();
        };
        let bearer = &self.provider(index).bearer;
        let cache = &self.config.tokens;
        match token::validate_access_token(
            token,
            keys,
            &self.expectations(index, now),
            &bearer.audience,
            &bearer.audience_claim,
            bearer.require_typ,
        ) {
            Ok(claims) => {
                let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(now);
                let until = exp.min(now.saturating_add(cache.cache_ttl));
                let pending = BearerPending::new(upstream, authorization, token, routes, index);
                let (pending, claims) =
                    match self.fetch_missing_claims(pending, claims, until, provider) {
                        Ok(step) => return step,
                        Err(back) => back,
                    };
                self.admit_and_remember(pending, claims, until, now)
            }
            Err(e) => {
                let reason = match e {
                    TokenError::Expired => "expired_token",
                    TokenError::WrongAudience => "wrong_audience",
                    _ => "invalid_token",
                };
                self.refuse(Refusal::invalid(
                    reason,
                    format!("the token is not valid: {e}"),
                ))
            }
        }
    }

    /// A request with a personal token: opened, then held to the route's
    /// scopes and rules as the person, and remembered like a JWT.
    #[cfg_attr(sesame_size, optimize(size))]
    fn personal_token_request(
        &self,
        upstream: Upstream,
        authorization: &str,
        token: &str,
        routes: RouteSet,
        now: u64,
    ) -> Step {
        let (provider, claims, exp) = match self.open_personal_token(token, now) {
            Ok(opened) => opened,
            Err(reason) => {
                let description = if reason == "expired_token" {
                    "the token has expired"
                } else {
                    "the token is not valid"
                };
                let step = self.refuse_token(401, "invalid_token", description, reason);
                return Step {
                    outcome: Outcome::TokenRefused { who: None, reason },
                    ..step
                };
            }
        };
        let until = exp.min(now.saturating_add(self.config.tokens.cache_ttl));
        let p = BearerPending::new(upstream, authorization, token, routes, provider);
        self.admit_and_remember(p, claims, until, now)
    }

    /// A valid token's claims: the route's scopes and rules ([`Filter::admit`]),
    /// and the token remembered with them until `until`.
    fn admit_and_remember(
        &self,
        p: BearerPending,
        claims: Map<String, Value>,
        until: u64,
        now: u64,
    ) -> Step {
        let memo = Memo::default();
        let step = self.admit(
            p.upstream,
            &p.authorization,
            &p.token,
            &claims,
            p.routes,
            p.provider,
            &memo,
        );
        let checked = Checked {
            provider: p.provider,
            claims: Some(claims),
            until,
            memo,
        };
        let key: [u8; 32] = Sha256::digest(p.token.as_bytes()).into();
        let cache = &self.config.tokens;
        self.tokens
            .borrow_mut()
            .put(key, checked, cache.cache_size, now);
        step
    }

    /// A valid token that the rules refuse only for a claim it lacks (an
    /// email rule, and no email in a token or introspection answer, as
    /// LemonLDAP::NG's): the provider's userinfo is asked once, with the
    /// token, and what it says is remembered with the token. `Err`: go on
    /// with what there is.
    #[cfg_attr(sesame_size, optimize(size))]
    #[allow(clippy::result_large_err)]
    fn fetch_missing_claims(
        &self,
        mut p: BearerPending,
        claims: Map<String, Value>,
        until: u64,
        provider: &ProviderState,
    ) -> Result<Step, (BearerPending, Map<String, Value>)> {
        let lacking = match self.check_rules(p.routes, p.provider, &claims) {
            Err(Denial::NoEmail) => true,
            Err(Denial::ClaimNotAllowed(name)) => !claims.contains_key(&name),
            _ => false,
        };
        let endpoint = provider
            .metadata
            .as_ref()
            .and_then(|m| m.userinfo_endpoint.as_ref());
        let (true, Some(endpoint)) = (lacking, endpoint) else {
            return Err((p, claims));
        };
        let call = ProviderCall::get(endpoint, "application/jwt, application/json")
            .with_header("authorization", &format!("Bearer {}", p.token));
        p.checked = Some((claims, until));
        Ok(Step {
            action: Action::Call(call, Box::new(Pending::Bearer(p))),
            outcome: Outcome::Waiting,
        })
    }

    /// The provider's userinfo for a valid token that lacked a claim: its
    /// claims added (for the token's own `sub` only), then the route's rules
    /// as for any token. A failed call refuses nothing by itself: the token
    /// is judged on what it had.
    #[cfg_attr(sesame_size, optimize(size))]
    fn on_bearer_userinfo(
        &self,
        p: BearerPending,
        mut claims: Map<String, Value>,
        until: u64,
        resp: &ProviderResponse,
        provider: &ProviderState,
        now: u64,
    ) -> Step {
        let failed = match self.userinfo_about(p.provider, resp, provider, &claims, now) {
            Ok(info) if claims.contains_key("sub") => {
                merge_userinfo(&mut claims, info);
                None
            }
            Ok(_) => None,
            Err((_, reason, detail)) => Some(format!(" (userinfo {reason}: {detail})")),
        };
        let mut step = self.admit_and_remember(p, claims, until, now);
        // A refusal says why userinfo could not help.
        if let (Outcome::Denied { reason, .. }, Some(why)) = (&mut step.outcome, failed) {
            reason.push_str(&why);
        }
        step
    }

    /// The introspection answer for a waiting bearer request.
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn on_introspection_response(
        &self,
        mut p: BearerPending,
        resp: &ProviderResponse,
        provider: &ProviderState,
        now: u64,
    ) -> Step {
        // The provider's userinfo, asked about a token checked already.
        if let Some((claims, until)) = p.checked.take() {
            return self.on_bearer_userinfo(p, claims, until, resp, provider, now);
        }
        // A failed call answers this request only: whether the provider is
        // up is decided by the discovery and key fetches alone, so that a
        // junk token whose introspection fails cannot stop every sign-in.
        if resp.status == 0 || resp.status >= 500 {
            return self.bearer_unavailable();
        }
        if resp.status != 200 {
            return introspection_failed(
                "introspection_refused",
                format!(
                    "the provider answered HTTP {} to introspection (check the client's credentials)",
                    resp.status
                ),
            );
        }
        let answer = match self.introspection_answer(p.provider, resp, provider, now) {
            Ok(a) => a,
            Err(detail) => return introspection_failed("introspection_invalid", detail),
        };
        let key: [u8; 32] = Sha256::digest(p.token.as_bytes()).into();
        let bearer = &self.config.tokens;
        let verdict = self.check_introspected(p.provider, &answer, now);
        match verdict {
            Ok(until) => {
                let until = until.min(now.saturating_add(bearer.cache_ttl));
                match self.fetch_missing_claims(p, answer, until, provider) {
                    Ok(step) => step,
                    Err((p, answer)) => self.admit_and_remember(p, answer, until, now),
                }
            }
            Err(refusal) => {
                let mut cache = self.tokens.borrow_mut();
                let until = now.saturating_add(bearer.cache_ttl.min(NEGATIVE_TTL));
                let refused = Checked {
                    provider: p.provider,
                    claims: None,
                    until,
                    memo: Memo::default(),
                };
                cache.put(key, refused, bearer.cache_size, now);
                drop(cache);
                self.refuse(refusal)
            }
        }
    }

    /// The introspection answer as a JSON object, from JSON or from a signed
    /// JWT (RFC 9701).
    #[cfg_attr(sesame_size, optimize(size))]
    fn introspection_answer(
        &self,
        index: usize,
        resp: &ProviderResponse,
        provider: &ProviderState,
        now: u64,
    ) -> Result<Map<String, Value>, String> {
        match resp.media_type().as_str() {
            "application/token-introspection+jwt" | "application/jwt" => {
                let text = String::from_utf8_lossy(&resp.body);
                let text = text.trim();
                let decrypted;
                let signed = if text.split('.').count() == 5 {
                    let key = self.config.tokens.resource_key.as_ref().ok_or(
                        "the introspection answer is encrypted, and no resource_server_key is configured",
                    )?;
                    decrypted = key
                        .decrypt(text)
                        .map_err(|e| format!("encrypted introspection answer refused: {e}"))?;
                    std::str::from_utf8(&decrypted)
                        .map_err(|_| "the decrypted answer is not a JWT".to_string())?
                        .trim()
                } else {
                    text
                };
                let keys = provider.keys.clone().unwrap_or_default();
                token::validate_introspection_jwt(signed, &keys, &self.expectations(index, now))
                    .map_err(|e| format!("signed introspection answer refused: {e}"))
            }
            "application/json" if !self.provider(index).bearer.introspection_jwt => {
                serde_json::from_slice::<Map<String, Value>>(&resp.body)
                    .map_err(|_| "the introspection answer is not a JSON object".to_string())
            }
            other => Err(format!(
                "unexpected introspection content type {:?}",
                other.chars().take(64).collect::<String>()
            )),
        }
    }

    /// RFC 7662 §2.2: `active`, then `iss`, `exp` and our audience. Returns
    /// until when the answer may be trusted.
    #[cfg_attr(sesame_size, optimize(size))]
    fn check_introspected(
        &self,
        index: usize,
        answer: &Map<String, Value>,
        now: u64,
    ) -> Result<u64, Refusal> {
        if answer.get("active") != Some(&Value::Bool(true)) {
            return Err(Refusal::invalid(
                "inactive_token",
                "the token is not active",
            ));
        }
        if let Some(iss) = answer.get("iss") {
            if iss.as_str() != Some(self.provider(index).issuer.as_str()) {
                return Err(Refusal::invalid(
                    "wrong_issuer",
                    "the token is from another issuer",
                ));
            }
        }
        let exp = answer.get("exp").and_then(Value::as_u64);
        if exp.is_some_and(|e| e <= now) {
            return Err(Refusal::invalid("expired_token", "the token has expired"));
        }
        // RFC 7662 makes `aud` optional, and some providers (LemonLDAP::NG)
        // leave it out: the audience is then checked on `client_id`, the
        // client the token was issued to.
        let bearer = &self.provider(index).bearer;
        let claim = match bearer.audience_claim.as_str() {
            "aud" if !answer.contains_key("aud") => "client_id",
            claim => claim,
        };
        if !answer.contains_key(claim) {
            return Err(Refusal::invalid(
                "wrong_audience",
                format!("the introspection answer has no `{claim}` to check the audience on"),
            ));
        }
        if !claim_contains(answer, claim, &bearer.audience) {
            return Err(Refusal::invalid(
                "wrong_audience",
                format!("the token is not meant for this service (`{claim}`)"),
            ));
        }
        Ok(exp.unwrap_or(u64::MAX))
    }

    /// A valid token: the route's scopes and access rules, then upstream.
    #[allow(clippy::too_many_arguments)]
    fn admit(
        &self,
        upstream: Upstream,
        authorization: &str,
        token: &str,
        claims: &Map<String, Value>,
        routes: RouteSet,
        provider: usize,
        memo: &Memo,
    ) -> Step {
        let slot = routes.sole().map_or(usize::MAX, |r| r.map_or(0, |i| i + 1));
        let mut refusal = None;
        let admitted = memo.admissions.admitted_by(slot, || {
            let answer = self.admission(claims, routes, provider);
            let ok = answer.is_ok();
            refusal = answer.err();
            ok
        });
        // Sésame's own tokens (personal tokens) go no further than here.
        let own = is_own_token(token);
        if !admitted {
            // A refusal remembered from an earlier request is made again, for
            // its reason.
            if let Some(step) = refusal.or_else(|| self.admission(claims, routes, provider).err()) {
                if !own {
                    return *step;
                }
                let reason = match step.outcome {
                    Outcome::BearerRefused { reason, .. } => reason,
                    _ => "access_denied",
                };
                let who = Some(Who::of(provider, claims));
                return Step {
                    outcome: Outcome::TokenRefused { who, reason },
                    ..*step
                };
            }
        }
        let identity = memo
            .identity
            .get_or_init(|| {
                let session = Session {
                    claims: claims.clone(),
                    access_token: Some(token.to_string()),
                    provider,
                    ..Default::default()
                };
                identity_headers(&self.config, &session).into()
            })
            .clone();
        // The token goes on to the upstream, unless Sésame sets the header
        // itself (then the client's copy is among the removed ones), or it
        // is one of Sésame's own.
        let mut upstream = upstream;
        if own {
            strip_authorization(&mut upstream);
        }
        let removed = upstream
            .remove
            .iter()
            .any(|n| n.eq_ignore_ascii_case("authorization"));
        let add = if removed && !own && !identity.iter().any(|(k, _)| k == "authorization") {
            let mut add = identity.to_vec();
            add.push(("authorization".into(), authorization.to_string()));
            add.into()
        } else {
            identity
        };
        Step {
            action: Action::ContinueWith(upstream.with(add)),
            outcome: Outcome::BearerPassed,
        }
    }

    /// Whether the route's scopes and access rules admit a valid token's
    /// claims; the refusal otherwise.
    fn admission(
        &self,
        claims: &Map<String, Value>,
        routes: RouteSet,
        provider: usize,
    ) -> Result<(), Box<Step>> {
        // Every route's scopes (its own, or the default bearer scopes).
        let mut required: Vec<&str> = Vec::new();
        for member in routes.members() {
            let scopes = match self.route(member) {
                Some(r) if !r.scopes.is_empty() => &r.scopes,
                _ => &self.provider(provider).bearer.scopes,
            };
            for scope in scopes {
                if !required.contains(&scope.as_str()) {
                    required.push(scope);
                }
            }
        }
        let granted = granted_scopes(claims);
        if let Some(missing) = required.iter().find(|s| !granted.contains(s)) {
            return Err(Box::new(
                self.refuse(Refusal {
                    status: 403,
                    error: Some("insufficient_scope"),
                    description: format!("the token lacks the scope {missing}"),
                    reason: "insufficient_scope",
                })
                .with_scope(&required.join(" ")),
            ));
        }
        if let Err(denial) = self.check_rules(routes, provider, claims) {
            if denial == Denial::AcrTooLow {
                let needed = self.required_acr(routes);
                return Err(Box::new(self.insufficient_authentication(&needed)));
            }
            let response = Response::new(403).with_body(
                "application/json",
                r#"{"error":"access_denied","error_description":"the access rules do not admit this identity"}"#,
            );
            return Err(Box::new(Step::respond(
                response,
                Outcome::Denied {
                    who: Who::of(provider, claims),
                    reason: denial.describe(),
                    code: denial.code(),
                    sign_in: false,
                },
            )));
        }
        Ok(())
    }

    /// A bearer refusal (RFC 6750 §3.1): `status`, its `error` code, a
    /// description, and the counter's reason.
    pub(crate) fn refuse_token(
        &self,
        status: u16,
        error: &'static str,
        description: &str,
        reason: &'static str,
    ) -> Step {
        self.refuse(Refusal {
            status,
            error: Some(error),
            description: description.to_string(),
            reason,
        })
    }

    fn refuse(&self, refusal: Refusal) -> Step {
        let mut challenge = String::from("Bearer realm=\"sesame\"");
        if let Some(error) = refusal.error {
            challenge.push_str(&format!(
                ", error=\"{error}\", error_description=\"{}\"",
                quoted(&refusal.description)
            ));
        }
        let body = serde_json::json!({
            "error": refusal.error.unwrap_or("unauthenticated"),
            "error_description": refusal.description,
        });
        let response = Response::new(refusal.status)
            .with_header("www-authenticate", &challenge)
            .with_json(&body);
        Step::respond(
            response,
            Outcome::BearerRefused {
                reason: refusal.reason,
                detail: refusal.description,
            },
        )
    }

    /// A request with several `Authorization` headers on a protected route:
    /// which one the application would read cannot be told (RFC 6750 §2.1
    /// allows one), so it is refused (400 `invalid_request`).
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn several_authorization_headers(&self) -> Step {
        self.refuse(Refusal {
            status: 400,
            error: Some("invalid_request"),
            description: "several Authorization headers".into(),
            reason: "several_authorization_headers",
        })
    }

    /// `401`: the authentication is too weak for the route (RFC 9470),
    /// with the `acr` values it needs.
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn insufficient_authentication(&self, needed: &str) -> Step {
        let mut step = self.refuse(Refusal {
            status: 401,
            error: Some("insufficient_user_authentication"),
            description: "a stronger authentication is required".into(),
            reason: "insufficient_user_authentication",
        });
        if let Action::Respond(r) = &mut step.action {
            for (name, value) in r.headers.iter_mut() {
                if name == "www-authenticate" {
                    value.push_str(&format!(", acr_values=\"{}\"", quoted(needed)));
                }
            }
        }
        step
    }

    #[cfg_attr(sesame_size, optimize(size))]
    fn bearer_unavailable(&self) -> Step {
        let response = Response::new(503).with_header("retry-after", "5").with_body(
            "application/json",
            r#"{"error":"temporarily_unavailable","error_description":"the identity provider cannot be reached"}"#,
        );
        Step::respond(response, Outcome::ProviderUnavailable)
    }
}

impl Step {
    /// Adds `scope="..."` to the `WWW-Authenticate` challenge of a refusal.
    pub(crate) fn with_scope(mut self, scope: &str) -> Step {
        if let Action::Respond(r) = &mut self.action {
            for (k, v) in r.headers.iter_mut() {
                if k == "www-authenticate" {
                    v.push_str(&format!(", scope=\"{}\"", quoted(scope)));
                }
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::flow::tokens::TokenCache;

    #[test]
    fn bearer_tokens_joined_after_another_credential_are_seen() {
        assert!(has_joined_bearer("Basic Ym9iOng=,Bearer eyJ.x.y"));
        assert!(has_joined_bearer("Basic Ym9iOng=, bearer x"));
        assert!(!has_joined_bearer("Bearer eyJ.x.y"));
        assert!(!has_joined_bearer(
            r#"Digest username="bob", realm="x", nonce="n", uri="/", response="r""#
        ));
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token("Bearer abc.def-_~+/="), Ok("abc.def-_~+/="));
        assert_eq!(bearer_token("bearer   tok "), Ok("tok"));
        assert!(bearer_token("Basic dXNlcjpwYXNz").is_err());
        assert!(bearer_token("Bearer").is_err());
        assert!(bearer_token("Bearer a b").is_err());
        assert!(bearer_token("Bearer tok\"en").is_err());
        assert!(bearer_token(&format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1))).is_err());
        // The scheme alone decides the route (session_or_bearer); the token is checked after.
        assert!(is_bearer_scheme("Bearer ") && is_bearer_scheme(" bearer x"));
        assert!(!is_bearer_scheme("Bearer") && !is_bearer_scheme("Basic x"));
    }

    #[test]
    fn scopes_from_scope_or_scp() {
        let m = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            granted_scopes(&m(serde_json::json!({"scope": "a  b"}))),
            vec!["a", "b"]
        );
        assert_eq!(
            granted_scopes(&m(serde_json::json!({"scp": ["a", "b"]}))),
            vec!["a", "b"]
        );
        assert!(granted_scopes(&m(serde_json::json!({}))).is_empty());
    }

    #[test]
    fn cache_is_bounded_and_honours_expiry() {
        let mut c = TokenCache::default();
        let entry = |until| Checked {
            provider: 0,
            claims: None,
            until,
            memo: Memo::default(),
        };
        for i in 0..10u8 {
            c.put([i; 32], entry(100 + u64::from(i)), 5, 50);
        }
        assert_eq!(c.len(), 5);
        // The entries that expire first were dropped.
        assert!(c.get(&[9; 32], 50).is_some() && c.get(&[0; 32], 50).is_none());
        assert!(
            c.get(&[9; 32], 109).is_none(),
            "expired entries are not served"
        );
        // Expired entries make room first.
        c.put([42; 32], entry(300), 5, 200);
        assert_eq!(c.len(), 1);
        // Size 0: no caching.
        let mut off = TokenCache::default();
        off.put([1; 32], entry(100), 0, 50);
        assert!(off.is_empty());
    }
}
