//! Sésame as an Envoy dynamic module (`dist/libsesame.so`): the same core
//! and the same shared code ([`crate::host`]) as the wasm build, carried out
//! through Envoy's C ABI with no VM in between.
//!
//! Envoy runs the module in its own process: its workers are threads, and
//! what the wasm build shares through proxy-wasm's shared data is ordinary
//! memory here ([`crate::core::shared::MemoryStore`], behind a lock). Each
//! worker thread keeps its own [`crate::host::worker::Worker`] (its caches
//! of sessions and tokens, as each wasm VM does) and adopts what the
//! configuration's main-thread worker fetched, once a second. That one
//! fetches each provider's documents and the access document: a thread of
//! the module wakes the main thread each second through the configuration's
//! scheduler (the ABI has no timer for HTTP filters), which then calls the
//! provider through Envoy.
//!
//! The parts that touch Envoy (`abi`, `module`) are built with the `native`
//! feature (`make native`); the rest is plain Rust, tested with the core.

pub mod headers;
pub mod metrics;
pub mod ticker;

#[cfg(feature = "native")]
mod abi;
#[cfg(feature = "native")]
mod module;
