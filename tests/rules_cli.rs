//! `synaptogen check` and `synaptogen vars` as a user runs them; every diagnostic kind is snapshotted.

mod util;

use util::synaptogen;

/// Runs `synaptogen check` on `source`; returns (status, stdout, stderr).
fn check(source: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("rule.rhai"), source).expect("temp dir is writable");
    let out = synaptogen(dir.path())
        .args(["check", "rule.rhai"])
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
