//! The one error type of spec generation, loading and validation.
//!
//! Every variant names where the problem is: the file, and inside it the JSON path
//! (`fields[3].reference`) or the OpenAPI location (`paths./v1/customers.get`).

use std::path::PathBuf;

/// Why a connector spec could not be generated, written, loaded or validated.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A spec or OpenAPI file is not the JSON its type expects; `path` is the place inside it.
    #[error("{file}: {path}: {message}")]
    Parse {
        file: String,
        path: String,
        message: String,
    },
    /// The overlay is not valid TOML of the expected shape.
    #[error("{file}: {message}")]
    Overlay { file: String, message: String },
    /// The spec parsed but breaks a rule (unknown reference, missing path parameter, ...).
    #[error("{file}: {path}: {message}")]
    Invalid {
        file: String,
        path: String,
        message: String,
    },
    /// The OpenAPI description lacks something the generator needs.
    #[error("OpenAPI {location}: {message}")]
    OpenApi { location: String, message: String },
    /// The overlay names something the OpenAPI description does not have, or names clash.
    #[error("overlay {key}: {message}")]
    OverlayMismatch { key: String, message: String },
}

impl SpecError {
    pub(crate) fn invalid(file: &str, path: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError::Invalid {
            file: file.to_owned(),
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn open_api(location: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError::OpenApi {
            location: location.into(),
            message: message.into(),
        }
    }

    pub(crate) fn overlay(key: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError::OverlayMismatch {
            key: key.into(),
            message: message.into(),
        }
    }
}
