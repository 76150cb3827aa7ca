//! The store as an OCI registry (`img serve`, being built): `route` parses
//! the distribution API's URLs and checks the names it serves.

pub mod route;
