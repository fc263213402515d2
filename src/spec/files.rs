//! The on-disk layout of a connector spec, and reading and writing it.
//!
//! `connector.json` (metadata), `entities/<Name>.json`, `actions/<Name>.json`: pretty JSON with a
//! trailing newline, one file per entity type or action, so regeneration reproduces the committed
//! files byte for byte and reviews show small diffs. Other files (the overlay) are left alone.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use include_dir::{Dir, include_dir};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::SpecError;
use super::model::{ActionSpec, ConnectorMeta, ConnectorSpec, EntitySpec, SchemaPool};
use super::validate::validate;

pub const CONNECTOR_FILE: &str = "connector.json";
/// The overlay's file name inside a spec directory; `spec generate` reads it by default.
pub const OVERLAY_FILE: &str = "overlay.toml";
pub const ENTITIES_DIR: &str = "entities";
pub const ACTIONS_DIR: &str = "actions";
/// Stripe's operation descriptions by operation id; optional.
pub const DESCRIPTIONS_FILE: &str = "descriptions.json";

/// Where the embedded Stripe spec comes from, as errors name it.
pub const STRIPE_SPEC_DIR: &str = "connector-spec/stripe";

static STRIPE_FILES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/connector-spec/stripe");
static STRIPE_SPEC: OnceLock<Arc<ConnectorSpec>> = OnceLock::new();

/// The Stripe connector spec compiled into the binary (`connector-spec/stripe/`), loaded and
/// validated on first use.
pub fn stripe() -> Result<&'static ConnectorSpec, SpecError> {
    Ok(stripe_shared_ref()?.as_ref())
}

/// The same embedded spec as a shared handle, so the engine and the sandbox use one copy.
pub fn stripe_shared() -> Result<Arc<ConnectorSpec>, SpecError> {
    stripe_shared_ref().cloned()
}

fn stripe_shared_ref() -> Result<&'static Arc<ConnectorSpec>, SpecError> {
    if let Some(spec) = STRIPE_SPEC.get() {
        return Ok(spec);
    }
    let spec = load(&Embedded(&STRIPE_FILES), STRIPE_SPEC_DIR)?;
    Ok(STRIPE_SPEC.get_or_init(|| Arc::new(spec)))
}

/// Loads and validates the connector spec in `dir`.
pub fn load_dir(dir: &Path) -> Result<ConnectorSpec, SpecError> {
    load(&OnDisk(dir), &dir.display().to_string())
}

/// Writes `spec` into `out_dir` in the committed layout, replacing stale entity and action files.
pub fn write_spec(spec: &ConnectorSpec, out_dir: &Path) -> Result<(), SpecError> {
    let entities_dir = out_dir.join(ENTITIES_DIR);
    let actions_dir = out_dir.join(ACTIONS_DIR);
    for dir in [out_dir, &entities_dir, &actions_dir] {
        std::fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
    }
    write_json(&out_dir.join(CONNECTOR_FILE), &spec.connector)?;
    let entity_files: Vec<String> = spec.entities.iter().map(|e| json_file(&e.name)).collect();
    let action_files: Vec<String> = spec.actions.iter().map(|a| json_file(&a.name)).collect();
    remove_stale(&entities_dir, &entity_files)?;
    remove_stale(&actions_dir, &action_files)?;
    for (entity, file) in spec.entities.iter().zip(&entity_files) {
        write_json(&entities_dir.join(file), entity)?;
    }
    for (action, file) in spec.actions.iter().zip(&action_files) {
        write_json(&actions_dir.join(file), action)?;
    }
    if !spec.descriptions.is_empty() {
        write_json(&out_dir.join(DESCRIPTIONS_FILE), &spec.descriptions)?;
    }
    Ok(())
}

/// Objects and arrays whose one-line form fits in this many columns stay on one line.
const LINE_WIDTH: usize = 100;

/// The exact text written for one spec file: JSON with two-space indent, trailing newline, and
/// objects or arrays that fit in [`LINE_WIDTH`] columns (and lists of plain values) on one line,
/// so that enums and small schemas do not take a line per word.
pub fn to_file_text<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let value = serde_json::to_value(value)?;
    let mut text = String::new();
    render(&value, 0, 0, &mut text)?;
    text.push('\n');
    Ok(text)
}

fn one_line(value: &Value) -> Result<String, serde_json::Error> {
    match value {
        Value::Array(items) => {
            let items: Result<Vec<String>, _> = items.iter().map(one_line).collect();
            Ok(format!("[{}]", items?.join(", ")))
        }
        Value::Object(map) => {
            let entries: Result<Vec<String>, serde_json::Error> = map
                .iter()
                .map(|(key, value)| {
                    Ok(format!(
                        "{}: {}",
                        serde_json::to_string(key)?,
                        one_line(value)?
                    ))
                })
                .collect();
            Ok(format!("{{{}}}", entries?.join(", ")))
        }
        scalar => serde_json::to_string(scalar),
    }
}

/// Writes `value` at nesting level `indent`, after `lead` characters already on its line.
fn render(
    value: &Value,
    indent: usize,
    lead: usize,
    out: &mut String,
) -> Result<(), serde_json::Error> {
    let flat = one_line(value)?;
    let plain_list = matches!(value, Value::Array(items) if items.iter().all(|item| !item.is_array() && !item.is_object()));
    if lead + flat.len() <= LINE_WIDTH || plain_list || flat.len() <= 2 {
        out.push_str(&flat);
        return Ok(());
    }
    let pad = "  ".repeat(indent + 1);
    match value {
        Value::Array(items) => {
            out.push_str("[\n");
            for (index, item) in items.iter().enumerate() {
                out.push_str(&pad);
                render(item, indent + 1, pad.len(), out)?;
                out.push_str(if index + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&"  ".repeat(indent));
            out.push(']');
        }
        Value::Object(map) => {
            out.push_str("{\n");
            for (index, (key, item)) in map.iter().enumerate() {
                let key = serde_json::to_string(key)?;
                out.push_str(&pad);
                out.push_str(&key);
                out.push_str(": ");
                render(item, indent + 1, pad.len() + key.len() + 2, out)?;
                out.push_str(if index + 1 < map.len() { ",\n" } else { "\n" });
            }
            out.push_str(&"  ".repeat(indent));
            out.push('}');
        }
        _ => out.push_str(&flat),
    }
    Ok(())
}

fn json_file(name: &str) -> String {
    format!("{name}.json")
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), SpecError> {
    let text = to_file_text(value).map_err(|error| SpecError::Parse {
        file: path.display().to_string(),
        path: String::new(),
        message: error.to_string(),
    })?;
    std::fs::write(path, text).map_err(|source| io_error(path, source))
}

fn remove_stale(dir: &Path, keep: &[String]) -> Result<(), SpecError> {
    let entries = std::fs::read_dir(dir).map_err(|source| io_error(dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| io_error(dir, source))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && !keep.contains(&name) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|source| io_error(&path, source))?;
        }
    }
    Ok(())
}

fn io_error(path: &Path, source: std::io::Error) -> SpecError {
    SpecError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A source of spec files: a directory on disk or the copy compiled into the binary.
trait SpecFiles {
    /// The text of the file at `relative` (`entities/Customer.json`).
    fn read(&self, relative: &str) -> Result<String, SpecError>;
    /// The `.json` file names in the subdirectory `dir`, sorted.
    fn json_files(&self, dir: &str) -> Result<Vec<String>, SpecError>;
    /// Whether the file at `relative` exists.
    fn exists(&self, relative: &str) -> bool;
}

struct OnDisk<'a>(&'a Path);

impl SpecFiles for OnDisk<'_> {
    fn exists(&self, relative: &str) -> bool {
        self.0.join(relative).is_file()
    }

    fn read(&self, relative: &str) -> Result<String, SpecError> {
        let path = self.0.join(relative);
        std::fs::read_to_string(&path).map_err(|source| io_error(&path, source))
    }

    fn json_files(&self, dir: &str) -> Result<Vec<String>, SpecError> {
        let path: PathBuf = self.0.join(dir);
        let entries = match std::fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(io_error(&path, source)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| io_error(&path, source))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

struct Embedded<'a>(&'a Dir<'a>);

impl SpecFiles for Embedded<'_> {
    fn exists(&self, relative: &str) -> bool {
        self.0.get_file(relative).is_some()
    }

    fn read(&self, relative: &str) -> Result<String, SpecError> {
        let missing = || SpecError::Io {
            path: Path::new(STRIPE_SPEC_DIR).join(relative),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not in the embedded spec (or not UTF-8)",
            ),
        };
        self.0
            .get_file(relative)
            .and_then(|file| file.contents_utf8())
            .map(str::to_owned)
            .ok_or_else(missing)
    }

    fn json_files(&self, dir: &str) -> Result<Vec<String>, SpecError> {
        let mut names: Vec<String> = self
            .0
            .get_dir(dir)
            .into_iter()
            .flat_map(|dir| dir.files())
            .filter_map(|file| file.path().file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".json"))
            .collect();
        names.sort();
        Ok(names)
    }
}

fn parse<T: DeserializeOwned>(
    files: &dyn SpecFiles,
    root: &str,
    relative: &str,
) -> Result<T, SpecError> {
    let text = files.read(relative)?;
    let deserializer = &mut serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        SpecError::Parse {
            file: format!("{root}/{relative}"),
            path: if path == "." {
                "(root)".to_owned()
            } else {
                path
            },
            message: error.into_inner().to_string(),
        }
    })
}

fn load(files: &dyn SpecFiles, root: &str) -> Result<ConnectorSpec, SpecError> {
    let connector: ConnectorMeta = parse(files, root, CONNECTOR_FILE)?;
    // Equal schemas are shared as each file is read, so repeats never pile up.
    let mut schemas = SchemaPool::default();
    let mut entities = Vec::new();
    for name in files.json_files(ENTITIES_DIR)? {
        let relative = format!("{ENTITIES_DIR}/{name}");
        let mut entity: EntitySpec = parse(files, root, &relative)?;
        check_file_name(root, &relative, &name, &entity.name)?;
        schemas.share_entity(&mut entity);
        entities.push(entity);
    }
    let mut actions = Vec::new();
    for name in files.json_files(ACTIONS_DIR)? {
        let relative = format!("{ACTIONS_DIR}/{name}");
        let mut action: ActionSpec = parse(files, root, &relative)?;
        check_file_name(root, &relative, &name, &action.name)?;
        schemas.share_action(&mut action);
        actions.push(action);
    }
    drop(schemas);
    let descriptions = if files.exists(DESCRIPTIONS_FILE) {
        parse(files, root, DESCRIPTIONS_FILE)?
    } else {
        Default::default()
    };
    let spec = ConnectorSpec {
        connector,
        entities,
        actions,
        descriptions,
    };
    validate(&spec, root)?;
    Ok(spec)
}

fn check_file_name(
    root: &str,
    relative: &str,
    file_name: &str,
    name: &str,
) -> Result<(), SpecError> {
    if file_name == json_file(name) {
        Ok(())
    } else {
        Err(SpecError::invalid(
            &format!("{root}/{relative}"),
            "name",
            format!("\"{name}\" does not match the file name"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn short_values_stay_on_one_line_and_long_ones_break() {
        let value = json!({
            "name": "Id",
            "json_schema": {"type": "string"},
            "enum": ["a_long_value_number_one", "a_long_value_number_two", "a_long_value_number_three", "four"],
            "nested": [{"name": "x", "text": "a value long enough to push this object past the line width limit"}]
        });
        let text = to_file_text(&value).unwrap();
        let expected = r#"{
  "name": "Id",
  "json_schema": {"type": "string"},
  "enum": ["a_long_value_number_one", "a_long_value_number_two", "a_long_value_number_three", "four"],
  "nested": [
    {"name": "x", "text": "a value long enough to push this object past the line width limit"}
  ]
}
"#;
        assert_eq!(text, expected);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
    }

    #[test]
    fn written_specs_load_back_unchanged() {
        let spec = stripe().unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_spec(spec, dir.path()).unwrap();
        assert_eq!(&load_dir(dir.path()).unwrap(), spec);
    }

    #[test]
    fn writing_removes_stale_files_but_keeps_the_overlay() {
        let spec = stripe().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(ENTITIES_DIR)).unwrap();
        std::fs::write(dir.path().join("entities/Gone.json"), "{}").unwrap();
        std::fs::write(dir.path().join("overlay.toml"), "# kept").unwrap();
        write_spec(spec, dir.path()).unwrap();
        assert!(!dir.path().join("entities/Gone.json").exists());
        assert!(dir.path().join("overlay.toml").exists());
    }
}
