//! Small, self-contained, accessible HTML pages: French by default, English
//! when the browser prefers it (`Accept-Language`).

use super::http::Response;

/// The language of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Fr,
    En,
}

impl Lang {
    /// French unless the browser ranks English above French.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn from_accept_language(header: Option<&str>) -> Lang {
        let Some(header) = header else {
            return Lang::Fr;
        };
        // The highest weight (in thousandths) wins; on a tie the earlier
        // entry, as browsers list preferences in order.
        let mut best: Option<(u16, Lang)> = None;
        for item in header.split(',').take(20) {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").and_then(qvalue))
                .unwrap_or(1000);
            let primary = tag.split('-').next().unwrap_or("");
            let lang = if primary.eq_ignore_ascii_case("fr") {
                Lang::Fr
            } else if primary.eq_ignore_ascii_case("en") {
                Lang::En
            } else {
                continue;
            };
            if q > 0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l).unwrap_or(Lang::Fr)
    }

    #[cfg_attr(sesame_size, optimize(size))]
    fn code(self) -> &'static str {
        match self {
            Lang::Fr => "fr",
            Lang::En => "en",
        }
    }
}

/// An RFC 9110 weight (`0`, `0.5`, `1.000`...) in thousandths, or `None`
/// when it is not one: integer arithmetic, no float parser in the module.
#[cfg_attr(sesame_size, optimize(size))]
fn qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |n, b| n * 10 + u16::from(b - b'0'));
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// A text in both languages.
#[derive(Debug, Clone, Copy)]
pub struct Text {
    pub fr: &'static str,
    pub en: &'static str,
}

impl Text {
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn get(&self, lang: Lang) -> &'static str {
        match lang {
            Lang::Fr => self.fr,
            Lang::En => self.en,
        }
    }
}

/// Escapes text for HTML content and attribute values.
#[cfg_attr(sesame_size, optimize(size))]
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

const STYLE: &str = "body{font-family:Marianne,system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#161616;line-height:1.5}h1{font-size:1.5rem}a.button,button{display:inline-block;margin-top:1rem;padding:.5rem 1rem;background:#000091;color:#fff;text-decoration:none;border:0;border-radius:4px;font:inherit;cursor:pointer}a.button:focus,button:focus{outline:3px solid #0a76f6;outline-offset:2px}a.button:hover,button:hover{background:#1212ff}code{background:#f0f0f0;padding:0 .2rem;overflow-wrap:anywhere}a.button.proconnect-button{display:inline-flex;align-items:center;gap:.75rem;padding:.75rem 1.5rem;background:#000091;color:#fff;border-radius:0}.proconnect-button span{display:block;text-align:left}.proconnect-button .login{font-weight:400}.proconnect-button .brand{font-weight:700;font-size:1.1rem}p.help a{color:#000091}ul.providers{list-style:none;padding:0}.button.disabled{background:#929292;cursor:not-allowed}.unavailable{color:#666}";

/// Text of a page.
pub struct PageText {
    pub title: Text,
    pub body: Text,
}

#[cfg_attr(sesame_size, optimize(size))]
fn document(status: u16, lang: Lang, title: &str, main: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"{code}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{title}</title><style>{STYLE}</style></head>\n<body><main>{main}</main></body></html>\n",
        code = lang.code(),
    );
    Response::new(status)
        .with_header("x-content-type-options", "nosniff")
        .with_header("x-frame-options", "DENY")
        .with_header(
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'",
        )
        .with_header("content-language", lang.code())
        .with_body("text/html; charset=utf-8", html)
}

/// An HTML page. `detail` is escaped here; `text` and labels are trusted
/// constants. `action` is an optional link (href, label).
#[cfg_attr(sesame_size, optimize(size))]
pub fn page(
    status: u16,
    lang: Lang,
    text: &PageText,
    detail: Option<&str>,
    action: Option<(&str, Text)>,
) -> Response {
    let detail = detail
        .map(|d| format!("<p><code>{}</code></p>", escape(d)))
        .unwrap_or_default();
    let action = action
        .map(|(href, label)| {
            format!(
                "<p><a class=\"button\" href=\"{}\">{}</a></p>",
                escape(href),
                label.get(lang)
            )
        })
        .unwrap_or_default();
    let title = text.title.get(lang);
    let main = format!(
        "<h1>{title}</h1><p>{}</p>{detail}{action}",
        text.body.get(lang)
    );
    document(status, lang, title, &main)
}

/// `<proxy_prefix>/token`: the form that asks for a personal token
/// (`action`: the address it posts to).
#[cfg_attr(sesame_size, optimize(size))]
pub fn token_form(lang: Lang, action: &str) -> Response {
    let title = PERSONAL_TOKEN.title.get(lang);
    let main = format!(
        "<h1>{title}</h1><p>{}</p><form method=\"post\" action=\"{}\"><button type=\"submit\">{}</button></form>",
        PERSONAL_TOKEN.body.get(lang),
        escape(action),
        NEW_TOKEN.get(lang)
    );
    document(200, lang, title, &main)
}

/// A personal token just issued, shown once.
#[cfg_attr(sesame_size, optimize(size))]
pub fn token_shown(lang: Lang, token: &str, expires: &str) -> Response {
    let title = PERSONAL_TOKEN.title.get(lang);
    let main = format!(
        "<h1>{title}</h1><p>{}</p><p><code>{}</code></p><p>{} {}</p>",
        TOKEN_ONCE.get(lang),
        escape(token),
        TOKEN_EXPIRES.get(lang),
        escape(expires)
    );
    document(200, lang, title, &main).with_header("cache-control", "no-store")
}

pub const PERSONAL_TOKEN: PageText = PageText {
    title: Text { fr: "Jeton personnel", en: "Personal token" },
    body: Text {
        fr: "Un jeton personnel ouvre ce service à vos scripts, en votre nom (en-tête Authorization: Bearer), tant que vous y avez accès et jusqu’à son expiration. Gardez-le secret.",
        en: "A personal token lets your scripts use this service as you (Authorization: Bearer header), as long as you are allowed in and until it expires. Keep it secret.",
    },
};

pub const NEW_TOKEN: Text = Text {
    fr: "Créer un jeton",
    en: "Create a token",
};

pub const TOKEN_ONCE: Text = Text {
    fr: "Votre jeton, affiché une seule fois :",
    en: "Your token, shown only once:",
};

pub const TOKEN_EXPIRES: Text = Text {
    fr: "Il expire le",
    en: "It expires at",
};

pub const CROSS_SITE: PageText = PageText {
    title: Text {
        fr: "Demande refusée",
        en: "Request refused",
    },
    body: Text {
        fr: "Cette demande ne vient pas de ce site : aucun jeton n’a été créé.",
        en: "This request does not come from this site: no token was created.",
    },
};

/// The sign-in page: one button that starts the sign-in (`start` is the URL of
/// the start endpoint with the return target). With `proconnect`, the button
/// follows ProConnect's design and wording.
#[cfg_attr(sesame_size, optimize(size))]
pub fn sign_in(lang: Lang, start: &str, proconnect: bool) -> Response {
    let title = SIGN_IN.title.get(lang);
    let button = sign_in_button(lang, start, proconnect);
    let main = format!("<h1>{title}</h1><p>{}</p>{button}", SIGN_IN.body.get(lang));
    document(200, lang, title, &main)
}

/// One provider on the sign-in page of a filter with several.
pub struct Choice<'a> {
    pub label: &'a str,
    pub href: String,
    pub proconnect: bool,
    /// False while the provider cannot be reached: no link, a note instead.
    pub available: bool,
}

/// The sign-in page of a filter with several providers: a button for each
/// (ProConnect's own for a ProConnect provider); one that cannot be
/// reached is shown without a link, marked unavailable.
#[cfg_attr(sesame_size, optimize(size))]
pub fn chooser(lang: Lang, choices: &[Choice]) -> Response {
    let title = SIGN_IN.title.get(lang);
    let mut main = format!(
        "<h1>{title}</h1><p>{}</p><ul class=\"providers\">",
        CHOOSE.get(lang)
    );
    for c in choices {
        main.push_str("<li>");
        if !c.available {
            main.push_str(&format!(
                "<p><span class=\"button disabled\" aria-disabled=\"true\">{}</span> <span class=\"unavailable\">{}</span></p>",
                escape(c.label),
                PROVIDER_UNAVAILABLE.get(lang)
            ));
        } else if c.proconnect {
            main.push_str(&sign_in_button(lang, &c.href, true));
        } else {
            main.push_str(&format!(
                "<p><a class=\"button\" href=\"{}\">{} {}</a></p>",
                escape(&c.href),
                SIGN_IN_WITH.get(lang),
                escape(c.label)
            ));
        }
        main.push_str("</li>");
    }
    main.push_str("</ul>");
    document(200, lang, title, &main)
}

pub const CHOOSE: Text = Text {
    fr: "Choisissez comment vous identifier pour accéder à ce service.",
    en: "Choose how to sign in to use this service.",
};

pub const SIGN_IN_WITH: Text = Text {
    fr: "Se connecter avec",
    en: "Sign in with",
};

pub const PROVIDER_UNAVAILABLE: Text = Text {
    fr: "(indisponible pour le moment)",
    en: "(unavailable at the moment)",
};

/// The button that starts a sign-in at `start`: ProConnect's, following its
/// design and wording, or a plain one.
#[cfg_attr(sesame_size, optimize(size))]
fn sign_in_button(lang: Lang, start: &str, proconnect: bool) -> String {
    if proconnect {
        let (login, help) = match lang {
            Lang::Fr => ("S’identifier avec", "Qu’est-ce que ProConnect ?"),
            Lang::En => ("Sign in with", "What is ProConnect?"),
        };
        format!(
            "<p><a class=\"button proconnect-button\" href=\"{href}\">{logo}<span><span class=\"login\">{login}</span><span class=\"brand\">ProConnect</span></span></a></p><p class=\"help\"><a href=\"https://www.proconnect.gouv.fr/\" target=\"_blank\" rel=\"noopener\" title=\"{help} – {new_window}\">{help}</a></p>",
            href = escape(start),
            logo = PROCONNECT_LOGO,
            new_window = match lang {
                Lang::Fr => "nouvelle fenêtre",
                Lang::En => "new window",
            },
        )
    } else {
        format!(
            "<p><a class=\"button\" href=\"{}\">{}</a></p>",
            escape(start),
            SIGN_IN_BUTTON.get(lang)
        )
    }
}

/// A simple mark for the ProConnect button (drawn here, no external asset).
const PROCONNECT_LOGO: &str = "<svg aria-hidden=\"true\" width=\"28\" height=\"28\" viewBox=\"0 0 28 28\"><circle cx=\"14\" cy=\"10\" r=\"5\" fill=\"none\" stroke=\"#fff\" stroke-width=\"2\"/><path d=\"M5 25c1-6 5-9 9-9s8 3 9 9\" fill=\"none\" stroke=\"#fff\" stroke-width=\"2\"/></svg>";

pub const SIGN_IN: PageText = PageText {
    title: Text {
        fr: "Connexion",
        en: "Sign in",
    },
    body: Text {
        fr: "Identifiez-vous pour accéder à ce service.",
        en: "Sign in to use this service.",
    },
};

pub const SIGN_IN_BUTTON: Text = Text {
    fr: "Se connecter",
    en: "Sign in",
};

pub const DENIED: PageText = PageText {
    title: Text { fr: "Accès refusé", en: "Access denied" },
    body: Text {
        fr: "Vous êtes bien connecté, mais ce compte n’est pas autorisé à accéder à ce service. Compte utilisé :",
        en: "You are signed in, but this account is not allowed to use this service. Account used:",
    },
};

pub const SIGN_IN_AGAIN: Text = Text {
    fr: "Se reconnecter",
    en: "Sign in again",
};

pub const SIGN_OUT_AND_SWITCH: Text = Text {
    fr: "Se déconnecter et changer de compte",
    en: "Sign out and use another account",
};

pub const UNAVAILABLE: PageText = PageText {
    title: Text { fr: "Service de connexion indisponible", en: "Sign-in service unavailable" },
    body: Text {
        fr: "Le fournisseur d’identité ne répond pas pour le moment. Réessayez dans quelques instants.",
        en: "The identity provider is not answering right now. Please try again in a moment.",
    },
};

pub const LOGIN_FAILED: PageText = PageText {
    title: Text {
        fr: "La connexion a échoué",
        en: "Sign-in failed",
    },
    body: Text {
        fr: "La connexion n’a pas pu être menée à bien. Vous pouvez recommencer.",
        en: "The sign-in could not be completed. You can start again.",
    },
};

pub const PROVIDER_ERROR: PageText = PageText {
    title: Text {
        fr: "Le fournisseur d’identité a refusé la connexion",
        en: "The identity provider refused the sign-in",
    },
    body: Text {
        fr: "Le fournisseur d’identité a renvoyé une erreur.",
        en: "The identity provider returned an error.",
    },
};

pub const CANCELLED: PageText = PageText {
    title: Text {
        fr: "Connexion annulée",
        en: "Sign-in cancelled",
    },
    body: Text {
        fr: "La connexion a été annulée chez le fournisseur d’identité. Vous pouvez recommencer quand vous le souhaitez.",
        en: "The sign-in was cancelled at the identity provider. You can start again whenever you wish.",
    },
};

pub const ACR_REFUSED: PageText = PageText {
    title: Text { fr: "Niveau d’authentification insuffisant", en: "Authentication level too low" },
    body: Text {
        fr: "Ce service demande un niveau d’authentification plus élevé que celui de votre connexion. Reconnectez-vous avec un moyen d’authentification plus fort.",
        en: "This service requires a higher authentication level than the one you signed in with. Sign in again with a stronger method.",
    },
};

pub const SIGNED_OUT: PageText = PageText {
    title: Text {
        fr: "Vous êtes déconnecté",
        en: "You are signed out",
    },
    body: Text {
        fr: "Votre session sur ce service est terminée.",
        en: "Your session on this service has ended.",
    },
};

pub const TRY_AGAIN: Text = Text {
    fr: "Recommencer",
    en: "Try again",
};
pub const HOME: Text = Text {
    fr: "Retour à l’accueil",
    en: "Back to the home page",
};

pub const NOT_FOUND: PageText = PageText {
    title: Text {
        fr: "Page introuvable",
        en: "Not found",
    },
    body: Text {
        fr: "Cette adresse n’existe pas.",
        en: "This address does not exist.",
    },
};

pub const BAD_PATH: PageText = PageText {
    title: Text {
        fr: "Adresse refusée",
        en: "Address refused",
    },
    body: Text {
        fr: "Cette adresse est écrite d’une façon qui peut désigner plusieurs pages. Vérifiez le lien, ou repartez de la page d’accueil.",
        en: "This address is written in a way that can mean more than one page. Check the link, or start again from the home page.",
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_is_escaped() {
        let r = page(
            403,
            Lang::Fr,
            &DENIED,
            Some("<script>alert('x')</script>"),
            Some(("/oauth2/sign_out?a=1&b=\"", SIGN_OUT_AND_SWITCH)),
        );
        let body = String::from_utf8(r.body.clone()).unwrap();
        assert!(body.contains("&lt;script&gt;"));
        assert!(!body.contains("<script>"));
        assert!(body.contains("href=\"/oauth2/sign_out?a=1&amp;b=&quot;\""));
        assert!(body.contains("lang=\"fr\"") && body.contains("Accès refusé"));
        assert_eq!(r.status, 403);
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }

    #[test]
    fn language_from_accept_language() {
        assert_eq!(Lang::from_accept_language(None), Lang::Fr);
        for (header, lang) in [
            ("en-GB,en;q=0.9", Lang::En),
            ("fr-FR,fr;q=0.9,en;q=0.8", Lang::Fr),
            ("de,en;q=0.5,fr;q=0.4", Lang::En),
            ("de", Lang::Fr),
            ("en;q=0,fr;q=0.1", Lang::Fr),
            ("en, fr", Lang::En),
            // The third decimal decides; case and spaces do not matter.
            ("FR;q=0.899, EN-us ; q=0.9", Lang::En),
            ("en;q=0.899,fr;q=0.9", Lang::Fr),
            // A weight that is not one is ignored (the entry counts as 1).
            ("fr;q=0.5,en;q=2", Lang::En),
        ] {
            assert_eq!(Lang::from_accept_language(Some(header)), lang, "{header}");
        }
        let english = page(403, Lang::En, &DENIED, None, None);
        assert!(String::from_utf8(english.body)
            .unwrap()
            .contains("Access denied"));
    }

    #[test]
    fn weights() {
        for (text, thousandths) in [
            ("0", 0),
            ("0.", 0),
            ("0.5", 500),
            ("0.05", 50),
            ("0.123", 123),
            ("1", 1000),
            ("1.0", 1000),
            ("1.000", 1000),
        ] {
            assert_eq!(qvalue(text), Some(thousandths), "{text}");
        }
        for text in [
            "", ".5", "0.1234", "1.001", "2", "-0", "0.5e0", "0,5", "inf", "+1",
        ] {
            assert_eq!(qvalue(text), None, "{text}");
        }
    }

    #[test]
    fn proconnect_sign_in_button() {
        let r = sign_in(Lang::Fr, "/oauth2/start?rd=%2Fchat", true);
        let body = String::from_utf8(r.body).unwrap();
        assert!(body.contains("S’identifier avec") && body.contains("ProConnect"));
        assert!(body.contains("href=\"/oauth2/start?rd=%2Fchat\""));
        assert!(body.contains("https://www.proconnect.gouv.fr/"));
        let plain = sign_in(Lang::En, "/oauth2/start", false);
        assert!(String::from_utf8(plain.body)
            .unwrap()
            .contains(">Sign in</a>"));
    }
}
