//! `synaptogen report`: load a results directory, compute the tables and plots, and write the report
//! with its data files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use polars_io::prelude::{CsvWriter, ParquetWriter, SerWriter};

use super::Error;
use super::render::{self, Plot, Report, Step, Winner};
use super::results::{self, Results, Source};
use super::tables::{self, FrontPoint, f64_at, string_at};
use crate::files;
use crate::search::SearchSpec;
use crate::search::journal::{CandidateRecord, Origin};
use crate::search::lineage::Lineage;
use crate::spec::{LearnerSpec, RuleSpec};

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
    /// The command that exports the winner's rule to Python (a search's report).
    pub export: Option<String>,
    /// Warnings met while reading.
    pub warnings: Vec<String>,
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    Ok(files::write_atomic(&dir.join(name), bytes)?)
}

fn csv(frame: &mut DataFrame) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    CsvWriter::new(&mut bytes).finish(frame)?;
    Ok(bytes)
}

/// Builds the report of `results_dir` into `out_dir` (default `reports/<name>/`). `command` is how it
/// was asked for, stated in the report with the date.
pub fn build(results_dir: &Path, out_dir: Option<&Path>, command: &str) -> Result<Written, Error> {
    let results = results::load(results_dir)?;
    let provenance = format!(
        "Made by `{command}` on {} from `{}`.",
        files::utc_today(),
        results_dir.display()
    );
    let out_dir = out_dir.map_or_else(|| Path::new("reports").join(&results.name), Path::to_path_buf);
    let out_dir = out_dir.as_path();
    let mut report = compute(&results, &provenance)?;
    if results.source == Source::Search
        && let Some(winner) = report.winner.as_mut().filter(|w| w.rhai.is_some())
    {
        winner.export = Some(export_command(out_dir));
    }
    files::create_dir(out_dir)?;
    let plots_dir = out_dir.join("plots");
    files::create_dir(&plots_dir)?;
    let plots: Vec<&Plot> = report
        .plots
        .iter()
        .chain(report.winner.iter().flat_map(|w| w.heat_map.iter()))
        .collect();
    // A plot an earlier report of this directory drew and this one does not (a density plot, say)
    // would otherwise stay beside the new report as if it belonged to it.
    if let Ok(entries) = std::fs::read_dir(&plots_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".svg") && !plots.iter().any(|p| p.file == name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    for p in plots {
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
        write_rule_files(&results, out_dir)?;
    }
    write_file(out_dir, "report.md", render::markdown(&report).as_bytes())?;
    write_file(out_dir, "report.html", render::html(&report).as_bytes())?;
    Ok(Written {
        dir: out_dir.to_path_buf(),
        export: report.winner.as_ref().and_then(|w| w.export.clone()),
        winner: report.winner.map(|w| w.subject),
        warnings: report.warnings,
    })
}

/// The command that exports the winner written into `out_dir` to NumPy.
pub fn export_command(out_dir: &Path) -> String {
    format!(
        "synaptogen export {} --to numpy",
        out_dir.join("best.rhai").display()
    )
}

/// Computes every table and plot.
pub fn compute(results: &Results, provenance: &str) -> Result<Report, Error> {
    let stage = &results.top_stage;
    let leaderboard = tables::leaderboard(&results.trials, stage, LEADERBOARD_CANDIDATES)?;
    let held_out = tables::held_out(&results.trials, stage)?;
    let summary = tables::summarize(&results.trials, stage)?;
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
        let series: Vec<super::plots::Series> = chosen
            .iter()
            .map(|s| {
                let rows: Vec<usize> = (0..curve_table.height())
                    .filter(|&i| string_at(&curve_table, "subject", i).as_deref() == Some(s))
                    .collect();
                super::plots::Series {
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
        // Every network dense throughout: a density plot would be one flat line at 100%.
        let all_dense = series
            .iter()
            .flat_map(|s| s.points.iter())
            .all(|&(_, y)| y >= 100.0 * (1.0 - 1e-9));
        if metric == "density" && all_dense {
            continue;
        }
        plots.push(Plot {
            file: format!("curves_{metric}.svg"),
            caption: format!("{title}, mean over seeds ({stage_words})."),
            svg: super::plots::curves(title, unit, &series)?,
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
        svg: super::plots::pareto(&marked, &front)?,
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
        horizons: results.horizons.clone(),
        plots,
        winner,
        files,
        warnings: results.warnings.clone(),
    })
}

/// The search's winner, by the one ranking every writer uses: the candidate at the highest rung any
/// candidate reached, with the best mean objective there (functionally identical candidates count as
/// the oldest), ties to the older candidate. The search itself ranks the same way
/// (`search::state::rank_order`). Chosen by the search score alone, so the held-out check stays a
/// check and never a second selection. `None` for a run, or when no candidate was scored.
pub fn winning_candidate(results: &Results) -> Result<Option<&CandidateRecord>, Error> {
    if results.source != Source::Search {
        return Ok(None);
    }
    for k in (0..results.header.rungs.len()).rev() {
        let board = tables::leaderboard(&results.trials, &format!("rung{k}"), 1)?;
        let first = (0..board.height()).find_map(|i| {
            (string_at(&board, "kind", i)? == "candidate")
                .then(|| f64_at(&board, "candidate", i))
                .flatten()
        });
        if let Some(id) = first {
            return Ok(results.candidates.iter().find(|c| c.id as f64 == id));
        }
    }
    Ok(None)
}

/// The text of `best.rhai`: the winner's source under a line naming it.
fn best_rhai(results: &Results, record: &CandidateRecord) -> String {
    format!(
        "// Winner of search '{}': candidate #{}, hash {}.\n{}",
        results.name, record.id, record.hash, record.source
    )
}

/// Writes `lineage.dot` and `best.rhai` into `dir`: the one writer of both, for a search's own
/// directory (after it finishes) and for its report. Returns the winner's name.
pub fn write_rule_files(results: &Results, dir: &Path) -> Result<Option<String>, Error> {
    let scores = best_scores(results)?;
    let dot = Lineage::from_candidates(&results.candidates).to_dot(|id| {
        let c = &results.candidates[id];
        let hash = &c.hash[..8.min(c.hash.len())];
        match scores.get(&id) {
            Some((objective, tasks)) => format!("#{id} {hash}\n{:.2}% ({tasks} tasks)", 100.0 * objective),
            None => format!("#{id} {hash}"),
        }
    });
    write_file(dir, "lineage.dot", dot.as_bytes())?;
    let winner = winning_candidate(results)?;
    if let Some(record) = winner {
        write_file(dir, "best.rhai", best_rhai(results, record).as_bytes())?;
        if let Some(spec) = &results.search_spec {
            write_file(
                dir,
                "best.ron",
                best_ron(spec, &results.name, record, dir).as_bytes(),
            )?;
        }
    }
    Ok(winner.map(|r| format!("#{}", r.id)))
}

/// A run spec that trains the winner (`best.rhai` in `dir`) as the search trained it at its top
/// rung, on its first training seed, beside the search's baselines: `synaptogen run best.ron`
/// reproduces that comparison, and `--seed`/`--tasks` move it to held-out seeds or a longer horizon.
/// The rule's path is `dir`'s, so it resolves from where the search was started (the repository
/// root for `reports/<name>/`).
fn best_ron(spec: &SearchSpec, name: &str, record: &CandidateRecord, dir: &Path) -> String {
    let mut run = spec.run_spec(spec.top_tasks(), spec.seed);
    run.name = Some(format!("{name}-best"));
    run.learner = LearnerSpec::Rule(RuleSpec {
        path: Some(dir.join("best.rhai")),
        ..spec.learner.clone()
    });
    run.baselines = spec.baselines.clone();
    let held_out = spec.seed + crate::search::HELD_OUT_SEED_OFFSET;
    let body = ron::ser::to_string_pretty(
        &run,
        ron::ser::PrettyConfig::default().depth_limit(2).extensions(
            ron::extensions::Extensions::IMPLICIT_SOME | ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES,
        ),
    )
    .expect("run specs serialise");
    format!(
        "// The winner of search '{name}' (candidate #{id}, hash {hash}) trained as the search trained it at its\n\
         // top rung ({tasks} tasks, training seed {seed}), beside the search's baselines:\n\
         //\n\
         //   synaptogen run {path}\n\
         //   synaptogen run {path} --seed {held_out} --out runs/{name}-best-s{held_out}   (a held-out seed)\n\
         //   synaptogen run {path} --tasks {longer}                                       (a longer sequence)\n\
         {body}\n",
        id = record.id,
        hash = record.hash,
        tasks = spec.top_tasks(),
        seed = spec.seed,
        path = dir.join("best.ron").display(),
        longer = spec.held_out_tasks().max(spec.top_tasks() * 2),
    )
}

/// Loads the search in `results_dir` and writes its `lineage.dot` and `best.rhai` beside its journal
/// ([`write_rule_files`]). Returns the winner's name.
pub fn write_search_files(results_dir: &Path) -> Result<Option<String>, Error> {
    let results = results::load(results_dir)?;
    write_rule_files(&results, results_dir)
}

/// Per candidate id, its mean objective over seeds at the highest rung it reached, and that rung's
/// task count.
fn best_scores(results: &Results) -> Result<BTreeMap<usize, (f64, u32)>, Error> {
    let table = results
        .trials
        .clone()
        .lazy()
        .filter(
            col("candidate")
                .is_not_null()
                .and(col("stage").neq(lit("held_out_seeds")))
                .and(col("stage").neq(lit("held_out_dataset"))),
        )
        .group_by_stable([col("candidate"), col("stage")])
        .agg([col("objective").mean(), col("tasks").first()])
        .collect()?;
    let mut best: BTreeMap<usize, (f64, u32)> = BTreeMap::new();
    for i in 0..table.height() {
        let (Some(id), Some(objective), Some(tasks)) = (
            f64_at(&table, "candidate", i),
            f64_at(&table, "objective", i),
            f64_at(&table, "tasks", i),
        ) else {
            continue;
        };
        let entry = best.entry(id as usize).or_insert((objective, tasks as u32));
        if tasks as u32 > entry.1 {
            *entry = (objective, tasks as u32);
        }
    }
    Ok(best)
}

/// The winner's section of the report ([`winning_candidate`]; a run: its best learner).
fn winner(results: &Results, leaderboard: &DataFrame) -> Result<Option<Winner>, Error> {
    let record = winning_candidate(results)?;
    let subject = match record {
        Some(r) => format!("#{}", r.id),
        None if results.source == Source::Run => {
            let Some(first) = string_at(leaderboard, "subject", 0) else {
                return Ok(None);
            };
            first
        }
        None => return Ok(None),
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
            svg: super::plots::heat_map(&format!("{subject}: accuracy matrix R"), &m.rows)?,
        }),
        None => None,
    };
    let Some(record) = record else {
        return Ok(Some(Winner {
            subject,
            rhai: None,
            formula: None,
            export: None,
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
            for var in c.canonical.reads(*section) {
                if !reads.iter().any(|(n, _)| n == var.name()) {
                    reads.push((var.name().to_string(), var.entry().meaning.to_string()));
                }
            }
        }
    }
    let lineage = Lineage::from_candidates(&results.candidates);
    let scores = best_scores(results)?;
    let score_of = |id: usize| -> String {
        scores.get(&id).map_or("—".into(), |(objective, tasks)| {
            format!("{:.2}% ({tasks} tasks)", 100.0 * objective)
        })
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
        rhai: Some(best_rhai(results, record)),
        formula,
        export: None,
        reads,
        lineage: steps,
        heat_map,
    }))
}
