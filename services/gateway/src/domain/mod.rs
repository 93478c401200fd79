//! Domain types of the gateway service: they validate on construction and do no I/O.
