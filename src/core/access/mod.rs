//! Who may reach what: the access rules (`policy`), the routes and how each
//! is protected (`routes`), every reading of a request path (`paths`), and
//! the return targets Sésame follows (`redirect`).

pub mod paths;
pub mod policy;
pub mod redirect;
pub mod routes;
