//! Reading the `Cookie` header and writing `Set-Cookie` values.

/// What follows the session cookie's name in the name of a sign-in's cookie
/// (then the beginning of its `state`).
pub const LOGIN_COOKIE_INFIX: &str = "_csrf_";
/// What follows the session cookie's name in the name of a sign-out's cookie.
pub const LOGOUT_COOKIE_SUFFIX: &str = "_logout";
/// What follows the session cookie's name in the name of the cookie that
/// carries a refused sign-in's page to its clean address.
pub const REFUSAL_COOKIE_SUFFIX: &str = "_refusal";

/// Upper bound on the cookies read from one request: more are ignored.
const MAX_COOKIES: usize = 200;

/// Parses every `name=value` pair from the request's `Cookie` header values.
/// Malformed pairs are skipped; nothing here can fail.
pub fn parse<'a>(headers: impl Iterator<Item = &'a str>) -> Vec<(&'a str, &'a str)> {
    headers
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            let name = name.trim();
            let value = value.trim().trim_matches('"');
            (!name.is_empty()).then_some((name, value))
        })
        .take(MAX_COOKIES)
        .collect()
}

/// Attributes shared by the cookies Sésame sets.
#[derive(Debug, Clone)]
pub struct CookieAttributes<'a> {
    pub path: &'a str,
    pub domain: Option<&'a str>,
    pub secure: bool,
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Secure when configured.
pub fn set_cookie(name: &str, value: &str, max_age: u64, attrs: &CookieAttributes) -> String {
    let mut out = format!(
        "{name}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Lax",
        attrs.path
    );
    if let Some(d) = attrs.domain {
        out.push_str("; Domain=");
        out.push_str(d);
    }
    if attrs.secure {
        out.push_str("; Secure");
    }
    out
}

/// A `Set-Cookie` value that deletes the cookie.
pub fn clear_cookie(name: &str, attrs: &CookieAttributes) -> String {
    let mut out = set_cookie(name, "", 0, attrs);
    out.push_str("; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_several_headers_and_skips_junk() {
        let headers = ["a=1; b=2;;junk; c=\"3\"", "d = 4"];
        let got = parse(headers.iter().copied());
        assert_eq!(got, vec![("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]);
    }

    #[test]
    fn too_many_cookies_are_cut() {
        let h = (0..1000)
            .map(|i| format!("c{i}=v"))
            .collect::<Vec<_>>()
            .join("; ");
        assert_eq!(parse(std::iter::once(h.as_str())).len(), MAX_COOKIES);
    }

    #[test]
    fn set_cookie_attributes() {
        let attrs = CookieAttributes {
            path: "/",
            domain: None,
            secure: true,
        };
        let c = set_cookie("_sesame", "abc", 60, &attrs);
        assert_eq!(
            c,
            "_sesame=abc; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
        let insecure = CookieAttributes {
            secure: false,
            domain: Some("example.fr"),
            ..attrs
        };
        assert!(!set_cookie("n", "v", 1, &insecure).contains("Secure"));
        assert!(clear_cookie("n", &insecure).contains("Max-Age=0"));
    }
}
