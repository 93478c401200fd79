//! Domain types of the notification service: they validate on construction and do no I/O.
