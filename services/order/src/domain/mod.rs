//! Domain types of the order service: they validate on construction and do no I/O.
