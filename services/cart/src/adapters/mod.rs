//! Backends of the cart service, one module per engine.
