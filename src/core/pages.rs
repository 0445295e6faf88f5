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

/// The pages' style: the look of the French state's design system (DSFR:
/// blue France, its greys, spacing on a 0.5rem grid, the "bloc marque"),
/// written here, without its files or the Marianne font (the system's
/// fonts; Marianne where installed). Contrast at least 4.5:1, a visible
/// focus, one column that reads at 375 px.
const STYLE: &str = "*{box-sizing:border-box}body{margin:0;font:1rem/1.5 Marianne,arial,sans-serif;color:#3a3a3a;display:flex;flex-direction:column;min-height:100vh}.w{max-width:48rem;margin:auto;padding:0 1rem}header{box-shadow:0 2px 6px #0002}header .w{display:flex;flex-wrap:wrap;align-items:center;gap:1rem 2rem;padding:1rem}.marque,.service{margin:0;color:#161616;font-weight:700}.marque{line-height:1.1;text-transform:uppercase}.marque:before{content:\"\";display:block;width:2.5rem;height:1rem;margin-bottom:.5rem;background:linear-gradient(90deg,#000091 33%,#eee 0 67%,#e1000f 0)}.marque:after{content:\"Liberté\\A Égalité\\A Fraternité\";display:block;margin-top:.5rem;white-space:pre;font:italic .7rem/1.1 serif;text-transform:none}.service{font-size:1.25rem}.service span,.unavailable{display:block;font-size:.875rem;font-weight:400;color:#666}main{flex:1;padding:2.5rem 0 3rem}h1{margin:0 0 1.5rem;color:#161616;font-size:2rem;line-height:1.25}@media(min-width:48em){h1{font-size:2.5rem}}p{margin:0 0 1.5rem}a{color:#000091}:focus-visible{outline:2px solid #0a76f6;outline-offset:2px}.button,button{display:inline-block;padding:.5rem 1.5rem;background:#000091;color:#fff;text-decoration:none;border:0;font:inherit;cursor:pointer}.button:hover,button:hover{background:#1212ff}.disabled.button{background:#eee;color:#666}.proconnect-button{display:inline-flex;flex-direction:column;justify-content:center;position:relative;min-height:3.5rem;padding:.25rem 1rem .25rem 4rem;line-height:1.3}.proconnect-button svg{position:absolute;left:.75rem;top:.5rem}.proconnect-button b{font-size:1.125rem}.what{font-size:.875rem}.providers{list-style:none;padding:0}.providers li{margin-bottom:1rem}.providers p{margin:.5rem 0 0}code{padding:0 .25rem;background:#eee;color:#161616;overflow-wrap:anywhere}.help{padding:1rem 1.25rem;border-left:4px solid #000091;background:#f6f6f6}footer{border-top:2px solid #000091;padding:1.5rem 0;font-size:.875rem}footer p{margin:0}.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}";

/// Text of a page.
pub struct PageText {
    pub title: Text,
    pub body: Text,
    /// A refusal or error page: it says whom to ask for help, when the
    /// configuration names someone (`help_contact`).
    pub help: bool,
}

/// Where a refusal page says whom to ask: replaced by [`fill_help`] with
/// the configured contact, or with nothing.
const HELP_SLOT: &str = "<!--help-->";

/// The frame of every page: the header with the State's "bloc marque" and
/// the service's name, the page's own content in `main`, a footer.
#[cfg_attr(sesame_size, optimize(size))]
fn document(status: u16, lang: Lang, title: &str, main: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"{code}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{title} – Sésame</title><style>{STYLE}</style></head>\n<body><header><div class=\"w\"><p class=\"marque\" lang=\"fr\">République<br>Française</p><p class=\"service\">Sésame<span>{tagline}</span></p></div></header>\n<main><div class=\"w\">{main}</div></main>\n<footer><div class=\"w\"><p>{footer}</p></div></footer></body></html>\n",
        code = lang.code(),
        tagline = TAGLINE.get(lang),
        footer = FOOTER.get(lang),
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

pub const TAGLINE: Text = Text {
    fr: "Connexion à ce service",
    en: "Sign-in to this service",
};

pub const FOOTER: Text = Text {
    fr: "Sésame garde l’entrée de ce service.",
    en: "Sésame guards the door of this service.",
};

/// An HTML page. `detail` is escaped here; `text` and labels are trusted
/// constants. `action` is an optional link (href, label). A refusal page
/// (`text.help`) keeps a place for the help contact ([`fill_help`]).
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
        "<h1>{title}</h1><p>{}</p>{detail}{action}{}",
        text.body.get(lang),
        if text.help { HELP_SLOT } else { "" }
    );
    document(status, lang, title, &main)
}

/// Fills the help place of a refusal page with whom to ask (`contact`:
/// the link's address and text, from `help_contact`), or empties it.
/// Any other response is left as it is.
#[cfg_attr(sesame_size, optimize(size))]
pub fn fill_help(response: &mut Response, contact: Option<(&str, &str)>) {
    let slot = HELP_SLOT.as_bytes();
    let Some(at) = response.body.windows(slot.len()).position(|w| w == slot) else {
        return;
    };
    let html = contact
        .map(|(href, text)| {
            let lang = match response.header("content-language") {
                Some("en") => Lang::En,
                _ => Lang::Fr,
            };
            format!(
                "<p class=\"help\">{} <a href=\"{}\">{}</a>.</p>",
                NEED_HELP.get(lang),
                escape(href),
                escape(text)
            )
        })
        .unwrap_or_default();
    response.body.splice(at..at + slot.len(), html.into_bytes());
}

pub const NEED_HELP: Text = Text {
    fr: "Besoin d’aide ? Contactez",
    en: "Need help? Contact",
};

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
    help: false,
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
    help: false,
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
                "<span class=\"button disabled\" aria-disabled=\"true\">{}</span> <span class=\"unavailable\">{}</span>",
                escape(c.label),
                PROVIDER_UNAVAILABLE.get(lang)
            ));
        } else if c.proconnect {
            main.push_str(&sign_in_button(lang, &c.href, true));
        } else {
            main.push_str(&format!(
                "<a class=\"button\" href=\"{}\">{} {}</a>",
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
/// design and wording (the State design system's identity button: blue
/// France, the mark at the left, "S’identifier avec" over "ProConnect", and
/// the link "Qu’est-ce que ProConnect ?" under it, in a new tab, which its
/// text says), or a plain one.
#[cfg_attr(sesame_size, optimize(size))]
fn sign_in_button(lang: Lang, start: &str, proconnect: bool) -> String {
    if proconnect {
        let (login, what, new_tab) = match lang {
            Lang::Fr => (
                "S’identifier avec",
                "Qu’est-ce que ProConnect ?",
                "nouvelle fenêtre",
            ),
            Lang::En => ("Sign in with", "What is ProConnect?", "new window"),
        };
        format!(
            "<p><a class=\"button proconnect-button\" href=\"{href}\">{PROCONNECT_LOGO}<span>{login}</span> <b>ProConnect</b></a></p><p class=\"what\"><a href=\"https://www.proconnect.gouv.fr/\" target=\"_blank\" rel=\"noopener\" title=\"{what} – {new_tab}\">{what}<span class=\"sr\"> – {new_tab}</span></a></p>",
            href = escape(start),
        )
    } else {
        format!(
            "<p><a class=\"button\" href=\"{}\">{}</a></p>",
            escape(start),
            SIGN_IN_BUTTON.get(lang)
        )
    }
}

/// ProConnect's mark, simplified (drawn here, no external asset).
const PROCONNECT_LOGO: &str = "<svg aria-hidden=\"true\" width=\"40\" height=\"40\" viewBox=\"0 0 28 28\"><circle cx=\"14\" cy=\"10\" r=\"5\" fill=\"none\" stroke=\"#fff\" stroke-width=\"2\"/><path d=\"M5 25c1-6 5-9 9-9s8 3 9 9\" fill=\"none\" stroke=\"#fff\" stroke-width=\"2\"/></svg>";

pub const SIGN_IN: PageText = PageText {
    title: Text {
        fr: "Connexion",
        en: "Sign in",
    },
    body: Text {
        fr: "Identifiez-vous pour accéder à ce service.",
        en: "Sign in to use this service.",
    },
    help: false,
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
    help: true,
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
    help: true,
};

/// A fault inside Sésame (the native build answers it rather than let
/// the request through or drop it).
pub const INTERNAL_ERROR: PageText = PageText {
    title: Text {
        fr: "Erreur interne",
        en: "Internal error",
    },
    body: Text {
        fr: "Sésame n’a pas pu traiter cette demande. Réessayez dans quelques instants.",
        en: "Sésame could not handle this request. Please try again in a moment.",
    },
    help: true,
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
    help: true,
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
    help: true,
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
    help: false,
};

pub const ACR_REFUSED: PageText = PageText {
    title: Text { fr: "Niveau d’authentification insuffisant", en: "Authentication level too low" },
    body: Text {
        fr: "Ce service demande un niveau d’authentification plus élevé que celui de votre connexion. Reconnectez-vous avec un moyen d’authentification plus fort.",
        en: "This service requires a higher authentication level than the one you signed in with. Sign in again with a stronger method.",
    },
    help: true,
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
    help: false,
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
    help: false,
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
    help: false,
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
    fn refusal_pages_say_whom_to_ask_when_configured() {
        let contact = Some(("mailto:aide@example.gouv.fr", "aide@example.gouv.fr"));
        let mut fr = page(403, Lang::Fr, &DENIED, Some("eve@example.com"), None);
        fill_help(&mut fr, contact);
        let body = String::from_utf8(fr.body).unwrap();
        assert!(body.contains(
            "Besoin d’aide ? Contactez <a href=\"mailto:aide@example.gouv.fr\">aide@example.gouv.fr</a>."
        ));
        let mut en = page(503, Lang::En, &UNAVAILABLE, None, None);
        fill_help(
            &mut en,
            Some(("https://x.example/?a=1&b=<", "https://x.example/?a=1&b=<")),
        );
        let body = String::from_utf8(en.body).unwrap();
        assert!(body.contains("Need help? Contact <a href=\"https://x.example/?a=1&amp;b=&lt;\">"));
        // Without a contact, or on a page that is not a refusal, nothing.
        let mut bare = page(403, Lang::Fr, &DENIED, None, None);
        fill_help(&mut bare, None);
        let body = String::from_utf8(bare.body).unwrap();
        assert!(!body.contains("Besoin") && !body.contains(HELP_SLOT));
        let mut out = page(200, Lang::Fr, &SIGNED_OUT, None, None);
        fill_help(&mut out, contact);
        assert!(!String::from_utf8(out.body).unwrap().contains("Besoin"));
    }

    #[test]
    fn every_page_has_the_frame_and_no_script() {
        let body = String::from_utf8(sign_in(Lang::En, "/oauth2/start", true).body).unwrap();
        for part in [
            "<html lang=\"en\">",
            "<header>",
            "lang=\"fr\">République<br>Française</p>",
            "<main>",
            "<h1>Sign in</h1>",
            "<footer>",
            "target=\"_blank\" rel=\"noopener\"",
            "<span class=\"sr\"> – new window</span>",
        ] {
            assert!(body.contains(part), "{part}: {body}");
        }
        assert!(!body.contains("<script") && !body.contains("src=") && !body.contains("url("));
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
