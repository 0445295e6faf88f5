//! Writes the seed corpora of the fuzz targets into `fuzz/seeds/<target>/`:
//! a few valid inputs each, made with the fixed configuration, keys and clock
//! of `sesame_fuzz`, so that the fuzzer starts from inputs that reach deep.
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example make_seeds

use std::fs;
use std::path::{Path, PathBuf};

use jwt_simple::prelude::*;
use serde_json::{json, Map, Value};

use sesame::core::flow::{Action, Filter, Outcome};
use sesame::core::http::{ProviderResponse, Request, Response};
use sesame::core::session::Session;
use sesame_fuzz::{
    config_json, filter, keys, parse_request, provider, CountingEntropy, ISSUER, NOW, SUB,
};

const NONCE: &str = "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn";

fn out_dir(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    fs::create_dir_all(&dir).expect("create the seed directory");
    dir
}

fn write(target: &str, name: &str, contents: impl AsRef<[u8]>) {
    fs::write(out_dir(target).join(name), contents).expect("write a seed");
}

fn claims(nonce: Option<&str>, custom: Value) -> JWTClaims<Map<String, Value>> {
    JWTClaims {
        issued_at: Some(UnixTimeStamp::from_secs(NOW - 10)),
        expires_at: Some(UnixTimeStamp::from_secs(NOW + 3600)),
        invalid_before: None,
        issuer: Some(ISSUER.into()),
        subject: Some(SUB.into()),
        audiences: Some(Audiences::AsString("sesame".into())),
        jwt_id: None,
        nonce: nonce.map(str::to_string),
        custom: custom.as_object().cloned().unwrap_or_default(),
    }
}

fn id_token(nonce: &str) -> String {
    let c = claims(
        Some(nonce),
        json!({"email": "alice@numerique.gouv.fr", "preferred_username": "alice"}),
    );
    keys().es.sign(c).expect("sign a seed token")
}

fn session(id_token_len: usize) -> Session {
    Session {
        claims: json!({"sub": SUB, "email": "alice@numerique.gouv.fr", "given_name": "Alice"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        id_token: Some("e".repeat(id_token_len)),
        access_token: Some("access-token".into()),
        created_at: NOW - 100,
        expires_at: NOW + 3600,
        ..Default::default()
    }
}

/// The `Cookie` header a browser sends back for these `Set-Cookie` values.
fn cookie_header(set: &[String]) -> String {
    set.iter()
        .filter(|c| !c.contains("Max-Age=0"))
        .filter_map(|c| c.split(';').next())
        .collect::<Vec<_>>()
        .join("; ")
}

fn session_cookie(filter: &Filter, id_token_len: usize) -> String {
    let attrs = filter.cookie_attrs("/");
    let set = filter.session_cookie().write(
        &session(id_token_len),
        NOW,
        &attrs,
        &[],
        &mut CountingEntropy(0),
    );
    cookie_header(&set)
}

fn respond(filter: &Filter, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let req = Request {
        method,
        path,
        headers: headers.to_vec(),
    };
    match filter
        .on_request(&req, &[provider()], NOW, &mut CountingEntropy(0))
        .action
    {
        Action::Respond(r) => r,
        other => panic!("expected an answer to {path}, got {other:?}"),
    }
}

fn set_cookies(r: &Response) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .map(|(_, v)| v.clone())
        .collect()
}

fn query_param(location: &str, name: &str) -> String {
    url::Url::parse(location)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default()
}

fn session_seeds(filter: &Filter) {
    let one = session_cookie(filter, 100);
    write("session_cookie", "single", &one);
    let chunked = session_cookie(filter, 3000);
    write("session_cookie", "chunked", &chunked);
    // Same cookies as two header values, with an unrelated cookie.
    let (first, rest) = chunked.split_once("; ").unwrap_or((&chunked, ""));
    write(
        "session_cookie",
        "two_headers",
        format!("{first}\nlang=fr; {rest}"),
    );
    let mut tampered = one.into_bytes();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    write("session_cookie", "tampered", tampered);
    write(
        "session_cookie",
        "garbage",
        "_sesame=%%%; _sesame_0=\"AAAA\"; =x; y",
    );
}

fn request_seeds(filter: &Filter) {
    const HTML: (&str, &str) = ("accept", "text/html");
    // A sign-in, then its callback with the token endpoint's answer.
    let start = respond(filter, "GET", "/oauth2/start?rd=/docs", &[HTML]);
    let location = start.header("location").unwrap_or_default().to_string();
    let state = query_param(&location, "state");
    let nonce = query_param(&location, "nonce");
    let login_cookie = cookie_header(&set_cookies(&start));
    let answer = json!({
        "id_token": id_token(&nonce),
        "access_token": "access-token",
        "token_type": "Bearer",
    });
    write(
        "request",
        "callback",
        format!(
            "GET /oauth2/callback?code=c0de&state={state}&iss={}\ncookie: {login_cookie}\naccept: text/html\n\n{answer}",
            url::form_urlencoded::byte_serialize(ISSUER.as_bytes()).collect::<String>()
        ),
    );
    write(
        "request",
        "callback_error",
        format!(
            "GET /oauth2/callback?error=access_denied&error_description=no&state={state}\ncookie: {login_cookie}\n"
        ),
    );
    write(
        "request",
        "callback_no_cookie",
        "GET /oauth2/callback?code=abc&state=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG\n",
    );

    // Requests with a session.
    let session = session_cookie(filter, 40);
    write(
        "request",
        "signed_in",
        format!(
            "GET /docs?page=2\ncookie: {session}\nx-forwarded-user: mallory\naccept: text/html\n"
        ),
    );
    write(
        "request",
        "auth",
        format!("GET /oauth2/auth\ncookie: {session}\n"),
    );
    write(
        "request",
        "userinfo",
        format!("GET /oauth2/userinfo\ncookie: {session}\n"),
    );

    // A sign-out, then the provider's return with its state.
    let sign_out = respond(
        filter,
        "GET",
        "/oauth2/sign_out?rd=https://app.example.fr/bye",
        &[HTML, ("cookie", &session)],
    );
    let location = sign_out.header("location").unwrap_or_default().to_string();
    let logout_state = query_param(&location, "state");
    let logout_cookie = cookie_header(&set_cookies(&sign_out));
    write(
        "request",
        "sign_out",
        format!("GET /oauth2/sign_out?rd=/bye\ncookie: {session}\naccept: text/html\n"),
    );
    write(
        "request",
        "signed_out",
        format!("GET /oauth2/signed_out?state={logout_state}\ncookie: {logout_cookie}\n"),
    );

    // Without a session.
    write(
        "request",
        "sign_in_hints",
        "GET /oauth2/sign_in?rd=/x&idp_hint=fia1v2&login_hint=a@b.gouv.fr&siret_hint=13002526500013&prompt=login\naccept: text/html\n",
    );
    write(
        "request",
        "public",
        "GET /ping\nx-forwarded-user: mallory\nX_Forwarded_Email: m@x.fr\n",
    );
    write(
        "request",
        "xhr",
        "POST /api/chat\naccept: application/json\nx-requested-with: XMLHttpRequest\n",
    );
    write(
        "request",
        "navigation",
        "GET /static/../secret\nsec-fetch-mode: navigate\naccept-language: fr\n",
    );
}

fn token_seeds() {
    let k = keys();
    write("token", "id_token_es256", id_token(NONCE));
    let ed =
        k.ed.sign(claims(Some(NONCE), json!({"acr": "eidas1"})))
            .expect("sign");
    write("token", "id_token_eddsa", ed);
    let userinfo = claims(
        None,
        json!({"email": "alice@numerique.gouv.fr", "siret": "13002526500013"}),
    );
    write("token", "userinfo_jwt", k.es.sign(userinfo).expect("sign"));
    write(
        "token",
        "userinfo_json",
        json!({"sub": SUB, "email": "alice@numerique.gouv.fr"}).to_string(),
    );
    // An RS256 header for the RSA key nobody can sign for, and `none`.
    let b64 = |v: Value| sesame::core::b64url(v.to_string().as_bytes());
    let body =
        b64(json!({"iss": ISSUER, "sub": SUB, "aud": "sesame", "exp": NOW + 60, "iat": NOW}));
    write(
        "token",
        "rs256",
        format!(
            "{}.{body}.{}",
            b64(json!({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"})),
            "QUFB".repeat(86)
        ),
    );
    write(
        "token",
        "none",
        format!("{}.{body}.", b64(json!({"alg": "none"}))),
    );
}

fn config_seeds() {
    write("config", "fixed", config_json().to_string());
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo-config.json");
    write(
        "config",
        "demo",
        fs::read(demo).expect("read examples/demo-config.json"),
    );
    write(
        "config",
        "proconnect",
        json!({
            "provider": "proconnect",
            "proconnect_environment": "integration",
            "idp_cluster": "proconnect",
            "client_id": "abc",
            "client_secret": "def-long-secret",
            "redirect_uri": "https://app.example.fr/oauth2/callback",
            "cookie_secret": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            "acr_values": ["eidas1"],
            "claims": {"id_token": {"amr": {"essential": true}}},
            "allowed_claims": {"siret": ["13002526500013"], "idp_id": ["fia1v2"]},
            "allowed_emails": ["alice@numerique.gouv.fr"],
            "skip_provider_button": false,
        })
        .to_string(),
    );
    write(
        "config",
        "options",
        json!({
            "issuer": "https://idp.example.fr/realms/x",
            "idp_cluster": "idp",
            "client_id": "app",
            "client_secret": "app-secret-value",
            "token_endpoint_auth_method": "client_secret_basic",
            "redirect_uri": "https://app.example.fr/auth/callback",
            "scopes": ["openid", "email"],
            "cookie_secret": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY",
            "cookie_name": "_app",
            "cookie_domain": "example.fr",
            "session_lifetime": 3600,
            "proxy_prefix": "/auth",
            "skip_auth_routes": ["GET=^/health$", "^/public/"],
            "allowed_email_domains": ["example.fr"],
            "claim_headers": {"X-User-Roles": "roles", "X-Forwarded-Email": null},
            "pass_access_token": false,
            "set_authorization_header": true,
            "id_token_signing_algs": ["RS256", "ES256"],
            "clock_skew": 30,
            "post_logout_redirect_uri": "https://app.example.fr/auth/bye",
            "allowed_redirect_domains": [".example.fr"],
            "provider_logout": false,
        })
        .to_string(),
    );
    write(
        "config",
        "providers",
        json!({
            "providers": [
                {"id": "kc", "label": "Staff", "issuer": "https://kc.example.fr/realms/staff",
                 "idp_cluster": "kc", "client_id": "app", "client_secret": "kc-secret-value",
                 "redirect_uri": "https://app.example.fr/oauth2/callback/kc",
                 "allowed_email_domains": ["staff.example.fr"]},
                {"id": "pc", "provider": "proconnect", "proconnect_environment": "integration",
                 "idp_cluster": "pc", "client_id": "abc", "client_secret": "def-long-secret",
                 "redirect_uri": "https://app.example.fr/oauth2/callback/pc"},
                {"id": "osm", "provider": "oauth2", "idp_cluster": "osm",
                 "client_id": "osm", "client_secret": "osm-secret-value",
                 "redirect_uri": "https://app.example.fr/oauth2/callback/osm",
                 "authorization_endpoint": "https://www.openstreetmap.org/oauth2/authorize",
                 "token_endpoint": "https://www.openstreetmap.org/oauth2/token",
                 "userinfo_endpoint": "https://api.openstreetmap.org/api/0.6/user/details.json",
                 "claims_map": {"sub": "/user/id", "preferred_username": "/user/display_name"},
                 "allow_all_users": true}
            ],
            "cookie_secret": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            "allowed_email_domains": ["*.gouv.fr"],
            "qualified_user": true,
            "routes": [{"path": "^/staff/", "mode": "session", "providers": ["kc"]}],
            "skip_provider_button": false,
        })
        .to_string(),
    );
    write(
        "config",
        "errors",
        r#"{"provider": "x", "issuer": 3, "unknown": true}"#,
    );
    for name in ["fixed", "demo", "proconnect", "options", "providers"] {
        let text = fs::read(out_dir("config").join(name)).expect("read a seed");
        if let Err(errors) = sesame::core::config::Config::parse(&text) {
            panic!("the {name} seed is refused: {errors:?}");
        }
    }
}

/// The callback seed must go all the way: the sign-in succeeds.
fn check_callback_seed(filter: &Filter) {
    let text = fs::read_to_string(out_dir("request").join("callback")).expect("read a seed");
    let (owned, body) = parse_request(&text);
    let req = owned.as_request();
    let mut provider = provider();
    let mut entropy = CountingEntropy(0);
    let step = filter.on_request(&req, std::slice::from_ref(&provider), NOW, &mut entropy);
    let Action::Call(_, pending) = step.action else {
        panic!("the callback seed makes no token call: {:?}", step.outcome);
    };
    let answer = ProviderResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.unwrap_or_default().as_bytes().to_vec(),
    };
    let done = filter.on_provider_response(
        *pending,
        &answer,
        std::slice::from_mut(&mut provider),
        NOW,
        &mut entropy,
        &sesame::core::shared::MemoryStore::default(),
    );
    assert!(
        matches!(done.outcome, Outcome::LoginSucceeded { .. }),
        "the callback seed does not sign in: {:?}",
        done.outcome
    );
}

fn main() {
    let filter = &filter();
    session_seeds(filter);
    request_seeds(filter);
    token_seeds();
    config_seeds();
    check_callback_seed(filter);
    println!("seeds written to {}", out_dir("").display());
}
