//! Traits the notification domain needs from the outside world.
