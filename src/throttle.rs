//! (module throttle)
