//! Small, self-contained HTML pages (French first, English below).

use super::http::Response;

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#161616;line-height:1.5}h1{font-size:1.5rem}p.en{color:#555}a.button{display:inline-block;margin-top:1rem;padding:.5rem 1rem;background:#000091;color:#fff;text-decoration:none;border-radius:4px}a.button:focus{outline:3px solid #0a76f6;outline-offset:2px}code{background:#f0f0f0;padding:0 .2rem}";

/// Text of a page in both languages.
pub struct PageText<'a> {
    pub title_fr: &'a str,
    pub title_en: &'a str,
    pub body_fr: &'a str,
    pub body_en: &'a str,
}

/// An HTML page. `detail` is escaped here; the `PageText` fields are trusted
/// constants. `action` is an optional (href, label_fr, label_en) link.
pub fn page(
    status: u16,
    text: &PageText,
    detail: Option<&str>,
    action: Option<(&str, &str, &str)>,
) -> Response {
    let detail = detail
        .map(|d| format!("<p><code>{}</code></p>", escape(d)))
        .unwrap_or_default();
    let action = action
        .map(|(href, fr, en)| {
            format!(
                "<p><a class=\"button\" href=\"{}\">{} <span lang=\"en\">/ {}</span></a></p>",
                escape(href),
                escape(fr),
                escape(en)
            )
        })
        .unwrap_or_default();
    let html = format!(
        "<!doctype html>\n<html lang=\"fr\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{title_fr}</title><style>{STYLE}</style></head>\n<body><main><h1>{title_fr}</h1><p>{body_fr}</p><h2 lang=\"en\" class=\"en\" style=\"font-size:1.1rem\">{title_en}</h2><p lang=\"en\" class=\"en\">{body_en}</p>{detail}{action}</main></body></html>\n",
        title_fr = text.title_fr,
        title_en = text.title_en,
        body_fr = text.body_fr,
        body_en = text.body_en,
    );
    Response::new(status)
        .with_header("x-content-type-options", "nosniff")
        .with_header(
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        )
        .with_body("text/html; charset=utf-8", html)
}

pub const DENIED: PageText = PageText {
    title_fr: "Accès refusé",
    title_en: "Access denied",
    body_fr: "Vous êtes bien connecté, mais ce compte n’est pas autorisé à accéder à ce service.",
    body_en: "You are signed in, but this account is not allowed to use this service.",
};

pub const UNAVAILABLE: PageText = PageText {
    title_fr: "Service de connexion indisponible",
    title_en: "Sign-in service unavailable",
    body_fr:
        "Le fournisseur d’identité ne répond pas pour le moment. Réessayez dans quelques instants.",
    body_en: "The identity provider is not answering right now. Please try again in a moment.",
};

pub const LOGIN_FAILED: PageText = PageText {
    title_fr: "La connexion a échoué",
    title_en: "Sign-in failed",
    body_fr: "La connexion n’a pas pu être menée à bien. Vous pouvez recommencer.",
    body_en: "The sign-in could not be completed. You can start again.",
};

pub const PROVIDER_ERROR: PageText = PageText {
    title_fr: "Le fournisseur d’identité a refusé la connexion",
    title_en: "The identity provider refused the sign-in",
    body_fr: "Le fournisseur d’identité a renvoyé une erreur.",
    body_en: "The identity provider returned an error.",
};

pub const UNAUTHENTICATED: PageText = PageText {
    title_fr: "Connexion requise",
    title_en: "Sign-in required",
    body_fr: "Vous devez vous connecter pour accéder à cette ressource.",
    body_en: "You must sign in to access this resource.",
};

pub const NOT_FOUND: PageText = PageText {
    title_fr: "Page introuvable",
    title_en: "Not found",
    body_fr: "Cette adresse n’existe pas.",
    body_en: "This address does not exist.",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_is_escaped() {
        let r = page(
            403,
            &DENIED,
            Some("<script>alert('x')</script>"),
            Some(("/oauth2/sign_out?a=1&b=\"", "Se déconnecter", "Sign out")),
        );
        let body = String::from_utf8(r.body.clone()).unwrap();
        assert!(body.contains("&lt;script&gt;"));
        assert!(!body.contains("<script>"));
        assert!(body.contains("href=\"/oauth2/sign_out?a=1&amp;b=&quot;\""));
        assert_eq!(r.status, 403);
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
}
