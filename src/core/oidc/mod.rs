//! OpenID Connect: the provider's documents and our copy of them
//! (`provider`), its signing keys and the signatures they check (`keys`),
//! signed tokens (`token`), and encrypted introspection answers (`jwe`).

pub mod jwe;
pub mod keys;
pub mod provider;
pub mod token;
