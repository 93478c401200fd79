//! Backends of the notification service, one module per engine.
