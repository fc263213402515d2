//! Secrets: resolving a [`SecretRef`] to a [`Secret`] value, from a directory laid out like a
//! secret manager (`<dir>/<secret>/<version>`) or from an environment variable (`env:VAR`).
//!
//! This module owns the only code that reads secret values. A [`Secret`] never prints its value
//! (Debug and Display are redacted) and every [`SecretError`] names the reference (secret and
//! version), never the value. Values are read on every call, so a new version written under
//! `latest` is picked up without a restart; callers that need a value per request may cache it.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;
use zeroize::Zeroizing;

pub use crate::connections::model::SecretRef;

/// Prefix of secret names that resolve to an environment variable.
pub const ENV_PREFIX: &str = "env:";

/// The version name that means "the highest version present".
pub const LATEST: &str = "latest";

/// Largest secret file read, in bytes: API keys and passwords are short, so anything larger is a
/// mistake (a wrong path), not a secret.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// A secret value. Debug and Display print `***`; [`Secret::expose`] gives the value to the one
/// place that needs it (an `Authorization` header, a proxy credential). The memory is wiped on drop.
#[derive(Clone)]
pub struct Secret(Arc<Zeroizing<String>>);

impl Secret {
    /// Wraps a value. Prefer [`SecretResolver::resolve`]; this exists for values generated at run
    /// time (the sandbox's own key) and for tests.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::new(Zeroizing::new(value.into())))
    }

    /// The value. Never log or format it.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// Compares with `other` in time independent of where the first difference is, for checking
    /// presented credentials (bearer tokens) against configured ones.
    pub fn constant_time_eq(&self, other: &[u8]) -> bool {
        let mine = self.expose().as_bytes();
        if mine.len() != other.len() {
            return false;
        }
        mine.iter()
            .zip(other)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why a secret reference did not resolve. Each variant names the reference, never a value.
#[derive(Debug, Error)]
pub enum SecretError {
    #[error(
        "secret `{secret}`: invalid secret name (use letters, digits, `_`, `.` and `-`, not starting with `.`; or `env:VAR`)"
    )]
    BadName { secret: String },
    #[error(
        "secret `{secret}` version `{version}`: invalid version (use `latest` or a version number)"
    )]
    BadVersion { secret: String, version: String },
    #[error(
        "secret `{secret}` version `{version}`: environment secrets only have the version `latest`"
    )]
    EnvVersion { secret: String, version: String },
    #[error("secret `{secret}`: environment variable `{var}` is not set")]
    EnvMissing { secret: String, var: String },
    #[error("secret `{secret}`: environment variable `{var}` is not valid UTF-8")]
    EnvNotUnicode { secret: String, var: String },
    #[error(
        "secret `{secret}` version `{version}`: no secret directory is configured (`secrets.dir`)"
    )]
    NoSecretDir { secret: String, version: String },
    #[error("secret `{secret}`: not found in the secret directory `{}`", dir.display())]
    NotFound { secret: String, dir: PathBuf },
    #[error("secret `{secret}` version `{version}`: version not found")]
    VersionNotFound { secret: String, version: String },
    #[error("secret `{secret}` version `latest`: the secret has no versions")]
    NoVersions { secret: String },
    #[error("secret `{secret}` version `{version}`: cannot read `{}`: {source}", path.display())]
    Unreadable {
        secret: String,
        version: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret `{secret}` version `{version}`: larger than {MAX_SECRET_BYTES} bytes")]
    TooLarge { secret: String, version: String },
    #[error("secret `{secret}` version `{version}`: not valid UTF-8")]
    NotUnicode { secret: String, version: String },
    #[error("secret `{secret}` version `{version}`: the value is empty")]
    Empty { secret: String, version: String },
}

impl SecretError {
    /// An UPPER_SNAKE reason for error details and validation violations.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadName { .. } => "INVALID_SECRET_NAME",
            Self::BadVersion { .. } | Self::EnvVersion { .. } => "INVALID_SECRET_VERSION",
            Self::EnvMissing { .. } | Self::NotFound { .. } | Self::NoSecretDir { .. } => {
                "SECRET_NOT_FOUND"
            }
            Self::VersionNotFound { .. } | Self::NoVersions { .. } => "SECRET_VERSION_NOT_FOUND",
            Self::Unreadable { .. } | Self::TooLarge { .. } => "SECRET_UNREADABLE",
            Self::NotUnicode { .. } | Self::EnvNotUnicode { .. } => "SECRET_NOT_UNICODE",
            Self::Empty { .. } => "SECRET_EMPTY",
        }
    }

    /// True when the reference itself is malformed (as opposed to pointing at nothing).
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            Self::BadName { .. } | Self::BadVersion { .. } | Self::EnvVersion { .. }
        )
    }
}

/// Where `env:` secrets come from.
#[derive(Clone, Default)]
enum EnvSource {
    #[default]
    Process,
    Fixed(Arc<HashMap<String, String>>),
}

/// Resolves secret references. Cheap to clone.
#[derive(Clone, Default)]
pub struct SecretResolver {
    dir: Option<PathBuf>,
    env: EnvSource,
}

impl fmt::Debug for SecretResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env = match &self.env {
            EnvSource::Process => "process",
            EnvSource::Fixed(_) => "fixed",
        };
        f.debug_struct("SecretResolver")
            .field("dir", &self.dir)
            .field("env", &env)
            .finish()
    }
}

impl SecretResolver {
    /// A resolver over an optional secret directory; `env:` secrets come from the process
    /// environment.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            env: EnvSource::Process,
        }
    }

    /// A resolver whose `env:` secrets come from `vars` instead of the process environment
    /// (for tests and embedding).
    pub fn with_env(dir: Option<PathBuf>, vars: HashMap<String, String>) -> Self {
        Self {
            dir,
            env: EnvSource::Fixed(Arc::new(vars)),
        }
    }

    /// The secret directory, when one is configured.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Checks the shape of a reference without reading anything.
    pub fn check_ref(reference: &SecretRef) -> Result<(), SecretError> {
        parse_ref(reference).map(|_| ())
    }

    /// Resolves a reference to its value.
    pub fn resolve(&self, reference: &SecretRef) -> Result<Secret, SecretError> {
        match parse_ref(reference)? {
            Parsed::Env(var) => self.resolve_env(&reference.secret, var),
            Parsed::File { name, version } => self.resolve_file(name, version),
        }
    }

    fn resolve_env(&self, secret: &str, var: &str) -> Result<Secret, SecretError> {
        let value = match &self.env {
            EnvSource::Process => match std::env::var(var) {
                Ok(value) => value,
                Err(std::env::VarError::NotPresent) => {
                    return Err(SecretError::EnvMissing {
                        secret: secret.to_owned(),
                        var: var.to_owned(),
                    });
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(SecretError::EnvNotUnicode {
                        secret: secret.to_owned(),
                        var: var.to_owned(),
                    });
                }
            },
            EnvSource::Fixed(vars) => {
                vars.get(var)
                    .cloned()
                    .ok_or_else(|| SecretError::EnvMissing {
                        secret: secret.to_owned(),
                        var: var.to_owned(),
                    })?
            }
        };
        finish(Zeroizing::new(value), secret, LATEST)
    }

    fn resolve_file(&self, name: &str, version: Version<'_>) -> Result<Secret, SecretError> {
        let version_name = match version {
            Version::Latest => LATEST,
            Version::Number(v) => v,
        };
        let Some(dir) = &self.dir else {
            return Err(SecretError::NoSecretDir {
                secret: name.to_owned(),
                version: version_name.to_owned(),
            });
        };
        let secret_dir = dir.join(name);
        if !secret_dir.is_dir() {
            return Err(SecretError::NotFound {
                secret: name.to_owned(),
                dir: dir.clone(),
            });
        }
        let file_name = match version {
            Version::Number(v) => v.to_owned(),
            Version::Latest => latest_version(&secret_dir, name)?,
        };
        let path = secret_dir.join(&file_name);
        if !path.is_file() {
            return Err(SecretError::VersionNotFound {
                secret: name.to_owned(),
                version: file_name,
            });
        }
        let value = read_limited(&path, name, &file_name)?;
        finish(value, name, &file_name)
    }
}

/// The highest numeric version in `secret_dir`, or the file named `latest` when there is none.
fn latest_version(secret_dir: &Path, name: &str) -> Result<String, SecretError> {
    let unreadable = |source| SecretError::Unreadable {
        secret: name.to_owned(),
        version: LATEST.to_owned(),
        path: secret_dir.to_owned(),
        source,
    };
    let mut best: Option<(u128, String)> = None;
    let mut has_latest_file = false;
    for entry in std::fs::read_dir(secret_dir).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let Ok(file_name) = entry.file_name().into_string() else {
            continue;
        };
        if file_name == LATEST {
            has_latest_file = true;
            continue;
        }
        if !is_version_number(&file_name) || !entry.path().is_file() {
            continue;
        }
        let Ok(number) = file_name.parse::<u128>() else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| number > *b) {
            best = Some((number, file_name));
        }
    }
    match best {
        Some((_, file_name)) => Ok(file_name),
        None if has_latest_file => Ok(LATEST.to_owned()),
        None => Err(SecretError::NoVersions {
            secret: name.to_owned(),
        }),
    }
}

fn read_limited(
    path: &Path,
    secret: &str,
    version: &str,
) -> Result<Zeroizing<String>, SecretError> {
    let unreadable = |source| SecretError::Unreadable {
        secret: secret.to_owned(),
        version: version.to_owned(),
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(SecretError::TooLarge {
            secret: secret.to_owned(),
            version: version.to_owned(),
        });
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(_) => Err(SecretError::NotUnicode {
            secret: secret.to_owned(),
            version: version.to_owned(),
        }),
    }
}

fn finish(
    mut value: Zeroizing<String>,
    secret: &str,
    version: &str,
) -> Result<Secret, SecretError> {
    let trimmed_len = value.trim_end_matches(['\n', '\r']).len();
    value.truncate(trimmed_len);
    if value.is_empty() {
        return Err(SecretError::Empty {
            secret: secret.to_owned(),
            version: version.to_owned(),
        });
    }
    Ok(Secret(Arc::new(value)))
}

enum Version<'a> {
    Latest,
    Number(&'a str),
}

enum Parsed<'a> {
    Env(&'a str),
    File { name: &'a str, version: Version<'a> },
}

fn parse_ref(reference: &SecretRef) -> Result<Parsed<'_>, SecretError> {
    let secret = reference.secret.as_str();
    let version = reference.version.as_str();
    if let Some(var) = secret.strip_prefix(ENV_PREFIX) {
        if !is_env_var_name(var) {
            return Err(SecretError::BadName {
                secret: secret.to_owned(),
            });
        }
        if version != LATEST {
            return Err(SecretError::EnvVersion {
                secret: secret.to_owned(),
                version: version.to_owned(),
            });
        }
        return Ok(Parsed::Env(var));
    }
    if !is_secret_name(secret) {
        return Err(SecretError::BadName {
            secret: secret.to_owned(),
        });
    }
    let version = if version == LATEST {
        Version::Latest
    } else if is_version_number(version) {
        Version::Number(version)
    } else {
        return Err(SecretError::BadVersion {
            secret: secret.to_owned(),
            version: version.to_owned(),
        });
    };
    Ok(Parsed::File {
        name: secret,
        version,
    })
}

/// `[A-Za-z0-9_.-]+`, not starting with `.` (which also rules out `.` and `..`), at most 255 bytes.
fn is_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn is_version_number(version: &str) -> bool {
    !version.is_empty() && version.len() <= 20 && version.bytes().all(|b| b.is_ascii_digit())
}

fn is_env_var_name(var: &str) -> bool {
    let mut bytes = var.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests;
