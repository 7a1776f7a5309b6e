//! The README's "A complete Axum service" and "A complete Actix-web service" are the quickstarts'
//! sources, line for line (without their `//!` docs), so the code a reader copies is the code
//! the walk tests run. After editing a quickstart: `python3 scripts/readme-services.py`.

use std::path::Path;

#[test]
fn readme_complete_services_are_the_quickstarts_sources() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    for name in [
        "examples/quickstart/src/main.rs",
        "examples/quickstart-actix/src/main.rs",
    ] {
        let source = std::fs::read_to_string(root.join(name)).expect("source");
        let code: Vec<&str> = source
            .lines()
            .skip_while(|l| l.starts_with("//!") || l.trim().is_empty())
            .collect();
        let begin = format!("<!-- begin {name} -->\n```rust\n");
        let start = readme
            .find(&begin)
            .unwrap_or_else(|| panic!("README.md has no block {begin:?}"))
            + begin.len();
        let end = readme[start..]
            .find("\n```\n")
            .expect("the block's closing fence")
            + start;
        assert_eq!(
            readme[start..end].lines().collect::<Vec<_>>(),
            code,
            "README.md's block of {name} differs from the file: run `python3 scripts/readme-services.py`"
        );
    }
}
