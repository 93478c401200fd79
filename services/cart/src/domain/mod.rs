//! Domain types of the cart service: they validate on construction and do no I/O.
