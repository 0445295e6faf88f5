//! Plugin configuration: parsed from the JSON Envoy hands over, validated in one
//! place, with every problem reported at once.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;
use url::Url;

use super::access::document::{read_api_keys, ApiKeys};
use super::access::policy::Policy;
use super::access::routes::{
    method_matches, never_matches_a_path, PathPattern, Protection, Route, MAX_ROUTES,
};
use super::oidc::jwe::ResourceKey;
use super::parse_url;
pub use super::reader::ConfigError;
use super::reader::{read_entries, read_policy, Reader};

/// A string that must never be printed (client secret, cookie secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    #[cfg_attr(sesame_size, optimize(size))]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Oidc,
    ProConnect,
    /// Plain OAuth 2.0: no ID token, identity from a userinfo API.
    OAuth2,
}

impl ProviderKind {
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Oidc => "oidc",
            ProviderKind::ProConnect => "proconnect",
            ProviderKind::OAuth2 => "oauth2",
        }
    }
}

/// Most providers one filter serves.
pub const MAX_PROVIDERS: usize = 16;

/// One identity provider, as configured.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Short, URL-safe name (`X-Auth-Request-Provider`, `?provider=`).
    pub id: String,
    /// What people read on the sign-in page.
    pub label: String,
    pub kind: ProviderKind,
    /// The issuer (for a plain OAuth 2.0 provider, its configured `issuer`
    /// or the origin of its authorization endpoint): with `sub`, the
    /// identity of a person.
    pub issuer: String,
    /// `None` for a plain OAuth 2.0 provider (nothing to discover).
    pub discovery_url: Option<Url>,
    pub idp_cluster: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub token_endpoint_auth_method: ClientAuth,
    pub redirect_uri: Url,
    pub scopes: Vec<String>,
    pub fetch_userinfo: bool,
    pub id_token_signing_algs: Vec<String>,
    /// ACR values asked for; the ID token's `acr` must be one of them.
    pub acr_values: Vec<String>,
    /// The `claims` request parameter (JSON text), when configured.
    pub claims_request: Option<String>,
    /// An `acr` the `claims` request marks essential for the ID token
    /// (`{"id_token": {"acr": {"essential": true, ...}}}`): the ID token must
    /// carry an `acr`, and one of these values when the request names any.
    pub essential_acr: Option<Vec<String>>,
    pub bearer: BearerConfig,
    /// Its own access rules, replacing the filter's for people it signs in.
    pub policy: Option<Policy>,
    /// A plain OAuth 2.0 provider's endpoints, as configured.
    pub oauth2: Option<OAuth2Endpoints>,
    /// A plain OAuth 2.0 provider: claim name -> JSON pointer into the
    /// userinfo answer.
    pub claims_map: Vec<(String, String)>,
}

impl ProviderConfig {
    /// The path of this provider's callback, taken from `redirect_uri`.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn callback_path(&self) -> &str {
        self.redirect_uri.path()
    }

    #[cfg_attr(sesame_size, optimize(size))]
    pub fn is_oauth2(&self) -> bool {
        self.kind == ProviderKind::OAuth2
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    ClientSecretPost,
    ClientSecretBasic,
}

/// A route that passes without login: optional method, regex on the path.
#[derive(Debug, Clone)]
pub struct SkipRoute {
    pub method: Option<String>,
    pub path: PathPattern,
}

impl SkipRoute {
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| method_matches(m, method))
            && self.path.is_match(path)
    }
}

/// Signature algorithms Sésame can verify; symmetric (HS*) and `none` never.
pub const SUPPORTED_SIGNING_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The identity providers, in the order of the sign-in page (at least one).
    pub providers: Vec<ProviderConfig>,
    /// Decoded cookie secret (at least 32 bytes).
    pub cookie_secret: Vec<u8>,
    pub cookie_secure: bool,
    pub cookie_name: String,
    pub cookie_domain: Option<String>,
    /// Sésame's cookies are taken out of the request sent upstream.
    pub strip_session_cookies: bool,
    pub session_lifetime: u64,
    /// Refresh sessions with the provider's refresh token, when it issues one.
    pub refresh_sessions: bool,
    /// Refresh this many seconds before the access token expires.
    pub refresh_margin: u64,
    /// Sessions each VM remembers opened, at most.
    pub session_cache_size: usize,
    pub skip_auth_routes: Vec<SkipRoute>,
    pub policy: Policy,
    pub proxy_prefix: String,
    pub claim_headers: Vec<(String, String)>,
    pub pass_access_token: bool,
    pub pass_id_token: bool,
    /// `/oauth2/auth` answers with the token headers too.
    pub auth_endpoint_tokens: bool,
    pub set_authorization_header: bool,
    /// `X-Forwarded-User` and `X-Auth-Request-User` say `<provider id>:<sub>`.
    pub qualified_user: bool,
    /// A navigation without a session first tries `prompt=none`.
    pub silent_sign_in: bool,
    pub clock_skew: u64,
    pub provider_timeout_ms: u64,
    pub provider_refresh_interval: u64,
    pub provider_retry_max: u64,
    pub jwks_refetch_min_interval: u64,
    pub post_logout_redirect_uri: Url,
    pub provider_logout: bool,
    pub allowed_redirect_domains: Vec<String>,
    pub skip_provider_button: bool,
    /// Per-route protection, first match wins; unlisted requests need a session.
    pub routes: Vec<Route>,
    /// How checked bearer tokens are remembered, and our own key.
    pub tokens: TokenSettings,
    /// Claims kept in the session: those the headers, the policy and the
    /// userinfo endpoint need.
    pub kept_claims: BTreeSet<String>,
    /// Where the filter-level rules, revocations and API keys come from,
    /// when not from this configuration.
    pub access_source: Option<AccessSource>,
    /// API keys of the configuration (none with `access_source`: the
    /// document's apply).
    pub api_keys: ApiKeys,
    /// Tokens signed-in people get for their scripts.
    pub personal_tokens: Option<PersonalTokens>,
    /// Whom refused people may ask for help, shown on the refusal pages.
    pub help_contact: Option<HelpContact>,
    /// Headers Sésame owns (lower case): incoming copies are removed.
    owned_headers: Vec<String>,
}

/// `access_source`: the access document's URL, the Envoy cluster that
/// reaches it, and how often it is fetched.
#[derive(Debug, Clone)]
pub struct AccessSource {
    pub url: Url,
    pub cluster: String,
    pub refresh_interval: u64,
    /// How old the document in force may get (since the source last gave
    /// or confirmed it) before nobody is admitted; `None`: no limit.
    pub max_age: Option<u64>,
}

/// `personal_tokens`: how long a token lives, the scopes it grants, and the
/// secret its keys come from (`None`: the cookie secret).
#[derive(Debug, Clone)]
pub struct PersonalTokens {
    pub lifetime: u64,
    pub scopes: Vec<String>,
    pub secret: Option<Vec<u8>>,
}

/// `help_contact`: an email address or an https address, shown as a link
/// on the refusal pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelpContact {
    /// The link's address (`mailto:` for an email address).
    pub href: String,
    /// What the link says.
    pub text: String,
}

impl HelpContact {
    /// An email address (`name@domain.tld`, no spaces or markup) or an
    /// absolute https URL; `None` for anything else.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn parse(text: &str) -> Option<HelpContact> {
        if text.len() > 254 || text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return None;
        }
        if text.starts_with("https://") {
            let url = parse_url(text).ok().filter(|u| u.has_host())?;
            return Some(HelpContact {
                href: url.to_string(),
                text: text.to_string(),
            });
        }
        let (local, domain) = text.split_once('@')?;
        let plain = |c: char| {
            !matches!(
                c,
                '@' | '<' | '>' | '"' | '\\' | '(' | ')' | ',' | ';' | ':' | '[' | ']'
            )
        };
        (!local.is_empty()
            && local.chars().all(plain)
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-'))
        .then(|| HelpContact {
            href: format!("mailto:{text}"),
            text: text.to_string(),
        })
    }
}

/// The header that names the API key a request came with.
pub const API_KEY_HEADER: &str = "X-Auth-Request-Api-Key";
/// The header that lists an API key's scopes.
pub const SCOPES_HEADER: &str = "X-Auth-Request-Scopes";

/// Default claim → header mapping, with oauth2-proxy's header names.
pub const DEFAULT_CLAIM_HEADERS: &[(&str, &str)] = &[
    ("X-Forwarded-User", "sub"),
    ("X-Forwarded-Email", "email"),
    ("X-Forwarded-Preferred-Username", "preferred_username"),
    ("X-Auth-Request-User", "sub"),
    ("X-Auth-Request-Email", "email"),
    ("X-Auth-Request-Preferred-Username", "preferred_username"),
];

pub const ID_TOKEN_HEADER: &str = "X-Forwarded-Id-Token";
/// The header that names the provider a person signed in with.
pub const PROVIDER_HEADER: &str = "X-Auth-Request-Provider";
pub const ACCESS_TOKEN_HEADER: &str = "X-Auth-Request-Access-Token";

const KNOWN_KEYS: &[&str] = &[
    "provider",
    "issuer",
    "idp_cluster",
    "client_id",
    "client_secret",
    "token_endpoint_auth_method",
    "redirect_uri",
    "scopes",
    "cookie_secret",
    "cookie_secure",
    "cookie_name",
    "cookie_domain",
    "strip_session_cookies",
    "session_lifetime",
    "refresh_sessions",
    "refresh_margin",
    "session_cache_size",
    "skip_auth_routes",
    "allowed_emails",
    "allowed_email_domains",
    "allowed_claims",
    "proxy_prefix",
    "claim_headers",
    "pass_access_token",
    "pass_id_token",
    "auth_endpoint_tokens",
    "set_authorization_header",
    "fetch_userinfo",
    "id_token_signing_algs",
    "clock_skew",
    "provider_timeout_ms",
    "provider_refresh_interval",
    "provider_retry_max",
    "jwks_refetch_min_interval",
    "proconnect_environment",
    "acr_values",
    "claims",
    "post_logout_redirect_uri",
    "provider_logout",
    "allowed_redirect_domains",
    "skip_provider_button",
    "routes",
    "bearer_audience",
    "bearer_audience_claim",
    "bearer_scopes",
    "introspection_endpoint",
    "introspection_format",
    "introspection_cache_ttl",
    "introspection_cache_size",
    "resource_server_key",
    "jwks_path",
    "bearer_require_typ",
    "providers",
    "qualified_user",
    "allow_all_users",
    "silent_sign_in",
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "claims_map",
    "access_source",
    "api_keys",
    "personal_tokens",
    "help_contact",
];

/// The keys that describe one provider: at the top level of a
/// configuration with one provider, in each entry of `providers` otherwise.
const PROVIDER_KEYS: &[&str] = &[
    "provider",
    "issuer",
    "proconnect_environment",
    "idp_cluster",
    "client_id",
    "client_secret",
    "token_endpoint_auth_method",
    "redirect_uri",
    "scopes",
    "acr_values",
    "claims",
    "fetch_userinfo",
    "id_token_signing_algs",
    "bearer_audience",
    "bearer_audience_claim",
    "bearer_scopes",
    "introspection_endpoint",
    "introspection_format",
    "bearer_require_typ",
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "claims_map",
];

/// Keys of an entry of `providers` besides [`PROVIDER_KEYS`].
const ENTRY_KEYS: &[&str] = &[
    "id",
    "label",
    "allowed_emails",
    "allowed_email_domains",
    "allowed_claims",
    "allow_all_users",
];

/// Keys only a plain OAuth 2.0 provider has.
const OAUTH2_ONLY_KEYS: &[&str] = &[
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "claims_map",
];

/// Keys only OpenID providers have (about ID tokens and discovery).
const OIDC_ONLY_KEYS: &[&str] = &[
    "proconnect_environment",
    "acr_values",
    "claims",
    "id_token_signing_algs",
    "bearer_audience",
    "bearer_audience_claim",
    "bearer_scopes",
    "introspection_endpoint",
    "introspection_format",
    "bearer_require_typ",
];

/// Keys of one entry of `routes`.
const ROUTE_KEYS: &[&str] = &[
    "methods",
    "path",
    "mode",
    "scopes",
    "allowed_emails",
    "allowed_email_domains",
    "allowed_claims",
    "providers",
    "acr_values",
];

/// How bearer tokens are checked (routes in `bearer` or `session_or_bearer` mode).
#[derive(Debug, Clone)]
pub struct BearerConfig {
    /// The audience a token must name (default: the client id).
    pub audience: String,
    /// The claim that names it: `aud` (ProConnect), `client_id`, `azp`...
    pub audience_claim: String,
    /// Scopes every bearer token must carry, unless its route names its own.
    pub scopes: Vec<String>,
    /// Introspection endpoint, when not the discovery document's.
    pub introspection_endpoint: Option<Url>,
    /// Ask for introspection answers as signed JWTs (RFC 9701).
    pub introspection_jwt: bool,
    /// JWT access tokens must say `typ: at+jwt` in their header (RFC 9068).
    pub require_typ: bool,
}

/// How checked bearer tokens are remembered, and the key providers encrypt
/// introspection answers to: one for the filter.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// How long a checked token is remembered (never past its `exp`).
    pub cache_ttl: u64,
    /// How many checked tokens are remembered, at most.
    pub cache_size: usize,
    /// Our key pair, when a provider encrypts introspection answers to us.
    pub resource_key: Option<ResourceKey>,
    /// Where our public key is served (`{"keys": [...]}`).
    pub jwks_path: String,
}

/// ProConnect's environments and their issuers.
pub const PROCONNECT_ENVIRONMENTS: &[(&str, &str)] = &[
    (
        "integration",
        "https://fca.integ01.dev-agentconnect.fr/api/v2",
    ),
    ("production", "https://auth.agentconnect.gouv.fr/api/v2"),
    (
        "integration-rie",
        "https://fca.integ02.agentconnect.rie.gouv.fr/api/v2",
    ),
    (
        "production-rie",
        "https://auth.agentconnect.rie.gouv.fr/api/v2",
    ),
];

/// ACR values ProConnect knows.
pub const PROCONNECT_ACR_VALUES: &[&str] = &[
    "eidas0",
    "eidas0-mfa",
    "eidas1",
    "eidas1-mfa",
    "eidas2",
    "eidas3",
];

#[cfg_attr(sesame_size, optimize(size))]
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// `routes`: each entry checked on its own, errors named `routes[i].key`.
#[cfg_attr(sesame_size, optimize(size))]
fn read_routes(r: &mut Reader, provider_ids: &[&str]) -> Vec<Route> {
    let items = match r.obj.get("routes") {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            r.err(
                "routes",
                "must be a list of routes ({\"path\": \"^/api/\", \"mode\": \"bearer\"}, ...)",
            );
            return Vec::new();
        }
    };
    read_entries(
        r,
        "routes",
        items,
        (MAX_ROUTES, "routes"),
        "must be an object with `path` and `mode`",
        |sub, routes: &[Route]| {
            let obj = sub.obj;
            for key in obj.keys() {
                if !ROUTE_KEYS.contains(&key.as_str()) {
                    sub.err(key, "is not a known route key (methods, path, mode, scopes, allowed_emails, allowed_email_domains, allowed_claims, providers, acr_values)");
                }
            }
            let methods = sub.string_list("methods").unwrap_or_default();
            for m in &methods {
                if !m.chars().all(|c| c.is_ascii_uppercase()) {
                    sub.err(
                        "methods",
                        format!("{m:?} is not an HTTP method in capitals (GET, POST...)"),
                    );
                }
            }
            let pattern = sub.required_string("path");
            let path = pattern.as_deref().and_then(|p| {
                if never_matches_a_path(p) {
                    sub.err(
                        "path",
                        format!("{p:?} can never match: request paths start with `/`"),
                    );
                    return None;
                }
                match PathPattern::new(p) {
                    Ok(re) => Some(re),
                    Err(e) => {
                        sub.err("path", format!("is not a valid regex: {e}"));
                        None
                    }
                }
            });
            let protection = match sub.required_string("mode").as_deref() {
                None => None,
                Some(text) => {
                    let p = Protection::parse(text);
                    if p.is_none() {
                        sub.err(
                            "mode",
                            format!(
                            "must be session, bearer, session_or_bearer or public, not {text:?}"
                        ),
                        );
                    }
                    p
                }
            };
            let scopes = sub.string_list("scopes").unwrap_or_default();
            if scopes.iter().any(|s| s.contains(' ')) {
                sub.err("scopes", "a scope must not contain spaces");
            }
            // Step-up (RFC 9470): the authentication levels the route accepts.
            let acr_values = sub.string_list("acr_values").unwrap_or_default();
            if acr_values
                .iter()
                .any(|a| a.contains(' ') || a.contains('"'))
            {
                sub.err(
                    "acr_values",
                    "an ACR value must not contain spaces or quotes",
                );
            }
            if matches!(sub.obj.get("acr_values"), Some(Value::Array(a)) if a.is_empty()) {
                sub.err(
                    "acr_values",
                    "names no level: list ACR values, or leave it out",
                );
            }
            let has_rules = ["allowed_emails", "allowed_email_domains", "allowed_claims"]
                .iter()
                .any(|k| !matches!(obj.get(*k), None | Some(Value::Null)));
            let policy = has_rules.then(|| read_policy(sub));
            // The providers whose sessions and tokens the route admits.
            let providers = sub.string_list("providers").map(|names| {
                let mut set = 0u64;
                for name in &names {
                    match provider_ids.iter().position(|id| id == name) {
                        Some(i) => set |= 1 << i,
                        None => sub.err(
                            "providers",
                            format!("{name:?} is not the id of a configured provider"),
                        ),
                    }
                }
                if names.is_empty() {
                    sub.err(
                        "providers",
                        "names nobody: list provider ids, or leave it out for all",
                    );
                }
                set
            });
            if policy.as_ref().is_some_and(Policy::is_empty) {
                sub.err(
                    "allowed_email_domains",
                    "the route's access rules admit nobody: name emails, domains or claims",
                );
            }
            match protection {
                Some(Protection::Public)
                    if has_rules
                        || !scopes.is_empty()
                        || providers.is_some()
                        || !acr_values.is_empty() =>
                {
                    sub.err(
                        "mode",
                        "a public route has no access rules, scopes, providers or acr_values",
                    );
                }
                Some(p) if !p.accepts_bearer() && !scopes.is_empty() => {
                    sub.err(
                        "scopes",
                        "scopes are carried by bearer tokens: use mode bearer or session_or_bearer",
                    );
                }
                _ => {}
            }
            if let Some(re) = &path {
                let mut sorted = methods.clone();
                sorted.sort();
                let shadow = routes.iter().position(|earlier| {
                    let mut m = earlier.methods.clone();
                    m.sort();
                    earlier.path.as_str() == re.as_str()
                        && (earlier.methods.is_empty() || m == sorted)
                });
                if let Some(j) = shadow {
                    sub.err(
                        "path",
                        format!(
                        "can never match: routes[{j}] comes first with the same path and methods"
                    ),
                    );
                }
            }
            // A route with a problem is left out (the configuration is refused).
            let ok = sub.errors.is_empty();
            match (ok, path, protection) {
                (true, Some(path), Some(protection)) => Some(Route {
                    methods,
                    path,
                    protection,
                    scopes,
                    policy,
                    providers,
                    acr_values,
                }),
                _ => None,
            }
        },
    )
}

/// The keys that say how bearer tokens are checked.
#[cfg_attr(sesame_size, optimize(size))]
fn read_bearer(r: &mut Reader, client_id: &str) -> BearerConfig {
    let audience = r
        .string("bearer_audience")
        .unwrap_or_else(|| client_id.to_string());
    let audience_claim = r
        .string("bearer_audience_claim")
        .unwrap_or_else(|| "aud".into());
    let scopes = r.string_list("bearer_scopes").unwrap_or_default();
    if scopes.iter().any(|s| s.contains(' ')) {
        r.err("bearer_scopes", "a scope must not contain spaces");
    }
    let introspection_endpoint =
        r.string("introspection_endpoint")
            .and_then(|text| match parse_url(&text) {
                Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.has_host() => Some(u),
                _ => {
                    r.err("introspection_endpoint", "must be an absolute http(s) URL");
                    None
                }
            });
    let introspection_jwt = match r.string("introspection_format").as_deref() {
        None | Some("json") => false,
        Some("jwt") => true,
        Some(other) => {
            r.err(
                "introspection_format",
                format!("must be \"json\" or \"jwt\", not {other:?}"),
            );
            false
        }
    };
    let require_typ = r.bool("bearer_require_typ", true);
    BearerConfig {
        audience,
        audience_claim,
        scopes,
        introspection_endpoint,
        introspection_jwt,
        require_typ,
    }
}

/// `access_source`, and the claims its documents' rules may name (kept in
/// sessions).
#[cfg_attr(sesame_size, optimize(size))]
fn read_access_source(r: &mut Reader) -> (Option<AccessSource>, Vec<String>) {
    let obj = match r.obj.get("access_source") {
        None | Some(Value::Null) => return (None, Vec::new()),
        Some(Value::Object(obj)) => obj,
        Some(_) => {
            r.err(
                "access_source",
                "must be an object: {\"url\": ..., \"cluster\": ..., \"refresh_interval\": ...}",
            );
            return (None, Vec::new());
        }
    };
    let mut sub = Reader {
        obj,
        errors: Vec::new(),
    };
    for key in obj.keys() {
        if !["url", "cluster", "refresh_interval", "claims", "max_age"].contains(&key.as_str()) {
            sub.err(
                key,
                "is not a known key (url, cluster, refresh_interval, claims, max_age)",
            );
        }
    }
    let url = sub
        .required_string("url")
        .and_then(|text| match parse_url(&text) {
            Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.has_host() => Some(u),
            _ => {
                sub.err("url", "must be an absolute http(s) URL");
                None
            }
        });
    let cluster = sub.required_string("cluster");
    let refresh_interval = sub.seconds("refresh_interval", 60, 1, 86_400);
    let max_age = sub.obj.get("max_age").is_some_and(|v| !v.is_null()).then(|| {
        let age = sub.seconds("max_age", 0, 2, 30 * 86_400);
        if age <= refresh_interval {
            sub.err(
                "max_age",
                "must be longer than refresh_interval: the document would expire between two fetches",
            );
        }
        age
    });
    let claims = sub.string_list("claims").unwrap_or_default();
    for e in sub.errors {
        r.err(&format!("access_source.{}", e.key), e.message);
    }
    let source = url.zip(cluster).map(|(url, cluster)| AccessSource {
        url,
        cluster,
        refresh_interval,
        max_age,
    });
    (source, claims)
}

/// `personal_tokens`.
#[cfg_attr(sesame_size, optimize(size))]
fn read_personal_tokens(r: &mut Reader) -> Option<PersonalTokens> {
    let obj = match r.obj.get("personal_tokens") {
        None | Some(Value::Null) => return None,
        Some(Value::Object(obj)) => obj,
        Some(_) => {
            r.err(
                "personal_tokens",
                "must be an object: {\"lifetime\": ..., \"scopes\": [...]}",
            );
            return None;
        }
    };
    let mut sub = Reader {
        obj,
        errors: Vec::new(),
    };
    for key in obj.keys() {
        if !["lifetime", "scopes", "secret"].contains(&key.as_str()) {
            sub.err(key, "is not a known key (lifetime, scopes, secret)");
        }
    }
    let lifetime = sub.seconds("lifetime", 7 * 24 * 3600, 60, 365 * 24 * 3600);
    let scopes = sub.string_list("scopes").unwrap_or_default();
    let secret = sub
        .string("secret")
        .and_then(|text| match decode_secret(&text) {
            Some(bytes) if bytes.len() >= 32 => Some(bytes),
            _ => {
                sub.err(
                    "secret",
                    "must be base64 of at least 32 random bytes (`openssl rand -base64 32`)",
                );
                None
            }
        });
    for e in sub.errors {
        r.err(&format!("personal_tokens.{}", e.key), e.message);
    }
    Some(PersonalTokens {
        lifetime,
        scopes,
        secret,
    })
}

/// The filter's keys about checked bearer tokens and its own key.
#[cfg_attr(sesame_size, optimize(size))]
fn read_token_settings(r: &mut Reader, proxy_prefix: &str) -> TokenSettings {
    let cache_ttl = r.seconds("introspection_cache_ttl", 60, 0, 3600);
    let cache_size = r.seconds("introspection_cache_size", 10_000, 0, 1_000_000) as usize;
    let resource_key = match r.obj.get("resource_server_key") {
        None | Some(Value::Null) => None,
        Some(jwk) => match ResourceKey::from_jwk(jwk) {
            Ok(key) => Some(key),
            Err(e) => {
                // The message names the problem, never the key material.
                r.err("resource_server_key", e);
                None
            }
        },
    };
    let jwks_path = r
        .string("jwks_path")
        .unwrap_or_else(|| format!("{proxy_prefix}/jwks"));
    if !jwks_path.starts_with('/') || jwks_path.contains(['?', '#']) {
        r.err("jwks_path", "must be a path starting with `/`");
    }
    TokenSettings {
        cache_ttl,
        cache_size,
        resource_key,
        jwks_path,
    }
}

/// The keys that describe one provider, read from `r`: the configuration
/// itself (one provider), or one entry of `providers`.
#[cfg_attr(sesame_size, optimize(size))]
fn read_provider(
    r: &mut Reader,
    id: Option<String>,
    label: Option<String>,
    entry: bool,
) -> ProviderConfig {
    let provider = match r.string("provider").as_deref() {
        None | Some("oidc") => ProviderKind::Oidc,
        Some("proconnect") => ProviderKind::ProConnect,
        Some("oauth2") => ProviderKind::OAuth2,
        Some(other) => {
            r.err(
                "provider",
                format!("must be \"oidc\", \"proconnect\" or \"oauth2\", not {other:?}"),
            );
            ProviderKind::Oidc
        }
    };

    let environment = r.string("proconnect_environment");
    let preset_issuer = match environment.as_deref() {
        None => None,
        Some(_) if provider != ProviderKind::ProConnect => {
            r.err(
                "proconnect_environment",
                "is only for provider \"proconnect\"",
            );
            None
        }
        Some(env) => match PROCONNECT_ENVIRONMENTS
            .iter()
            .find(|(name, _)| *name == env)
        {
            Some((_, issuer)) => Some(issuer.to_string()),
            None => {
                let names: Vec<&str> = PROCONNECT_ENVIRONMENTS.iter().map(|(n, _)| *n).collect();
                r.err(
                    "proconnect_environment",
                    format!("must be one of {}", names.join(", ")),
                );
                None
            }
        },
    };
    let oauth2 = provider == ProviderKind::OAuth2;
    let endpoints = oauth2.then(|| read_oauth2_endpoints(r));
    let issuer = match (r.string("issuer"), preset_issuer) {
        (Some(issuer), _) => issuer,
        (None, Some(preset)) => preset,
        // A plain OAuth 2.0 provider has no issuer: it is named by the
        // origin of its authorization endpoint.
        (None, None) if oauth2 => endpoints
            .as_ref()
            .and_then(|e| e.as_ref())
            .map(|(e, _)| {
                let u = &e.authorization_endpoint;
                let host = &u[url::Position::BeforeHost..url::Position::AfterPort];
                format!("{}://{host}", u.scheme())
            })
            .unwrap_or_default(),
        (None, None) => {
            if environment.is_none() {
                let hint = if provider == ProviderKind::ProConnect {
                    " (or set proconnect_environment)"
                } else {
                    ""
                };
                r.err("issuer", format!("is required{hint}"));
            }
            String::new()
        }
    };
    let mut discovery_url = None;
    if !issuer.is_empty() && !oauth2 {
        match parse_url(&issuer) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {
                if u.query().is_some() || u.fragment().is_some() {
                    r.err("issuer", "must not have a query or a fragment");
                } else {
                    let text = format!(
                        "{}/.well-known/openid-configuration",
                        issuer.trim_end_matches('/')
                    );
                    discovery_url = parse_url(&text).ok();
                }
            }
            _ => r.err("issuer", "must be an absolute http(s) URL"),
        }
    }

    let idp_cluster = r.required_string("idp_cluster").unwrap_or_default();
    let client_id = r.required_string("client_id").unwrap_or_default();
    let client_secret = Secret(r.required_string("client_secret").unwrap_or_default());

    let token_endpoint_auth_method = match r.string("token_endpoint_auth_method").as_deref() {
        None | Some("client_secret_post") => ClientAuth::ClientSecretPost,
        Some("client_secret_basic") => {
            if provider == ProviderKind::ProConnect {
                r.err(
                    "token_endpoint_auth_method",
                    "ProConnect does not accept client_secret_basic; use client_secret_post",
                );
            }
            ClientAuth::ClientSecretBasic
        }
        Some(other) => {
            r.err(
                "token_endpoint_auth_method",
                format!("must be client_secret_post or client_secret_basic, not {other:?}"),
            );
            ClientAuth::ClientSecretPost
        }
    };

    let redirect_uri = match r.required_string("redirect_uri") {
        Some(text) => match parse_url(&text) {
            Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.has_host() => {
                if u.fragment().is_some() || u.query().is_some() {
                    r.err("redirect_uri", "must not have a query or a fragment");
                }
                Some(u)
            }
            _ => {
                r.err("redirect_uri", "must be an absolute http(s) URL");
                None
            }
        },
        None => None,
    };

    let default_scopes: &[&str] = match provider {
        ProviderKind::Oidc => &["openid", "email", "profile"],
        ProviderKind::OAuth2 => &[],
        ProviderKind::ProConnect => &[
            "openid",
            "email",
            "given_name",
            "usual_name",
            "uid",
            "siret",
            "idp_id",
        ],
    };
    let scopes = r
        .string_list("scopes")
        .unwrap_or_else(|| default_scopes.iter().map(|s| s.to_string()).collect());
    if !oauth2 && !scopes.iter().any(|s| s == "openid") {
        r.err("scopes", "must contain \"openid\"");
    }
    if scopes
        .iter()
        .any(|s| s.chars().any(|c| c == ' ' || c == '"' || c.is_control()))
    {
        r.err(
            "scopes",
            "a scope must not contain spaces, quotes or control characters",
        );
    }

    let fetch_userinfo = r.bool("fetch_userinfo", true);

    let id_token_signing_algs = match r.string_list("id_token_signing_algs") {
        Some(list) => {
            for alg in &list {
                if !SUPPORTED_SIGNING_ALGS.contains(&alg.as_str()) {
                    r.err(
                        "id_token_signing_algs",
                        format!(
                            "{alg:?} is not accepted; choose among {}",
                            SUPPORTED_SIGNING_ALGS.join(", ")
                        ),
                    );
                }
            }
            if list.is_empty() {
                r.err("id_token_signing_algs", "must not be empty");
            }
            list
        }
        None => SUPPORTED_SIGNING_ALGS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };

    let acr_values = r.string_list("acr_values").unwrap_or_default();
    if provider == ProviderKind::ProConnect {
        for acr in &acr_values {
            if !PROCONNECT_ACR_VALUES.contains(&acr.as_str()) {
                r.err(
                    "acr_values",
                    format!(
                        "{acr:?} is not a ProConnect ACR value ({})",
                        PROCONNECT_ACR_VALUES.join(", ")
                    ),
                );
            }
        }
    }
    if acr_values.iter().any(|a| a.contains(' ')) {
        r.err("acr_values", "an ACR value must not contain spaces");
    }
    let (claims_request, essential_acr) = match r.obj.get("claims") {
        None | Some(Value::Null) => (None, None),
        Some(v @ Value::Object(_)) => match essential_acr(v) {
            Ok(acr) => (Some(crate::core::json_text(v)), acr),
            Err(message) => {
                r.err("claims", message);
                (None, None)
            }
        },
        Some(_) => {
            r.err("claims", "must be an object (the OpenID Connect claims request), e.g. {\"id_token\": {\"amr\": {\"essential\": true}}}");
            (None, None)
        }
    };
    if oauth2 {
        for key in OIDC_ONLY_KEYS {
            if !matches!(r.obj.get(*key), None | Some(Value::Null)) {
                r.err(
                    key,
                    "is for OpenID Connect providers: a plain OAuth 2.0 provider has no ID token",
                );
            }
        }
    } else {
        for key in OAUTH2_ONLY_KEYS {
            if !matches!(r.obj.get(*key), None | Some(Value::Null)) {
                r.err(
                    key,
                    "is only for provider \"oauth2\" (OpenID providers are discovered)",
                );
            }
        }
    }
    let bearer = read_bearer(r, &client_id);
    let has_rules = [
        "allowed_emails",
        "allowed_email_domains",
        "allowed_claims",
        "allow_all_users",
    ]
    .iter()
    .any(|k| !matches!(r.obj.get(*k), None | Some(Value::Null)));
    let policy = (has_rules && entry).then(|| read_policy(r));
    if policy.as_ref().is_some_and(Policy::is_empty) {
        r.err(
            "allowed_email_domains",
            "the provider's access rules admit nobody: name emails, domains or claims",
        );
    }
    let id = id.unwrap_or_else(|| provider.name().to_string());
    let label = label.unwrap_or_else(|| match provider {
        ProviderKind::ProConnect => "ProConnect".to_string(),
        // Through parse_url, as every URL of the configuration: it refuses
        // what the URL parser's host handling must never see.
        _ => parse_url(&issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| id.clone()),
    });
    let (oauth2, claims_map) = match endpoints.flatten() {
        Some((e, map)) => (Some(e), map),
        None => (None, Vec::new()),
    };
    ProviderConfig {
        id,
        label,
        kind: provider,
        issuer,
        discovery_url,
        idp_cluster,
        client_id,
        client_secret,
        token_endpoint_auth_method,
        redirect_uri: redirect_uri.unwrap_or_else(|| Url::parse("http://invalid/").expect("a URL")),
        scopes,
        fetch_userinfo,
        id_token_signing_algs,
        acr_values,
        claims_request,
        essential_acr,
        bearer,
        policy,
        oauth2,
        claims_map,
    }
}

/// The providers: the entries of `providers`, or the one the top level
/// describes. Ids, callback paths and issuers must differ.
#[cfg_attr(sesame_size, optimize(size))]
fn read_providers(r: &mut Reader) -> Vec<ProviderConfig> {
    let items = match r.obj.get("providers") {
        None | Some(Value::Null) => return vec![read_provider(r, None, None, false)],
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(_) => {
            r.err(
                "providers",
                "must be a non-empty list of providers ({\"id\": \"kc\", \"issuer\": ...}, ...)",
            );
            return Vec::new();
        }
    };
    for key in PROVIDER_KEYS {
        if !matches!(r.obj.get(*key), None | Some(Value::Null)) {
            r.err(
                key,
                "belongs in each entry of `providers` when that list is set",
            );
        }
    }
    read_entries(
        r,
        "providers",
        items,
        (MAX_PROVIDERS, "entries"),
        "must be an object with `id` and the provider's keys",
        |sub, providers: &[ProviderConfig]| {
            let obj = sub.obj;
            for key in obj.keys() {
                if !PROVIDER_KEYS.contains(&key.as_str()) && !ENTRY_KEYS.contains(&key.as_str()) {
                    sub.err(key, "is not a key of a provider (check its spelling)");
                }
            }
            let id = sub.required_string("id").unwrap_or_default();
            if !id.is_empty()
                && (id.len() > 32
                    || !id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            {
                sub.err("id", "must be at most 32 letters, digits, `-` or `_`");
            }
            if id == "apikey" {
                sub.err(
                    "id",
                    "\"apikey\" is reserved: the upstream knows API keys as apikey:<id>",
                );
            }
            let label = sub.string("label");
            let provider = read_provider(sub, Some(id), label, true);
            let clash = |what: &str, j: usize| format!("is the {what} of providers[{j}] too");
            if let Some(j) = providers.iter().position(|p| p.id == provider.id) {
                sub.err("id", clash("id", j));
            }
            if let Some(j) = providers
                .iter()
                .position(|p| p.callback_path() == provider.callback_path())
            {
                sub.err(
                    "redirect_uri",
                    format!(
                    "{}: each provider needs its own callback path (e.g. /oauth2/callback/<id>)",
                    clash("callback path", j)
                ),
                );
            }
            if let Some(j) = providers.iter().position(|p| p.issuer == provider.issuer) {
                sub.err("issuer", clash("issuer", j));
            }
            Some(provider)
        },
    )
}

/// What a plain OAuth 2.0 provider is configured with, in place of a
/// discovery document.
#[derive(Debug, Clone)]
pub struct OAuth2Endpoints {
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub userinfo_endpoint: Url,
}

/// `authorization_endpoint`, `token_endpoint`, `userinfo_endpoint` and
/// `claims_map` of a plain OAuth 2.0 provider; `None` when one is missing
/// or wrong (each problem is reported).
#[cfg_attr(sesame_size, optimize(size))]
fn read_oauth2_endpoints(r: &mut Reader) -> Option<(OAuth2Endpoints, Vec<(String, String)>)> {
    let url = |r: &mut Reader, key: &str| {
        let text = r.required_string(key)?;
        match parse_url(&text) {
            Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.has_host() => Some(u),
            _ => {
                r.err(key, "must be an absolute http(s) URL");
                None
            }
        }
    };
    let authorization_endpoint = url(r, "authorization_endpoint");
    let token_endpoint = url(r, "token_endpoint");
    let userinfo_endpoint = url(r, "userinfo_endpoint");
    let mut claims_map = Vec::new();
    match r.obj.get("claims_map") {
        Some(Value::Object(map)) => {
            for (claim, pointer) in map {
                match pointer.as_str() {
                    Some(p) if p.starts_with('/') => claims_map.push((claim.clone(), p.to_string())),
                    _ => r.err(
                        "claims_map",
                        format!("{claim:?} must map to a JSON pointer such as \"/user/id\""),
                    ),
                }
            }
            if !map.contains_key("sub") {
                r.err("claims_map", "must map \"sub\": the stable identifier of the person (e.g. \"/user/id\")");
            }
        }
        None | Some(Value::Null) => r.err(
            "claims_map",
            "is required: claim name -> JSON pointer into the userinfo answer, with \"sub\" (e.g. {\"sub\": \"/user/id\"})",
        ),
        Some(_) => r.err("claims_map", "must be an object: claim name -> JSON pointer"),
    }
    Some((
        OAuth2Endpoints {
            authorization_endpoint: authorization_endpoint?,
            token_endpoint: token_endpoint?,
            userinfo_endpoint: userinfo_endpoint?,
        },
        claims_map,
    ))
}

/// The log lines that refuse a configuration: each problem, then the
/// refusal itself.
#[cfg_attr(sesame_size, optimize(size))]
pub fn refusal_lines(errors: &[ConfigError]) -> Vec<String> {
    let mut lines: Vec<String> = errors
        .iter()
        .map(|e| format!("invalid configuration: {e}"))
        .collect();
    lines.push(format!(
        "configuration refused ({} problem(s)); the filter will not start",
        errors.len()
    ));
    lines
}

impl Config {
    /// Parses and validates the plugin configuration. On failure, every problem
    /// found is returned, not only the first one.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn parse(bytes: &[u8]) -> Result<Config, Vec<ConfigError>> {
        let value: Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => {
                return Err(vec![ConfigError {
                    key: "(document)".into(),
                    message: format!("is {}", super::json_error(&e)),
                }])
            }
        };
        let Value::Object(obj) = value else {
            return Err(vec![ConfigError {
                key: "(document)".into(),
                message: "must be a JSON object".into(),
            }]);
        };
        let mut r = Reader {
            obj: &obj,
            errors: Vec::new(),
        };
        for key in obj.keys() {
            if !KNOWN_KEYS.contains(&key.as_str()) {
                r.err(key, "is not a known key (check its spelling)");
            }
        }
        let providers = read_providers(&mut r);

        let cookie_secret = match r.required_string("cookie_secret") {
            Some(text) => match decode_secret(&text) {
                Some(bytes) if bytes.len() >= 32 => bytes,
                Some(bytes) => {
                    r.err(
                        "cookie_secret",
                        format!(
                            "must decode to at least 32 random bytes, it gives {} (generate one with `openssl rand -base64 32`)",
                            bytes.len()
                        ),
                    );
                    Vec::new()
                }
                None => {
                    r.err("cookie_secret", "must be base64 (standard or URL-safe)");
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let cookie_secure = r.bool("cookie_secure", true);
        let cookie_name = r.string("cookie_name").unwrap_or_else(|| "_sesame".into());
        if !cookie_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            r.err(
                "cookie_name",
                "may only contain letters, digits, `_` and `-`",
            );
        }
        let cookie_domain = r.string("cookie_domain");
        if let Some(d) = &cookie_domain {
            if !d
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            {
                r.err("cookie_domain", "must be a domain name");
            }
        }
        // Browsers read the prefixes in any case, and drop a cookie that
        // breaks their rules: say so at load, not with a sign-in that never
        // completes.
        let lower = cookie_name.to_ascii_lowercase();
        if lower.starts_with("__host-") {
            if !cookie_name.starts_with("__Host-") {
                r.err("cookie_name", "write the prefix as browsers do: __Host-");
            }
            if cookie_domain.is_some() {
                r.err(
                    "cookie_domain",
                    "cannot be set with a __Host- cookie_name: a __Host- cookie belongs to one host",
                );
            }
            if !cookie_secure {
                r.err("cookie_secure", "must be true with a __Host- cookie_name");
            }
        } else if lower.starts_with("__secure-") {
            if !cookie_name.starts_with("__Secure-") {
                r.err("cookie_name", "write the prefix as browsers do: __Secure-");
            }
            if !cookie_secure {
                r.err("cookie_secure", "must be true with a __Secure- cookie_name");
            }
        }
        let strip_session_cookies = r.bool("strip_session_cookies", true);
        let session_lifetime = r.seconds("session_lifetime", 12 * 3600, 1, 30 * 24 * 3600);
        let refresh_sessions = r.bool("refresh_sessions", true);
        let refresh_margin = r.seconds("refresh_margin", 60, 0, 3600);
        let session_cache_size = r.seconds("session_cache_size", 2048, 0, 100_000) as usize;

        let mut skip_auth_routes = Vec::new();
        for (i, route) in r
            .string_list("skip_auth_routes")
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let (method, pattern) = match route.split_once('=') {
                Some((m, p)) if !m.is_empty() && m.chars().all(|c| c.is_ascii_uppercase()) => {
                    (Some(m.to_string()), p)
                }
                _ => (None, route.as_str()),
            };
            match PathPattern::new(pattern) {
                Ok(path) => skip_auth_routes.push(SkipRoute { method, path }),
                Err(e) => r.err(
                    "skip_auth_routes",
                    format!("item {i} is not a valid regex: {e}"),
                ),
            }
        }

        let policy = read_policy(&mut r);
        let (access_source, access_claims) = read_access_source(&mut r);
        if access_source.is_some() {
            if !policy.is_empty() {
                r.err(
                    "access_source",
                    "the filter-level rules come from the access document: leave out allowed_emails, allowed_email_domains, allowed_claims and allow_all_users",
                );
            }
            if providers.iter().any(|p| p.policy.is_some()) {
                r.err(
                    "access_source",
                    "the access document's rules apply to every provider: leave out the providers' own rules",
                );
            }
            if obj.contains_key("api_keys") {
                r.err(
                    "api_keys",
                    "with access_source, API keys are listed in the access document",
                );
            }
        } else if policy.is_empty() && providers.iter().any(|p| p.policy.is_none()) {
            r.err(
                "allowed_email_domains",
                "no access rule is set: set allowed_email_domains, allowed_emails or allowed_claims (use allowed_email_domains: [\"*\"] to admit every authenticated user with a verified email, allow_all_users: true for a provider that knows no email)",
            );
        }

        let proxy_prefix = r.string("proxy_prefix").unwrap_or_else(|| "/oauth2".into());
        if !proxy_prefix.starts_with('/')
            || proxy_prefix.starts_with("//")
            || proxy_prefix.ends_with('/')
            || proxy_prefix.contains(['?', '#', ' ', '\\'])
            || !proxy_prefix.is_ascii()
        {
            r.err(
                "proxy_prefix",
                "must be an ASCII path that starts with one `/` and does not end with `/` \
                 (e.g. \"/oauth2\")",
            );
        }

        let mut claim_headers: Vec<(String, String)> = DEFAULT_CLAIM_HEADERS
            .iter()
            .map(|(h, c)| (h.to_string(), c.to_string()))
            .collect();
        match obj.get("claim_headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (header, claim) in map {
                    if header.is_empty() || !header.chars().all(is_token_char) {
                        r.err(
                            "claim_headers",
                            format!("{header:?} is not a valid header name"),
                        );
                        continue;
                    }
                    if header.starts_with(':') || header.eq_ignore_ascii_case("host") {
                        r.err("claim_headers", format!("{header:?} may not be set"));
                        continue;
                    }
                    claim_headers.retain(|(h, _)| !h.eq_ignore_ascii_case(header));
                    match claim {
                        Value::Null => {}
                        Value::String(c) if !c.is_empty() => {
                            claim_headers.push((header.clone(), c.clone()))
                        }
                        _ => r.err(
                            "claim_headers",
                            format!("{header:?} must map to a claim name, or null to turn the header off"),
                        ),
                    }
                }
            }
            Some(_) => r.err(
                "claim_headers",
                "must be an object: header name -> claim name",
            ),
        }

        // Tokens reach the upstream only when asked for (oauth2-proxy's
        // default too), and /oauth2/auth answers with them only when asked
        // for as well.
        let pass_access_token = r.bool("pass_access_token", false);
        let pass_id_token = r.bool("pass_id_token", false);
        let auth_endpoint_tokens = r.bool("auth_endpoint_tokens", false);
        let set_authorization_header = r.bool("set_authorization_header", false);
        let qualified_user = r.bool("qualified_user", false);
        let silent_sign_in = r.bool("silent_sign_in", false);

        let clock_skew = r.seconds("clock_skew", 60, 0, 600);
        let provider_timeout_ms = r.seconds("provider_timeout_ms", 5000, 100, 60_000);
        let provider_refresh_interval =
            r.seconds("provider_refresh_interval", 3600, 10, 7 * 24 * 3600);
        let provider_retry_max = r.seconds("provider_retry_max", 30, 1, 3600);
        let jwks_refetch_min_interval = r.seconds("jwks_refetch_min_interval", 30, 0, 3600);

        let help_contact = r.string("help_contact").and_then(|text| {
            let contact = HelpContact::parse(&text);
            if contact.is_none() {
                r.err(
                    "help_contact",
                    "must be an email address (help@example.gouv.fr) or an https URL (https://example.gouv.fr/help)",
                );
            }
            contact
        });
        let api_keys = ApiKeys::new(read_api_keys(&mut r));
        let personal_tokens = read_personal_tokens(&mut r);

        let provider_logout = r.bool("provider_logout", true);
        let skip_provider_button = r.bool("skip_provider_button", true);
        let ids: Vec<&str> = providers.iter().map(|p| p.id.as_str()).collect();
        let routes = read_routes(&mut r, &ids);
        let tokens = read_token_settings(&mut r, &proxy_prefix);
        let post_logout_redirect_uri = match r.string("post_logout_redirect_uri") {
            Some(text) => match parse_url(&text) {
                Ok(u)
                    if (u.scheme() == "https" || u.scheme() == "http")
                        && u.has_host()
                        && u.query().is_none()
                        && u.fragment().is_none() =>
                {
                    Some(u)
                }
                _ => {
                    r.err(
                        "post_logout_redirect_uri",
                        "must be an absolute http(s) URL without query or fragment",
                    );
                    None
                }
            },
            None => providers.first().and_then(|p| {
                p.redirect_uri
                    .join(&format!("{proxy_prefix}/signed_out"))
                    .ok()
            }),
        };
        if let Some(logout) = &post_logout_redirect_uri {
            if logout.path() == "/" || providers.iter().any(|p| p.callback_path() == logout.path())
            {
                r.err(
                    "post_logout_redirect_uri",
                    "needs a path of its own (e.g. /oauth2/signed_out): Sésame answers on it, so it can be neither / nor the callback's path",
                );
            }
        }
        let mut allowed_redirect_domains = Vec::new();
        for d in r
            .string_list("allowed_redirect_domains")
            .unwrap_or_default()
        {
            let d = d.trim().to_ascii_lowercase();
            let bare = d.strip_prefix('.').unwrap_or(&d);
            if bare.is_empty()
                || !bare
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':')
            {
                r.err("allowed_redirect_domains", format!("{d:?} is not a host name (\"app.example.fr\", or \".example.fr\" for sub-domains)"));
            } else {
                allowed_redirect_domains.push(d);
            }
        }

        let mut kept_claims: BTreeSet<String> = [
            "sub",
            "email",
            "email_verified",
            "preferred_username",
            "name",
            "given_name",
            "usual_name",
            "family_name",
            "acr",
            "amr",
            "idp_id",
            "siret",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        kept_claims.extend(claim_headers.iter().map(|(_, c)| c.clone()));
        kept_claims.extend(policy.claims.iter().map(|(c, _)| c.clone()));
        kept_claims.extend(access_claims);
        for p in &providers {
            kept_claims.extend(p.claims_map.iter().map(|(c, _)| c.clone()));
            if let Some(policy) = &p.policy {
                kept_claims.extend(policy.claims.iter().map(|(c, _)| c.clone()));
            }
        }
        // A route's own rules are checked on the session's claims too.
        for route in &routes {
            if let Some(p) = &route.policy {
                kept_claims.extend(p.claims.iter().map(|(c, _)| c.clone()));
            }
        }

        let mut owned_headers: Vec<String> = DEFAULT_CLAIM_HEADERS
            .iter()
            .map(|(h, _)| *h)
            .chain(claim_headers.iter().map(|(h, _)| h.as_str()))
            .chain([ID_TOKEN_HEADER, ACCESS_TOKEN_HEADER, PROVIDER_HEADER])
            .chain(set_authorization_header.then_some("authorization"))
            .map(|h| h.to_ascii_lowercase().replace('_', "-"))
            .collect();
        owned_headers.sort();
        owned_headers.dedup();

        if !r.errors.is_empty() {
            return Err(r.errors);
        }
        Ok(Config {
            providers,
            cookie_secret,
            cookie_secure,
            cookie_name,
            cookie_domain,
            strip_session_cookies,
            session_lifetime,
            refresh_sessions,
            refresh_margin,
            session_cache_size,
            skip_auth_routes,
            policy,
            proxy_prefix,
            claim_headers,
            pass_access_token,
            pass_id_token,
            auth_endpoint_tokens,
            set_authorization_header,
            qualified_user,
            silent_sign_in,
            clock_skew,
            provider_timeout_ms,
            provider_refresh_interval,
            provider_retry_max,
            jwks_refetch_min_interval,
            post_logout_redirect_uri: post_logout_redirect_uri.expect("checked above"),
            provider_logout,
            allowed_redirect_domains,
            skip_provider_button,
            routes,
            tokens,
            kept_claims,
            access_source,
            api_keys,
            personal_tokens,
            help_contact,
            owned_headers,
        })
    }

    /// The provider whose callback path is `path`.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn provider_by_callback(&self, path: &str) -> Option<usize> {
        self.providers
            .iter()
            .position(|p| p.callback_path() == path)
    }

    /// The provider named `id`.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn provider_by_id(&self, id: &str) -> Option<usize> {
        self.providers.iter().position(|p| p.id == id)
    }

    /// Every header name Sésame may set upstream, lower-cased, with `-`: incoming
    /// copies of these are always removed.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn identity_header_names(&self) -> &[String] {
        &self.owned_headers
    }
}

#[cfg_attr(sesame_size, optimize(size))]
pub(crate) fn decode_secret(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let t = text.trim();
    base64::engine::general_purpose::STANDARD
        .decode(t)
        .or_else(|_| {
            base64::engine::general_purpose::STANDARD_NO_PAD.decode(t.trim_end_matches('='))
        })
        .or_else(|_| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t.trim_end_matches('='))
        })
        .ok()
}

/// The `acr` a claims request (OpenID Connect Core 5.5) asks for as essential
/// in the ID token: `None` when it asks for none (or only voluntarily), the
/// accepted values otherwise (empty: any `acr`, but one must be there).
#[cfg_attr(sesame_size, optimize(size))]
fn essential_acr(claims: &Value) -> Result<Option<Vec<String>>, String> {
    let Some(acr) = claims.get("id_token").and_then(|t| t.get("acr")) else {
        return Ok(None);
    };
    if acr.is_null() {
        return Ok(None);
    }
    let Some(acr) = acr.as_object() else {
        return Err("id_token.acr must be null or an object such as {\"essential\": true, \"values\": [\"eidas2\"]}".into());
    };
    match acr.get("essential") {
        None | Some(Value::Bool(false)) => return Ok(None),
        Some(Value::Bool(true)) => {}
        Some(_) => return Err("id_token.acr.essential must be true or false".into()),
    }
    let mut accepted = Vec::new();
    match acr.get("value") {
        None => {}
        Some(Value::String(v)) => accepted.push(v.clone()),
        Some(_) => return Err("id_token.acr.value must be a string".into()),
    }
    match acr.get("values") {
        None => {}
        Some(Value::Array(list)) => {
            for v in list {
                match v.as_str() {
                    Some(v) => accepted.push(v.to_string()),
                    None => return Err("id_token.acr.values must be a list of strings".into()),
                }
            }
        }
        Some(_) => return Err("id_token.acr.values must be a list of strings".into()),
    }
    Ok(Some(accepted))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn minimal() -> Value {
        json!({
            "issuer": "http://127.0.0.1:9000",
            "idp_cluster": "idp",
            "client_id": "sesame",
            "client_secret": "s3cr3t-value",
            "redirect_uri": "http://127.0.0.1:10000/oauth2/callback",
            "cookie_secret": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            "cookie_secure": false,
            "allowed_email_domains": ["*"]
        })
    }

    pub fn config_with(patch: Value) -> Config {
        let mut v = minimal();
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        Config::parse(v.to_string().as_bytes()).expect("valid test config")
    }

    fn errors_for(v: Value) -> Vec<ConfigError> {
        Config::parse(v.to_string().as_bytes()).expect_err("should be refused")
    }

    #[test]
    fn an_issuer_with_an_escaped_host_is_refused_without_reaching_the_host_parser() {
        // Found by the config fuzz target: the provider's default label read
        // the issuer's host with the URL parser itself, whose IDNA step
        // asserts on such a host.
        let errors = errors_for(json!({
            "issuer": "https:/apP%C3%A9X.fr",
            "post_logout_redirect_uri": "https://apP%C3%A9X.fr/out",
        }));
        assert!(errors.iter().any(|e| e.key == "issuer"), "{errors:?}");
    }

    #[test]
    fn minimal_config_has_secure_defaults() {
        let c = Config::parse(minimal().to_string().as_bytes()).unwrap();
        assert_eq!(c.proxy_prefix, "/oauth2");
        assert_eq!(c.session_lifetime, 43200);
        assert_eq!(c.providers[0].callback_path(), "/oauth2/callback");
        assert_eq!(
            c.providers[0].token_endpoint_auth_method,
            ClientAuth::ClientSecretPost
        );
        assert_eq!(
            c.providers[0].discovery_url.as_ref().unwrap().as_str(),
            "http://127.0.0.1:9000/.well-known/openid-configuration"
        );
        assert!(!c.providers[0]
            .id_token_signing_algs
            .iter()
            .any(|a| a.starts_with("HS") || a == "none"));
        let mut v = minimal();
        v.as_object_mut().unwrap().remove("cookie_secure");
        assert!(
            Config::parse(v.to_string().as_bytes())
                .unwrap()
                .cookie_secure
        );
    }

    #[test]
    fn cookie_name_prefixes_are_held_to_the_browsers_rules() {
        let with = |patch: Value| {
            let mut v = minimal();
            for (k, val) in patch.as_object().unwrap() {
                v[k] = val.clone();
            }
            Config::parse(v.to_string().as_bytes())
        };
        assert!(with(json!({"cookie_name": "__Host-sesame", "cookie_secure": true})).is_ok());
        assert!(with(json!({"cookie_name": "__Secure-sesame", "cookie_secure": true})).is_ok());
        for (patch, key) in [
            (
                json!({"cookie_name": "__Host-sesame", "cookie_domain": "example.fr", "cookie_secure": true}),
                "cookie_domain",
            ),
            (
                json!({"cookie_name": "__Host-sesame", "cookie_secure": false}),
                "cookie_secure",
            ),
            (
                json!({"cookie_name": "__Secure-sesame", "cookie_secure": false}),
                "cookie_secure",
            ),
            (
                json!({"cookie_name": "__host-sesame", "cookie_secure": true}),
                "cookie_name",
            ),
        ] {
            let errors = with(patch.clone()).expect_err("refused");
            assert!(errors.iter().any(|e| e.key == key), "{patch}: {errors:?}");
        }
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let errs = errors_for(json!({
            "issuer": "not a url",
            "client_id": 3,
            "cookie_secret": "c2hvcnQ=",
            "scopes": ["email"],
            "colour": "blue",
            "allowed_email_domains": ["*"],
            "skip_auth_routes": ["GET=^/ping(", "^/ok$"],
        }));
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        for expected in [
            "issuer",
            "client_id",
            "idp_cluster",
            "client_secret",
            "redirect_uri",
            "cookie_secret",
            "scopes",
            "colour",
            "skip_auth_routes",
        ] {
            assert!(
                keys.contains(&expected),
                "missing error for {expected}: {errs:?}"
            );
        }
    }

    #[test]
    fn urls_and_prefix_must_be_ascii() {
        for (key, value) in [
            ("proxy_prefix", "//évil.example"),
            ("proxy_prefix", "//evil.example"),
            ("proxy_prefix", "/connexion-é"),
            (
                "post_logout_redirect_uri",
                "https:/.apP\u{d2}\u{92}xXX.example/out",
            ),
            ("redirect_uri", "https://économie.gouv.fr/oauth2/callback"),
            ("issuer", "https://IdP.économie.gouv.fr"),
        ] {
            let mut v = minimal();
            v[key] = json!(value);
            let errs = errors_for(v);
            assert!(
                errs.iter().any(|e| e.key == key),
                "{key}={value:?}: {errs:?}"
            );
        }
    }

    #[test]
    fn errors_never_contain_secrets() {
        let mut v = minimal();
        v["client_secret"] = json!(42);
        v["cookie_secret"] = json!("dG9vIHNob3J0LXRoaXMtaXMtdGhlLXNlY3JldA==");
        for e in errors_for(v) {
            assert!(!e.to_string().contains("dG9vIHNob3J0"), "{e}");
        }
        let c = Config::parse(minimal().to_string().as_bytes()).unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t-value"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let mut v = minimal();
        v["cookie_secure"] = json!("yes");
        v["token_endpoint_auth_method"] = json!("private_key_jwt_typo");
        v["provider"] = json!("keycloak");
        v["id_token_signing_algs"] = json!(["HS256", "none"]);
        v["session_lifetime"] = json!(0);
        let keys: Vec<String> = errors_for(v).into_iter().map(|e| e.key).collect();
        for k in [
            "cookie_secure",
            "token_endpoint_auth_method",
            "provider",
            "id_token_signing_algs",
            "session_lifetime",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} not refused: {keys:?}");
        }
    }

    #[test]
    fn help_contact_is_an_email_address_or_an_https_url() {
        assert_eq!(config_with(json!({})).help_contact, None);
        let mail = config_with(json!({"help_contact": "support.app@numerique.gouv.fr"}));
        assert_eq!(
            mail.help_contact,
            Some(HelpContact {
                href: "mailto:support.app@numerique.gouv.fr".into(),
                text: "support.app@numerique.gouv.fr".into(),
            })
        );
        let url = config_with(json!({"help_contact": "https://app.example.gouv.fr/aide"}));
        assert_eq!(
            url.help_contact.map(|c| c.href),
            Some("https://app.example.gouv.fr/aide".to_string())
        );
        for bad in [
            json!("http://app.example.gouv.fr/aide"),
            json!("javascript:alert(1)"),
            json!("support"),
            json!("a b@example.fr"),
            json!("<x>@example.fr"),
            json!("x@localhost"),
            json!("x@example.fr\n"),
            json!(""),
            json!(["support@example.fr"]),
        ] {
            let mut v = minimal();
            v["help_contact"] = bad.clone();
            let errors = errors_for(v);
            assert!(
                errors.iter().any(|e| e.key == "help_contact"),
                "{bad} accepted: {errors:?}"
            );
        }
    }

    #[test]
    fn an_access_rule_is_required() {
        let mut v = minimal();
        v.as_object_mut().unwrap().remove("allowed_email_domains");
        let errs = errors_for(v);
        assert!(errs[0].message.contains("no access rule"));
    }

    #[test]
    fn proconnect_refuses_client_secret_basic() {
        let mut v = minimal();
        v["provider"] = json!("proconnect");
        v["token_endpoint_auth_method"] = json!("client_secret_basic");
        assert_eq!(errors_for(v)[0].key, "token_endpoint_auth_method");
        let c = config_with(json!({"provider": "proconnect"}));
        assert!(c.providers[0].scopes.contains(&"siret".to_string()));
    }

    #[test]
    fn proconnect_environments_set_the_issuer() {
        let mut v = minimal();
        v.as_object_mut().unwrap().remove("issuer");
        v["provider"] = json!("proconnect");
        v["proconnect_environment"] = json!("production");
        let c = Config::parse(v.to_string().as_bytes()).unwrap();
        assert_eq!(
            c.providers[0].issuer,
            "https://auth.agentconnect.gouv.fr/api/v2"
        );
        assert_eq!(
            c.providers[0].discovery_url.as_ref().unwrap().as_str(),
            "https://auth.agentconnect.gouv.fr/api/v2/.well-known/openid-configuration"
        );
        v["issuer"] = json!("https://fca.integ01.dev-agentconnect.fr/api/v2");
        assert_eq!(
            Config::parse(v.to_string().as_bytes()).unwrap().providers[0].issuer,
            "https://fca.integ01.dev-agentconnect.fr/api/v2"
        );
        v["proconnect_environment"] = json!("staging");
        v["acr_values"] = json!(["eidas9"]);
        let keys: Vec<String> = errors_for(v.clone()).into_iter().map(|e| e.key).collect();
        assert!(
            keys.contains(&"proconnect_environment".to_string())
                && keys.contains(&"acr_values".to_string())
        );
        v["provider"] = json!("oidc");
        v["proconnect_environment"] = json!("production");
        v["acr_values"] = json!(["eidas1"]);
        assert_eq!(errors_for(v)[0].key, "proconnect_environment");
    }

    #[test]
    fn logout_and_redirect_options() {
        let c = config_with(json!({}));
        assert_eq!(
            c.post_logout_redirect_uri.as_str(),
            "http://127.0.0.1:10000/oauth2/signed_out"
        );
        assert!(c.provider_logout && c.skip_provider_button);
        let c = config_with(
            json!({"post_logout_redirect_uri": "https://app.example.fr/bye", "allowed_redirect_domains": [".Example.fr"]}),
        );
        assert_eq!(c.post_logout_redirect_uri.path(), "/bye");
        assert_eq!(c.allowed_redirect_domains, vec![".example.fr".to_string()]);
        let mut v = minimal();
        v["post_logout_redirect_uri"] = json!("http://127.0.0.1:10000/");
        v["allowed_redirect_domains"] = json!(["evil/.fr"]);
        v["claims"] = json!("amr");
        let keys: Vec<String> = errors_for(v).into_iter().map(|e| e.key).collect();
        for k in [
            "post_logout_redirect_uri",
            "allowed_redirect_domains",
            "claims",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k}: {keys:?}");
        }
    }

    #[test]
    fn essential_acr_is_read_from_the_claims_request() {
        let c = config_with(
            json!({"claims": {"id_token": {"acr": {"essential": true, "value": "eidas2"}}}}),
        );
        assert_eq!(
            c.providers[0].essential_acr,
            Some(vec!["eidas2".to_string()])
        );
        let c = config_with(
            json!({"claims": {"id_token": {"acr": {"essential": false, "values": ["eidas2"]}}}}),
        );
        assert_eq!(c.providers[0].essential_acr, None);
        let c = config_with(json!({"claims": {"userinfo": {"acr": {"essential": true}}}}));
        assert_eq!(c.providers[0].essential_acr, None);
        for bad in [
            json!({"id_token": {"acr": "eidas2"}}),
            json!({"id_token": {"acr": {"essential": "yes"}}}),
            json!({"id_token": {"acr": {"essential": true, "values": "eidas2"}}}),
            json!({"id_token": {"acr": {"essential": true, "value": 2}}}),
        ] {
            let mut v = minimal();
            v["claims"] = bad.clone();
            assert_eq!(errors_for(v)[0].key, "claims", "{bad}");
        }
    }

    #[test]
    fn routes_are_checked_and_every_problem_named() {
        let c = config_with(json!({"routes": [
            {"path": "^/api/", "mode": "bearer", "scopes": ["api:read"]},
            {"methods": ["GET", "HEAD"], "path": "^/health$", "mode": "public"},
            {"path": "^/team/", "mode": "session", "allowed_emails": ["a@b.fr"]}
        ]}));
        assert_eq!(c.routes.len(), 3);
        let c2 = config_with(json!({"routes": [
            {"path": "^/team/", "mode": "session", "allowed_claims": {"siret": ["13002526500013"]}}
        ]}));
        assert!(
            c2.kept_claims.contains("siret"),
            "a route's claim must stay in the session"
        );
        assert!(c.routes[2].policy.is_some() && c.routes[0].policy.is_none());
        assert_eq!(c.providers[0].bearer.audience, "sesame");
        assert_eq!(c.providers[0].bearer.audience_claim, "aud");
        let mut v = minimal();
        v["routes"] = json!([
            {"path": "^/a/", "mode": "bearer"},
            {"path": "^/a/", "mode": "session"},
            {"path": "^api/", "mode": "bearer"},
            {"path": "^/b/", "mode": "cookie"},
            {"path": "(", "mode": "bearer"},
            {"path": "^/c/", "mode": "public", "scopes": ["x"]},
            {"path": "^/d/", "mode": "session", "scopes": ["x"]},
            {"path": "^/e/", "mode": "bearer", "methods": ["get"], "colour": "red"},
            {"mode": "bearer"},
            "^/f/"
        ]);
        v["introspection_format"] = json!("xml");
        let keys: Vec<String> = errors_for(v).into_iter().map(|e| e.key).collect();
        for k in [
            "routes[1].path",
            "routes[2].path",
            "routes[3].mode",
            "routes[4].path",
            "routes[5].mode",
            "routes[6].scopes",
            "routes[7].methods",
            "routes[7].colour",
            "routes[8].path",
            "routes[9]",
            "introspection_format",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} not in {keys:?}");
        }
        assert!(!keys.iter().any(|x| x.starts_with("routes[0]")), "{keys:?}");
    }

    #[test]
    fn skip_routes_with_and_without_method() {
        let c = config_with(json!({"skip_auth_routes": ["GET=^/ping$", "^/public/", "^/a=b$"]}));
        assert!(c.skip_auth_routes[0].matches("GET", "/ping"));
        assert!(!c.skip_auth_routes[0].matches("POST", "/ping"));
        assert!(c.skip_auth_routes[1].matches("POST", "/public/x"));
        assert!(c.skip_auth_routes[2].matches("GET", "/a=b"));
    }

    #[test]
    fn claim_headers_extend_and_disable_defaults() {
        let c = config_with(
            json!({"claim_headers": {"X-Siret": "siret", "x-forwarded-preferred-username": null}}),
        );
        assert!(c
            .claim_headers
            .iter()
            .any(|(h, cl)| h == "X-Siret" && cl == "siret"));
        assert!(!c
            .claim_headers
            .iter()
            .any(|(h, _)| h == "X-Forwarded-Preferred-Username"));
        assert!(c.kept_claims.contains("siret"));
        // Incoming copies are stripped even for disabled headers.
        assert!(c
            .identity_header_names()
            .iter()
            .any(|h| h == "x-forwarded-preferred-username"));
    }
}
