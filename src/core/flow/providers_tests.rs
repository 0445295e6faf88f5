//! Several providers at once, driven through the core: the sign-in page,
//! one sign-in at each, the mix-up refused, routes for one provider, the
//! provider in the session and the headers, bearer tokens picked by their
//! issuer, and a plain OAuth 2.0 provider.

use jwt_simple::prelude::*;
use serde_json::{json, Value};

use crate::core::config::Config;
use crate::core::flow::tests::{
    cookie_header, discovered, forwarded, get, json_response, param, response, set_cookies,
};
use crate::core::flow::{Action, Filter, Outcome};
use crate::core::http::Response;
use crate::core::oidc::provider::ProviderState;
use crate::core::oidc::token::tests::{claims, es256, es256_at, NOW};
use crate::core::shared::MemoryStore;
use crate::core::testing::CountingEntropy;

const KC: &str = "http://127.0.0.1:9001/realms/staff";
const PC: &str = "http://127.0.0.1:9002/api/v2";
const OSM: &str = "http://127.0.0.1:9003";
const HTML: (&str, &str) = ("accept", "text/html");
const JSON: (&str, &str) = ("accept", "application/json");

fn config(patch: Value) -> Config {
    let mut v = json!({
        "providers": [
            {"id": "kc", "label": "Staff", "issuer": KC, "idp_cluster": "kc",
             "client_id": "sesame-kc", "client_secret": "kc-secret",
             "redirect_uri": "http://app.example/oauth2/callback/kc",
             "allowed_email_domains": ["staff.example"]},
            {"id": "pc", "provider": "proconnect", "issuer": PC, "idp_cluster": "pc",
             "client_id": "sesame-pc", "client_secret": "pc-secret",
             "redirect_uri": "http://app.example/oauth2/callback/pc"},
            {"id": "osm", "label": "OpenStreetMap", "provider": "oauth2", "idp_cluster": "osm",
             "client_id": "sesame-osm", "client_secret": "osm-secret",
             "redirect_uri": "http://app.example/oauth2/callback/osm",
             "authorization_endpoint": format!("{OSM}/oauth2/authorize"),
             "token_endpoint": format!("{OSM}/oauth2/token"),
             "userinfo_endpoint": format!("{OSM}/api/0.6/user/details.json"),
             "claims_map": {"sub": "/user/id", "preferred_username": "/user/display_name"},
             "allow_all_users": true}
        ],
        "cookie_secret": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        "cookie_secure": false,
        "allowed_email_domains": ["numerique.gouv.fr"],
        "routes": [
            {"path": "^/staff/", "mode": "session", "providers": ["kc"]},
            {"path": "^/api/", "mode": "bearer"}
        ]
    });
    for (k, val) in patch.as_object().unwrap() {
        v[k] = val.clone();
    }
    Config::parse(v.to_string().as_bytes()).expect("valid configuration")
}

fn states(f: &Filter) -> Vec<ProviderState> {
    f.config
        .providers
        .iter()
        .map(|p| ProviderState::configured(p).unwrap_or_else(|| discovered(&p.issuer)))
        .collect()
}

fn body(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// Starts a sign-in at provider `id`: the redirect, and the cookie header.
fn start_at(f: &Filter, s: &[ProviderState], id: &str) -> (String, String) {
    let path = format!("/oauth2/sign_in?provider={id}&rd=%2Fstaff%2Fx");
    let r = response(f.on_request(&get(&path, &[HTML]), s, NOW, &mut CountingEntropy(1)));
    assert_eq!(r.status, 302, "{}", body(&r));
    (
        r.header("location").unwrap().to_string(),
        cookie_header(&set_cookies(&r)),
    )
}

/// A whole OpenID sign-in at provider `id` (issuer `issuer`, client
/// `client`): the session cookie.
fn sign_in_oidc(
    f: &Filter,
    s: &mut [ProviderState],
    id: &str,
    issuer: &str,
    client: &str,
    email: &str,
) -> String {
    let (location, cookie) = start_at(f, s, id);
    let cb = format!(
        "/oauth2/callback/{id}?code=c&state={}",
        param(&location, "state")
    );
    let mut step = f.on_request(
        &get(&cb, &[("cookie", &cookie)]),
        s,
        NOW,
        &mut CountingEntropy(2),
    );
    while let Action::Call(call, pending) = step.action {
        assert_eq!(
            call.path
                .split('?')
                .next()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap(),
            "token"
        );
        let mut c = claims(json!({"email": email}));
        c.issuer = Some(issuer.into());
        c.audiences = Some(Audiences::AsString(client.into()));
        c.nonce = Some(param(&location, "nonce"));
        let tokens = json!({"id_token": es256(c), "access_token": "at", "token_type": "Bearer"});
        let reply = json_response(200, "application/json", &tokens.to_string());
        step = f.on_provider_response(
            *pending,
            &reply,
            s,
            NOW,
            &mut CountingEntropy(3),
            &MemoryStore::default(),
        );
        if let Action::Call(call, pending) = step.action {
            // userinfo, signed (ProConnect accepts nothing else)
            assert!(call.path.ends_with("/me"));
            let mut c = claims(json!({}));
            c.issuer = Some(issuer.into());
            c.audiences = Some(Audiences::AsString(client.into()));
            c.nonce = None;
            let reply = json_response(200, "application/jwt", &es256(c));
            step = f.on_provider_response(
                *pending,
                &reply,
                s,
                NOW,
                &mut CountingEntropy(4),
                &MemoryStore::default(),
            );
        }
    }
    let r = response(step);
    assert_eq!(r.status, 302, "{}", body(&r));
    assert_eq!(r.header("location"), Some("/staff/x"));
    cookie_header(&set_cookies(&r))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn a_navigation_without_session_gets_the_sign_in_page_with_every_provider() {
    let f = Filter::new(config(json!({})));
    let s = states(&f);
    let r = response(f.on_request(&get("/chat?x=1", &[HTML]), &s, NOW, &mut CountingEntropy(1)));
    assert_eq!(r.status, 302);
    let page = r.header("location").unwrap();
    assert_eq!(page, "/oauth2/sign_in?rd=%2Fchat%3Fx%3D1");
    let r = response(f.on_request(&get(page, &[HTML]), &s, NOW, &mut CountingEntropy(1)));
    assert_eq!(r.status, 200);
    let html = body(&r);
    for id in ["kc", "pc", "osm"] {
        assert!(
            html.contains(&format!(
                "href=\"/oauth2/sign_in?provider={id}&amp;rd=%2Fchat%3Fx%3D1\""
            )),
            "{id}: {html}"
        );
    }
    assert!(html.contains("Staff") && html.contains("OpenStreetMap"));
    assert!(
        html.contains("proconnect-button"),
        "ProConnect's own button"
    );
    // A provider that cannot be reached is offered without a link.
    let mut down = states(&f);
    down[0] = ProviderState::default();
    let html = body(&response(f.on_request(
        &get(page, &[HTML]),
        &down,
        NOW,
        &mut CountingEntropy(1),
    )));
    assert!(!html.contains("provider=kc"), "{html}");
    assert!(html.contains("unavailable") || html.contains("indisponible"));
    assert!(html.contains("provider=osm"));
}

#[test]
fn the_sign_in_page_offers_only_the_providers_a_route_admits() {
    let f = Filter::new(config(json!({})));
    let s = states(&f);
    // /staff/ admits kc only: a navigation goes straight there.
    let r = response(f.on_request(&get("/staff/x", &[HTML]), &s, NOW, &mut CountingEntropy(1)));
    assert_eq!(r.status, 302);
    let loc = r.header("location").unwrap();
    assert!(loc.starts_with(&format!("{KC}/auth?")), "{loc}");
    assert_eq!(param(loc, "client_id"), "sesame-kc");
    // Its sign-in page lists kc alone.
    let html = body(&response(f.on_request(
        &get("/oauth2/sign_in?rd=%2Fstaff%2Fx&prompt=login", &[HTML]),
        &s,
        NOW,
        &mut CountingEntropy(1),
    )));
    assert!(
        html.contains("provider=kc&amp;rd=%2Fstaff%2Fx&amp;prompt=login"),
        "{html}"
    );
    assert!(!html.contains("provider=pc") && !html.contains("provider=osm"));
}

#[test]
fn sign_in_at_a_named_provider_and_an_unknown_one() {
    let f = Filter::new(config(json!({})));
    let s = states(&f);
    let (loc, _) = start_at(&f, &s, "pc");
    assert!(loc.starts_with(&format!("{PC}/auth?")));
    assert_eq!(param(&loc, "client_id"), "sesame-pc");
    assert_eq!(
        param(&loc, "redirect_uri"),
        "http://app.example/oauth2/callback/pc"
    );
    assert!(
        param(&loc, "scope").contains("siret"),
        "ProConnect's scopes"
    );
    let step = f.on_request(
        &get("/oauth2/sign_in?provider=nope&rd=/", &[HTML]),
        &s,
        NOW,
        &mut CountingEntropy(1),
    );
    assert!(matches!(
        step.outcome,
        Outcome::LoginFailed {
            reason: "unknown_provider",
            ..
        }
    ));
    assert_eq!(response(step).status, 400);
}

#[test]
fn a_code_and_state_from_one_provider_are_refused_at_another_providers_callback() {
    let f = Filter::new(config(
        json!({"cookie_name": "__Host-s", "cookie_secure": true}),
    ));
    let s = states(&f);
    // Started at pc; the answer is delivered to kc's callback (with
    // __Host-, every cookie has Path=/, so the browser sends it there).
    let (loc, cookie) = start_at(&f, &s, "pc");
    let cb = format!("/oauth2/callback/kc?code=c&state={}", param(&loc, "state"));
    let step = f.on_request(
        &get(&cb, &[("cookie", &cookie)]),
        &s,
        NOW,
        &mut CountingEntropy(2),
    );
    assert!(
        matches!(
            step.outcome,
            Outcome::LoginFailed {
                reason: "provider_mismatch",
                ..
            }
        ),
        "{:?}",
        step.outcome
    );
    let r = response(step);
    assert_eq!(r.status, 302, "no token request is made");
    assert!(r
        .header("location")
        .unwrap()
        .starts_with("/oauth2/failed?reason=provider_mismatch&status=400"));
    // The same answer at its own callback goes on to pc's token endpoint.
    let cb = format!("/oauth2/callback/pc?code=c&state={}", param(&loc, "state"));
    let step = f.on_request(
        &get(&cb, &[("cookie", &cookie)]),
        &s,
        NOW,
        &mut CountingEntropy(2),
    );
    match step.action {
        Action::Call(call, _) => assert_eq!(call.authority, "127.0.0.1:9002"),
        a => panic!("{a:?}"),
    }
    // A callback naming another issuer (RFC 9207) is refused too.
    let cb = format!(
        "/oauth2/callback/pc?code=c&state={}&iss={KC}",
        param(&loc, "state")
    );
    let step = f.on_request(
        &get(&cb, &[("cookie", &cookie)]),
        &s,
        NOW,
        &mut CountingEntropy(2),
    );
    assert!(matches!(
        step.outcome,
        Outcome::LoginFailed {
            reason: "issuer_mismatch",
            ..
        }
    ));
}

#[test]
fn sessions_know_their_provider_and_routes_admit_only_theirs() {
    let f = Filter::new(config(json!({"qualified_user": true})));
    let mut s = states(&f);
    let staff = sign_in_oidc(&f, &mut s, "kc", KC, "sesame-kc", "bob@staff.example");
    let agent = sign_in_oidc(&f, &mut s, "pc", PC, "sesame-pc", "alice@numerique.gouv.fr");

    let req = get("/staff/x", &[HTML, ("cookie", &staff)]);
    let h = forwarded(&req, f.on_request(&req, &s, NOW, &mut CountingEntropy(5)));
    assert_eq!(header(&h, "x-auth-request-provider"), Some("kc"));
    assert_eq!(header(&h, "x-forwarded-user"), Some("kc:alice-7f3a"));
    assert_eq!(header(&h, "x-forwarded-email"), Some("bob@staff.example"));

    // The ProConnect session on the kc-only route: a navigation is offered
    // a sign-in there, anything else is refused.
    let req = get("/staff/x", &[HTML, ("cookie", &agent)]);
    let r = response(f.on_request(&req, &s, NOW, &mut CountingEntropy(5)));
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("/oauth2/sign_in?rd=%2Fstaff%2Fx")
    );
    let req = get("/staff/x", &[JSON, ("cookie", &agent)]);
    assert_eq!(
        response(f.on_request(&req, &s, NOW, &mut CountingEntropy(5))).status,
        403
    );
    // Twice: the second answer comes from the session cache.
    assert_eq!(
        response(f.on_request(&req, &s, NOW, &mut CountingEntropy(5))).status,
        403
    );

    // Elsewhere, each provider's own rules: pc has none, so the filter's.
    let req = get("/chat", &[JSON, ("cookie", &agent)]);
    let h = forwarded(&req, f.on_request(&req, &s, NOW, &mut CountingEntropy(5)));
    assert_eq!(header(&h, "x-auth-request-provider"), Some("pc"));
    assert_eq!(header(&h, "x-forwarded-user"), Some("pc:alice-7f3a"));
    // kc's rules replace the filter's for kc people: a numerique.gouv.fr
    // address is not enough there.
    let mut s2 = states(&f);
    let (loc, cookie) = start_at(&f, &s2, "kc");
    let cb = format!("/oauth2/callback/kc?code=c&state={}", param(&loc, "state"));
    let step = f.on_request(
        &get(&cb, &[("cookie", &cookie)]),
        &s2,
        NOW,
        &mut CountingEntropy(2),
    );
    let Action::Call(_, pending) = step.action else {
        panic!()
    };
    let mut c = claims(json!({"email": "alice@numerique.gouv.fr"}));
    c.issuer = Some(KC.into());
    c.audiences = Some(Audiences::AsString("sesame-kc".into()));
    c.nonce = Some(param(&loc, "nonce"));
    let tokens = json!({"id_token": es256(c), "access_token": "at", "token_type": "Bearer"});
    let mut step = f.on_provider_response(
        *pending,
        &json_response(200, "application/json", &tokens.to_string()),
        &mut s2,
        NOW,
        &mut CountingEntropy(3),
        &MemoryStore::default(),
    );
    if let Action::Call(_, pending) = step.action {
        let reply = json_response(
            200,
            "application/json",
            &json!({"sub": "alice-7f3a"}).to_string(),
        );
        step = f.on_provider_response(
            *pending,
            &reply,
            &mut s2,
            NOW,
            &mut CountingEntropy(4),
            &MemoryStore::default(),
        );
    }
    assert!(
        matches!(step.outcome, Outcome::Denied { .. }),
        "{:?}",
        step.outcome
    );
}

#[test]
fn a_session_does_not_move_to_another_provider() {
    let f = Filter::new(config(json!({})));
    let mut s = states(&f);
    let agent = sign_in_oidc(&f, &mut s, "pc", PC, "sesame-pc", "alice@numerique.gouv.fr");
    // The first byte of the sealed value names the provider: naming
    // another one opens nothing (that provider's keys did not seal it).
    let (name, value) = agent.split_once('=').unwrap();
    let mut raw = crate::core::b64url_decode(value).unwrap();
    assert_eq!(raw[0], 2, "pc is the second provider");
    for other in [1u8, 3] {
        raw[0] = other;
        let forged = format!("{name}={}", crate::core::b64url(&raw));
        let req = get("/chat", &[JSON, ("cookie", &forged)]);
        let step = f.on_request(&req, &s, NOW, &mut CountingEntropy(5));
        assert_eq!(
            step.outcome,
            Outcome::Unauthenticated,
            "provider byte {other}"
        );
    }
}

#[test]
fn a_plain_oauth2_provider_signs_people_in_from_its_userinfo_api() {
    let f = Filter::new(config(json!({})));
    let mut s = states(&f);
    let (loc, cookie) = start_at(&f, &s, "osm");
    assert!(loc.starts_with(&format!("{OSM}/oauth2/authorize?")));
    assert_eq!(param(&loc, "nonce"), "", "no nonce without an ID token");
    assert_eq!(param(&loc, "code_challenge_method"), "S256");
    assert!(!loc.contains("scope="), "no scope configured, none sent");
    let cb = format!("/oauth2/callback/osm?code=c&state={}", param(&loc, "state"));
    let step = f.on_request(
        &get(&cb, &[("cookie", &cookie)]),
        &s,
        NOW,
        &mut CountingEntropy(2),
    );
    let Action::Call(call, pending) = step.action else {
        panic!("{:?}", step.outcome)
    };
    assert_eq!(call.path, "/oauth2/token");
    let form = String::from_utf8_lossy(call.body.as_deref().unwrap()).into_owned();
    assert!(form.contains("client_id=sesame-osm") && form.contains("code_verifier="));
    let tokens = json!({"access_token": "osm-at", "token_type": "Bearer", "refresh_token": "osm-rt", "expires_in": 3600});
    let step = f.on_provider_response(
        *pending,
        &json_response(200, "application/json", &tokens.to_string()),
        &mut s,
        NOW,
        &mut CountingEntropy(3),
        &MemoryStore::default(),
    );
    let Action::Call(call, pending) = step.action else {
        panic!("{:?}", step.outcome)
    };
    assert_eq!(call.path, "/api/0.6/user/details.json");
    assert!(call
        .headers
        .iter()
        .any(|(k, v)| k == "accept" && v == "application/json"));
    assert!(call
        .headers
        .iter()
        .any(|(k, v)| k == "authorization" && v == "Bearer osm-at"));
    let details = json!({"version": "0.6", "user": {"id": 4242, "display_name": "Carto Mapper"}});
    let step = f.on_provider_response(
        *pending,
        &json_response(200, "application/json; charset=utf-8", &details.to_string()),
        &mut s,
        NOW,
        &mut CountingEntropy(4),
        &MemoryStore::default(),
    );
    assert!(
        matches!(&step.outcome, Outcome::LoginSucceeded { who } if who.sub == "4242" && who.email.is_none()),
        "{:?}",
        step.outcome
    );
    let session = cookie_header(&set_cookies(&response(step)));
    let req = get("/chat", &[JSON, ("cookie", &session)]);
    let h = forwarded(&req, f.on_request(&req, &s, NOW, &mut CountingEntropy(5)));
    assert_eq!(header(&h, "x-forwarded-user"), Some("4242"));
    assert_eq!(
        header(&h, "x-forwarded-preferred-username"),
        Some("Carto Mapper")
    );
    assert_eq!(header(&h, "x-auth-request-provider"), Some("osm"));
    assert_eq!(header(&h, "x-forwarded-email"), None);
}

#[test]
fn oauth2_userinfo_without_sub_or_about_someone_else_is_refused() {
    use crate::core::flow::login::mapped_claims;
    let map = vec![
        ("sub".to_string(), "/user/id".to_string()),
        ("email".to_string(), "/user/email".to_string()),
    ];
    let ok = mapped_claims(&map, br#"{"user":{"id":7,"email":"a@b.fr"}}"#, "").unwrap();
    assert_eq!(ok["sub"], "7");
    assert_eq!(
        ok["email_verified"], false,
        "an unmapped email_verified is not assumed"
    );
    assert!(mapped_claims(&map, br#"{"user":{"name":"x"}}"#, "").is_err());
    assert!(mapped_claims(&map, br#"{"user":{"id":""}}"#, "").is_err());
    assert!(mapped_claims(&map, br#"{"user":{"id":8}}"#, "7").is_err());
    assert!(mapped_claims(&map, b"<html>", "").is_err());
}

#[test]
fn bearer_tokens_are_checked_by_the_provider_their_issuer_names() {
    let f = Filter::new(config(json!({})));
    let s = states(&f);
    let token = |issuer: &str, aud: &str| {
        let mut c = claims(json!({"email": "bob@staff.example", "scope": "openid"}));
        c.nonce = None;
        c.issuer = Some(issuer.into());
        c.audiences = Some(Audiences::AsString(aud.into()));
        format!("Bearer {}", es256_at(c))
    };
    let call = |auth: &str| {
        let req = get("/api/x", &[JSON, ("authorization", auth)]);
        f.on_request(&req, &s, NOW, &mut CountingEntropy(5))
    };
    let step = call(&token(KC, "sesame-kc"));
    assert_eq!(step.outcome, Outcome::BearerPassed);
    let req = get("/api/x", &[JSON, ("authorization", "x")]);
    let h = forwarded(&req, step);
    assert_eq!(header(&h, "x-auth-request-provider"), Some("kc"));
    // Each provider's own audience: kc's token for pc's client is refused.
    assert!(matches!(
        call(&token(KC, "sesame-pc")).outcome,
        Outcome::BearerRefused {
            reason: "wrong_audience",
            ..
        }
    ));
    // An issuer no provider has.
    assert!(matches!(
        call(&token("http://evil.example", "sesame-kc")).outcome,
        Outcome::BearerRefused {
            reason: "wrong_issuer",
            ..
        }
    ));
    // A token checked on an open route, then sent to a route for another
    // provider: refused there as if it came fresh.
    let staff_only = Filter::new(config(json!({"routes": [
        {"path": "^/api/", "mode": "bearer"},
        {"path": "^/pc-api/", "mode": "bearer", "providers": ["pc"]}
    ]})));
    let kc_token = token(KC, "sesame-kc");
    for path in ["/api/x", "/pc-api/x", "/pc-api/y"] {
        let req = get(path, &[JSON, ("authorization", &kc_token)]);
        let step = staff_only.on_request(&req, &s, NOW, &mut CountingEntropy(5));
        if path == "/api/x" {
            assert_eq!(step.outcome, Outcome::BearerPassed);
        } else {
            assert!(
                matches!(
                    step.outcome,
                    Outcome::BearerRefused {
                        reason: "wrong_issuer",
                        ..
                    }
                ),
                "{path}: {:?}",
                step.outcome
            );
        }
    }
    // The OAuth 2.0 provider's "issuer" issues nothing Sésame can check.
    assert!(matches!(
        call(&token(OSM, "sesame-osm")).outcome,
        Outcome::BearerRefused {
            reason: "wrong_issuer",
            ..
        }
    ));
}

#[test]
fn several_providers_are_checked_at_load_with_every_problem_at_once() {
    let bad = json!({
        "providers": [
            {"id": "a", "issuer": KC, "idp_cluster": "x", "client_id": "c", "client_secret": "s",
             "redirect_uri": "http://app.example/oauth2/callback"},
            {"id": "a", "issuer": KC, "idp_cluster": "x", "client_id": "c", "client_secret": "s",
             "redirect_uri": "http://app.example/oauth2/callback", "allowed_emails": []},
            {"id": "bad id!", "provider": "oauth2", "idp_cluster": "x", "client_id": "c",
             "client_secret": "s", "redirect_uri": "http://app.example/cb/o",
             "authorization_endpoint": "http://o/auth", "token_endpoint": "not a url",
             "claims_map": {"name": "/n"}, "acr_values": ["x"]},
            {"id": "d", "issuer": PC, "idp_cluster": "x", "client_id": "c", "client_secret": "s",
             "redirect_uri": "http://app.example/cb/d", "claims_map": {"sub": "/id"}, "nope": 1}
        ],
        "client_id": "top-level",
        "cookie_secret": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        "allowed_email_domains": ["*"],
        "routes": [{"path": "^/x", "mode": "session", "providers": ["zz"]}]
    });
    let errors = Config::parse(bad.to_string().as_bytes()).unwrap_err();
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    for key in [
        "client_id",
        "providers[1].id",
        "providers[1].redirect_uri",
        "providers[1].issuer",
        "providers[1].allowed_email_domains",
        "providers[2].id",
        "providers[2].token_endpoint",
        "providers[2].userinfo_endpoint",
        "providers[2].claims_map",
        "providers[2].acr_values",
        "providers[3].claims_map",
        "providers[3].nope",
        "routes[0].providers",
    ] {
        assert!(keys.contains(&key), "{key} missing from {errors:#?}");
    }
}

#[test]
fn one_provider_at_the_top_level_keeps_working_as_a_list_of_one() {
    let c = crate::core::config::tests::config_with(json!({}));
    assert_eq!(c.providers.len(), 1);
    assert_eq!(c.providers[0].id, "oidc");
    assert_eq!(c.providers[0].callback_path(), "/oauth2/callback");
    // One provider: no X-Auth-Request-Provider (the same on every request,
    // a hostcall for nothing); with several, every identity names its own.
    let session = crate::core::session::Session {
        claims: json!({"sub": "alice"}).as_object().unwrap().clone(),
        ..Default::default()
    };
    let named = |c: &Config| {
        crate::core::flow::headers::identity_headers(c, &session)
            .iter()
            .any(|(k, _)| k == "x-auth-request-provider")
    };
    assert!(!named(&c));
    assert!(named(&config(json!({}))));
    let c = crate::core::config::tests::config_with(json!({"provider": "proconnect"}));
    assert_eq!(c.providers[0].id, "proconnect");
    assert_eq!(c.providers[0].label, "ProConnect");
}

#[test]
fn a_personal_token_on_a_route_of_another_provider_is_refused_alike_when_remembered() {
    let f = Filter::new(config(json!({
        "personal_tokens": {"lifetime": 3600, "scopes": ["api:read"]},
        "routes": [
            {"path": "^/staff/", "mode": "session", "providers": ["kc"]},
            {"path": "^/pc-api/", "mode": "bearer", "providers": ["pc"], "scopes": ["api:read"]},
            {"path": "^/api/", "mode": "bearer", "scopes": ["api:read"]}
        ]
    })));
    let mut s = states(&f);
    let staff = sign_in_oidc(&f, &mut s, "kc", KC, "sesame-kc", "bob@staff.example");
    let ask = get(
        "/oauth2/token",
        &[
            JSON,
            ("cookie", &staff),
            (":authority", "app.example"),
            ("origin", "http://app.example"),
        ],
    );
    let ask = crate::core::http::Request {
        method: "POST",
        ..ask
    };
    let issued = response(f.on_request(&ask, &s, NOW, &mut CountingEntropy(6)));
    assert_eq!(issued.status, 200, "{}", body(&issued));
    let token: Value = serde_json::from_slice(&issued.body).unwrap();
    let bearer = format!("Bearer {}", token["token"].as_str().unwrap());
    // A route of every provider: the person passes (and the token is
    // remembered).
    let req = get("/api/x", &[JSON, ("authorization", &bearer)]);
    let step = f.on_request(&req, &s, NOW, &mut CountingEntropy(7));
    assert!(
        matches!(step.outcome, Outcome::BearerPassed),
        "{:?}",
        step.outcome
    );
    // The ProConnect-only route: refused as a personal token, the first
    // time and from the cache alike (not as a provider's token of another
    // issuer).
    for _ in 0..2 {
        let req = get("/pc-api/x", &[JSON, ("authorization", &bearer)]);
        let step = f.on_request(&req, &s, NOW, &mut CountingEntropy(8));
        assert!(
            matches!(
                step.outcome,
                Outcome::TokenRefused {
                    reason: "access_denied",
                    ..
                }
            ),
            "{:?}",
            step.outcome
        );
        assert_eq!(response(step).status, 403);
    }
}
