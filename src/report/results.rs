//! Reading a results directory, a search's journal or a `run`'s per-learner `metrics.json` files, into
//! two flat polars tables: one row per trial, one row per (trial, task). Every report table is built
//! from these two with polars expressions (`tables.rs`).

use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::Error;
use crate::metrics;
use crate::search::journal::{self, CandidateRecord, Entry, Stage, Subject, TrialRecord};
use crate::search::{SearchSpec, stage_name};

/// What produced the results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `synaptogen search` (a journal).
    Search,
    /// `synaptogen run` with one or more learners.
    Run,
}

/// The facts the report header states.
#[derive(Clone, Debug, Default)]
pub struct Header {
    /// The spec as RON.
    pub spec: String,
    /// Dataset of the search (or run).
    pub dataset: String,
    /// Held-out dataset, when a held-out check ran.
    pub held_out_dataset: Option<String>,
    /// Tasks per held-out trial, when a held-out check ran.
    pub held_out_tasks: Option<usize>,
    /// Tasks per rung (one entry for a run).
    pub rungs: Vec<usize>,
    /// Training seeds per evaluation.
    pub seeds: usize,
    /// The budget as the spec states it.
    pub budget: String,
    /// Candidate evaluations (candidate × rung) finished.
    pub evaluations: usize,
    /// Candidates born.
    pub candidates: usize,
    /// Children that shared an evaluated twin's results.
    pub cache_hits: usize,
    /// Wall time over every session, when the search snapshot says.
    pub wall_seconds: Option<f64>,
    /// The objective's definition.
    pub objective: String,
    /// The step size candidate rules read as `lr`.
    pub lr: Option<f32>,
    /// The command that produced the results, when recorded.
    pub command: Option<String>,
}

/// A results directory, loaded.
#[derive(Debug)]
pub struct Results {
    /// The search or run name.
    pub name: String,
    /// Search or run.
    pub source: Source,
    /// Header facts.
    pub header: Header,
    /// One row per trial (columns: see [`trial_frame`]).
    pub trials: DataFrame,
    /// One row per (trial, task): subject, stage, seed, task, plasticity, retention, effective_rank,
    /// density.
    pub curves: DataFrame,
    /// Every candidate born (search only), by id.
    pub candidates: Vec<CandidateRecord>,
    /// The search's spec (search only).
    pub search_spec: Option<SearchSpec>,
    /// How well shorter horizons order the top rung's subjects (search only; `None` with fewer than
    /// three subjects at the top rung).
    pub horizons: Option<super::horizons::Horizons>,
    /// Accuracy matrices kept by trials.
    pub matrices: Vec<KeptMatrix>,
    /// The stage the leaderboard ranks (the top rung, or `run`).
    pub top_stage: String,
    /// Warnings met while reading (a truncated journal line).
    pub warnings: Vec<String>,
}

/// A trial's accuracy matrix R (row t: accuracies after task t + 1; `None` where not tested).
#[derive(Clone, Debug)]
pub struct KeptMatrix {
    /// Whose.
    pub subject: String,
    /// At which stage.
    pub stage: String,
    /// With which seed.
    pub seed: u64,
    /// R.
    pub rows: Vec<Vec<Option<f32>>>,
}

/// One trial, flattened.
struct TrialRow {
    subject: String,
    kind: &'static str,
    candidate: Option<i64>,
    stage: String,
    tasks: i64,
    seed: u64,
    dataset: String,
    ending: String,
    completed: bool,
    objective: f64,
    plasticity: Option<f64>,
    retention: Option<f64>,
    plasticity_last10: Option<f64>,
    retention_last10: Option<f64>,
    acc: Option<f64>,
    bwt: Option<f64>,
    forgetting: Option<f64>,
    effective_rank: Option<f64>,
    dead_fraction: Option<f64>,
    density: Option<f64>,
    synaptic_ops: Option<f64>,
    complexity: Option<i64>,
    seconds: f64,
}

/// One (trial, task) point.
struct CurvePoint {
    subject: String,
    stage: String,
    seed: u64,
    task: i64,
    plasticity: f64,
    retention: Option<f64>,
    effective_rank: Option<f64>,
    density: Option<f64>,
}

/// The mean of `values`, `None` when there are none.
pub(super) fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// The display name of a subject: `#12` for candidate 12, the label for a baseline.
pub fn subject_name(subject: &Subject) -> String {
    match subject {
        Subject::Candidate(id) => format!("#{id}"),
        Subject::Baseline(label) => label.clone(),
    }
}

fn not_results(path: &Path, message: impl Into<String>) -> Error {
    Error::NotResults {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Loads `dir`: a search output directory (it has `journal.jsonl`) or a `run` output directory (it
/// has `metrics.json`, or one subdirectory with `metrics.json` per learner).
pub fn load(dir: &Path) -> Result<Results, Error> {
    if !dir.exists() {
        return Err(not_results(dir, "no such directory"));
    }
    if !dir.is_dir() {
        return Err(not_results(dir, "not a directory"));
    }
    let journal = dir.join("journal.jsonl");
    if journal.exists() {
        return load_search(dir, &journal);
    }
    let mut runs: Vec<PathBuf> = Vec::new();
    if dir.join("metrics.json").exists() {
        runs.push(dir.join("metrics.json"));
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| not_results(dir, format!("cannot list it ({e})")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("metrics.json").exists())
        .collect();
    subdirs.sort();
    runs.extend(subdirs.into_iter().map(|p| p.join("metrics.json")));
    if runs.is_empty() {
        return Err(not_results(
            dir,
            "neither a search (journal.jsonl) nor a run (metrics.json) is here; give the --out directory of `synaptogen search` or `synaptogen run`",
        ));
    }
    load_runs(dir, &runs)
}

fn load_search(dir: &Path, path: &Path) -> Result<Results, Error> {
    let contents = journal::read(path)?;
    let mut warnings: Vec<String> = contents.warning.into_iter().collect();
    let mut entries = contents.entries.into_iter();
    let Some(Entry::Header {
        name, spec, command, ..
    }) = entries.next()
    else {
        unreachable!("journal::read checks the header")
    };
    let spec: SearchSpec = *spec;
    let mut candidates: Vec<CandidateRecord> = Vec::new();
    let mut trials: Vec<TrialRecord> = Vec::new();
    for entry in entries {
        match entry {
            Entry::Candidate(c) => candidates.push(c),
            Entry::Trial(t) => trials.push(*t),
            Entry::Header { .. } => warnings.push(format!("{}: a second header is ignored", path.display())),
        }
    }
    if trials.is_empty() {
        return Err(not_results(
            path,
            "the search has no finished trial yet, so there is nothing to report; let it run (or --resume it) first",
        ));
    }
    candidates.sort_by_key(|c| c.id);
    let top = spec.fidelity.rungs.len() - 1;
    let mut rows = Vec::with_capacity(trials.len());
    let mut points = Vec::new();
    let mut matrices = Vec::new();
    for t in &trials {
        let r = &t.result;
        let subject = subject_name(&t.subject);
        let stage = stage_name(t.stage);
        let complexity = match t.subject {
            Subject::Candidate(id) => candidates
                .iter()
                .find(|c| c.id == id)
                .map(|c| c.complexity as i64),
            Subject::Baseline(_) => None,
        };
        rows.push(TrialRow {
            subject: subject.clone(),
            kind: if matches!(t.subject, Subject::Candidate(_)) {
                "candidate"
            } else {
                "baseline"
            },
            candidate: match t.subject {
                Subject::Candidate(id) => Some(id as i64),
                Subject::Baseline(_) => None,
            },
            stage: stage.clone(),
            tasks: r.tasks as i64,
            seed: t.seed,
            dataset: t.dataset.clone(),
            ending: match r.ending {
                crate::search::evaluate::Ending::Completed => "completed".into(),
                crate::search::evaluate::Ending::Aborted { task } => format!("aborted after {task} tasks"),
                crate::search::evaluate::Ending::Diverged { task } => format!("diverged in task {task}"),
            },
            completed: r.ending == crate::search::evaluate::Ending::Completed,
            objective: r.objective as f64,
            plasticity: mean(r.plasticity.iter().map(|x| *x as f64)),
            retention: mean(r.retention.iter().flatten().map(|x| *x as f64)),
            plasticity_last10: mean(metrics::last_tasks(&r.plasticity).iter().map(|x| *x as f64)),
            retention_last10: mean(
                metrics::last_tasks(&r.retention)
                    .iter()
                    .flatten()
                    .map(|x| *x as f64),
            ),
            acc: r.final_accuracy.map(f64::from),
            bwt: r.bwt.map(f64::from),
            forgetting: r.forgetting.map(f64::from),
            effective_rank: r.effective_rank.last().copied(),
            dead_fraction: r.dead_fraction.last().copied(),
            density: r.density.last().copied(),
            synaptic_ops: mean(r.synaptic_ops.iter().copied()),
            complexity,
            seconds: t.seconds,
        });
        for (i, p) in r.plasticity.iter().enumerate() {
            points.push(CurvePoint {
                subject: subject.clone(),
                stage: stage.clone(),
                seed: t.seed,
                task: i as i64 + 1,
                plasticity: *p as f64,
                retention: r.retention.get(i).copied().flatten().map(f64::from),
                effective_rank: r.effective_rank.get(i).copied(),
                density: r.density.get(i).copied(),
            });
        }
        if let Some(m) = &r.matrix {
            matrices.push(KeptMatrix {
                subject,
                stage,
                seed: t.seed,
                rows: m.clone(),
            });
        }
    }
    let evaluations = {
        let mut pairs: Vec<(usize, Stage)> = trials
            .iter()
            .filter_map(|t| match (&t.subject, t.stage) {
                (Subject::Candidate(id), Stage::Rung(k)) => Some((*id, Stage::Rung(k))),
                _ => None,
            })
            .collect();
        pairs.sort();
        pairs.dedup();
        pairs.len()
    };
    let wall_seconds = std::fs::read(dir.join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["elapsed"].as_f64());
    let held_out_ran = trials.iter().any(|t| t.stage == Stage::HeldOutDataset);
    let header = Header {
        spec: ron::ser::to_string_pretty(&spec, ron::ser::PrettyConfig::default())
            .unwrap_or_else(|_| format!("{spec:?}")),
        dataset: trials
            .iter()
            .find(|t| matches!(t.stage, Stage::Rung(_)))
            .map_or_else(
                || spec.benchmark.dataset.name().to_string(),
                |t| t.dataset.clone(),
            ),
        held_out_dataset: held_out_ran.then(|| {
            trials
                .iter()
                .find(|t| t.stage == Stage::HeldOutDataset)
                .map_or_else(String::new, |t| t.dataset.clone())
        }),
        held_out_tasks: trials
            .iter()
            .filter(|t| matches!(t.stage, Stage::HeldOutSeeds | Stage::HeldOutDataset))
            .map(|t| t.result.tasks)
            .max(),
        rungs: spec.fidelity.rungs.clone(),
        seeds: spec.seeds,
        budget: match (spec.budget.evaluations, spec.budget.minutes) {
            (Some(e), Some(m)) => format!("{e} evaluations or {m} minutes"),
            (Some(e), None) => format!("{e} evaluations"),
            (None, Some(m)) => format!("{m} minutes"),
            (None, None) => "none".into(),
        },
        evaluations,
        candidates: candidates.len(),
        cache_hits: candidates.iter().filter(|c| c.same_as.is_some()).count(),
        wall_seconds,
        objective: spec.objective.describe(),
        lr: Some(spec.learner.lr),
        command: (!command.is_empty()).then_some(command),
    };
    Ok(Results {
        name,
        source: Source::Search,
        header,
        trials: trial_frame(&rows)?,
        curves: curve_frame(&points)?,
        candidates,
        horizons: super::horizons::check(&trials, &spec),
        search_spec: Some(spec),
        matrices,
        top_stage: stage_name(Stage::Rung(top)),
        warnings,
    })
}

/// The parts of a run's `metrics.json` a report reads.
#[derive(serde::Deserialize)]
struct RunDocument {
    format: u32,
    name: String,
    learner: String,
    dataset: String,
    status: serde_json::Value,
    spec: crate::spec::RunSpec,
    summary: Option<crate::metrics::Summary>,
    tasks: Vec<crate::metrics::TaskRecord>,
    accuracy_matrix: crate::metrics::AccuracyMatrix,
}

fn load_runs(dir: &Path, paths: &[PathBuf]) -> Result<Results, Error> {
    let mut rows = Vec::new();
    let mut points = Vec::new();
    let mut matrices = Vec::new();
    let mut first: Option<RunDocument> = None;
    for path in paths {
        let bytes = std::fs::read(path).map_err(|e| not_results(path, format!("cannot read it ({e})")))?;
        let doc: RunDocument = serde_json::from_slice(&bytes).map_err(|e| {
            not_results(
                path,
                format!("not a metrics.json this synaptogen reads ({e}); rerun the run to rewrite it"),
            )
        })?;
        if doc.format != 1 {
            return Err(not_results(
                path,
                format!("written in format {}; this synaptogen reads format 1", doc.format),
            ));
        }
        let Some(summary) = &doc.summary else {
            continue;
        };
        let last = doc.tasks.last();
        rows.push(TrialRow {
            subject: doc.learner.clone(),
            kind: "learner",
            candidate: None,
            stage: "run".into(),
            tasks: doc.spec.benchmark.tasks as i64,
            seed: doc.spec.seed,
            dataset: doc.dataset.clone(),
            ending: match doc.status.as_str() {
                Some(s) => s.to_lowercase(),
                None => doc.status.to_string(),
            },
            completed: doc.status.as_str() == Some("Completed"),
            objective: summary.objective as f64,
            plasticity: Some(summary.mean_plasticity as f64),
            retention: summary.mean_retention.map(f64::from),
            plasticity_last10: summary.plasticity_last10.map(f64::from),
            retention_last10: summary.retention_last10.map(f64::from),
            acc: Some(summary.final_accuracy as f64),
            bwt: summary.bwt.map(f64::from),
            forgetting: summary.forgetting.map(f64::from),
            effective_rank: last.and_then(|r| mean(r.start.effective_rank.iter().copied())),
            dead_fraction: last.map(|r| r.start.dead_fraction),
            density: last.map(|r| r.density),
            synaptic_ops: mean(doc.tasks.iter().map(|r| r.start.synaptic_ops)),
            complexity: None,
            seconds: 0.0,
        });
        for r in &doc.tasks {
            points.push(CurvePoint {
                subject: doc.learner.clone(),
                stage: "run".into(),
                seed: doc.spec.seed,
                task: r.task as i64,
                plasticity: r.plasticity as f64,
                retention: r.retention.map(f64::from),
                effective_rank: mean(r.start.effective_rank.iter().copied()),
                density: Some(r.density),
            });
        }
        matrices.push(KeptMatrix {
            subject: doc.learner.clone(),
            stage: "run".into(),
            seed: doc.spec.seed,
            rows: doc.accuracy_matrix.rows.clone(),
        });
        first.get_or_insert(doc);
    }
    let Some(doc) = first else {
        return Err(not_results(
            dir,
            "no learner finished a task, so there is nothing to report",
        ));
    };
    let header = Header {
        spec: ron::ser::to_string_pretty(&doc.spec, ron::ser::PrettyConfig::default())
            .unwrap_or_else(|_| format!("{:?}", doc.spec)),
        dataset: doc.dataset.clone(),
        held_out_dataset: None,
        held_out_tasks: None,
        rungs: vec![doc.spec.benchmark.tasks],
        seeds: 1,
        budget: "—".into(),
        evaluations: rows.len(),
        candidates: 0,
        cache_hits: 0,
        wall_seconds: None,
        objective: "mean over tasks of (plasticity + retention) / 2 (plasticity alone on task 1)".into(),
        lr: doc.spec.learner.lr(),
        command: None,
    };
    Ok(Results {
        name: doc.name.clone(),
        source: Source::Run,
        header,
        trials: trial_frame(&rows)?,
        curves: curve_frame(&points)?,
        candidates: Vec::new(),
        search_spec: None,
        horizons: None,
        matrices,
        top_stage: "run".into(),
        warnings: Vec::new(),
    })
}

/// The trial table. Columns: subject, kind (candidate | baseline | learner), candidate (id or null),
/// stage, tasks, seed, dataset, ending, completed, objective, plasticity, retention, acc, bwt,
/// forgetting, effective_rank, dead_fraction, density, synaptic_ops, complexity, seconds.
fn trial_frame(rows: &[TrialRow]) -> Result<DataFrame, Error> {
    let s = |f: fn(&TrialRow) -> String| rows.iter().map(f).collect::<Vec<String>>();
    let o = |f: fn(&TrialRow) -> Option<f64>| rows.iter().map(f).collect::<Vec<Option<f64>>>();
    Ok(df!(
        "subject" => s(|r| r.subject.clone()),
        "kind" => s(|r| r.kind.to_string()),
        "candidate" => rows.iter().map(|r| r.candidate).collect::<Vec<_>>(),
        "stage" => s(|r| r.stage.clone()),
        "tasks" => rows.iter().map(|r| r.tasks).collect::<Vec<_>>(),
        "seed" => rows.iter().map(|r| r.seed).collect::<Vec<_>>(),
        "dataset" => s(|r| r.dataset.clone()),
        "ending" => s(|r| r.ending.clone()),
        "completed" => rows.iter().map(|r| r.completed).collect::<Vec<_>>(),
        "objective" => rows.iter().map(|r| r.objective).collect::<Vec<_>>(),
        "plasticity" => o(|r| r.plasticity),
        "retention" => o(|r| r.retention),
        "plasticity_last10" => o(|r| r.plasticity_last10),
        "retention_last10" => o(|r| r.retention_last10),
        "acc" => o(|r| r.acc),
        "bwt" => o(|r| r.bwt),
        "forgetting" => o(|r| r.forgetting),
        "effective_rank" => o(|r| r.effective_rank),
        "dead_fraction" => o(|r| r.dead_fraction),
        "density" => o(|r| r.density),
        "synaptic_ops" => o(|r| r.synaptic_ops),
        "complexity" => rows.iter().map(|r| r.complexity).collect::<Vec<_>>(),
        "seconds" => rows.iter().map(|r| r.seconds).collect::<Vec<_>>(),
    )?)
}

fn curve_frame(points: &[CurvePoint]) -> Result<DataFrame, Error> {
    Ok(df!(
        "subject" => points.iter().map(|p| p.subject.clone()).collect::<Vec<_>>(),
        "stage" => points.iter().map(|p| p.stage.clone()).collect::<Vec<_>>(),
        "seed" => points.iter().map(|p| p.seed).collect::<Vec<_>>(),
        "task" => points.iter().map(|p| p.task).collect::<Vec<_>>(),
        "plasticity" => points.iter().map(|p| p.plasticity).collect::<Vec<_>>(),
        "retention" => points.iter().map(|p| p.retention).collect::<Vec<_>>(),
        "effective_rank" => points.iter().map(|p| p.effective_rank).collect::<Vec<_>>(),
        "density" => points.iter().map(|p| p.density).collect::<Vec<_>>(),
    )?)
}
