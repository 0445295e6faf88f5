//! What a request's flow keeps between two steps: the sealed state of a
//! sign-in and of a sign-out (in short-lived cookies), the token endpoint's
//! answer, and whatever waits for the provider's answer (`Pending`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::core::access::routes::RouteSet;
use crate::core::flow::headers::Upstream;
use crate::core::flow::step::Who;
use crate::core::http::{OwnedRequest, Response};
use crate::core::pages::Lang;
use crate::core::session::cookies;
use crate::core::session::Session;
use crate::core::text_field;

/// What a started sign-in remembers, sealed in a short-lived cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginState {
    #[serde(rename = "s")]
    pub state: String,
    #[serde(rename = "n")]
    pub nonce: String,
    #[serde(rename = "v")]
    pub code_verifier: String,
    #[serde(rename = "r")]
    pub return_to: String,
    #[serde(rename = "e")]
    pub expires_at: u64,
    /// A silent attempt (`prompt=none`): the provider's "I need the
    /// person" errors start an interactive sign-in instead of a page.
    #[serde(rename = "q", default, skip_serializing_if = "std::ops::Not::not")]
    pub silent: bool,
}

/// What a started sign-out remembers while the browser visits the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutState {
    #[serde(rename = "s")]
    pub state: String,
    #[serde(rename = "r")]
    pub return_to: String,
    #[serde(rename = "e")]
    pub expires_at: u64,
}

/// The tokens from the token endpoint that the session keeps.
#[derive(Debug, Clone)]
pub struct TokenResponse {
    pub id_token: Option<String>,
    pub access_token: Option<String>,
    pub token_type: Option<String>,
    pub refresh_token: Option<String>,
    /// Seconds; a number, or a string of digits from lenient providers.
    pub expires_in: Option<Value>,
}

impl TokenResponse {
    /// When the access token expires, from `expires_in` (capped at a year).
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn access_expires_at(&self, now: u64) -> Option<u64> {
        let seconds = match self.expires_in.as_ref()? {
            Value::Number(n) => n.as_u64()?,
            Value::String(s) => s.trim().parse().ok()?,
            _ => return None,
        };
        Some(now.saturating_add(seconds.min(365 * 24 * 3600)))
    }

    /// Reads a token endpoint answer: a JSON object, `token_type` Bearer when given.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn parse(body: &[u8]) -> Result<TokenResponse, &'static str> {
        const INVALID: &str = "not a token response";
        let answer: Map<String, Value> = serde_json::from_slice(body).map_err(|_| INVALID)?;
        let text = |name: &str| -> Result<Option<String>, &'static str> {
            Ok(text_field(&answer, name)
                .map_err(|_| INVALID)?
                .map(str::to_string))
        };
        let tokens = TokenResponse {
            id_token: text("id_token")?,
            access_token: text("access_token")?,
            token_type: text("token_type")?,
            refresh_token: text("refresh_token")?,
            expires_in: answer.get("expires_in").filter(|v| !v.is_null()).cloned(),
        };
        if tokens
            .token_type
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err("token_type is not Bearer");
        }
        Ok(tokens)
    }
}

/// Where a sign-in waiting for the provider stands.
#[derive(Debug)]
pub enum Stage {
    /// Waiting for the token endpoint.
    Token,
    /// Waiting for a fresh JWKS after an unknown `kid`.
    Keys { tokens: TokenResponse },
    /// Waiting for the userinfo endpoint.
    Userinfo {
        tokens: TokenResponse,
        claims: Map<String, Value>,
    },
}

/// What waits for the provider's answer.
#[derive(Debug)]
pub enum Pending {
    Login(LoginPending),
    Refresh(RefreshPending),
    Bearer(BearerPending),
    SignOut(SignOutPending),
}

impl Pending {
    /// The provider whose answer it waits for.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn provider(&self) -> usize {
        match self {
            Pending::Login(p) => p.provider,
            Pending::Refresh(p) => p.session.provider,
            Pending::Bearer(p) => p.provider,
            Pending::SignOut(p) => p.provider,
        }
    }

    /// The language of the pages this request may end on.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn lang(&self) -> Lang {
        match self {
            Pending::Login(p) => p.lang,
            Pending::Refresh(p) => p.lang,
            Pending::Bearer(_) | Pending::SignOut(_) => Lang::default(),
        }
    }
}

/// A sign-in waiting for the provider.
#[derive(Debug)]
pub struct LoginPending {
    /// The provider it signs in at.
    pub provider: usize,
    pub login: LoginState,
    pub lang: Lang,
    /// The names of the session cookies (single or chunks) the browser sent
    /// to the callback: the previous session's, cleared with the new one
    /// written, so that none of it outlives this sign-in.
    pub previous: Vec<String>,
    pub stage: Stage,
}

/// A request waiting while its session is refreshed.
#[derive(Debug)]
pub struct RefreshPending {
    pub lang: Lang,
    /// The request as it came (to start a new sign-in if the session ended).
    pub request: OwnedRequest,
    /// The changes to the request's headers (identity headers removed).
    pub upstream: Upstream,
    /// The session before the refresh.
    pub session: Session,
    /// The route the request matched (for its access rules).
    pub routes: RouteSet,
    pub stage: RefreshStage,
}

impl RefreshPending {
    /// The cookies the request came with.
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn cookies(&self) -> Vec<(&str, &str)> {
        cookies::parse(self.request.as_request().header_values("cookie"))
    }
}

#[derive(Debug)]
pub enum RefreshStage {
    /// Waiting for the token endpoint.
    Token,
    /// Waiting for userinfo; the refreshed session so far.
    Userinfo(Box<Session>),
}

/// A sign-out waiting while the session's tokens are revoked at the
/// provider (RFC 7009), one after the other; its answer is ready.
#[derive(Debug)]
pub struct SignOutPending {
    pub provider: usize,
    /// The sign-out's answer (cookies cleared, on to `rd` or the
    /// provider's logout), sent whatever the revocation answers.
    pub response: Response,
    pub who: Option<Box<Who>>,
    pub at_provider: bool,
    /// Tokens still to revoke, with their `token_type_hint`.
    pub tokens: Vec<(String, &'static str)>,
    /// Every revocation so far was accepted.
    pub revoked: bool,
}

/// A bearer request waiting for the introspection answer.
#[derive(Debug)]
pub struct BearerPending {
    pub upstream: Upstream,
    pub authorization: String,
    pub token: String,
    pub routes: RouteSet,
    /// The provider introspecting the token.
    pub provider: usize,
}
