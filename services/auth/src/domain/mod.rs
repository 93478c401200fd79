//! Domain types of the auth service: they validate on construction and do no I/O.
