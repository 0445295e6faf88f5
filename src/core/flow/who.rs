//! Who a request was about, as log and audit lines name them.

use serde_json::{Map, Value};

/// Who a request was about, for log and audit lines: identity claims, never
/// a token.
#[derive(Debug, Clone, Default)]
#[cfg_attr(test, derive(PartialEq, Eq))]
pub struct Who {
    /// The provider's index.
    pub provider: usize,
    pub sub: String,
    pub email: Option<String>,
    pub idp_id: Option<String>,
    pub siret: Option<String>,
    pub acr: Option<String>,
}

impl Who {
    /// The person of `claims`, signed in with provider `provider`.
    pub fn of(provider: usize, claims: &Map<String, Value>) -> Box<Who> {
        let text = |name: &str| match claims.get(name) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        Box::new(Who {
            provider,
            sub: text("sub").unwrap_or_default(),
            email: text("email"),
            idp_id: text("idp_id"),
            siret: text("siret"),
            acr: text("acr"),
        })
    }
}
