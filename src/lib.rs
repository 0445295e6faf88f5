//! Sésame: an OpenID Connect login filter for Envoy, as a proxy-wasm module.
//!
//! [`core`] holds every decision and is tested natively; `adapter` (built for
//! `wasm32` only) carries those decisions out with proxy-wasm hostcalls.

// The wasm build (scripts/build-wasm.sh) marks code that runs at start-up
// or once per sign-in, never per request, to be compiled for size.
#![cfg_attr(sesame_size, feature(optimize_attribute))]

pub mod core;
pub mod host;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;

#[cfg(target_arch = "wasm32")]
mod adapter;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    adapter::register();
}}
