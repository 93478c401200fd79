//! Traits the search domain needs from the outside world.
