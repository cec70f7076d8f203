//! `synaptogen report`: load a results directory, compute the tables and plots, and write the report
//! with its data files.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::render::{self, Plot, Report, Step, Winner};
use super::results::{self, Results, Source};
use super::tables::{self, FrontPoint, f64_at, string_at};
use super::{Error, write_atomic};
use crate::rule::vocab;
use crate::search::journal::Origin;
use crate::search::lineage::Lineage;

/// Candidates on the leaderboard (every baseline is shown too).
const LEADERBOARD_CANDIDATES: usize = 10;
/// Candidates whose curves are drawn against the baselines.
const CURVE_CANDIDATES: usize = 3;

/// What a report run produced.
#[derive(Debug)]
pub struct Written {
    /// The output directory.
    pub dir: PathBuf,
    /// The winner, if any.
    pub winner: Option<String>,
    /// Warnings met while reading.
    pub warnings: Vec<String>,
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    write_atomic(&dir.join(name), bytes)
}

fn csv(frame: &mut DataFrame) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    CsvWriter::new(&mut bytes).finish(frame)?;
    Ok(bytes)
}

/// Today's date (UTC) as YYYY-MM-DD, from the system clock (civil-from-days, proleptic Gregorian).
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Builds the report of `results_dir` into `out_dir` (default `reports/<name>/`). `command` is how it
/// was asked for, stated in the report with the date.
pub fn build(results_dir: &Path, out_dir: Option<&Path>, command: &str) -> Result<Written, Error> {
    let results = results::load(results_dir)?;
    let provenance = format!(
        "Made by `{command}` on {} from `{}`.",
        today(),
        results_dir.display()
    );
    let out_dir = out_dir.map_or_else(|| Path::new("reports").join(&results.name), Path::to_path_buf);
    let out_dir = out_dir.as_path();
    let report = compute(&results, &provenance)?;
    crate::report::RunFiles::create(out_dir)?;
    let plots_dir = out_dir.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(|source| Error::Unwritable {
        path: plots_dir.clone(),
        source,
    })?;
    for p in report
        .plots
        .iter()
        .chain(report.winner.iter().flat_map(|w| w.heat_map.iter()))
    {
        write_file(&plots_dir, &p.file, p.svg.as_bytes())?;
    }
    write_file(out_dir, "leaderboard.csv", &csv(&mut report.leaderboard.clone())?)?;
    let mut parquet = Vec::new();
    ParquetWriter::new(&mut parquet).finish(&mut results.trials.clone())?;
    write_file(out_dir, "evaluations.parquet", &parquet)?;
    let everyone: Vec<String> = report
        .leaderboard
        .column("subject")?
        .str()?
        .iter()
        .flatten()
        .map(str::to_string)
        .collect();
    let mut all_curves = tables::curves(&results.curves, &results.top_stage, &everyone)?;
    write_file(out_dir, "curves.csv", &csv(&mut all_curves)?)?;
    if results.source == Source::Search {
        let lineage = Lineage::from_candidates(&results.candidates);
        let dot = lineage.to_dot(|id| {
            let c = &results.candidates[id];
            format!("#{id} {}", &c.hash[..8.min(c.hash.len())])
        });
        write_file(out_dir, "lineage.dot", dot.as_bytes())?;
        if let Some(rhai) = report.winner.as_ref().and_then(|w| w.rhai.as_ref()) {
            write_file(out_dir, "best.rhai", rhai.as_bytes())?;
        }
    }
    write_file(out_dir, "report.md", render::markdown(&report).as_bytes())?;
    write_file(out_dir, "report.html", render::html(&report).as_bytes())?;
    Ok(Written {
        dir: out_dir.to_path_buf(),
        winner: report.winner.map(|w| w.subject),
        warnings: report.warnings,
    })
}

/// Computes every table and plot.
pub fn compute(results: &Results, provenance: &str) -> Result<Report, Error> {
    let stage = &results.top_stage;
    let leaderboard = tables::leaderboard(&results.trials, stage, LEADERBOARD_CANDIDATES)?;
    let held_out = tables::held_out(&results.trials, stage)?;
    let summary = tables::summarise(&results.trials, stage)?;
    let points = tables::front_points(&summary)?;
    let front = tables::pareto_front(&points);
    let kinds: Vec<(String, String)> = (0..summary.height())
        .filter_map(|i| {
            Some((
                string_at(&summary, "subject", i)?,
                string_at(&summary, "kind", i)?,
            ))
        })
        .collect();
    let is_baseline = |s: &str| kinds.iter().any(|(n, k)| n == s && k != "candidate");
    let tasks = results.header.rungs.last().copied().unwrap_or(0);
    let stage_words = match results.source {
        Source::Search => format!("top rung, {tasks} tasks"),
        Source::Run => format!("{tasks} tasks"),
    };

    // Curves: the best candidates and every baseline (a run: every learner).
    let chosen: Vec<String> = (0..leaderboard.height())
        .filter_map(|i| {
            let subject = string_at(&leaderboard, "subject", i)?;
            Some(subject)
        })
        .filter({
            let mut candidates = 0;
            move |s| {
                if is_baseline(s) || results.source == Source::Run {
                    true
                } else {
                    candidates += 1;
                    candidates <= CURVE_CANDIDATES
                }
            }
        })
        .collect();
    let curve_table = tables::curves(&results.curves, stage, &chosen)?;
    let mut plots = Vec::new();
    for (metric, title, unit, scale) in [
        (
            "plasticity",
            "Plasticity: accuracy on each new task",
            "% (R[t][t])",
            100.0,
        ),
        (
            "retention",
            "Retention: mean accuracy on earlier tasks",
            "%",
            100.0,
        ),
        (
            "effective_rank",
            "Effective rank of the hidden layer at each task start",
            "rank",
            1.0,
        ),
        ("density", "Density: fraction of synapses present", "%", 100.0),
    ] {
        let series: Vec<crate::report::plots::Series> = chosen
            .iter()
            .map(|s| {
                let rows: Vec<usize> = (0..curve_table.height())
                    .filter(|&i| string_at(&curve_table, "subject", i).as_deref() == Some(s))
                    .collect();
                crate::report::plots::Series {
                    label: s.clone(),
                    baseline: is_baseline(s),
                    points: rows
                        .iter()
                        .filter_map(|&i| {
                            Some((
                                f64_at(&curve_table, "task", i)?,
                                f64_at(&curve_table, metric, i)? * scale,
                            ))
                        })
                        .collect(),
                }
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        plots.push(Plot {
            file: format!("curves_{metric}.svg"),
            caption: format!("{title}, mean over seeds ({stage_words})."),
            svg: crate::report::plots::curves(title, unit, &series)?,
        });
    }
    let marked: Vec<(FrontPoint, bool)> = points
        .iter()
        .map(|p| (p.clone(), is_baseline(&p.subject)))
        .collect();
    plots.push(Plot {
        file: "pareto.svg".into(),
        caption: "Pareto front of plasticity × retention (red); grey dots: candidates; triangles: baselines."
            .into(),
        svg: crate::report::plots::pareto(&marked, &front)?,
    });

    let winner = winner(results, &leaderboard)?;
    let mut files = vec![
        (
            "report.html".to_string(),
            "this report, self-contained".to_string(),
        ),
        (
            "leaderboard.csv".into(),
            "the leaderboard with means, standard deviations and CI half-widths".into(),
        ),
        ("evaluations.parquet".into(), "every trial, one row each".into()),
        (
            "curves.csv".into(),
            "per-task means over seeds at the ranked stage, every subject".into(),
        ),
    ];
    if results.source == Source::Search {
        files.push((
            "lineage.dot".into(),
            "every candidate's parent and mutation (Graphviz)".into(),
        ));
        if winner.as_ref().is_some_and(|w| w.rhai.is_some()) {
            files.push((
                "best.rhai".into(),
                "the winner, ready for `synaptogen run --rule`".into(),
            ));
        }
    }
    Ok(Report {
        name: results.name.clone(),
        source: results.source,
        header: results.header.clone(),
        provenance: provenance.to_string(),
        stage_words,
        leaderboard,
        held_out,
        front,
        plots,
        winner,
        files,
        warnings: results.warnings.clone(),
    })
}

/// The winner: the leaderboard's first candidate (a run: its best learner). Chosen by the search score
/// alone, so the held-out check stays a check and never a second selection.
fn winner(results: &Results, leaderboard: &DataFrame) -> Result<Option<Winner>, Error> {
    let first_candidate = |frame: &DataFrame| {
        (0..frame.height()).find_map(|i| {
            let kind = string_at(frame, "kind", i)?;
            (kind != "baseline")
                .then(|| string_at(frame, "subject", i))
                .flatten()
        })
    };
    let Some(subject) = first_candidate(leaderboard) else {
        return Ok(None);
    };
    // The search-stage matrix, where the winner was chosen; the held-out one when that is all there is.
    let of = |stage: Option<&str>| {
        results
            .matrices
            .iter()
            .find(|m| m.subject == subject && stage.is_none_or(|s| m.stage == s))
    };
    let matrix = of(Some(&results.top_stage))
        .or_else(|| of(Some("held_out_seeds")))
        .or_else(|| of(None));
    let heat_map = match matrix {
        Some(m) => Some(Plot {
            file: "accuracy_matrix.svg".into(),
            caption: format!(
                "Accuracy matrix R of {subject} ({}, seed {}); blank: not tested.",
                m.stage, m.seed
            ),
            svg: crate::report::plots::heat_map(&format!("{subject}: accuracy matrix R"), &m.rows)?,
        }),
        None => None,
    };
    let id = subject.strip_prefix('#').and_then(|n| n.parse::<usize>().ok());
    let record = id.and_then(|id| results.candidates.iter().find(|c| c.id == id));
    let Some(record) = record else {
        return Ok(Some(Winner {
            subject,
            rhai: None,
            formula: None,
            reads: Vec::new(),
            lineage: Vec::new(),
            heat_map,
        }));
    };
    let compiled = crate::rule::compile(&record.source, Path::new("winner.rhai")).ok();
    let formula = compiled.as_ref().map(|c| c.canonical.to_formula());
    let mut reads: Vec<(String, String)> = Vec::new();
    if let Some(c) = &compiled {
        for section in c.canonical.sections.keys() {
            for name in c.canonical.reads(*section) {
                if !reads.iter().any(|(n, _)| n == name) {
                    let meaning = vocab::lookup(name).map_or("", |v| v.meaning);
                    reads.push((name.to_string(), meaning.to_string()));
                }
            }
        }
    }
    let lineage = Lineage::from_candidates(&results.candidates);
    let score_of = |id: usize| -> String {
        let name = format!("#{id}");
        // The best (highest-rung) mean objective of this candidate, from the trial table.
        let best = results
            .trials
            .clone()
            .lazy()
            .filter(
                col("subject")
                    .eq(lit(name.as_str()))
                    .and(col("stage").neq(lit("held_out_seeds")))
                    .and(col("stage").neq(lit("held_out_dataset"))),
            )
            .group_by_stable([col("stage")])
            .agg([col("objective").mean(), col("tasks").first()])
            .sort(
                ["tasks"],
                SortMultipleOptions::default().with_order_descending(true),
            )
            .limit(1)
            .collect();
        match best {
            Ok(b) if b.height() > 0 => format!(
                "{:.2}% ({} tasks)",
                100.0 * f64_at(&b, "objective", 0).unwrap_or(f64::NAN),
                f64_at(&b, "tasks", 0).unwrap_or(0.0)
            ),
            _ => "—".into(),
        }
    };
    let steps = lineage
        .ancestry(record.id)
        .into_iter()
        .map(|(id, step)| {
            let change = match (&results.candidates[id].origin, step) {
                (Origin::Seed { path }, _) => format!("seed rule {}", path.display()),
                (_, Some(s)) => format!("{}: {}", s.kind, s.detail),
                (_, None) => "—".into(),
            };
            Step {
                subject: format!("#{id}"),
                change,
                score: score_of(id),
            }
        })
        .collect();
    Ok(Some(Winner {
        subject,
        rhai: Some(format!(
            "// Winner of search '{}': candidate #{}, hash {}.\n{}",
            results.name, record.id, record.hash, record.source
        )),
        formula,
        reads,
        lineage: steps,
        heat_map,
    }))
}
