//! Domain types of the search service: they validate on construction and do no I/O.
