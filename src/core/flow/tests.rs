//! The whole sign-in flow driven through the core, with a simulated provider
//! (tokens signed with test keys): every decision the adapter would carry out.

use std::cell::Cell;

use jwt_simple::prelude::*;
use serde_json::{json, Value};

use crate::core::config::tests::config_with;
use crate::core::flow::headers::Upstream;
use crate::core::flow::{Action, Filter, Outcome, Step};
use crate::core::http::{ProviderResponse, Request, Response};
use crate::core::oidc::provider::{ProviderMetadata, ProviderState};
use crate::core::oidc::token::tests::{claims, es256, es256_at, key_set, CLIENT, ISSUER, NOW};
use crate::core::shared::MemoryStore;
use crate::core::testing::CountingEntropy;
use crate::core::Clock;

pub(super) fn provider() -> ProviderState {
    discovered(ISSUER)
}

/// A provider at `issuer`, discovered and with the test keys.
pub(super) fn discovered(issuer: &str) -> ProviderState {
    let discovery = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/auth"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/me"),
        "jwks_uri": format!("{issuer}/jwks"),
    });
    let mut state = ProviderState::default();
    let metadata = ProviderMetadata::parse(issuer, discovery.to_string().as_bytes()).unwrap();
    state.refreshed(metadata, key_set(), NOW - 100, 3600);
    state
}

pub(super) fn get<'a>(path: &'a str, headers: &[(&'a str, &'a str)]) -> Request<'a> {
    Request {
        method: "GET",
        path,
        headers: headers.to_vec(),
    }
}

/// The headers the upstream gets: the request's, changed as the step says.
pub(super) fn forwarded(req: &Request, step: Step) -> Vec<(String, String)> {
    match step.action {
        Action::ContinueWith(u) | Action::ContinueWithCookies(u, _) => u.apply(&req.headers),
        Action::Continue => Upstream::default().apply(&req.headers),
        a => panic!("expected the request to go upstream, got {a:?}"),
    }
}

const HTML: (&str, &str) = ("accept", "text/html,application/xhtml+xml");

pub(super) fn response(step: Step) -> Response {
    match step.action {
        Action::Respond(r) => r,
        other => panic!("expected a response, got {other:?} ({:?})", step.outcome),
    }
}

pub(super) fn set_cookies(r: &Response) -> Vec<(String, String)> {
    r.headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| {
            let (n, val) = v.split(';').next().unwrap().split_once('=').unwrap();
            (n.to_string(), val.to_string())
        })
        .collect()
}

pub(super) fn cookie_header(cookies: &[(String, String)]) -> String {
    cookies
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn param(url: &str, name: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    u.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Starts a login from `path`; returns the 302 and the browser's cookies.
pub(super) fn start(filter: &Filter, path: &str) -> (Response, Vec<(String, String)>) {
    let r = response(filter.on_request(
        &get(path, &[HTML]),
        &[provider()],
        NOW,
        &mut CountingEntropy(1),
    ));
    let cookies = set_cookies(&r);
    (r, cookies)
}

pub(super) fn json_response(status: u16, content_type: &str, body: &str) -> ProviderResponse {
    ProviderResponse {
        status,
        headers: vec![
            (":status".into(), status.to_string()),
            ("content-type".into(), content_type.into()),
        ],
        body: body.as_bytes().to_vec(),
    }
}

fn id_token_for(nonce: &str) -> String {
    let mut c = claims(json!({}));
    c.nonce = Some(nonce.into());
    es256(c)
}

fn userinfo_jwt(email: &str) -> String {
    let mut c = claims(
        json!({"email": email, "siret": "13002526500013", "given_name": "Alice", "usual_name": "Martin"}),
    );
    c.nonce = None;
    es256(c)
}

pub(super) struct Login {
    /// Final step of the callback.
    pub(super) step: Step,
    /// Requests made to the provider (token, [jwks], userinfo), in order.
    calls: Vec<crate::core::http::ProviderCall>,
}

/// Runs a whole sign-in; `id_token` is what the token endpoint returns given the nonce.
fn run_login(
    filter: &Filter,
    state: &mut ProviderState,
    email: &str,
    id_token: impl Fn(&str) -> String,
) -> Login {
    run_login_with(filter, state, email, id_token, json!({}))
}

/// [`run_login`] with more fields in the token response (`refresh_token`...).
fn run_login_with(
    filter: &Filter,
    state: &mut ProviderState,
    email: &str,
    id_token: impl Fn(&str) -> String,
    token_extra: Value,
) -> Login {
    run_login_in(filter, state, email, id_token, token_extra, "")
}

/// Runs a whole sign-in in a browser that already holds `existing` cookies.
fn run_login_in(
    filter: &Filter,
    state: &mut ProviderState,
    email: &str,
    id_token: impl Fn(&str) -> String,
    token_extra: Value,
    existing: &str,
) -> Login {
    let (redirect, _) = start(filter, "/chat?x=1");
    complete_login(
        filter,
        state,
        &redirect,
        id_token,
        token_extra,
        existing,
        email,
    )
}

/// Completes a sign-in that `redirect` (a step's answer) sent to the
/// provider: the callback with the provider's code, then its calls.
pub(super) fn complete_login(
    filter: &Filter,
    state: &mut ProviderState,
    redirect: &Response,
    id_token: impl Fn(&str) -> String,
    token_extra: Value,
    existing: &str,
    email: &str,
) -> Login {
    let cookies = set_cookies(redirect);
    let location = redirect.header("location").unwrap().to_string();
    let nonce = param(&location, "nonce");
    let cb = format!(
        "/oauth2/callback?code=abc&state={}&iss={}",
        param(&location, "state"),
        ISSUER
    );
    let cookie = [existing.to_string(), cookie_header(&cookies)]
        .iter()
        .filter(|c| !c.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    let mut step = filter.on_request(
        &get(&cb, &[("cookie", &cookie)]),
        std::slice::from_mut(state),
        NOW,
        &mut CountingEntropy(2),
    );
    let mut calls = Vec::new();
    loop {
        let (call, pending) = match step.action {
            Action::Call(call, pending) => (call, pending),
            _ => return Login { step, calls },
        };
        let answer = if call.path.starts_with("/token") {
            let mut body = json!({"id_token": id_token(&nonce), "access_token": "at-1", "token_type": "Bearer"});
            if let (Some(body), Some(extra)) = (body.as_object_mut(), token_extra.as_object()) {
                body.extend(extra.clone());
            }
            json_response(200, "application/json", &body.to_string())
        } else if call.path.starts_with("/me") {
            json_response(200, "application/jwt", &userinfo_jwt(email))
        } else {
            json_response(
                200,
                "application/json",
                &crate::core::oidc::token::tests::test_jwks().to_string(),
            )
        };
        calls.push(call);
        step = filter.on_provider_response(
            *pending,
            &answer,
            std::slice::from_mut(state),
            NOW,
            &mut CountingEntropy(3),
            &MemoryStore::default(),
        );
    }
}

/// The provider call a step makes; panics on any other action.
fn pending_call(step: Step) -> Box<crate::core::flow::Pending> {
    match step.action {
        Action::Call(_, pending) => pending,
        a => panic!(
            "expected a call to the provider, got {a:?} ({:?})",
            step.outcome
        ),
    }
}

/// A refused sign-in as the browser sees it: the callback's redirect to the
/// clean address (never with the code or the state), then the page there.
/// The redirect's headers (its cookies) are kept, the page's status and body
/// are the page's.
fn refusal_page(f: &Filter, step: Step) -> Response {
    let redirect = response(step);
    assert_eq!(
        redirect.status,
        302,
        "{}",
        String::from_utf8_lossy(&redirect.body)
    );
    let location = redirect.header("location").unwrap().to_string();
    assert!(location.starts_with("/oauth2/failed?"), "{location}");
    assert!(
        !location.contains("code=") && !location.contains("state="),
        "{location}"
    );
    let cookie = cookie_header(&set_cookies(&redirect));
    let page = response(f.on_request(
        &get(&location, &[HTML, ("cookie", &cookie)]),
        &[provider()],
        NOW,
        &mut CountingEntropy(9),
    ));
    Response {
        headers: redirect.headers,
        ..page
    }
}

pub(super) fn filter(patch: Value) -> Filter {
    Filter::new(config_with(patch))
}

#[test]
fn navigation_without_session_goes_to_the_provider() {
    let f = filter(json!({}));
    let (r, cookies) = start(&f, "/chat?x=1");
    assert_eq!(r.status, 302);
    let loc = r.header("location").unwrap();
    assert!(loc.starts_with(&format!("{ISSUER}/auth?")));
    assert_eq!(param(loc, "response_type"), "code");
    assert_eq!(param(loc, "client_id"), CLIENT);
    assert_eq!(
        param(loc, "redirect_uri"),
        "http://127.0.0.1:10000/oauth2/callback"
    );
    assert_eq!(param(loc, "code_challenge_method"), "S256");
    assert!(param(loc, "state").len() >= 32 && param(loc, "nonce").len() >= 32);
    assert_ne!(param(loc, "state"), param(loc, "nonce"));
    assert_eq!(cookies.len(), 1);
    assert!(cookies[0].0.starts_with("_sesame_csrf_"));
    let raw = r
        .headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .unwrap()
        .1
        .clone();
    assert!(
        raw.contains("Path=/oauth2/callback")
            && raw.contains("HttpOnly")
            && raw.contains("Max-Age=600")
    );
}

#[test]
fn scripts_websockets_and_posts_get_401() {
    let f = filter(json!({}));
    for req in [
        get("/api", &[("accept", "application/json")]),
        get("/api", &[]),
        get("/page", &[HTML, ("x-requested-with", "XMLHttpRequest")]),
        get("/page", &[HTML, ("sec-fetch-mode", "cors")]),
        get(
            "/_event",
            &[HTML, ("upgrade", "websocket"), ("connection", "upgrade")],
        ),
        Request {
            method: "POST",
            ..get("/form", &[HTML])
        },
    ] {
        let step = f.on_request(&req, &[provider()], NOW, &mut CountingEntropy(1));
        assert_eq!(step.outcome, Outcome::Unauthenticated, "{req:?}");
        assert_eq!(response(step).status, 401);
    }
    let nav = get(
        "/page",
        &[("sec-fetch-mode", "navigate"), ("accept", "*/*")],
    );
    assert_eq!(
        response(f.on_request(&nav, &[provider()], NOW, &mut CountingEntropy(1))).status,
        302
    );
}

#[test]
fn full_login_then_identity_headers_upstream() {
    let f = filter(json!({"claim_headers": {"X-Forwarded-Siret": "siret"},
                          "pass_access_token": true, "pass_id_token": true}));
    let mut state = provider();
    let login = run_login(&f, &mut state, "alice@numerique.gouv.fr", id_token_for);
    let token_call = &login.calls[0];
    let body = String::from_utf8(token_call.body.clone().unwrap()).unwrap();
    assert!(body.contains("grant_type=authorization_code") && body.contains("code=abc"));
    assert!(body.contains("code_verifier=") && body.contains("client_secret=s3cr3t-value"));
    assert_eq!(login.calls[1].path, "/me");
    assert!(login.calls[1]
        .headers
        .contains(&("authorization".into(), "Bearer at-1".into())));
    assert!(
        matches!(login.step.outcome, Outcome::LoginSucceeded { .. }),
        "{:?}",
        login.step.outcome
    );
    let r = response(login.step);
    assert_eq!(r.header("location"), Some("/chat?x=1"));
    let cookies = set_cookies(&r);
    assert!(
        cookies
            .iter()
            .any(|(n, v)| n.starts_with("_sesame_csrf_") && v.is_empty()),
        "login cookie cleared"
    );

    let session_cookie = cookie_header(&cookies);
    let req = get(
        "/chat",
        &[
            ("cookie", &session_cookie),
            ("X-Forwarded-Email", "boss@evil"),
            ("x_forwarded_user", "boss"),
        ],
    );
    let step = f.on_request(
        &req,
        std::slice::from_ref(&state),
        NOW + 10,
        &mut CountingEntropy(4),
    );
    assert_eq!(step.outcome, Outcome::Passed);
    let headers = forwarded(&req, step);
    let get_h = |n: &str| {
        headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(get_h("x-forwarded-email"), vec!["alice@numerique.gouv.fr"]);
    assert_eq!(get_h("x-forwarded-user"), vec!["alice-7f3a"]);
    assert!(get_h("x_forwarded_user").is_empty());
    assert_eq!(get_h("x-forwarded-siret"), vec!["13002526500013"]);
    assert_eq!(get_h("x-auth-request-access-token"), vec!["at-1"]);
    assert_eq!(get_h("x-forwarded-id-token").len(), 1);

    // The session expires after its lifetime.
    let later = f.on_request(
        &get("/chat", &[("cookie", &session_cookie), HTML]),
        std::slice::from_ref(&state),
        NOW + 43200,
        &mut CountingEntropy(5),
    );
    assert_eq!(later.outcome, Outcome::LoginStarted);
}

#[test]
fn client_secret_basic_sends_credentials_in_the_header() {
    let f = filter(json!({"token_endpoint_auth_method": "client_secret_basic"}));
    let login = run_login(&f, &mut provider(), "alice@numerique.gouv.fr", id_token_for);
    let call = &login.calls[0];
    let body = String::from_utf8(call.body.clone().unwrap()).unwrap();
    assert!(!body.contains("client_secret"));
    let auth = call
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .unwrap();
    assert!(auth.1.starts_with("Basic "));
}

#[test]
fn wrong_nonce_is_refused() {
    let f = filter(json!({}));
    let login = run_login(&f, &mut provider(), "alice@numerique.gouv.fr", |_| {
        id_token_for(&"z".repeat(43))
    });
    assert!(matches!(
        login.step.outcome,
        Outcome::LoginFailed {
            reason: "nonce_mismatch",
            ..
        }
    ));
    let r = refusal_page(&f, login.step);
    assert_eq!(r.status, 401);
    assert!(!set_cookies(&r)
        .iter()
        .any(|(n, v)| n == "_sesame" && !v.is_empty()));
}

#[test]
fn unknown_kid_refetches_the_keys_once() {
    let f = filter(json!({}));
    let mut state = provider();
    // Our copy of the keys lacks the EC key: the token's kid is unknown.
    let mut partial = key_set();
    partial.keys.retain(|k| k.kid.as_deref() != Some("ec-1"));
    state.keys = Some(partial);
    state.keys_fetched_at = 0;
    let login = run_login(&f, &mut state, "alice@numerique.gouv.fr", id_token_for);
    assert_eq!(login.calls[1].path, "/jwks");
    assert!(matches!(login.step.outcome, Outcome::LoginSucceeded { .. }));
    assert!(state
        .keys
        .unwrap()
        .keys
        .iter()
        .any(|k| k.kid.as_deref() == Some("ec-1")));

    // A kid nobody has: one refetch, then refusal; no second refetch right after.
    let stranger = ES256KeyPair::generate().with_key_id("ec-9");
    refused_after_one_key_refetch(&f, signed_by(&stranger));
}

/// ID tokens for a sign-in's nonce, signed by `key`.
fn signed_by(key: &ES256KeyPair) -> impl Fn(&str) -> String + '_ {
    move |nonce: &str| {
        let mut c = claims(json!({}));
        c.nonce = Some(nonce.into());
        key.sign(c).unwrap()
    }
}

/// A sign-in with `id_token` fetches the keys once and is refused; another
/// one right after makes no fetch (rate limited).
fn refused_after_one_key_refetch(f: &Filter, id_token: impl Fn(&str) -> String) {
    let mut state = provider();
    state.keys_fetched_at = 0;
    let jwks_calls = |login: &Login| login.calls.iter().filter(|c| c.path == "/jwks").count();
    let login = run_login(f, &mut state, "alice@numerique.gouv.fr", &id_token);
    assert_eq!(jwks_calls(&login), 1);
    assert!(matches!(
        login.step.outcome,
        Outcome::LoginFailed {
            reason: "id_token_invalid",
            ..
        }
    ));
    let again = run_login(f, &mut state, "alice@numerique.gouv.fr", &id_token);
    assert_eq!(jwks_calls(&again), 0, "rate limited");
}

#[test]
fn access_rules_apply_at_login_and_on_each_request() {
    let f = filter(json!({"allowed_email_domains": ["*.gouv.fr"]}));
    let login = run_login(&f, &mut provider(), "eve@example.com", id_token_for);
    assert!(
        matches!(&login.step.outcome, Outcome::Denied { who, sign_in: true, .. } if who.email.as_deref() == Some("eve@example.com"))
    );
    let r = refusal_page(&f, login.step);
    assert_eq!(r.status, 403);
    let body = String::from_utf8(r.body.clone()).unwrap();
    assert!(body.contains("eve@example.com") && body.contains("/oauth2/sign_out"));
    assert!(!set_cookies(&r)
        .iter()
        .any(|(n, v)| n == "_sesame" && !v.is_empty()));

    // A session made under looser rules is refused once the rules change.
    let open = filter(json!({"allowed_email_domains": ["*"]}));
    let login = run_login(&open, &mut provider(), "eve@example.com", id_token_for);
    let cookie = cookie_header(&set_cookies(&response(login.step)));
    let step = f.on_request(
        &get("/", &[("cookie", &cookie)]),
        &[provider()],
        NOW,
        &mut CountingEntropy(1),
    );
    assert_eq!(response(step).status, 403);
}

#[test]
fn callback_refusals() {
    let f = filter(json!({}));
    let state = provider();
    let (redirect, cookies) = start(&f, "/chat");
    let loc = redirect.header("location").unwrap().to_string();
    let st = param(&loc, "state");
    let cookie = cookie_header(&cookies);
    let cases: Vec<(String, String, &str, u16)> = vec![
        (
            format!("/oauth2/callback?code=c&state={}", "A".repeat(43)),
            cookie.clone(),
            "state_mismatch",
            400,
        ),
        (
            format!("/oauth2/callback?code=c&state={st}"),
            String::new(),
            "missing_login_cookie",
            400,
        ),
        (
            "/oauth2/callback?code=c".into(),
            cookie.clone(),
            "missing_state",
            400,
        ),
        (
            format!("/oauth2/callback?state={st}"),
            cookie.clone(),
            "missing_code",
            400,
        ),
        (
            format!("/oauth2/callback?code=c&state={st}&state={st}"),
            cookie.clone(),
            "malformed_callback",
            400,
        ),
        (
            format!("/oauth2/callback?code=c&state={st}&iss=http://evil"),
            cookie.clone(),
            "issuer_mismatch",
            400,
        ),
        (
            format!("/oauth2/callback?error=access_denied&error_description=<b>no</b>&state={st}"),
            cookie.clone(),
            "cancelled",
            401,
        ),
        (
            format!("/oauth2/callback?error=server_error&state={st}"),
            cookie.clone(),
            "provider_error",
            403,
        ),
        (
            format!("/oauth2/callback?code={}&state={st}", "x".repeat(9000)),
            cookie.clone(),
            "malformed_callback",
            400,
        ),
    ];
    for (path, cookie, reason, status) in cases {
        let step = f.on_request(
            &get(&path, &[("cookie", &cookie)]),
            std::slice::from_ref(&state),
            NOW,
            &mut CountingEntropy(1),
        );
        assert!(
            matches!(&step.outcome, Outcome::LoginFailed { reason: r, .. } if *r == reason),
            "{path}: {:?}",
            step.outcome
        );
        let r = refusal_page(&f, step);
        assert_eq!(r.status, status, "{path}");
        assert!(
            !String::from_utf8(r.body).unwrap().contains("<b>"),
            "provider text is escaped"
        );
    }
    // The same cookie after its lifetime.
    let cb = format!("/oauth2/callback?code=c&state={st}");
    let step = f.on_request(
        &get(&cb, &[("cookie", &cookie)]),
        std::slice::from_ref(&state),
        NOW + 601,
        &mut CountingEntropy(1),
    );
    assert!(matches!(
        step.outcome,
        Outcome::LoginFailed {
            reason: "login_expired",
            ..
        }
    ));
}

#[test]
fn a_failed_token_call_gives_503_to_that_sign_in_only() {
    let f = filter(json!({}));
    let mut state = provider();
    let login = run_login(&f, &mut state, "alice@numerique.gouv.fr", id_token_for);
    let cookie = cookie_header(&set_cookies(&response(login.step)));

    // The token endpoint does not answer: 503 for this sign-in. One
    // request's call never decides whether the provider is up.
    let (redirect, cookies) = start(&f, "/chat");
    let st = param(redirect.header("location").unwrap(), "state");
    let cb = format!("/oauth2/callback?code=c&state={st}");
    let step = f.on_request(
        &get(&cb, &[("cookie", &cookie_header(&cookies))]),
        std::slice::from_ref(&state),
        NOW,
        &mut CountingEntropy(1),
    );
    let Action::Call(_, pending) = step.action else {
        panic!()
    };
    let step = f.on_provider_response(
        *pending,
        &ProviderResponse::default(),
        std::slice::from_mut(&mut state),
        NOW,
        &mut CountingEntropy(1),
        &MemoryStore::default(),
    );
    assert_eq!(step.outcome, Outcome::ProviderUnavailable);
    let r = response(step);
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    assert!(state.ready());

    // New visitors still start a sign-in, signed-in people keep working.
    let nav = f.on_request(
        &get("/", &[HTML]),
        std::slice::from_ref(&state),
        NOW,
        &mut CountingEntropy(1),
    );
    assert_eq!(nav.outcome, Outcome::LoginStarted);
    let signed_in = f.on_request(
        &get("/", &[("cookie", &cookie)]),
        std::slice::from_ref(&state),
        NOW,
        &mut CountingEntropy(1),
    );
    assert_eq!(signed_in.outcome, Outcome::Passed);
}

#[test]
fn skip_routes_pass_but_are_stripped_and_not_fooled() {
    let f = filter(json!({"skip_auth_routes": ["GET=^/ping$", "^/public/"]}));
    let ping = get("/ping", &[("x-forwarded-email", "boss@x")]);
    let step = f.on_request(&ping, &[provider()], NOW, &mut CountingEntropy(1));
    assert_eq!(step.outcome, Outcome::Public);
    assert!(matches!(step.action, Action::ContinueWith(_)));
    let h = forwarded(&ping, step);
    assert!(!h.iter().any(|(k, _)| k == "x-forwarded-email"));
    assert!(matches!(
        f.on_request(
            &get("/ping", &[]),
            &[provider()],
            NOW,
            &mut CountingEntropy(1)
        )
        .action,
        Action::Continue
    ));
    for path in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/..%2fadmin",
        "/public\\..\\admin",
        "/public/..;/admin",
        "/public;/../admin",
    ] {
        let step = f.on_request(&get(path, &[]), &[provider()], NOW, &mut CountingEntropy(1));
        assert_eq!(step.outcome, Outcome::Unauthenticated, "{path}");
    }
    // Encoded twice: a server that decodes twice reads `..`. Refused.
    let step = f.on_request(
        &get("/public/%252e%252e/admin", &[]),
        &[provider()],
        NOW,
        &mut CountingEntropy(1),
    );
    assert!(matches!(step.outcome, Outcome::PathRefused { .. }));
    assert_eq!(response(step).status, 400);
    let post = Request {
        method: "POST",
        ..get("/ping", &[])
    };
    assert_eq!(
        f.on_request(&post, &[provider()], NOW, &mut CountingEntropy(1))
            .outcome,
        Outcome::Unauthenticated
    );
}

#[test]
fn auth_userinfo_and_sign_out_endpoints() {
    let f = filter(json!({}));
    let mut state = provider();
    let login = run_login(&f, &mut state, "alice@numerique.gouv.fr", id_token_for);
    let cookie = cookie_header(&set_cookies(&response(login.step)));

    let r = response(f.on_request(
        &get("/oauth2/auth", &[("cookie", &cookie)]),
        std::slice::from_ref(&state),
        NOW,
        &mut CountingEntropy(1),
    ));
    assert_eq!(r.status, 202);
    assert_eq!(
        r.header("x-auth-request-email"),
        Some("alice@numerique.gouv.fr")
    );
    assert_eq!(r.header("x-auth-request-user"), Some("alice-7f3a"));
    let r = response(f.on_request(
        &get("/oauth2/auth", &[("cookie", "_sesame=forged")]),
        std::slice::from_ref(&state),
        NOW,
        &mut CountingEntropy(1),
    ));
    assert_eq!(r.status, 401);

    let r = response(f.on_request(
        &get("/oauth2/userinfo", &[("cookie", &cookie)]),
        std::slice::from_ref(&state),
        NOW,
        &mut CountingEntropy(1),
    ));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["email"], "alice@numerique.gouv.fr");
    assert_eq!(v["user"], "alice-7f3a");
    assert_eq!(v["name"], "Alice Martin");

    for (rd, expected) in [
        ("/bye", "/bye"),
        ("//evil.example", "/"),
        ("https://evil.example", "/"),
    ] {
        let path = format!(
            "/oauth2/sign_out?rd={}",
            url::form_urlencoded::byte_serialize(rd.as_bytes()).collect::<String>()
        );
        let r = response(f.on_request(
            &get(&path, &[("cookie", &cookie)]),
            std::slice::from_ref(&state),
            NOW,
            &mut CountingEntropy(1),
        ));
        assert_eq!(r.header("location"), Some(expected));
        assert!(r.headers.iter().any(|(k, v)| k == "set-cookie"
            && v.starts_with("_sesame=;")
            && v.contains("Max-Age=0")));
    }
    let r = response(f.on_request(
        &get("/oauth2/nope", &[]),
        std::slice::from_ref(&state),
        NOW,
        &mut CountingEntropy(1),
    ));
    assert_eq!(r.status, 404);
}

#[test]
fn provider_not_ready_gives_503_to_navigations() {
    let f = filter(json!({}));
    let state = ProviderState::default();
    let step = f.on_request(
        &get("/", &[HTML]),
        std::slice::from_ref(&state),
        NOW,
        &mut CountingEntropy(1),
    );
    assert_eq!(step.outcome, Outcome::ProviderUnavailable);
    let step = f.on_request(
        &get("/oauth2/sign_in?rd=/x", &[]),
        std::slice::from_ref(&state),
        NOW,
        &mut CountingEntropy(1),
    );
    assert_eq!(response(step).status, 503);
}

#[test]
fn tampered_session_cookie_is_no_session_and_is_cleared() {
    let f = filter(json!({}));
    let mut state = provider();
    let login = run_login(&f, &mut state, "alice@numerique.gouv.fr", id_token_for);
    let cookies = set_cookies(&response(login.step));
    let (name, value) = cookies.iter().find(|(n, _)| n == "_sesame").unwrap();
    let mut bytes = value.clone().into_bytes();
    bytes[20] = if bytes[20] == b'x' { b'y' } else { b'x' };
    let forged = format!("{name}={}", String::from_utf8(bytes).unwrap());
    let step = f.on_request(
        &get("/", &[("cookie", &forged), HTML]),
        std::slice::from_ref(&state),
        NOW,
        &mut CountingEntropy(1),
    );
    assert_eq!(step.outcome, Outcome::LoginStarted);
    let r = response(step);
    assert!(r
        .headers
        .iter()
        .any(|(k, v)| k == "set-cookie" && v.starts_with("_sesame=;")));
}

fn provider_with_logout() -> ProviderState {
    let mut state = provider();
    if let Some(m) = state.metadata.as_mut() {
        m.end_session_endpoint = Some(url::Url::parse(&format!("{ISSUER}/session/end")).unwrap());
    }
    state
}

pub(super) fn id_token_with_acr(acr: &'static str) -> impl Fn(&str) -> String {
    move |nonce: &str| {
        let mut c = claims(json!({"acr": acr}));
        c.nonce = Some(nonce.into());
        es256(c)
    }
}

#[test]
fn acr_is_requested_and_enforced() {
    let f = filter(
        json!({"acr_values": ["eidas2", "eidas3"], "claims": {"id_token": {"amr": {"essential": true}}}}),
    );
    let (r, _) = start(&f, "/");
    let loc = r.header("location").unwrap();
    assert_eq!(param(loc, "acr_values"), "eidas2 eidas3");
    assert_eq!(
        param(loc, "claims"),
        r#"{"id_token":{"amr":{"essential":true}}}"#
    );

    let low = run_login(
        &f,
        &mut provider(),
        "alice@numerique.gouv.fr",
        id_token_with_acr("eidas1"),
    );
    assert!(matches!(
        low.step.outcome,
        Outcome::LoginFailed {
            reason: "acr_not_satisfied",
            ..
        }
    ));
    let r = refusal_page(&f, low.step);
    assert_eq!(r.status, 403);
    assert!(String::from_utf8(r.body.clone())
        .unwrap()
        .contains("Niveau d’authentification insuffisant"));
    assert!(!set_cookies(&r)
        .iter()
        .any(|(n, v)| n == "_sesame" && !v.is_empty()));

    let ok = run_login(
        &f,
        &mut provider(),
        "alice@numerique.gouv.fr",
        id_token_with_acr("eidas2"),
    );
    assert!(matches!(ok.step.outcome, Outcome::LoginSucceeded { .. }));
    // Without acr_values, any acr is fine.
    let plain = filter(json!({}));
    let any = run_login(
        &plain,
        &mut provider(),
        "alice@numerique.gouv.fr",
        id_token_with_acr("eidas0"),
    );
    assert!(matches!(any.step.outcome, Outcome::LoginSucceeded { .. }));
}

#[test]
fn essential_acr_of_the_claims_request_is_enforced() {
    let request = json!({"id_token": {"acr": {"essential": true, "values": ["eidas2", "eidas3"]}}});
    let f = filter(json!({ "claims": request }));
    let login = |f: &Filter, acr: &'static str| {
        run_login(
            f,
            &mut provider(),
            "alice@numerique.gouv.fr",
            id_token_with_acr(acr),
        )
        .step
    };
    let low = login(&f, "eidas1");
    assert!(
        matches!(
            low.outcome,
            Outcome::LoginFailed {
                reason: "acr_not_satisfied",
                ..
            }
        ),
        "{:?}",
        low.outcome
    );
    assert_eq!(refusal_page(&f, low).status, 403);
    assert!(matches!(
        login(&f, "eidas3").outcome,
        Outcome::LoginSucceeded { .. }
    ));

    // Essential without values: any acr, but there must be one.
    let f = filter(json!({"claims": {"id_token": {"acr": {"essential": true}}}}));
    assert!(matches!(
        login(&f, "eidas0").outcome,
        Outcome::LoginSucceeded { .. }
    ));
    let none = run_login(
        &f,
        &mut provider(),
        "alice@numerique.gouv.fr",
        |nonce: &str| {
            let mut c = claims(json!({}));
            c.nonce = Some(nonce.into());
            es256(c)
        },
    );
    assert!(matches!(
        none.step.outcome,
        Outcome::LoginFailed {
            reason: "acr_not_satisfied",
            ..
        }
    ));

    // Asked for voluntarily: a preference, not a requirement.
    let f = filter(json!({"claims": {"id_token": {"acr": {"values": ["eidas2"]}}}}));
    assert!(matches!(
        login(&f, "eidas1").outcome,
        Outcome::LoginSucceeded { .. }
    ));
}

#[test]
fn prompt_values_proconnect_refuses_are_not_forwarded() {
    let sign_in = |f: &Filter| {
        f.on_request(
            &get("/oauth2/sign_in?rd=%2F&prompt=select_account", &[HTML]),
            &[provider()],
            NOW,
            &mut CountingEntropy(1),
        )
    };
    let proconnect = filter(json!({"provider": "proconnect", "issuer": ISSUER}));
    let step = sign_in(&proconnect);
    assert!(matches!(
        step.outcome,
        Outcome::LoginFailed {
            reason: "invalid_sign_in_parameter",
            ..
        }
    ));
    let page = response(step);
    assert_eq!(page.status, 400);
    assert!(String::from_utf8_lossy(&page.body).contains("prompt must be login, consent or none"));

    let oidc = filter(json!({}));
    let r = response(sign_in(&oidc));
    assert_eq!(r.status, 302);
    assert_eq!(
        param(r.header("location").unwrap(), "prompt"),
        "select_account"
    );
}

#[test]
fn sign_in_hints_are_forwarded_and_checked() {
    let f = filter(json!({}));
    let path = "/oauth2/sign_in?rd=%2Fchat&idp_hint=fia1v2&login_hint=alice%40numerique.gouv.fr&siret_hint=13002526500013&prompt=login&foo=bar&response_mode=form_post";
    let r = response(f.on_request(&get(path, &[]), &[provider()], NOW, &mut CountingEntropy(1)));
    let loc = r.header("location").unwrap();
    assert_eq!(param(loc, "idp_hint"), "fia1v2");
    assert_eq!(param(loc, "login_hint"), "alice@numerique.gouv.fr");
    assert_eq!(param(loc, "siret_hint"), "13002526500013");
    assert_eq!(param(loc, "prompt"), "login");
    let names: Vec<String> = url::Url::parse(loc)
        .unwrap()
        .query_pairs()
        .map(|(k, _)| k.into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n == "foo" || n == "response_mode" || n == "rd"),
        "{names:?}"
    );
    for bad in [
        "siret_hint=123",
        "login_hint=not-an-email",
        "prompt=always",
        "idp_hint=a%20b",
        "prompt=login&prompt=none",
    ] {
        let step = f.on_request(
            &get(&format!("/oauth2/sign_in?{bad}"), &[]),
            &[provider()],
            NOW,
            &mut CountingEntropy(1),
        );
        assert!(
            matches!(
                step.outcome,
                Outcome::LoginFailed {
                    reason: "invalid_sign_in_parameter",
                    ..
                }
            ),
            "{bad}"
        );
        assert_eq!(response(step).status, 400);
    }
}

#[test]
fn sign_in_page_when_the_provider_button_is_not_skipped() {
    let f =
        filter(json!({"skip_provider_button": false, "provider": "proconnect", "issuer": ISSUER}));
    let r = response(f.on_request(
        &get("/chat?x=1", &[HTML]),
        &[provider()],
        NOW,
        &mut CountingEntropy(1),
    ));
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("/oauth2/sign_in?rd=%2Fchat%3Fx%3D1")
    );
    let page = response(f.on_request(
        &get("/oauth2/sign_in?rd=%2Fchat%3Fx%3D1", &[HTML]),
        &[provider()],
        NOW,
        &mut CountingEntropy(1),
    ));
    assert_eq!(page.status, 200);
    let body = String::from_utf8(page.body).unwrap();
    assert!(
        body.contains("ProConnect") && body.contains("href=\"/oauth2/start?rd=%2Fchat%3Fx%3D1\"")
    );
    let english = response(f.on_request(
        &get("/oauth2/sign_in", &[("accept-language", "en-US,en;q=0.9")]),
        &[provider()],
        NOW,
        &mut CountingEntropy(1),
    ));
    assert!(String::from_utf8(english.body)
        .unwrap()
        .contains("Sign in with"));
    let go = response(f.on_request(
        &get("/oauth2/start?rd=%2Fchat", &[]),
        &[provider()],
        NOW,
        &mut CountingEntropy(1),
    ));
    assert!(go
        .header("location")
        .unwrap()
        .starts_with(&format!("{ISSUER}/auth?")));
}

#[test]
fn provider_logout_round_trip_checks_the_state() {
    let f = filter(json!({"allowed_redirect_domains": ["app.example.fr"]}));
    let mut state = provider_with_logout();
    let login = run_login(&f, &mut state, "alice@numerique.gouv.fr", id_token_for);
    let session_cookies = set_cookies(&response(login.step));
    let cookie = cookie_header(&session_cookies);

    let out = response(f.on_request(
        &get(
            "/oauth2/sign_out?rd=https%3A%2F%2Fapp.example.fr%2Fbye",
            &[("cookie", &cookie)],
        ),
        std::slice::from_ref(&state),
        NOW,
        &mut CountingEntropy(9),
    ));
    let loc = out.header("location").unwrap().to_string();
    assert!(loc.starts_with(&format!("{ISSUER}/session/end?")));
    assert!(!param(&loc, "id_token_hint").is_empty());
    assert_eq!(
        param(&loc, "post_logout_redirect_uri"),
        "http://127.0.0.1:10000/oauth2/signed_out"
    );
    let logout_state = param(&loc, "state");
    assert_eq!(logout_state.len(), 43);
    let cookies = set_cookies(&out);
    assert!(
        cookies.iter().any(|(n, v)| n == "_sesame" && v.is_empty()),
        "session cleared"
    );
    let logout_cookie = cookie_header(&cookies);

    // Back from the provider with the right state: on to rd.
    let back = format!("/oauth2/signed_out?state={logout_state}");
    let r = response(f.on_request(
        &get(&back, &[("cookie", &logout_cookie)]),
        std::slice::from_ref(&state),
        NOW,
        &mut CountingEntropy(1),
    ));
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("https://app.example.fr/bye"));
    // A forged state, or no cookie: a page, not a redirect.
    for (path, c) in [
        (
            format!("/oauth2/signed_out?state={}", "A".repeat(43)),
            logout_cookie.clone(),
        ),
        (back.clone(), String::new()),
    ] {
        let step = f.on_request(
            &get(&path, &[("cookie", &c)]),
            std::slice::from_ref(&state),
            NOW,
            &mut CountingEntropy(1),
        );
        assert!(matches!(
            step.outcome,
            Outcome::LoginFailed {
                reason: "logout_state_mismatch",
                ..
            }
        ));
        let r = response(step);
        assert_eq!(r.status, 400);
        assert!(r.header("location").is_none());
    }
    // Not allow-listed: back to "/" after the provider.
    let out = response(f.on_request(
        &get(
            "/oauth2/sign_out?rd=https%3A%2F%2Fevil.example%2F",
            &[("cookie", &cookie)],
        ),
        std::slice::from_ref(&state),
        NOW,
        &mut CountingEntropy(9),
    ));
    let st = param(out.header("location").unwrap(), "state");
    let r = response(f.on_request(
        &get(
            &format!("/oauth2/signed_out?state={st}"),
            &[("cookie", &cookie_header(&set_cookies(&out)))],
        ),
        std::slice::from_ref(&state),
        NOW,
        &mut CountingEntropy(1),
    ));
    assert_eq!(r.header("location"), Some("/"));
    // provider_logout off: straight to rd.
    let local = filter(json!({"provider_logout": false}));
    let r = response(local.on_request(
        &get("/oauth2/sign_out?rd=%2Fx", &[("cookie", &cookie)]),
        std::slice::from_ref(&state),
        NOW,
        &mut CountingEntropy(1),
    ));
    assert_eq!(r.header("location"), Some("/x"));
}

#[test]
fn proconnect_requires_signed_userinfo_and_builds_the_display_name() {
    let f = filter(json!({"provider": "proconnect", "issuer": ISSUER}));
    let mut state = provider();
    let (redirect, cookies) = start(&f, "/");
    let loc = redirect.header("location").unwrap().to_string();
    let cb = format!("/oauth2/callback?code=c&state={}", param(&loc, "state"));
    let step = f.on_request(
        &get(&cb, &[("cookie", &cookie_header(&cookies))]),
        std::slice::from_ref(&state),
        NOW,
        &mut CountingEntropy(1),
    );
    let Action::Call(_, pending) = step.action else {
        panic!()
    };
    let tokens = json!({"id_token": id_token_for(&param(&loc, "nonce")), "access_token": "at", "token_type": "Bearer"});
    let step = f.on_provider_response(
        *pending,
        &json_response(200, "application/json", &tokens.to_string()),
        std::slice::from_mut(&mut state),
        NOW,
        &mut CountingEntropy(1),
        &MemoryStore::default(),
    );
    let Action::Call(_, pending) = step.action else {
        panic!()
    };
    let plain = json!({"sub": "alice-7f3a", "email": "alice@numerique.gouv.fr"}).to_string();
    let step = f.on_provider_response(
        *pending,
        &json_response(200, "application/json", &plain),
        std::slice::from_mut(&mut state),
        NOW,
        &mut CountingEntropy(1),
        &MemoryStore::default(),
    );
    assert!(matches!(
        step.outcome,
        Outcome::LoginFailed {
            reason: "userinfo_invalid",
            ..
        }
    ));

    let login = run_login(&f, &mut provider(), "alice@numerique.gouv.fr", id_token_for);
    let cookie = cookie_header(&set_cookies(&response(login.step)));
    let r = response(f.on_request(
        &get("/oauth2/userinfo", &[("cookie", &cookie)]),
        &[provider()],
        NOW,
        &mut CountingEntropy(1),
    ));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["name"], "Alice Martin");
}

#[test]
fn denied_page_follows_the_browser_language() {
    let f = filter(json!({"allowed_email_domains": ["*.gouv.fr"]}));
    let open = filter(json!({}));
    let login = run_login(&open, &mut provider(), "eve@example.com", id_token_for);
    let cookie = cookie_header(&set_cookies(&response(login.step)));
    let fr = response(f.on_request(
        &get("/", &[("cookie", &cookie)]),
        &[provider()],
        NOW,
        &mut CountingEntropy(1),
    ));
    assert!(String::from_utf8(fr.body).unwrap().contains("Accès refusé"));
    let en = response(f.on_request(
        &get("/", &[("cookie", &cookie), ("accept-language", "en")]),
        &[provider()],
        NOW,
        &mut CountingEntropy(1),
    ));
    let body = String::from_utf8(en.body).unwrap();
    assert!(
        body.contains("Access denied")
            && body.contains("eve@example.com")
            && !body.contains("Accès refusé")
    );
}

#[test]
fn refusal_pages_name_the_help_contact_when_configured() {
    let help =
        json!({"allowed_email_domains": ["*.gouv.fr"], "help_contact": "aide@example.gouv.fr"});
    let f = filter(help);
    let open = filter(json!({}));
    let login = run_login(&open, &mut provider(), "eve@example.com", id_token_for);
    let cookie = cookie_header(&set_cookies(&response(login.step)));
    let denied = response(f.on_request(
        &get("/", &[("cookie", &cookie)]),
        &[provider()],
        NOW,
        &mut CountingEntropy(1),
    ));
    assert_eq!(denied.status, 403);
    let body = String::from_utf8(denied.body).unwrap();
    assert!(
        body.contains("Besoin d’aide ? Contactez <a href=\"mailto:aide@example.gouv.fr\">"),
        "{body}"
    );
    // The provider out of reach: the 503 page says it too, in English here.
    let down = response(f.on_request(
        &get("/", &[("accept", "text/html"), ("accept-language", "en")]),
        &[ProviderState::default()],
        NOW,
        &mut CountingEntropy(1),
    ));
    assert_eq!(down.status, 503);
    assert!(String::from_utf8(down.body)
        .unwrap()
        .contains("Need help? Contact"));
    // Without help_contact, nothing of the kind.
    let plain = filter(json!({"allowed_email_domains": ["*.gouv.fr"]}));
    let denied = response(plain.on_request(
        &get("/", &[("cookie", &cookie)]),
        &[provider()],
        NOW,
        &mut CountingEntropy(1),
    ));
    let body = String::from_utf8(denied.body).unwrap();
    assert!(!body.contains("Besoin") && !body.contains("<!--"), "{body}");
}

// --------------------------------------------------------------------------
// Session refresh

/// Signs in with a token response carrying a refresh token and an access
/// token of `expires_in` seconds; returns the browser's session cookie header.
fn signed_in_with_refresh(f: &Filter, expires_in: u64) -> String {
    let login = run_login_with(
        f,
        &mut provider(),
        "alice@numerique.gouv.fr",
        id_token_for,
        json!({"refresh_token": "rt-1", "expires_in": expires_in}),
    );
    let r = response(login.step);
    assert_eq!(r.status, 302);
    let session: Vec<(String, String)> = set_cookies(&r)
        .into_iter()
        .filter(|(n, _)| n.starts_with("_sesame") && !n.contains("csrf"))
        .collect();
    cookie_header(&session)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn refreshed_id_token(sub: &str) -> String {
    let mut c = claims(json!({}));
    c.subject = Some(sub.into());
    c.nonce = None;
    es256(c)
}

#[test]
fn sessions_are_refreshed_once_before_the_access_token_expires() {
    let f = filter(json!({"refresh_margin": 60, "pass_access_token": true}));
    let cookie = signed_in_with_refresh(&f, 300);
    let store = MemoryStore::default();
    let req = || get("/chat", &[HTML, ("cookie", &cookie)]);
    let mut state = provider();

    // Long before expiry: a plain cookie check.
    let step = f.on_request_shared(
        &req(),
        std::slice::from_ref(&state),
        &(NOW + 10),
        &mut CountingEntropy(4),
        &store,
    );
    assert_eq!(step.outcome, Outcome::Passed);

    // Within the margin: this request refreshes.
    let step = f.on_request_shared(
        &req(),
        std::slice::from_ref(&state),
        &(NOW + 250),
        &mut CountingEntropy(5),
        &store,
    );
    let (call, pending) = match step.action {
        Action::Call(call, pending) => (call, pending),
        other => panic!("expected a refresh call, got {other:?}"),
    };
    assert!(call.path.starts_with("/token"));
    let form = String::from_utf8(call.body.clone().unwrap()).unwrap();
    assert!(form.contains("grant_type=refresh_token") && form.contains("refresh_token=rt-1"));
    assert!(
        form.contains("client_secret="),
        "the client authenticates: {form}"
    );

    // Meanwhile another request of the same session does not refresh again.
    let other = f.on_request_shared(
        &req(),
        std::slice::from_ref(&state),
        &(NOW + 251),
        &mut CountingEntropy(6),
        &store,
    );
    assert_eq!(other.outcome, Outcome::Passed);
    match other.action {
        Action::ContinueWith(h) => {
            assert_eq!(header(&h.add, "x-auth-request-access-token"), Some("at-1"))
        }
        a => panic!("{a:?}"),
    }

    // The provider answers: new tokens, then userinfo again.
    let sub = claims(json!({})).subject.unwrap();
    let tokens = json!({"access_token": "at-2", "refresh_token": "rt-2", "expires_in": 300,
                        "token_type": "Bearer", "id_token": refreshed_id_token(&sub)});
    let step = f.on_provider_response(
        *pending,
        &json_response(200, "application/json", &tokens.to_string()),
        std::slice::from_mut(&mut state),
        NOW + 252,
        &mut CountingEntropy(7),
        &store,
    );
    let (call, pending) = match step.action {
        Action::Call(call, pending) => (call, pending),
        other => panic!("expected userinfo, got {other:?}"),
    };
    assert!(call.path.starts_with("/me"));
    assert!(call
        .headers
        .iter()
        .any(|(k, v)| k == "authorization" && v == "Bearer at-2"));
    let step = f.on_provider_response(
        *pending,
        &json_response(
            200,
            "application/jwt",
            &userinfo_jwt("alice@numerique.gouv.fr"),
        ),
        std::slice::from_mut(&mut state),
        NOW + 252,
        &mut CountingEntropy(8),
        &store,
    );
    assert!(
        matches!(step.outcome, Outcome::Refreshed { .. }),
        "{:?}",
        step.outcome
    );
    let (headers, set) = match step.action {
        Action::ContinueWithCookies(h, set) => (h.add, set),
        a => panic!("{a:?}"),
    };
    assert_eq!(
        header(&headers, "x-auth-request-access-token"),
        Some("at-2")
    );
    assert_eq!(
        header(&headers, "x-forwarded-email"),
        Some("alice@numerique.gouv.fr")
    );
    let new_cookie: String = set
        .iter()
        .map(|c| c.split(';').next().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("; ");
    assert!(new_cookie.starts_with("_sesame="));

    // A request that still carries the old cookie gets the new session,
    // without a second refresh (which a rotating provider would refuse).
    let late = f.on_request_shared(
        &req(),
        std::slice::from_ref(&state),
        &(NOW + 253),
        &mut CountingEntropy(9),
        &store,
    );
    assert_eq!(late.outcome, Outcome::RefreshAdopted);
    match late.action {
        Action::ContinueWithCookies(h, set) => {
            assert_eq!(header(&h.add, "x-auth-request-access-token"), Some("at-2"));
            assert!(set[0].starts_with("_sesame="));
        }
        a => panic!("{a:?}"),
    }

    // The new cookie: not due until the new access token nears expiry; the
    // absolute lifetime is unchanged.
    let fresh = get("/chat", &[HTML, ("cookie", &new_cookie)]);
    let step = f.on_request_shared(
        &fresh,
        std::slice::from_ref(&state),
        &(NOW + 300),
        &mut CountingEntropy(10),
        &store,
    );
    assert_eq!(step.outcome, Outcome::Passed);
    let session = f
        .session_cookie()
        .read(
            &crate::core::session::cookies::parse(std::iter::once(new_cookie.as_str())),
            NOW + 300,
        )
        .unwrap();
    assert_eq!(session.refresh_token.as_deref(), Some("rt-2"));
    assert_eq!(session.access_expires_at, Some(NOW + 252 + 300));
    assert_eq!(session.expires_at, NOW + 43200);

    // When the new generation is due in turn (within the grace period of the
    // first refresh), it is refreshed, not handed the result it came from.
    let step = f.on_request_shared(
        &fresh,
        std::slice::from_ref(&state),
        &(NOW + 500),
        &mut CountingEntropy(11),
        &store,
    );
    assert!(
        matches!(step.action, Action::Call(..)),
        "{:?}",
        step.outcome
    );
}

/// The refresh call a request 5 s after the sign-in starts.
fn refresh_call(
    f: &Filter,
    req: &Request,
    state: &ProviderState,
    store: &MemoryStore,
) -> Box<crate::core::flow::Pending> {
    pending_call(f.on_request_shared(
        req,
        std::slice::from_ref(state),
        &(NOW + 5),
        &mut CountingEntropy(4),
        store,
    ))
}

#[test]
fn a_refused_refresh_ends_the_session_and_keeps_the_page() {
    let f = filter(json!({"refresh_margin": 60}));
    let cookie = signed_in_with_refresh(&f, 30);
    let store = MemoryStore::default();
    let mut state = provider();
    for (accept, expected) in [(HTML, 302), (("accept", "application/json"), 401)] {
        let store_step = f.on_request_shared(
            &get("/chat?x=2", &[accept, ("cookie", &cookie)]),
            std::slice::from_ref(&state),
            &(NOW + 5),
            &mut CountingEntropy(4),
            &store,
        );
        let pending = pending_call(store_step);
        let step = f.on_provider_response(
            *pending,
            &json_response(400, "application/json", r#"{"error":"invalid_grant"}"#),
            std::slice::from_mut(&mut state),
            NOW + 6,
            &mut CountingEntropy(5),
            &store,
        );
        assert!(
            matches!(
                step.outcome,
                Outcome::RefreshFailed {
                    reason: "refresh_refused",
                    ..
                }
            ),
            "{:?}",
            step.outcome
        );
        let r = response(step);
        assert_eq!(r.status, expected);
        if expected == 302 {
            let loc = r.header("location").unwrap();
            assert!(loc.starts_with(&format!("{ISSUER}/auth?")), "{loc}");
        }
        assert!(set_cookies(&r)
            .iter()
            .any(|(n, v)| n == "_sesame" && v.is_empty()));
    }
}

#[test]
fn a_provider_outage_during_refresh_keeps_the_session() {
    let f = filter(json!({"refresh_margin": 60}));
    let cookie = signed_in_with_refresh(&f, 30);
    let store = MemoryStore::default();
    let mut state = provider();
    let req = get("/chat", &[HTML, ("cookie", &cookie)]);
    let pending = refresh_call(&f, &req, &state, &store);
    let step = f.on_provider_response(
        *pending,
        &ProviderResponse::default(),
        std::slice::from_mut(&mut state),
        NOW + 10,
        &mut CountingEntropy(5),
        &store,
    );
    assert!(matches!(
        step.outcome,
        Outcome::RefreshFailed {
            reason: "provider_unavailable",
            ..
        }
    ));
    assert!(matches!(step.action, Action::ContinueWith(_)));
    // No new attempt right away: the next request passes without calling.
    state = provider();
    let next = f.on_request_shared(
        &req,
        std::slice::from_ref(&state),
        &(NOW + 11),
        &mut CountingEntropy(6),
        &store,
    );
    assert_eq!(next.outcome, Outcome::Passed);
}

#[test]
fn access_rules_are_applied_again_to_the_refreshed_identity() {
    let f = filter(json!({"refresh_margin": 60, "allowed_email_domains": ["*.gouv.fr"]}));
    let cookie = signed_in_with_refresh(&f, 30);
    let store = MemoryStore::default();
    let mut state = provider();
    let req = get("/chat", &[HTML, ("cookie", &cookie)]);
    let pending = refresh_call(&f, &req, &state, &store);
    let tokens = json!({"access_token": "at-2", "token_type": "Bearer", "expires_in": 300});
    let step = f.on_provider_response(
        *pending,
        &json_response(200, "application/json", &tokens.to_string()),
        std::slice::from_mut(&mut state),
        NOW + 6,
        &mut CountingEntropy(5),
        &store,
    );
    let pending = pending_call(step);
    // The person's address changed at the provider to one not admitted.
    let step = f.on_provider_response(
        *pending,
        &json_response(200, "application/jwt", &userinfo_jwt("alice@example.com")),
        std::slice::from_mut(&mut state),
        NOW + 6,
        &mut CountingEntropy(6),
        &store,
    );
    assert!(
        matches!(step.outcome, Outcome::Denied { .. }),
        "{:?}",
        step.outcome
    );
    let r = response(step);
    assert_eq!(r.status, 403);
    assert!(set_cookies(&r)
        .iter()
        .any(|(n, v)| n == "_sesame" && v.is_empty()));
}

#[test]
fn without_a_refresh_token_the_session_just_lasts_its_lifetime() {
    let f = filter(json!({"session_lifetime": 600}));
    let login = run_login_with(
        &f,
        &mut provider(),
        "alice@numerique.gouv.fr",
        id_token_for,
        json!({"expires_in": 30}),
    );
    let r = response(login.step);
    let cookie = cookie_header(
        &set_cookies(&r)
            .into_iter()
            .filter(|(n, _)| !n.contains("csrf"))
            .collect::<Vec<_>>(),
    );
    let req = get("/chat?p=1", &[HTML, ("cookie", &cookie)]);
    let step = f.on_request(&req, &[provider()], NOW + 100, &mut CountingEntropy(4));
    assert_eq!(step.outcome, Outcome::Passed);
    // Past the lifetime: back to the provider, returning to the same page.
    let r = response(f.on_request(&req, &[provider()], NOW + 600, &mut CountingEntropy(5)));
    assert_eq!(r.status, 302);
    let loc = r.header("location").unwrap();
    assert!(loc.starts_with(&format!("{ISSUER}/auth?")));
}

#[test]
fn a_refreshed_id_token_for_another_person_ends_the_session() {
    let f = filter(json!({"refresh_margin": 60}));
    let cookie = signed_in_with_refresh(&f, 30);
    let store = MemoryStore::default();
    let mut state = provider();
    let req = get(
        "/chat",
        &[("accept", "application/json"), ("cookie", &cookie)],
    );
    let pending = refresh_call(&f, &req, &state, &store);
    let tokens = json!({"access_token": "at-2", "token_type": "Bearer",
                        "id_token": refreshed_id_token("mallory")});
    let step = f.on_provider_response(
        *pending,
        &json_response(200, "application/json", &tokens.to_string()),
        std::slice::from_mut(&mut state),
        NOW + 6,
        &mut CountingEntropy(5),
        &store,
    );
    assert!(matches!(
        step.outcome,
        Outcome::RefreshFailed {
            reason: "id_token_invalid",
            ..
        }
    ));
    assert_eq!(response(step).status, 401);
}

// --------------------------------------------------------------------------
// Bearer tokens and per-route rules

pub(super) const API_ROUTES: &str = r#"[
    {"path": "^/api/admin/", "mode": "bearer", "scopes": ["api:write"],
     "allowed_emails": ["alice@numerique.gouv.fr"]},
    {"path": "^/api/", "mode": "bearer", "scopes": ["api:read"]},
    {"path": "^/mixed/", "mode": "session_or_bearer"},
    {"methods": ["GET"], "path": "^/status$", "mode": "public"}
]"#;

fn api_filter(extra: Value) -> Filter {
    let mut patch = json!({
        "routes": serde_json::from_str::<Value>(API_ROUTES).unwrap(),
        "introspection_endpoint": format!("{ISSUER}/token/introspection"),
        "allowed_email_domains": ["*.gouv.fr"],
    });
    if let (Some(p), Some(e)) = (patch.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    filter(patch)
}

/// A JWT access token for us, with `scope` and `email`.
fn access_token(
    scope: &str,
    email: &str,
    change: impl FnOnce(&mut jwt_simple::prelude::JWTClaims<serde_json::Map<String, Value>>),
) -> String {
    let mut c = claims(json!({"scope": scope, "email": email, "client_id": CLIENT}));
    c.nonce = None;
    change(&mut c);
    es256_at(c)
}

pub(super) fn api_get<'a>(path: &'a str, authorization: Option<&'a str>) -> Request<'a> {
    let mut headers = vec![("accept", "application/json")];
    if let Some(a) = authorization {
        headers.push(("authorization", a));
    }
    get(path, &headers)
}

pub(super) fn run(f: &Filter, req: &Request, state: &ProviderState) -> Step {
    f.on_request(
        req,
        std::slice::from_ref(state),
        NOW,
        &mut CountingEntropy(1),
    )
}

#[test]
fn a_valid_jwt_access_token_passes_with_identity_headers() {
    let f = api_filter(json!({"pass_access_token": true}));
    let token = access_token("openid api:read", "alice@numerique.gouv.fr", |_| {});
    let auth = format!("Bearer {token}");
    let request = api_get("/api/items", Some(&auth));
    let step = run(&f, &request, &provider());
    assert_eq!(step.outcome, Outcome::BearerPassed);
    let headers = forwarded(&request, step);
    assert_eq!(
        header(&headers, "x-forwarded-email"),
        Some("alice@numerique.gouv.fr")
    );
    assert_eq!(header(&headers, "x-forwarded-user"), Some("alice-7f3a"));
    assert_eq!(
        header(&headers, "x-auth-request-access-token"),
        Some(token.as_str())
    );
    assert_eq!(header(&headers, "authorization"), Some(auth.as_str()));

    // Checked once: the next request is served from the cache, without keys.
    let mut no_keys = provider();
    no_keys.keys = None;
    let step = run(&f, &api_get("/api/items", Some(&auth)), &no_keys);
    assert_eq!(step.outcome, Outcome::BearerPassed);
    assert_eq!(f.tokens.borrow().len(), 1);
}

fn refused(step: Step) -> (u16, String, &'static str) {
    let reason = match &step.outcome {
        Outcome::BearerRefused { reason, .. } => *reason,
        Outcome::Denied { .. } => "denied",
        other => panic!("expected a refusal, got {other:?}"),
    };
    let r = response(step);
    (
        r.status,
        r.header("www-authenticate").unwrap_or("").to_string(),
        reason,
    )
}

#[test]
fn bad_bearer_tokens_are_refused_as_rfc_6750_says() {
    let f = api_filter(json!({}));
    let p = provider();
    let (status, challenge, _) = refused(run(&f, &api_get("/api/x", None), &p));
    assert_eq!(
        (status, challenge.as_str()),
        (401, "Bearer realm=\"sesame\"")
    );

    let cases: Vec<(String, u16, &str)> = vec![
        ("Basic YTpi".into(), 401, "malformed_token"),
        ("Bearer not a token".into(), 401, "malformed_token"),
        (
            format!(
                "Bearer {}",
                access_token("api:read", "alice@numerique.gouv.fr", |c| c.audiences =
                    Some(jwt_simple::prelude::Audiences::AsString("other".into())))
            ),
            401,
            "wrong_audience",
        ),
        (
            format!(
                "Bearer {}",
                access_token("api:read", "alice@numerique.gouv.fr", |c| c.expires_at =
                    Some(jwt_simple::prelude::UnixTimeStamp::from_secs(NOW - 600)))
            ),
            401,
            "expired_token",
        ),
        (
            format!(
                "Bearer {}",
                access_token("api:read", "alice@numerique.gouv.fr", |c| c.issuer =
                    Some("https://evil.example".into()))
            ),
            401,
            // The issuer picks the keys: no provider has this one.
            "wrong_issuer",
        ),
        // An ID token is not an access token.
        (
            format!(
                "Bearer {}",
                es256(claims(
                    json!({"scope": "api:read", "email": "alice@numerique.gouv.fr"})
                ))
            ),
            401,
            "invalid_token",
        ),
        (
            format!(
                "Bearer {}",
                access_token("openid", "alice@numerique.gouv.fr", |_| {})
            ),
            403,
            "insufficient_scope",
        ),
    ];
    for (auth, status, reason) in cases {
        let (s, challenge, r) = refused(run(&f, &api_get("/api/x", Some(&auth)), &p));
        assert_eq!((s, r), (status, reason), "{auth}");
        let error = if status == 401 {
            "invalid_token"
        } else {
            "insufficient_scope"
        };
        assert!(
            challenge.contains(&format!("error=\"{error}\"")),
            "{challenge}"
        );
        if status == 403 {
            assert!(challenge.contains("scope=\"api:read\""), "{challenge}");
        }
    }
    // The access rules apply to tokens too: eve's domain is not admitted.
    let eve = format!(
        "Bearer {}",
        access_token("api:read", "eve@example.com", |_| {})
    );
    assert_eq!(refused(run(&f, &api_get("/api/x", Some(&eve)), &p)).0, 403);
    // A route's own rules and scopes: bob is admitted globally, not here.
    let bob = format!(
        "Bearer {}",
        access_token("api:read api:write", "bob@interieur.gouv.fr", |_| {})
    );
    assert_eq!(
        run(&f, &api_get("/api/x", Some(&bob)), &p).outcome,
        Outcome::BearerPassed
    );
    assert_eq!(
        refused(run(&f, &api_get("/api/admin/x", Some(&bob)), &p)).2,
        "denied"
    );
    // Checked once per route, then remembered: the same answers again, the
    // refusal with its reason.
    assert_eq!(
        refused(run(&f, &api_get("/api/admin/x", Some(&bob)), &p)).2,
        "denied"
    );
    assert_eq!(
        run(&f, &api_get("/api/x", Some(&bob)), &p).outcome,
        Outcome::BearerPassed
    );
    let alice = format!(
        "Bearer {}",
        access_token("api:read api:write", "alice@numerique.gouv.fr", |_| {})
    );
    assert_eq!(
        run(&f, &api_get("/api/admin/x", Some(&alice)), &p).outcome,
        Outcome::BearerPassed
    );
}

#[test]
fn opaque_tokens_are_introspected_once_then_cached() {
    let f = api_filter(json!({"pass_access_token": true}));
    let mut state = provider();
    let req = api_get("/api/items", Some("Bearer opaque-token-1"));
    let (call, pending) = match run(&f, &req, &state).action {
        Action::Call(call, pending) => (call, pending),
        a => panic!("{a:?}"),
    };
    assert_eq!(call.path, "/token/introspection");
    let form = String::from_utf8(call.body.clone().unwrap()).unwrap();
    assert!(
        form.contains("token=opaque-token-1") && form.contains("client_secret="),
        "{form}"
    );
    assert!(call
        .headers
        .iter()
        .any(|(k, v)| k == "accept" && v == "application/json"));
    let answer = json!({"active": true, "sub": "alice-7f3a", "aud": CLIENT, "iss": ISSUER,
                        "scope": "api:read", "email": "alice@numerique.gouv.fr", "exp": NOW + 300});
    let step = f.on_provider_response(
        *pending,
        &json_response(200, "application/json", &answer.to_string()),
        std::slice::from_mut(&mut state),
        NOW,
        &mut CountingEntropy(2),
        &MemoryStore::default(),
    );
    assert_eq!(step.outcome, Outcome::BearerPassed);
    match step.action {
        Action::ContinueWith(h) => {
            assert_eq!(
                header(&h.add, "x-forwarded-email"),
                Some("alice@numerique.gouv.fr")
            );
            assert_eq!(
                header(&h.add, "x-auth-request-access-token"),
                Some("opaque-token-1")
            );
        }
        a => panic!("{a:?}"),
    }
    // Cached: no second call.
    assert_eq!(run(&f, &req, &state).outcome, Outcome::BearerPassed);

    // An inactive token is refused, and remembered as such for a while.
    let revoked = api_get("/api/items", Some("Bearer revoked-token"));
    let pending = pending_call(run(&f, &revoked, &state));
    let step = f.on_provider_response(
        *pending,
        &json_response(200, "application/json", r#"{"active": false}"#),
        std::slice::from_mut(&mut state),
        NOW,
        &mut CountingEntropy(3),
        &MemoryStore::default(),
    );
    assert_eq!(refused(step).2, "inactive_token");
    assert_eq!(refused(run(&f, &revoked, &state)).2, "inactive_token");

    // Another audience, or the provider down.
    let other = api_get("/api/items", Some("Bearer for-another-service"));
    let pending = pending_call(run(&f, &other, &state));
    let wrong = json!({"active": true, "sub": "x", "aud": "other", "scope": "api:read"});
    let step = f.on_provider_response(
        *pending,
        &json_response(200, "application/json", &wrong.to_string()),
        std::slice::from_mut(&mut state),
        NOW,
        &mut CountingEntropy(4),
        &MemoryStore::default(),
    );
    assert_eq!(refused(step).2, "wrong_audience");
    let down = api_get("/api/items", Some("Bearer while-down"));
    let pending = pending_call(run(&f, &down, &state));
    let step = f.on_provider_response(
        *pending,
        &ProviderResponse::default(),
        std::slice::from_mut(&mut state),
        NOW,
        &mut CountingEntropy(5),
        &MemoryStore::default(),
    );
    assert_eq!(response(step).status, 503);
}

#[test]
fn routes_choose_session_bearer_or_public() {
    let f = api_filter(json!({}));
    let p = provider();
    // session_or_bearer without a token: a navigation goes to sign in.
    let r = response(run(&f, &get("/mixed/page", &[HTML]), &p));
    assert_eq!(r.status, 302);
    assert!(r.header("location").unwrap().starts_with(ISSUER));
    // ...and with one, it is a bearer request.
    let token = access_token("api:read", "alice@numerique.gouv.fr", |_| {});
    let step = run(
        &f,
        &api_get("/mixed/page", Some(&format!("Bearer {token}"))),
        &p,
    );
    assert_eq!(step.outcome, Outcome::BearerPassed);
    // A bearer route never sends anyone to sign in.
    let (status, ..) = refused(run(&f, &get("/api/x", &[HTML]), &p));
    assert_eq!(status, 401);
    // Public, for its methods only; identity headers from the client removed.
    let status = get("/status", &[("x-forwarded-email", "spoof@x.fr")]);
    let step = run(&f, &status, &p);
    assert_eq!(step.outcome, Outcome::Public);
    assert!(header(&forwarded(&status, step), "x-forwarded-email").is_none());
    let post = Request {
        method: "POST",
        ..get("/status", &[])
    };
    assert_eq!(run(&f, &post, &p).outcome, Outcome::Unauthenticated);
    // A path that could mean another once normalised matches no route.
    let r = response(run(&f, &get("/status/../admin", &[HTML]), &p));
    assert_eq!(r.status, 302);
    // Unlisted: a session, as before.
    let r = response(run(
        &f,
        &get("/elsewhere", &[("accept", "application/json")]),
        &p,
    ));
    assert_eq!(r.status, 401);
}

#[test]
fn signed_and_encrypted_introspection_answers_are_verified() {
    use crate::core::oidc::jwe::tests::{encrypt, rsa_jwk};
    let jwk = rsa_jwk("RSA-OAEP-256");
    let f = api_filter(json!({"introspection_format": "jwt", "resource_server_key": jwk}));
    // Our public key is served for the provider to encrypt to.
    let r = response(run(&f, &get("/oauth2/jwks", &[]), &provider()));
    assert_eq!(r.status, 200);
    let served: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(served["keys"][0]["n"], jwk["n"]);
    assert!(served["keys"][0].get("d").is_none());

    let answer = |token_introspection: Value, signed_by_provider: bool| {
        let mut c = claims(json!({ "token_introspection": token_introspection }));
        c.nonce = None;
        let jwt = if signed_by_provider {
            es256(c)
        } else {
            ES256KeyPair::generate()
                .with_key_id("ec-1")
                .sign(c)
                .unwrap()
        };
        encrypt(&jwk, jwt.as_bytes())
    };
    let good = json!({"active": true, "sub": "alice-7f3a", "aud": CLIENT, "iss": ISSUER,
                      "scope": "api:read", "email": "alice@numerique.gouv.fr", "exp": NOW + 300});
    let mut state = provider();
    let mut introspect = |token: &str, body: String| {
        let auth = format!("Bearer {token}");
        let (call, pending) = match run(&f, &api_get("/api/x", Some(&auth)), &state).action {
            Action::Call(call, pending) => (call, pending),
            a => panic!("{a:?}"),
        };
        assert!(call
            .headers
            .iter()
            .any(|(k, v)| k == "accept" && v == "application/token-introspection+jwt"));
        f.on_provider_response(
            *pending,
            &json_response(200, "application/token-introspection+jwt", &body),
            std::slice::from_mut(&mut state),
            NOW,
            &mut CountingEntropy(2),
            &MemoryStore::default(),
        )
    };
    assert_eq!(
        introspect("tok-1", answer(good.clone(), true)).outcome,
        Outcome::BearerPassed
    );
    // Signed by someone else, or tampered: refused, never passed.
    let forged = introspect("tok-2", answer(good.clone(), false));
    assert!(matches!(
        forged.outcome,
        Outcome::BearerRefused {
            reason: "introspection_invalid",
            ..
        }
    ));
    let mut parts: Vec<String> = answer(good, true).split('.').map(str::to_string).collect();
    let first = if parts[3].starts_with('A') { "B" } else { "A" };
    parts[3] = format!("{first}{}", &parts[3][1..]);
    let tampered = introspect("tok-3", parts.join("."));
    assert!(matches!(
        tampered.outcome,
        Outcome::BearerRefused {
            reason: "introspection_invalid",
            ..
        }
    ));
    assert_eq!(response(tampered).status, 502);
}

// --------------------------------------------------------------------------
// The session cache on the hot path

pub(super) fn signed_in_cookie(f: &Filter, email: &str) -> String {
    let r = response(run_login(f, &mut provider(), email, id_token_for).step);
    cookie_header(
        &set_cookies(&r)
            .into_iter()
            .filter(|(n, _)| !n.contains("csrf"))
            .collect::<Vec<_>>(),
    )
}

#[test]
fn known_sessions_are_served_from_the_cache_with_the_same_decisions() {
    let f = filter(json!({"allowed_email_domains": ["*.gouv.fr"]}));
    let cookie = signed_in_cookie(&f, "alice@numerique.gouv.fr");
    fn req(c: &str) -> Request<'_> {
        get("/chat", &[("accept", "application/json"), ("cookie", c)])
    }
    let p = provider();
    let first = run(&f, &req(&cookie), &p);
    assert_eq!(first.outcome, Outcome::Passed);
    assert_eq!(f.sessions.borrow().len(), 1);
    let second = run(&f, &req(&cookie), &p);
    let headers = |s: Step| match s.action {
        Action::ContinueWith(h) => h,
        a => panic!("{a:?}"),
    };
    assert_eq!(headers(second), headers(run(&f, &req(&cookie), &p)));

    // A cookie that differs anywhere is not the cached one: opened, refused.
    let (name, value) = cookie.split_once('=').unwrap();
    let mid = value.len() / 2;
    let flipped = if &value[mid..mid + 1] == "A" {
        "B"
    } else {
        "A"
    };
    let tampered = format!("{name}={}{flipped}{}", &value[..mid], &value[mid + 1..]);
    assert_eq!(
        run(&f, &req(&tampered), &p).outcome,
        Outcome::Unauthenticated
    );
    // Expiry is checked on every use.
    let late = f.on_request(
        &req(&cookie),
        std::slice::from_ref(&p),
        NOW + 43200,
        &mut CountingEntropy(1),
    );
    assert_eq!(late.outcome, Outcome::Unauthenticated);
    // Another person's cached session is not served for a different route's rules.
    let strict = filter(json!({"allowed_email_domains": ["*.gouv.fr"], "routes": [
        {"path": "^/admin/", "mode": "session", "allowed_emails": ["bob@interieur.gouv.fr"]}]}));
    let c = signed_in_cookie(&strict, "alice@numerique.gouv.fr");
    assert_eq!(run(&strict, &req(&c), &p).outcome, Outcome::Passed);
    let admin = get(
        "/admin/x",
        &[("accept", "application/json"), ("cookie", &c)],
    );
    assert!(matches!(
        run(&strict, &admin, &p).outcome,
        Outcome::Denied { .. }
    ));
}

#[test]
fn spliced_chunks_never_find_a_cached_session() {
    // Large sessions (long tokens) are chunked.
    let f = filter(json!({"allowed_email_domains": ["*"]}));
    let big = |nonce: &str| {
        let mut c = claims(json!({"pad": "x".repeat(5000)}));
        c.nonce = Some(nonce.into());
        es256(c)
    };
    let chunks = |email: &str| {
        let r = response(run_login(&f, &mut provider(), email, big).step);
        set_cookies(&r)
            .into_iter()
            .filter(|(n, _)| !n.contains("csrf"))
            .collect::<Vec<_>>()
    };
    let alice = chunks("alice@numerique.gouv.fr");
    let bob = chunks("bob@interieur.gouv.fr");
    assert!(alice.len() >= 2 && alice[0].0 == "_sesame_0", "{alice:?}");
    let p = provider();
    fn req(c: &str) -> Request<'_> {
        get("/x", &[("accept", "application/json"), ("cookie", c)])
    }
    // Both sessions opened once, so both are cached.
    assert_eq!(
        run(&f, &req(&cookie_header(&alice)), &p).outcome,
        Outcome::Passed
    );
    assert_eq!(
        run(&f, &req(&cookie_header(&bob)), &p).outcome,
        Outcome::Passed
    );
    // Alice's first chunks with bob's last one (which carries bob's tag).
    let mut spliced = alice.clone();
    let last = spliced.len() - 1;
    spliced[last] = bob[last].clone();
    assert_eq!(
        run(&f, &req(&cookie_header(&spliced)), &p).outcome,
        Outcome::Unauthenticated
    );
}

#[test]
fn a_session_due_for_refresh_is_not_served_from_the_cache() {
    let f = filter(json!({"refresh_margin": 60}));
    let cookie = signed_in_with_refresh(&f, 300);
    let req = get("/chat", &[HTML, ("cookie", &cookie)]);
    let store = MemoryStore::default();
    let p = provider();
    let early = f.on_request_shared(
        &req,
        std::slice::from_ref(&p),
        &(NOW + 1),
        &mut CountingEntropy(4),
        &store,
    );
    assert_eq!(early.outcome, Outcome::Passed);
    assert_eq!(f.sessions.borrow().len(), 1);
    let due = f.on_request_shared(
        &req,
        std::slice::from_ref(&p),
        &(NOW + 250),
        &mut CountingEntropy(5),
        &store,
    );
    assert!(matches!(due.action, Action::Call(..)), "{:?}", due.outcome);
}

// --------------------------------------------------------------------------
// The clock on the hot path

/// A clock that tells whether the exact time was read; its bound is
/// `margin` s ahead, as the adapter's may be.
struct ReadingsClock {
    now: u64,
    margin: u64,
    read: Cell<bool>,
}

impl ReadingsClock {
    fn new(now: u64, margin: u64) -> Self {
        ReadingsClock {
            now,
            margin,
            read: Cell::new(false),
        }
    }
}

impl Clock for ReadingsClock {
    fn now(&self) -> u64 {
        self.read.set(true);
        self.now
    }

    fn upper_bound(&self) -> u64 {
        self.now + self.margin
    }
}

/// The outcome of `req` at `now` (bound `margin` s ahead), and whether the
/// filter read the exact time for it.
fn outcome_at(f: &Filter, req: &Request, now: u64, margin: u64) -> (Outcome, bool) {
    outcome_with(f, req, &provider(), now, margin)
}

fn outcome_with(
    f: &Filter,
    req: &Request,
    p: &ProviderState,
    now: u64,
    margin: u64,
) -> (Outcome, bool) {
    let clock = ReadingsClock::new(now, margin);
    let store = MemoryStore::default();
    let step = f.on_request_shared(
        req,
        std::slice::from_ref(p),
        &clock,
        &mut CountingEntropy(1),
        &store,
    );
    (step.outcome, clock.read.get())
}

/// A filter for `*.gouv.fr`, and alice's session cookie with it.
fn alice_signed_in() -> (Filter, String) {
    let f = filter(json!({"allowed_email_domains": ["*.gouv.fr"]}));
    let cookie = signed_in_cookie(&f, "alice@numerique.gouv.fr");
    (f, cookie)
}

fn chat(cookie: &str) -> Request<'_> {
    get(
        "/chat",
        &[("accept", "application/json"), ("cookie", cookie)],
    )
}

/// An `Authorization` value with alice's JWT access token.
fn alice_bearer() -> String {
    let token = access_token("openid api:read", "alice@numerique.gouv.fr", |_| {});
    format!("Bearer {token}")
}

#[test]
fn known_sessions_and_tokens_are_served_without_reading_the_clock() {
    let (f, cookie) = alice_signed_in();
    let page = chat(&cookie);
    // Opened with the exact time, then known.
    assert_eq!(outcome_at(&f, &page, NOW + 10, 3), (Outcome::Passed, true));
    assert_eq!(outcome_at(&f, &page, NOW + 11, 3), (Outcome::Passed, false));
    let auth = get("/oauth2/auth", &[("cookie", &cookie)]);
    assert_eq!(
        outcome_at(&f, &auth, NOW + 12, 3),
        (Outcome::Endpoint { ok: true }, false)
    );
    // Anything else reads it: a request without a session.
    let anonymous = get("/chat", &[("accept", "application/json")]);
    assert_eq!(
        outcome_at(&f, &anonymous, NOW + 12, 3),
        (Outcome::Unauthenticated, true)
    );

    let api = api_filter(json!({}));
    let bearer = alice_bearer();
    let call = api_get("/api/items", Some(&bearer));
    assert_eq!(
        outcome_at(&api, &call, NOW + 10, 3),
        (Outcome::BearerPassed, true)
    );
    assert_eq!(
        outcome_at(&api, &call, NOW + 11, 3),
        (Outcome::BearerPassed, false)
    );
}

#[test]
fn near_its_expiry_a_known_session_is_judged_with_the_exact_time() {
    let (f, cookie) = alice_signed_in();
    let page = chat(&cookie);
    let expires = NOW + 43200;
    assert_eq!(outcome_at(&f, &page, NOW + 10, 3), (Outcome::Passed, true));
    // The bound reaches the expiry: not served as known, but still valid
    // at the exact time, up to its last second.
    assert_eq!(
        outcome_at(&f, &page, expires - 2, 3),
        (Outcome::Passed, true)
    );
    assert_eq!(
        outcome_at(&f, &page, expires - 1, 3),
        (Outcome::Passed, true)
    );
    assert_eq!(
        outcome_at(&f, &page, expires, 3),
        (Outcome::Unauthenticated, true)
    );
    // Well before it, the same session is known again.
    assert_eq!(
        outcome_at(&f, &page, expires - 4, 3),
        (Outcome::Passed, false)
    );
}

#[test]
fn a_token_remembered_for_less_than_the_margin_is_still_served_from_the_cache() {
    // Remembered for 2 s: less than the clock's margin. Within those 2 s the
    // token is found again at the exact time, not checked anew (no keys here
    // to check it with).
    let f = api_filter(json!({"introspection_cache_ttl": 2}));
    let bearer = alice_bearer();
    let call = api_get("/api/items", Some(&bearer));
    assert_eq!(
        outcome_at(&f, &call, NOW + 10, 3),
        (Outcome::BearerPassed, true)
    );
    let mut no_keys = provider();
    no_keys.keys = None;
    assert_eq!(
        outcome_with(&f, &call, &no_keys, NOW + 11, 3),
        (Outcome::BearerPassed, true)
    );
    // Past them, it is checked anew: without keys, not admitted.
    let (late, _) = outcome_with(&f, &call, &no_keys, NOW + 12, 3);
    assert_ne!(late, Outcome::BearerPassed);
}

/// The outside review's set-up: filter-level domains, and `/admin/` for
/// alice alone.
fn admin_filter() -> Filter {
    filter(json!({
        "allowed_email_domains": ["exemple.org", "agents.gouv.fr"],
        "routes": [
            {"path": "^/admin/", "mode": "session", "allowed_emails": ["alice@agents.gouv.fr"]},
            {"path": "^/api/admin/", "mode": "bearer", "scopes": ["api:write"]},
            {"path": "^/open/", "mode": "public"},
        ],
    }))
}

#[test]
fn every_spelling_of_a_route_is_held_to_its_rules() {
    let f = admin_filter();
    let bob = signed_in_cookie(&f, "bob@agents.gouv.fr");
    let alice = signed_in_cookie(&f, "alice@agents.gouv.fr");
    // Out of the public route into the admin route, too.
    let out_of_public = ["/open/..;/admin/users", "/open/%2e%2e/admin/users"];
    for path in crate::core::access::paths::tests::ADMIN_SPELLINGS
        .iter()
        .chain(&out_of_public)
    {
        for method in ["GET", "HEAD", "get"] {
            let req = Request {
                method,
                ..get(path, &[("cookie", &bob), ("accept", "application/json")])
            };
            let step = run(&f, &req, &provider());
            assert!(
                matches!(step.outcome, Outcome::Denied { .. }),
                "bob at {method} {path}: {:?}",
                step.outcome
            );
            assert_eq!(response(step).status, 403);
        }
        let step = run(&f, &get(path, &[("cookie", &alice)]), &provider());
        assert_eq!(step.outcome, Outcome::Passed, "alice at {path}");
    }
    // Bob is admitted where no route has rules of its own.
    let step = run(&f, &get("/chat", &[("cookie", &bob)]), &provider());
    assert_eq!(step.outcome, Outcome::Passed);
    // Public stays public only when every reading is public.
    let step = run(&f, &get("/open/page", &[]), &provider());
    assert_eq!(step.outcome, Outcome::Public);
    let step = run(
        &f,
        &get("/open/../chat", &[("accept", "application/json")]),
        &provider(),
    );
    assert_eq!(step.outcome, Outcome::Unauthenticated);
}

#[test]
fn a_path_that_needs_a_session_and_a_bearer_token_at_once_is_refused() {
    let f = admin_filter();
    let bob = signed_in_cookie(&f, "bob@agents.gouv.fr");
    let forged = "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJib2IiLCJzY29wZSI6ImFwaTp3cml0ZSJ9.";
    for path in [
        "/api/admin;/users/42",
        "/api//admin/users/42",
        "/x/../api/admin/users/42",
    ] {
        let req = Request {
            method: "DELETE",
            ..get(path, &[("cookie", &bob), ("authorization", forged)])
        };
        let step = run(&f, &req, &provider());
        assert!(
            matches!(step.outcome, Outcome::PathRefused { .. }),
            "{path}: {:?}",
            step.outcome
        );
        assert_eq!(response(step).status, 400);
    }
    // As written, it is the bearer route: the forged token is refused.
    let req = Request {
        method: "DELETE",
        ..get(
            "/api/admin/users/42",
            &[("cookie", &bob), ("authorization", forged)],
        )
    };
    let (status, ..) = refused(run(&f, &req, &provider()));
    assert_eq!(status, 401);
}

#[test]
fn a_bearer_header_never_goes_upstream_unchecked_on_a_session_route() {
    let f = admin_filter();
    let bob = signed_in_cookie(&f, "bob@agents.gouv.fr");
    let forged = "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.";
    for (name, value) in [
        ("authorization", forged),
        ("Authorization", "bearer forged"),
    ] {
        let req = get("/chat", &[("cookie", &bob), (name, value)]);
        let step = run(&f, &req, &provider());
        assert_eq!(step.outcome, Outcome::Passed);
        let headers = forwarded(&req, step);
        assert!(header(&headers, "authorization").is_none(), "{headers:?}");
    }
    // Basic credentials are the application's business: they go on.
    let req = get(
        "/chat",
        &[("cookie", &bob), ("authorization", "Basic Ym9iOng=")],
    );
    let headers = forwarded(&req, run(&f, &req, &provider()));
    assert_eq!(header(&headers, "authorization"), Some("Basic Ym9iOng="));
    // Two Authorization headers on a protected route: refused.
    let req = get(
        "/chat",
        &[
            ("cookie", &bob),
            ("authorization", "Basic Ym9iOng="),
            ("authorization", forged),
        ],
    );
    let (status, challenge, reason) = refused(run(&f, &req, &provider()));
    assert_eq!((status, reason), (400, "several_authorization_headers"));
    assert!(challenge.contains("invalid_request"), "{challenge}");
    // The same two headers as Envoy hands them on: joined with a comma.
    let joined = format!("Basic Ym9iOng=,{forged}");
    let req = get("/chat", &[("cookie", &bob), ("authorization", &joined)]);
    let (status, _, reason) = refused(run(&f, &req, &provider()));
    assert_eq!((status, reason), (400, "several_authorization_headers"));
}

#[test]
fn paths_that_cannot_be_read_safely_are_400() {
    let f = admin_filter();
    let bob = signed_in_cookie(&f, "bob@agents.gouv.fr");
    for path in [
        "/admin%252fusers",
        "/admin%2",
        "/admin%00/users",
        "/admin#/users",
        "admin",
    ] {
        let step = run(&f, &get(path, &[("cookie", &bob), HTML]), &provider());
        assert!(
            matches!(step.outcome, Outcome::PathRefused { .. }),
            "{path}: {:?}",
            step.outcome
        );
        let r = response(step);
        assert_eq!(r.status, 400);
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
    }
}

#[test]
fn a_host_prefixed_cookie_name_gives_cookies_browsers_accept() {
    let f = filter(json!({"cookie_name": "__Host-sesame", "cookie_secure": true}));
    let login = run_login(&f, &mut provider(), "alice@numerique.gouv.fr", id_token_for);
    let r = response(login.step);
    assert_eq!(r.status, 302);
    let (start, _) = start(&f, "/chat");
    let written: Vec<&String> = r
        .headers
        .iter()
        .chain(start.headers.iter())
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v)
        .collect();
    assert!(written.iter().any(|c| c.starts_with("__Host-sesame=")));
    assert!(written.iter().any(|c| c.starts_with("__Host-sesame_csrf_")));
    // What a browser requires of a __Host- cookie: Secure, Path=/, no Domain.
    for cookie in written {
        assert!(cookie.starts_with("__Host-sesame"), "{cookie}");
        assert!(
            cookie.contains("; Path=/;") && cookie.contains("; Secure"),
            "{cookie}"
        );
        assert!(!cookie.contains("Domain="), "{cookie}");
    }
}

/// Set-Cookie values as a browser applies them to the cookies it holds.
fn apply_set_cookies(held: &str, r: &Response) -> String {
    let mut jar: Vec<(String, String)> = held
        .split("; ")
        .filter(|c| !c.is_empty())
        .map(|c| {
            let (n, v) = c.split_once('=').unwrap();
            (n.to_string(), v.to_string())
        })
        .collect();
    for (name, value) in set_cookies(r) {
        jar.retain(|(n, _)| *n != name);
        if !value.is_empty() {
            jar.push((name, value));
        }
    }
    cookie_header(&jar)
}

#[test]
fn a_new_sign_in_clears_every_cookie_of_the_previous_session() {
    let f = filter(json!({"pass_access_token": true}));
    let alice = signed_in_cookie(&f, "alice@numerique.gouv.fr");
    assert!(alice.starts_with("_sesame=") && !alice.contains("_sesame_0"));
    // Bob signs in on the same browser; his session is chunked.
    let big = json!({"access_token": "b".repeat(9000)});
    let login = run_login_in(
        &f,
        &mut provider(),
        "bob@interieur.gouv.fr",
        id_token_for,
        big,
        &alice,
    );
    let r = response(login.step);
    assert_eq!(r.status, 302);
    let set = set_cookies(&r);
    assert!(
        set.iter().any(|(n, v)| n == "_sesame" && v.is_empty()),
        "{set:?}"
    );
    assert!(set.iter().any(|(n, v)| n == "_sesame_0" && !v.is_empty()));
    let held = apply_set_cookies(&alice, &r);
    let held: String = held
        .split("; ")
        .filter(|c| !c.starts_with("_sesame_csrf_"))
        .collect::<Vec<_>>()
        .join("; ");
    let req = get("/chat", &[("cookie", &held)]);
    let step = run(&f, &req, &provider());
    assert_eq!(step.outcome, Outcome::Passed);
    assert_eq!(
        header(&forwarded(&req, step), "x-forwarded-email"),
        Some("bob@interieur.gouv.fr")
    );
    // A browser that kept alice's cookie anyway is signed in as nobody,
    // never as alice.
    let both = format!("{alice}; {held}");
    let step = run(
        &f,
        &get(
            "/chat",
            &[("cookie", &both), ("accept", "application/json")],
        ),
        &provider(),
    );
    assert_eq!(step.outcome, Outcome::Unauthenticated);

    // And back: alice again, small, on bob's chunked session.
    let login = run_login_in(
        &f,
        &mut provider(),
        "alice@numerique.gouv.fr",
        id_token_for,
        json!({}),
        &held,
    );
    let r = response(login.step);
    let set = set_cookies(&r);
    for chunk in ["_sesame_0", "_sesame_1", "_sesame_2"] {
        assert!(
            set.iter().any(|(n, v)| n == chunk && v.is_empty()),
            "{chunk} cleared: {set:?}"
        );
    }
}

#[test]
fn a_denied_sign_in_ends_the_previous_session_too() {
    let f = filter(json!({"allowed_email_domains": ["*.gouv.fr"]}));
    let alice = signed_in_cookie(&f, "alice@numerique.gouv.fr");
    let login = run_login_in(
        &f,
        &mut provider(),
        "eve@example.com",
        id_token_for,
        json!({}),
        &alice,
    );
    assert!(matches!(login.step.outcome, Outcome::Denied { .. }));
    let r = response(login.step);
    assert!(set_cookies(&r)
        .iter()
        .any(|(n, v)| n == "_sesame" && v.is_empty()));
}

#[test]
fn a_session_that_cannot_be_read_back_is_never_written() {
    // 26 KB of access token: more than eight chunks with it.
    let huge = || json!({"access_token": "a".repeat(26_000)});
    // Passed upstream, it must be kept: the sign-in is refused, clearly.
    let f = filter(json!({"pass_access_token": true}));
    let login = run_login_with(
        &f,
        &mut provider(),
        "alice@numerique.gouv.fr",
        id_token_for,
        huge(),
    );
    assert_eq!(
        login.step.outcome,
        Outcome::LoginFailed {
            reason: "session_too_large",
            detail: match &login.step.outcome {
                Outcome::LoginFailed { detail, .. } => detail.clone(),
                _ => String::new(),
            },
        }
    );
    let r = refusal_page(&f, login.step);
    assert_eq!(r.status, 502);
    assert!(String::from_utf8_lossy(&r.body).contains("session_too_large"));
    assert!(!set_cookies(&r)
        .iter()
        .any(|(n, v)| n.starts_with("_sesame_") && !n.contains("csrf") && !v.is_empty()));
    // Not passed upstream and not needed to refresh: left out, the rest fits.
    let f = filter(json!({}));
    let login = run_login_with(
        &f,
        &mut provider(),
        "alice@numerique.gouv.fr",
        id_token_for,
        huge(),
    );
    assert!(
        matches!(login.step.outcome, Outcome::LoginSucceeded { .. }),
        "{:?}",
        login.step.outcome
    );
    let r = response(login.step);
    let cookie = cookie_header(
        &set_cookies(&r)
            .into_iter()
            .filter(|(n, _)| !n.contains("csrf"))
            .collect::<Vec<_>>(),
    );
    let session = f
        .session_cookie()
        .read(&cookies_of(&cookie), NOW)
        .expect("the session opens");
    assert_eq!(session.access_token, None);
    assert!(session.id_token.is_some());
    // Needed to refresh (a refresh token came with it): refused.
    let mut with_refresh = huge();
    with_refresh["refresh_token"] = json!("rt-1");
    with_refresh["expires_in"] = json!(3600);
    let login = run_login_with(
        &f,
        &mut provider(),
        "alice@numerique.gouv.fr",
        id_token_for,
        with_refresh,
    );
    assert!(matches!(
        login.step.outcome,
        Outcome::LoginFailed {
            reason: "session_too_large",
            ..
        }
    ));
}

fn cookies_of(header: &str) -> Vec<(&str, &str)> {
    crate::core::session::cookies::parse(std::iter::once(header))
}

#[test]
fn an_id_token_is_never_a_bearer_access_token() {
    let f = api_filter(json!({}));
    let p = provider();
    // An ID token as issued on refresh: no nonce, our audience, a scope even.
    let mut c = claims(json!({"scope": "api:read", "email": "alice@numerique.gouv.fr"}));
    c.nonce = None;
    let id_token = es256(c.clone());
    let (status, challenge, reason) = refused(run(
        &f,
        &api_get("/api/items", Some(&format!("Bearer {id_token}"))),
        &p,
    ));
    assert_eq!((status, reason), (401, "invalid_token"), "{challenge}");
    // The same claims typed as an access token pass.
    let access = es256_at(c.clone());
    let step = run(
        &f,
        &api_get("/api/items", Some(&format!("Bearer {access}"))),
        &p,
    );
    assert_eq!(step.outcome, Outcome::BearerPassed);
    // With the check of typ turned off, a token without at+jwt passes,
    // but one that carries an ID token's marks still does not.
    let lenient = api_filter(json!({"bearer_require_typ": false}));
    let step = run(
        &lenient,
        &api_get("/api/items", Some(&format!("Bearer {id_token}"))),
        &p,
    );
    assert_eq!(step.outcome, Outcome::BearerPassed);
    for mark in [
        json!({"at_hash": "x"}),
        json!({"typ": "ID"}),
        json!({"c_hash": "y"}),
    ] {
        let mut marked = c.clone();
        marked.custom.extend(mark.as_object().unwrap().clone());
        let token = es256(marked);
        let (status, _, reason) = refused(run(
            &lenient,
            &api_get("/api/items", Some(&format!("Bearer {token}"))),
            &p,
        ));
        assert_eq!((status, reason), (401, "invalid_token"), "{mark}");
    }
    let mut with_nonce = c;
    with_nonce.nonce = Some("n".repeat(43));
    let token = es256_at(with_nonce);
    let (status, ..) = refused(run(
        &lenient,
        &api_get("/api/items", Some(&format!("Bearer {token}"))),
        &p,
    ));
    assert_eq!(status, 401);
}

#[test]
fn a_provider_that_rotates_its_one_unnamed_key_is_followed() {
    use crate::core::oidc::keys::KeySet;
    use crate::core::oidc::token::tests::keys;
    let f = filter(json!({}));
    // The provider signs without kid, with its current key; we hold only
    // its previous key, unnamed.
    let current = ES256KeyPair::from_bytes(&keys().es.to_bytes()).unwrap();
    let previous = ES256KeyPair::generate();
    let point = previous.public_key().public_key().to_bytes_uncompressed();
    let old_jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "use": "sig",
        "x": crate::core::b64url(&point[1..33]), "y": crate::core::b64url(&point[33..65])}]});
    let mut state = provider();
    state.keys = Some(KeySet::parse(old_jwks.to_string().as_bytes()).unwrap());
    state.keys_fetched_at = 0;
    let login = run_login(
        &f,
        &mut state,
        "alice@numerique.gouv.fr",
        signed_by(&current),
    );
    assert_eq!(login.calls.iter().filter(|c| c.path == "/jwks").count(), 1);
    assert!(
        matches!(login.step.outcome, Outcome::LoginSucceeded { .. }),
        "{:?}",
        login.step.outcome
    );

    // A forged token without kid: one refetch, then refused; and no other
    // refetch within the interval.
    let forger = ES256KeyPair::generate();
    refused_after_one_key_refetch(&f, signed_by(&forger));

    // A bad signature under a kid we hold is not a rotation: no refetch.
    let mut state = provider();
    state.keys_fetched_at = 0;
    let named = ES256KeyPair::generate().with_key_id("ec-1");
    let login = run_login(&f, &mut state, "alice@numerique.gouv.fr", signed_by(&named));
    assert_eq!(login.calls.iter().filter(|c| c.path == "/jwks").count(), 0);
}

#[test]
fn a_refused_sign_in_ends_on_a_clean_address_that_a_reload_does_not_replay() {
    let f = filter(json!({"allowed_email_domains": ["*.gouv.fr"]}));
    let login = run_login(&f, &mut provider(), "eve@example.com", id_token_for);
    let redirect = response(login.step);
    assert_eq!(redirect.status, 302);
    let location = redirect.header("location").unwrap().to_string();
    assert_eq!(location, "/oauth2/failed?reason=denied&status=403&rd=%2F");
    let refusal = r#"_sesame_refusal"#;
    let set = redirect
        .headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with(refusal))
        .map(|(_, v)| v.clone())
        .expect("the refusal's cookie");
    assert!(
        set.contains("Path=/oauth2/failed") && set.contains("HttpOnly"),
        "{set}"
    );
    assert!(!set.contains("eve@"), "who is sealed: {set}");
    let cookie = cookie_header(&set_cookies(&redirect));
    let page = |cookie: &str, location: &str| {
        let step = f.on_request(
            &get(location, &[HTML, ("cookie", cookie)]),
            &[provider()],
            NOW + 30,
            &mut CountingEntropy(1),
        );
        assert_eq!(step.outcome, Outcome::PageShown, "not counted twice");
        let r = response(step);
        (r.status, String::from_utf8(r.body).unwrap())
    };
    // The page, then a reload: the same page, nothing replayed.
    for _ in 0..2 {
        let (status, body) = page(&cookie, &location);
        assert_eq!(status, 403);
        assert!(body.contains("eve@example.com") && body.contains("prompt%3Dlogin"));
    }
    // The link shared (no cookie), or the cookie moved to another name:
    // the reason, never who.
    let moved = cookie.replace("_sesame_refusal=", "_sesame_logout=");
    for cookie in ["", moved.as_str()] {
        let (status, body) = page(cookie, &location);
        assert_eq!(status, 403);
        assert!(body.contains("denied") && !body.contains("eve@"), "{body}");
    }
    // A crafted address shows an error page, with what it can trust.
    let (status, body) = page(
        "",
        "/oauth2/failed?reason=%3Cscript%3E&status=200&rd=https://evil.example",
    );
    assert_eq!(status, 400);
    assert!(body.contains("login_failed") && !body.contains("<script>"));
    assert!(!body.contains("evil.example"), "rd is a local path only");
}

#[test]
fn the_signed_out_page_ends_a_sign_out_sent_there() {
    let f = filter(json!({"provider_logout": false}));
    let step = f.on_request(
        &get("/oauth2/sign_out?rd=/oauth2/signed_out", &[HTML]),
        &[provider()],
        NOW,
        &mut CountingEntropy(1),
    );
    assert_eq!(
        response(step).header("location"),
        Some("/oauth2/signed_out")
    );
    let step = f.on_request(
        &get("/oauth2/signed_out", &[HTML]),
        &[provider()],
        NOW,
        &mut CountingEntropy(1),
    );
    assert_eq!(step.outcome, Outcome::PageShown);
    let r = response(step);
    assert_eq!(r.status, 200);
    let body = String::from_utf8(r.body).unwrap();
    assert!(body.contains("Vous êtes déconnecté") && body.contains("/oauth2/sign_in?rd=%2F"));
    // A return that names a state with no sign-out under way is still refused.
    let step = f.on_request(
        &get("/oauth2/signed_out?state=forged", &[HTML]),
        &[provider()],
        NOW,
        &mut CountingEntropy(1),
    );
    assert_eq!(response(step).status, 400);
}

#[test]
fn silent_sign_in_tries_prompt_none_then_goes_on_interactively_once() {
    let f = filter(json!({"silent_sign_in": true}));
    let (r, cookies) = start(&f, "/chat");
    let location = r.header("location").unwrap().to_string();
    assert_eq!(param(&location, "prompt"), "none");
    // The provider needs the person: an interactive sign-in at once, back
    // to the same page, the silent attempt's cookie cleared.
    let callback = |state: &str, cookies: &[(String, String)]| {
        f.on_request(
            &get(
                &format!("/oauth2/callback?error=login_required&state={state}"),
                &[HTML, ("cookie", &cookie_header(cookies))],
            ),
            &[provider()],
            NOW,
            &mut CountingEntropy(7),
        )
    };
    let step = callback(&param(&location, "state"), &cookies);
    assert_eq!(step.outcome, Outcome::LoginStarted);
    let again = response(step);
    let next = again.header("location").unwrap().to_string();
    assert!(next.starts_with(&format!("{ISSUER}/auth?")), "{next}");
    assert_eq!(param(&next, "prompt"), "", "interactive: no prompt=none");
    assert_ne!(param(&next, "state"), param(&location, "state"));
    let set = set_cookies(&again);
    assert!(set
        .iter()
        .any(|(n, v)| n.ends_with(&param(&location, "state")[..16]) && v.is_empty()));
    // The same error for the interactive sign-in: a page, not a loop.
    let step = callback(&param(&next, "state"), &set);
    assert!(
        matches!(
            step.outcome,
            Outcome::LoginFailed {
                reason: "provider_error",
                ..
            }
        ),
        "{:?}",
        step.outcome
    );
    // Without silent_sign_in, no prompt=none.
    let (r, _) = start(&filter(json!({})), "/chat");
    assert_eq!(param(r.header("location").unwrap(), "prompt"), "");
}

#[test]
fn sign_out_revokes_the_sessions_tokens_and_never_waits_on_a_failure() {
    let f = filter(json!({"provider_logout": false}));
    let mut state = provider();
    if let Some(m) = state.metadata.as_mut() {
        m.revocation_endpoint = Some(url::Url::parse(&format!("{ISSUER}/revoke")).unwrap());
    }
    let login = run_login_with(
        &f,
        &mut state,
        "alice@numerique.gouv.fr",
        id_token_for,
        json!({"refresh_token": "rt-1"}),
    );
    let cookie = cookie_header(&set_cookies(&response(login.step)));
    let sign_out = get("/oauth2/sign_out?rd=/bye", &[HTML, ("cookie", &cookie)]);
    let step = f.on_request(
        &sign_out,
        std::slice::from_ref(&state),
        NOW,
        &mut CountingEntropy(5),
    );
    // The refresh token first, then the access token, each authenticated
    // as the client.
    let mut revoked = Vec::new();
    let mut step = step;
    for status in [200, 503] {
        let Action::Call(call, pending) = step.action else {
            panic!("{:?}", step.outcome)
        };
        assert_eq!(call.path, "/revoke");
        let form = String::from_utf8(call.body.clone().unwrap()).unwrap();
        assert!(form.contains("client_secret="), "{form}");
        revoked.push(form);
        step = f.on_provider_response(
            *pending,
            &json_response(status, "application/json", "{}"),
            std::slice::from_mut(&mut state),
            NOW,
            &mut CountingEntropy(6),
            &MemoryStore::default(),
        );
    }
    assert!(revoked[0].contains("token=rt-1&token_type_hint=refresh_token"));
    assert!(revoked[1].contains("token=at-1&token_type_hint=access_token"));
    // One failed: the sign-out goes on, and says so.
    assert_eq!(
        step.outcome,
        Outcome::SignedOut {
            who: Some(Box::new(crate::core::flow::who::Who {
                sub: "alice-7f3a".into(),
                email: Some("alice@numerique.gouv.fr".into()),
                siret: Some("13002526500013".into()),
                ..Default::default()
            })),
            at_provider: false,
            revoked: Some(false),
        }
    );
    assert_eq!(step.outcome.second_counter(), Some("revocation_failure"));
    assert_eq!(response(step).header("location"), Some("/bye"));
    // The call cannot even be made: the sign-out goes on too.
    let step = f.on_request(
        &sign_out,
        std::slice::from_ref(&state),
        NOW,
        &mut CountingEntropy(5),
    );
    let Action::Call(_, pending) = step.action else {
        panic!()
    };
    let step = f.call_failed(*pending);
    assert_eq!(response(step).header("location"), Some("/bye"));
}
