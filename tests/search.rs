//! `synaptogen search` end to end on the synthetic dataset: determinism across thread counts, exact
//! resume after `kill -9` and after Ctrl-C, and every bad input the issue lists.

mod util;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use util::{final_state, journal_content, repo, search_spec as spec, synaptogen};

fn search(dir: &Path, spec_text: &str, args: &[&str]) -> (i32, String, String) {
    let path = util::write_spec(dir, spec_text);
    let out = synaptogen(dir)
        .arg("search")
        .arg(&path)
        .args(["--out", "out", "--quiet"])
        .args(args)
        .output()
        .expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_search_finishes_and_writes_its_results() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, stdout, stderr) = search(dir.path(), &spec(12), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("12 evaluations"), "{stdout}");
    assert!(stdout.contains("Held-out check"), "{stdout}");
    for f in ["journal.jsonl", "state.json", "lineage.dot", "best.rhai"] {
        assert!(dir.path().join("out").join(f).exists(), "{f}");
    }
    let best = std::fs::read_to_string(dir.path().join("out/best.rhai")).expect("best.rhai");
    let check = synaptogen(dir.path())
        .args(["check", "out/best.rhai"])
        .output()
        .expect("binary runs");
    assert!(check.status.success(), "best.rhai compiles:\n{best}");
    let dot = std::fs::read_to_string(dir.path().join("out/lineage.dot")).expect("lineage.dot");
    assert!(
        dot.starts_with("digraph lineage {") && dot.contains("->"),
        "{dot}"
    );
}

#[test]
fn a_search_can_evolve_prune_sections_under_a_structure_schedule() {
    let rules = repo().join("rules/pruning");
    let text = spec(12)
        .replace(
            "learner: (lr: 0.1),",
            "learner: (lr: 0.1, structure: (target_density: 0.4, window: 0.5, prune_steps: 3)),\n    evolve: [Prune],",
        )
        .replace(
            &format!(
                "[\"{}\", \"{}\"]",
                repo().join("rules/baselines/sgd.rhai").display(),
                repo().join("rules/local/bcm.rhai").display()
            ),
            &format!(
                "[\"{}\", \"{}\"]",
                rules.join("magnitude.rhai").display(),
                rules.join("usage.rhai").display()
            ),
        );
    assert!(text.contains("usage.rhai") && text.contains("evolve: [Prune]"));
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, stdout, stderr) = search(dir.path(), &text, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("12 evaluations"), "{stdout}");
    let journal = std::fs::read_to_string(dir.path().join("out/journal.jsonl")).expect("journal");
    let entries: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    // Children differ from their parents in the prune() section only.
    let children: Vec<&str> = entries
        .iter()
        .filter(|e| e["kind"] == "candidate" && e["origin"]["mutation"].is_object())
        .map(|e| e["source"].as_str().expect("source"))
        .collect();
    assert!(!children.is_empty(), "the search bred children");
    assert!(
        children
            .iter()
            .all(|s| s.contains("fn prune()") && !s.contains("fn synapse()")),
        "{children:?}"
    );
    // Candidates prune to the target; the dense SGD baseline does not.
    let densities = |candidate: bool| -> Vec<f64> {
        entries
            .iter()
            .filter(|e| e["kind"] == "trial" && e["subject"]["candidate"].is_null() != candidate)
            .flat_map(|e| e["result"]["density"].as_array().expect("densities").clone())
            .map(|d| d.as_f64().expect("a number"))
            .collect()
    };
    assert!(
        densities(true).iter().all(|d| (d - 0.4).abs() < 0.05),
        "{:?}",
        densities(true)
    );
    assert!(densities(false).iter().all(|&d| d == 1.0));
    let best = std::fs::read_to_string(dir.path().join("out/best.rhai")).expect("best.rhai");
    assert!(best.contains("fn prune()"), "{best}");
}

#[test]
fn one_thread_and_two_threads_give_the_same_journal_and_state() {
    let (a, b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (ca, _, ea) = search(a.path(), &spec(16), &["--threads", "1"]);
    let (cb, _, eb) = search(b.path(), &spec(16), &["--threads", "2"]);
    assert_eq!((ca, cb), (0, 0), "{ea}\n{eb}");
    assert_eq!(
        journal_content(&a.path().join("out")),
        journal_content(&b.path().join("out"))
    );
    assert_eq!(
        final_state(&a.path().join("out")),
        final_state(&b.path().join("out"))
    );
}

fn trials_in_journal(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("out/journal.jsonl"))
        .map(|t| t.lines().filter(|l| l.contains("\"kind\":\"trial\"")).count())
        .unwrap_or(0)
}

/// Starts a search in `dir` on `threads` threads and returns once it has journaled `trials` trials.
fn search_in_background(dir: &Path, spec_text: &str, threads: &str, trials: usize) -> std::process::Child {
    let path = util::write_spec(dir, spec_text);
    let child = synaptogen(dir)
        .arg("search")
        .arg(&path)
        .args(["--out", "out", "--quiet", "--threads", threads])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while trials_in_journal(dir) < trials {
        assert!(
            Instant::now() < deadline,
            "the search never journaled {trials} trials"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// `synaptogen report out --out r` in `dir`.
fn report(dir: &Path) -> std::process::Output {
    synaptogen(dir)
        .args(["report", "out", "--out", "r"])
        .output()
        .expect("runs")
}

/// Starts a search, stops it with `signal` once `after` trials are journaled, resumes it, and checks the
/// outcome is exactly that of an uninterrupted search.
fn interrupt_and_resume(signal: &str) {
    let spec_text = spec(40);
    let whole = tempfile::tempdir().expect("dir");
    let (code, _, stderr) = search(whole.path(), &spec_text, &["--threads", "2"]);
    assert_eq!(code, 0, "{stderr}");

    let dir = tempfile::tempdir().expect("dir");
    let mut child = search_in_background(dir.path(), &spec_text, "2", 20);
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the search finished before it could be interrupted; make it longer"
    );
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let code = child.wait().expect("wait").code();
    if signal == "-INT" {
        assert_eq!(code, Some(130), "Ctrl-C exits with 130");
    }
    let total = trials_in_journal(whole.path());
    assert!(
        trials_in_journal(dir.path()) < total,
        "interrupted before the end"
    );

    let (code, _, stderr) = search(dir.path(), &spec_text, &["--resume", "--threads", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        journal_content(&dir.path().join("out")),
        journal_content(&whole.path().join("out"))
    );
    assert_eq!(
        final_state(&dir.path().join("out")),
        final_state(&whole.path().join("out"))
    );
}

#[test]
fn kill_9_loses_nothing_finished_and_resume_ends_exactly_as_an_uninterrupted_search() {
    interrupt_and_resume("-KILL");
}

#[test]
fn ctrl_c_stops_gracefully_and_resume_ends_exactly_as_an_uninterrupted_search() {
    interrupt_and_resume("-INT");
}

fn input_error(spec_text: &str, args: &[&str], fragment: &str) {
    let dir = tempfile::tempdir().expect("dir");
    let (code, _, stderr) = search(dir.path(), spec_text, args);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(fragment), "expected '{fragment}' in:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_specs_are_located_or_name_their_field() {
    let good = spec(4);
    input_error(&good.replace("seed: 3,", "seed: 3,,"), &[], "spec.ron:3:");
    input_error(&good.replace("budget:", "budgett:"), &[], "budgett");
    input_error(
        &good.replace("evaluations: 4", "evaluations: 0"),
        &[],
        "budget.evaluations: must be at least 1",
    );
    input_error(
        &good.replace("rungs: [2, 4]", "rungs: [4, 2]"),
        &[],
        "fidelity.rungs: must increase strictly",
    );
    input_error(
        &good.replace("learner: (lr: 0.1),", "learner: (lr: 0.1),\n    evolve: [Prune],"),
        &[],
        "sgd.rhai: cannot train this rule: it has none of the sections the search evolves (prune())",
    );
    input_error(
        &good.replace(
            "learner: (lr: 0.1),",
            "learner: (lr: 0.1, structure: (target_density: 0.3)),",
        ),
        &[],
        "sgd.rhai: cannot train this rule: the learner has a structure schedule but the rule has no prune()",
    );
    input_error(
        &good.replace(
            "learner: (lr: 0.1),",
            "learner: (lr: 0.1, replacement: (rate: 1.5)),",
        ),
        &[],
        "learner.replacement.rate: must be in [0, 1)",
    );
    input_error(
        &good.replace(
            "held_out: (finalists: 2, seeds: 1)",
            "held_out: (finalists: 2, seeds: 1, tasks: 3)",
        ),
        &[],
        "held_out.tasks: must be at least the top rung's 4 tasks (got 3)",
    );
    input_error(
        &good.replace(
            "budget:",
            "objective: LongHorizon(dead_units: -0.5),\n    budget:",
        ),
        &[],
        "objective: dead_units must be finite and ≥ 0 (got -0.5)",
    );
    input_error(
        &good.replace(
            "budget:",
            "objective: Weighted(plasticity: inf, retention: 1.0),\n    budget:",
        ),
        &[],
        "objective: plasticity must be finite and ≥ 0 (got inf)",
    );
    input_error(
        &good.replace("budget:", "objective: LongHorizon(window: 0.9),\n    budget:"),
        &[],
        "objective: window must be in (0, 0.5]",
    );
    input_error(
        &good.replace("budget:", "objective: LongHorizon(dead: 1.0),\n    budget:"),
        &[],
        "spec.ron:12:28: Unexpected field named `dead` in `LongHorizon`, expected one of `window`",
    );
}

#[test]
fn a_long_horizon_search_checks_its_finalists_on_a_longer_sequence_and_reports_it_apart() {
    let dir = tempfile::tempdir().expect("dir");
    let text = spec(6)
        .replace(
            "held_out: (finalists: 2, seeds: 1)",
            "held_out: (finalists: 2, seeds: 1, tasks: 7)",
        )
        .replace("budget:", "objective: LongHorizon(window: 0.25),\n    budget:");
    let (code, _, stderr) = search(dir.path(), &text, &[]);
    assert_eq!(code, 0, "{stderr}");
    let journal = std::fs::read_to_string(dir.path().join("out/journal.jsonl")).expect("journal");
    let trials: Vec<Value> = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "trial")
        .collect();
    let held_out: Vec<&Value> = trials
        .iter()
        .filter(|t| t["stage"].as_str().is_some_and(|s| s.starts_with("held_out")))
        .collect();
    assert!(!held_out.is_empty(), "the held-out check ran");
    for t in &held_out {
        assert_eq!(t["result"]["tasks"], 7, "{t}");
        assert_eq!(t["result"]["plasticity"].as_array().map(Vec::len), Some(7), "{t}");
    }
    assert!(
        trials
            .iter()
            .filter(|t| !t["stage"].as_str().is_some_and(|s| s.starts_with("held_out")))
            .all(|t| t["result"]["tasks"].as_u64() <= Some(4)),
        "the search itself stays within its rungs"
    );
    let report = std::fs::read_to_string(dir.path().join("out/report/report.md")).expect("report");
    assert!(
        report.contains("on 7 tasks (the search's top rung: 4)"),
        "{report}"
    );
    assert!(
        report.contains("long horizon over windows of 25% of the tasks"),
        "{report}"
    );
    // Under the winner, the command that takes it to Python, and it works.
    let line = report
        .lines()
        .find(|l| l.starts_with("To use it in Python: `synaptogen export "))
        .unwrap_or_else(|| panic!("the export command under the winner:\n{report}"));
    let command = line.split('`').nth(1).expect("the command in backticks");
    assert!(command.ends_with("report/best.rhai --to numpy"), "{command}");
    let args: Vec<&str> = command.split(' ').skip(1).collect();
    let out = synaptogen(dir.path()).args(&args).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("def synapse("));
}

#[test]
fn a_seed_rule_that_does_not_compile_is_named_and_located() {
    let dir = tempfile::tempdir().expect("dir");
    let bad = dir.path().join("bad.rhai");
    std::fs::write(&bad, "fn synapse() {\n    dw = -lr * gradd;\n}\n").expect("write");
    let text = spec(4).replace(
        &repo().join("rules/local/bcm.rhai").display().to_string(),
        &bad.display().to_string(),
    );
    let (code, _, stderr) = search(dir.path(), &text, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("bad.rhai:2:16") && stderr.contains("gradd") && stderr.contains("grad"),
        "{stderr}"
    );
}

#[test]
fn an_output_directory_that_is_a_file_is_rejected() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("out"), "").expect("write");
    let (code, _, stderr) = search(dir.path(), &spec(4), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not a directory"), "{stderr}");
}

#[test]
fn an_existing_search_is_never_overwritten_without_resume_or_force() {
    let dir = tempfile::tempdir().expect("dir");
    let (code, _, stderr) = search(dir.path(), &spec(4), &[]);
    assert_eq!(code, 0, "{stderr}");
    let before = std::fs::read(dir.path().join("out/journal.jsonl")).expect("journal");
    let (code, _, stderr) = search(dir.path(), &spec(4), &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--resume") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("out/journal.jsonl")).expect("journal"),
        before
    );
    let (code, _, stderr) = search(dir.path(), &spec(4), &["--force"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = search(dir.path(), &spec(4), &["--resume"]);
    assert_eq!(code, 0, "resuming a finished search reports it again: {stderr}");
}

#[test]
fn resume_refuses_a_missing_journal_a_changed_spec_and_a_corrupt_line() {
    input_error(&spec(4), &["--resume"], "nothing to resume");

    let dir = tempfile::tempdir().expect("dir");
    let (code, _, stderr) = search(dir.path(), &spec(4), &[]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = search(dir.path(), &spec(4).replace("seed: 3", "seed: 4"), &["--resume"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("different spec"), "{stderr}");

    let journal = dir.path().join("out/journal.jsonl");
    let text = std::fs::read_to_string(&journal).expect("journal");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(3, "{\"kind\": \"trial\", \"round\": ");
    std::fs::write(&journal, lines.join("\n") + "\n").expect("write");
    let (code, _, stderr) = search(dir.path(), &spec(4), &["--resume"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("journal.jsonl:4: not a numbered journal line"),
        "{stderr}"
    );
}

/// Copies a finished search's output directory into a fresh temporary directory.
fn copy_search(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().expect("dir");
    std::fs::create_dir(to.path().join("out")).expect("mkdir");
    for entry in std::fs::read_dir(from.join("out")).expect("list").flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.path().join("out").join(entry.file_name())).expect("copy");
        }
    }
    to
}

#[test]
fn a_second_process_is_refused_while_a_search_holds_its_directory() {
    let dir = tempfile::tempdir().expect("dir");
    let mut first = search_in_background(dir.path(), &spec(40), "1", 1);
    for flags in [&["--resume"][..], &["--force"], &[]] {
        let (code, _, stderr) = search(dir.path(), &spec(40), flags);
        assert_eq!(code, 2, "{flags:?}: {stderr}");
        assert!(
            stderr.contains("in use by another synaptogen")
                && stderr.contains(&format!("pid {}", first.id()))
                && stderr.contains(" since "),
            "{flags:?}: {stderr}"
        );
    }
    // kill -9 cannot leave the lock behind: the kernel drops it with the process.
    first.kill().expect("kill");
    first.wait().expect("wait");
    let (code, _, stderr) = search(dir.path(), &spec(12), &["--resume"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_journal_behind_its_snapshot_or_a_damaged_snapshot_is_rebuilt_exactly_from_the_journal() {
    let whole = tempfile::tempdir().expect("dir");
    let (code, _, stderr) = search(whole.path(), &spec(12), &[]);
    assert_eq!(code, 0, "{stderr}");
    let lines = std::fs::read_to_string(whole.path().join("out/journal.jsonl")).expect("journal");
    let lines: Vec<&str> = lines.lines().collect();

    // The last 13 lines lost (a backup restored, a copy made mid-write) behind a newer state.json, or a
    // damaged state.json: either way the journal rebuilds the search, re-running what it lacks.
    for (what, damage) in [("lines were lost", 13), ("is damaged", 0)] {
        let copy = copy_search(whole.path());
        let out = copy.path().join("out");
        std::fs::write(
            out.join("journal.jsonl"),
            lines[..lines.len() - damage].join("\n") + "\n",
        )
        .expect("write");
        if damage == 0 {
            std::fs::write(out.join("state.json"), "{\"format\": 2, \"spec_ha").expect("write");
        }
        let path = util::write_spec(copy.path(), &spec(12));
        let run = synaptogen(copy.path())
            .arg("search")
            .arg(&path)
            .args(["--out", "out", "--resume"])
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{stderr}");
        assert!(
            stderr.contains(what) && stderr.contains("rebuilding the search from the journal"),
            "{stderr}"
        );
        assert_eq!(
            journal_content(&copy.path().join("out")),
            journal_content(&whole.path().join("out"))
        );
        assert_eq!(
            final_state(&copy.path().join("out")),
            final_state(&whole.path().join("out"))
        );
    }
}

#[test]
fn report_and_resume_name_a_missing_or_repeated_journal_line() {
    let whole = tempfile::tempdir().expect("dir");
    let (code, _, stderr) = search(whole.path(), &spec(12), &[]);
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(whole.path().join("out/journal.jsonl")).expect("journal");
    let lines: Vec<&str> = text.lines().collect();
    let middle = lines.len() / 2;
    let mut gap = lines.clone();
    gap.remove(middle);
    let mut twice = lines.clone();
    twice.insert(middle, lines[middle - 1]);
    for (edited, expected) in [
        (
            gap,
            format!("journal.jsonl:{}: line {} is missing", middle + 1, middle + 1),
        ),
        (
            twice,
            format!("journal.jsonl:{}: line number {middle} again", middle + 1),
        ),
    ] {
        let copy = copy_search(whole.path());
        std::fs::write(copy.path().join("out/journal.jsonl"), edited.join("\n") + "\n").expect("write");
        let reported = report(copy.path());
        let stderr = String::from_utf8_lossy(&reported.stderr);
        assert_eq!(reported.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&expected), "expected {expected:?} in {stderr}");
        assert!(stderr.contains("head -n"), "{stderr}");
        assert_eq!(
            stderr.matches("out/journal.jsonl").count(),
            1,
            "said once: {stderr}"
        );
        let (code, _, stderr) = search(copy.path(), &spec(12), &["--resume"]);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(&expected), "{stderr}");
    }
}

#[test]
fn a_larger_budget_continues_a_finished_search_without_checking_anyone_twice() {
    let dir = tempfile::tempdir().expect("dir");
    let (code, _, stderr) = search(dir.path(), &spec(12), &[]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = search(dir.path(), &spec(16), &["--resume"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("16 evaluations"), "{stdout}");
    // Reading the journal verifies that no trial is recorded twice.
    let reported = report(dir.path());
    assert!(
        reported.status.success(),
        "{}",
        String::from_utf8_lossy(&reported.stderr)
    );
}

#[test]
fn an_empty_journal_is_a_search_that_never_started() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir(dir.path().join("out")).expect("mkdir");
    std::fs::write(dir.path().join("out/journal.jsonl"), "").expect("write");
    let (code, _, stderr) = search(dir.path(), &spec(4), &[]);
    assert_eq!(code, 0, "{stderr}");
    std::fs::write(dir.path().join("out/journal.jsonl"), "{\"line\":1,\"su").expect("write");
    let (code, _, stderr) = search(dir.path(), &spec(4), &["--resume"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("starting it afresh"), "{stderr}");
}

#[test]
fn a_run_spec_given_to_search_says_which_command_takes_it() {
    input_error(
        util::SYNTHETIC_SPEC,
        &[],
        "this looks like a run spec (it has no seed_rules): train it with `synaptogen run`",
    );
}

/// `best.ron` trains the winner exactly as the search did at its top rung (same accuracies on every
/// task), beside the search's baselines; a `best.ron` whose rule is gone is a clear error.
#[test]
fn best_ron_reproduces_the_winners_top_rung_trial_beside_the_baselines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, _, stderr) = search(dir.path(), &spec(12), &[]);
    assert_eq!(code, 0, "{stderr}");
    let state = final_state(&dir.path().join("out"));
    let best = std::fs::read_to_string(dir.path().join("out/best.rhai")).expect("best.rhai");
    let winner: u64 = best
        .split("candidate #")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("best.rhai names its candidate:\n{best}"));
    assert!(state["candidates"][winner as usize].is_object());
    let journal = std::fs::read_to_string(dir.path().join("out/journal.jsonl")).expect("journal");
    let searched: Vec<f64> = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| {
            v["kind"] == "trial"
                && v["subject"]["candidate"] == winner
                && v["stage"]["rung"] == 1
                && v["seed"] == 3
        })
        .expect("the winner's top-rung trial on the first training seed")["result"]["plasticity"]
        .as_array()
        .expect("plasticity")
        .iter()
        .map(|p| p.as_f64().expect("a number"))
        .collect();
    let run = synaptogen(dir.path())
        .args(["run", "out/best.ron", "-q", "--no-report", "--out", "rerun"])
        .output()
        .expect("binary runs");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let comparison = std::fs::read_to_string(dir.path().join("rerun/comparison.csv")).expect("comparison");
    for baseline in ["sgd", "l2_init"] {
        assert!(
            comparison.lines().any(|l| l.starts_with(baseline)),
            "{comparison}"
        );
    }
    let metrics: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("rerun/best.rhai/metrics.json")).expect("metrics.json"),
    )
    .expect("JSON");
    let rerun: Vec<f64> = metrics["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["plasticity"].as_f64().expect("a number"))
        .collect();
    assert_eq!(rerun, searched, "best.ron trains the winner as the search did");
    std::fs::remove_file(dir.path().join("out/best.rhai")).expect("remove");
    let missing = synaptogen(dir.path())
        .args(["run", "out/best.ron", "-q", "--out", "again"])
        .output()
        .expect("binary runs");
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("out/best.rhai"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
