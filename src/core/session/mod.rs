//! Sessions: sealed in cookies (`sealed`), the cookies themselves
//! (`cookies`), and the cache of sessions a worker opened lately (`cache`).

pub mod cache;
pub mod cookies;
pub mod sealed;

pub use cache::{CachedSession, Identity, SessionCache, SessionKey};
pub use sealed::{Purpose, Sealer, Session, SessionCookie, CHUNK_SIZE, MAX_CHUNKS};
