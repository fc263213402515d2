use std::collections::HashMap;
use std::fs;

use super::*;

const VALUE: &str = "sk_test_51VerySecretValue";

fn reference(secret: &str, version: &str) -> SecretRef {
    SecretRef {
        secret: secret.to_owned(),
        version: version.to_owned(),
    }
}

fn dir_with(versions: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let secret_dir = dir.path().join("stripe-key");
    fs::create_dir(&secret_dir).unwrap();
    for (version, value) in versions {
        fs::write(secret_dir.join(version), value).unwrap();
    }
    dir
}

fn resolver(dir: &tempfile::TempDir) -> SecretResolver {
    SecretResolver::with_env(Some(dir.path().to_owned()), HashMap::new())
}

#[test]
fn resolves_numbered_version_and_trims_trailing_newline() {
    let dir = dir_with(&[("1", "old\n"), ("2", "sk_test_two\r\n")]);
    let secret = resolver(&dir)
        .resolve(&reference("stripe-key", "2"))
        .unwrap();
    assert_eq!(secret.expose(), "sk_test_two");
    let secret = resolver(&dir)
        .resolve(&reference("stripe-key", "1"))
        .unwrap();
    assert_eq!(secret.expose(), "old");
}

#[test]
fn latest_is_the_highest_numeric_version_not_the_last_in_text_order() {
    let dir = dir_with(&[
        ("2", "two"),
        ("10", "ten"),
        ("9", "nine"),
        ("notes.txt", "x"),
    ]);
    let secret = resolver(&dir)
        .resolve(&reference("stripe-key", "latest"))
        .unwrap();
    assert_eq!(secret.expose(), "ten");
}

#[test]
fn latest_falls_back_to_a_file_named_latest_when_no_numbered_version_exists() {
    let dir = dir_with(&[("latest", "from-latest-file\n")]);
    let secret = resolver(&dir)
        .resolve(&reference("stripe-key", "latest"))
        .unwrap();
    assert_eq!(secret.expose(), "from-latest-file");
}

#[test]
fn latest_on_an_empty_secret_reports_no_versions() {
    let dir = dir_with(&[]);
    let err = resolver(&dir)
        .resolve(&reference("stripe-key", "latest"))
        .unwrap_err();
    assert!(matches!(err, SecretError::NoVersions { .. }), "{err}");
    assert_eq!(err.reason(), "SECRET_VERSION_NOT_FOUND");
}

#[test]
fn missing_secret_and_missing_version_are_distinct_errors() {
    let dir = dir_with(&[("1", "one")]);
    let err = resolver(&dir)
        .resolve(&reference("other-key", "1"))
        .unwrap_err();
    assert!(matches!(err, SecretError::NotFound { .. }), "{err}");
    assert_eq!(err.reason(), "SECRET_NOT_FOUND");
    let err = resolver(&dir)
        .resolve(&reference("stripe-key", "7"))
        .unwrap_err();
    assert!(matches!(err, SecretError::VersionNotFound { .. }), "{err}");
    assert!(
        err.to_string().contains("stripe-key") && err.to_string().contains('7'),
        "{err}"
    );
}

#[test]
fn empty_value_is_rejected_after_trimming() {
    let dir = dir_with(&[("1", "\n")]);
    let err = resolver(&dir)
        .resolve(&reference("stripe-key", "1"))
        .unwrap_err();
    assert!(matches!(err, SecretError::Empty { .. }), "{err}");
}

#[test]
fn oversized_and_non_utf8_files_are_rejected() {
    let dir = dir_with(&[("1", "one")]);
    fs::write(
        dir.path().join("stripe-key/2"),
        vec![b'a'; MAX_SECRET_BYTES as usize + 1],
    )
    .unwrap();
    fs::write(dir.path().join("stripe-key/3"), [0xff, 0xfe]).unwrap();
    let r = resolver(&dir);
    assert!(matches!(
        r.resolve(&reference("stripe-key", "2")),
        Err(SecretError::TooLarge { .. })
    ));
    assert!(matches!(
        r.resolve(&reference("stripe-key", "3")),
        Err(SecretError::NotUnicode { .. })
    ));
}

#[test]
fn file_secret_without_a_secret_dir_is_reported() {
    let r = SecretResolver::with_env(None, HashMap::new());
    let err = r.resolve(&reference("stripe-key", "latest")).unwrap_err();
    assert!(matches!(err, SecretError::NoSecretDir { .. }), "{err}");
}

#[test]
fn env_secret_resolves_from_the_environment_source() {
    let vars = HashMap::from([("STRIPE_KEY".to_owned(), format!("{VALUE}\n"))]);
    let r = SecretResolver::with_env(None, vars);
    assert_eq!(
        r.resolve(&reference("env:STRIPE_KEY", "latest"))
            .unwrap()
            .expose(),
        VALUE
    );
}

#[test]
fn env_secret_missing_variable_names_the_variable() {
    let r = SecretResolver::with_env(None, HashMap::new());
    let err = r
        .resolve(&reference("env:STRIPE_KEY", "latest"))
        .unwrap_err();
    assert!(matches!(err, SecretError::EnvMissing { .. }));
    assert!(err.to_string().contains("STRIPE_KEY"), "{err}");
}

#[test]
fn env_secret_only_has_the_latest_version() {
    let vars = HashMap::from([("STRIPE_KEY".to_owned(), VALUE.to_owned())]);
    let r = SecretResolver::with_env(None, vars);
    let err = r.resolve(&reference("env:STRIPE_KEY", "1")).unwrap_err();
    assert!(matches!(err, SecretError::EnvVersion { .. }), "{err}");
}

#[test]
fn env_secret_reads_the_process_environment_by_default() {
    // PATH is set in every environment the tests run in.
    let r = SecretResolver::new(None);
    assert!(r.resolve(&reference("env:PATH", "latest")).is_ok());
}

#[test]
fn names_and_versions_that_could_escape_the_directory_are_rejected() {
    let dir = dir_with(&[("1", "one")]);
    fs::write(dir.path().join("outside"), "should never be read").unwrap();
    let r = resolver(&dir);
    for name in [
        "..",
        ".",
        "../stripe-key",
        "stripe-key/1",
        "/etc/passwd",
        "",
        ".hidden",
        "a b",
        "env:",
    ] {
        let err = r.resolve(&reference(name, "latest")).unwrap_err();
        assert!(
            matches!(err, SecretError::BadName { .. }),
            "{name:?}: {err}"
        );
        assert_eq!(err.reason(), "INVALID_SECRET_NAME");
    }
    for version in ["../../outside", "..", "1/../1", "v1", "-1", ""] {
        let err = r.resolve(&reference("stripe-key", version)).unwrap_err();
        assert!(
            matches!(err, SecretError::BadVersion { .. }),
            "{version:?}: {err}"
        );
    }
    assert!(matches!(
        r.resolve(&reference("env:A-B", "latest")),
        Err(SecretError::BadName { .. })
    ));
}

#[test]
fn a_secret_value_never_appears_in_debug_display_or_errors() {
    let secret = Secret::new(VALUE);
    assert!(!format!("{secret:?}").contains("sk_test"));
    assert!(!format!("{secret}").contains("sk_test"));

    // A value that is also a bad version name must not leak through the error either: only the
    // reference is echoed, and a value is never a reference.
    let dir = dir_with(&[("1", VALUE)]);
    let r = resolver(&dir);
    let ok = r.resolve(&reference("stripe-key", "1")).unwrap();
    assert!(!format!("{ok:?} {ok}").contains(VALUE));
    let errors = [
        r.resolve(&reference("stripe-key", "2")).unwrap_err(),
        r.resolve(&reference("missing", "latest")).unwrap_err(),
        SecretResolver::with_env(None, HashMap::new())
            .resolve(&reference("env:STRIPE_KEY", "latest"))
            .unwrap_err(),
    ];
    for err in errors {
        assert!(!err.to_string().contains(VALUE));
        assert!(!format!("{err:?}").contains(VALUE));
    }
    assert!(!format!("{r:?}").contains(VALUE));
}

#[test]
fn constant_time_eq_compares_whole_values() {
    let secret = Secret::new("token-abc");
    assert!(secret.constant_time_eq(b"token-abc"));
    assert!(!secret.constant_time_eq(b"token-abd"));
    assert!(!secret.constant_time_eq(b"token-ab"));
}
