//! The fuzz smoke that runs with `cargo test`: every committed seed (`fuzz/seeds/<target>/*`)
//! goes through its fuzz target's body, the same code `cargo +nightly fuzz run <target>`
//! runs (fuzz/src/targets.rs, included here; the fuzz crate itself is outside the
//! workspace because it needs nightly and libFuzzer). A seed that panics fails the test
//! with the seed's path. See docs/FUZZING.md.

#[path = "../../fuzz/src/targets.rs"]
#[allow(dead_code)]
mod targets;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds")
}

/// The seed files of one target, sorted.
fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = seeds_dir().join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_committed_seed_passes_its_fuzz_target() {
    let mut failures = Vec::new();
    let mut replayed = 0;
    for (name, target) in targets::TARGETS {
        let files = seeds(name);
        assert!(
            files.len() >= 5,
            "{name}: only {} seeds in fuzz/seeds/{name}",
            files.len()
        );
        for file in files {
            let data = std::fs::read(&file).expect("seed readable");
            if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
                failures.push(file.display().to_string());
            }
            replayed += 1;
        }
    }
    assert!(failures.is_empty(), "seeds that fail: {failures:#?}");
    eprintln!(
        "replayed {replayed} seeds of {} fuzz targets",
        targets::TARGETS.len()
    );
}

#[test]
fn every_fuzz_target_has_a_seed_directory_and_a_binary() {
    let fuzz = seeds_dir().join("..");
    let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut dirs: Vec<String> = std::fs::read_dir(seeds_dir())
        .expect("fuzz/seeds")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut names: Vec<String> = targets::TARGETS
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    names.sort();
    assert_eq!(dirs, names, "fuzz/seeds/ has one directory per target");
    for name in &names {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{name} is a [[bin]] of fuzz/Cargo.toml"
        );
        assert!(
            fuzz.join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file(),
            "fuzz/fuzz_targets/{name}.rs"
        );
    }
}
