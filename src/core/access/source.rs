//! The access document's source (`access_source`): when to fetch it, what
//! an answer does to the document in force, and the state the workers
//! share. A document is taken whole or not at all; a source that fails
//! leaves the last good document in force.

use std::rc::Rc;

use serde_json::{Map, Value};

use crate::core::access::document::AccessDocument;
use crate::core::config::{AccessSource, Config};
use crate::core::http::{ProviderCall, ProviderResponse};
use crate::core::text_field;

/// Where the access document stands in this VM.
#[derive(Debug, Clone, Default)]
pub struct AccessState {
    /// The document in force.
    pub document: Option<Rc<AccessDocument>>,
    /// It, as fetched (to share it, and to see whether a copy is new).
    pub raw: Vec<u8>,
    pub etag: Option<String>,
    /// When the source last gave or confirmed the document in force.
    pub confirmed_at: u64,
    pub failures: u32,
    pub next_fetch_at: u64,
    pub fetching: bool,
    /// Something other workers should see changed.
    pub changed: bool,
}

/// How a fetch of the document went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessFetch {
    /// A new document is in force.
    Changed,
    /// The document in force is still the source's (the same bytes, or 304).
    Unchanged,
    /// Nothing taken; the message says why (one line, no secrets).
    Failed(String),
}

impl AccessState {
    /// The document in force at `now`: none yet, or none any more when it
    /// is older than `source.max_age` (the source has not given or
    /// confirmed it for that long).
    pub fn in_force(&self, source: &AccessSource, now: u64) -> Option<&Rc<AccessDocument>> {
        let stale = source
            .max_age
            .is_some_and(|max| now.saturating_sub(self.confirmed_at) > max);
        self.document.as_ref().filter(|_| !stale)
    }

    /// Whether a fetch should start now.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn fetch_due(&self, now: u64) -> bool {
        !self.fetching && now >= self.next_fetch_at
    }

    /// The request for the document, when one is due.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn start_fetch(&mut self, source: &AccessSource, now: u64) -> Option<ProviderCall> {
        if !self.fetch_due(now) {
            return None;
        }
        self.fetching = true;
        let mut call = ProviderCall::get(&source.url, "application/json");
        if let Some(etag) = self.etag.as_deref().filter(|_| self.document.is_some()) {
            call = call.with_header("if-none-match", etag);
        }
        Some(call)
    }

    /// Takes the source's answer.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn on_fetch(&mut self, config: &Config, resp: &ProviderResponse, now: u64) -> AccessFetch {
        self.fetching = false;
        self.changed = true;
        let Some(source) = &config.access_source else {
            return AccessFetch::Unchanged;
        };
        let result = match resp.status {
            304 if self.document.is_some() => Ok(false),
            200 if resp.body == self.raw && self.document.is_some() => Ok(false),
            200 => match parse(config, &resp.body) {
                Ok(document) => {
                    self.document = Some(Rc::new(document));
                    self.raw = resp.body.clone();
                    Ok(true)
                }
                Err(problems) => Err(format!("access document refused: {}", problems.join("; "))),
            },
            0 => Err("the access source cannot be reached".to_string()),
            status => Err(format!("the access source answered HTTP {status}")),
        };
        match result {
            Ok(changed) => {
                // A 304 may leave the validator out: it is still the one.
                if let Some(etag) = resp.header("etag") {
                    self.etag = Some(etag.to_string());
                } else if resp.status == 200 {
                    self.etag = None;
                }
                self.confirmed_at = now;
                self.failures = 0;
                self.next_fetch_at = now + source.refresh_interval;
                if changed {
                    AccessFetch::Changed
                } else {
                    AccessFetch::Unchanged
                }
            }
            Err(message) => {
                self.failures = self.failures.saturating_add(1);
                let backoff = 1u64 << self.failures.min(16).saturating_sub(1);
                self.next_fetch_at = now + backoff.min(source.refresh_interval);
                AccessFetch::Failed(message)
            }
        }
    }

    /// A fetch could not be sent.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn call_failed(&mut self, config: &Config, now: u64) {
        self.on_fetch(config, &ProviderResponse::default(), now);
    }

    /// The state to share with the other workers.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn snapshot(&self) -> Vec<u8> {
        let mut state = Map::new();
        let document = String::from_utf8_lossy(&self.raw).into_owned();
        state.insert("document".into(), document.into());
        if let Some(etag) = &self.etag {
            state.insert("etag".into(), etag.clone().into());
        }
        for (name, n) in [
            ("confirmed_at", self.confirmed_at),
            ("failures", u64::from(self.failures)),
            ("next_fetch_at", self.next_fetch_at),
        ] {
            state.insert(name.into(), n.into());
        }
        serde_json::to_vec(&Value::Object(state)).unwrap_or_default()
    }

    /// Takes the state another worker shared; true when the document in
    /// force changed. A shared document is checked as if fetched here.
    #[cfg_attr(sesame_size, optimize(size))]
    pub fn adopt(&mut self, config: &Config, bytes: &[u8]) -> Result<bool, String> {
        let raw: Map<String, Value> =
            serde_json::from_slice(bytes).map_err(|e| crate::core::json_error(&e))?;
        let number = |name: &str| raw.get(name).and_then(Value::as_u64).unwrap_or(0);
        let text = text_field(&raw, "document").ok().flatten().unwrap_or("");
        let changed = !text.is_empty() && text.as_bytes() != self.raw.as_slice();
        if changed {
            let document = parse(config, text.as_bytes()).map_err(|p| p.join("; "))?;
            self.document = Some(Rc::new(document));
            self.raw = text.as_bytes().to_vec();
        }
        self.etag = text_field(&raw, "etag").ok().flatten().map(str::to_string);
        self.confirmed_at = number("confirmed_at");
        self.failures = u32::try_from(number("failures")).unwrap_or(u32::MAX);
        self.next_fetch_at = number("next_fetch_at");
        Ok(changed)
    }
}

/// Reads a document against this configuration.
#[cfg_attr(sesame_size, optimize(size))]
fn parse(config: &Config, bytes: &[u8]) -> Result<AccessDocument, Vec<String>> {
    let ids: Vec<&str> = config.providers.iter().map(|p| p.id.as_str()).collect();
    AccessDocument::parse(bytes, &ids, &|claim| config.kept_claims.contains(claim))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::tests::config_with;
    use serde_json::json;

    fn config() -> Config {
        let mut c = config_with(json!({}));
        c.access_source = Some(AccessSource {
            url: url::Url::parse("http://access.internal/access.json").unwrap(),
            cluster: "access".into(),
            refresh_interval: 30,
            max_age: None,
        });
        c
    }

    fn answer(status: u16, body: &str, etag: Option<&str>) -> ProviderResponse {
        ProviderResponse {
            status,
            headers: etag
                .map(|e| ("etag".to_string(), e.to_string()))
                .into_iter()
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_last_good_document_stays_and_failures_back_off() {
        let c = config();
        let mut s = AccessState::default();
        let call = s
            .start_fetch(c.access_source.as_ref().unwrap(), 100)
            .unwrap();
        assert!(call.headers.iter().all(|(n, _)| n != "if-none-match"));
        assert!(
            s.start_fetch(c.access_source.as_ref().unwrap(), 100)
                .is_none(),
            "one at a time"
        );
        let good = r#"{"allowed_emails": ["alice@x.fr"]}"#;
        assert_eq!(
            s.on_fetch(&c, &answer(200, good, Some("\"v1\"")), 100),
            AccessFetch::Changed
        );
        assert_eq!(s.next_fetch_at, 130);
        let call = s
            .start_fetch(c.access_source.as_ref().unwrap(), 130)
            .unwrap();
        assert!(call
            .headers
            .iter()
            .any(|(n, v)| n == "if-none-match" && v == "\"v1\""));
        assert_eq!(
            s.on_fetch(&c, &answer(304, "", None), 130),
            AccessFetch::Unchanged
        );
        assert_eq!(s.confirmed_at, 130);
        // A broken document, an error status, an unreachable source: the
        // document in force stays, the next try comes sooner each time.
        for (i, resp) in [
            answer(200, "{", None),
            answer(200, r#"{"allowed_email": []}"#, None),
            answer(500, "", None),
        ]
        .iter()
        .enumerate()
        {
            s.fetching = true;
            let AccessFetch::Failed(message) = s.on_fetch(&c, resp, 200) else {
                panic!("{i}: taken");
            };
            assert!(!message.is_empty());
            assert_eq!(s.next_fetch_at, 200 + (1 << i));
            assert!(s
                .document
                .as_ref()
                .unwrap()
                .policy
                .emails
                .contains("alice@x.fr"));
        }
        s.call_failed(&c, 300);
        assert_eq!(s.failures, 4);
        assert_eq!(s.confirmed_at, 130);
        // Another worker takes the shared state: the same document.
        let mut other = AccessState::default();
        assert_eq!(other.adopt(&c, &s.snapshot()), Ok(true));
        assert_eq!(other.adopt(&c, &s.snapshot()), Ok(false));
        assert_eq!(other.etag.as_deref(), Some("\"v1\""));
        assert!(other.document.unwrap().policy.emails.contains("alice@x.fr"));
        // A shared copy that does not validate here is not taken.
        let bad = json!({"document": "{\"nope\": 1}"}).to_string();
        assert!(AccessState::default().adopt(&c, bad.as_bytes()).is_err());
    }

    #[test]
    fn a_304_without_a_document_is_a_failure() {
        let c = config();
        let mut s = AccessState::default();
        assert!(matches!(
            s.on_fetch(&c, &answer(304, "", None), 1),
            AccessFetch::Failed(_)
        ));
        assert!(s.document.is_none());
    }
}
