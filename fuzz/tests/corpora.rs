//! Every committed corpus input, replayed through its fuzz target in the
//! ordinary test suite (no fuzzing engine, no instrumentation): what a fuzz
//! run once found, fixed and kept in the corpus, stays fixed.

use std::path::Path;

/// Run `target` on every file in `fuzz/corpus/NAME`; the corpus must exist.
fn replay(name: &str, target: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(name);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display())) {
        let path = entry.expect("a corpus entry").path();
        let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        target(&bytes);
        count += 1;
    }
    assert!(count > 0, "the {name} corpus is empty");
}

#[test]
fn component_corpus() {
    replay("component", stepbox_fuzz::component);
}

#[test]
fn config_corpus() {
    replay("config", stepbox_fuzz::config);
}

#[test]
fn requirements_corpus() {
    replay("requirements", stepbox_fuzz::requirements);
}

#[test]
fn grants_corpus() {
    replay("grants", stepbox_fuzz::grants);
}

#[test]
fn egress_corpus() {
    replay("egress", stepbox_fuzz::egress);
}

#[test]
fn oci_corpus() {
    replay("oci", stepbox_fuzz::oci);
}

#[test]
fn slurm_corpus() {
    replay("slurm", stepbox_fuzz::slurm);
}

#[test]
fn ray_corpus() {
    replay("ray", stepbox_fuzz::ray);
}
