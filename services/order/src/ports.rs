//! Traits the order domain needs from the outside world.
