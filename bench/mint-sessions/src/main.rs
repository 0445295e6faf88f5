//! Seals COUNT distinct session cookies with a configuration's
//! `cookie_secret` for a provider's issuer and a client id (the sealing keys
//! are bound to both), as Sésame does at the end of a sign-in, and prints one
//! `Cookie:` header value a line: `make bench` sends requests with them to
//! measure the filter's memory with that many live sessions, without signing
//! in COUNT times at the provider.
//!
//!     mint-sessions COOKIE_SECRET_BASE64 ISSUER CLIENT_ID COUNT [COOKIE_NAME] [LIFETIME_SECONDS] [TOKEN_CHARS]
//!
//! With TOKEN_CHARS, each session also holds an ID token and an access token
//! of that many characters (stand-ins, never checked on a request with a
//! session), as a real sign-in's session does.

use base64::Engine;
use serde_json::{json, Map, Value};
use sesame::core::session::cookies::CookieAttributes;
use sesame::core::session::{Sealer, Session, SessionCookie};
use sesame::core::OsEntropy;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!(
            "usage: mint-sessions COOKIE_SECRET_BASE64 ISSUER CLIENT_ID COUNT [COOKIE_NAME] [LIFETIME_SECONDS] [TOKEN_CHARS]"
        );
        std::process::exit(2);
    }
    let secret = base64::engine::general_purpose::STANDARD
        .decode(&args[1])
        .expect("cookie secret: base64");
    let (issuer, client_id) = (&args[2], &args[3]);
    let count: usize = args[4].parse().expect("COUNT: a number");
    let name = args.get(5).map(String::as_str).unwrap_or("_sesame");
    let lifetime: u64 = args
        .get(6)
        .map_or(3600, |s| s.parse().expect("LIFETIME: seconds"));
    let token_chars: Option<usize> = args
        .get(7)
        .map(|s| s.parse().expect("TOKEN_CHARS: a number"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();

    let sealer = Sealer::new(&secret, issuer, client_id);
    let jar = SessionCookie {
        name,
        sealer: &sealer,
    };
    let attrs = CookieAttributes {
        path: "/",
        domain: None,
        secure: false,
    };
    let mut entropy = OsEntropy;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    for i in 0..count {
        let claims: Map<String, Value> = match json!({
            "sub": format!("bench-{i:06}"),
            "email": format!("user{i:06}@numerique.gouv.fr"),
            "given_name": "Bench",
            "usual_name": format!("User {i}"),
            "siret": "13002526500013",
            "idp_id": "fia1v2",
        }) {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let session = Session {
            claims,
            created_at: now,
            expires_at: now + lifetime,
            sid: format!("bench{i:06}"),
            id_token: token_chars.map(|n| stand_in_token('i', i, n)),
            access_token: token_chars.map(|n| stand_in_token('a', i, n)),
            ..Session::default()
        };
        let pairs: Vec<String> = jar
            .write(&session, now, &attrs, &[], &mut entropy)
            .iter()
            .map(|set_cookie| {
                set_cookie
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .collect();
        writeln!(out, "{}", pairs.join("; ")).expect("stdout");
    }
}

/// A token-shaped stand-in of `chars` characters, distinct per session.
fn stand_in_token(kind: char, i: usize, chars: usize) -> String {
    let mut t = format!("eyJ{kind}{i:06}.");
    while t.len() < chars {
        t.push_str("QmVuY2ggdG9rZW4gcGF5bG9hZA");
    }
    t.truncate(chars);
    t
}
