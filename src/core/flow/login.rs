//! Sign-in, callback and sign-out as decisions (Authorization Code flow with
//! PKCE, OpenID Connect Core §3.1; RP-initiated logout).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::core::access::policy::{merge_userinfo, Denial};
use crate::core::access::redirect::{safe_redirect, safe_return_target};
use crate::core::access::routes::RouteSet;
use crate::core::config::{ClientAuth, ProviderKind};
use crate::core::flow::request::{query_param, SignInHints};
use crate::core::flow::state::{
    LoginPending, LoginState, LogoutState, Pending, SignOutPending, Stage, TokenResponse,
};
use crate::core::flow::who::Who;
use crate::core::flow::{Action, Filter, Outcome, Step};
use crate::core::http::{ProviderCall, ProviderResponse, Request, Response};
use crate::core::oidc::keys::KeySet;
use crate::core::oidc::provider::ProviderState;
use crate::core::oidc::token::{self, Expectations, TokenError};
use crate::core::pages::{self, Lang, PageText};
use crate::core::session::cookies::{
    clear_cookie, set_cookie, LOGIN_COOKIE_INFIX, LOGOUT_COOKIE_SUFFIX, REFUSAL_COOKIE_SUFFIX,
};
use crate::core::session::{Purpose, Session, SessionCookie};
use crate::core::shared::SharedStore;
use crate::core::{b64url, constant_time_eq, random_token, Entropy};

/// How long a started sign-in (or sign-out) may take before its cookie expires.
pub const LOGIN_TTL: u64 = 600;
/// The errors of a `prompt=none` attempt that mean "the person is needed"
/// (OpenID Connect Core §3.1.2.6): a silent sign-in goes on interactively.
const SILENT_FALLBACK_ERRORS: &[&str] = &[
    "login_required",
    "interaction_required",
    "consent_required",
    "account_selection_required",
];
/// How long a refused sign-in's page keeps saying who was refused.
const REFUSAL_TTL: u64 = 300;
/// Longest callback query accepted.
const MAX_CALLBACK_QUERY: usize = 8192;
/// Claims that describe the token rather than the person: never taken from userinfo.
const PROTOCOL_CLAIMS: &[&str] = &[
    "iss",
    "aud",
    "exp",
    "iat",
    "nbf",
    "nonce",
    "azp",
    "jti",
    "sub",
    "at_hash",
    "c_hash",
    "sid",
    "acr",
    "amr",
    "auth_time",
];

/// ProConnect has no `name`: the display name is `given_name` + `usual_name`.
#[cfg_attr(sesame_size, optimize(size))]
pub(crate) fn display_name(claims: &mut Map<String, Value>) {
    if claims.contains_key("name") {
        return;
    }
    let parts: Vec<&str> = ["given_name", "usual_name"]
        .iter()
        .filter_map(|c| claims.get(*c).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .collect();
    if !parts.is_empty() {
        let name = parts.join(" ");
        claims.insert("name".into(), Value::String(name));
    }
}

impl SignOutPending {
    /// The sign-out's answer, now that its revocation is over (or was
    /// never needed: `None`).
    #[cfg_attr(sesame_size, optimize(size))]
    fn finish(self, revoked: Option<bool>) -> Step {
        Step::respond(
            self.response,
            Outcome::SignedOut {
                who: self.who,
                at_provider: self.at_provider,
                revoked,
            },
        )
    }
}

/// A sign-in between two calls to the provider.
pub(crate) struct LoginProgress {
    index: usize,
    login: LoginState,
    lang: Lang,
    previous: Vec<String>,
}

impl LoginProgress {
    /// Calls the provider, then goes on at `stage`.
    #[cfg_attr(sesame_size, optimize(size))]
    fn wait(self, call: ProviderCall, stage: Stage) -> Step {
        let pending = Pending::Login(LoginPending {
            provider: self.index,
            login: self.login,
            lang: self.lang,
            previous: self.previous,
            stage,
        });
        Step {
            action: Action::Call(call, Box::new(pending)),
            outcome: Outcome::Waiting,
        }
    }

    /// The sign-in failed.
    #[cfg_attr(sesame_size, optimize(size))]
    fn fail(self, filter: &Filter, status: u16, reason: &'static str, detail: String) -> Step {
        let state = Some((self.index, self.login.state.as_str()));
        filter.login_failed(status, reason, detail, state, &self.login.return_to)
    }
}

/// The identity claims of a plain OAuth 2.0 provider's userinfo answer:
/// each claim of `claims_map` read at its JSON pointer (numbers become their
/// decimal text). `sub` must be there (and be `expected_sub` when given). An
/// `email` counts as verified only when the map names `email_verified` too.
#[cfg_attr(sesame_size, optimize(size))]
pub(crate) fn mapped_claims(
    map: &[(String, String)],
    body: &[u8],
    expected_sub: &str,
) -> Result<Map<String, Value>, String> {
    let answer: Value =
        serde_json::from_slice(body).map_err(|_| "the userinfo answer is not JSON".to_string())?;
    let mut claims = Map::new();
    for (claim, pointer) in map {
        let value = match answer.pointer(pointer) {
            Some(Value::Number(n)) => Value::String(n.to_string()),
            Some(v @ (Value::String(_) | Value::Bool(_))) => v.clone(),
            Some(Value::Array(items)) => Value::Array(items.clone()),
            _ => continue,
        };
        claims.insert(claim.clone(), value);
    }
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    if sub.is_empty() {
        return Err("the userinfo answer has no value at the pointer of `sub`".into());
    }
    if !expected_sub.is_empty() && sub != expected_sub {
        return Err("the userinfo answer is about another person".into());
    }
    if claims.contains_key("email") && !claims.contains_key("email_verified") {
        claims.insert("email_verified".into(), Value::Bool(false));
    }
    Ok(claims)
}

impl Filter {
    /// Name of the cookie of one started sign-in: one per sign-in, so several
    /// tabs can sign in at once.
    #[cfg_attr(sesame_size, optimize(size))]
    fn login_cookie_name(&self, state: &str) -> String {
        let tag: String = state.chars().take(16).collect();
        format!("{}{LOGIN_COOKIE_INFIX}{tag}", self.config.cookie_name)
    }

    #[cfg_attr(sesame_size, optimize(size))]
    fn logout_cookie_name(&self) -> String {
        format!("{}{LOGOUT_COOKIE_SUFFIX}", self.config.cookie_name)
    }

    #[cfg_attr(sesame_size, optimize(size))]
    fn clear_login_cookie(&self, provider: usize, state: &str) -> (String, String) {
        let attrs = self.cookie_attrs(self.provider(provider).callback_path());
        (
            "set-cookie".into(),
            clear_cookie(&self.login_cookie_name(state), &attrs),
        )
    }

    /// Sends the browser to the authorization endpoint of provider `index`.
    #[allow(clippy::too_many_arguments)]
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn start_login(
        &self,
        index: usize,
        return_to: &str,
        hints: &SignInHints,
        provider: &ProviderState,
        now: u64,
        entropy: &mut dyn Entropy,
        lang: Lang,
    ) -> Step {
        let Some(metadata) = provider.metadata.as_ref().filter(|_| provider.ready()) else {
            return self.unavailable(lang);
        };
        let login = LoginState {
            state: random_token(entropy, 32),
            nonce: random_token(entropy, 32),
            code_verifier: random_token(entropy, 32),
            return_to: safe_return_target(return_to).to_string(),
            expires_at: now + LOGIN_TTL,
            silent: hints.silent,
            acr: hints.acr.clone(),
        };
        let challenge = b64url(&Sha256::digest(login.code_verifier.as_bytes()));
        let p = self.provider(index);
        let mut url = metadata.authorization_endpoint.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &p.client_id)
                .append_pair("redirect_uri", p.redirect_uri.as_str());
            if !p.scopes.is_empty() {
                query.append_pair("scope", &p.scopes.join(" "));
            }
            query.append_pair("state", &login.state);
            // A plain OAuth 2.0 provider has no ID token to carry a nonce.
            if !p.is_oauth2() {
                query.append_pair("nonce", &login.nonce);
            }
            query
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            match &hints.acr {
                // A step-up: the route's levels, as `acr_values` and as the
                // essential `acr` of the claims request (ProConnect reads the
                // latter), the rest of the provider's claims request kept.
                Some(acr) => {
                    query.append_pair("acr_values", acr);
                    let mut claims: Value = p
                        .claims_request
                        .as_deref()
                        .and_then(|c| serde_json::from_slice(c.as_bytes()).ok())
                        .unwrap_or_else(|| Value::Object(Map::new()));
                    let values: Vec<Value> = acr.split(' ').map(Value::from).collect();
                    let mut wanted = Map::new();
                    wanted.insert("essential".into(), Value::Bool(true));
                    wanted.insert("values".into(), Value::Array(values));
                    if let Some(object) = claims.as_object_mut() {
                        let id_token = object
                            .entry("id_token")
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let Some(id_token) = id_token.as_object_mut() {
                            id_token.insert("acr".into(), Value::Object(wanted));
                        }
                    }
                    query.append_pair("claims", &crate::core::json_text(&claims));
                }
                None => {
                    if !p.acr_values.is_empty() {
                        query.append_pair("acr_values", &p.acr_values.join(" "));
                    }
                    if let Some(claims) = &p.claims_request {
                        query.append_pair("claims", claims);
                    }
                }
            }
            for (k, v) in hints.pairs() {
                query.append_pair(k, v);
            }
        }
        let name = self.login_cookie_name(&login.state);
        let sealed = self
            .sealer
            .seal_for(index, Purpose::Login, &name, &login, entropy);
        let attrs = self.cookie_attrs(p.callback_path());
        let response = Response::redirect(url.as_str())
            .with_header("set-cookie", &set_cookie(&name, &sealed, LOGIN_TTL, &attrs));
        Step::respond(response, Outcome::LoginStarted)
    }

    /// Checks the ID token's `acr` against what the sign-in asked for: one of
    /// `acr_values`, and the essential `acr` of the `claims` request. The
    /// provider may answer with a lower level than asked; we may not accept it.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn check_acr(
        &self,
        index: usize,
        claims: &Map<String, Value>,
        step_up: Option<&str>,
    ) -> Result<(), String> {
        let p = self.provider(index);
        let acr = claims.get("acr").and_then(Value::as_str).unwrap_or("");
        let printable = || -> String {
            acr.chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect()
        };
        // A step-up asked for the route's levels in place of the provider's.
        if let Some(wanted) = step_up {
            if !wanted.split(' ').any(|a| a == acr) {
                return Err(format!(
                    "acr {:?} is not among {wanted} (step-up)",
                    printable()
                ));
            }
            return Ok(());
        }
        if !p.acr_values.is_empty() && !p.acr_values.iter().any(|a| a == acr) {
            return Err(format!(
                "acr {:?} is not among {}",
                printable(),
                p.acr_values.join(", ")
            ));
        }
        if let Some(accepted) = &p.essential_acr {
            if acr.is_empty() {
                return Err(
                    "no acr in the ID token, and the claims request marks it essential".into(),
                );
            }
            if !accepted.is_empty() && !accepted.iter().any(|a| a == acr) {
                return Err(format!(
                    "acr {:?} is not among the essential {}",
                    printable(),
                    accepted.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// A failed sign-in. The callback answers with a redirect to a clean
    /// address, `<proxy_prefix>/failed?reason=…&status=…&rd=…`, which shows
    /// the page ([`Filter::refusal_page`]): the address bar never keeps the
    /// callback's code and state, and a reload or a shared link does not
    /// replay the callback.
    #[cfg_attr(sesame_size, optimize(size))]
    fn login_failed(
        &self,
        status: u16,
        reason: &'static str,
        detail: String,
        login_state: Option<(usize, &str)>,
        return_to: &str,
    ) -> Step {
        let mut response = Response::redirect(&self.refusal_url(reason, status, return_to));
        if let Some((provider, state)) = login_state {
            response
                .headers
                .push(self.clear_login_cookie(provider, state));
        }
        Step::respond(response, Outcome::LoginFailed { reason, detail })
    }

    /// The clean address of a refused sign-in's page.
    #[cfg_attr(sesame_size, optimize(size))]
    fn refusal_url(&self, reason: &str, status: u16, return_to: &str) -> String {
        format!(
            "{}/failed?{}",
            self.config.proxy_prefix,
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("reason", reason)
                .append_pair("status", &status.to_string())
                .append_pair("rd", safe_return_target(return_to))
                .finish()
        )
    }

    #[cfg_attr(sesame_size, optimize(size))]
    fn refusal_cookie_name(&self) -> String {
        format!("{}{REFUSAL_COOKIE_SUFFIX}", self.config.cookie_name)
    }

    /// A signed-in person the access rules refuse at the callback: the
    /// 403 page at its clean address, with who was refused in a sealed
    /// five-minute cookie for that address (never in the address).
    #[cfg_attr(sesame_size, optimize(size))]
    fn refused_at_callback(
        &self,
        session: &Session,
        denial: &Denial,
        entropy: &mut dyn Entropy,
    ) -> Step {
        let name = self.refusal_cookie_name();
        let sealed = self
            .sealer
            .seal(Purpose::Refusal, &name, &session.who(), entropy);
        let path = format!("{}/failed", self.config.proxy_prefix);
        let cookie = set_cookie(&name, &sealed, REFUSAL_TTL, &self.cookie_attrs(&path));
        let response = Response::redirect(&self.refusal_url("denied", 403, "/"))
            .with_header("set-cookie", &cookie);
        Step::respond(
            response,
            Outcome::Denied {
                who: Who::of(session.provider, &session.claims),
                reason: denial.describe(),
                code: denial.code(),
                sign_in: true,
            },
        )
    }

    /// `<proxy_prefix>/failed`: the page of a refused sign-in, at a clean
    /// address. Its reason, status and return path come from the address
    /// (nothing there is secret: a crafted link shows an error page); who
    /// was refused comes from the sealed cookie the callback set.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn refusal_page(&self, req: &Request, cookies: &[(&str, &str)], lang: Lang) -> Step {
        let query = req.query();
        let reason = query_param(query, "reason").unwrap_or_default();
        let reason = if !reason.is_empty()
            && reason.len() <= 40
            && reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            reason
        } else {
            "login_failed".to_string()
        };
        let status = query_param(query, "status")
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| (400..=599).contains(s))
            .unwrap_or(400);
        let rd = query_param(query, "rd").unwrap_or_else(|| "/".into());
        let name = self.refusal_cookie_name();
        let who: Option<String> = (reason == "denied")
            .then(|| {
                cookies
                    .iter()
                    .find(|(n, _)| *n == name)
                    .and_then(|(_, v)| self.sealer.open(Purpose::Refusal, &name, v))
            })
            .flatten();
        let response = match who {
            Some(who) => self.denied_page(&who, lang),
            None => {
                let text: &PageText = match reason.as_str() {
                    "provider_error" => &pages::PROVIDER_ERROR,
                    "cancelled" => &pages::CANCELLED,
                    "acr_not_satisfied" => &pages::ACR_REFUSED,
                    _ => &pages::LOGIN_FAILED,
                };
                let retry = self.sign_in_url(&rd);
                // A step-up refused: the levels the page needs, when the
                // address names them (a crafted one only shows this page).
                let needed = query_param(query, "acr").filter(|a| {
                    reason == "acr_not_satisfied"
                        && a.len() <= 100
                        && a.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b" -_.:".contains(&b))
                });
                let detail = needed.map_or(reason.clone(), |a| format!("acr: {a}"));
                pages::page(
                    status,
                    lang,
                    text,
                    Some(&detail),
                    Some((&retry, pages::TRY_AGAIN)),
                )
            }
        };
        Step::respond(response, Outcome::PageShown)
    }

    /// The callback of provider `index` (`/oauth2/callback`): checks the
    /// answer from the provider and exchanges the code.
    #[allow(clippy::too_many_arguments)]
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn callback(
        &self,
        index: usize,
        req: &Request,
        cookies: &[(&str, &str)],
        provider: &ProviderState,
        now: u64,
        entropy: &mut dyn Entropy,
        lang: Lang,
    ) -> Step {
        let fail = |status, reason, detail: &str, state: Option<&str>, rd: &str| {
            let state = state.map(|s| (index, s));
            self.login_failed(status, reason, detail.to_string(), state, rd)
        };
        let query = req.query();
        if query.len() > MAX_CALLBACK_QUERY {
            return fail(
                400,
                "malformed_callback",
                &format!("query of {} bytes", query.len()),
                None,
                "/",
            );
        }
        let mut params: Vec<(String, String)> = Vec::new();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if matches!(k.as_ref(), "state" | "code" | "error" | "iss")
                && params.iter().any(|(n, _)| *n == k)
            {
                return fail(
                    400,
                    "malformed_callback",
                    &format!("parameter {k} repeated"),
                    None,
                    "/",
                );
            }
            params.push((k.into_owned(), v.into_owned()));
        }
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };

        let Some(state) = param("state").filter(|s| !s.is_empty()) else {
            return fail(400, "missing_state", "the callback has no state", None, "/");
        };
        if state.len() > 512
            || !state
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return fail(
                400,
                "invalid_state",
                "the state is not one of ours",
                None,
                "/",
            );
        }
        let name = self.login_cookie_name(state);
        let opened: Option<(usize, LoginState)> = cookies
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| self.sealer.open_from(Purpose::Login, &name, v));
        // A sign-in started at one provider is finished by that provider's
        // callback only: a code and state delivered to another provider's
        // callback (a mix-up, RFC 9700 §4.4) are refused before any token
        // request.
        if let Some((started, _)) = opened.as_ref().filter(|(i, _)| *i != index) {
            return fail(
                400,
                "provider_mismatch",
                &format!(
                    "the sign-in started at provider {:?} came back to the callback of {:?} (mix-up)",
                    self.provider(*started).id,
                    self.provider(index).id
                ),
                Some(state),
                "/",
            );
        }
        let login = opened.map(|(_, login)| login);
        let Some(login) = login else {
            let prefix = format!("{}{LOGIN_COOKIE_INFIX}", self.config.cookie_name);
            if cookies.iter().any(|(n, _)| n.starts_with(&prefix)) {
                return fail(
                    400,
                    "state_mismatch",
                    "the state matches no sign-in started from this browser",
                    Some(state),
                    "/",
                );
            }
            return fail(
                400,
                "missing_login_cookie",
                "no sign-in was started from this browser with this state (expired, or login CSRF)",
                Some(state),
                "/",
            );
        };
        let rd = login.return_to.as_str();
        if !constant_time_eq(login.state.as_bytes(), state.as_bytes()) {
            return fail(
                400,
                "state_mismatch",
                "the state differs from the one sent",
                Some(state),
                rd,
            );
        }
        if now >= login.expires_at {
            return fail(
                400,
                "login_expired",
                "the sign-in took too long",
                Some(state),
                rd,
            );
        }
        if let Some(error) = param("error") {
            let code: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            let description: String = param("error_description")
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            // A silent attempt the provider cannot answer without the
            // person: an interactive sign-in at once (never a page, and
            // never another silent attempt: no loop).
            if login.silent && SILENT_FALLBACK_ERRORS.contains(&code.as_str()) {
                let mut step = self.start_login(
                    index,
                    rd,
                    &SignInHints::default(),
                    provider,
                    now,
                    entropy,
                    lang,
                );
                if let Action::Respond(r) = &mut step.action {
                    r.headers.push(self.clear_login_cookie(index, state));
                }
                return step;
            }
            // `access_denied`: the person cancelled at the provider (or it
            // declined): say so, and offer to start again.
            let (status, reason) = if code == "access_denied" {
                (401, "cancelled")
            } else {
                (403, "provider_error")
            };
            return fail(
                status,
                reason,
                &format!("{code}: {description}"),
                Some(state),
                rd,
            );
        }
        let Some(metadata) = provider.metadata.as_ref() else {
            return self.unavailable(lang);
        };
        if let Some(iss) = param("iss") {
            if iss != metadata.issuer {
                return fail(
                    400,
                    "issuer_mismatch",
                    "the callback names another issuer (mix-up)",
                    Some(state),
                    rd,
                );
            }
        }
        let Some(code) = param("code").filter(|c| !c.is_empty() && c.len() <= 2048) else {
            return fail(
                400,
                "missing_code",
                "the callback has no code",
                Some(state),
                rd,
            );
        };

        let call = self.token_call(
            index,
            &metadata.token_endpoint,
            vec![
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", self.provider(index).redirect_uri.as_str()),
                ("code_verifier", &login.code_verifier),
            ],
        );
        let jar = self.session_cookie();
        let previous = cookies
            .iter()
            .filter(|(n, _)| jar.is_ours(n))
            .map(|(n, _)| n.to_string())
            .collect();
        let pending = Pending::Login(LoginPending {
            provider: index,
            login,
            lang,
            previous,
            stage: Stage::Token,
        });
        Step {
            action: Action::Call(call, Box::new(pending)),
            outcome: Outcome::Waiting,
        }
    }

    /// A call to the token endpoint with `form`, authenticated as configured.
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn token_call<'a>(
        &'a self,
        index: usize,
        endpoint: &url::Url,
        mut form: Vec<(&'a str, &'a str)>,
    ) -> ProviderCall {
        let p = self.provider(index);
        match p.token_endpoint_auth_method {
            ClientAuth::ClientSecretPost => {
                form.push(("client_id", &p.client_id));
                form.push(("client_secret", &p.client_secret.0));
                ProviderCall::post_form(endpoint, &form)
            }
            ClientAuth::ClientSecretBasic => {
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let credentials = format!("{}:{}", enc(&p.client_id), enc(&p.client_secret.0));
                use base64::Engine;
                let basic = base64::engine::general_purpose::STANDARD.encode(credentials);
                ProviderCall::post_form(endpoint, &form)
                    .with_header("authorization", &format!("Basic {basic}"))
            }
        }
    }

    /// The call reading userinfo with `access_token`, when the configuration
    /// asks for it (`fetch_userinfo`) and the provider has the endpoint.
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn userinfo_call(
        &self,
        index: usize,
        provider: &ProviderState,
        access_token: Option<&str>,
    ) -> Option<ProviderCall> {
        // A plain OAuth 2.0 provider's userinfo is the identity: always read.
        let p = self.provider(index);
        if !p.fetch_userinfo && !p.is_oauth2() {
            return None;
        }
        let endpoint = provider.metadata.as_ref()?.userinfo_endpoint.as_ref()?;
        let access_token = access_token?;
        // A plain OAuth 2.0 API answers JSON (every call carries a
        // User-Agent, which GitHub's API requires: see the adapter).
        let accept = if p.is_oauth2() {
            "application/json"
        } else {
            "application/jwt, application/json"
        };
        let call = ProviderCall::get(endpoint, accept);
        Some(call.with_header("authorization", &format!("Bearer {access_token}")))
    }

    /// The identity claims of a userinfo answer for `sub`: a signed JWT, or
    /// JSON where plain JSON is allowed. Protocol claims are left out.
    /// `Err((status, reason, detail))` for the page, the counter and the log.
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn userinfo_claims(
        &self,
        index: usize,
        resp: &ProviderResponse,
        keys: &KeySet,
        sub: &str,
        now: u64,
    ) -> Result<Map<String, Value>, (u16, &'static str, String)> {
        if resp.status != 200 {
            return Err((
                502,
                "userinfo_error",
                format!("userinfo answered HTTP {}", resp.status),
            ));
        }
        let p = self.provider(index);
        if p.is_oauth2() {
            return mapped_claims(&p.claims_map, &resp.body, sub)
                .map_err(|detail| (502, "userinfo_invalid", detail));
        }
        let signed_only = p.kind == ProviderKind::ProConnect;
        let result = match resp.media_type().as_str() {
            "application/jwt" => {
                let text = String::from_utf8_lossy(&resp.body);
                let expect = self.expectations(index, now);
                token::validate_userinfo_jwt(text.trim(), keys, &expect, sub)
            }
            "application/json" if !signed_only => token::validate_userinfo_json(&resp.body, sub),
            other => {
                let other: String = other.chars().take(64).collect();
                return Err((502, "userinfo_invalid", format!("content type {other:?}")));
            }
        };
        let mut info = result.map_err(|e| (401, "userinfo_invalid", e.to_string()))?;
        info.retain(|k, _| !PROTOCOL_CLAIMS.contains(&k.as_str()));
        Ok(info)
    }

    /// [`Filter::userinfo_claims`] about the person of `claims` (their `sub`),
    /// checked with provider `index`'s keys.
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn userinfo_about(
        &self,
        index: usize,
        resp: &ProviderResponse,
        provider: &ProviderState,
        claims: &Map<String, Value>,
        now: u64,
    ) -> Result<Map<String, Value>, (u16, &'static str, String)> {
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
        let keys = provider.keys.clone().unwrap_or_default();
        self.userinfo_claims(index, resp, &keys, sub, now)
    }

    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn expectations(&self, index: usize, now: u64) -> Expectations<'_> {
        let p = self.provider(index);
        Expectations {
            issuer: &p.issuer,
            client_id: &p.client_id,
            allowed_algs: &p.id_token_signing_algs,
            now,
            leeway: self.config.clock_skew,
        }
    }

    /// Continues a sign-in (or a session refresh) with the provider's answer.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn on_provider_response(
        &self,
        pending: Pending,
        resp: &ProviderResponse,
        providers: &mut [ProviderState],
        now: u64,
        entropy: &mut dyn Entropy,
        store: &dyn SharedStore,
    ) -> Step {
        let Some(provider) = providers.get_mut(pending.provider()) else {
            return self.with_help(self.unavailable(pending.lang()));
        };
        let step = match pending {
            Pending::Login(p) => self.on_login_response(p, resp, provider, now, entropy),
            Pending::Refresh(p) => self.on_refresh_response(p, resp, provider, now, entropy, store),
            Pending::Bearer(p) => self.on_introspection_response(p, resp, provider, now),
            Pending::SignOut(p) => self.on_revocation_response(p, resp, provider),
        };
        self.with_help(step)
    }

    #[cfg_attr(sesame_size, optimize(size))]
    fn on_login_response(
        &self,
        pending: LoginPending,
        resp: &ProviderResponse,
        provider: &mut ProviderState,
        now: u64,
        entropy: &mut dyn Entropy,
    ) -> Step {
        let LoginPending {
            provider: index,
            login,
            lang,
            previous,
            stage,
        } = pending;
        // This sign-in's call only: whether the provider is up is decided by
        // the discovery and key fetches, never by one request's call.
        if resp.status == 0 || resp.status == 503 || resp.status == 504 {
            let mut step = self.unavailable(lang);
            if let Action::Respond(r) = &mut step.action {
                r.headers.push(self.clear_login_cookie(index, &login.state));
            }
            return step;
        }
        let p = LoginProgress {
            index,
            login,
            lang,
            previous,
        };
        match stage {
            Stage::Token => {
                if resp.status != 200 {
                    let error = resp.oauth_error();
                    return p.fail(
                        self,
                        502,
                        "token_endpoint_error",
                        format!("HTTP {} {error}", resp.status),
                    );
                }
                let tokens = match TokenResponse::parse(&resp.body) {
                    Ok(t) => t,
                    Err(e) => return p.fail(self, 502, "token_response_invalid", e.into()),
                };
                if self.provider(index).is_oauth2() {
                    return self.read_oauth2_identity(p, tokens, provider);
                }
                self.check_id_token(p, tokens, provider, now, entropy, true)
            }
            Stage::Keys { tokens } => {
                if resp.status != 200 {
                    return p.fail(
                        self,
                        502,
                        "jwks_unavailable",
                        format!("JWKS answered HTTP {}", resp.status),
                    );
                }
                match KeySet::parse(&resp.body) {
                    Ok(keys) => provider.keys_refetched(keys, &resp.body, now),
                    Err(e) => return p.fail(self, 502, "jwks_invalid", e),
                }
                self.check_id_token(p, tokens, provider, now, entropy, false)
            }
            Stage::Userinfo { tokens, mut claims } => {
                match self.userinfo_about(index, resp, provider, &claims, now) {
                    // A plain OAuth 2.0 provider: its answer is the identity.
                    Ok(info) if self.provider(index).is_oauth2() => {
                        self.finish_login(p, tokens, info, now, entropy)
                    }
                    Ok(info) => {
                        merge_userinfo(&mut claims, info);
                        self.finish_login(p, tokens, claims, now, entropy)
                    }
                    Err((status, reason, detail)) => p.fail(self, status, reason, detail),
                }
            }
        }
    }

    /// Validates the ID token, then fetches userinfo or finishes the sign-in.
    #[cfg_attr(sesame_size, optimize(size))]
    fn check_id_token(
        &self,
        p: LoginProgress,
        tokens: TokenResponse,
        provider: &mut ProviderState,
        now: u64,
        entropy: &mut dyn Entropy,
        may_refetch: bool,
    ) -> Step {
        let Some(id_token) = tokens.id_token.as_deref() else {
            return p.fail(
                self,
                502,
                "token_response_invalid",
                "no id_token in the token response".into(),
            );
        };
        let index = p.index;
        let keys = provider.keys.clone().unwrap_or_default();
        let expect = self.expectations(index, now);
        match token::validate_id_token(id_token, &keys, &expect, &p.login.nonce) {
            Ok(claims) => {
                if let Err(detail) = self.check_acr(index, &claims, p.login.acr.as_deref()) {
                    // The refusal page names the levels the route needs.
                    let needed = p.login.acr.clone();
                    let mut step = p.fail(self, 403, "acr_not_satisfied", detail);
                    if let (Some(needed), Action::Respond(r)) = (needed, &mut step.action) {
                        if let Some((_, location)) =
                            r.headers.iter_mut().find(|(n, _)| n == "location")
                        {
                            let pair = url::form_urlencoded::Serializer::new(String::new())
                                .append_pair("acr", &needed)
                                .finish();
                            location.push('&');
                            location.push_str(&pair);
                        }
                    }
                    return step;
                }
                match self.userinfo_call(index, provider, tokens.access_token.as_deref()) {
                    Some(call) => p.wait(call, Stage::Userinfo { tokens, claims }),
                    None => self.finish_login(p, tokens, claims, now, entropy),
                }
            }
            // An unknown `kid`, or a token without `kid` that none of our
            // keys verifies: the provider may have rotated its keys (one
            // with a single unnamed key rotates it this way). One
            // rate-limited refetch, then one more try.
            Err(e @ (TokenError::UnknownKey(_) | TokenError::BadSignature))
                if may_refetch
                    && (matches!(e, TokenError::UnknownKey(_)) || !token::names_kid(id_token))
                    && provider.may_refetch_keys(now, self.config.jwks_refetch_min_interval) =>
            {
                let Some(jwks_uri) = provider.metadata.as_ref().and_then(|m| m.jwks_uri.clone())
                else {
                    return self.unavailable(p.lang);
                };
                // Count the refetch now, so concurrent sign-ins do not all refetch.
                provider.keys_fetched_at = now;
                let call =
                    ProviderCall::get(&jwks_uri, "application/json, application/jwk-set+json");
                p.wait(call, Stage::Keys { tokens })
            }
            Err(e) => {
                let reason = if e == TokenError::NonceMismatch {
                    "nonce_mismatch"
                } else {
                    "id_token_invalid"
                };
                p.fail(self, 401, reason, e.to_string())
            }
        }
    }

    /// A plain OAuth 2.0 provider: no ID token; the identity is what its
    /// userinfo endpoint says about the bearer of the access token.
    #[cfg_attr(sesame_size, optimize(size))]
    fn read_oauth2_identity(
        &self,
        p: LoginProgress,
        tokens: TokenResponse,
        provider: &ProviderState,
    ) -> Step {
        match self.userinfo_call(p.index, provider, tokens.access_token.as_deref()) {
            Some(call) => p.wait(
                call,
                Stage::Userinfo {
                    tokens,
                    claims: Map::new(),
                },
            ),
            None => p.fail(
                self,
                502,
                "token_response_invalid",
                "no access_token in the token response".into(),
            ),
        }
    }

    /// Applies the access rules, seals the session and sends the browser back.
    #[cfg_attr(sesame_size, optimize(size))]
    fn finish_login(
        &self,
        p: LoginProgress,
        tokens: TokenResponse,
        mut claims: Map<String, Value>,
        now: u64,
        entropy: &mut dyn Entropy,
    ) -> Step {
        // The pages it may end on are at the refusal's clean address, in
        // the language of the request that shows them.
        let LoginProgress {
            index,
            login,
            lang: _,
            previous,
        } = p;
        display_name(&mut claims);
        claims.retain(|k, _| self.config.kept_claims.contains(k));
        let access_expires_at = tokens.access_expires_at(now);
        let mut session = Session {
            claims,
            id_token: tokens.id_token,
            access_token: tokens.access_token,
            created_at: now,
            expires_at: now + self.config.session_lifetime,
            sid: random_token(entropy, 16),
            refresh_token: tokens
                .refresh_token
                .filter(|_| self.config.refresh_sessions),
            access_expires_at,
            provider: index,
        };
        // The previous session's cookies go, whatever this sign-in ends on:
        // a new sign-in on this browser replaces whoever was signed in.
        let attrs = self.cookie_attrs("/");
        let present: Vec<(&str, &str)> = previous.iter().map(|n| (n.as_str(), "")).collect();
        let clear_previous = || -> Vec<(String, String)> {
            if present.is_empty() {
                return Vec::new();
            }
            let cleared = self.session_cookie().clear(&present, &attrs);
            cleared
                .into_iter()
                .map(|c| ("set-cookie".to_string(), c))
                .collect()
        };
        if let Err(denial) = self.check_rules(RouteSet::FILTER, index, &session.claims) {
            let mut step = self.refused_at_callback(&session, &denial, entropy);
            if let Action::Respond(r) = &mut step.action {
                r.headers.push(self.clear_login_cookie(index, &login.state));
                r.headers.extend(clear_previous());
            }
            return step;
        }
        let Some(sealed) = self.seal_session(&mut session, entropy) else {
            let mut step = self.login_failed(
                502,
                "session_too_large",
                "the session would not fit in 8 cookies: the provider's tokens are too large \
                 (with pass_access_token and pass_id_token false, Sésame leaves out what \
                 nothing needs)"
                    .into(),
                Some((index, &login.state)),
                &login.return_to,
            );
            if let Action::Respond(r) = &mut step.action {
                r.headers.extend(clear_previous());
            }
            return step;
        };
        let mut response = Response::redirect(&login.return_to);
        for c in self.session_cookie().write_sealed(
            &sealed,
            session.expires_at.saturating_sub(now),
            &attrs,
            &present,
        ) {
            response.headers.push(("set-cookie".into(), c));
        }
        response
            .headers
            .push(self.clear_login_cookie(index, &login.state));
        Step::respond(
            response,
            Outcome::LoginSucceeded {
                who: Who::of(index, &session.claims),
            },
        )
    }

    /// Seals a session so that the browser can send it back: at most
    /// eight cookies (`session::MAX_CHUNKS`). When it would not fit, the tokens nothing
    /// here needs are left out (the access token when it is neither passed
    /// upstream nor the mark of a session that refreshes, the ID token when
    /// it is neither passed upstream nor needed at sign-out). `None` when it
    /// still does not fit: the caller refuses rather than write a session
    /// that would never be read.
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn seal_session(
        &self,
        session: &mut Session,
        entropy: &mut dyn Entropy,
    ) -> Option<String> {
        let name = self.config.cookie_name.as_str();
        let index = session.provider;
        let sealed = self
            .sealer
            .seal_for(index, Purpose::Session, name, session, entropy);
        if SessionCookie::fits(sealed.len()) {
            return Some(sealed);
        }
        let config = &self.config;
        let mut smaller = false;
        if !config.pass_access_token && session.refresh_token.is_none() {
            smaller |= session.access_token.take().is_some();
        }
        if !config.pass_id_token && !config.set_authorization_header && !config.provider_logout {
            smaller |= session.id_token.take().is_some();
        }
        if !smaller {
            return None;
        }
        let sealed = self
            .sealer
            .seal_for(index, Purpose::Session, name, session, entropy);
        SessionCookie::fits(sealed.len()).then_some(sealed)
    }

    /// `/oauth2/sign_out?rd=`: clears the session; when the provider has an
    /// `end_session_endpoint`, signs out there too (with `id_token_hint` and a
    /// `state` checked on the way back), then goes on to `rd`.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn sign_out(
        &self,
        req: &Request,
        cookies: &[(&str, &str)],
        providers: &[ProviderState],
        now: u64,
        entropy: &mut dyn Entropy,
    ) -> Step {
        let rd = query_param(req.query(), "rd").unwrap_or_else(|| "/".into());
        let rd = safe_redirect(&rd, &self.config.allowed_redirect_domains).to_string();
        let session = self.session_cookie().read(cookies, now);
        let mut headers: Vec<(String, String)> = self
            .session_cookie()
            .clear(cookies, &self.cookie_attrs("/"))
            .into_iter()
            .map(|c| ("set-cookie".to_string(), c))
            .collect();
        // The provider that signed the person in.
        let index = session.as_ref().map_or(0, |s| s.provider);
        let end_session = providers
            .get(index)
            .and_then(|p| p.metadata.as_ref())
            .and_then(|m| m.end_session_endpoint.as_ref());
        let id_token = session.as_ref().and_then(|s| s.id_token.as_deref());
        let provider_logout = end_session
            .zip(id_token)
            .filter(|_| self.config.provider_logout);
        let at_provider = provider_logout.is_some();
        let location = match provider_logout {
            Some((endpoint, id_token)) => {
                let logout = LogoutState {
                    state: random_token(entropy, 32),
                    return_to: rd,
                    expires_at: now + LOGIN_TTL,
                };
                let name = self.logout_cookie_name();
                let sealed = self
                    .sealer
                    .seal_for(index, Purpose::Logout, &name, &logout, entropy);
                let attrs = self.cookie_attrs(self.config.post_logout_redirect_uri.path());
                headers.push((
                    "set-cookie".into(),
                    set_cookie(&name, &sealed, LOGIN_TTL, &attrs),
                ));
                let mut url = endpoint.clone();
                url.query_pairs_mut()
                    .append_pair("id_token_hint", id_token)
                    .append_pair("state", &logout.state)
                    .append_pair(
                        "post_logout_redirect_uri",
                        self.config.post_logout_redirect_uri.as_str(),
                    );
                url.to_string()
            }
            None => rd,
        };
        let response = Response::redirect(&location).with_headers(headers);
        let who = session.as_ref().map(|s| Who::of(s.provider, &s.claims));
        // The session's tokens are revoked first (RFC 7009), when the
        // provider has a revocation endpoint: the refresh token, then the
        // access token. Whatever that answers, the sign-out goes on.
        let tokens: Vec<(String, &'static str)> = session
            .map(|s| {
                [
                    (s.refresh_token, "refresh_token"),
                    (s.access_token, "access_token"),
                ]
                .into_iter()
                .filter_map(|(t, hint)| t.map(|t| (t, hint)))
                .collect()
            })
            .unwrap_or_default();
        let revocation = providers
            .get(index)
            .and_then(|p| p.metadata.as_ref())
            .and_then(|m| m.revocation_endpoint.as_ref());
        let pending = SignOutPending {
            provider: index,
            response,
            who,
            at_provider,
            tokens,
            revoked: true,
        };
        match revocation {
            Some(endpoint) if !pending.tokens.is_empty() => self.revoke_next(pending, endpoint),
            _ => pending.finish(None),
        }
    }

    /// Revokes the next token of a sign-out, or sends its answer.
    #[cfg_attr(sesame_size, optimize(size))]
    fn revoke_next(&self, mut pending: SignOutPending, endpoint: &url::Url) -> Step {
        if pending.tokens.is_empty() {
            let revoked = pending.revoked;
            return pending.finish(Some(revoked));
        }
        let (token, hint) = pending.tokens.remove(0);
        let call = self.token_call(
            pending.provider,
            endpoint,
            vec![("token", &token), ("token_type_hint", hint)],
        );
        Step {
            action: Action::Call(call, Box::new(Pending::SignOut(pending))),
            outcome: Outcome::Waiting,
        }
    }

    /// The provider's answer to a revocation: the next one, or the
    /// sign-out's answer. A failure (any status but 200, no answer) is
    /// counted and logged, and never stops the sign-out.
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn on_revocation_response(
        &self,
        mut pending: SignOutPending,
        resp: &ProviderResponse,
        provider: &ProviderState,
    ) -> Step {
        pending.revoked &= resp.status == 200;
        match provider
            .metadata
            .as_ref()
            .and_then(|m| m.revocation_endpoint.as_ref())
        {
            Some(endpoint) => self.revoke_next(pending, endpoint),
            None => pending.finish(Some(false)),
        }
    }

    /// What a request waiting for the provider ends on when the call
    /// cannot be made: a sign-out goes on; anything else gets the 503 page.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn call_failed(&self, pending: Pending) -> Step {
        match pending {
            Pending::SignOut(p) => p.finish(Some(false)),
            other => self.with_help(self.unavailable(other.lang())),
        }
    }

    /// The return from the provider's logout: check the `state`, then go on
    /// to the `rd` given at sign-out. A wrong or missing state ends on a
    /// "signed out" page instead (400), never on an address from the query.
    /// A plain visit (no state, no sign-out under way: a sign-out sent here
    /// with `rd=<proxy_prefix>/signed_out`) gets the "signed out" page (200),
    /// with a button to sign in again.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn signed_out(
        &self,
        req: &Request,
        cookies: &[(&str, &str)],
        now: u64,
        lang: Lang,
    ) -> Step {
        let name = self.logout_cookie_name();
        let attrs = self.cookie_attrs(self.config.post_logout_redirect_uri.path());
        let clear = ("set-cookie".to_string(), clear_cookie(&name, &attrs));
        let logout: Option<LogoutState> = cookies
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| self.sealer.open(Purpose::Logout, &name, v));
        let state = query_param(req.query(), "state");
        if state.is_none() && logout.is_none() {
            // A visit, not a return from the provider (a sign-out sent here
            // with `rd`): the page that says so.
            let response = pages::page(
                200,
                lang,
                &pages::SIGNED_OUT,
                None,
                Some((&self.sign_in_url("/"), pages::SIGN_IN_AGAIN)),
            );
            return Step::respond(response, Outcome::PageShown);
        }
        let state = state.unwrap_or_default();
        match logout {
            Some(l)
                if now < l.expires_at && constant_time_eq(l.state.as_bytes(), state.as_bytes()) =>
            {
                let response = Response::redirect(&l.return_to).with_headers([clear]);
                Step::respond(response, Outcome::LogoutReturned)
            }
            _ => {
                let mut response = pages::page(
                    400,
                    lang,
                    &pages::SIGNED_OUT,
                    None,
                    Some(("/", pages::HOME)),
                );
                response.headers.push(clear);
                Step::respond(
                    response,
                    Outcome::LoginFailed {
                        reason: "logout_state_mismatch",
                        detail: "the state of the provider's logout answer is not ours".into(),
                    },
                )
            }
        }
    }
}
