//! Per-route protection: which requests need a browser session, which a bearer
//! token, which either, and which none; each route with its own access rules.

use crate::core::access::policy::Policy;

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

    /// What a request may come with: (nothing, a session, a bearer token).
    fn accepted(self) -> (bool, bool, bool) {
        match self {
            Protection::Public => (true, true, true),
            Protection::Session => (false, true, false),
            Protection::Bearer => (false, false, true),
            Protection::SessionOrBearer => (false, true, true),
        }
    }

    /// The protection that satisfies both: what both accept. `None` when
    /// nothing would satisfy both (a session route and a bearer route).
    pub fn strictest(self, other: Protection) -> Option<Protection> {
        let (a, b) = (self.accepted(), other.accepted());
        match (a.0 && b.0, a.1 && b.1, a.2 && b.2) {
            (true, _, _) => Some(Protection::Public),
            (false, true, true) => Some(Protection::SessionOrBearer),
            (false, true, false) => Some(Protection::Session),
            (false, false, true) => Some(Protection::Bearer),
            (false, false, false) => None,
        }
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
    /// The providers whose people it admits (bit `i`: provider `i`);
    /// `None`: all of them.
    pub providers: Option<u64>,
    /// Step-up (RFC 9470): the `acr` values a session or token must carry
    /// here; empty: any.
    pub acr_values: Vec<String>,
}

/// Whether a set of providers (bit `i`: provider `i`, as a route's
/// `providers` and `Filter::admitted_providers` write it) holds provider
/// `index`.
pub fn holds_provider(set: u64, index: usize) -> bool {
    u32::try_from(index)
        .ok()
        .and_then(|i| 1u64.checked_shl(i))
        .is_some_and(|bit| set & bit != 0)
}

impl Route {
    /// Whether people signed in with provider `index` may use the route.
    pub fn admits_provider(&self, index: usize) -> bool {
        self.providers.is_none_or(|set| holds_provider(set, index))
    }
}

impl Route {
    pub fn matches(&self, method: &str, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| method_matches(m, method)))
            && self.path.is_match(path)
    }
}

/// Whether a request's method is the one a route names: in any case, and
/// `HEAD` as `GET` (a `HEAD` is a `GET` without the body, and servers answer
/// it with their `GET` handler).
pub fn method_matches(named: &str, method: &str) -> bool {
    named.eq_ignore_ascii_case(method)
        || (named.eq_ignore_ascii_case("GET") && method.eq_ignore_ascii_case("HEAD"))
}

/// Most routes a configuration may have (a [`RouteSet`] is a bit set).
pub const MAX_ROUTES: usize = 64;

/// The routes whose rules apply to one request: the route of each reading
/// of its path (see `paths::readings`), and whether one reading fell on no
/// route (then the filter's own rules apply too). A plain path has one
/// reading, so one route or none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteSet {
    routes: u64,
    filter_level: bool,
}

impl RouteSet {
    /// The filter's own rules alone (no route).
    pub const FILTER: RouteSet = RouteSet {
        routes: 0,
        filter_level: true,
    };

    /// The rules of the route at `index`, or the filter's for `None`.
    pub fn single(index: Option<usize>) -> RouteSet {
        let mut set = RouteSet::default();
        set.add(index);
        set
    }

    pub fn add(&mut self, index: Option<usize>) {
        match index {
            Some(i) if i < MAX_ROUTES => self.routes |= 1 << i,
            // Refused at load; never weaker than the filter's rules.
            Some(_) | None => self.filter_level = true,
        }
    }

    /// The set's one member, when it has exactly one (what every plain path
    /// gives): `Some(Some(route index))`, or `Some(None)` for the filter's
    /// rules alone. `None` for several.
    pub fn sole(&self) -> Option<Option<usize>> {
        match (self.filter_level, self.routes.count_ones()) {
            (true, 0) => Some(None),
            (false, 1) => Some(Some(self.routes.trailing_zeros() as usize)),
            _ => None,
        }
    }

    /// Each member: `Some(route index)`, and `None` for the filter level.
    pub fn members(&self) -> impl Iterator<Item = Option<usize>> + '_ {
        let routes = self.routes;
        self.filter_level.then_some(None).into_iter().chain(
            (0..MAX_ROUTES)
                .filter(move |i| routes & (1 << i) != 0)
                .map(Some),
        )
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
            providers: None,
            methods: vec!["GET".into()],
            path: PathPattern::new("^/api/").unwrap(),
            protection: Protection::Bearer,
            scopes: vec![],
            policy: None,
            acr_values: vec![],
        };
        assert!(r.matches("GET", "/api/x") && !r.matches("POST", "/api/x"));
        assert!(!r.matches("GET", "/other"));
        assert!(Protection::parse("session_or_bearer")
            .unwrap()
            .accepts_bearer());
        assert!(Protection::parse("cookie").is_none());
        // HEAD is matched as GET, and methods in any case.
        assert!(r.matches("HEAD", "/api/x") && r.matches("get", "/api/x"));
        assert!(!r.matches("OPTIONS", "/api/x"));
    }

    #[test]
    fn the_strictest_of_two_protections() {
        use Protection::*;
        assert_eq!(Public.strictest(Session), Some(Session));
        assert_eq!(Session.strictest(Public), Some(Session));
        assert_eq!(Public.strictest(Public), Some(Public));
        assert_eq!(SessionOrBearer.strictest(Session), Some(Session));
        assert_eq!(SessionOrBearer.strictest(Bearer), Some(Bearer));
        assert_eq!(Bearer.strictest(Public), Some(Bearer));
        assert_eq!(Session.strictest(Bearer), None);
        assert_eq!(Bearer.strictest(Session), None);
    }

    #[test]
    fn route_sets() {
        assert_eq!(RouteSet::FILTER.sole(), Some(None));
        let one = RouteSet::single(Some(3));
        assert_eq!(one.sole(), Some(Some(3)));
        let mut two = one;
        two.add(None);
        two.add(Some(5));
        assert_eq!(two.sole(), None);
        assert_eq!(RouteSet::default().sole(), None);
        assert_eq!(two.members().collect::<Vec<_>>(), [None, Some(3), Some(5)]);
    }
}
