//! The built-in baselines from the command line: bad input, every learner end to end, determinism.

mod util;

use util::{SYNTHETIC_SPEC, synaptogen, write_spec};

/// Every built-in learner, as `--learner` spells it.
const ALL: [&str; 11] = synaptogen::spec::LEARNER_NAMES;

/// Runs `synaptogen run` on the synthetic spec with extra flags in `dir`; returns (status, stdout, stderr).
fn run_in(dir: &std::path::Path, spec: &str, flags: &[&str]) -> (i32, String, String) {
    let path = write_spec(dir, spec);
    let out = synaptogen(dir)
        .arg("run")
        .arg(&path)
        .args(["--out", "out", "-q"])
        .args(flags)
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_input_error(spec: &str, flags: &[&str], fragment: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, _, stderr) = run_in(dir.path(), spec, flags);
    assert_eq!(code, 2, "{flags:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one clear line: {stderr}");
    assert!(
        stderr.contains(fragment),
        "{flags:?}: expected {fragment:?} in {stderr}"
    );
}

#[test]
fn an_unknown_learner_lists_the_known_ones_and_suggests_the_nearest() {
    check_input_error(
        SYNTHETIC_SPEC,
        &["--learner", "cbq"],
        "unknown learner 'cbq' (did you mean 'cbp'?)",
    );
    check_input_error(
        SYNTHETIC_SPEC,
        &["--learner", "adam"],
        &format!("known learners: {}", ALL.join(", ")),
    );
    check_input_error(
        &SYNTHETIC_SPEC.replace("Sgd(lr: 0.3)", "Adam(lr: 0.3)"),
        &[],
        "Unexpected variant named `Adam` in enum `LearnerSpec`, expected one of `Sgd`",
    );
}

#[test]
fn out_of_range_and_missing_parameters_are_named() {
    for (learner, fragment) in [
        ("L2(lr: -0.1)", "learner.lr: must be a finite number above 0"),
        (
            "Cbp(lr: 0.05, replacement_rate: 1.0)",
            "learner.replacement_rate: must be below 1",
        ),
        (
            "Cbp(lr: 0.05, replacement_rate: -0.1)",
            "learner.replacement_rate: must be zero or positive",
        ),
        (
            "Mesu(sigma_prior: 0.0)",
            "learner.sigma_prior: must be a finite number above 0",
        ),
        ("Mesu(samples: 0)", "learner.samples: must be at least 1"),
        (
            "EwcOnline(lr: 0.1, gamma: 2.0)",
            "learner.gamma: must be in [0, 1]",
        ),
        ("Redo(lr: 0.1, period: 0)", "learner.period: must be at least 1"),
        (
            "ShrinkPerturb(lr: 0.1, noise_std: -1.0)",
            "learner.noise_std: must be zero or positive",
        ),
        ("Cbp(maturity: 5)", "missing field named `lr` in `Cbp`"),
        ("Cbp(lr: 0.05, maturty: 5)", "Unexpected field named `maturty`"),
    ] {
        check_input_error(SYNTHETIC_SPEC, &["--learner", learner], fragment);
    }
    // The same checks apply to the spec's own learner section, located in the spec file.
    check_input_error(
        &SYNTHETIC_SPEC.replace("Sgd(lr: 0.3)", "Mesu(samples: 0)"),
        &[],
        "spec.ron: learner.samples: must be at least 1",
    );
}

#[test]
fn a_method_that_needs_boundaries_is_refused_on_a_stream_that_hides_them() {
    let hidden = SYNTHETIC_SPEC.replace("probe_size: 50,", "probe_size: 50, boundaries: Hidden,");
    for learner in ["si", "ewc_online", "shrink_perturb_task"] {
        check_input_error(
            &hidden,
            &["--learner", learner],
            &format!("{learner} needs task boundaries"),
        );
    }
    // Task-free methods run on it.
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, _, stderr) = run_in(
        dir.path(),
        &hidden,
        &["--learner", "ewc_stream", "--learner", "mesu"],
    );
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn every_learner_runs_in_ann_mode() {
    let mut flags: Vec<&str> = ALL.iter().flat_map(|name| ["--learner", name]).collect();
    flags.extend(["--tasks", "2"]);
    let spec = SYNTHETIC_SPEC
        .replace("hidden: [64]", "mode: Ann, hidden: [64], init: KaimingUniform")
        .replace("lr: 0.3", "lr: 0.02");
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, _, stderr) = run_in(dir.path(), &spec, &flags);
    assert_eq!(code, 0, "{stderr}");
    let comparison = std::fs::read_to_string(dir.path().join("out/comparison.csv")).expect("written");
    let objective_column = comparison
        .lines()
        .next()
        .and_then(|header| header.split(',').position(|c| c == "objective"))
        .expect("an objective column");
    for name in ALL {
        let row = comparison
            .lines()
            .find(|l| l.starts_with(&format!("{name},")))
            .expect("one row each");
        assert!(row.contains(",completed,"), "{row}");
        let objective: f64 = row
            .split(',')
            .nth(objective_column)
            .and_then(|v| v.parse().ok())
            .expect("an objective");
        assert!(objective > 0.2, "{name} learns in ANN mode: {row}");
    }
}

/// tasks.csv without the timing column, for comparing runs.
fn metrics_without_timing(dir: &std::path::Path, learner: &str) -> String {
    let csv = std::fs::read_to_string(dir.join("out").join(learner).join("tasks.csv")).expect("written");
    csv.lines()
        .map(|line| line.rsplit_once(',').map_or(line, |(head, _)| head).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_learner_runs_and_is_deterministic_per_seed() {
    let mut flags: Vec<&str> = ALL.iter().flat_map(|name| ["--learner", name]).collect();
    flags.extend(["--tasks", "2"]);
    let spec = SYNTHETIC_SPEC.replace("lr: 0.3", "lr: 0.1");
    let runs: Vec<tempfile::TempDir> = [("0", "1"), ("0", "2"), ("7", "1")]
        .iter()
        .map(|(seed, threads)| {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut f = flags.clone();
            f.extend(["--seed", seed, "--threads", threads]);
            let (code, stdout, stderr) = run_in(dir.path(), &spec, &f);
            assert_eq!(code, 0, "{stderr}");
            for name in ALL {
                assert!(stdout.contains(name), "{name} in the comparison:\n{stdout}");
            }
            dir
        })
        .collect();
    // With --out, the report goes under it, never into the working directory's reports/.
    for run in &runs {
        assert!(
            run.path().join("out/report/report.html").is_file(),
            "the report under --out"
        );
        assert!(!run.path().join("reports").exists(), "nothing outside --out");
    }
    let comparison = std::fs::read_to_string(runs[0].path().join("out/comparison.csv")).expect("written");
    assert_eq!(comparison.lines().count(), 1 + ALL.len());
    for name in ALL {
        let row = comparison
            .lines()
            .find(|l| l.starts_with(&format!("{name},")))
            .expect("one row each");
        assert!(row.contains(",completed,"), "{row}");
        let same = metrics_without_timing(runs[0].path(), name);
        assert_eq!(
            same,
            metrics_without_timing(runs[1].path(), name),
            "{name}: 1 vs 2 threads"
        );
        assert_ne!(
            same,
            metrics_without_timing(runs[2].path(), name),
            "{name}: seed 0 vs 7"
        );
    }
}
