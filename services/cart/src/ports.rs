//! Traits the cart domain needs from the outside world.
