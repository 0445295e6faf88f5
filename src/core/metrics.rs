//! Every metric the filter can produce, by name (without the `sesame.`
//! prefix the adapter adds).
//!
//! A host that must define its metrics up front (Envoy's dynamic modules
//! refuse a definition after the configuration is loaded) defines these:
//! [`COUNTERS`], [`GAUGES`], and one `provider_ready.<id>` gauge per
//! configured provider when there are several (from the configuration, so
//! not listed here).
//!
//! The counters are those of [`Outcome::counter`] and
//! [`Outcome::second_counter`], and those the adapter increments itself
//! (the fetches of the providers' documents and of the access document). A
//! refusal's counter is `<prefix>.<reason>`; the reasons are the literals of
//! `src/core/flow`, which the tests below read again to keep this list
//! complete.
//!
//! [`Outcome::counter`]: crate::core::flow::Outcome::counter
//! [`Outcome::second_counter`]: crate::core::flow::Outcome::second_counter

/// Every counter, full names (`login_failure.state_mismatch`).
pub const COUNTERS: &[&str] = &[
    // Outcomes with a fixed name (`Outcome::counter`).
    "requests_passed",
    "requests_public",
    "requests_unauthenticated",
    "login_started",
    "login_success",
    "access_denied",
    "provider_unavailable",
    "sign_out",
    "session_refresh_success",
    "session_refresh_adopted",
    "bearer_passed",
    "jwks_served",
    "sign_in_page",
    "logout_returned",
    "endpoint_authorized",
    "endpoint_unauthorized",
    "not_found",
    "path_refused",
    "personal_token_issued",
    "access_source_unavailable",
    // A sign-out's revocation (`Outcome::second_counter`).
    "revocation_success",
    "revocation_failure",
    // Counted by the adapter: the providers' discovery and keys, the
    // access document.
    "provider_fetch_success",
    "provider_fetch_failure",
    "access_fetch_success",
    "access_fetch_failure",
    // `Outcome::LoginFailed`: the callback (src/core/flow/login.rs).
    "login_failure.malformed_callback",
    "login_failure.missing_state",
    "login_failure.invalid_state",
    "login_failure.provider_mismatch",
    "login_failure.state_mismatch",
    "login_failure.missing_login_cookie",
    "login_failure.login_expired",
    "login_failure.cancelled",
    "login_failure.provider_error",
    "login_failure.issuer_mismatch",
    "login_failure.missing_code",
    // ... the provider's answers.
    "login_failure.token_endpoint_error",
    "login_failure.token_response_invalid",
    "login_failure.jwks_unavailable",
    "login_failure.jwks_invalid",
    "login_failure.id_token_invalid",
    "login_failure.nonce_mismatch",
    "login_failure.acr_not_satisfied",
    "login_failure.userinfo_error",
    "login_failure.userinfo_invalid",
    "login_failure.session_too_large",
    // ... the return from the provider's logout.
    "login_failure.logout_state_mismatch",
    // ... `/oauth2/sign_in` (src/core/flow/request.rs).
    "login_failure.unknown_provider",
    "login_failure.invalid_sign_in_parameter",
    // `Outcome::RefreshFailed` (src/core/flow/refresh.rs).
    "session_refresh_failure.provider_unavailable",
    "session_refresh_failure.refresh_refused",
    "session_refresh_failure.token_response_invalid",
    "session_refresh_failure.id_token_invalid",
    "session_refresh_failure.acr_not_satisfied",
    "session_refresh_failure.userinfo_error",
    "session_refresh_failure.userinfo_invalid",
    "session_refresh_failure.session_too_large",
    // `Outcome::BearerRefused` (src/core/flow/bearer.rs).
    "bearer_refused.missing_token",
    "bearer_refused.malformed_token",
    "bearer_refused.several_authorization_headers",
    "bearer_refused.wrong_issuer",
    "bearer_refused.inactive_token",
    "bearer_refused.opaque_token",
    "bearer_refused.invalid_token",
    "bearer_refused.expired_token",
    "bearer_refused.wrong_audience",
    "bearer_refused.insufficient_scope",
    "bearer_refused.insufficient_user_authentication",
    "bearer_refused.introspection_refused",
    "bearer_refused.introspection_invalid",
    // `Outcome::KeyRefused` (src/core/flow/personal.rs, bearer.rs).
    "api_key_refused.unknown_key",
    "api_key_refused.expired_key",
    "api_key_refused.insufficient_scope",
    // `Outcome::TokenRefused`: at `<proxy_prefix>/token`, and a personal
    // token presented (src/core/flow/personal.rs, bearer.rs).
    "personal_token_refused.access_denied",
    "personal_token_refused.cross_site_request",
    "personal_token_refused.invalid_token",
    "personal_token_refused.expired_token",
    "personal_token_refused.insufficient_scope",
    "personal_token_refused.insufficient_user_authentication",
];

/// Every gauge of a fixed name. `vm_memory_bytes` is the wasm build's only
/// (its VMs' linear memory); the per-provider `provider_ready.<id>` come
/// from the configuration.
pub const GAUGES: &[&str] = &[
    "provider_ready",
    "provider_consecutive_failures",
    "access_source_ready",
    "access_document_age",
    "vm_memory_bytes",
];

/// Whether `name` is one of [`COUNTERS`] (an empty name, the counter of
/// outcomes that count nothing, is not).
pub fn is_counter(name: &str) -> bool {
    COUNTERS.contains(&name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    use regex_lite::Regex;

    use super::*;
    use crate::core::flow::who::Who;
    use crate::core::flow::Outcome;

    /// The counters named `<prefix>.<reason>`.
    const REASON_PREFIXES: &[&str] = &[
        "login_failure",
        "session_refresh_failure",
        "bearer_refused",
        "api_key_refused",
        "personal_token_refused",
    ];

    /// The counters the adapter increments itself, not through an outcome.
    const ADAPTER_COUNTERS: &[&str] = &[
        "provider_fetch_success",
        "provider_fetch_failure",
        "access_fetch_success",
        "access_fetch_failure",
    ];

    /// The reasons listed under `prefix`.
    fn reasons(prefix: &str) -> Vec<&'static str> {
        COUNTERS
            .iter()
            .filter_map(|name: &&'static str| {
                let name: &'static str = name;
                name.strip_prefix(prefix)?.strip_prefix('.')
            })
            .collect()
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn manifest_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn names_are_well_formed_and_unique() {
        let shape = Regex::new(r"^[a-z][a-z_]*(\.[a-z][a-z_]*)?$").unwrap();
        let mut seen = BTreeSet::new();
        for name in COUNTERS.iter().chain(GAUGES) {
            assert!(shape.is_match(name), "{name:?} is not a metric name");
            assert!(seen.insert(*name), "{name:?} is listed twice");
        }
        for name in COUNTERS {
            if let Some((prefix, _)) = name.split_once('.') {
                assert!(
                    REASON_PREFIXES.contains(&prefix),
                    "{name:?}: {prefix:?} is no refusal's prefix"
                );
            }
        }
        assert!(is_counter("login_failure.state_mismatch"));
        assert!(is_counter("requests_passed"));
        assert!(!is_counter(""));
        assert!(!is_counter("login_failure"));
        assert!(!is_counter("provider_ready"));
        assert!(!is_counter("sesame.requests_passed"));
    }

    // -----------------------------------------------------------------
    // 1. The outcomes' counters.

    /// How an outcome counts.
    #[derive(Debug, PartialEq)]
    enum Kind {
        /// A fixed name.
        Fixed,
        /// Nothing (its counter is empty).
        Silent,
        /// `<prefix>.<reason>`.
        Reason(&'static str),
    }

    /// How each variant counts. Exhaustive, with no `_` arm: a new variant
    /// does not compile until it is named here, and
    /// `every_variant_has_samples` then fails until `samples` builds it.
    fn kind(outcome: &Outcome) -> Kind {
        match outcome {
            Outcome::Passed
            | Outcome::Public
            | Outcome::Unauthenticated
            | Outcome::LoginStarted
            | Outcome::LoginSucceeded { .. }
            | Outcome::Denied { .. }
            | Outcome::ProviderUnavailable
            | Outcome::SignedOut { .. }
            | Outcome::Refreshed { .. }
            | Outcome::RefreshAdopted
            | Outcome::BearerPassed
            | Outcome::KeysServed
            | Outcome::SignInPage
            | Outcome::LogoutReturned
            | Outcome::Endpoint { .. }
            | Outcome::NotFound
            | Outcome::TokenIssued { .. }
            | Outcome::AccessUnavailable
            | Outcome::PathRefused { .. } => Kind::Fixed,
            Outcome::Waiting | Outcome::PageShown => Kind::Silent,
            Outcome::LoginFailed { .. } => Kind::Reason("login_failure"),
            Outcome::RefreshFailed { .. } => Kind::Reason("session_refresh_failure"),
            Outcome::BearerRefused { .. } => Kind::Reason("bearer_refused"),
            Outcome::KeyRefused { .. } => Kind::Reason("api_key_refused"),
            Outcome::TokenRefused { .. } => Kind::Reason("personal_token_refused"),
        }
    }

    /// Values of every variant (and of every value that counts differently:
    /// `Endpoint`'s two, `SignedOut`'s three), the reason-bearing ones with
    /// each reason of the list.
    fn samples() -> Vec<Outcome> {
        let who = || Box::<Who>::default();
        let mut all = vec![
            Outcome::Passed,
            Outcome::Public,
            Outcome::Unauthenticated,
            Outcome::LoginStarted,
            Outcome::Waiting,
            Outcome::LoginSucceeded { who: who() },
            Outcome::Denied {
                who: who(),
                reason: String::new(),
                code: "",
                sign_in: false,
            },
            Outcome::ProviderUnavailable,
            Outcome::SignedOut {
                who: None,
                at_provider: false,
                revoked: None,
            },
            Outcome::SignedOut {
                who: Some(who()),
                at_provider: true,
                revoked: Some(true),
            },
            Outcome::SignedOut {
                who: Some(who()),
                at_provider: false,
                revoked: Some(false),
            },
            Outcome::Refreshed { sub: String::new() },
            Outcome::RefreshAdopted,
            Outcome::BearerPassed,
            Outcome::KeysServed,
            Outcome::SignInPage,
            Outcome::LogoutReturned,
            Outcome::Endpoint { ok: true },
            Outcome::Endpoint { ok: false },
            Outcome::NotFound,
            Outcome::TokenIssued { who: who() },
            Outcome::AccessUnavailable,
            Outcome::PageShown,
            Outcome::PathRefused {
                detail: String::new(),
            },
        ];
        for reason in reasons("login_failure") {
            all.push(Outcome::LoginFailed {
                reason,
                detail: String::new(),
            });
        }
        for reason in reasons("session_refresh_failure") {
            all.push(Outcome::RefreshFailed {
                reason,
                detail: String::new(),
            });
        }
        for reason in reasons("bearer_refused") {
            all.push(Outcome::BearerRefused {
                reason,
                detail: String::new(),
            });
        }
        for reason in reasons("api_key_refused") {
            all.push(Outcome::KeyRefused { key: None, reason });
        }
        for reason in reasons("personal_token_refused") {
            all.push(Outcome::TokenRefused { who: None, reason });
        }
        all
    }

    /// The variants of `Outcome`, read from its definition.
    fn declared_variants() -> BTreeSet<String> {
        let text = read(&manifest_dir().join("src/core/flow/step.rs"));
        let start = text
            .find("pub enum Outcome {")
            .expect("step.rs defines `pub enum Outcome`");
        let body = &text[start..];
        let body = &body[..body.find("\n}\n").expect("the end of `Outcome`")];
        let variant = Regex::new(r"(?m)^    ([A-Z][A-Za-z0-9]*)\b").unwrap();
        variant
            .captures_iter(body)
            .map(|c| c[1].to_string())
            .collect()
    }

    fn variant_name(outcome: &Outcome) -> String {
        format!("{outcome:?}")
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect()
    }

    #[test]
    fn every_variant_has_samples() {
        let declared = declared_variants();
        assert!(declared.len() >= 20, "only {declared:?} read in step.rs");
        let sampled: BTreeSet<String> = samples().iter().map(variant_name).collect();
        assert_eq!(
            declared, sampled,
            "every variant of `Outcome` needs a sample in `samples`"
        );
    }

    #[test]
    fn every_outcome_counts_a_listed_counter() {
        let mut produced = BTreeSet::new();
        for outcome in samples() {
            let counter = outcome.counter();
            match kind(&outcome) {
                Kind::Silent => assert_eq!(counter, "", "{outcome:?} counts nothing"),
                Kind::Fixed => {
                    assert!(is_counter(&counter), "{outcome:?} counts {counter:?}");
                    produced.insert(counter.into_owned());
                }
                Kind::Reason(prefix) => {
                    let reason = match &outcome {
                        Outcome::LoginFailed { reason, .. }
                        | Outcome::RefreshFailed { reason, .. }
                        | Outcome::BearerRefused { reason, .. }
                        | Outcome::KeyRefused { reason, .. }
                        | Outcome::TokenRefused { reason, .. } => *reason,
                        other => panic!("{other:?} has no reason"),
                    };
                    assert_eq!(counter, format!("{prefix}.{reason}"));
                    assert!(is_counter(&counter), "{outcome:?} counts {counter:?}");
                    produced.insert(counter.into_owned());
                }
            }
            if let Some(second) = outcome.second_counter() {
                assert!(is_counter(second), "{outcome:?} also counts {second:?}");
                produced.insert(second.to_string());
            }
        }
        // And nothing listed that nothing counts.
        for name in COUNTERS {
            assert!(
                produced.contains(*name) || ADAPTER_COUNTERS.contains(name),
                "{name:?} is listed, but no outcome counts it"
            );
        }
        for prefix in REASON_PREFIXES {
            assert!(!reasons(prefix).is_empty(), "no {prefix}.<reason> listed");
        }
    }

    // -----------------------------------------------------------------
    // 2. The reasons in the source.

    /// The `.rs` files under `dir`, sorted.
    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The code a build compiles outside tests: `None` for a test file,
    /// else the text up to its first `#[cfg(test)]`.
    fn production_code(path: &Path) -> Option<String> {
        let name = path.file_name()?.to_str()?;
        if name == "tests.rs" || name.ends_with("_tests.rs") {
            return None;
        }
        let mut text = read(path);
        if let Some(at) = text.find("#[cfg(test)]") {
            text.truncate(at);
        }
        Some(text)
    }

    /// A reason literal found in the source.
    #[derive(Debug)]
    struct Found {
        file: String,
        function: String,
        reason: String,
        /// What the pattern itself says it counts under, if it says.
        prefix: Option<&'static str>,
    }

    /// Where the patterns without a prefix of their own (a status and a
    /// reason, `let reason = …`, the closures `refuse`/`refused`, an
    /// `Err("…")`, the last argument of `refuse_token`) count, by function.
    /// An empty list: literals there are no counter's.
    const CONTEXT: &[(&str, &str, &[&str])] = &[
        // `fail(status, reason, …)`'s `(401, "cancelled")`.
        ("login.rs", "callback", &["login_failure"]),
        // `(status, reason, detail)`: a sign-in's and a refresh's.
        (
            "login.rs",
            "userinfo_claims",
            &["login_failure", "session_refresh_failure"],
        ),
        ("login.rs", "check_id_token", &["login_failure"]),
        // The reason of the page's address, shown, not counted.
        ("login.rs", "refusal_page", &[]),
        ("bearer.rs", "jwt_access_token", &["bearer_refused"]),
        // A personal token refused by the route's scopes or rules.
        ("bearer.rs", "admit", &["personal_token_refused"]),
        // `refuse_token(…, "unknown_key")`, then `KeyRefused`.
        ("bearer.rs", "bearer_request", &["api_key_refused"]),
        (
            "personal.rs",
            "open_personal_token",
            &["personal_token_refused"],
        ),
        (
            "personal.rs",
            "personal_token_endpoint",
            &["personal_token_refused"],
        ),
        ("personal.rs", "api_key_request", &["api_key_refused"]),
    ];

    /// Functions whose bearer refusals `admit` passes on as a personal
    /// token's (`Outcome::BearerRefused { reason, .. } => reason`).
    const FORWARDED: &[(&str, &str, &str)] = &[
        ("bearer.rs", "admission", "personal_token_refused"),
        (
            "bearer.rs",
            "insufficient_authentication",
            "personal_token_refused",
        ),
    ];

    /// The prefix a struct literal holding `reason: "…"` counts under.
    fn opener_prefix(opener: &str) -> Option<&'static str> {
        Some(match opener {
            "Outcome::LoginFailed" => "login_failure",
            "Outcome::RefreshFailed" | "Failure" => "session_refresh_failure",
            "Outcome::BearerRefused" | "Refusal" => "bearer_refused",
            "Outcome::KeyRefused" => "api_key_refused",
            "Outcome::TokenRefused" => "personal_token_refused",
            _ => return None,
        })
    }

    /// Every reason literal of the production code under `src/core`.
    fn scan_reasons() -> Vec<Found> {
        let mut files = Vec::new();
        rust_files(&manifest_dir().join("src/core"), &mut files);
        let function = Regex::new(r"\bfn\s+(\w+)").unwrap();
        let opener = Regex::new(r"(Outcome::\w+|\bRefusal|\bFailure)\s*\{").unwrap();
        let field = Regex::new(r#"\breason:\s*"([a-z_]+)""#).unwrap();
        // Patterns that name their prefix.
        let named: Vec<(Regex, &'static str)> = [
            (r#"Refusal::invalid\(\s*"([a-z_]+)""#, "bearer_refused"),
            (
                r#"\bintrospection_failed\(\s*"([a-z_]+)""#,
                "bearer_refused",
            ),
            (
                r#"\b(?:fail|login_failed)\(\s*(?:self,\s*)?\d{3},\s*"([a-z_]+)""#,
                "login_failure",
            ),
        ]
        .into_iter()
        .map(|(p, prefix)| (Regex::new(p).unwrap(), prefix))
        .collect();
        // Patterns whose prefix comes from `CONTEXT`.
        let contextual: Vec<Regex> = [
            // `(401, "cancelled")`, `Err((502, "userinfo_error", …))`.
            r#"[\s(]\(\s*\d{3},\s*"([a-z_]+)""#,
            // `refuse(403, "access_denied")`, `refused(step, "expired_key")`.
            r#"\brefused?\(\s*(?:step|\d{3}),\s*"([a-z_]+)""#,
            r#"\bok_or\(\s*"([a-z_]+)"\s*\)"#,
            r#"\bErr\(\s*"([a-z_]+)"\s*\)"#,
            r#"\brefuse_token\(\s*\d{3},\s*"[a-z_]+",\s*[^,]+,\s*"([a-z_]+)""#,
        ]
        .into_iter()
        .map(|p| Regex::new(p).unwrap())
        .collect();
        let let_reason = Regex::new(r"\blet reason = ([^;]*);").unwrap();
        let literal = Regex::new(r#""([a-z_]+)""#).unwrap();

        let mut found = Vec::new();
        for path in files {
            let Some(text) = production_code(&path) else {
                continue;
            };
            let file = path.file_name().unwrap().to_string_lossy().to_string();
            if file == "metrics.rs" {
                continue;
            }
            let function_at = |at: usize| {
                function
                    .captures_iter(&text[..at])
                    .last()
                    .map_or(String::new(), |c| c[1].to_string())
            };
            let mut add = |at: usize, reason: &str, prefix: Option<&'static str>| {
                found.push(Found {
                    file: file.clone(),
                    function: function_at(at),
                    reason: reason.to_string(),
                    prefix,
                });
            };
            for c in field.captures_iter(&text) {
                let at = c.get(0).unwrap().start();
                let opened = opener
                    .captures_iter(&text[..at])
                    .last()
                    .map(|o| o[1].to_string())
                    .unwrap_or_default();
                let prefix = opener_prefix(&opened).unwrap_or_else(|| {
                    panic!(
                        "{file}: `reason: {:?}` in `{opened} {{`: which counter is it?",
                        &c[1]
                    )
                });
                add(at, &c[1], Some(prefix));
            }
            for (pattern, prefix) in &named {
                for c in pattern.captures_iter(&text) {
                    add(c.get(0).unwrap().start(), &c[1], Some(prefix));
                }
            }
            for pattern in &contextual {
                for c in pattern.captures_iter(&text) {
                    add(c.get(0).unwrap().start(), &c[1], None);
                }
            }
            for c in let_reason.captures_iter(&text) {
                let at = c.get(0).unwrap().start();
                for l in literal.captures_iter(&c[1]) {
                    add(at, &l[1], None);
                }
            }
        }
        found
    }

    /// The full counter names the scan finds.
    fn scanned_counters() -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let mut unclassified = Vec::new();
        for f in scan_reasons() {
            let context = CONTEXT
                .iter()
                .find(|(file, function, _)| *file == f.file && *function == f.function)
                .map(|(_, _, prefixes)| *prefixes);
            let mut prefixes: Vec<&str> = match (f.prefix, context) {
                (Some(prefix), _) => vec![prefix],
                (None, Some(prefixes)) => prefixes.to_vec(),
                (None, None) => {
                    unclassified.push(f);
                    continue;
                }
            };
            prefixes.extend(
                FORWARDED
                    .iter()
                    .filter(|(file, function, _)| *file == f.file && *function == f.function)
                    .map(|(_, _, prefix)| *prefix),
            );
            for prefix in prefixes {
                names.insert(format!("{prefix}.{}", f.reason));
            }
        }
        assert!(
            unclassified.is_empty(),
            "reason literals in functions `CONTEXT` does not know (add them, with the \
             counters they reach, or none): {unclassified:#?}"
        );
        names
    }

    #[test]
    fn every_reason_in_the_source_is_listed() {
        let scanned = scanned_counters();
        // Enough found that the patterns still match the code.
        assert!(
            scanned.len() >= 50,
            "only {} reasons found: do the patterns still match? {scanned:#?}",
            scanned.len()
        );
        for prefix in REASON_PREFIXES {
            assert!(
                scanned.iter().any(|n| n.starts_with(&format!("{prefix}."))),
                "no {prefix}.<reason> found in the source"
            );
        }
        let missing: Vec<&String> = scanned.iter().filter(|n| !is_counter(n)).collect();
        assert!(missing.is_empty(), "not in COUNTERS: {missing:#?}");
        // And no reason listed that the source no longer has.
        let stale: Vec<&&str> = COUNTERS
            .iter()
            .filter(|n| n.contains('.') && !scanned.contains(**n))
            .collect();
        assert!(
            stale.is_empty(),
            "listed, not found in the source: {stale:#?}"
        );
    }

    /// `TokenError::reason()` names the errors of a token for its message
    /// only; none reaches a counter. Were one passed to an outcome, its
    /// names would have to be listed: this says so.
    #[test]
    fn token_error_names_stay_out_of_counters() {
        let mut files = Vec::new();
        rust_files(&manifest_dir().join("src/core"), &mut files);
        let call = Regex::new(r"\.reason\(\)").unwrap();
        for path in files {
            let Some(text) = production_code(&path) else {
                continue;
            };
            let allowed = usize::from(path.ends_with("oidc/token.rs"));
            let calls = call.find_iter(&text).count();
            assert!(
                calls <= allowed,
                "{}: `.reason()` called: if it reaches an outcome, list its names",
                path.display()
            );
        }
    }

    // -----------------------------------------------------------------
    // 3. The documentation's table.

    /// The names of the table of docs/CONFIGURATION.md's "Statistics":
    /// (counters, gauges).
    fn documented() -> (BTreeSet<String>, BTreeSet<String>) {
        let text = read(&manifest_dir().join("docs/CONFIGURATION.md"));
        let start = text
            .find("\n## Statistics\n")
            .expect("docs/CONFIGURATION.md has a section \"Statistics\"");
        let section = &text[start + 1..];
        let end = section[1..].find("\n#").map_or(section.len(), |at| at + 1);
        let ticked = Regex::new(r"`([^`]*)`").unwrap();
        let aside = Regex::new(r"\([^()]*\)").unwrap();
        let (mut counters, mut gauges) = (BTreeSet::new(), BTreeSet::new());
        for row in section[..end].lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.split('|').collect();
            let (names, what) = (cells[1], cells[2..].join("|"));
            let gauge = names.contains("(gauge)");
            for name in ticked.captures_iter(names).map(|c| c[1].to_string()) {
                if let Some(prefix) = name.strip_suffix(".<reason>") {
                    // The reasons in backticks, asides left out (they
                    // quote other things: `access_denied` from the provider).
                    let what = aside.replace_all(&what, "");
                    for reason in ticked.captures_iter(&what) {
                        counters.insert(format!("{prefix}.{}", &reason[1]));
                    }
                } else if name.ends_with(".<id>") {
                    assert!(gauge, "{name} is a gauge");
                } else if gauge {
                    gauges.insert(name);
                } else {
                    counters.insert(name);
                }
            }
        }
        (counters, gauges)
    }

    #[test]
    fn every_documented_metric_is_listed() {
        let (counters, gauges) = documented();
        assert!(
            counters.len() >= 60 && gauges.len() >= 4,
            "the table read badly: {counters:#?} {gauges:#?}"
        );
        assert!(counters.contains("login_failure.state_mismatch"));
        let missing: Vec<&String> = counters.iter().filter(|n| !is_counter(n)).collect();
        assert!(
            missing.is_empty(),
            "documented, not in COUNTERS: {missing:#?}"
        );
        let missing: Vec<&String> = gauges
            .iter()
            .filter(|n| !GAUGES.contains(&n.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "documented, not in GAUGES: {missing:#?}"
        );
    }

    // -----------------------------------------------------------------
    // The host's own metrics.

    /// The names the rest of the crate counts or sets by literal (the
    /// adapter's fetches and gauges) are listed.
    #[test]
    fn the_hosts_literal_metrics_are_listed() {
        let src = manifest_dir().join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let counted = Regex::new(
            r#"\b(?:count|count_later|increment)\(\s*"([a-z_.]+)"|=>\s*"([a-z_]+_(?:success|failure))""#,
        )
        .unwrap();
        let gauge = Regex::new(r#"\bset_gauge\(\s*"([a-z_.]+)"|MetricType::Gauge,\s*"([a-z_.]+)""#)
            .unwrap();
        let (mut counters, mut gauges) = (0, 0);
        for path in files.iter().filter(|p| !p.starts_with(src.join("core"))) {
            let Some(text) = production_code(path) else {
                continue;
            };
            for c in counted.captures_iter(&text) {
                let name = c.get(1).or(c.get(2)).unwrap().as_str();
                assert!(is_counter(name), "{}: {name:?}", path.display());
                counters += 1;
            }
            for c in gauge.captures_iter(&text) {
                let name = c.get(1).or(c.get(2)).unwrap().as_str();
                assert!(GAUGES.contains(&name), "{}: gauge {name:?}", path.display());
                gauges += 1;
            }
        }
        assert!(
            counters >= 1 && gauges >= 1,
            "no metric named by literal outside src/core: do the patterns still match?"
        );
    }
}
