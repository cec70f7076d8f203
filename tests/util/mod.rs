//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A small spec on the built-in synthetic dataset: three tasks in well under a second.
pub const SYNTHETIC_SPEC: &str = r#"// Test spec: synthetic data, tiny network.
(
    benchmark: (
        dataset: Synthetic,
        tasks: 3,
        pool: 2,
        train_per_task: 200,
        test_per_task: 100,
        protocol: Minibatch(batch: 10, epochs: 3),
        retention_sample: 4,
        probe_size: 50,
    ),
    network: (hidden: [64], time_steps: 4, threshold: 1.0),
    learner: Sgd(lr: 0.3),
)
"#;

/// Writes `text` as `spec.ron` in `dir`.
pub fn write_spec(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("spec.ron");
    std::fs::write(&path, text).expect("temp dir is writable");
    path
}

/// The binary, run from `cwd` with no dataset environment leaking in from the developer's shell.
pub fn synaptogen(cwd: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin!("synaptogen"));
    cmd.current_dir(cwd).env_remove("SYNAPTOGEN_DATA");
    cmd
}

/// The repository root (for the shipped specs and the fetched data).
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}
