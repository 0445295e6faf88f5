//! State shared by every copy of the filter in one Envoy: its workers each run
//! their own wasm VM, and proxy-wasm's shared data (a key/value map with
//! compare-and-swap) is what they have in common. Two things live there:
//!
//! - the refresh slots: one session refresh in flight at a time, whichever
//!   worker the requests land on, and its result for the requests that still
//!   carry the old cookie;
//! - the provider's discovery document and keys, fetched by one worker (the
//!   holder of a short lease) and read by all.
//!
//! The core only sees the [`SharedStore`] trait; the wasm build implements
//! it with hostcalls, the native build (whose workers are threads of one
//! process) and the tests with [`MemoryStore`].

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use sha2::{Digest, Sha256};

use super::config::Config;

/// A key/value store with compare-and-swap, as proxy-wasm's shared data.
pub trait SharedStore {
    /// The value and its version, `None` when the key was never set.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Sets the value if `cas` is `None` or still the key's version; false on
    /// a version mismatch (someone else wrote first) or a host error.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
}

/// An in-memory [`SharedStore`], safe to share between threads: the store
/// of the native build's workers (one process), and the tests'.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Each key's value and version, and the last version given.
    data: Mutex<Entries>,
}

type Entries = (HashMap<String, (Vec<u8>, u32)>, u32);

impl MemoryStore {
    fn lock(&self) -> MutexGuard<'_, Entries> {
        // A panic elsewhere while the lock was held leaves whole entries:
        // every change is one insert.
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SharedStore for MemoryStore {
    #[cfg_attr(sesame_size, optimize(size))]
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.lock().0.get(key).cloned()
    }

    #[cfg_attr(sesame_size, optimize(size))]
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        let mut guard = self.lock();
        let (data, version) = &mut *guard;
        if let (Some(cas), Some((_, current))) = (cas, data.get(key)) {
            if cas != *current {
                return false;
            }
        }
        *version = version.wrapping_add(1).max(1);
        data.insert(key.to_string(), (value.to_vec(), *version));
        true
    }
}

/// Number of refresh slots: sessions share a slot by a hash of their id, so
/// the shared memory they use stays bounded however many people sign in.
pub const REFRESH_SLOTS: u32 = 1024;
/// How long a finished refresh is kept for requests with the old cookie.
pub const REFRESH_GRACE: u64 = 30;
/// How long to wait after a refresh failed for a passing reason.
pub const REFRESH_RETRY: u64 = 30;

/// The prefix of this configuration's keys: plugins that share a VM id but
/// not a provider, client or cookie never see each other's state.
#[cfg_attr(sesame_size, optimize(size))]
pub fn namespace(config: &Config) -> String {
    let mut h = Sha256::new();
    for p in &config.providers {
        for part in [&p.issuer, &p.client_id] {
            h.update(part.as_bytes());
            h.update([0]);
        }
    }
    h.update(config.cookie_name.as_bytes());
    h.update([0]);
    let digest = h.finalize();
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("sesame.{hex}")
}

#[cfg_attr(sesame_size, optimize(size))]
fn refresh_key(ns: &str, sid: &str) -> String {
    let digest = Sha256::digest(sid.as_bytes());
    let slot = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % REFRESH_SLOTS;
    format!("{ns}.refresh.{slot}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Busy,
    Done,
    Retry,
}

impl SlotState {
    #[cfg_attr(sesame_size, optimize(size))]
    fn name(self) -> &'static str {
        match self {
            SlotState::Busy => "busy",
            SlotState::Done => "done",
            SlotState::Retry => "retry",
        }
    }
}

/// A refresh slot, stored as lines: state, until, session id, generation,
/// and the sealed session (`Done` only). Every part is URL-safe text.
#[derive(Debug, Clone)]
struct Slot {
    sid: String,
    /// Which generation of the session (its access token) is refreshed.
    from: String,
    state: SlotState,
    until: u64,
    /// The refreshed session, sealed (`Done` only).
    sealed: Option<String>,
}

impl Slot {
    #[cfg_attr(sesame_size, optimize(size))]
    fn to_bytes(&self) -> Vec<u8> {
        let sealed = self.sealed.as_deref().unwrap_or("");
        format!(
            "{}\n{}\n{}\n{}\n{sealed}",
            self.state.name(),
            self.until,
            self.sid,
            self.from
        )
        .into_bytes()
    }

    #[cfg_attr(sesame_size, optimize(size))]
    fn parse(bytes: &[u8]) -> Option<Slot> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.split('\n');
        let state = match lines.next()? {
            "busy" => SlotState::Busy,
            "done" => SlotState::Done,
            "retry" => SlotState::Retry,
            _ => return None,
        };
        let until = lines.next()?.parse().ok()?;
        let sid = lines.next()?.to_string();
        let from = lines.next()?.to_string();
        let sealed = lines.next().filter(|s| !s.is_empty()).map(str::to_string);
        Some(Slot {
            sid,
            from,
            state,
            until,
            sealed,
        })
    }
}

/// What a request whose session is due for a refresh may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshClaim {
    /// This request refreshes the session; others wait for it.
    Mine,
    /// Another request refreshes this session now: go on with the current one.
    InFlight,
    /// The session was refreshed a moment ago: use this sealed session.
    Refreshed(String),
    /// Not now (a recent failure, or the slot is busy with another session):
    /// go on with the current session.
    Later,
}

/// A short fingerprint of one generation of a session (its access token):
/// a refresh result is only handed to requests carrying the generation it
/// replaced.
#[cfg_attr(sesame_size, optimize(size))]
pub fn generation(access_token: Option<&str>) -> String {
    let digest = Sha256::digest(access_token.unwrap_or("").as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Sets a key that did not exist yet. There is no compare-and-swap on a
/// missing key, so write, then read back to see whose write stayed.
#[cfg_attr(sesame_size, optimize(size))]
fn create(store: &dyn SharedStore, key: &str, value: &[u8]) -> bool {
    store.set(key, value, None) && store.get(key).is_some_and(|(b, _)| b == value)
}

/// Tries to become the one request that refreshes generation `from` of
/// session `sid`.
#[cfg_attr(sesame_size, optimize(size))]
pub fn claim_refresh(
    store: &dyn SharedStore,
    ns: &str,
    sid: &str,
    from: &str,
    now: u64,
    busy_for: u64,
) -> RefreshClaim {
    let key = refresh_key(ns, sid);
    let busy = Slot {
        sid: sid.to_string(),
        from: from.to_string(),
        state: SlotState::Busy,
        until: now + busy_for,
        sealed: None,
    };
    let busy_bytes = busy.to_bytes();
    let Some((bytes, cas)) = store.get(&key) else {
        return if create(store, &key, &busy_bytes) {
            RefreshClaim::Mine
        } else {
            RefreshClaim::InFlight
        };
    };
    if let Some(slot) = Slot::parse(&bytes) {
        if now < slot.until {
            if slot.sid != sid {
                return RefreshClaim::Later;
            }
            match slot.state {
                SlotState::Busy => return RefreshClaim::InFlight,
                SlotState::Retry => return RefreshClaim::Later,
                // A newer generation is due in turn: refresh it.
                SlotState::Done if slot.from != from => {}
                SlotState::Done => {
                    if let Some(sealed) = slot.sealed {
                        return RefreshClaim::Refreshed(sealed);
                    }
                }
            }
        }
    }
    if store.set(&key, &busy_bytes, Some(cas)) {
        RefreshClaim::Mine
    } else {
        RefreshClaim::InFlight
    }
}

/// How a refresh this request claimed ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshEnd {
    /// The new session, sealed: handed to requests with the old cookie for a while.
    Done(String),
    /// Failed for a passing reason: no new attempt for a while.
    Retry,
    /// Over (the session ended): the slot is free.
    Released,
}

/// Records how the refresh of `sid` ended.
#[cfg_attr(sesame_size, optimize(size))]
pub fn finish_refresh(store: &dyn SharedStore, ns: &str, sid: &str, end: RefreshEnd, now: u64) {
    let key = refresh_key(ns, sid);
    // Only touch the slot while it is still ours.
    let Some((bytes, cas)) = store.get(&key) else {
        return;
    };
    let Some(from) = Slot::parse(&bytes)
        .filter(|s| s.sid == sid && s.state == SlotState::Busy)
        .map(|s| s.from)
    else {
        return;
    };
    let slot = match end {
        RefreshEnd::Done(sealed) => Slot {
            sid: sid.to_string(),
            from,
            state: SlotState::Done,
            until: now + REFRESH_GRACE,
            sealed: Some(sealed),
        },
        RefreshEnd::Retry => Slot {
            sid: sid.to_string(),
            from,
            state: SlotState::Retry,
            until: now + REFRESH_RETRY,
            sealed: None,
        },
        RefreshEnd::Released => Slot {
            sid: sid.to_string(),
            from,
            state: SlotState::Retry,
            until: 0,
            sealed: None,
        },
    };
    store.set(&key, &slot.to_bytes(), Some(cas));
}

/// The key of provider `index`'s state, which every worker reads.
#[cfg_attr(sesame_size, optimize(size))]
pub fn provider_key(ns: &str, index: usize) -> String {
    format!("{ns}.provider.{index}")
}

/// The key of the lease that lets one worker fetch provider `index`'s
/// documents.
#[cfg_attr(sesame_size, optimize(size))]
pub fn provider_lease_key(ns: &str, index: usize) -> String {
    format!("{ns}.provider.{index}.lease")
}

/// The key of the access document's state, which every worker reads.
#[cfg_attr(sesame_size, optimize(size))]
pub fn access_key(ns: &str) -> String {
    format!("{ns}.access")
}

/// The key of the lease that lets one worker fetch the access document.
#[cfg_attr(sesame_size, optimize(size))]
pub fn access_lease_key(ns: &str) -> String {
    format!("{ns}.access.lease")
}

/// A lease, stored as `holder until` (the holder is URL-safe text).
#[derive(Debug)]
struct Lease {
    holder: String,
    until: u64,
}

impl Lease {
    #[cfg_attr(sesame_size, optimize(size))]
    fn to_bytes(&self) -> Vec<u8> {
        format!("{} {}", self.holder, self.until).into_bytes()
    }

    #[cfg_attr(sesame_size, optimize(size))]
    fn parse(bytes: &[u8]) -> Option<Lease> {
        let (holder, until) = std::str::from_utf8(bytes).ok()?.split_once(' ')?;
        Some(Lease {
            holder: holder.to_string(),
            until: until.parse().ok()?,
        })
    }
}

/// Takes the lease `key` for `holder` until `now + ttl`, unless another holder
/// has it. A lease that is not released (its holder's VM went away) lapses.
#[cfg_attr(sesame_size, optimize(size))]
pub fn take_lease(store: &dyn SharedStore, key: &str, holder: &str, now: u64, ttl: u64) -> bool {
    let mine = Lease {
        holder: holder.to_string(),
        until: now + ttl,
    };
    let bytes = mine.to_bytes();
    match store.get(key) {
        None => create(store, key, &bytes),
        Some((current, cas)) => {
            let held = Lease::parse(&current).is_some_and(|l| l.holder != holder && now < l.until);
            !held && store.set(key, &bytes, Some(cas))
        }
    }
}

/// Gives the lease back, if `holder` still has it.
#[cfg_attr(sesame_size, optimize(size))]
pub fn release_lease(store: &dyn SharedStore, key: &str, holder: &str) {
    if let Some((current, cas)) = store.get(key) {
        if Lease::parse(&current).is_some_and(|l| l.holder == holder) {
            let free = Lease {
                holder: String::new(),
                until: 0,
            };
            store.set(key, &free.to_bytes(), Some(cas));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "sesame.test";

    #[test]
    fn memory_store_compare_and_swap() {
        let s = MemoryStore::default();
        assert!(s.get("k").is_none());
        assert!(s.set("k", b"a", None));
        let (v, cas) = s.get("k").unwrap();
        assert_eq!(v, b"a");
        assert!(s.set("k", b"b", Some(cas)));
        assert!(
            !s.set("k", b"c", Some(cas)),
            "stale version must be refused"
        );
        assert_eq!(s.get("k").unwrap().0, b"b");
    }

    #[test]
    fn one_refresh_at_a_time_then_its_result_for_late_requests() {
        let s = MemoryStore::default();
        assert_eq!(
            claim_refresh(&s, NS, "sid-1", "g1", 100, 10),
            RefreshClaim::Mine
        );
        // A second request (any worker) while the first is at the provider.
        assert_eq!(
            claim_refresh(&s, NS, "sid-1", "g1", 101, 10),
            RefreshClaim::InFlight
        );
        finish_refresh(&s, NS, "sid-1", RefreshEnd::Done("sealed-new".into()), 102);
        // A request still carrying the old cookie gets the new session...
        assert_eq!(
            claim_refresh(&s, NS, "sid-1", "g1", 103, 10),
            RefreshClaim::Refreshed("sealed-new".into())
        );
        // A request with the new generation, due in turn, refreshes it.
        assert_eq!(
            claim_refresh(&s, NS, "sid-1", "g2", 104, 10),
            RefreshClaim::Mine
        );
        finish_refresh(
            &s,
            NS,
            "sid-1",
            RefreshEnd::Done("sealed-newer".into()),
            105,
        );
        // ...until the grace period is over: then it may refresh again.
        assert_eq!(
            claim_refresh(&s, NS, "sid-1", "g2", 105 + REFRESH_GRACE, 10),
            RefreshClaim::Mine
        );
    }

    #[test]
    fn a_stuck_refresh_expires_and_a_failure_backs_off() {
        let s = MemoryStore::default();
        assert_eq!(
            claim_refresh(&s, NS, "sid-1", "g1", 100, 10),
            RefreshClaim::Mine
        );
        // The request that claimed it never came back (Envoy reset it).
        assert_eq!(
            claim_refresh(&s, NS, "sid-1", "g1", 110, 10),
            RefreshClaim::Mine
        );
        finish_refresh(&s, NS, "sid-1", RefreshEnd::Retry, 111);
        assert_eq!(
            claim_refresh(&s, NS, "sid-1", "g1", 112, 10),
            RefreshClaim::Later
        );
        assert_eq!(
            claim_refresh(&s, NS, "sid-1", "g1", 111 + REFRESH_RETRY, 10),
            RefreshClaim::Mine
        );
        finish_refresh(&s, NS, "sid-1", RefreshEnd::Released, 150);
        assert_eq!(
            claim_refresh(&s, NS, "sid-1", "g1", 151, 10),
            RefreshClaim::Mine
        );
    }

    #[test]
    fn sessions_sharing_a_slot_do_not_take_each_other_results() {
        let s = MemoryStore::default();
        // Find two session ids that land in the same slot.
        let a = "sid-a".to_string();
        let b = (0..100_000)
            .map(|i| format!("sid-{i}"))
            .find(|b| *b != a && refresh_key(NS, b) == refresh_key(NS, &a))
            .expect("a colliding id");
        assert_eq!(claim_refresh(&s, NS, &a, "g1", 100, 10), RefreshClaim::Mine);
        assert_eq!(
            claim_refresh(&s, NS, &b, "g1", 100, 10),
            RefreshClaim::Later
        );
        finish_refresh(&s, NS, &a, RefreshEnd::Done("for-a".into()), 101);
        assert_eq!(
            claim_refresh(&s, NS, &b, "g1", 102, 10),
            RefreshClaim::Later
        );
        // b's finish must not overwrite a's slot.
        finish_refresh(&s, NS, &b, RefreshEnd::Retry, 102);
        assert_eq!(
            claim_refresh(&s, NS, &a, "g1", 103, 10),
            RefreshClaim::Refreshed("for-a".into())
        );
    }

    #[test]
    fn namespaces_differ_by_client() {
        use crate::core::config::tests::config_with;
        use serde_json::json;
        let a = config_with(json!({}));
        let b = config_with(json!({"client_id": "other"}));
        assert_ne!(namespace(&a), namespace(&b));
        assert_eq!(namespace(&a), namespace(&config_with(json!({}))));
    }

    #[test]
    fn one_lease_holder_at_a_time_and_lapsed_leases_are_taken_over() {
        let s = MemoryStore::default();
        let key = provider_lease_key(NS, 0);
        assert!(take_lease(&s, &key, "vm-a", 100, 10));
        assert!(!take_lease(&s, &key, "vm-b", 101, 10));
        assert!(
            take_lease(&s, &key, "vm-a", 102, 10),
            "the holder may renew"
        );
        release_lease(&s, &key, "vm-b");
        assert!(
            !take_lease(&s, &key, "vm-b", 103, 10),
            "only the holder releases"
        );
        release_lease(&s, &key, "vm-a");
        assert!(take_lease(&s, &key, "vm-b", 104, 10));
        // vm-b's VM went away without releasing: the lease lapses.
        assert!(!take_lease(&s, &key, "vm-a", 113, 10));
        assert!(take_lease(&s, &key, "vm-a", 114, 10));
    }
}
