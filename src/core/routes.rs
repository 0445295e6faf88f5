//! Per-route protection: which requests need a browser session, which a bearer
//! token, which either, and which none; each route with its own access rules.

use super::policy::Policy;

/// How a route is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// A browser session (sign-in for page navigations, 401 otherwise).
    Session,
    /// `Authorization: Bearer <access token>` only (RFC 6750).
    Bearer,
    /// A bearer token when the request carries one, a session otherwise.
    SessionOrBearer,
    /// No authentication (identity headers from the client are still removed).
    Public,
}

impl Protection {
    pub fn parse(text: &str) -> Option<Protection> {
        match text {
            "session" => Some(Protection::Session),
            "bearer" => Some(Protection::Bearer),
            "session_or_bearer" => Some(Protection::SessionOrBearer),
            "public" => Some(Protection::Public),
            _ => None,
        }
    }

    pub fn accepts_bearer(self) -> bool {
        matches!(self, Protection::Bearer | Protection::SessionOrBearer)
    }
}

/// A regex on request paths, with a shortcut for the common shapes: a pattern
/// anchored at the start on literal text (`^/public/`) rejects a path without
/// that text before any regex runs, and one that is only literal text
/// (`^/ping$`) is a plain comparison.
#[derive(Debug, Clone)]
pub struct PathPattern {
    regex: regex_lite::Regex,
    /// Text every matching path starts with ("" when unknown).
    prefix: String,
    /// The pattern is exactly `^prefix$`.
    exact: bool,
}

impl PathPattern {
    pub fn new(pattern: &str) -> Result<PathPattern, regex_lite::Error> {
        let regex = regex_lite::Regex::new(pattern)?;
        let (prefix, exact) = literal_prefix(pattern);
        Ok(PathPattern {
            regex,
            prefix,
            exact,
        })
    }

    pub fn is_match(&self, path: &str) -> bool {
        if !path.starts_with(self.prefix.as_str()) {
            return false;
        }
        if self.exact {
            return path.len() == self.prefix.len();
        }
        self.regex.is_match(path)
    }

    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }
}

/// The literal text a pattern anchored with `^` requires at the start of the
/// path, and whether the pattern is nothing more (then followed by `$`).
/// Conservative: anything it does not understand ends the text.
fn literal_prefix(pattern: &str) -> (String, bool) {
    let Some(rest) = pattern.strip_prefix('^') else {
        return (String::new(), false);
    };
    if pattern.contains('|') {
        // `^/a|/b`: the anchor and the text belong to one branch only.
        return (String::new(), false);
    }
    let mut literal = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // An escaped punctuation mark is itself, but `\<` and `\>` are
            // word boundaries (and `\b`, `\d`... are not punctuation).
            '\\' => match chars.peek() {
                Some(&e) if e.is_ascii_punctuation() && e != '<' && e != '>' => {
                    literal.push(e);
                    chars.next();
                }
                _ => return (literal, false),
            },
            '$' if chars.peek().is_none() => return (literal, true),
            '*' | '?' | '{' | '+' => {
                // The last character may be absent (`x*`, `x?`, `x{0}`; `x+`
                // too when another repetition follows, as in `x+*`).
                literal.pop();
                return (literal, false);
            }
            '.' | '(' | ')' | '[' | ']' | '}' | '^' | '$' => return (literal, false),
            c => literal.push(c),
        }
    }
    (literal, false)
}

/// One entry of `routes`: first match wins.
#[derive(Debug, Clone)]
pub struct Route {
    /// Methods it applies to; empty: any.
    pub methods: Vec<String>,
    pub path: PathPattern,
    pub protection: Protection,
    /// Scopes a bearer token must carry (all of them).
    pub scopes: Vec<String>,
    /// The route's own access rules; `None`: the filter's.
    pub policy: Option<Policy>,
}

impl Route {
    pub fn matches(&self, method: &str, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && self.path.is_match(path)
    }
}

/// Whether a path pattern can never match a request path (which always
/// starts with `/`): anchored at the start on something else.
pub fn never_matches_a_path(pattern: &str) -> bool {
    let Some(rest) = pattern.strip_prefix('^') else {
        return false;
    };
    rest.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_that_cannot_match_a_path() {
        assert!(never_matches_a_path("^api/"));
        assert!(!never_matches_a_path("^/api/"));
        assert!(!never_matches_a_path("/api"));
        assert!(!never_matches_a_path("^(/a|/b)"));
        assert!(!never_matches_a_path("^.*"));
    }

    #[test]
    fn path_shortcuts_agree_with_the_regex() {
        let patterns = [
            "^/ping$",
            "^/public/",
            "^/a*",
            "^/ab?c",
            "^/a{2}$",
            "^/a\\.b$",
            "^/a|/b",
            "^/a\\d",
            "^/x(y)?$",
            "^/café$",
            "/nohat",
            "^/a+$",
            "^/a.c",
            "^/v1/[a-z]+$",
            "^/a\\$",
            "^$",
            "^/p$x",
            "^(?i)/ping",
            "^/static/.*\\.css$",
            "^/ping\\?",
        ];
        let paths = [
            "",
            "/",
            "/ping",
            "/pingx",
            "/ping/",
            "/public",
            "/public/",
            "/public/x",
            "/aa",
            "/a",
            "/ac",
            "/abc",
            "/a.b",
            "/aXb",
            "/b",
            "/a1",
            "/x",
            "/xy",
            "/xyy",
            "/café",
            "/aaa",
            "/abc/",
            "/v1/abc",
            "/v1/ABC",
            "/a$",
            "/PING",
            "/static/x.css",
            "/nohat/y",
            "/a/b",
            "/ping?",
        ];
        for pattern in patterns {
            let fast = PathPattern::new(pattern).unwrap();
            let regex = regex_lite::Regex::new(pattern).unwrap();
            for path in paths {
                assert_eq!(
                    fast.is_match(path),
                    regex.is_match(path),
                    "{pattern:?} on {path:?}"
                );
            }
        }
        assert_eq!(literal_prefix("^/ping$"), ("/ping".into(), true));
        assert_eq!(literal_prefix("^/public/"), ("/public/".into(), false));
        assert_eq!(literal_prefix("^/ab?c"), ("/a".into(), false));
        assert_eq!(literal_prefix("^/a\\.b$"), ("/a.b".into(), true));
        assert_eq!(literal_prefix("^/a|/b"), ("".into(), false));
    }

    #[test]
    fn methods_and_path() {
        let r = Route {
            methods: vec!["GET".into()],
            path: PathPattern::new("^/api/").unwrap(),
            protection: Protection::Bearer,
            scopes: vec![],
            policy: None,
        };
        assert!(r.matches("GET", "/api/x") && !r.matches("POST", "/api/x"));
        assert!(!r.matches("GET", "/other"));
        assert!(Protection::parse("session_or_bearer")
            .unwrap()
            .accepts_bearer());
        assert!(Protection::parse("cookie").is_none());
    }
}
