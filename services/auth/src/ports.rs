//! Traits the auth domain needs from the outside world.
