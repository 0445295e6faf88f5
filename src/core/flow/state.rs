//! What a request's flow keeps between two steps: the sealed state of a
//! sign-in and of a sign-out (in short-lived cookies), the token endpoint's
//! answer, and whatever waits for the provider's answer (`Pending`).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::core::access::routes::RouteSet;
use crate::core::flow::headers::Upstream;
use crate::core::flow::who::Who;
use crate::core::http::{OwnedRequest, Response};
use crate::core::pages::Lang;
use crate::core::session::cookies;
use crate::core::session::Session;
use crate::core::{text_field, Sealed};

/// What a started sign-in remembers, sealed in a short-lived cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// A step-up (RFC 9470): the `acr` values the page asked for, space
    /// separated; the ID token must carry one of them.
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
}

/// Reads what `Serialize` writes, as a derived `Deserialize` did (see [`Sealed`]).
impl<'de> Deserialize<'de> for LoginState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Sealed::deserialize(deserializer, |o| {
            Some(LoginState {
                state: o.text("s")?,
                nonce: o.text("n")?,
                code_verifier: o.text("v")?,
                return_to: o.text("r")?,
                expires_at: o.number("e")?,
                silent: match o.0.remove("q") {
                    None => false,
                    Some(q) => q.as_bool()?,
                },
                acr: o.opt_text("a")?,
            })
        })
    }
}

/// What a started sign-out remembers while the browser visits the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogoutState {
    #[serde(rename = "s")]
    pub state: String,
    #[serde(rename = "r")]
    pub return_to: String,
    #[serde(rename = "e")]
    pub expires_at: u64,
}

/// Reads what `Serialize` writes, as a derived `Deserialize` did (see [`Sealed`]).
impl<'de> Deserialize<'de> for LogoutState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Sealed::deserialize(deserializer, |o| {
            Some(LogoutState {
                state: o.text("s")?,
                return_to: o.text("r")?,
                expires_at: o.number("e")?,
            })
        })
    }
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
    /// When the call is the provider's userinfo (the token is valid, but
    /// lacks a claim the rules need): its claims so far, and until when
    /// they may be remembered.
    pub checked: Option<(Map<String, Value>, u64)>,
}

impl BearerPending {
    /// A bearer request about to call provider `provider` about `token`.
    pub fn new(
        upstream: Upstream,
        authorization: &str,
        token: &str,
        routes: RouteSet,
        provider: usize,
    ) -> BearerPending {
        BearerPending {
            upstream,
            authorization: authorization.to_string(),
            token: token.to_string(),
            routes,
            provider,
            checked: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::session::sealed::{Purpose, Sealer};
    use crate::core::testing::CountingEntropy;

    /// Sealed by the build with a derived `Deserialize` (keys from
    /// `[7; 32]`, nonces from `CountingEntropy` after the two sessions of
    /// the sealed module's tests).
    const LOGIN_SILENT_SEALED: &str = "AhkaGxwdHh8gISIjJOL3KGylWei3Ej-4fQkAmLNsz4LaVI2C2JPhvfqG3lCy7U67v5fOShHXyLOwA7DNcFI5gdI9lhPG4n_IDnHP8XoZPYUqb3BeQB0d3i2FSX6yUw";
    const LOGIN_SEALED: &str = "ASUmJygpKissLS4vMD3-kgcQDLBN_rCK3-xTF3TASBWRF4kjXqIHf0-K9FcUhEqoBNmwdOg1WMZfICART_KKob7Q_9iwgotqrCSmq-ih14pV_lwgzg";
    const LOGOUT_SEALED: &str =
        "ATEyMzQ1Njc4OTo7PMjTIRoN8MCjpb8Gh3IlqWbKWouAUjkj5sEdcZA9Y8jhSlID2BeEymF8IQsdnR_edZSS6JY";

    fn login(silent: bool) -> LoginState {
        LoginState {
            state: "st".into(),
            nonce: "no".into(),
            code_verifier: "cv".into(),
            return_to: "/r?x=1".into(),
            expires_at: 4_000_000_000,
            silent,
            acr: None,
        }
    }

    fn logout() -> LogoutState {
        LogoutState {
            state: "st".into(),
            return_to: "/bye".into(),
            expires_at: 4_000_000_000,
        }
    }

    #[test]
    fn states_sealed_by_the_derived_serialisation_open_and_seal_the_same() {
        let sealer = Sealer::for_providers(
            &[7u8; 32],
            &[
                ("https://idp.example.fr", "client"),
                ("https://other.example.fr", "client2"),
            ],
        );
        let opened = sealer.open_from(Purpose::Login, "_sesame_login", LOGIN_SILENT_SEALED);
        assert_eq!(opened, Some((1, login(true))));
        let opened = sealer.open(Purpose::Login, "_sesame_login", LOGIN_SEALED);
        assert_eq!(opened, Some(login(false)));
        let opened = sealer.open(Purpose::Logout, "_sesame_logout", LOGOUT_SEALED);
        assert_eq!(opened, Some(logout()));

        let mut entropy = CountingEntropy(0x18);
        let sealed = sealer.seal_for(
            1,
            Purpose::Login,
            "_sesame_login",
            &login(true),
            &mut entropy,
        );
        assert_eq!(sealed, LOGIN_SILENT_SEALED);
        let sealed = sealer.seal(Purpose::Login, "_sesame_login", &login(false), &mut entropy);
        assert_eq!(sealed, LOGIN_SEALED);
        let sealed = sealer.seal(Purpose::Logout, "_sesame_logout", &logout(), &mut entropy);
        assert_eq!(sealed, LOGOUT_SEALED);
    }

    #[test]
    fn state_json_is_read_as_the_derived_deserialize_read_it() {
        let read = |text: &str| serde_json::from_str::<LoginState>(text).ok();
        let text = r#"{"s":"st","n":"no","v":"cv","r":"/r?x=1","e":4000000000}"#;
        assert_eq!(read(text), Some(login(false)));
        assert_eq!(serde_json::to_string(&login(false)).unwrap(), text);
        let silent = r#"{"s":"st","n":"no","v":"cv","r":"/r?x=1","e":4000000000,"q":true,"z":0}"#;
        assert_eq!(read(silent), Some(login(true)));
        for text in [
            r#"{"n":"no","v":"cv","r":"/r","e":1}"#,
            r#"{"s":"st","n":"no","v":"cv","r":"/r"}"#,
            r#"{"s":"st","n":null,"v":"cv","r":"/r","e":1}"#,
            r#"{"s":"st","n":"no","v":"cv","r":"/r","e":1,"q":null}"#,
            r#"{"s":"st","n":"no","v":"cv","r":"/r","e":1,"q":1}"#,
            r#"{"s":"st","n":"no","v":"cv","r":"/r","e":-1}"#,
        ] {
            assert_eq!(read(text), None, "{text}");
        }
        let read = |text: &str| serde_json::from_str::<LogoutState>(text).ok();
        assert_eq!(
            read(r#"{"s":"st","r":"/bye","e":4000000000}"#),
            Some(logout())
        );
        assert_eq!(read(r#"{"s":"st","r":"/bye"}"#), None);
        assert_eq!(read(r#"{"s":"st","r":7,"e":1}"#), None);
    }
}
