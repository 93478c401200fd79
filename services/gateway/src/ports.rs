//! Traits the gateway domain needs from the outside world.
