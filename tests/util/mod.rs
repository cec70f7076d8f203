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

/// A search over the synthetic dataset; `budget` evaluations.
pub fn search_spec(budget: usize) -> String {
    let rules = repo().join("rules");
    format!(
        r#"(
    name: "test-search",
    seed: 3,
    benchmark: (dataset: Synthetic, tasks: 1, train_per_task: 200, test_per_task: 100,
                protocol: Minibatch(batch: 20, epochs: 1), retention_sample: 4, probe_size: 50),
    network: (hidden: [16], time_steps: 4),
    learner: (lr: 0.1),
    seed_rules: ["{sgd}", "{bcm}"],
    baselines: [Sgd(lr: 0.1), L2Init(lr: 0.1)],
    evolution: (population: 6, tournament: 2, islands: 2, migrate_every: 2, batch: 4),
    fidelity: (rungs: [2, 4], promote: 0.3, abort_after: 1, abort_margin: 0.05),
    budget: (evaluations: {budget}),
    held_out: (finalists: 2, seeds: 1),
)
"#,
        sgd = rules.join("baselines/sgd.rhai").display(),
        bcm = rules.join("local/bcm.rhai").display(),
    )
}

/// The journal's lines in `out` with timings, the recorded command line and storage removed, sorted:
/// its content independent of completion order and of how (and by how many processes) the search ran.
pub fn journal_content(out: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(out.join("journal.jsonl")).expect("journal exists");
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("journal lines are JSON");
            // Timings differ between runs; line numbers (and so checksums) follow the order in which
            // trials finished, which depends on the threads.
            if let Some(o) = v.as_object_mut() {
                for volatile in ["seconds", "command", "storage", "line", "sum"] {
                    o.remove(volatile);
                }
            }
            v.to_string()
        })
        .collect();
    lines.sort();
    lines
}

/// The final state without its wall time.
pub fn final_state(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("state.json")).expect("state exists");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("state is JSON");
    v.as_object_mut().expect("an object").remove("elapsed");
    v
}

/// Every rule file under `rules/` and every committed `reports/*/best.rhai`, sorted.
pub fn shipped_rules() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![repo().join("rules")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("rules/ ships") {
            let path = entry.expect("readable").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rhai") {
                found.push(path);
            }
        }
    }
    for entry in std::fs::read_dir(repo().join("reports")).expect("reports/ ships") {
        let best = entry.expect("readable").path().join("best.rhai");
        if best.exists() {
            found.push(best);
        }
    }
    found.sort();
    found
}
