//! Every dependency a workspace member declares is used by its code (a `cargo machete`-style
//! check, so an unused dependency cannot creep back): the crate's name, as a Rust path
//! (`-` → `_`), appears in a `.rs` file of the member.

use std::path::{Path, PathBuf};

/// Declared but reached only through a feature or a proc macro, with why.
const USED_WITHOUT_NAMING: &[(&str, &str, &str)] = &[];

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `ident` as a whole word somewhere in `text`.
fn mentions(text: &str, ident: &str) -> bool {
    text.match_indices(ident).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + ident.len()..].chars().next();
        !before.is_some_and(is_ident_char) && !after.is_some_and(is_ident_char)
    })
}

#[test]
fn every_declared_dependency_is_used() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut unused = Vec::new();
    for member in ["proxy", "promoter", "e2e", "benches"] {
        let dir = root.join(member);
        let manifest: toml::Table = std::fs::read_to_string(dir.join("Cargo.toml"))
            .expect("Cargo.toml")
            .parse()
            .expect("valid TOML");
        let mut files = Vec::new();
        rust_sources(&dir, &mut files);
        let code: String = files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
            let Some(deps) = manifest.get(section).and_then(toml::Value::as_table) else {
                continue;
            };
            for name in deps.keys() {
                if USED_WITHOUT_NAMING
                    .iter()
                    .any(|(m, d, _)| *m == member && d == name)
                {
                    continue;
                }
                if !mentions(&code, &name.replace('-', "_")) {
                    unused.push(format!("{member} [{section}] {name}"));
                }
            }
        }
    }
    assert!(
        unused.is_empty(),
        "declared but never used (remove them, or list them in USED_WITHOUT_NAMING with why): {unused:#?}"
    );
}

#[test]
fn the_check_sees_a_word_not_a_substring() {
    assert!(mentions("use tokio::net;", "tokio"));
    assert!(!mentions("use tokio_util::sync;", "tokio"));
    assert!(!mentions("let hyperlink = 1;", "hyper"));
}
