//! The filter's decisions for one request: pass it on (with identity headers),
//! answer it, or call the provider and continue later.

use serde_json::{json, Value};

use super::who::Who;
use super::{Action, Filter, Outcome, Step};
use crate::core::access::paths;
use crate::core::access::policy::Denial;
use crate::core::access::redirect::safe_return_target;
use crate::core::access::routes::{holds_provider, Protection, Route, RouteSet};
use crate::core::config::ProviderConfig;
use crate::core::config::{ProviderKind, ACCESS_TOKEN_HEADER, ID_TOKEN_HEADER};
use crate::core::flow::bearer::{has_joined_bearer, is_bearer_scheme};
use crate::core::flow::headers::{identity_headers, Identity, Upstream};
use crate::core::http::{Request, Response};
use crate::core::oidc::provider::ProviderState;
use crate::core::pages::{self, Lang};
use crate::core::session::cookies::{self, CookieAttributes};
use crate::core::session::{CachedSession, Session, SessionCookie, SessionKey};
use crate::core::shared::{MemoryStore, SharedStore};
use crate::core::{Clock, Entropy};

/// `{"keys": [key]}`, a JWKS of one key (built without `json!`, whose
/// serialiser would be one more in the module).
fn keys_document(key: &Value) -> Value {
    let mut keys = serde_json::Map::new();
    keys.insert("keys".into(), Value::Array(vec![key.clone()]));
    Value::Object(keys)
}

/// The language of the pages shown to this request's person.
fn lang(req: &Request) -> Lang {
    Lang::from_accept_language(req.header("accept-language"))
}

/// Where a navigation sent to sign in comes back: the page it asked for
/// (a `GET`; `HEAD` and the rest come back to `/`).
fn return_path<'r>(req: &Request<'r>) -> &'r str {
    if req.method.eq_ignore_ascii_case("GET") {
        req.path
    } else {
        "/"
    }
}

/// Whether a request is a page navigation (which may be redirected to the
/// provider) rather than a script, an API call or a WebSocket (which get 401).
pub fn is_navigation(req: &Request) -> bool {
    if req.header("upgrade").is_some() {
        return false;
    }
    if !(req.method.eq_ignore_ascii_case("GET") || req.method.eq_ignore_ascii_case("HEAD")) {
        return false;
    }
    if let Some(mode) = req.header("sec-fetch-mode") {
        return mode.eq_ignore_ascii_case("navigate");
    }
    if req
        .header("x-requested-with")
        .is_some_and(|v| v.eq_ignore_ascii_case("XMLHttpRequest"))
    {
        return false;
    }
    req.header_values("accept")
        .any(|a| a.to_ascii_lowercase().contains("text/html"))
}

impl Filter {
    /// The identity headers of a session just opened, remembered for the
    /// next requests that carry the same cookie.
    fn remember(&self, key: Option<SessionKey>, session: &Session, now: u64) -> Identity {
        let headers: Identity = identity_headers(&self.config, session).into();
        if let Some(key) = key {
            let entry = CachedSession::new(
                session.provider,
                session.expires_at,
                self.refresh_at(session),
                session.claims.clone(),
                headers.clone(),
                &key,
            );
            self.sessions
                .borrow_mut()
                .insert(&key, entry, self.config.session_cache_size, now);
        }
        headers
    }

    /// The request's session, when this VM opened it before, it is still
    /// valid and not due for a refresh, and `policy` admits it: its identity
    /// headers. Also the session's cache key, to remember one opened now.
    fn known_session(
        &self,
        cookies: &[(&str, &str)],
        routes: RouteSet,
        now: u64,
    ) -> (Option<SessionKey>, Option<Identity>) {
        let Some(key) = SessionKey::of(&self.session_cookie(), cookies) else {
            return (None, None);
        };
        let cache = self.sessions.borrow();
        let headers = cache
            .get(&key, now)
            .filter(|hit| {
                hit.admissions.admitted_by(self.policy_slot(routes), || {
                    self.check_rules(routes, hit.provider, &hit.claims).is_ok()
                })
            })
            .map(|hit| hit.headers.clone());
        (Some(key), headers)
    }

    /// Which access rules apply: 0 for the session's provider's (or the
    /// filter's), 1 + the route's index for a route with its own rules or
    /// providers; several routes (a path with several readings) are checked
    /// every time.
    fn policy_slot(&self, routes: RouteSet) -> usize {
        match routes.sole() {
            Some(Some(i))
                if self
                    .route(Some(i))
                    .is_some_and(|r| r.policy.is_some() || r.providers.is_some()) =>
            {
                1 + i
            }
            Some(_) => 0,
            None => usize::MAX,
        }
    }

    /// Checks an identity from provider `provider` against every route in
    /// `routes`: a revocation in the access document, then the providers
    /// each route admits and its access rules (its own, or the provider's,
    /// or the filter's: the access document's when there is one).
    pub(crate) fn check_rules(
        &self,
        routes: RouteSet,
        provider: usize,
        claims: &serde_json::Map<String, Value>,
    ) -> Result<(), Denial> {
        let access = self.access.borrow();
        let document = access.document.as_deref();
        if document.is_some_and(|d| d.revokes(provider, claims)) {
            return Err(Denial::Revoked);
        }
        for member in routes.members() {
            if self
                .route(member)
                .is_some_and(|r| !r.admits_provider(provider))
            {
                return Err(Denial::ProviderNotAllowed);
            }
            let policy = self
                .route(member)
                .and_then(|r| r.policy.as_ref())
                .or(self.provider(provider).policy.as_ref());
            let policy = match (policy, &self.config.access_source) {
                (Some(p), _) => p,
                (None, None) => &self.config.policy,
                (None, Some(_)) => match document {
                    Some(d) if !d.policy.is_empty() => &d.policy,
                    _ => return Err(Denial::NoRule),
                },
            };
            policy.check(claims)?;
        }
        // Admitted: now the level of authentication each route needs.
        let acr = claims.get("acr").and_then(Value::as_str).unwrap_or("");
        if routes
            .members()
            .filter_map(|m| self.route(m))
            .any(|r| !r.acr_values.is_empty() && !r.acr_values.iter().any(|a| a == acr))
        {
            return Err(Denial::AcrTooLow);
        }
        Ok(())
    }

    /// The `acr` values that satisfy every route of `routes` (a step-up
    /// asks for them), space separated; empty when none can.
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn required_acr(&self, routes: RouteSet) -> String {
        let lists: Vec<&Vec<String>> = routes
            .members()
            .filter_map(|m| self.route(m))
            .map(|r| &r.acr_values)
            .filter(|l| !l.is_empty())
            .collect();
        let first = lists.first().map_or(&[][..], |l| l.as_slice());
        let common: Vec<&str> = first
            .iter()
            .filter(|a| lists.iter().all(|l| l.contains(a)))
            .map(String::as_str)
            .collect();
        common.join(" ")
    }

    /// A session whose authentication is too weak for the route: a page
    /// navigation signs in again at its provider asking for the route's
    /// levels (and comes back to the page); anything else gets `401` with
    /// RFC 9470's challenge.
    #[allow(clippy::too_many_arguments)]
    #[cfg_attr(sesame_size, optimize(size))]
    fn step_up(
        &self,
        req: &Request,
        session: &Session,
        routes: RouteSet,
        providers: &[ProviderState],
        now: u64,
        entropy: &mut dyn Entropy,
        lang: Lang,
    ) -> Step {
        let needed = self.required_acr(routes);
        let state = providers.get(session.provider);
        match state {
            Some(state) if is_navigation(req) && !needed.is_empty() => {
                let hints = SignInHints {
                    acr: Some(needed),
                    ..SignInHints::default()
                };
                self.start_login(
                    session.provider,
                    return_path(req),
                    &hints,
                    state,
                    now,
                    entropy,
                    lang,
                )
            }
            _ => self.insufficient_authentication(&needed),
        }
    }

    /// The providers (bit `i`: provider `i`) every route of `routes` admits.
    pub(crate) fn admitted_providers(&self, routes: RouteSet) -> u64 {
        let all = (1u64 << self.config.providers.len()) - 1;
        routes.members().fold(all, |set, member| {
            set & self.route(member).and_then(|r| r.providers).unwrap_or(all)
        })
    }

    /// The route at `index` of `routes`.
    pub(crate) fn route(&self, index: Option<usize>) -> Option<&Route> {
        index.and_then(|i| self.config.routes.get(i))
    }

    pub fn session_cookie(&self) -> SessionCookie<'_> {
        SessionCookie {
            name: &self.config.cookie_name,
            sealer: &self.sealer,
        }
    }

    /// The attributes of a cookie meant for `path`. A `__Host-` cookie name
    /// makes every cookie `Path=/` (browsers refuse a `__Host-` cookie with
    /// any other path; the configuration refuses `cookie_domain` and an
    /// insecure cookie with it).
    pub fn cookie_attrs<'a>(&'a self, path: &'a str) -> CookieAttributes<'a> {
        let host_only = self.config.cookie_name.starts_with("__Host-");
        CookieAttributes {
            path: if host_only { "/" } else { path },
            domain: self.config.cookie_domain.as_deref(),
            secure: self.config.cookie_secure,
        }
    }

    fn endpoint<'p>(&self, path: &'p str) -> Option<&'p str> {
        path.strip_prefix(self.config.proxy_prefix.as_str())
            .filter(|rest| rest.starts_with('/'))
    }

    /// Decides what to do with a request, for a filter alone in its Envoy
    /// (no state shared with other workers).
    pub fn on_request(
        &self,
        req: &Request,
        providers: &[ProviderState],
        now: u64,
        entropy: &mut dyn Entropy,
    ) -> Step {
        self.on_request_shared(req, providers, &now, entropy, &MemoryStore::default())
    }

    /// Decides what to do with a request; `store` is the state shared by
    /// Envoy's workers (consulted only when a session is due for a refresh).
    /// A request answered from the caches of sessions and tokens asks
    /// `clock` only for its upper bound.
    pub(crate) fn decide_request(
        &self,
        req: &Request,
        providers: &[ProviderState],
        clock: &dyn Clock,
        entropy: &mut dyn Entropy,
        store: &dyn SharedStore,
    ) -> Step {
        let path = req.path_only();
        let cookies = cookies::parse(req.header_values("cookie"));
        if let Some(i) = self.config.provider_by_callback(path) {
            if self.access_missing(clock) {
                return self.access_unavailable(req);
            }
            return match providers.get(i) {
                Some(state) => {
                    self.callback(i, req, &cookies, state, clock.now(), entropy, lang(req))
                }
                None => self.unavailable(lang(req)),
            };
        }
        if path == self.config.post_logout_redirect_uri.path() {
            return self.signed_out(req, &cookies, clock.now(), lang(req));
        }
        if path == self.config.tokens.jwks_path {
            if let Some(key) = &self.config.tokens.resource_key {
                let response = Response::new(200)
                    .with_header("cache-control", "public, max-age=300")
                    .with_json(&keys_document(&key.public_jwk));
                return Step::respond(response, Outcome::KeysServed);
            }
        }
        if let Some(endpoint) = self.endpoint(path) {
            return self.on_endpoint(
                endpoint,
                req,
                &cookies,
                providers,
                clock,
                entropy,
                lang(req),
            );
        }

        let (protection, routes) = match self.resolve(req) {
            Ok(resolved) => resolved,
            Err(detail) => return self.path_refused(detail, lang(req)),
        };
        if protection != Protection::Public && self.access_missing(clock) {
            return self.access_unavailable(req);
        }
        let authorization = req.header("authorization");
        let mut upstream = Upstream::stripping(&self.config, &req.headers);
        // Several Authorization headers, as sent or as Envoy joined them:
        // which credential the application would read cannot be told.
        let several = req.header_values("authorization").nth(1).is_some()
            || authorization.is_some_and(has_joined_bearer);
        if protection != Protection::Public && several {
            return self.several_authorization_headers();
        }
        let bearer = match protection {
            Protection::Bearer => true,
            Protection::SessionOrBearer => authorization.is_some_and(is_bearer_scheme),
            _ => false,
        };
        if bearer {
            return self.bearer_request(upstream, authorization, routes, providers, clock);
        }
        if protection == Protection::Session {
            // A client's bearer token never travels upstream unchecked on a
            // route that takes sessions only.
            if let Some(name) = req
                .headers
                .iter()
                .find(|(n, v)| n.eq_ignore_ascii_case("authorization") && is_bearer_scheme(v))
                .map(|(n, _)| *n)
            {
                if !upstream.remove.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                    upstream.remove.push(name.to_string());
                }
            }
        }
        if protection == Protection::Public {
            let action = if upstream.is_unchanged() {
                Action::Continue
            } else {
                Action::ContinueWith(upstream)
            };
            return Step {
                action,
                outcome: Outcome::Public,
            };
        }

        // The hot path: a session this VM opened before, admitted here, and
        // still valid at the clock's upper bound (no reading of the clock).
        let (key, known) = self.known_session(&cookies, routes, clock.upper_bound());
        if let Some(identity) = known {
            return Step {
                action: Action::ContinueWith(upstream.with(identity)),
                outcome: Outcome::Passed,
            };
        }
        let now = clock.now();
        let lang = lang(req);
        match self.session_cookie().read(&cookies, now) {
            Some(session) => match self.check_rules(routes, session.provider, &session.claims) {
                Ok(()) if self.refresh_due(&session, now) => {
                    match providers.get(session.provider) {
                        Some(provider) => self.begin_refresh(
                            req, upstream, session, routes, provider, now, store, lang,
                        ),
                        None => self.unavailable(lang),
                    }
                }
                Ok(()) => {
                    let identity = self.remember(key, &session, now);
                    Step {
                        action: Action::ContinueWith(upstream.with(identity)),
                        outcome: Outcome::Passed,
                    }
                }
                // Signed in with a provider the route does not admit: a
                // page navigation is offered the providers it admits.
                Err(Denial::ProviderNotAllowed) if is_navigation(req) => {
                    let response = Response::redirect(&self.sign_in_url(return_path(req)));
                    Step::respond(
                        response,
                        Outcome::Denied {
                            who: Who::of(session.provider, &session.claims),
                            reason: Denial::ProviderNotAllowed.describe(),
                            code: Denial::ProviderNotAllowed.code(),
                            sign_in: false,
                        },
                    )
                }
                Err(Denial::AcrTooLow) => {
                    self.step_up(req, &session, routes, providers, now, entropy, lang)
                }
                Err(denial) => self.denied(&session, &denial, lang),
            },
            None => self.unauthenticated(req, &cookies, providers, routes, now, entropy, lang),
        }
    }

    /// The protection a request is held to, and the routes whose rules
    /// apply: for each reading of its path (as written, and as servers may
    /// normalise it), its route (first match), a `skip_auth_routes` entry
    /// (public), or none (a session and the filter's rules); the strictest
    /// of them all. `Err` for a path that cannot be read safely, or whose
    /// readings need both a session and a bearer token.
    pub(crate) fn resolve(&self, req: &Request) -> Result<(Protection, RouteSet), String> {
        if req.path.contains('#') {
            return Err("the path holds a fragment (#)".into());
        }
        let path = req.path_only();
        let others = paths::other_readings(path).map_err(|e| e.describe().to_string())?;
        let mut protection = Protection::Public;
        let mut routes = RouteSet::default();
        for reading in std::iter::once(path).chain(others.iter().map(String::as_str)) {
            let route = self
                .config
                .routes
                .iter()
                .position(|r| r.matches(req.method, reading));
            let this = match route {
                Some(i) => self.config.routes[i].protection,
                None if self
                    .config
                    .skip_auth_routes
                    .iter()
                    .any(|r| r.matches(req.method, reading)) =>
                {
                    Protection::Public
                }
                None => Protection::Session,
            };
            if this != Protection::Public {
                routes.add(route);
            }
            protection = protection.strictest(this).ok_or_else(|| {
                "the path needs a session as written and a bearer token once normalised, or the \
                 other way round"
                    .to_string()
            })?;
        }
        Ok((protection, routes))
    }

    /// The 400 answer to a path that cannot be read safely.
    #[cfg_attr(sesame_size, optimize(size))]
    fn path_refused(&self, detail: String, lang: Lang) -> Step {
        let response = pages::page(400, lang, &pages::BAD_PATH, None, None);
        Step::respond(response, Outcome::PathRefused { detail })
    }

    /// No valid session: a page navigation goes to the provider (or to the
    /// sign-in page), anything else gets 401.
    #[allow(clippy::too_many_arguments)]
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn unauthenticated(
        &self,
        req: &Request,
        cookies: &[(&str, &str)],
        providers: &[ProviderState],
        routes: RouteSet,
        now: u64,
        entropy: &mut dyn Entropy,
        lang: Lang,
    ) -> Step {
        // One provider to sign in with (the only one, or the only one the
        // route admits): straight to it, unless the sign-in page is asked for.
        let admitted = self.admitted_providers(routes);
        let only = (admitted.count_ones() == 1).then(|| admitted.trailing_zeros() as usize);
        let at = only.and_then(|i| Some((i, providers.get(i)?)));
        self.unauthenticated_at(req, cookies, at, now, entropy, lang)
    }

    /// No valid session: a page navigation goes to provider `at` (or to
    /// the sign-in page, without one or with `skip_provider_button` false),
    /// anything else gets 401.
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn unauthenticated_at(
        &self,
        req: &Request,
        cookies: &[(&str, &str)],
        at: Option<(usize, &ProviderState)>,
        now: u64,
        entropy: &mut dyn Entropy,
        lang: Lang,
    ) -> Step {
        let jar = self.session_cookie();
        let stale: Vec<(String, String)> = if cookies.iter().any(|(n, _)| jar.is_ours(n)) {
            jar.clear(cookies, &self.cookie_attrs("/"))
                .into_iter()
                .map(|c| ("set-cookie".to_string(), c))
                .collect()
        } else {
            Vec::new()
        };
        if !is_navigation(req) {
            let response = Response::new(401).with_headers(stale).with_body(
                "application/json",
                r#"{"error":"unauthenticated","message":"sign-in required"}"#,
            );
            return Step::respond(response, Outcome::Unauthenticated);
        }
        let rd = return_path(req);
        let mut step = match at.filter(|_| self.config.skip_provider_button) {
            Some((i, provider)) => {
                let hints = SignInHints {
                    prompt: self.config.silent_sign_in.then(|| "none".to_string()),
                    silent: self.config.silent_sign_in,
                    ..SignInHints::default()
                };
                self.start_login(i, rd, &hints, provider, now, entropy, lang)
            }
            None => {
                let target = self.sign_in_url(rd);
                Step::respond(Response::redirect(&target), Outcome::Unauthenticated)
            }
        };
        if let Action::Respond(r) = &mut step.action {
            r.headers.extend(stale);
        }
        step
    }

    /// `<proxy_prefix>/sign_in?rd=…`, back to `rd` when it is a local path
    /// (to `/` otherwise).
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn sign_in_url(&self, rd: &str) -> String {
        format!(
            "{}/sign_in?{}",
            self.config.proxy_prefix,
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("rd", safe_return_target(rd))
                .finish()
        )
    }

    /// The providers that may sign someone in for `rd`: those every route
    /// its path falls on admits (all, for a path that cannot be read).
    fn admitted_for(&self, rd: &str) -> u64 {
        let target = Request {
            method: "GET",
            path: safe_return_target(rd),
            headers: Vec::new(),
        };
        match self.resolve(&target) {
            Ok((_, routes)) => self.admitted_providers(routes),
            Err(_) => self.admitted_providers(RouteSet::FILTER),
        }
    }

    /// The sign-in page with several providers: a button for each one that
    /// may sign someone in for `rd`, each a link to
    /// `<proxy_prefix>/sign_in?provider=<id>` with the rest of `query`
    /// (`rd`, hints); a provider that cannot be reached says so.
    #[cfg_attr(sesame_size, optimize(size))]
    fn chooser(&self, query: &str, rd: &str, states: &[ProviderState], lang: Lang) -> Step {
        let admitted = self.admitted_for(rd);
        let mut rest = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if k != "provider" {
                rest.append_pair(&k, &v);
            }
        }
        let rest = rest.finish();
        let choices: Vec<pages::Choice> = self
            .config
            .providers
            .iter()
            .enumerate()
            .filter(|(i, _)| holds_provider(admitted, *i))
            .map(|(i, p): (usize, &ProviderConfig)| pages::Choice {
                label: &p.label,
                href: format!(
                    "{}/sign_in?provider={}{}{rest}",
                    self.config.proxy_prefix,
                    p.id,
                    if rest.is_empty() { "" } else { "&" }
                ),
                proconnect: p.kind == ProviderKind::ProConnect,
                available: states.get(i).is_some_and(ProviderState::ready),
            })
            .collect();
        Step::respond(pages::chooser(lang, &choices), Outcome::SignInPage)
    }

    /// `?provider=` names no configured provider: 400.
    #[cfg_attr(sesame_size, optimize(size))]
    fn unknown_provider(&self, id: &str, lang: Lang) -> Step {
        let shown: String = id
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(32)
            .collect();
        let response = pages::page(
            400,
            lang,
            &pages::LOGIN_FAILED,
            Some("unknown_provider"),
            Some((&self.sign_in_url("/"), pages::TRY_AGAIN)),
        );
        Step::respond(
            response,
            Outcome::LoginFailed {
                reason: "unknown_provider",
                detail: format!("no provider is named {shown:?}"),
            },
        )
    }

    /// The 503 page while the provider cannot be reached.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn unavailable(&self, lang: Lang) -> Step {
        let response =
            pages::page(503, lang, &pages::UNAVAILABLE, None, None).with_header("retry-after", "5");
        Step::respond(response, Outcome::ProviderUnavailable)
    }

    /// 503 while no access document is in force: nobody can be admitted
    /// yet (a page for a navigation, JSON otherwise).
    #[cfg_attr(sesame_size, optimize(size))]
    fn access_unavailable(&self, req: &Request) -> Step {
        let response = if is_navigation(req) {
            pages::page(503, lang(req), &pages::UNAVAILABLE, None, None)
        } else {
            Response::new(503).with_body(
                "application/json",
                r#"{"error":"temporarily_unavailable","error_description":"the access rules are not loaded yet"}"#,
            )
        };
        Step::respond(
            response.with_header("retry-after", "5"),
            Outcome::AccessUnavailable,
        )
    }

    /// The 403 page for a signed-in person the access rules do not admit.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn denied(&self, session: &Session, denial: &Denial, lang: Lang) -> Step {
        let response = self.denied_page(session.who(), lang);
        Step::respond(
            response,
            Outcome::Denied {
                who: Who::of(session.provider, &session.claims),
                reason: denial.describe(),
                code: denial.code(),
                sign_in: false,
            },
        )
    }

    /// The 403 page that says who was refused, with a button to sign out
    /// and sign in with another account.
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn denied_page(&self, who: &str, lang: Lang) -> Response {
        // Sign out, then sign in again with `prompt=login`: the provider asks
        // who is signing in rather than signing the same account straight
        // back in (a person refused at the callback has no session here,
        // so no logout at the provider happens on the way).
        let prefix = &self.config.proxy_prefix;
        let sign_out = format!("{prefix}/sign_out?rd={prefix}/sign_in%3Fprompt%3Dlogin");
        pages::page(
            403,
            lang,
            &pages::DENIED,
            Some(who),
            Some((&sign_out, pages::SIGN_OUT_AND_SWITCH)),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn on_endpoint(
        &self,
        endpoint: &str,
        req: &Request,
        cookies: &[(&str, &str)],
        providers: &[ProviderState],
        clock: &dyn Clock,
        entropy: &mut dyn Entropy,
        lang: Lang,
    ) -> Step {
        if matches!(endpoint, "/auth" | "/userinfo" | "/token") && self.access_missing(clock) {
            return self.access_unavailable(req);
        }
        match endpoint {
            "/token" if self.config.personal_tokens.is_some() => {
                self.personal_token_endpoint(req, cookies, providers, clock.now(), entropy, lang)
            }
            "/sign_in" | "/start" => {
                let rd = query_param(req.query(), "rd").unwrap_or_else(|| "/".into());
                let chosen = match query_param(req.query(), "provider") {
                    Some(id) => match self.config.provider_by_id(&id) {
                        Some(i) => Some(i),
                        None => return self.unknown_provider(&id, lang),
                    },
                    None if self.config.providers.len() == 1 => Some(0),
                    None => None,
                };
                let proconnect =
                    chosen.is_some_and(|i| self.provider(i).kind == ProviderKind::ProConnect);
                let hints = match SignInHints::from_query(req.query(), proconnect) {
                    Ok(h) => h,
                    Err(message) => {
                        let response =
                            pages::page(400, lang, &pages::LOGIN_FAILED, Some(&message), None);
                        return Step::respond(
                            response,
                            Outcome::LoginFailed {
                                reason: "invalid_sign_in_parameter",
                                detail: message,
                            },
                        );
                    }
                };
                let Some(i) = chosen else {
                    return self.chooser(req.query(), &rd, providers, lang);
                };
                if endpoint == "/sign_in"
                    && !self.config.skip_provider_button
                    && self.config.providers.len() == 1
                {
                    let start = format!("{}/start?{}", self.config.proxy_prefix, req.query());
                    let response = pages::sign_in(lang, &start, proconnect);
                    return Step::respond(response, Outcome::SignInPage);
                }
                match providers.get(i) {
                    Some(state) => {
                        self.start_login(i, &rd, &hints, state, clock.now(), entropy, lang)
                    }
                    None => self.unavailable(lang),
                }
            }
            "/sign_out" => self.sign_out(req, cookies, providers, clock.now(), entropy),
            "/failed" => self.refusal_page(req, cookies, lang),
            "/auth" => {
                let (key, known) =
                    self.known_session(cookies, RouteSet::FILTER, clock.upper_bound());
                if let Some(identity) = known {
                    let response = Response::new(202).with_headers(self.auth_headers(&identity));
                    return Step::respond(response, Outcome::Endpoint { ok: true });
                }
                let now = clock.now();
                let session = self.session_cookie().read(cookies, now);
                match session {
                    Some(s) => match self.check_rules(RouteSet::FILTER, s.provider, &s.claims) {
                        Ok(()) => {
                            let identity = self.remember(key, &s, now);
                            let response =
                                Response::new(202).with_headers(self.auth_headers(&identity));
                            Step::respond(response, Outcome::Endpoint { ok: true })
                        }
                        Err(d) => Step::respond(
                            Response::new(403),
                            Outcome::Denied {
                                who: Who::of(s.provider, &s.claims),
                                reason: d.describe(),
                                code: d.code(),
                                sign_in: false,
                            },
                        ),
                    },
                    None => Step::respond(Response::new(401), Outcome::Endpoint { ok: false }),
                }
            }
            "/userinfo" => match self.session_cookie().read(cookies, clock.now()) {
                Some(s) => {
                    let response = Response::new(200).with_json(&userinfo_json(&s));
                    Step::respond(response, Outcome::Endpoint { ok: true })
                }
                None => Step::respond(
                    Response::new(401)
                        .with_body("application/json", r#"{"error":"unauthenticated"}"#),
                    Outcome::Endpoint { ok: false },
                ),
            },
            _ => Step::respond(
                pages::page(404, lang, &pages::NOT_FOUND, None, None),
                Outcome::NotFound,
            ),
        }
    }
}

impl Filter {
    /// The headers `/oauth2/auth` answers with: the identity headers,
    /// without the tokens unless `auth_endpoint_tokens` asks for them (any
    /// script of the application's pages can fetch `/oauth2/auth`, cookie
    /// included, and read its answer).
    fn auth_headers(&self, identity: &Identity) -> Vec<(String, String)> {
        identity
            .iter()
            .filter(|(name, _)| {
                self.config.auth_endpoint_tokens
                    || !(name.eq_ignore_ascii_case(ID_TOKEN_HEADER)
                        || name.eq_ignore_ascii_case(ACCESS_TOKEN_HEADER)
                        || name == "authorization")
            })
            .cloned()
            .collect()
    }
}

/// Parameters a sign-in link may pass on to the provider
/// (`/oauth2/sign_in?idp_hint=...`). Nothing else is ever forwarded: ProConnect
/// refuses unknown parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignInHints {
    pub idp_hint: Option<String>,
    pub login_hint: Option<String>,
    pub siret_hint: Option<String>,
    pub prompt: Option<String>,
    /// A silent attempt (`silent_sign_in`): `prompt=none`, and an
    /// interactive sign-in at once when the provider needs the person.
    pub silent: bool,
    /// A step-up: the `acr` values a route needs (space separated), asked
    /// for in place of the provider's.
    pub acr: Option<String>,
}

impl SignInHints {
    /// Reads and checks the hints of a sign-in link. ProConnect accepts fewer
    /// `prompt` values than OpenID Connect defines (no `select_account`) and
    /// refuses the whole request for one it does not know.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn from_query(query: &str, proconnect: bool) -> Result<SignInHints, String> {
        let mut hints = SignInHints::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let value = value.trim().to_string();
            let slot = match key.as_ref() {
                "idp_hint" => {
                    if value.is_empty()
                        || value.len() > 128
                        || !value
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
                    {
                        return Err("idp_hint must be an identity provider identifier".into());
                    }
                    &mut hints.idp_hint
                }
                "login_hint" => {
                    let ok = value.len() <= 254
                        && value
                            .split_once('@')
                            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
                        && !value.chars().any(|c| c.is_control() || c.is_whitespace());
                    if !ok {
                        return Err("login_hint must be an email address".into());
                    }
                    &mut hints.login_hint
                }
                "siret_hint" => {
                    if value.len() != 14 || !value.bytes().all(|b| b.is_ascii_digit()) {
                        return Err("siret_hint must be a SIRET: 14 digits".into());
                    }
                    &mut hints.siret_hint
                }
                "prompt" => {
                    let allowed: &[&str] = if proconnect {
                        &["login", "consent", "none"]
                    } else {
                        &["login", "consent", "none", "select_account"]
                    };
                    let ok = !value.is_empty() && value.split(' ').all(|p| allowed.contains(&p));
                    if !ok {
                        return Err(format!("prompt must be {}", or_list(allowed)));
                    }
                    &mut hints.prompt
                }
                _ => continue,
            };
            if slot.is_some() {
                return Err(format!("{key} is repeated"));
            }
            *slot = Some(value);
        }
        Ok(hints)
    }

    /// The hints as authorization request parameters.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("idp_hint", &self.idp_hint),
            ("login_hint", &self.login_hint),
            ("siret_hint", &self.siret_hint),
            ("prompt", &self.prompt),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    }
}

/// The JSON of `/oauth2/userinfo`, with oauth2-proxy's field names.
#[cfg_attr(sesame_size, optimize(size))]
fn userinfo_json(s: &Session) -> Value {
    let mut out = json!({ "user": s.sub() });
    if let Some(e) = s.email() {
        out["email"] = json!(e);
    }
    if let Some(p) = s.claim_str("preferred_username") {
        out["preferredUsername"] = json!(p);
    }
    let name = s.claim_str("name").map(str::to_string).or_else(|| {
        let parts: Vec<&str> = ["given_name", "usual_name", "family_name"]
            .iter()
            .filter_map(|c| s.claim_str(c))
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    });
    if let Some(n) = name {
        out["name"] = json!(n);
    }
    out
}

/// First value of a query parameter, percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// "a, b or c".
fn or_list(words: &[&str]) -> String {
    match words.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}
