//! `synaptogen check` and `synaptogen vars` as a user runs them; every diagnostic kind is snapshotted.

mod util;

use util::synaptogen;

/// Runs `synaptogen check` on `source` with Cranelift's kernels, so the snapshots do not depend on
/// whether the CPU has AVX-512; returns (status, stdout, stderr).
fn check(source: &str) -> (i32, String, String) {
    check_with_kernels(source, "cranelift")
}

/// [`check`] with `SYNAPTOGEN_JIT` set to `jit`.
fn check_with_kernels(source: &str, jit: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("rule.rhai"), source).expect("temp dir is writable");
    let out = synaptogen(dir.path())
        .args(["check", "rule.rhai"])
        .env("SYNAPTOGEN_JIT", jit)
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_valid_rule_prints_its_canonical_form_and_program() {
    let (code, stdout, stderr) = check(
        "// Momentum.\nconst BETA = 0.9;\n\nfn synapse() {\n    m = BETA * m + grad;\n    dw = -lr * m;\n}\n",
    );
    assert_eq!(code, 0, "{stderr}");
    insta::assert_snapshot!("check_momentum", stdout);
}

/// Where the CPU has AVX-512, a part that fits its 32 vector registers runs on sixteen lanes and one
/// holding more values (here 32 distinct constants) on Cranelift's four; `check` names each, and why
/// the second is not on sixteen.
#[test]
fn check_names_the_code_generator_of_each_part() {
    let terms: Vec<String> = (0..32)
        .map(|k| format!("w * {}", 0.1 + 0.001 * k as f32))
        .collect();
    let source = format!(
        "fn synapse() {{\n    dw = -lr * grad + hebb * ({});\n}}\n",
        terms.join(" + ")
    );
    let source = source.as_str();
    let (code, stdout, stderr) = check_with_kernels(source, "on");
    assert_eq!(code, 0, "{stderr}");
    #[cfg(target_arch = "x86_64")]
    let avx512 = std::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    let expected = if avx512 {
        "native code (AVX-512, 16 lanes and Cranelift, 4 lanes: 40 vector registers needed, 32 exist)"
    } else {
        "native code (Cranelift, 4 lanes)"
    };
    assert!(stdout.contains(expected), "{stdout}");
    let (_, stdout, _) = check_with_kernels(source, "cranelift");
    assert!(stdout.contains("native code (Cranelift, 4 lanes)\n"), "{stdout}");
}

#[test]
fn every_kind_of_error_is_located() {
    let cases = [
        ("unknown variable", "fn synapse() {\n    dw = -lr * heb;\n}\n"),
        (
            "write to a read-only variable",
            "fn synapse() {\n    w = 0.0;\n    dw = 0.0;\n}\n",
        ),
        ("wrong section", "fn synapse() {\n    dw = rate;\n}\n"),
        (
            "loop",
            "fn synapse() {\n    for i in 0..3 {\n        dw = 1.0;\n    }\n}\n",
        ),
        ("string", "fn synapse() {\n    dw = \"fast\";\n}\n"),
        ("array", "fn synapse() {\n    dw = [w, w];\n}\n"),
        ("map", "fn synapse() {\n    dw = #{ a: w };\n}\n"),
        (
            "closure",
            "fn synapse() {\n    let f = |x| x * 2.0;\n    dw = 1.0;\n}\n",
        ),
        (
            "user function call",
            "fn helper() {\n}\nfn synapse() {\n    dw = helper();\n}\n",
        ),
        ("type mismatch", "fn synapse() {\n    dw = w > 0.0;\n}\n"),
        ("empty file", "\n// nothing here\n"),
        ("missing dw", "fn synapse() {\n    m = grad;\n}\n"),
        ("syntax error", "fn synapse() {\n    dw = -lr * ;\n}\n"),
        (
            "several at once",
            "fn synapse() {\n    dw = heb;\n    w = 1.0;\n}\nfn neuron() {\n    theta = rte;\n}\n",
        ),
    ];
    let mut all = String::new();
    for (what, source) in cases {
        let (code, stdout, stderr) = check(source);
        assert_eq!(code, 2, "{what}: exit status (stdout {stdout})");
        assert!(stderr.starts_with("error: rule.rhai:"), "{what}: {stderr}");
        assert!(!stderr.contains("panicked"));
        all += &format!("== {what}\n{stderr}");
    }
    insta::assert_snapshot!("check_errors", all);
}

#[test]
fn limits_on_size_and_depth_are_errors() {
    let (code, _, stderr) = check(&format!(
        "fn synapse() {{ dw = {}; }}",
        "w + ".repeat(20_000) + "w"
    ));
    assert_eq!(code, 2);
    assert!(stderr.contains("rules are limited to 65536 bytes"), "{stderr}");
    let (code, _, stderr) = check(&format!(
        "fn synapse() {{ dw = {}w{}; }}",
        "(".repeat(100),
        ")".repeat(100)
    ));
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn vars_lists_the_whole_vocabulary() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = synaptogen(dir.path())
        .arg("vars")
        .output()
        .expect("the binary runs");
    assert!(out.status.success());
    insta::assert_snapshot!("vars", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn every_shipped_rule_checks() {
    for dir in ["baselines", "local", "pruning"] {
        for entry in std::fs::read_dir(util::repo().join("rules").join(dir)).expect("rules/ ships") {
            let path = entry.expect("readable").path();
            let out = synaptogen(util::repo())
                .arg("check")
                .arg(&path)
                .output()
                .expect("the binary runs");
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Runs `synaptogen run` on the synthetic spec with `flags`; returns (status, stderr, output dir).
fn run_with(flags: &[&str]) -> (i32, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = util::write_spec(dir.path(), util::SYNTHETIC_SPEC);
    let out = synaptogen(util::repo())
        .arg("run")
        .arg(&spec)
        .arg("--out")
        .arg(dir.path().join("out"))
        .args(["-q", "--no-report"])
        .args(flags)
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        dir,
    )
}

fn without_timing(dir: &std::path::Path, learner: &str) -> String {
    let csv = std::fs::read_to_string(dir.join("out").join(learner).join("tasks.csv")).expect("written");
    csv.lines()
        .map(|l| l.rsplit_once(',').map_or(l, |(head, _)| head).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_sgd_rule_reproduces_native_sgd_bit_for_bit() {
    // The rule named first trains and is listed first: learners keep their command-line order
    // across --rule and --learner (scripts/rule-speed.sh times each rule between two SGD runs).
    let (code, stderr, dir) = run_with(&["--rule", "rules/baselines/sgd.rhai", "--learner", "sgd"]);
    assert_eq!(code, 0, "{stderr}");
    let csv = std::fs::read_to_string(dir.path().join("out/comparison.csv")).expect("written");
    let order: Vec<&str> = csv.lines().skip(1).filter_map(|l| l.split(',').next()).collect();
    assert_eq!(order, ["sgd.rhai", "sgd"], "{csv}");
    assert_eq!(
        without_timing(dir.path(), "sgd"),
        without_timing(dir.path(), "sgd.rhai")
    );
    let matrix = |l: &str| {
        std::fs::read_to_string(dir.path().join("out").join(l).join("accuracy_matrix.csv")).expect("written")
    };
    assert_eq!(matrix("sgd"), matrix("sgd.rhai"));
}

#[test]
fn rules_with_state_and_local_terms_train() {
    let dir = tempfile::tempdir().expect("temp dir");
    let momentum = dir.path().join("momentum.rhai");
    std::fs::write(
        &momentum,
        "const BETA = 0.9;\nfn synapse() {\n    m = BETA * m + grad;\n    dw = -lr * m;\n}\n",
    )
    .expect("temp dir is writable");
    let momentum = momentum.to_string_lossy().into_owned();
    let (code, stderr, out) = run_with(&[
        "--rule",
        &momentum,
        "--rule",
        "rules/local/oja.rhai",
        "--rule",
        "rules/local/anti_hebbian.rhai",
        "--rule",
        "rules/local/three_factor.rhai",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let csv = std::fs::read_to_string(out.path().join("out/comparison.csv")).expect("written");
    for label in [
        "momentum.rhai",
        "oja.rhai",
        "anti_hebbian.rhai",
        "three_factor.rhai",
    ] {
        let row = csv
            .lines()
            .find(|l| l.starts_with(label))
            .expect("a row per rule");
        assert!(row.contains(",completed,"), "{row}");
    }
    // Momentum changes the trajectory: it is not plain SGD.
    let (_, _, sgd) = run_with(&["--rule", "rules/baselines/sgd.rhai"]);
    assert_ne!(
        without_timing(out.path(), "momentum.rhai"),
        without_timing(sgd.path(), "sgd.rhai")
    );
}

#[test]
fn adaptive_thresholds_train_and_a_missing_rule_is_refused() {
    let (code, stderr, dir) = run_with(&["--rule", "rules/local/adaptive_threshold.rhai"]);
    assert_eq!(code, 0, "{stderr}");
    let csv =
        std::fs::read_to_string(dir.path().join("out/adaptive_threshold.rhai/tasks.csv")).expect("written");
    assert_eq!(csv.lines().count(), 4, "a header and three tasks");
    let (code, stderr, _) = run_with(&["--rule", "no/such/rule.rhai"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no/such/rule.rhai: cannot read the rule"),
        "{stderr}"
    );
}

#[test]
fn a_rule_that_does_not_compile_stops_the_run_with_its_location() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.rhai");
    std::fs::write(&bad, "fn synapse() {\n    dw = heb;\n}\n").expect("temp dir is writable");
    let (code, stderr, _) = run_with(&["--rule", &bad.to_string_lossy()]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bad.rhai:2:10: cannot read unknown variable 'heb'"),
        "{stderr}"
    );
}

/// The value of `column` in every row of a learner's tasks.csv.
fn column(dir: &std::path::Path, learner: &str, column: &str) -> Vec<f64> {
    let csv = std::fs::read_to_string(dir.join("out").join(learner).join("tasks.csv")).expect("written");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let at = header
        .iter()
        .position(|h| *h == column)
        .expect("the column exists");
    lines
        .map(|l| l.split(',').nth(at).expect("a cell").parse().expect("a number"))
        .collect()
}

#[test]
fn a_prune_section_prunes_under_the_default_schedule() {
    let (code, stderr, dir) = run_with(&[
        "--rule",
        "rules/baselines/sgd.rhai",
        "--rule",
        "rules/pruning/magnitude.rhai",
    ]);
    assert_eq!(code, 0, "{stderr}");
    // The default schedule halves each neuron's inputs in the first task's window; nothing regrows.
    assert!(
        column(dir.path(), "sgd.rhai", "density")
            .iter()
            .all(|&d| d == 1.0)
    );
    for d in column(dir.path(), "magnitude.rhai", "density") {
        assert!((d - 0.5).abs() < 0.01, "density {d}");
    }
    // Fewer synapses, fewer synaptic operations (measured at each task start, after the first).
    let dense = column(dir.path(), "sgd.rhai", "synaptic_ops_per_sample");
    let pruned = column(dir.path(), "magnitude.rhai", "synaptic_ops_per_sample");
    assert_eq!(dense[0], pruned[0], "task 1 starts dense");
    assert!(pruned[1] < 0.8 * dense[1], "{pruned:?} vs {dense:?}");
}

/// Runs the synthetic spec with its learner section replaced by `learner`; the run must stop with
/// exit status 2 and `fragment` on stderr.
fn refused_learner(learner: &str, fragment: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = util::SYNTHETIC_SPEC.replace("learner: Sgd(lr: 0.3),", &format!("learner: {learner},"));
    let spec = util::write_spec(dir.path(), &spec);
    let out = synaptogen(util::repo())
        .args(["run", "-q", "--no-report", "--out"])
        .arg(dir.path().join("out"))
        .arg(&spec)
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(fragment), "{stderr}");
}

#[test]
fn rule_learner_settings_that_cannot_work_are_refused() {
    refused_learner(
        r#"Rule(path: "rules/baselines/sgd.rhai", lr: 0.3, structure: (target_density: 0.3))"#,
        "rules/baselines/sgd.rhai: cannot train this rule: the learner has a structure schedule but the rule has no prune()",
    );
    refused_learner(
        r#"Rule(path: "rules/pruning/usage.rhai", lr: 0.3, structure: (window: 1.5))"#,
        "learner.structure.window: must be in (0, 1] (got 1.5)",
    );
    refused_learner(
        r#"Rule(path: "rules/baselines/cbp.rhai", lr: 0.3, replacement: (rate: 1.0))"#,
        "learner.replacement.rate: must be in [0, 1)",
    );
    refused_learner(
        r#"Rule(path: "rules/baselines/mesu.rhai", lr: 0.3, stochastic: (samples: 0))"#,
        "learner.stochastic.samples: must be at least 1 (got 0)",
    );
    refused_learner(
        r#"Rule(path: "rules/baselines/sgd.rhai", lr: 0.3, biases: Always)"#,
        "Always",
    );
}
