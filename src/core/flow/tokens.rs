//! Bearer tokens checked lately, by a hash of the token (the token itself is
//! not kept), with what their first requests worked out.

use std::cell::OnceCell;
use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::core::access::policy::Admissions;
use crate::core::session::Identity;

/// How long an inactive or unknown token is remembered as such.
pub(crate) const NEGATIVE_TTL: u64 = 10;

/// A checked token: its claims, or `None` when it is not valid.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    /// The provider that vouched for the token.
    pub(crate) provider: usize,
    pub(crate) claims: Option<Map<String, Value>>,
    pub(crate) until: u64,
    pub(crate) memo: Memo,
}

/// What the requests with a valid token worked out once for the next ones.
#[derive(Debug, Clone, Default)]
pub(crate) struct Memo {
    /// The identity headers for this token, made on its first admission.
    pub(crate) identity: OnceCell<Identity>,
    /// What each route's scopes and access rules answered (slot 0: a
    /// request on no route, slot `n`: on the route at `n - 1`).
    pub(crate) admissions: Admissions,
}

/// Checked tokens by SHA-256 of the token (the token itself is not kept).
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: HashMap<[u8; 32], Checked>,
}

impl TokenCache {
    pub(crate) fn get(&self, key: &[u8; 32], now: u64) -> Option<&Checked> {
        self.entries.get(key).filter(|c| now < c.until)
    }

    pub(crate) fn put(&mut self, key: [u8; 32], checked: Checked, size: usize, now: u64) {
        if size == 0 || checked.until <= now {
            return;
        }
        if self.entries.len() >= size && !self.entries.contains_key(&key) {
            self.entries.retain(|_, c| now < c.until);
            if self.entries.len() >= size {
                // Still full of live entries: drop the one that expires first.
                if let Some(first) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, c)| c.until)
                    .map(|(k, _)| *k)
                {
                    self.entries.remove(&first);
                }
            }
        }
        self.entries.insert(key, checked);
    }

    /// Forgets every token (the access rules changed).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
