//! (module app)
