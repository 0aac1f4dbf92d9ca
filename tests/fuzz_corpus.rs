//! Replays every saved fuzz input (`fuzz/corpus/<target>/`) and crash reproducer
//! (`fuzz/regressions/<target>/`) through the fuzz targets on stable Rust, so what the
//! fuzzer once found stays fixed without cargo-fuzz or nightly (docs/fuzzing.md).

use std::path::{Path, PathBuf};

use terminus::fuzzing;

/// The files of `fuzz/<kind>/<target>/`, sorted; none when the folder does not exist.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `target` on each input, naming the file that panics.
fn replay(target: &str, run: fn(&[u8])) {
    let corpus = inputs("corpus", target);
    assert!(!corpus.is_empty(), "fuzz/corpus/{target} is empty");
    for file in corpus.iter().chain(&inputs("regressions", target)) {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target} panics on {}", file.display());
    }
}

#[test]
fn config() {
    replay("config", fuzzing::config);
}

#[test]
fn proxy_header() {
    replay("proxy_header", fuzzing::proxy_header);
}

#[test]
fn client_hello() {
    replay("client_hello", fuzzing::client_hello);
}

#[test]
fn sticky_cookie() {
    replay("sticky_cookie", fuzzing::sticky_cookie);
}

#[test]
fn rewrite() {
    replay("rewrite", fuzzing::rewrite);
}

#[test]
fn raw_framing() {
    replay("raw_framing", fuzzing::raw_framing);
}
