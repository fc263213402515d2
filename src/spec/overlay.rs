//! The hand-written overlay (`connector-spec/<connector>/overlay.toml`): what the OpenAPI
//! description cannot say — entity and action names, search fields, result shapes, what to leave out.
//!
//! Pure data plus [`Overlay::read`]. Keys are Stripe paths exactly as the description spells them,
//! so every entry is checked against the description by the generator (an unused key is an error).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::SpecError;
use super::model::{BodyEncoding, ParamSpec, ResultShape};

/// The whole overlay file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    pub connector: ConnectorOverlay,
    /// Collection paths left out, with everything below them (aliases, previews, deprecated copies).
    #[serde(default)]
    pub skip: Vec<String>,
    /// `/v1/test_helpers/...` collections to include (all other test helpers are left out).
    #[serde(default)]
    pub test_helpers: Vec<String>,
    /// Per entity type, keyed by its collection path (`/v1/invoices/{invoice}/lines`).
    #[serde(default)]
    pub entities: BTreeMap<String, EntityOverlay>,
    /// Per action, keyed by its operation path (`/v1/payment_methods/{payment_method}/attach`).
    #[serde(default)]
    pub actions: BTreeMap<String, ActionOverlay>,
}

/// Connector metadata that the description does not carry, and how to read the description.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorOverlay {
    pub name: String,
    pub version: String,
    pub default_base_url: String,
    /// The upstream dialect the engine speaks to this API (`stripe`), written to `connector.json`.
    pub dialect: String,
    /// The request bodies the generator reads (`form`, the default, or `json`); operations whose
    /// body travels otherwise are left out.
    #[serde(default)]
    pub body: BodyEncoding,
    /// The array property of a list response that holds the items (default `data`, Stripe's).
    #[serde(default = "default_list_items")]
    pub list_items: String,
}

fn default_list_items() -> String {
    "data".to_owned()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityOverlay {
    /// Entity type name, instead of the derived one.
    pub name: Option<String>,
    /// Id prefix, when Stripe's sample object has none or a misleading one.
    pub id_prefix: Option<String>,
    /// Fields (PascalCase) that Stripe's search query language accepts.
    #[serde(default)]
    pub search_fields: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionOverlay {
    /// Action name, instead of Verb + Object.
    pub name: Option<String>,
    /// Parameter names by Stripe name (`customer = "CustomerId"`), instead of the derived ones.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Result shape, instead of `flatten`.
    pub result: Option<ResultShape>,
    /// Parameters Stripe accepts that the description of this API version leaves out (gated
    /// features); each one says why in a comment next to it.
    #[serde(default)]
    pub extra_params: Vec<ParamSpec>,
}

impl Overlay {
    /// Reads and parses the overlay at `path`.
    pub fn read(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| SpecError::Overlay {
            file: path.display().to_string(),
            message,
        })
    }

    /// Parses overlay TOML; the error is TOML's own message with line and column.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|error| error.to_string())
    }

    /// Whether `path` lies in a skipped collection (or is one).
    pub fn skips(&self, path: &str) -> bool {
        self.skip.iter().any(|skipped| {
            path == skipped
                || path
                    .strip_prefix(skipped.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }
}
