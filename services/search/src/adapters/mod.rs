//! Backends of the search service, one module per engine.
