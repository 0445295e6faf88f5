//! Reading a JSON object's keys with every problem collected at once, each
//! named by its key: the configuration, its entries (providers, routes, API
//! keys) and the access document.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

use super::access::policy::{DomainRule, Policy};

/// One problem in the configuration, named by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    #[cfg_attr(sesame_size, optimize(size))]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration key `{}`: {}", self.key, self.message)
    }
}

/// Collects errors while reading typed values out of the JSON object.
pub(crate) struct Reader<'a> {
    pub(crate) obj: &'a Map<String, Value>,
    pub(crate) errors: Vec<ConfigError>,
}

impl<'a> Reader<'a> {
    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn err(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.to_string(),
            message: message.into(),
        });
    }

    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn string(&mut self, key: &str) -> Option<String> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.err(key, "must not be empty");
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.err(key, "must be a string");
                None
            }
        }
    }

    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn required_string(&mut self, key: &str) -> Option<String> {
        let present = !matches!(self.obj.get(key), None | Some(Value::Null));
        let value = self.string(key);
        if !present {
            self.err(key, "is required");
        }
        value
    }

    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn bool(&mut self, key: &str, default: bool) -> bool {
        match self.obj.get(key) {
            None | Some(Value::Null) => default,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.err(key, "must be true or false");
                default
            }
        }
    }

    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn seconds(&mut self, key: &str, default: u64, min: u64, max: u64) -> u64 {
        match self.obj.get(key) {
            None | Some(Value::Null) => default,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if (min..=max).contains(&v) => v,
                _ => {
                    self.err(key, format!("must be a whole number from {min} to {max}"));
                    default
                }
            },
            Some(_) => {
                self.err(key, format!("must be a whole number from {min} to {max}"));
                default
            }
        }
    }

    #[cfg_attr(sesame_size, optimize(size))]
    pub(crate) fn string_list(&mut self, key: &str) -> Option<Vec<String>> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) if !s.trim().is_empty() => out.push(s.clone()),
                        _ => self.err(key, format!("item {i} must be a non-empty string")),
                    }
                }
                Some(out)
            }
            Some(_) => {
                self.err(key, "must be an array of strings");
                None
            }
        }
    }
}

/// The access rules (`allowed_emails`, `allowed_email_domains`,
/// `allowed_claims`) of an object: the configuration, or one of its routes.
#[cfg_attr(sesame_size, optimize(size))]
pub(crate) fn read_policy(r: &mut Reader) -> Policy {
    let obj = r.obj;
    let allowed_emails: BTreeSet<String> = r
        .string_list("allowed_emails")
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.trim().to_ascii_lowercase())
        .collect();
    for e in &allowed_emails {
        if !e.contains('@') {
            r.err("allowed_emails", format!("{e:?} is not an email address"));
        }
    }
    let mut domains = Vec::new();
    for d in r.string_list("allowed_email_domains").unwrap_or_default() {
        match DomainRule::parse(&d) {
            Some(rule) => domains.push(rule),
            None => r.err(
                "allowed_email_domains",
                format!("{d:?} is not a domain, \"*\", or \"*.domain\""),
            ),
        }
    }
    let mut claims = Vec::new();
    match obj.get("allowed_claims") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, values) in map {
                match values {
                    Value::Array(list) if !list.is_empty() => {
                        let mut accepted = Vec::new();
                        for v in list {
                            match v {
                                Value::String(s) => accepted.push(s.clone()),
                                Value::Number(n) => accepted.push(n.to_string()),
                                Value::Bool(b) => accepted.push(b.to_string()),
                                _ => r.err(
                                    "allowed_claims",
                                    format!(
                                        "values of {name:?} must be strings, numbers or booleans"
                                    ),
                                ),
                            }
                        }
                        claims.push((name.clone(), accepted));
                    }
                    _ => r.err(
                        "allowed_claims",
                        format!("{name:?} must map to a non-empty array of accepted values"),
                    ),
                }
            }
        }
        Some(_) => r.err(
            "allowed_claims",
            "must be an object: claim name -> list of accepted values",
        ),
    }
    let everyone = r.bool("allow_all_users", false);
    if everyone && !(allowed_emails.is_empty() && domains.is_empty() && claims.is_empty()) {
        r.err(
            "allow_all_users",
            "admits everyone: leave out allowed_emails, allowed_email_domains and allowed_claims",
        );
    }
    Policy {
        everyone,
        emails: allowed_emails,
        domains,
        claims,
    }
}

/// The objects of the list `key` (at most `max.0`, counted as `max.1`), each
/// read by `read` from a `Reader` of its own, which also sees the entries
/// read before it; its problems are named `key[i].…`. An entry that is not
/// an object is named with `shape`.
#[cfg_attr(sesame_size, optimize(size))]
pub(crate) fn read_entries<'a, T>(
    r: &mut Reader<'a>,
    key: &str,
    items: &'a [Value],
    max: (usize, &str),
    shape: &str,
    mut read: impl FnMut(&mut Reader<'a>, &[T]) -> Option<T>,
) -> Vec<T> {
    if items.len() > max.0 {
        r.err(
            key,
            format!(
                "has {} {}; at most {} are allowed",
                items.len(),
                max.1,
                max.0
            ),
        );
    }
    let mut entries = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(obj) = item.as_object() else {
            r.err(&format!("{key}[{i}]"), shape);
            continue;
        };
        let mut sub = Reader {
            obj,
            errors: Vec::new(),
        };
        let entry = read(&mut sub, &entries);
        for e in sub.errors {
            r.err(&format!("{key}[{i}].{}", e.key), e.message);
        }
        entries.extend(entry);
    }
    entries
}
