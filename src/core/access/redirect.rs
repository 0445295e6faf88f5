//! Safe return targets: after login or logout the browser is only ever sent to a
//! path on this host.

const MAX_TARGET_LEN: usize = 2048;

/// Returns `target` when it is a local path that browsers cannot read as another
/// host, otherwise `/`.
///
/// Refused: schemes (`https://evil`, `javascript:`), protocol-relative `//evil`,
/// `/\evil` (browsers treat `\` as `/`), control characters (CR/LF injection),
/// and the same tricks hidden behind percent-encoding.
#[cfg_attr(sesame_size, optimize(size))]
pub fn safe_return_target(target: &str) -> &str {
    if is_safe_local_path(target) {
        target
    } else {
        "/"
    }
}

/// Like [`safe_return_target`], but an absolute `https`/`http` URL is also kept
/// when its host is in `allowed_domains` (`"app.example.fr"` exactly, or
/// `".example.fr"` for the domain and its sub-domains).
#[cfg_attr(sesame_size, optimize(size))]
pub fn safe_redirect<'a>(target: &'a str, allowed_domains: &[String]) -> &'a str {
    if is_safe_local_path(target) || is_allowed_absolute(target, allowed_domains) {
        target
    } else {
        "/"
    }
}

#[cfg_attr(sesame_size, optimize(size))]
fn is_allowed_absolute(target: &str, allowed_domains: &[String]) -> bool {
    if allowed_domains.is_empty()
        || target.len() > MAX_TARGET_LEN
        || target
            .chars()
            .any(|c| c.is_control() || c == '\\' || c == ' ')
    {
        return false;
    }
    let Ok(url) = crate::core::parse_url(target) else {
        return false;
    };
    if !(url.scheme() == "https" || url.scheme() == "http")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return false;
    }
    let Some(host) = url.host_str().map(|h| h.to_ascii_lowercase()) else {
        return false;
    };
    let host_port = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    allowed_domains.iter().any(|d| match d.strip_prefix('.') {
        Some(domain) => host == domain || host.ends_with(&format!(".{domain}")),
        None => *d == host || *d == host_port,
    })
}

#[cfg_attr(sesame_size, optimize(size))]
fn is_safe_local_path(target: &str) -> bool {
    if target.is_empty() || target.len() > MAX_TARGET_LEN || !target.starts_with('/') {
        return false;
    }
    if target
        .chars()
        .any(|c| c.is_control() || c == '\\' || c == ' ')
    {
        return false;
    }
    // Look again after percent-decoding (twice, for double encoding): a `%2F%2F`
    // or `%5C` may be decoded by a server or a browser along the way.
    let mut text = target.to_string();
    for _ in 0..2 {
        let decoded: String =
            url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
        if decoded.chars().any(|c| c.is_control() || c == '\\') {
            return false;
        }
        let path = decoded.split(['?', '#']).next().unwrap_or("");
        if path.starts_with("//") || path.starts_with("/\\") {
            return false;
        }
        text = decoded;
    }
    !target.starts_with("//")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_are_kept() {
        for ok in [
            "/",
            "/chat",
            "/a/b?x=1&y=%2F",
            "/search?q=a+b#frag",
            "/path//double",
        ] {
            assert_eq!(safe_return_target(ok), ok, "{ok}");
        }
    }

    #[test]
    fn open_redirects_are_refused() {
        for bad in [
            "",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example/",
            "HTTPS://evil.example",
            "javascript:alert(1)",
            "evil.example",
            "/%2F%2Fevil.example",
            "/%2f/evil.example",
            "%2F%2Fevil.example",
            "/%5Cevil.example",
            "/%255Cevil.example",
            "/%252F%252Fevil.example",
            "/ok\r\nSet-Cookie: x=1",
            "/ok%0d%0aSet-Cookie:x=1",
            "/\tevil",
            "/ evil",
        ] {
            assert_eq!(safe_return_target(bad), "/", "{bad:?} was accepted");
        }
        let long = format!("/{}", "a".repeat(3000));
        assert_eq!(safe_return_target(&long), "/");
    }

    #[test]
    fn allow_listed_hosts() {
        let domains = vec!["app.example.fr".to_string(), ".gouv.fr".to_string()];
        for ok in [
            "https://app.example.fr/x?y=1",
            "https://numerique.gouv.fr/",
            "https://a.b.gouv.fr/c",
            "https://gouv.fr/",
            "/local",
        ] {
            assert_eq!(safe_redirect(ok, &domains), ok, "{ok}");
        }
        for bad in [
            "https://evil.example/",
            "https://app.example.fr.evil.example/",
            "https://evilgouv.fr/",
            "https://user@app.example.fr/",
            "javascript://app.example.fr/%0aalert(1)",
            "//app.example.fr/",
            "https://app.example.fr\\@evil.example/",
        ] {
            assert_eq!(safe_redirect(bad, &domains), "/", "{bad}");
        }
        assert_eq!(safe_redirect("https://app.example.fr/", &[]), "/");
    }

    #[test]
    fn internationalised_hosts_only_in_their_ascii_form() {
        let domains = vec![".gouv.fr".to_string()];
        let ascii = "https://xn--conomie-cya.gouv.fr/x";
        assert_eq!(safe_redirect(ascii, &domains), ascii);
        // Without Unicode tables in the module, such a name is refused.
        assert_eq!(safe_redirect("https://économie.gouv.fr/x", &domains), "/");
        assert!(crate::core::parse_url("https://économie.gouv.fr/").is_err());
        assert!(crate::core::parse_url("https://apP\u{e9}X.fr/").is_err());
        // The same spelt with percent escapes, which `url` decodes in a host.
        for escaped in [
            "https://apP%C3%A9X.fr/",
            "https:/apP%C3%A9X.fr/",
            "https:\\\\apP%C3%A9X.fr/",
            "https://user@apP%C3%A9X.fr/",
            "https:\t//apP%C3%A9X.fr/",
        ] {
            assert!(crate::core::parse_url(escaped).is_err(), "{escaped}");
            assert_eq!(safe_redirect(escaped, &domains), "/", "{escaped}");
        }
        // Escapes elsewhere are fine.
        let path = "https://xn--conomie-cya.gouv.fr/caf%C3%A9?q=%41";
        assert_eq!(safe_redirect(path, &domains), path);
    }
}
