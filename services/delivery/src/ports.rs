//! Traits the delivery domain needs from the outside world.
