//! Backends of the delivery service, one module per engine.
