//! Domain types of the delivery service: they validate on construction and do no I/O.
