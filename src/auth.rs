//! (module auth)
