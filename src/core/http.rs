//! Plain data types for requests, responses and calls to the provider.

/// A request as the filter sees it: method, path (with query) and headers,
/// borrowed from where the adapter read them (no copy per request).
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: Vec<(&'a str, &'a str)>,
}

impl<'a> Request<'a> {
    /// A request from its header list: `:method` and `:path` are taken from it.
    pub fn from_headers(headers: Vec<(&'a str, &'a str)>) -> Self {
        let pseudo = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map_or("", |(_, v)| *v)
        };
        Request {
            method: pseudo(":method"),
            path: pseudo(":path"),
            headers,
        }
    }

    /// First value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// Every value of a header, matched case-insensitively.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &'a str {
        let end = self
            .path
            .bytes()
            .position(|b| b == b'?' || b == b'#')
            .unwrap_or(self.path.len());
        &self.path[..end]
    }

    /// The raw query string, without `?`, or "".
    pub fn query(&self) -> &'a str {
        match self.path.split_once('?') {
            Some((_, q)) => q.split('#').next().unwrap_or(""),
            None => "",
        }
    }

    /// A copy that owns its text, to keep while the provider is called.
    pub fn to_owned_request(&self) -> OwnedRequest {
        OwnedRequest {
            method: self.method.to_string(),
            path: self.path.to_string(),
            headers: self
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// A [`Request`] kept beyond the callback that read it.
#[derive(Debug, Clone, Default)]
pub struct OwnedRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl OwnedRequest {
    pub fn as_request(&self) -> Request<'_> {
        Request {
            method: &self.method,
            path: &self.path,
            headers: str_pairs(&self.headers),
        }
    }
}

/// Owned (name, value) pairs as borrowed text, as hostcalls and [`Request`]
/// take them.
pub fn str_pairs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

/// A response the filter answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: vec![("cache-control".into(), "no-store".into())],
            body: Vec::new(),
        }
    }

    pub fn redirect(location: &str) -> Self {
        Response::new(302).with_header("location", location)
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn with_headers(mut self, headers: impl IntoIterator<Item = (String, String)>) -> Self {
        self.headers.extend(headers);
        self
    }

    pub fn with_body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.headers
            .push(("content-type".to_string(), content_type.to_string()));
        self.body = body.into();
        self
    }

    /// A JSON body. Written with `serde_json::to_vec` (the serialiser the
    /// module has anyway) rather than through `Value`'s `Display`.
    pub fn with_json(self, body: &serde_json::Value) -> Self {
        self.with_body(
            "application/json",
            serde_json::to_vec(body).unwrap_or_default(),
        )
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP call to the identity provider, made through the `idp_cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCall {
    pub method: &'static str,
    /// Host (and port) for `:authority`.
    pub authority: String,
    /// Path and query for `:path`.
    pub path: String,
    /// `http` or `https`, for `:scheme`.
    pub scheme: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl ProviderCall {
    /// A GET of an absolute URL.
    pub fn get(url: &url::Url, accept: &str) -> Self {
        let (scheme, authority, path) = split_url(url);
        ProviderCall {
            method: "GET",
            authority,
            path,
            scheme,
            headers: vec![("accept".into(), accept.into())],
            body: None,
        }
    }

    /// A form POST to an absolute URL.
    pub fn post_form(url: &url::Url, form: &[(&str, &str)]) -> Self {
        let (scheme, authority, path) = split_url(url);
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        ProviderCall {
            method: "POST",
            authority,
            path,
            scheme,
            headers: vec![
                (
                    "content-type".into(),
                    "application/x-www-form-urlencoded".into(),
                ),
                ("accept".into(), "application/json".into()),
            ],
            body: Some(body.into_bytes()),
        }
    }

    /// Sets a header, replacing any of the same name.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Splits a URL into scheme, authority (host[:port]) and path?query.
pub fn split_url(url: &url::Url) -> (String, String, String) {
    let host = url.host_str().unwrap_or_default();
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    (url.scheme().to_string(), authority, path)
}

/// What the provider answered to a [`ProviderCall`]. `status` 0 means no answer at
/// all (connection refused, timeout, cluster missing).
#[derive(Debug, Clone, Default)]
pub struct ProviderResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ProviderResponse {
    /// An answer from its headers (`:status` among them; 0 without one:
    /// no answer) and its body.
    pub fn from_parts(headers: Vec<(String, String)>, body: Vec<u8>) -> ProviderResponse {
        let status = headers
            .iter()
            .find(|(k, _)| k == ":status")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        ProviderResponse {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The media type without parameters, lower-cased.
    /// The OAuth `error` code of an error answer (RFC 6749 §5.2), printable
    /// and short, for logs; empty when there is none.
    pub fn oauth_error(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect()
    }

    pub fn media_type(&self) -> String {
        self.header("content-type")
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_header_is_set_once() {
        let url = url::Url::parse("https://idp.example/token/introspection").unwrap();
        let call = ProviderCall::post_form(&url, &[("token", "t")])
            .with_header("Accept", "application/token-introspection+jwt");
        let accepts: Vec<&str> = call
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("accept"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(accepts, vec!["application/token-introspection+jwt"]);
    }

    #[test]
    fn request_path_and_query() {
        let r = Request::from_headers(vec![(":method", "GET"), (":path", "/a/b?x=1&y=2")]);
        assert_eq!((r.method, r.path_only()), ("GET", "/a/b"));
        assert_eq!(r.query(), "x=1&y=2");
    }

    #[test]
    fn split_url_keeps_port_and_query() {
        let u = url::Url::parse("http://127.0.0.1:9000/api/v2/token?a=b").unwrap();
        assert_eq!(
            split_url(&u),
            (
                "http".to_string(),
                "127.0.0.1:9000".to_string(),
                "/api/v2/token?a=b".to_string()
            )
        );
        let u = url::Url::parse("https://auth.agentconnect.gouv.fr/api/v2/jwks").unwrap();
        assert_eq!(split_url(&u).1, "auth.agentconnect.gouv.fr");
    }
}
