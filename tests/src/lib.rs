//! Test kit for the local stack (placeholder, being written).
