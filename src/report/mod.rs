//! Everything synaptogen writes for a person to read or a program to load.
//!
//! Two kinds of output. The per-run files of `synaptogen run` ([`RunFiles`], here): `tasks.csv` (one
//! row per task), `accuracy_matrix.csv` (R, blank where not measured) and `metrics.json` (spec, status,
//! summary, records and matrix together), rewritten atomically after every finished task, so a crash
//! or Ctrl-C leaves every finished task on disk and never a half-written file. And the ranked reports
//! of `synaptogen report` ([`build`]): [`results`] reads a search journal or a run's metrics into polars
//! tables, [`tables`] computes the leaderboard, held-out table, curves and Pareto front with polars
//! expressions, [`plots`] draws SVG (plotters), [`render`] writes Markdown and self-contained HTML.

pub mod build;
pub mod horizons;
pub mod plots;
pub mod render;
pub mod results;
pub mod tables;

pub use build::build;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::metrics::{AccuracyMatrix, Summary, TaskRecord};
use crate::run::Status;
use crate::spec::RunSpec;

/// Errors writing output files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An output directory or file cannot be written.
    #[error(transparent)]
    Files(#[from] crate::files::Error),
    /// The directory given to `synaptogen report` holds nothing it can report.
    #[error("{path}: {message}")]
    NotResults {
        /// The directory or file.
        path: PathBuf,
        /// Why, and what to give instead.
        message: String,
    },
    /// The search journal cannot be read.
    #[error(transparent)]
    Journal(#[from] crate::search::journal::Error),
    /// A table could not be computed (a bug: the tables are built from data we wrote).
    #[error("building a report table: {0}")]
    Table(#[from] polars::error::PolarsError),
    /// A plot could not be drawn.
    #[error("drawing a plot: {0}")]
    Plot(String),
}

impl Error {
    /// Whether the user can fix it by changing their input (exit status 2).
    pub fn is_input(&self) -> bool {
        match self {
            Error::Files(e) => e.is_input(),
            Error::NotResults { .. } | Error::Journal(_) => true,
            Error::Table(_) | Error::Plot(_) => false,
        }
    }
}

/// The output directory of one `synaptogen run` learner.
#[derive(Debug)]
pub struct RunFiles {
    dir: PathBuf,
}

/// What `metrics.json` holds.
#[derive(Serialize)]
struct RunDocument<'a> {
    format: u32,
    name: &'a str,
    learner: &'a str,
    dataset: &'a str,
    status: &'a Status,
    spec: &'a RunSpec,
    summary: Option<&'a Summary>,
    tasks: &'a [TaskRecord],
    accuracy_matrix: &'a AccuracyMatrix,
}

/// Everything about a run that goes to disk.
#[derive(Clone, Copy)]
pub struct RunSnapshot<'a> {
    /// Run name.
    pub name: &'a str,
    /// Learner name.
    pub learner: &'a str,
    /// Dataset name.
    pub dataset: &'a str,
    /// How the run stands or ended.
    pub status: &'a Status,
    /// The spec it ran (with command-line overrides applied).
    pub spec: &'a RunSpec,
    /// Finished tasks.
    pub records: &'a [TaskRecord],
    /// The accuracy matrix.
    pub matrix: &'a AccuracyMatrix,
    /// The summary of the finished tasks.
    pub summary: Option<&'a Summary>,
}

/// The files [`RunFiles`] writes into a learner's directory.
const RUN_FILES: [&str; 3] = ["metrics.json", "tasks.csv", "accuracy_matrix.csv"];

/// Removes the results of an earlier `synaptogen run` from `dir`: its `comparison.csv`, and the run
/// files in `dir` and in every subdirectory holding a `metrics.json` (a learner's). A results directory
/// holds one run: a report of it would otherwise rank learners of two runs, trained on different seeds
/// or task counts, side by side. Returns whether anything was removed. Other files are left alone.
pub fn clear_previous_run(dir: &Path) -> Result<bool, Error> {
    let mut removed = false;
    let mut remove = |path: &Path| -> Result<(), Error> {
        match std::fs::remove_file(path) {
            Ok(()) => {
                removed = true;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(crate::files::Error::Write {
                path: path.to_path_buf(),
                source,
            }
            .into()),
        }
    };
    remove(&dir.join("comparison.csv"))?;
    let mut learner_dirs = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        learner_dirs.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir() && p.join("metrics.json").exists()),
        );
    }
    for learner in &learner_dirs {
        for name in RUN_FILES {
            remove(&learner.join(name))?;
        }
        if learner != dir {
            // Only if nothing else is in it.
            let _ = std::fs::remove_dir(learner);
        }
    }
    Ok(removed)
}

impl RunFiles {
    /// Creates (or reuses) `dir` and checks it is writable before any training starts.
    pub fn create(dir: &Path) -> Result<RunFiles, Error> {
        crate::files::create_dir(dir)?;
        Ok(RunFiles {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Rewrites every file from `snapshot`.
    pub fn write(&self, snapshot: RunSnapshot) -> Result<(), Error> {
        let [metrics, tasks, matrix] = RUN_FILES;
        self.atomic(tasks, tasks_csv(snapshot.records).as_bytes())?;
        self.atomic(matrix, matrix_csv(snapshot.matrix).as_bytes())?;
        let doc = RunDocument {
            format: 1,
            name: snapshot.name,
            learner: snapshot.learner,
            dataset: snapshot.dataset,
            status: snapshot.status,
            spec: snapshot.spec,
            summary: snapshot.summary,
            tasks: snapshot.records,
            accuracy_matrix: snapshot.matrix,
        };
        let json = serde_json::to_vec_pretty(&doc).expect("metrics are plain data and always serialise");
        self.atomic(metrics, &json)
    }

    fn atomic(&self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        Ok(crate::files::write_atomic(&self.dir.join(name), bytes)?)
    }
}

/// One learner's line in a multi-learner comparison.
#[derive(Clone, Debug)]
pub struct ComparisonRow {
    /// Learner label (its output subdirectory).
    pub learner: String,
    /// How its run ended.
    pub status: String,
    /// Its summary, when at least one task finished.
    pub summary: Option<Summary>,
    /// Mean effective rank over hidden layers at the last task's start.
    pub effective_rank: Option<f64>,
    /// The long-horizon objective with its default weights (`Objective::long_horizon`).
    pub long_horizon: Option<f32>,
    /// Dead fraction at the last task's start.
    pub dead_fraction: Option<f64>,
    /// Mean training samples per second.
    pub samples_per_second: Option<f64>,
}

/// The comparison as CSV, one row per learner.
pub fn comparison_csv(rows: &[ComparisonRow]) -> String {
    let mut out = String::from(
        "learner,status,tasks,final_accuracy,mean_plasticity,mean_retention,plasticity_last10,retention_last10,bwt,forgetting,objective,long_horizon,effective_rank_last,dead_fraction_last,samples_per_second\n",
    );
    for r in rows {
        let s = r.summary.as_ref();
        out += &format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.learner,
            r.status,
            s.map_or(0, |s| s.tasks),
            cell(s.map(|s| s.final_accuracy as f64)),
            cell(s.map(|s| s.mean_plasticity as f64)),
            cell(s.and_then(|s| s.mean_retention).map(f64::from)),
            cell(s.and_then(|s| s.plasticity_last10).map(f64::from)),
            cell(s.and_then(|s| s.retention_last10).map(f64::from)),
            cell(s.and_then(|s| s.bwt).map(f64::from)),
            cell(s.and_then(|s| s.forgetting).map(f64::from)),
            cell(s.map(|s| s.objective as f64)),
            cell(r.long_horizon.map(f64::from)),
            cell(r.effective_rank),
            cell(r.dead_fraction),
            r.samples_per_second.map_or(String::new(), |v| format!("{v:.0}")),
        );
    }
    out
}

/// Writes `comparison.csv` into `dir` (atomically).
pub fn write_comparison(dir: &Path, rows: &[ComparisonRow]) -> Result<(), Error> {
    RunFiles {
        dir: dir.to_path_buf(),
    }
    .atomic("comparison.csv", comparison_csv(rows).as_bytes())
}

fn cell(value: Option<f64>) -> String {
    value.map_or(String::new(), |v| format!("{v:.6}"))
}

/// One row per task; erank gets one column per hidden layer.
pub fn tasks_csv(records: &[TaskRecord]) -> String {
    let layers = records.first().map_or(0, |r| r.start.effective_rank.len());
    let mut out = String::from("task,plasticity,retention,retention_tasks_tested,online_accuracy,train_loss");
    for l in 1..=layers {
        out += &format!(",effective_rank_layer{l}");
    }
    out += ",dead_fraction,dormant_fraction,firing_rate,synaptic_ops_per_sample,mean_abs_weight,density,samples_per_second\n";
    for r in records {
        out += &format!(
            "{},{},{},{},{},{}",
            r.task,
            cell(Some(r.plasticity as f64)),
            cell(r.retention.map(f64::from)),
            r.retention_tasks.len(),
            cell(Some(r.online_accuracy as f64)),
            cell(Some(r.train_loss as f64)),
        );
        for e in &r.start.effective_rank {
            out += &format!(",{}", cell(Some(*e)));
        }
        out += &format!(
            ",{},{},{},{:.1},{},{},{:.1}\n",
            cell(Some(r.start.dead_fraction)),
            cell(Some(r.start.dormant_fraction)),
            cell(Some(r.start.firing_rate)),
            r.start.synaptic_ops,
            cell(Some(r.mean_abs_weight)),
            cell(Some(r.density)),
            r.samples_per_second,
        );
    }
    out
}

/// `R` as CSV: one row per trained task, one column per task, blank where not measured.
pub fn matrix_csv(matrix: &AccuracyMatrix) -> String {
    let n = matrix.rows.len();
    let mut out = String::from("after_task");
    for j in 1..=n {
        out += &format!(",task_{j}");
    }
    out.push('\n');
    for (i, row) in matrix.rows.iter().enumerate() {
        out += &(i + 1).to_string();
        for j in 0..n {
            out.push(',');
            out += &cell(row.get(j).copied().flatten().map(f64::from));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_csv_leaves_unmeasured_cells_blank() {
        let mut m = AccuracyMatrix::default();
        m.push_row(vec![Some(0.5)]);
        m.push_row(vec![None, Some(0.25)]);
        assert_eq!(
            matrix_csv(&m),
            "after_task,task_1,task_2\n1,0.500000,\n2,,0.250000\n"
        );
    }
}
