//! One request through the filter. The vocabulary of its steps (`step`:
//! `Action`, `Outcome`, `Step`) and the configured `Filter` (`filter`), whose
//! methods decide: a request as it comes (`request`), a sign-in, its callback
//! and sign-out (`login`), a session refresh (`refresh`), a bearer token
//! (`bearer`); with the identity headers sent upstream (`headers`), what waits
//! for the provider between two steps (`state`) and the bearer tokens checked
//! lately (`tokens`).

pub mod bearer;
pub mod filter;
pub mod headers;
pub mod login;
pub mod personal;
pub mod refresh;
pub mod request;
pub mod state;
pub mod step;
pub mod tokens;
pub mod who;

#[cfg(test)]
mod access_tests;
#[cfg(test)]
mod providers_tests;
#[cfg(test)]
mod tests;

pub use filter::Filter;
pub use state::Pending;
pub use step::{Action, Outcome, Step};
