//! (module sandbox)
