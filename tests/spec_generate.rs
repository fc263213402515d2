//! Regenerating the Stripe spec from Stripe's OpenAPI description reproduces the committed files.
//!
//! Needs `../shared/stripe-openapi/spec3.json` (beside the crate); skipped with a note when absent,
//! failed under `CI`.
//! `CONNECTOR_SPEC_BLESS=1 cargo test --test spec_generate` rewrites the committed files instead.

use std::path::{Path, PathBuf};

use connector_runtime::spec::{OVERLAY_FILE, generate, write_spec};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn openapi_path() -> Option<PathBuf> {
    let path = crate_dir().join("../shared/stripe-openapi/spec3.json");
    path.exists().then_some(path)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for sub in ["", "entities", "actions"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == "json") {
                files.push(path.strip_prefix(dir).unwrap().to_owned());
            }
        }
    }
    files.sort();
    files
}

#[test]
fn regenerating_reproduces_the_committed_spec() {
    let Some(openapi) = openapi_path() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have ../shared/stripe-openapi/spec3.json beside the clone"
        );
        println!("skipped: ../shared/stripe-openapi/spec3.json not found");
        return;
    };
    let committed = crate_dir().join("connector-spec/stripe");
    let spec = generate(&openapi, &committed.join(OVERLAY_FILE)).unwrap();

    if std::env::var_os("CONNECTOR_SPEC_BLESS").is_some() {
        write_spec(&spec, &committed).unwrap();
        println!("rewrote {}", committed.display());
        return;
    }

    let fresh = tempfile::tempdir().unwrap();
    write_spec(&spec, fresh.path()).unwrap();
    let expected = files_under(fresh.path());
    assert_eq!(
        files_under(&committed),
        expected,
        "set of spec files differs"
    );
    for file in expected {
        let want = std::fs::read_to_string(fresh.path().join(&file)).unwrap();
        let have = std::fs::read_to_string(committed.join(&file)).unwrap();
        assert!(
            want == have,
            "{} differs from a fresh generation",
            file.display()
        );
    }
}
