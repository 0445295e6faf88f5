//! Credentials for scripts: personal tokens, which a signed-in person gets
//! at `<proxy_prefix>/token` and which open bearer routes as that person,
//! and API keys, listed by their SHA-256 in the configuration or the access
//! document, which open the bearer routes whose scopes they carry.
//!
//! A personal token is sealed by Sésame (no store): the person's provider
//! and identity claims, the scopes and the expiry, under a key of its own
//! (from `personal_tokens.secret`, or else the cookie secret). The current
//! rules and revocations apply at every use.

use serde_json::{Map, Value};

use crate::core::access::document::{format_time, ApiKey, OWN_TOKEN_PREFIX};
use crate::core::access::routes::RouteSet;
use crate::core::config::{API_KEY_HEADER, SCOPES_HEADER};
use crate::core::flow::headers::Upstream;
use crate::core::flow::who::Who;
use crate::core::flow::{Action, Filter, Outcome, Step};
use crate::core::http::{Request, Response};
use crate::core::oidc::provider::ProviderState;
use crate::core::pages::{self, Lang};
use crate::core::session::{Purpose, Sealer};
use crate::core::Entropy;

/// What every personal token starts with.
pub const PERSONAL_TOKEN_PREFIX: &str = "sesame_pt_";
/// The authenticated name of a sealed personal token.
const SEALED_NAME: &str = "sesame personal token";

impl Filter {
    #[cfg_attr(sesame_size, optimize(size))]
    fn token_keys(&self) -> &Sealer {
        self.token_sealer.as_ref().unwrap_or(&self.sealer)
    }

    /// Opens a personal token: its provider, its claims (with `scope`, the
    /// scopes it grants) and its expiry. `Err`: the reason to refuse it.
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn open_personal_token(
        &self,
        token: &str,
        now: u64,
    ) -> Result<(usize, Map<String, Value>, u64), &'static str> {
        // Tokens stop working as soon as the configuration takes them away.
        let settings = self
            .config
            .personal_tokens
            .as_ref()
            .ok_or("invalid_token")?;
        let sealed = token
            .strip_prefix(PERSONAL_TOKEN_PREFIX)
            .ok_or("invalid_token")?;
        let (provider, value): (usize, Value) = self
            .token_keys()
            .open_from(Purpose::Token, SEALED_NAME, sealed)
            .ok_or("invalid_token")?;
        let exp = value
            .get("e")
            .and_then(Value::as_u64)
            .ok_or("invalid_token")?;
        let mut claims = value
            .get("c")
            .and_then(Value::as_object)
            .cloned()
            .ok_or("invalid_token")?;
        // Never more than the configuration grants now: a token made before
        // `lifetime` was shortened ends when a new one would, and scopes
        // taken out of `scopes` since are no longer granted.
        if now >= exp || exp > now.saturating_add(settings.lifetime) {
            return Err("expired_token");
        }
        let scopes: Vec<&str> = value
            .get("s")
            .and_then(Value::as_str)
            .unwrap_or("")
            .split(' ')
            .filter(|s| settings.scopes.iter().any(|granted| granted == s))
            .collect();
        claims.insert("scope".into(), Value::String(scopes.join(" ")));
        Ok((provider, claims, exp))
    }

    /// `<proxy_prefix>/token`: a page with a button for a signed-in person
    /// (`GET`), a new personal token (same-origin `POST`).
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn personal_token_endpoint(
        &self,
        req: &Request,
        cookies: &[(&str, &str)],
        providers: &[ProviderState],
        now: u64,
        entropy: &mut dyn Entropy,
        lang: Lang,
    ) -> Step {
        let Some(settings) = &self.config.personal_tokens else {
            return Step::respond(Response::new(404), Outcome::NotFound);
        };
        let post = req.method.eq_ignore_ascii_case("POST");
        if !post && !req.method.eq_ignore_ascii_case("GET") {
            let response = Response::new(405).with_header("allow", "GET, POST");
            return Step::respond(response, Outcome::NotFound);
        }
        let Some(session) = self.session_cookie().read(cookies, now) else {
            return self.unauthenticated(
                req,
                cookies,
                providers,
                RouteSet::FILTER,
                now,
                entropy,
                lang,
            );
        };
        let who = || Who::of(session.provider, &session.claims);
        let json = req
            .header_values("accept")
            .any(|a| a.to_ascii_lowercase().contains("application/json"));
        let refuse = |status: u16, reason: &'static str| {
            let response = if json {
                let mut body = Map::new();
                body.insert("error".into(), reason.into());
                Response::new(status).with_json(&Value::Object(body))
            } else {
                pages::page(status, lang, &pages::CROSS_SITE, None, None)
            };
            Step::respond(
                response,
                Outcome::TokenRefused {
                    who: Some(who()),
                    reason,
                },
            )
        };
        if let Err(denial) = self.check_rules(RouteSet::FILTER, session.provider, &session.claims) {
            return if post {
                refuse(403, "access_denied")
            } else {
                self.denied(&session, &denial, lang)
            };
        }
        if !post {
            let action = format!("{}/token", self.config.proxy_prefix);
            let response =
                pages::token_form(lang, &action).with_header("cache-control", "no-store");
            return Step::respond(response, Outcome::PageShown);
        }
        if !self.same_origin(req) {
            return refuse(403, "cross_site_request");
        }
        let expires_at = now.saturating_add(settings.lifetime);
        let scopes = settings.scopes.join(" ");
        let mut payload = Map::new();
        payload.insert("c".into(), Value::Object(session.claims.clone()));
        payload.insert("e".into(), expires_at.into());
        payload.insert("s".into(), scopes.into());
        let payload = Value::Object(payload);
        let sealed = self.token_keys().seal_for(
            session.provider,
            Purpose::Token,
            SEALED_NAME,
            &payload,
            entropy,
        );
        let token = format!("{PERSONAL_TOKEN_PREFIX}{sealed}");
        let response = if json {
            let mut body = Map::new();
            body.insert("token".into(), token.into());
            body.insert("token_type".into(), "Bearer".into());
            body.insert("expires_at".into(), expires_at.into());
            let scopes = settings.scopes.iter().map(|s| Value::from(s.as_str()));
            body.insert("scopes".into(), Value::Array(scopes.collect()));
            Response::new(200)
                .with_header("cache-control", "no-store")
                .with_json(&Value::Object(body))
        } else {
            pages::token_shown(lang, &token, &format_time(expires_at))
        };
        Step::respond(response, Outcome::TokenIssued { who: who() })
    }

    /// Whether a request comes from a page of this site: `Origin` names
    /// the request's own origin (https, or http with insecure cookies),
    /// and `Sec-Fetch-Site`, when the browser sends it, says `same-origin`.
    #[cfg_attr(sesame_size, optimize(size))]
    fn same_origin(&self, req: &Request) -> bool {
        if req
            .header("sec-fetch-site")
            .is_some_and(|site| !site.eq_ignore_ascii_case("same-origin"))
        {
            return false;
        }
        let (Some(origin), Some(authority)) = (
            req.header("origin"),
            req.header(":authority").or_else(|| req.header("host")),
        ) else {
            return false;
        };
        let host = origin.strip_prefix("https://").or_else(|| {
            origin
                .strip_prefix("http://")
                .filter(|_| !self.config.cookie_secure)
        });
        host.is_some_and(|h| !authority.is_empty() && h.eq_ignore_ascii_case(authority))
    }

    /// The API key whose SHA-256 is `digest`: the access document's when
    /// there is one, the configuration's otherwise.
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn api_key(&self, digest: &[u8; 32]) -> Option<ApiKey> {
        if self.config.access_source.is_some() {
            let access = self.access.borrow();
            return access.document.as_ref()?.api_keys.find(digest).cloned();
        }
        self.config.api_keys.find(digest).cloned()
    }

    /// A request with an API key: it opens the route when the route
    /// requires scopes and the key carries every one of them.
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn api_key_request(
        &self,
        mut upstream: Upstream,
        key: ApiKey,
        routes: RouteSet,
        now: u64,
    ) -> Step {
        let refused = |step: Step, reason: &'static str| Step {
            outcome: Outcome::KeyRefused {
                key: Some(key.id.clone()),
                reason,
            },
            ..step
        };
        if key.expires.is_some_and(|at| at <= now) {
            let step = self.refuse_token(
                401,
                "invalid_token",
                "the API key has expired",
                "expired_key",
            );
            return refused(step, "expired_key");
        }
        let mut required: Vec<&str> = Vec::new();
        for member in routes.members() {
            let scopes = match self.route(member) {
                Some(r) if !r.scopes.is_empty() => &r.scopes,
                _ if self.config.providers.len() == 1 => &self.provider(0).bearer.scopes,
                _ => continue,
            };
            for scope in scopes {
                if !required.contains(&scope.as_str()) {
                    required.push(scope);
                }
            }
        }
        let missing = required
            .iter()
            .find(|s| !key.scopes.contains(&s.to_string()));
        if required.is_empty() || missing.is_some() {
            let description = match missing {
                Some(scope) => format!("the API key lacks the scope {scope}"),
                None => "this route requires no scope: it takes no API key".into(),
            };
            let step = self
                .refuse_token(
                    403,
                    "insufficient_scope",
                    &description,
                    "insufficient_scope",
                )
                .with_scope(&required.join(" "));
            return refused(step, "insufficient_scope");
        }
        let user = format!("apikey:{}", key.id);
        let mut identity: Vec<(String, String)> = self
            .config
            .claim_headers
            .iter()
            .filter(|(_, claim)| claim == "sub")
            .map(|(header, _)| (header.to_ascii_lowercase(), user.clone()))
            .collect();
        identity.push((API_KEY_HEADER.to_ascii_lowercase(), key.id.clone()));
        identity.push((SCOPES_HEADER.to_ascii_lowercase(), key.scopes.join(" ")));
        strip_authorization(&mut upstream);
        Step {
            action: Action::ContinueWith(upstream.with(identity.into())),
            outcome: Outcome::BearerPassed,
        }
    }
}

/// The request goes upstream without its `Authorization` header: the
/// upstream has no use for a credential only Sésame reads.
#[cfg_attr(sesame_size, optimize(size))]
pub(crate) fn strip_authorization(upstream: &mut Upstream) {
    if !upstream
        .remove
        .iter()
        .any(|n| n.eq_ignore_ascii_case("authorization"))
    {
        upstream.remove.push("authorization".into());
    }
}

/// Whether a bearer token is one of Sésame's (never sent to a provider).
#[cfg_attr(sesame_size, optimize(size))]
pub(crate) fn is_own_token(token: &str) -> bool {
    token.starts_with(OWN_TOKEN_PREFIX)
}
