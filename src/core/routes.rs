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

/// One entry of `routes`: first match wins.
#[derive(Debug, Clone)]
pub struct Route {
    /// Methods it applies to; empty: any.
    pub methods: Vec<String>,
    pub path: regex_lite::Regex,
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
    fn methods_and_path() {
        let r = Route {
            methods: vec!["GET".into()],
            path: regex_lite::Regex::new("^/api/").unwrap(),
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
