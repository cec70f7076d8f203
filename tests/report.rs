//! `synaptogen report`: snapshots of the Markdown tables from a fixed journal
//! (`tests/fixtures/search/journal.jsonl`, a small synthetic search with two seeds per evaluation),
//! the files written, the HTML in headless Chromium, and bad input.

mod util;

use std::path::{Path, PathBuf};

use synaptogen::report::render::{self, markdown_table};
use synaptogen::report::{build, results};
use util::{repo, synaptogen};

fn fixture() -> PathBuf {
    repo().join("tests/fixtures/search")
}

fn report_of(dir: &Path) -> render::Report {
    let results = results::load(dir).expect("the fixture loads");
    build::compute(&results, "test").expect("the report computes")
}

#[test]
fn leaderboard_table_snapshot() {
    let r = report_of(&fixture());
    let (headers, rows) = render::leaderboard_rows(&r.leaderboard);
    insta::assert_snapshot!(markdown_table(&headers, &rows));
}

/// The objective (or held-out score) never increases down a board: baselines and candidates are ranked
/// together, after every join.
#[test]
fn every_board_is_sorted_by_its_score() {
    let r = report_of(&fixture());
    for (board, column) in [(&r.leaderboard, "objective"), (&r.held_out, "seeds")] {
        let scores: Vec<f64> = (0..board.height())
            .map(|i| synaptogen::report::tables::f64_at(board, column, i).expect("a score"))
            .collect();
        assert!(scores.len() >= 3, "{board}");
        assert!(
            scores.windows(2).all(|w| w[0] >= w[1]),
            "{column} rises down the board: {scores:?}"
        );
    }
}

#[test]
fn held_out_table_snapshot() {
    let r = report_of(&fixture());
    let (headers, rows) = render::held_out_rows(&r.held_out);
    insta::assert_snapshot!(markdown_table(&headers, &rows));
}

#[test]
fn held_out_dataset_table_snapshot() {
    let r = report_of(&fixture());
    let (headers, rows) = render::held_out_dataset_rows(&r.held_out);
    assert!(!rows.is_empty(), "the fixture ran the dataset check");
    insta::assert_snapshot!(markdown_table(&headers, &rows));
}

#[test]
fn winner_margins_snapshot() {
    let r = report_of(&fixture());
    let winner = r
        .winner
        .as_ref()
        .expect("the fixture has a winner")
        .subject
        .clone();
    let (headers, rows) = render::winner_margin_rows(&r.held_out, &winner);
    assert_eq!(rows.len(), 2, "one row per baseline re-checked");
    insta::assert_snapshot!(format!(
        "winner {winner}\n{}\n{}",
        markdown_table(&headers, &rows),
        render::winner_margin_verdict(&headers, &rows)
    ));
}

#[test]
fn horizon_check_snapshot() {
    let r = report_of(&fixture());
    let h = r
        .horizons
        .expect("four subjects completed the fixture's top rung");
    assert_eq!((h.top, h.subjects), (4, 4));
    let (headers, rows) = render::horizons_rows(&h);
    insta::assert_snapshot!(markdown_table(&headers, &rows));
}

#[test]
fn pareto_table_snapshot() {
    let r = report_of(&fixture());
    let (headers, rows) = render::front_rows(&r.front);
    insta::assert_snapshot!(markdown_table(&headers, &rows));
}

#[test]
fn winner_lineage_snapshot() {
    let r = report_of(&fixture());
    let w = r.winner.expect("the fixture has a winner");
    let rows: Vec<Vec<String>> = w
        .lineage
        .iter()
        .map(|s| vec![s.subject.clone(), s.change.clone(), s.score.clone()])
        .collect();
    insta::assert_snapshot!(format!(
        "{}\n{}\n{}",
        w.rhai.expect("a rule"),
        w.formula.expect("a formula"),
        markdown_table(&["candidate", "change", "best score"], &rows)
    ));
}

fn run_report(results: &Path, out: &Path) -> (i32, String, String) {
    let o = synaptogen(repo())
        .arg("report")
        .arg(results)
        .arg("--out")
        .arg(out)
        .output()
        .expect("binary runs");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn the_command_writes_every_file() {
    let out = tempfile::tempdir().expect("dir");
    // A plot left by an earlier report of this directory goes.
    std::fs::create_dir_all(out.path().join("plots")).expect("dir");
    std::fs::write(out.path().join("plots/curves_density.svg"), "<svg/>").expect("written");
    let (code, stdout, stderr) = run_report(&fixture(), out.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("winner"), "{stdout}");
    for f in [
        "report.md",
        "report.html",
        "leaderboard.csv",
        "evaluations.parquet",
        "curves.csv",
        "lineage.dot",
        "best.rhai",
        "plots/pareto.svg",
        "plots/curves_plasticity.svg",
        "plots/accuracy_matrix.svg",
    ] {
        let path = out.path().join(f);
        assert!(path.exists() && path.metadata().expect("meta").len() > 0, "{f}");
    }
    assert!(
        !out.path().join("plots/curves_density.svg").exists(),
        "a dense search has no density plot (one flat line at 100%)"
    );
    let md = std::fs::read_to_string(out.path().join("report.md")).expect("md");
    for section in [
        "## Leaderboard",
        "## Held-out check",
        "## Pareto front",
        "## The winner",
        "## Data",
    ] {
        assert!(md.contains(section), "{section} missing");
    }
    let html = std::fs::read_to_string(out.path().join("report.html")).expect("html");
    // The SVG namespace is a name, not a resource.
    let html = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for forbidden in ["http://", "https://", "src=\"", "<link", "@import", "url("] {
        assert!(
            !html.contains(forbidden),
            "the HTML refers to an outside resource: {forbidden}"
        );
    }
    let best = out.path().join("best.rhai");
    let check = synaptogen(repo()).arg("check").arg(&best).output().expect("runs");
    assert!(check.status.success(), "best.rhai compiles");
}

/// Finds Chromium; CI installs Debian's `chromium`.
fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = std::process::Command::new("which").arg(name).output()
            && out.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    panic!("headless Chromium is needed for this test: apt-get install chromium (.ci/run does)");
}

#[test]
fn the_html_renders_every_plot_in_headless_chromium_without_the_network() {
    let out = tempfile::tempdir().expect("dir");
    let (code, _, stderr) = run_report(&fixture(), out.path());
    assert_eq!(code, 0, "{stderr}");
    let html = out.path().join("report.html");
    let url = format!("file://{}", html.display());
    let profile = tempfile::tempdir().expect("profile dir");
    let browser = chromium();
    let common = [
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--no-first-run".into(),
        // Any attempt to reach the network fails; the page's own check counts what it fetched.
        "--host-resolver-rules=MAP * ~NOTFOUND".into(),
        "--virtual-time-budget=5000".into(),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    let dom = std::process::Command::new(&browser)
        .args(&common)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&dom.stdout);
    let attribute = |name: &str| -> usize {
        let key = format!("{name}=\"");
        let start = dom
            .find(&key)
            .unwrap_or_else(|| panic!("{name} not set: the page's check did not run"))
            + key.len();
        dom[start..]
            .split('"')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a number")
    };
    let plots = attribute("data-plots");
    // Curves of plasticity, retention and effective rank, the Pareto front, the heat map (the fixture
    // is dense, so there is no density plot).
    assert!(plots >= 5, "expected at least 5 plots, found {plots}");
    assert_eq!(
        attribute("data-plots-rendered"),
        plots,
        "every plot is laid out with a size"
    );
    assert_eq!(attribute("data-resources"), 0, "the report fetched a resource");
    let shot = repo().join("target/report-screenshot.png");
    // `target/` is not there when CARGO_TARGET_DIR puts the build elsewhere.
    std::fs::create_dir_all(shot.parent().expect("a directory")).expect("target/ is writable");
    let status = std::process::Command::new(&browser)
        .args(&common)
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1280,3000")
        .arg(&url)
        .output()
        .expect("chromium runs");
    assert!(
        status.status.success() && shot.exists(),
        "screenshot saved to {}",
        shot.display()
    );
}

#[test]
fn bad_input_is_a_clear_error_with_status_2() {
    let tmp = tempfile::tempdir().expect("dir");
    let out = tmp.path().join("out");
    let (code, _, stderr) = run_report(&tmp.path().join("missing"), &out);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no such directory"), "{stderr}");

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let (code, _, stderr) = run_report(&empty, &out);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("neither a search"), "{stderr}");

    let header_only = tmp.path().join("header-only");
    std::fs::create_dir(&header_only).expect("mkdir");
    let journal = std::fs::read_to_string(fixture().join("journal.jsonl")).expect("fixture");
    let first = journal.lines().next().expect("a header");
    std::fs::write(header_only.join("journal.jsonl"), format!("{first}\n")).expect("write");
    let (code, _, stderr) = run_report(&header_only, &out);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no finished trial"), "{stderr}");

    let old = tmp.path().join("old");
    std::fs::create_dir(&old).expect("mkdir");
    std::fs::write(
        old.join("journal.jsonl"),
        first.replace("\"format\":1", "\"format\":0") + "\n",
    )
    .expect("write");
    let (code, _, stderr) = run_report(&old, &out);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("format 0"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_candidate_whose_every_trial_diverged_is_reported_as_such() {
    let tmp = tempfile::tempdir().expect("dir");
    let dir = tmp.path().join("diverged");
    std::fs::create_dir(&dir).expect("mkdir");
    let journal = std::fs::read_to_string(fixture().join("journal.jsonl")).expect("fixture");
    // Every trial of candidate 3 (the fixture's winner) diverged in its first task.
    let edited: Vec<String> = journal
        .lines()
        .map(|l| {
            if l.contains("\"subject\":{\"candidate\":3}") {
                let mut v: serde_json::Value = serde_json::from_str(l).expect("json");
                v["result"]["ending"] = serde_json::json!({"diverged": {"task": 1}});
                v["result"]["objective"] = serde_json::json!(0.0);
                for k in [
                    "plasticity",
                    "retention",
                    "effective_rank",
                    "density",
                    "dead_fraction",
                    "synaptic_ops",
                ] {
                    v["result"][k] = serde_json::json!([]);
                }
                for k in ["final_accuracy", "bwt", "forgetting"] {
                    v["result"][k] = serde_json::Value::Null;
                }
                v.to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(dir.join("journal.jsonl"), edited.join("\n") + "\n").expect("write");
    let out = tmp.path().join("out");
    let (code, _, stderr) = run_report(&dir, &out);
    assert_eq!(code, 0, "{stderr}");
    let md = std::fs::read_to_string(out.join("report.md")).expect("md");
    assert!(
        md.contains("| #3 † |"),
        "ranked, and flagged as stopped early:\n{md}"
    );
    assert!(
        !md.contains("## The winner: #3"),
        "a diverged rule does not win:\n{md}"
    );
}

#[test]
fn a_multi_learner_run_ends_with_its_report() {
    let dir = tempfile::tempdir().expect("dir");
    let spec = util::write_spec(dir.path(), util::SYNTHETIC_SPEC);
    let out = synaptogen(dir.path())
        .arg("run")
        .arg(&spec)
        .args(["-q", "--learner", "sgd", "--learner", "l2_init"])
        .output()
        .expect("binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Report: reports/spec/report.html"), "{stdout}");
    let md = std::fs::read_to_string(dir.path().join("reports/spec/report.md")).expect("report.md");
    assert!(md.contains("# Run report: spec"), "{md}");
    assert!(md.contains("*sgd*") && md.contains("*l2_init*"), "{md}");
    assert!(dir.path().join("reports/spec/plots/accuracy_matrix.svg").exists());
}
