//! Backends of the gateway service, one module per engine.
