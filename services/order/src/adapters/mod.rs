//! Backends of the order service, one module per engine.
