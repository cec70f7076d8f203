//! The summary table `synaptogen run` prints on stdout.

use std::fmt::Write;
use std::path::Path;

use crate::metrics::Summary;
use crate::run::{RunOutcome, Status};

/// At most this many task rows are printed; the rest are in tasks.csv.
const MAX_ROWS: usize = 20;

fn percent(v: Option<f32>) -> String {
    v.map_or("—".into(), |v| format!("{:.1}%", 100.0 * v))
}

/// Renders the per-task table (sampled evenly when long) and the whole-run numbers.
pub fn render(
    name: &str,
    learner: &str,
    outcome: &RunOutcome,
    summary: Option<&Summary>,
    dir: &Path,
) -> String {
    let mut out = String::new();
    let status = match &outcome.status {
        Status::Completed => "completed".to_string(),
        Status::Interrupted => format!("interrupted after {} finished tasks", outcome.records.len()),
        Status::Diverged { task, reason } => format!("diverged during task {task}: {reason}"),
    };
    let _ = writeln!(out, "{name} ({learner}): {status}");
    let n = outcome.records.len();
    if n > 0 {
        let layers = outcome.records[0].start.effective_rank.len();
        let _ = write!(
            out,
            "\n{:>5} {:>10} {:>9} {:>7} ",
            "task", "plasticity", "retention", "online"
        );
        for l in 1..=layers {
            let _ = write!(out, "{:>8}", format!("erank{l}"));
        }
        let _ = writeln!(
            out,
            " {:>6} {:>7} {:>7} {:>9}",
            "dead", "dormant", "rate", "synops"
        );
        let shown: Vec<usize> = if n <= MAX_ROWS {
            (0..n).collect()
        } else {
            let mut rows: Vec<usize> = (0..MAX_ROWS - 1).map(|i| i * (n - 1) / (MAX_ROWS - 1)).collect();
            rows.push(n - 1);
            rows.dedup();
            rows
        };
        for &i in &shown {
            let r = &outcome.records[i];
            let _ = write!(
                out,
                "{:>5} {:>10} {:>9} {:>7} ",
                r.task,
                percent(Some(r.plasticity)),
                percent(r.retention),
                percent(Some(r.online_accuracy))
            );
            for e in &r.start.effective_rank {
                let _ = write!(out, "{e:>8.1}");
            }
            let _ = writeln!(
                out,
                " {:>5.1}% {:>6.1}% {:>7.3} {:>9.0}",
                100.0 * r.start.dead_fraction,
                100.0 * r.start.dormant_fraction,
                r.start.firing_rate,
                r.start.synaptic_ops
            );
        }
        if shown.len() < n {
            let _ = writeln!(
                out,
                "({} of {n} tasks shown; every task is in tasks.csv)",
                shown.len()
            );
        }
    }
    if let Some(s) = summary {
        let _ = writeln!(
            out,
            "\nACC {}  BWT {}  forgetting {}  mean plasticity {} (last {}: {})  mean retention {} (last {}: {})  online {}  objective {}",
            percent(Some(s.final_accuracy)),
            s.bwt.map_or("—".into(), |v| format!("{:+.1} pp", 100.0 * v)),
            s.forgetting
                .map_or("—".into(), |v| format!("{:.1} pp", 100.0 * v)),
            percent(Some(s.mean_plasticity)),
            crate::metrics::LAST_TASKS,
            percent(s.plasticity_last10),
            percent(s.mean_retention),
            crate::metrics::LAST_TASKS,
            percent(s.retention_last10),
            percent(Some(s.mean_online_accuracy)),
            percent(Some(s.objective)),
        );
    }
    let _ = writeln!(
        out,
        "results: {}/{{tasks.csv, accuracy_matrix.csv, metrics.json}}",
        dir.display()
    );
    out
}

/// The multi-learner comparison table.
pub fn comparison(name: &str, rows: &[crate::report::ComparisonRow], dir: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{name}: {} learners on identical streams and seeds\n",
        rows.len()
    );
    let _ = writeln!(
        out,
        "{:<22} {:>10} {:>9} {:>11} {:>10} {:>6} {:>9} {:>10} {:>9} {:>9} {:>6} {:>6}  status",
        "learner",
        "plasticity",
        "retention",
        "plast. last",
        "ret. last",
        "ACC",
        "BWT",
        "forgetting",
        "objective",
        "long hor.",
        "erank",
        "dead"
    );
    for r in rows {
        let s = r.summary.as_ref();
        let pp = |v: Option<f32>| v.map_or("—".into(), |v| format!("{:+.1}", 100.0 * v));
        let _ = writeln!(
            out,
            "{:<22} {:>10} {:>9} {:>11} {:>10} {:>6} {:>9} {:>10} {:>9} {:>9} {:>6} {:>6}  {}",
            r.learner,
            percent(s.map(|s| s.mean_plasticity)),
            percent(s.and_then(|s| s.mean_retention)),
            percent(s.and_then(|s| s.plasticity_last10)),
            percent(s.and_then(|s| s.retention_last10)),
            percent(s.map(|s| s.final_accuracy)),
            pp(s.and_then(|s| s.bwt)),
            pp(s.and_then(|s| s.forgetting)),
            percent(s.map(|s| s.objective)),
            percent(r.long_horizon),
            r.effective_rank.map_or("—".into(), |v| format!("{v:.1}")),
            r.dead_fraction
                .map_or("—".into(), |v| format!("{:.1}%", 100.0 * v)),
            r.status,
        );
    }
    let _ = writeln!(
        out,
        "\nplasticity, retention: means over tasks; plast. last, ret. last: means over the last {} tasks;\nlong hor.: the search objective LongHorizon() (README, \"Objectives for long runs\"); ACC: final mean over every task; BWT, forgetting in pp;\nerank, dead: at the last task's start. Per-task metrics: {}/<learner>/; table: {}/comparison.csv",
        crate::metrics::LAST_TASKS,
        dir.display(),
        dir.display()
    );
    out
}
