//! Who may reach what: the access rules (`policy`), the routes and how each
//! is protected (`routes`), every reading of a request path (`paths`), the
//! return targets Sésame follows (`redirect`), and the access document with
//! its API keys (`document`) and its source (`source`).

pub mod document;
pub mod paths;
pub mod policy;
pub mod redirect;
pub mod routes;
pub mod source;
