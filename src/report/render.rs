//! Rendering a computed report as Markdown (renders on a code-hosting site; plots are SVG files beside
//! it) and as one self-contained HTML file (plots inline, no network access).

use std::fmt::Write as _;

use polars::prelude::DataFrame;

use super::horizons::Horizons;
use super::results::{Header, Source};
use super::tables::{FrontPoint, f64_at, string_at};

/// A plot: its file name (under `plots/`), a caption and the SVG text.
#[derive(Clone, Debug)]
pub struct Plot {
    /// File name, e.g. `curves_plasticity.svg`.
    pub file: String,
    /// One-line caption.
    pub caption: String,
    /// The SVG.
    pub svg: String,
}

/// One step of the winner's lineage.
#[derive(Clone, Debug)]
pub struct Step {
    /// Candidate name (`#12`).
    pub subject: String,
    /// How it came from the previous step (`seed: rules/x.rhai` for the first).
    pub change: String,
    /// Its best score, as text.
    pub score: String,
}

/// The winner's section.
#[derive(Clone, Debug)]
pub struct Winner {
    /// Its name.
    pub subject: String,
    /// The rule as Rhai (None for a built-in learner).
    pub rhai: Option<String>,
    /// The rule as formulas.
    pub formula: Option<String>,
    /// The command that exports it to Python (None for a built-in learner, or before `build` knows
    /// where the report goes).
    pub export: Option<String>,
    /// Variables it reads, with their meaning.
    pub reads: Vec<(String, String)>,
    /// From a seed rule to it.
    pub lineage: Vec<Step>,
    /// The accuracy-matrix heat map.
    pub heat_map: Option<Plot>,
}

/// Everything a report shows.
#[derive(Debug)]
pub struct Report {
    /// Search or run name.
    pub name: String,
    /// Search or run.
    pub source: Source,
    /// Header facts.
    pub header: Header,
    /// Where it was made from, and how to remake it.
    pub provenance: String,
    /// The stage ranked, in words ("20 tasks").
    pub stage_words: String,
    /// The leaderboard.
    pub leaderboard: DataFrame,
    /// Held-out results (empty when none ran).
    pub held_out: DataFrame,
    /// The Pareto front.
    pub front: Vec<FrontPoint>,
    /// Whether shorter horizons predict the top rung (a search with three or more subjects there).
    pub horizons: Option<Horizons>,
    /// Curve, Pareto and other plots, in order.
    pub plots: Vec<Plot>,
    /// The winner.
    pub winner: Option<Winner>,
    /// Files written beside the report.
    pub files: Vec<(String, String)>,
    /// Warnings met while reading.
    pub warnings: Vec<String>,
}

/// A subject's name as the tables print it: baselines in italics.
fn subject_cell(frame: &DataFrame, row: usize) -> String {
    let subject = string_at(frame, "subject", row).unwrap_or_default();
    if string_at(frame, "kind", row).as_deref() == Some("candidate") {
        subject
    } else {
        format!("*{subject}*")
    }
}

/// A cell: `mean ± ci` in `scale` units with `digits` decimals; just the mean when there is no CI.
fn cell(frame: &DataFrame, metric: &str, row: usize, scale: f64, digits: usize) -> String {
    match f64_at(frame, metric, row) {
        None => "—".into(),
        Some(m) => match f64_at(frame, &format!("{metric}_ci"), row) {
            Some(ci) => format!("{:.digits$} ± {:.digits$}", m * scale, ci * scale),
            None => format!("{:.digits$}", m * scale),
        },
    }
}

fn signed(frame: &DataFrame, metric: &str, row: usize, scale: f64) -> String {
    match f64_at(frame, metric, row) {
        None => "—".into(),
        Some(m) => match f64_at(frame, &format!("{metric}_ci"), row) {
            Some(ci) => format!("{:+.2} ± {:.2}", m * scale, ci * scale),
            None => format!("{:+.2}", m * scale),
        },
    }
}

/// The leaderboard as rows of cells, with its headers.
pub fn leaderboard_rows(board: &DataFrame) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let headers = vec![
        "rank",
        "subject",
        "seeds",
        "objective %",
        "Δ best baseline (pp)",
        "plasticity %",
        "retention %",
        "plasticity last 10 %",
        "retention last 10 %",
        "ACC %",
        "BWT (pp)",
        "forgetting (pp)",
        "erank",
        "dead %",
        "density %",
        "syn. ops/sample",
        "complexity",
    ];
    let rows = (0..board.height())
        .map(|i| {
            let mut name = subject_cell(board, i);
            // Functionally identical candidates share the row of the oldest.
            if let Some(same) = string_at(board, "same_results", i) {
                name.push_str(&format!(" (= {same})"));
            }
            // An aborted or diverged trial's objective covers fewer tasks: flag it.
            let (n, completed) = (f64_at(board, "n", i), f64_at(board, "completed_seeds", i));
            if let (Some(n), Some(c)) = (n, completed)
                && c < n
            {
                name.push_str(" †");
            }
            vec![
                (i + 1).to_string(),
                name,
                f64_at(board, "n", i).map_or("—".into(), |n| format!("{n:.0}")),
                cell(board, "objective", i, 100.0, 2),
                signed(board, "delta", i, 100.0),
                cell(board, "plasticity", i, 100.0, 2),
                cell(board, "retention", i, 100.0, 2),
                cell(board, "plasticity_last10", i, 100.0, 2),
                cell(board, "retention_last10", i, 100.0, 2),
                cell(board, "acc", i, 100.0, 2),
                cell(board, "bwt", i, 100.0, 2),
                cell(board, "forgetting", i, 100.0, 2),
                cell(board, "effective_rank", i, 1.0, 1),
                cell(board, "dead_fraction", i, 100.0, 1),
                cell(board, "density", i, 100.0, 1),
                f64_at(board, "synaptic_ops", i).map_or("—".into(), |x| format!("{x:.0}")),
                f64_at(board, "complexity", i).map_or("—".into(), |x| format!("{x:.0}")),
            ]
        })
        .collect();
    (headers, rows)
}

/// What the held-out check re-trained, in words.
fn held_out_words(r: &Report) -> String {
    let top = r.header.rungs.last().copied().unwrap_or(0);
    let horizon = match r.header.held_out_tasks {
        Some(t) if t != top => format!("on {t} tasks (the search's top rung: {top})"),
        _ => format!("at the top rung ({top} tasks)"),
    };
    format!(
        "The finalists re-trained {horizon} on seeds the search never used and on another dataset, beside \
         their search score; plasticity over the last {} tasks, retention, erank and dead units are the \
         held-out seeds' means.",
        crate::metrics::LAST_TASKS
    )
}

/// The held-out table as rows of cells, with its headers.
pub fn held_out_rows(table: &DataFrame) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let headers = vec![
        "subject",
        "search objective %",
        "held-out seeds %",
        "Δ best baseline (pp)",
        "held-out dataset %",
        "Δ best baseline (pp)",
        "plasticity last 10 %",
        "retention %",
        "erank",
        "dead %",
    ];
    let rows = (0..table.height())
        .map(|i| {
            vec![
                subject_cell(table, i),
                f64_at(table, "search", i).map_or("—".into(), |x| format!("{:.2}", 100.0 * x)),
                cell(table, "seeds", i, 100.0, 2),
                signed(table, "seeds_delta", i, 100.0),
                f64_at(table, "dataset", i).map_or("—".into(), |x| format!("{:.2}", 100.0 * x)),
                f64_at(table, "dataset_delta", i).map_or("—".into(), |x| format!("{:+.2}", 100.0 * x)),
                cell(table, "seeds_plasticity_last10", i, 100.0, 2),
                cell(table, "seeds_retention", i, 100.0, 2),
                cell(table, "seeds_effective_rank", i, 1.0, 1),
                cell(table, "seeds_dead_fraction", i, 100.0, 1),
            ]
        })
        .collect();
    (headers, rows)
}

/// The held-out dataset's columns of the held-out table (plasticity over the last tasks, retention,
/// erank, dead units) as rows of cells, with its headers; no rows when no dataset check ran.
pub fn held_out_dataset_rows(table: &DataFrame) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let headers = vec![
        "subject",
        "plasticity last 10 %",
        "retention %",
        "erank",
        "dead %",
    ];
    let rows = (0..table.height())
        .filter(|&i| f64_at(table, "dataset", i).is_some())
        .map(|i| {
            vec![
                subject_cell(table, i),
                cell(table, "dataset_plasticity_last10", i, 100.0, 2),
                cell(table, "dataset_retention", i, 100.0, 2),
                cell(table, "dataset_effective_rank", i, 1.0, 1),
                cell(table, "dataset_dead_fraction", i, 100.0, 1),
            ]
        })
        .collect();
    (headers, rows)
}

/// The winner minus each baseline in the held-out check, in points: plasticity over the last tasks and
/// retention, on the held-out seeds and on the held-out dataset; positive where the winner is ahead.
/// No rows when the winner was not re-checked. This is the comparison a long-horizon claim is judged
/// by, so a miss shows with its size.
pub fn winner_margin_rows(table: &DataFrame, winner: &str) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let headers = vec![
        "baseline",
        "plasticity last 10, seeds",
        "retention, seeds",
        "plasticity last 10, dataset",
        "retention, dataset",
    ];
    let Some(w) = (0..table.height()).find(|&i| string_at(table, "subject", i).as_deref() == Some(winner))
    else {
        return (headers, Vec::new());
    };
    let rows = (0..table.height())
        .filter(|&i| string_at(table, "kind", i).is_some_and(|k| k != "candidate"))
        .map(|i| {
            let margin = |column: &str| match (f64_at(table, column, w), f64_at(table, column, i)) {
                (Some(a), Some(b)) => format!("{:+.2}", 100.0 * (a - b)),
                _ => "—".into(),
            };
            vec![
                string_at(table, "subject", i).unwrap_or_default(),
                margin("seeds_plasticity_last10"),
                margin("seeds_retention"),
                margin("dataset_plasticity_last10"),
                margin("dataset_retention"),
            ]
        })
        .collect();
    (headers, rows)
}

/// The sentence above the winner's margins.
fn winner_margin_words(winner: &str) -> String {
    format!(
        "The winner ({winner}) minus each baseline, in points (positive: the winner is ahead), over the last {} tasks' plasticity and the mean retention:",
        crate::metrics::LAST_TASKS
    )
}

/// The verdict below the winner's margins: where it falls behind a baseline, by how much, or that it
/// does nowhere. Read from the rows `winner_margin_rows` made, so the sentence and the table agree.
pub fn winner_margin_verdict(headers: &[&str], rows: &[Vec<String>]) -> String {
    let behind: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let cells: Vec<String> = row[1..]
                .iter()
                .zip(&headers[1..])
                .filter(|(cell, _)| cell.parse::<f64>().is_ok_and(|v| v < 0.0))
                .map(|(cell, header)| format!("{header} {cell}"))
                .collect();
            (!cells.is_empty()).then(|| format!("{}: {}", row[0], cells.join(" · ")))
        })
        .collect();
    if behind.is_empty() {
        "The winner is at least every baseline on all four.".into()
    } else {
        format!("Where the winner falls behind, in points: {}.", behind.join("; "))
    }
}

/// The sentence above the held-out dataset's table.
fn held_out_dataset_words(r: &Report) -> String {
    format!(
        "On {}, the same measurements:",
        r.header
            .held_out_dataset
            .as_deref()
            .unwrap_or("the held-out dataset")
    )
}

/// The Pareto front as rows of cells, with its headers.
pub fn front_rows(front: &[FrontPoint]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let headers = vec!["subject", "plasticity %", "retention %", "complexity"];
    let rows = front
        .iter()
        .map(|p| {
            vec![
                p.subject.clone(),
                format!("{:.2}", 100.0 * p.plasticity),
                format!("{:.2}", 100.0 * p.retention),
                p.complexity.map_or("— (baseline)".into(), |c| c.to_string()),
            ]
        })
        .collect();
    (headers, rows)
}

/// The title of the horizon check's section.
const HORIZONS_TITLE: &str = "Does a shorter horizon predict the top rung?";

/// What the horizon check's table shows, and what to do when it says no.
fn horizons_words(h: &Horizons) -> String {
    let first = h.rows.iter().find(|r| r.rung);
    let verdict = match first {
        Some(r) if r.spearman < 0.3 => format!(
            " The first rung ({} tasks) orders these subjects {} the top rung does: it promotes the wrong rules, so lengthen it.",
            r.tasks,
            if r.spearman < 0.0 {
                "against the way"
            } else {
                "barely as"
            }
        ),
        _ => String::new(),
    };
    format!(
        "Spearman's rank correlation, over the {} subjects that completed the top rung ({} tasks), between their score over the first tasks of those trials and their score over all {}: 1 is the same order, below 0 a reversed one. A prefix scores nearly what a rung of its length would (the last task of a run tests retention on every earlier task, the others on a sample).{}",
        h.subjects, h.top, h.top, verdict
    )
}

/// The horizon check's table.
pub fn horizons_rows(h: &Horizons) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let rows = h
        .rows
        .iter()
        .map(|r| {
            vec![
                r.tasks.to_string(),
                if r.rung { "yes" } else { "" }.to_string(),
                format!("{:+.2}", r.spearman),
            ]
        })
        .collect();
    (
        vec!["first tasks", "a rung", "rank correlation with the top rung"],
        rows,
    )
}

/// A Markdown table.
pub fn markdown_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", headers.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(headers.len()));
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn html_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::from("<table>\n<thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            // Baselines are written *name* in Markdown; italic in HTML.
            let c = escape(c);
            let c = match c.strip_prefix('*').and_then(|c| c.strip_suffix('*')) {
                Some(inner) => format!("<em>{inner}</em>"),
                None => c,
            };
            let _ = write!(out, "<td>{c}</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

fn clock(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

fn header_rows(r: &Report) -> Vec<Vec<String>> {
    let h = &r.header;
    let mut rows = Vec::new();
    if let Some(c) = &h.command {
        rows.push(vec!["started with".into(), format!("`{c}`")]);
    }
    rows.extend([
        vec!["dataset".into(), h.dataset.clone()],
        vec![
            "tasks".into(),
            h.rungs
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" → "),
        ],
        vec!["seeds per evaluation".into(), h.seeds.to_string()],
        vec!["objective".into(), h.objective.clone()],
    ]);
    if r.source == Source::Search {
        rows.push(vec!["budget".into(), h.budget.clone()]);
        rows.push(vec!["evaluations".into(), h.evaluations.to_string()]);
        rows.push(vec![
            "candidates".into(),
            format!(
                "{} ({} functional-equivalence cache hits)",
                h.candidates, h.cache_hits
            ),
        ]);
        rows.push(vec![
            "wall time".into(),
            h.wall_seconds.map_or("unknown (no state.json)".into(), clock),
        ]);
        if let Some(d) = &h.held_out_dataset {
            rows.push(vec!["held-out dataset".into(), d.clone()]);
        }
    }
    if let Some(lr) = h.lr {
        rows.push(vec!["step size (lr)".into(), lr.to_string()]);
    }
    rows
}

/// The Markdown report.
pub fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let kind = match r.source {
        Source::Search => "Search",
        Source::Run => "Run",
    };
    let _ = writeln!(out, "# {kind} report: {}\n", r.name);
    let _ = writeln!(out, "{}\n", r.provenance);
    for w in &r.warnings {
        let _ = writeln!(out, "> **Warning:** {w}\n");
    }
    out.push_str(&markdown_table(&["", ""], &header_rows(r)));
    let _ = writeln!(
        out,
        "\n## Leaderboard ({})\n\nMeans over seeds with 95% confidence intervals (Student's t; none with one seed). Baselines in *italics*; Δ is the paired difference in objective to the best baseline on the same seeds. † marks a subject stopped early (aborted or diverged) on some seed.\n",
        r.stage_words
    );
    let (h, rows) = leaderboard_rows(&r.leaderboard);
    out.push_str(&markdown_table(&h, &rows));
    if r.held_out.height() > 0 {
        let _ = writeln!(
            out,
            "\n## Held-out check\n\n{} A rule that overfits the search's stream, or holds up only over the search's horizon, shows it here.\n",
            held_out_words(r)
        );
        let (h, rows) = held_out_rows(&r.held_out);
        out.push_str(&markdown_table(&h, &rows));
        let (h, rows) = held_out_dataset_rows(&r.held_out);
        if !rows.is_empty() {
            let _ = writeln!(out, "\n{}\n", held_out_dataset_words(r));
            out.push_str(&markdown_table(&h, &rows));
        }
        if let Some(w) = &r.winner {
            let (h, rows) = winner_margin_rows(&r.held_out, &w.subject);
            if !rows.is_empty() {
                let _ = writeln!(out, "\n{}\n", winner_margin_words(&w.subject));
                out.push_str(&markdown_table(&h, &rows));
                let _ = writeln!(out, "\n{}", winner_margin_verdict(&h, &rows));
            }
        }
    }
    if let Some(h) = &r.horizons {
        let _ = writeln!(out, "\n## {HORIZONS_TITLE}\n\n{}\n", horizons_words(h));
        let (head, rows) = horizons_rows(h);
        out.push_str(&markdown_table(&head, &rows));
    }
    let _ = writeln!(
        out,
        "\n## Pareto front: plasticity × retention\n\nNo other subject at this stage is at least as good on both and better on one.\n"
    );
    let (h, rows) = front_rows(&r.front);
    out.push_str(&markdown_table(&h, &rows));
    for p in &r.plots {
        let _ = writeln!(out, "\n![{}](plots/{})\n", p.caption, p.file);
    }
    if let Some(w) = &r.winner {
        let _ = writeln!(out, "\n## The winner: {}\n", w.subject);
        if let Some(rhai) = &w.rhai {
            let _ = writeln!(out, "```rhai\n{}```\n", rhai);
        }
        if let Some(command) = &w.export {
            let _ = writeln!(
                out,
                "{}\n",
                export_sentence(&format!("`{command}`"), "`--to torch`")
            );
        }
        if let Some(f) = &w.formula {
            let _ = writeln!(out, "As a formula:\n\n```text\n{f}```\n");
        }
        if !w.reads.is_empty() {
            let rows: Vec<Vec<String>> = w
                .reads
                .iter()
                .map(|(n, m)| vec![format!("`{n}`"), m.clone()])
                .collect();
            out.push_str("Variables it reads:\n\n");
            out.push_str(&markdown_table(&["variable", "meaning"], &rows));
        }
        if !w.lineage.is_empty() {
            out.push_str("\nLineage, from a seed rule to the winner:\n\n");
            let rows: Vec<Vec<String>> = w
                .lineage
                .iter()
                .map(|s| vec![s.subject.clone(), s.change.clone(), s.score.clone()])
                .collect();
            out.push_str(&markdown_table(&["candidate", "change", "best score"], &rows));
        }
        if let Some(p) = &w.heat_map {
            let _ = writeln!(out, "\n![{}](plots/{})\n", p.caption, p.file);
        }
    }
    out.push_str("\n## Data\n\n");
    for (file, what) in &r.files {
        let _ = writeln!(out, "- [`{file}`]({file}): {what}");
    }
    let _ = writeln!(
        out,
        "\n<details><summary>Spec</summary>\n\n```ron\n{}\n```\n</details>",
        r.header.spec
    );
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}\
td:first-child,th:first-child{text-align:left}th{background:#f4f4f4}pre{background:#f6f8fa;padding:.8em;overflow-x:auto}\
figure{margin:1em 0}figcaption{font-size:13px;color:#555}";

/// The self-contained HTML report: CSS, plots and data inline; nothing is fetched.
pub fn html(r: &Report) -> String {
    let mut out = String::new();
    let kind = match r.source {
        Source::Search => "Search",
        Source::Run => "Run",
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{kind} report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&r.name)
    );
    let _ = writeln!(
        out,
        "<h1>{kind} report: {}</h1>\n<p>{}</p>",
        escape(&r.name),
        escape(&r.provenance)
    );
    for w in &r.warnings {
        let _ = writeln!(out, "<p><strong>Warning:</strong> {}</p>", escape(w));
    }
    out.push_str(&html_table(&["", ""], &header_rows(r)));
    let _ = writeln!(
        out,
        "<h2>Leaderboard ({})</h2>\n<p>Means over seeds with 95% confidence intervals (Student's t; none with one seed). Baselines in <em>italics</em>; Δ is the paired difference in objective to the best baseline on the same seeds. † marks a subject stopped early (aborted or diverged) on some seed.</p>",
        escape(&r.stage_words)
    );
    let (h, rows) = leaderboard_rows(&r.leaderboard);
    out.push_str(&html_table(&h, &rows));
    if r.held_out.height() > 0 {
        let _ = writeln!(
            out,
            "<h2>Held-out check</h2>\n<p>{}</p>",
            escape(&held_out_words(r))
        );
        let (h, rows) = held_out_rows(&r.held_out);
        out.push_str(&html_table(&h, &rows));
        let (h, rows) = held_out_dataset_rows(&r.held_out);
        if !rows.is_empty() {
            let _ = writeln!(out, "<p>{}</p>", escape(&held_out_dataset_words(r)));
            out.push_str(&html_table(&h, &rows));
        }
        if let Some(w) = &r.winner {
            let (h, rows) = winner_margin_rows(&r.held_out, &w.subject);
            if !rows.is_empty() {
                let _ = writeln!(out, "<p>{}</p>", escape(&winner_margin_words(&w.subject)));
                out.push_str(&html_table(&h, &rows));
                let _ = writeln!(out, "<p>{}</p>", escape(&winner_margin_verdict(&h, &rows)));
            }
        }
    }
    if let Some(h) = &r.horizons {
        let _ = writeln!(
            out,
            "<h2>{HORIZONS_TITLE}</h2>\n<p>{}</p>",
            escape(&horizons_words(h))
        );
        let (head, rows) = horizons_rows(h);
        out.push_str(&html_table(&head, &rows));
    }
    out.push_str("<h2>Pareto front: plasticity × retention</h2>\n");
    let (h, rows) = front_rows(&r.front);
    out.push_str(&html_table(&h, &rows));
    for p in &r.plots {
        let _ = writeln!(
            out,
            "<figure class=\"plot\">{}<figcaption>{}</figcaption></figure>",
            p.svg,
            escape(&p.caption)
        );
    }
    if let Some(w) = &r.winner {
        let _ = writeln!(out, "<h2>The winner: {}</h2>", escape(&w.subject));
        if let Some(rhai) = &w.rhai {
            let _ = writeln!(out, "<pre><code>{}</code></pre>", escape(rhai));
        }
        if let Some(command) = &w.export {
            let code = format!("<code>{}</code>", escape(command));
            let _ = writeln!(
                out,
                "<p>{}</p>",
                export_sentence(&code, "<code>--to torch</code>")
            );
        }
        if let Some(f) = &w.formula {
            let _ = writeln!(out, "<p>As a formula:</p>\n<pre>{}</pre>", escape(f));
        }
        if !w.reads.is_empty() {
            let rows: Vec<Vec<String>> = w.reads.iter().map(|(n, m)| vec![n.clone(), m.clone()]).collect();
            out.push_str("<p>Variables it reads:</p>\n");
            out.push_str(&html_table(&["variable", "meaning"], &rows));
        }
        if !w.lineage.is_empty() {
            out.push_str("<p>Lineage, from a seed rule to the winner:</p>\n");
            let rows: Vec<Vec<String>> = w
                .lineage
                .iter()
                .map(|s| vec![s.subject.clone(), s.change.clone(), s.score.clone()])
                .collect();
            out.push_str(&html_table(&["candidate", "change", "best score"], &rows));
        }
        if let Some(p) = &w.heat_map {
            let _ = writeln!(
                out,
                "<figure class=\"plot\">{}<figcaption>{}</figcaption></figure>",
                p.svg,
                escape(&p.caption)
            );
        }
    }
    out.push_str("<h2>Data</h2>\n<ul>\n");
    for (file, what) in &r.files {
        let _ = writeln!(out, "<li><code>{}</code>: {}</li>", escape(file), escape(what));
    }
    out.push_str("</ul>\n");
    let _ = writeln!(
        out,
        "<details><summary>Spec</summary><pre>{}</pre></details>",
        escape(&r.header.spec)
    );
    // A self-check a browser can run: how many figures were laid out with a size, and how many
    // resources were fetched (a self-contained report fetches none). Tests read these attributes.
    out.push_str(
        "<script>window.addEventListener('load',function(){var s=document.querySelectorAll('figure.plot svg'),ok=0;\
for(var i=0;i<s.length;i++){var b=s[i].getBBox();if(b.width>0&&b.height>0&&s[i].childElementCount>0)ok++;}\
document.body.setAttribute('data-plots',s.length);document.body.setAttribute('data-plots-rendered',ok);\
document.body.setAttribute('data-resources',performance.getEntriesByType('resource').length);});</script>\n",
    );
    out.push_str("</body>\n</html>\n");
    out
}

/// The sentence under the winner's rule that says how to take it to Python; `command` and `torch` (the
/// other target's flag) are already marked up.
pub fn export_sentence(command: &str, torch: &str) -> String {
    format!(
        "To use it in Python: {command} (or {torch}) writes it as a module with one function per \
         section, equal to synaptogen bit for bit (README, \"Exporting a rule to Python\")."
    )
}
