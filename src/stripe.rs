//! (module stripe)
