//! Connector specs: the data model, the generator that derives a spec from an OpenAPI
//! description, and loading and validating the committed spec files. No I/O beyond reading the
//! input files and reading and writing spec files.

mod error;
mod files;
pub mod generate;
pub mod model;
pub mod naming;
pub mod openapi;
pub mod overlay;
mod validate;

pub use error::SpecError;
pub use files::{
    OVERLAY_FILE, STRIPE_SPEC_DIR, load_dir, stripe, stripe_shared, to_file_text, write_spec,
};
pub use generate::{generate, generate_from};
pub use validate::validate;
