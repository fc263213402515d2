//! (module config)
