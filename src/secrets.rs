//! (module secrets)
