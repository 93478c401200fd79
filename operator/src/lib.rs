//! Storefront operator (placeholder, being written).
