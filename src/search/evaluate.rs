//! One trial: a candidate rule or a baseline learner, trained over `tasks` tasks of one stream with one
//! seed, measured, and stopped early when it diverges or clearly trails the weakest baseline.
//!
//! A trial is the search's unit of work and of the journal. Its result depends only on what is trained,
//! the dataset, the task count and the seed, never on the thread or the order it runs in: streams and
//! weights are keyed by the seed (see [`crate::rng`]).

use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use super::objective::Series;
use super::spec::{Objective, SearchSpec};
use crate::data::{Dataset, TaskStream};
use crate::learner::{self, Learner, Rules};
use crate::metrics::{self, AccuracyMatrix, TaskRecord};
use crate::rule::CompiledRule;
use crate::run::{self, Observer, RunOptions, Status};
use crate::snn::Network;
use crate::spec::LearnerSpec;

/// How a trial ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// Every task was trained and tested.
    Completed,
    /// Stopped after `task` tasks because it trailed the weakest baseline by more than the margin.
    Aborted {
        /// Tasks completed.
        task: usize,
    },
    /// A loss or weight became non-finite during `task`.
    Diverged {
        /// The task (from 1) it diverged in.
        task: usize,
    },
}

/// What one trial measured: per task, and over the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    /// How it ended.
    pub ending: Ending,
    /// Tasks the trial was meant to run.
    pub tasks: usize,
    /// The objective ([`Objective::score`]) over all `tasks`, with the tasks a diverged run never
    /// reached counted as learning nothing; for an aborted run, over the tasks it completed.
    #[serde(deserialize_with = "crate::metrics::nan_for_null::number")]
    pub objective: f32,
    /// R[t][t] per completed task.
    #[serde(deserialize_with = "crate::metrics::nan_for_null::numbers")]
    pub plasticity: Vec<f32>,
    /// Mean accuracy on earlier tasks after each completed task (`None` for the first).
    pub retention: Vec<Option<f32>>,
    /// Mean effective rank of the hidden layers at each task's start.
    #[serde(deserialize_with = "crate::metrics::nan_for_null::numbers")]
    pub effective_rank: Vec<f64>,
    /// Fraction of synapses present after each task.
    #[serde(deserialize_with = "crate::metrics::nan_for_null::numbers")]
    pub density: Vec<f64>,
    /// Dead hidden units at each task's start.
    #[serde(deserialize_with = "crate::metrics::nan_for_null::numbers")]
    pub dead_fraction: Vec<f64>,
    /// Synaptic operations per sample at each task's start.
    #[serde(deserialize_with = "crate::metrics::nan_for_null::numbers")]
    pub synaptic_ops: Vec<f64>,
    /// Mean accuracy over every task tested after the last one.
    pub final_accuracy: Option<f32>,
    /// Backward transfer.
    pub bwt: Option<f32>,
    /// Average forgetting.
    pub forgetting: Option<f32>,
    /// The accuracy matrix R (row t: accuracies after task t + 1, `None` where not tested), kept only
    /// for the trials a report draws it for (the top rung and the held-out check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<Vec<Vec<Option<f32>>>>,
}

impl TrialResult {
    /// The per-task series the objective reads, over the first `tasks` completed tasks.
    pub fn series(&self, tasks: usize) -> Series<'_> {
        let n = tasks.min(self.plasticity.len());
        Series {
            plasticity: &self.plasticity[..n],
            retention: &self.retention[..n],
            dead_fraction: &self.dead_fraction[..n.min(self.dead_fraction.len())],
            effective_rank: &self.effective_rank[..n.min(self.effective_rank.len())],
        }
    }

    /// The objective over the first `tasks` tasks the trial completed, as if the run had been that
    /// long: what an aborted trial is compared with.
    pub fn objective_over(&self, objective: Objective, tasks: usize) -> f32 {
        let series = self.series(tasks);
        objective.score(series, series.plasticity.len())
    }

    /// The per-task scores under `objective`.
    pub fn task_scores(&self, objective: Objective) -> Vec<f32> {
        self.plasticity
            .iter()
            .zip(&self.retention)
            .map(|(p, r)| objective.task_score(*p, *r))
            .collect()
    }
}

/// What a trial trains.
#[derive(Clone, Copy, Debug)]
pub enum Trainee<'a> {
    /// A candidate rule with the search's learner settings.
    Candidate(&'a CompiledRule),
    /// A baseline learner (its rules compiled in `Rules`).
    Baseline(&'a LearnerSpec, &'a Rules),
}

/// Everything fixed across a search's trials.
#[derive(Debug)]
pub struct Bench<'a> {
    /// The search spec.
    pub spec: &'a SearchSpec,
    /// The measurement settings.
    pub options: RunOptions,
    /// Set by Ctrl-C: trials stop between updates and report `None`.
    pub stop: &'a AtomicBool,
}

impl Bench<'_> {
    /// Trains `trainee` on `tasks` tasks of `dataset` with seed `seed`. `reference[t]` is the weakest
    /// baseline's running objective after task t + 1 on the same stream, for early stopping. `None`
    /// when the search was interrupted (the trial is discarded, not journaled).
    pub fn trial(
        &self,
        trainee: Trainee,
        dataset: &Dataset,
        tasks: usize,
        seed: u64,
        reference: Option<&[f32]>,
        keep_matrix: bool,
    ) -> Option<TrialResult> {
        let run_spec = self.spec.run_spec(tasks, seed);
        let network = Network::new(run_spec.network_config(dataset.pixels(), dataset.classes), seed);
        let mut learner: Box<dyn Learner> = match trainee {
            Trainee::Candidate(rule) => Box::new(learner::rule_learner::RuleLearner::new(
                network,
                "candidate".into(),
                rule,
                learner::rule_learner::Settings::new(&self.spec.learner),
                seed,
            )),
            Trainee::Baseline(spec, rules) => learner::build(spec, network, seed, rules),
        };
        let stream = TaskStream::new(dataset, run_spec.stream_config())
            .expect("the spec was validated against the dataset before the search started");
        let objective = self.spec.objective;
        let mut watch = Watch {
            objective,
            reference,
            after: self.spec.fidelity.abort_after,
            margin: self.spec.fidelity.abort_margin,
            tasks,
            score_sum: 0.0,
            done: 0,
            aborted: false,
            stop: self.stop,
        };
        let outcome = run::run(&stream, &mut *learner, &self.options, &mut watch);
        let ending = match outcome.status {
            Status::Completed => Ending::Completed,
            Status::Diverged { task, .. } => Ending::Diverged { task },
            Status::Interrupted if watch.aborted => Ending::Aborted {
                task: outcome.records.len(),
            },
            Status::Interrupted => return None,
        };
        let mut result = summarize(ending, tasks, objective, &outcome.records, &outcome.matrix);
        if keep_matrix {
            result.matrix = Some(outcome.matrix.rows);
        }
        Some(result)
    }
}

fn summarize(
    ending: Ending,
    tasks: usize,
    objective: Objective,
    records: &[TaskRecord],
    matrix: &AccuracyMatrix,
) -> TrialResult {
    let summary = metrics::summarize(matrix, records);
    let planned = match ending {
        Ending::Aborted { task } => task.max(1),
        _ => tasks,
    };
    let mut result = TrialResult {
        objective: 0.0,
        ending,
        tasks,
        plasticity: records.iter().map(|r| r.plasticity).collect(),
        retention: records.iter().map(|r| r.retention).collect(),
        effective_rank: records.iter().map(|r| r.start.mean_effective_rank()).collect(),
        density: records.iter().map(|r| r.density).collect(),
        dead_fraction: records.iter().map(|r| r.start.dead_fraction).collect(),
        synaptic_ops: records.iter().map(|r| r.start.synaptic_ops).collect(),
        final_accuracy: summary.as_ref().map(|s| s.final_accuracy),
        bwt: summary.as_ref().and_then(|s| s.bwt),
        forgetting: summary.as_ref().and_then(|s| s.forgetting),
        matrix: None,
    };
    result.objective = objective.score(result.series(records.len()), planned);
    result
}

/// Running means of a trial's per-task scores: `out[t]` is the mean over tasks 1..=t+1.
pub fn running_means(scores: &[f32]) -> Vec<f32> {
    let mut sum = 0.0f64;
    scores
        .iter()
        .enumerate()
        .map(|(i, s)| {
            sum += *s as f64;
            (sum / (i + 1) as f64) as f32
        })
        .collect()
}

/// Watches a trial: early stopping against the reference, and Ctrl-C.
struct Watch<'a> {
    objective: Objective,
    reference: Option<&'a [f32]>,
    after: usize,
    margin: f32,
    tasks: usize,
    score_sum: f64,
    done: usize,
    aborted: bool,
    stop: &'a AtomicBool,
}

impl Observer for Watch<'_> {
    fn task_finished(&mut self, record: &TaskRecord, _matrix: &AccuracyMatrix) {
        self.score_sum += self.objective.task_score(record.plasticity, record.retention) as f64;
        self.done += 1;
        let Some(reference) = self.reference else {
            return;
        };
        if self.done < self.after.max(1) || self.done >= self.tasks {
            return;
        }
        let mine = (self.score_sum / self.done as f64) as f32;
        if let Some(&theirs) = reference.get(self.done - 1)
            && mine < theirs - self.margin
        {
            self.aborted = true;
        }
    }

    fn should_stop(&mut self) -> bool {
        self.aborted || self.stop.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trial_with_a_nan_measurement_reads_back_from_its_journal_line() {
        let result = TrialResult {
            ending: Ending::Aborted { task: 2 },
            tasks: 5,
            objective: 0.5,
            plasticity: vec![0.8, 0.7],
            retention: vec![None, Some(0.6)],
            effective_rank: vec![12.0, f64::NAN],
            density: vec![1.0, 1.0],
            dead_fraction: vec![0.0, 0.1],
            synaptic_ops: vec![10.0, 11.0],
            final_accuracy: Some(0.6),
            bwt: None,
            forgetting: None,
            matrix: None,
        };
        let line = serde_json::to_string(&result).expect("serialises");
        let back: TrialResult = serde_json::from_str(&line).expect("reads what the search wrote");
        assert!(back.effective_rank[1].is_nan());
        assert_eq!(serde_json::to_string(&back).expect("serialises"), line);
    }

    #[test]
    fn running_means_are_prefix_means() {
        assert_eq!(running_means(&[1.0, 0.0, 0.5]), vec![1.0, 0.5, 0.5]);
    }
}
