//! Backends of the auth service, one module per engine.
