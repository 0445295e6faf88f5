//! Access managed from outside the configuration, driven through the core:
//! the access document's rules and revocations on live sessions, nobody
//! admitted before a first document, API keys, and personal tokens.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::core::access::document::AccessDocument;
use crate::core::flow::tests::{
    api_get, cookie_header, filter, forwarded, get, provider, response, run, set_cookies,
    signed_in_cookie, API_ROUTES,
};
use crate::core::flow::{Filter, Outcome};
use crate::core::http::Request;
use crate::core::oidc::token::tests::NOW;
use crate::core::testing::CountingEntropy;

const ALICE: &str = "alice@numerique.gouv.fr";

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A filter whose rules come from an access document, with the API routes.
fn managed(extra: Value) -> Filter {
    let mut patch = json!({
        "allowed_email_domains": null,
        "access_source": {"url": "http://access.internal/access.json", "cluster": "access",
                          "refresh_interval": 30},
        "routes": serde_json::from_str::<Value>(API_ROUTES).unwrap(),
    });
    if let (Some(p), Some(e)) = (patch.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    filter(patch)
}

/// Puts `doc` in force, as the adapter does when a fetch brings it.
fn put_in_force(f: &Filter, doc: Value) {
    let document = AccessDocument::parse(doc.to_string().as_bytes(), &["oidc"], &|c| {
        f.config.kept_claims.contains(c)
    })
    .expect("a valid document");
    let mut access = f.access.borrow_mut();
    access.document = Some(std::rc::Rc::new(document));
    access.confirmed_at = NOW;
    drop(access);
    f.access_changed();
}

/// A refusal's status and the `error` of its `WWW-Authenticate` challenge.
fn challenge(step: crate::core::flow::Step) -> (u16, String) {
    let r = response(step);
    let header = r.header("www-authenticate").unwrap_or_default().to_string();
    let error = header
        .split("error=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_string();
    (r.status, error)
}

fn page<'a>(cookie: &'a str) -> Request<'a> {
    get(
        "/chat",
        &[("accept", "application/json"), ("cookie", cookie)],
    )
}

#[test]
fn nobody_is_admitted_before_a_first_document_but_public_routes_pass() {
    let f = managed(json!({}));
    let step = run(&f, &get("/chat", &[("accept", "text/html")]), &provider());
    assert!(matches!(step.outcome, Outcome::AccessUnavailable));
    let r = response(step);
    assert_eq!((r.status, r.header("retry-after")), (503, Some("5")));
    let api = response(run(&f, &api_get("/api/x", Some("Bearer abc")), &provider()));
    assert_eq!(api.status, 503);
    assert!(String::from_utf8_lossy(&api.body).contains("temporarily_unavailable"));
    let callback = run(
        &f,
        &get("/oauth2/callback?code=a&state=b", &[]),
        &provider(),
    );
    assert!(matches!(callback.outcome, Outcome::AccessUnavailable));
    let status = run(&f, &get("/status", &[]), &provider());
    assert!(matches!(status.outcome, Outcome::Public));
}

#[test]
fn a_document_older_than_max_age_admits_nobody_until_confirmed_again() {
    let f = managed(
        json!({"access_source": {"url": "http://access.internal/a.json",
        "cluster": "access", "refresh_interval": 30, "max_age": 90}}),
    );
    put_in_force(&f, json!({"allowed_emails": [ALICE]}));
    let cookie = signed_in_cookie(&f, ALICE);
    let at = |t: u64| {
        f.on_request(
            &page(&cookie),
            std::slice::from_ref(&provider()),
            t,
            &mut CountingEntropy(1),
        )
        .outcome
    };
    assert!(matches!(at(NOW + 90), Outcome::Passed));
    // The source has not given or confirmed it for longer than max_age.
    assert!(matches!(at(NOW + 91), Outcome::AccessUnavailable));
    let status = run(&f, &get("/status", &[]), &provider());
    assert!(
        matches!(status.outcome, Outcome::Public),
        "public routes still pass"
    );
    f.access.borrow_mut().confirmed_at = NOW + 100;
    assert!(matches!(at(NOW + 101), Outcome::Passed));
}

#[test]
fn a_document_change_applies_to_live_sessions() {
    let f = managed(json!({}));
    put_in_force(&f, json!({"allowed_emails": [ALICE]}));
    let cookie = signed_in_cookie(&f, ALICE);
    assert!(matches!(
        run(&f, &page(&cookie), &provider()).outcome,
        Outcome::Passed
    ));
    // Cached now: the next request is answered from the cache...
    assert!(matches!(
        run(&f, &page(&cookie), &provider()).outcome,
        Outcome::Passed
    ));
    // ...until a document revokes her: refused at once, cache or not.
    put_in_force(
        &f,
        json!({"allowed_emails": [ALICE], "revoked": [{"email": "ALICE@numerique.gouv.fr"}]}),
    );
    let step = run(&f, &page(&cookie), &provider());
    assert!(
        matches!(&step.outcome, Outcome::Denied { reason, sign_in: false, .. } if reason.contains("revokes")),
        "{:?}",
        step.outcome
    );
    assert_eq!(response(step).status, 403);
    // Removed from the rules: refused too; a document without rules admits nobody.
    put_in_force(&f, json!({"allowed_emails": ["bob@numerique.gouv.fr"]}));
    assert_eq!(response(run(&f, &page(&cookie), &provider())).status, 403);
    put_in_force(&f, json!({}));
    assert_eq!(response(run(&f, &page(&cookie), &provider())).status, 403);
    // Added again by domain: in.
    put_in_force(&f, json!({"allowed_email_domains": ["*.gouv.fr"]}));
    assert!(matches!(
        run(&f, &page(&cookie), &provider()).outcome,
        Outcome::Passed
    ));
}

#[test]
fn api_keys_open_routes_by_scope_and_never_reach_the_upstream() {
    let key = "sesame_key_0123456789abcdef";
    let f = managed(json!({}));
    put_in_force(
        &f,
        json!({"allowed_email_domains": ["*"], "api_keys": [
            {"id": "ci-bot", "sha256": sha256_hex(key), "scopes": ["api:read"]},
            {"id": "old", "sha256": sha256_hex("old-key"), "scopes": ["api:read"],
             "expires": "2001-01-01T00:00:00Z"}
        ]}),
    );
    let bearer = format!("Bearer {key}");
    let req = get(
        "/api/items",
        &[
            ("authorization", &bearer),
            ("x-auth-request-api-key", "boss"),
            ("x-forwarded-user", "boss"),
        ],
    );
    let sent = forwarded(&req, run(&f, &req, &provider()));
    let header = |n: &str| sent.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(header("x-forwarded-user"), Some("apikey:ci-bot"));
    assert_eq!(header("x-auth-request-api-key"), Some("ci-bot"));
    assert_eq!(header("x-auth-request-scopes"), Some("api:read"));
    assert_eq!(
        header("authorization"),
        None,
        "the key never reaches the upstream"
    );
    assert_eq!(
        sent.iter().filter(|(k, _)| k == "x-forwarded-user").count(),
        1
    );
    // A scope it lacks; a route that requires none; an expired key; an
    // unknown one with Sésame's prefix (never introspected).
    let step = run(&f, &api_get("/api/admin/x", Some(&bearer)), &provider());
    assert!(matches!(
        step.outcome,
        Outcome::KeyRefused {
            reason: "insufficient_scope",
            ..
        }
    ));
    assert_eq!(challenge(step), (403, "insufficient_scope".into()));
    let step = run(&f, &api_get("/mixed/x", Some(&bearer)), &provider());
    assert!(matches!(
        step.outcome,
        Outcome::KeyRefused {
            reason: "insufficient_scope",
            ..
        }
    ));
    let step = run(&f, &api_get("/api/x", Some("Bearer old-key")), &provider());
    assert!(
        matches!(&step.outcome, Outcome::KeyRefused { key: Some(k), reason: "expired_key" } if k == "old")
    );
    assert_eq!(response(step).status, 401);
    let step = run(
        &f,
        &api_get("/api/x", Some("Bearer sesame_key_unknown")),
        &provider(),
    );
    assert!(matches!(
        step.outcome,
        Outcome::KeyRefused {
            key: None,
            reason: "unknown_key"
        }
    ));
    // Removed from the document: unknown.
    put_in_force(&f, json!({"allowed_email_domains": ["*"]}));
    let step = run(&f, &api_get("/api/items", Some(&bearer)), &provider());
    assert!(matches!(
        step.outcome,
        Outcome::KeyRefused {
            reason: "unknown_key",
            ..
        }
    ));
}

#[test]
fn configured_api_keys_work_without_a_document() {
    let key = "plain-key-without-prefix";
    let f = filter(json!({
        "routes": [{"path": "^/api/", "mode": "bearer", "scopes": ["api:read"]}],
        "api_keys": [{"id": "etl", "sha256": sha256_hex(key), "scopes": ["api:read", "api:write"]}]
    }));
    let bearer = format!("Bearer {key}");
    let req = api_get("/api/x", Some(&bearer));
    let sent = forwarded(&req, run(&f, &req, &provider()));
    assert!(sent.contains(&("x-forwarded-user".into(), "apikey:etl".into())));
    assert!(sent.contains(&("x-auth-request-scopes".into(), "api:read api:write".into())));
}

/// Asks for a personal token with `headers` (and the session cookie).
fn ask_token(f: &Filter, cookie: &str, headers: &[(&str, &str)]) -> (u16, Value, Outcome) {
    let mut all = vec![
        ("cookie", cookie),
        (":authority", "app.example"),
        ("accept", "application/json"),
    ];
    all.extend_from_slice(headers);
    let req = Request {
        method: "POST",
        path: "/oauth2/token",
        headers: all,
    };
    let step = f.on_request(
        &req,
        std::slice::from_ref(&provider()),
        NOW,
        &mut CountingEntropy(9),
    );
    let outcome = step.outcome.clone();
    let r = response(step);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
        outcome,
    )
}

#[test]
fn personal_tokens_are_issued_same_origin_and_open_bearer_routes_as_the_person() {
    let f = managed(json!({"personal_tokens": {"lifetime": 3600, "scopes": ["api:read"]}}));
    put_in_force(&f, json!({"allowed_email_domains": ["*.gouv.fr"]}));
    let cookie = signed_in_cookie(&f, ALICE);
    // The page, with its form.
    let page = response(run(
        &f,
        &get(
            "/oauth2/token",
            &[("cookie", &cookie), ("accept", "text/html")],
        ),
        &provider(),
    ));
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body)
        .contains("<form method=\"post\" action=\"/oauth2/token\">"));
    // Cross-site: refused, whatever else the request says.
    for headers in [
        vec![("origin", "https://evil.example")],
        vec![
            ("origin", "https://app.example"),
            ("sec-fetch-site", "cross-site"),
        ],
        vec![("origin", "https://app.example.evil")],
        vec![],
    ] {
        let (status, body, outcome) = ask_token(&f, &cookie, &headers);
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("cross_site_request")),
            "{headers:?}"
        );
        assert!(matches!(
            outcome,
            Outcome::TokenRefused {
                reason: "cross_site_request",
                ..
            }
        ));
    }
    let (status, body, outcome) = ask_token(
        &f,
        &cookie,
        &[
            ("origin", "http://app.example"),
            ("sec-fetch-site", "same-origin"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert!(matches!(outcome, Outcome::TokenIssued { .. }));
    assert_eq!(body["expires_at"], NOW + 3600);
    assert_eq!(body["scopes"], json!(["api:read"]));
    let token = body["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("sesame_pt_"));
    assert!(!token.contains(ALICE), "sealed, not readable");
    // It opens a bearer route as her, without reaching the upstream itself.
    let bearer = format!("Bearer {token}");
    let req = api_get("/api/items", Some(&bearer));
    let sent = forwarded(&req, run(&f, &req, &provider()));
    assert!(
        sent.contains(&("x-forwarded-email".into(), ALICE.into())),
        "{sent:?}"
    );
    assert!(!sent.iter().any(|(k, _)| k == "authorization"));
    // Not a route whose scope it lacks; not once expired; not tampered.
    let step = run(&f, &api_get("/api/admin/x", Some(&bearer)), &provider());
    assert!(matches!(
        step.outcome,
        Outcome::TokenRefused {
            reason: "insufficient_scope",
            ..
        }
    ));
    assert_eq!(challenge(step), (403, "insufficient_scope".into()));
    let late = f.on_request(
        &req,
        std::slice::from_ref(&provider()),
        NOW + 3600,
        &mut CountingEntropy(1),
    );
    assert!(matches!(
        late.outcome,
        Outcome::TokenRefused {
            reason: "expired_token",
            ..
        }
    ));
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 5;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = format!("Bearer {}", String::from_utf8(tampered).unwrap());
    let step = run(&f, &api_get("/api/items", Some(&tampered)), &provider());
    assert!(matches!(
        step.outcome,
        Outcome::TokenRefused {
            reason: "invalid_token",
            ..
        }
    ));
    // Revoked in the document: dead at once, although remembered.
    put_in_force(
        &f,
        json!({"allowed_email_domains": ["*.gouv.fr"], "revoked": [{"email": ALICE}]}),
    );
    let step = run(&f, &req, &provider());
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
    // And she cannot get a new one.
    let (status, _, _) = ask_token(&f, &cookie, &[("origin", "http://app.example")]);
    assert_eq!(status, 403);
}

#[test]
fn a_personal_token_is_no_session_cookie_and_the_other_way_round() {
    let f = managed(json!({"personal_tokens": {"scopes": ["api:read"]}}));
    put_in_force(&f, json!({"allowed_email_domains": ["*.gouv.fr"]}));
    let cookie = signed_in_cookie(&f, ALICE);
    let sealed = cookie.split_once('=').unwrap().1.split(';').next().unwrap();
    let forged = format!("Bearer sesame_pt_{sealed}");
    let step = run(&f, &api_get("/api/items", Some(&forged)), &provider());
    assert!(matches!(
        step.outcome,
        Outcome::TokenRefused {
            reason: "invalid_token",
            ..
        }
    ));
    let (_, body, _) = ask_token(&f, &cookie, &[("origin", "http://app.example")]);
    let token = body["token"].as_str().unwrap();
    let as_cookie = format!(
        "{}={}",
        f.config.cookie_name,
        token.trim_start_matches("sesame_pt_")
    );
    assert!(matches!(
        run(&f, &page(&as_cookie), &provider()).outcome,
        Outcome::Unauthenticated
    ));
    // The configuration changed since: scopes taken out are no longer
    // granted, a shorter lifetime ends the token sooner, and without
    // personal_tokens no token opens.
    let narrower = managed(json!({"personal_tokens": {"scopes": ["api:write"]}}));
    put_in_force(&narrower, json!({"allowed_email_domains": ["*.gouv.fr"]}));
    let bearer = format!("Bearer {token}");
    let step = run(
        &narrower,
        &api_get("/api/items", Some(&bearer)),
        &provider(),
    );
    assert!(
        matches!(
            step.outcome,
            Outcome::TokenRefused {
                reason: "insufficient_scope",
                ..
            }
        ),
        "{:?}",
        step.outcome
    );
    let shorter = managed(json!({"personal_tokens": {"scopes": ["api:read"], "lifetime": 600}}));
    put_in_force(&shorter, json!({"allowed_email_domains": ["*.gouv.fr"]}));
    let step = run(&shorter, &api_get("/api/items", Some(&bearer)), &provider());
    assert!(
        matches!(
            step.outcome,
            Outcome::TokenRefused {
                reason: "expired_token",
                ..
            }
        ),
        "{:?}",
        step.outcome
    );
    let off = managed(json!({}));
    put_in_force(&off, json!({"allowed_email_domains": ["*.gouv.fr"]}));
    let step = run(&off, &api_get("/api/items", Some(&bearer)), &provider());
    assert!(
        matches!(
            step.outcome,
            Outcome::TokenRefused {
                reason: "invalid_token",
                ..
            }
        ),
        "{:?}",
        step.outcome
    );
    // A dedicated secret: tokens sealed with the cookie secret do not open.
    let g = managed(
        json!({"personal_tokens": {"secret": "c2VjcmV0LWZvci1wZXJzb25hbC10b2tlbnMtb25seS0xMjM0"}}),
    );
    put_in_force(&g, json!({"allowed_email_domains": ["*.gouv.fr"]}));
    let step = run(
        &g,
        &api_get("/api/items", Some(&format!("Bearer {token}"))),
        &provider(),
    );
    assert!(matches!(
        step.outcome,
        Outcome::TokenRefused {
            reason: "invalid_token",
            ..
        }
    ));
    let _ = set_cookies;
    let _ = cookie_header;
}

#[test]
fn configuration_errors_of_managed_access() {
    let errors = |patch: Value| {
        let mut v = crate::core::config::tests::minimal();
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        crate::core::config::Config::parse(v.to_string().as_bytes())
            .err()
            .unwrap_or_default()
            .iter()
            .map(|e| e.key.clone())
            .collect::<Vec<_>>()
    };
    let source = json!({"url": "http://access.internal/a.json", "cluster": "access"});
    assert!(errors(json!({"access_source": source})).contains(&"access_source".to_string()));
    assert!(errors(
        json!({"access_source": source, "allowed_email_domains": null, "api_keys": []})
    )
    .contains(&"api_keys".to_string()));
    assert!(errors(json!({"access_source": source, "allowed_email_domains": null})).is_empty());
    assert!(errors(
        json!({"access_source": {"url": "http://a/x", "cluster": "a", "refresh_interval": 60,
        "max_age": 60}, "allowed_email_domains": null})
    )
    .contains(&"access_source.max_age".to_string()));
    assert!(errors(json!({"access_source": {"url": "ftp://x", "cluster": "a", "every": 1}, "allowed_email_domains": null}))
        .iter()
        .any(|k| k == "access_source.url"));
    assert!(
        errors(json!({"personal_tokens": {"lifetime": 10, "secret": "c2hvcnQ="}}))
            .iter()
            .any(|k| k == "personal_tokens.lifetime")
    );
    assert!(errors(json!({"personal_tokens": {"secret": "c2hvcnQ="}}))
        .iter()
        .any(|k| k == "personal_tokens.secret"));
    assert!(
        errors(json!({"api_keys": [{"id": "x", "sha256": "zz", "scopes": ["a"]}]}))
            .iter()
            .any(|k| k == "api_keys[0].sha256")
    );
}

#[test]
fn a_route_that_needs_a_stronger_authentication_steps_up_once() {
    use crate::core::flow::tests::{complete_login, id_token_with_acr, param, start};
    let f = filter(json!({"routes": [
        {"path": "^/admin/", "mode": "session", "acr_values": ["eidas2", "eidas3"]},
        {"path": "^/api/", "mode": "bearer", "acr_values": ["eidas2"]}
    ]}));
    let mut state = provider();
    let (r, _) = start(&f, "/chat");
    let weak = complete_login(
        &f,
        &mut state,
        &r,
        id_token_with_acr("eidas1"),
        json!({}),
        "",
        ALICE,
    );
    let cookie = cookie_header(&set_cookies(&response(weak.step)));
    // Elsewhere, the session as it is.
    assert!(matches!(
        run(&f, &page(&cookie), &state).outcome,
        Outcome::Passed
    ));
    // An API call on the route: RFC 9470's challenge.
    let admin_api = get(
        "/admin/users",
        &[("accept", "application/json"), ("cookie", &cookie)],
    );
    let r = response(run(&f, &admin_api, &state));
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"insufficient_user_authentication\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("acr_values=\"eidas2 eidas3\""),
        "{challenge}"
    );
    // A page: back to the provider, asking for the route's levels, the page
    // kept as the return target.
    let admin = get(
        "/admin/users",
        &[("accept", "text/html"), ("cookie", &cookie)],
    );
    let step_up = response(run(&f, &admin, &state));
    assert_eq!(step_up.status, 302);
    let location = step_up.header("location").unwrap().to_string();
    assert_eq!(param(&location, "acr_values"), "eidas2 eidas3");
    let claims: Value = serde_json::from_str(&param(&location, "claims")).unwrap();
    assert_eq!(
        claims["id_token"]["acr"],
        json!({"essential": true, "values": ["eidas2", "eidas3"]})
    );
    // The provider can only give eidas1: a 403 page naming the levels, no loop.
    let still_weak = complete_login(
        &f,
        &mut state,
        &step_up,
        id_token_with_acr("eidas1"),
        json!({}),
        &cookie,
        ALICE,
    );
    assert!(matches!(
        still_weak.step.outcome,
        Outcome::LoginFailed {
            reason: "acr_not_satisfied",
            ..
        }
    ));
    let failed = response(still_weak.step);
    let to = failed.header("location").unwrap().to_string();
    assert!(
        to.contains("reason=acr_not_satisfied") && to.contains("status=403"),
        "{to}"
    );
    let page_for = get(&to, &[("accept", "text/html")]);
    let shown = response(run(&f, &page_for, &state));
    assert_eq!(shown.status, 403);
    assert!(String::from_utf8_lossy(&shown.body).contains("acr: eidas2 eidas3"));
    // eidas2: the stronger session replaces the weaker one and opens the route.
    let strong = complete_login(
        &f,
        &mut state,
        &step_up,
        id_token_with_acr("eidas2"),
        json!({}),
        &cookie,
        ALICE,
    );
    let done = response(strong.step);
    assert_eq!(done.header("location"), Some("/admin/users"));
    let cookie = cookie_header(&set_cookies(&done));
    let admin = get(
        "/admin/users",
        &[("accept", "text/html"), ("cookie", &cookie)],
    );
    assert!(matches!(run(&f, &admin, &state).outcome, Outcome::Passed));
}

#[test]
fn a_bearer_token_too_weak_for_the_route_gets_the_step_up_challenge() {
    use crate::core::oidc::token::tests::{claims, es256_at, CLIENT};
    let f =
        filter(json!({"routes": [{"path": "^/api/", "mode": "bearer", "acr_values": ["eidas2"]}]}));
    let token = |acr: &str| {
        let mut c =
            claims(json!({"scope": "openid", "email": ALICE, "client_id": CLIENT, "acr": acr}));
        c.nonce = None;
        format!("Bearer {}", es256_at(c))
    };
    let weak = token("eidas1");
    let r = response(run(&f, &api_get("/api/x", Some(&weak)), &provider()));
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("insufficient_user_authentication")
            && challenge.contains("acr_values=\"eidas2\"")
    );
    let strong = token("eidas2");
    assert!(matches!(
        run(&f, &api_get("/api/x", Some(&strong)), &provider()).outcome,
        Outcome::BearerPassed
    ));
}

#[test]
fn a_bearer_token_without_the_claim_the_rules_need_is_completed_by_userinfo_once() {
    use crate::core::flow::tests::json_response;
    use crate::core::flow::Action;
    use crate::core::oidc::token::tests::{claims, es256_at, CLIENT};
    use crate::core::shared::MemoryStore;
    let f = filter(json!({
        "allowed_email_domains": ["numerique.gouv.fr"],
        "routes": [{"path": "^/api/", "mode": "bearer"}]
    }));
    let token = |sub: &str| {
        let mut c = claims(json!({"scope": "openid", "client_id": CLIENT}));
        c.subject = Some(sub.into());
        c.nonce = None;
        format!("Bearer {}", es256_at(c))
    };
    let state = provider();
    let answer_with = |bearer: &str, status: u16, userinfo: Value| {
        let step = run(&f, &api_get("/api/x", Some(bearer)), &state);
        let Action::Call(call, pending) = step.action else {
            panic!("expected a userinfo call, got {:?}", step.outcome);
        };
        assert!(call.path.starts_with("/me"), "{}", call.path);
        assert!(call
            .headers
            .iter()
            .any(|(n, v)| n == "authorization" && v == bearer));
        f.on_provider_response(
            *pending,
            &json_response(status, "application/json", &userinfo.to_string()),
            &mut [state.clone()],
            NOW,
            &mut CountingEntropy(1),
            &MemoryStore::default(),
        )
    };
    let answer = |bearer: &str, userinfo: Value| answer_with(bearer, 200, userinfo);
    let alice = token("alice-7f3a");
    let step = answer(&alice, json!({"sub": "alice-7f3a", "email": ALICE}));
    assert!(
        matches!(step.outcome, Outcome::BearerPassed),
        "{:?}",
        step.outcome
    );
    // Remembered with the token: no second call.
    assert!(matches!(
        run(&f, &api_get("/api/x", Some(&alice)), &state).outcome,
        Outcome::BearerPassed
    ));
    // Userinfo about someone else adds nothing: refused, and remembered so.
    let mallory = token("mallory");
    let step = answer(&mallory, json!({"sub": "alice-7f3a", "email": ALICE}));
    assert!(
        matches!(&step.outcome, Outcome::Denied { reason, .. } if reason.contains("userinfo")),
        "{:?}",
        step.outcome
    );
    assert!(matches!(
        run(&f, &api_get("/api/x", Some(&mallory)), &state).outcome,
        Outcome::Denied { .. }
    ));
    // Userinfo refuses the token: judged on what it had, and the refusal
    // says why userinfo could not help.
    let bob = token("bob");
    let step = answer_with(&bob, 401, json!({}));
    assert!(
        matches!(&step.outcome, Outcome::Denied { reason, .. } if reason.contains("HTTP 401")),
        "{:?}",
        step.outcome
    );
    // An email outside the rules: refused after userinfo.
    let eve = token("eve");
    let step = answer(&eve, json!({"sub": "eve", "email": "eve@example.com"}));
    assert!(matches!(step.outcome, Outcome::Denied { .. }));
}
