//! The compiler against its users' expectations: accepted rules, located diagnostics, canonical
//! round-trips, and Rhai's own interpreter as the oracle for the compiled programs.

use std::path::Path;

use super::*;

fn check(source: &str) -> Result<CompiledRule, String> {
    compile(source, Path::new("rule.rhai")).map_err(|e| e.to_string())
}

fn canonical_text(source: &str) -> String {
    check(source).expect("compiles").canonical.to_rhai()
}

#[test]
fn the_design_example_compiles() {
    let source = r#"
        // Gradient descent with a local decorrelation term that keeps hidden units diverse.
        const ALPHA = 0.002;
        const TARGET = 0.05;

        fn synapse() {
            dw = -lr * grad - ALPHA * (hebb - pre * post);
        }

        fn neuron() {
            theta = theta + 0.01 * (rate - TARGET);
        }

        fn prune() {
            score = abs(w) * pre_trace;
        }
    "#;
    let compiled = check(source).expect("compiles");
    assert_eq!(compiled.programs.len(), 3);
    assert_eq!(
        compiled
            .canonical
            .reads(Section::Synapse)
            .iter()
            .map(|v| v.name())
            .collect::<Vec<_>>(),
        vec!["lr", "grad", "hebb", "post", "pre"]
    );
    let text = compiled.canonical.to_rhai();
    assert!(text.contains("const ALPHA = 0.002;"), "{text}");
    assert!(
        text.contains("dw = -lr * grad - ALPHA * (hebb - post * pre);"),
        "{text}"
    );
}

#[test]
fn lets_assignments_and_ifs_are_executed_symbolically() {
    let text = canonical_text(
        "fn synapse() {
            let g = grad * 2.0;
            m = 0.9 * m + g;
            m += 0.0;
            if w > 0.0 { dw = -lr * m; } else { dw = 0.0; }
            u = if abs(w) > 1.0 { 1.0 } else { u };
        }",
    );
    assert!(text.contains("m = 0.9 * m + 2.0 * grad;"), "{text}");
    assert!(
        text.contains("dw = (if w > 0.0 { -lr * (0.9 * m + 2.0 * grad) } else { 0.0 });"),
        "{text}"
    );
    assert!(
        text.contains("u = (if abs(w) > 1.0 { 1.0 } else { u });"),
        "{text}"
    );
}

#[test]
fn a_number_outside_the_f32_range_is_a_located_error_and_nothing_more() {
    for (source, at) in [
        ("const A = 1e39;\nfn synapse() { dw = A * grad; }", "1:11"),
        ("const A = -1e39;\nfn synapse() { dw = A * grad; }", "1:11"),
        ("fn synapse() {\n    dw = 1e39 * grad;\n}", "2:10"),
    ] {
        let err = check(source).unwrap_err().to_string();
        assert!(
            err.contains(&format!("rule.rhai:{at}")) && err.contains("32-bit float"),
            "{source}: {err}"
        );
        assert!(
            !err.contains("unknown"),
            "one error, not a second about its uses: {err}"
        );
    }
    let err = check("const A = 0.0 / 0.0;\nfn synapse() { dw = A * grad; }")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("must be a number") && !err.contains("unknown"),
        "{err}"
    );
}

#[test]
fn printing_then_reparsing_is_the_identity_on_the_canonical_ir() {
    for source in [
        "fn synapse() { dw = -lr * grad - 0.002 * (hebb - pre * post); }",
        "const A = -0.5; fn synapse() { dw = A * w ** 2.0 ** 0.5 - (grad - (pre - post)); }",
        "fn neuron() { theta = theta + 1e-7 * sign(rate - 0.05); h = clamp(h, -1.0, 1.0); score = util; }",
        "fn prune() { score = if w < 0.0 && !(pre > 0.5) || post == 1.0 { -w } else { max(w, pre_trace) }; }",
        // A value written, then read: the printed form must not read the new value where the IR reads
        // the old one.
        "const DECAY = 0.99; fn neuron() { h = DECAY * h + act_dev; score = h / age; }",
        "const new_h = 2.0; fn neuron() { theta = h; h = theta * new_h; }",
    ] {
        let first = check(source).expect("compiles").canonical;
        let printed = first.to_rhai();
        let second = check(&printed)
            .unwrap_or_else(|e| panic!("{printed}\n{e}"))
            .canonical;
        assert_eq!(first, second, "{printed}");
    }
}

#[test]
fn equivalent_spellings_hash_the_same_and_different_rules_do_not() {
    let hash = |s: &str| check(s).expect("compiles").rule.structural_hash();
    assert_eq!(
        hash("fn synapse() { dw = w * grad; }"),
        hash("fn synapse() { dw = grad * w + 0.0; }")
    );
    assert_eq!(
        hash("fn synapse() { dw = -lr * grad; }"),
        hash("fn synapse() {\n let x = lr;\n dw = -x * grad; }")
    );
    assert_ne!(
        hash("fn synapse() { dw = w - grad; }"),
        hash("fn synapse() { dw = grad - w; }")
    );
}

fn diagnostic(source: &str) -> String {
    match check(source) {
        Ok(_) => panic!("accepted: {source}"),
        Err(e) => e,
    }
}

#[test]
fn every_error_is_located_and_says_what_to_do() {
    for (source, want) in [
        (
            "fn synapse() { dw = heb * w; }",
            "rule.rhai:1:21: cannot read unknown variable 'heb' (did you mean 'hebb'?)",
        ),
        (
            "fn synapse() { w = 0.0; dw = 0.0; }",
            "rule.rhai:1:16: 'w' is read-only in synapse()",
        ),
        (
            "fn synapse() { dw = rate; }",
            "'rate' is not available in synapse(); it belongs to neuron()",
        ),
        (
            "fn neuron() { dw = 1.0; }",
            "'dw' is not available in neuron(); it belongs to synapse()",
        ),
        (
            "fn synapse() { for i in 0..3 { dw = 1.0; } }",
            "loops are not supported",
        ),
        (
            "fn synapse() { let i = 0; while i < 3 { i += 1; } dw = 1.0; }",
            "loops are not supported",
        ),
        ("fn synapse() { dw = \"fast\"; }", "strings are not supported"),
        ("fn synapse() { dw = [1.0, 2.0]; }", "arrays are not supported"),
        (
            "fn synapse() { dw = #{a: 1.0}; }",
            "object maps are not supported",
        ),
        ("fn synapse() { let f = |x| x * 2.0; dw = 1.0; }", "not supported"),
        (
            "fn helper() { } fn synapse() { dw = 1.0; }",
            "unknown section 'helper'",
        ),
        (
            "fn synapse() { dw = neuron(); }",
            "calls to other functions are not supported",
        ),
        (
            "fn synapse() { dw = w > 0.0; }",
            "type mismatch: 'dw' needs a number, but this is a comparison",
        ),
        (
            "fn synapse() { if w { dw = 1.0; } else { dw = 0.0; } }",
            "type mismatch: a condition must be a comparison",
        ),
        ("", "the rule is empty"),
        ("// nothing but a comment\n", "the rule is empty"),
        ("fn synapse() { m = grad; }", "synapse() must assign 'dw'"),
        ("fn prune() { let x = w; }", "prune() must assign 'score'"),
        (
            "fn synapse() { dw = tanh(w, 2.0); }",
            "tanh() takes 1 argument(s), got 2",
        ),
        (
            "fn synapse() { dw = abz(w); }",
            "unknown function 'abz' (did you mean 'abs'?)",
        ),
        (
            "fn synapse() { dw = w.abs(); }",
            "method-call syntax is not supported: write abs(x)",
        ),
        (
            "const A = 1.0; fn synapse() { A = 2.0; dw = A; }",
            "'A' is a constant and cannot be assigned",
        ),
        (
            "fn synapse() { if w > 0.0 { dw = 1.0; } }",
            "'dw' is assigned in only one branch",
        ),
        ("fn synapse(x) { dw = x; }", "synapse() takes no parameters"),
        (
            "fn synapse() { dw = dw + 1.0; }",
            "'dw' is an output: assign it before reading it",
        ),
        (
            "let x = 1.0; fn synapse() { dw = 1.0; }",
            "only `const NAME = number;` declarations",
        ),
        ("fn synapse() { dw = 1.0 +; }", "rule.rhai:1:"),
    ] {
        let got = diagnostic(source);
        assert!(got.contains(want), "{source:?}\n  got: {got}\n want: {want}");
        assert!(got.starts_with("rule.rhai:"), "located: {got}");
    }
}

#[test]
fn all_problems_in_a_file_are_reported_at_once() {
    let got =
        diagnostic("fn synapse() {\n    dw = heb;\n    w = 1.0;\n}\nfn neuron() {\n    theta = rte;\n}\n");
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 3, "{got}");
    assert!(lines[0].starts_with("rule.rhai:2:10:"), "{got}");
    assert!(lines[1].starts_with("rule.rhai:3:5:"), "{got}");
    assert!(
        lines[2].starts_with("rule.rhai:6:13:") && lines[2].contains("did you mean 'rate'"),
        "{got}"
    );
}

#[test]
fn limits_on_size_and_depth() {
    let huge = format!("fn synapse() {{ dw = {}; }}", "w + ".repeat(20_000) + "w");
    assert!(diagnostic(&huge).contains("limited to"));
    let deep = format!("fn synapse() {{ dw = {}w{}; }}", "(".repeat(100), ")".repeat(100));
    assert!(
        diagnostic(&deep).contains("rule.rhai:1:"),
        "{}",
        diagnostic(&deep)
    );
}

#[test]
fn slots_no_section_writes_are_read_as_zero_by_the_applied_synapse_program() {
    use vocab::Var;
    let inputs = |c: &CompiledRule| c.synapse_applied.as_ref().expect("has synapse()").inputs.clone();
    // `m` and `h` are read and never written: both 0 throughout, and the program the learner runs
    // reads neither (the section's own program, which the search's behaviour hash runs, still does).
    let zeroed = check("fn synapse() { dw = -lr * (grad + sign(m) * tanh(tanh(m * step))) + h * w; }")
        .expect("compiles");
    assert_eq!(zeroed.canonical.never_written(), vec![Var::M, Var::H]);
    let applied = inputs(&zeroed);
    assert!(
        !applied.contains(&Var::M) && !applied.contains(&Var::H),
        "{applied:?}"
    );
    assert!(zeroed.programs[0].1.inputs.contains(&Var::M));
    // Written slots are left alone: `m` by synapse(), `h` by neuron().
    let written =
        check("fn synapse() { m = 0.9 * m + grad; dw = -lr * m + h * w; }\n fn neuron() { h = h + rate; }")
            .expect("compiles");
    assert!(written.canonical.never_written().is_empty());
    let applied = inputs(&written);
    assert!(
        applied.contains(&Var::M) && applied.contains(&Var::H),
        "{applied:?}"
    );
    // `pre_h` is the presynaptic `h`: zero unless neuron() writes `h`.
    let pre = check("fn synapse() { dw = -lr * grad * (1.0 + pre_h); }").expect("compiles");
    assert_eq!(pre.canonical.never_written(), vec![Var::PreH]);
    // Where randn() is drawn nothing is substituted, so merging subexpressions cannot merge draws.
    let noisy = check("fn synapse() { dw = -lr * grad + m * randn() + u * randn(); }").expect("compiles");
    let applied = inputs(&noisy);
    assert!(
        applied.contains(&Var::M) && applied.contains(&Var::U),
        "{applied:?}"
    );
}
