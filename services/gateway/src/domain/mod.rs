//! Pure gateway logic, no I/O: the configuration format and its validation, route matching
//! and rewriting, client-IP resolution, and GCRA arithmetic with the rate-limit headers.

pub mod client_ip;
pub mod config;
pub mod gcra;
pub mod routing;
