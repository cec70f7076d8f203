//! The search state: candidates and their scores, islands, caches, baselines. Everything here is
//! plain data, snapshotted to `state.json` after every round; nothing here runs a trial.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::evaluate::TrialResult;
use super::journal::{CandidateRecord, Stage};

/// One candidate's result at one stage: means over its seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Mean objective over seeds.
    pub objective: f32,
    /// Mean over seeds of the objective minus the best baseline's on the same seed and tasks (the
    /// objective itself when there are no baselines).
    pub advantage: f32,
    /// The objective per seed.
    pub per_seed: Vec<f32>,
    /// Whether every seed ran every task.
    pub completed: bool,
    /// How the seeds ended, e.g. `completed`, `aborted after 3 tasks`.
    pub ending: String,
}

/// A candidate and what is known about it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Candidate {
    /// Its journal record.
    pub record: CandidateRecord,
    /// Functional-equivalence hash (outputs on the probe batch).
    pub behaviour: u64,
    /// Score per rung (`None` until evaluated there).
    pub scores: Vec<Option<Score>>,
    /// Highest rung it is scheduled for or has reached.
    pub scheduled: usize,
    /// Score on held-out seeds.
    pub held_out_seeds: Option<Score>,
    /// Score on the held-out dataset.
    pub held_out_dataset: Option<Score>,
}

impl Candidate {
    /// The highest rung with a score, and that score.
    pub fn best_rung(&self) -> Option<(usize, &Score)> {
        self.scores
            .iter()
            .enumerate()
            .rev()
            .find_map(|(k, s)| s.as_ref().map(|s| (k, s)))
    }

    /// Tournament fitness: the advantage at the highest rung reached (comparable across rungs, being
    /// paired with the baselines on the same tasks).
    pub fn fitness(&self) -> f32 {
        self.best_rung().map_or(f32::NEG_INFINITY, |(_, s)| s.advantage)
    }
}

/// Where the search is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Proposing and evaluating candidates.
    Evolving,
    /// The budget is spent; the finalists are being re-checked.
    HeldOut,
    /// Finished.
    Done,
}

/// The whole search state, snapshotted after every round.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    /// [`journal::FORMAT`].
    pub format: u32,
    /// The spec hash of the journal header.
    pub spec_hash: String,
    /// Rounds completed.
    pub rounds: usize,
    /// Where the search is.
    pub phase: Phase,
    /// Every candidate, by id.
    pub candidates: Vec<Candidate>,
    /// Candidate ids alive on each island, oldest first.
    pub islands: Vec<VecDeque<usize>>,
    /// Structural hashes of every candidate.
    pub known: BTreeSet<u64>,
    /// Functional-equivalence cache: behaviour hash → the candidate evaluated with it.
    pub behaviours: BTreeMap<u64, usize>,
    /// Insertion order of `behaviours`, for forgetting the oldest.
    pub behaviour_order: VecDeque<u64>,
    /// Promotions waiting for a slot: (candidate, rung).
    pub promotions: VecDeque<(usize, usize)>,
    /// Baseline labels, in spec order.
    pub baselines: Vec<String>,
    /// Every baseline trial: (label, stage, seed) → result.
    pub baseline_trials: BTreeMap<String, TrialResult>,
    /// Baseline scores per (label, stage).
    pub baseline_scores: BTreeMap<String, Score>,
    /// Candidate evaluations (candidate × rung) run so far.
    pub evaluations: usize,
    /// Children whose behaviour matched an evaluated candidate's.
    pub cache_hits: usize,
    /// Mutations that gave an already known rule (retried).
    pub duplicates: usize,
    /// Rounds in a row without a new evaluation.
    pub idle_rounds: usize,
    /// Wall time spent over every session, in seconds, at the last snapshot.
    pub elapsed: f64,
    /// Ids of the finalists checked on held-out data.
    pub finalists: Vec<usize>,
    /// Lines in the journal when this snapshot was taken: a journal found shorter lost lines since.
    #[serde(default)]
    pub journal_lines: usize,
}

pub(super) fn baseline_key(label: &str, stage: Stage, seed: u64) -> String {
    format!("{label}|{}|{seed}", stage_name(stage))
}

/// The key of a baseline's score in [`State::baseline_scores`].
pub fn score_key(label: &str, stage: Stage) -> String {
    format!("{label}|{}", stage_name(stage))
}

/// A stage as reports print it.
pub fn stage_name(stage: Stage) -> String {
    match stage {
        Stage::Rung(k) => format!("rung{k}"),
        Stage::HeldOutSeeds => "held_out_seeds".into(),
        Stage::HeldOutDataset => "held_out_dataset".into(),
    }
}

/// Leaderboard order: highest rung reached, then objective there, then id.
impl State {
    /// Candidates (not cache clones) ranked: highest rung reached first, then objective there, then
    /// the older candidate.
    pub fn leaderboard(&self) -> Vec<&Candidate> {
        let mut ranked: Vec<&Candidate> = self
            .candidates
            .iter()
            .filter(|c| c.record.same_as.is_none() && c.best_rung().is_some())
            .collect();
        ranked.sort_by(|a, b| rank_order(a, b));
        ranked
    }

    /// The hall of fame (PySR's): for each complexity, the best-ranked candidate of that size, simplest
    /// first, each with whether it is on the Pareto front (ranked above every simpler entry).
    pub fn hall_of_fame(&self) -> Vec<(&Candidate, bool)> {
        let mut best: BTreeMap<usize, &Candidate> = BTreeMap::new();
        for c in self.leaderboard() {
            best.entry(c.record.complexity).or_insert(c);
        }
        let mut front: Option<&Candidate> = None;
        best.into_values()
            .map(|c| {
                let on_front = front.is_none_or(|f| rank_order(c, f).is_lt());
                if on_front {
                    front = Some(c);
                }
                (c, on_front)
            })
            .collect()
    }
}

pub(super) fn rank_order(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    let (ka, sa) = a.best_rung().expect("ranked candidates have a score");
    let (kb, sb) = b.best_rung().expect("ranked candidates have a score");
    kb.cmp(&ka)
        .then(sb.objective.total_cmp(&sa.objective))
        .then(a.record.id.cmp(&b.record.id))
}

#[cfg(test)]
mod tests {
    #[test]
    fn floats_read_back_bit_for_bit() {
        // serde_json's default float parser can miss by one unit in the last place; a snapshot must
        // not (a resumed search compares its numbers with the journal's).
        let values: Vec<f64> = (1..2000)
            .map(|i| (i as f64).sqrt() * 1.000_000_1e-3 + 0.1)
            .collect();
        let text = serde_json::to_string(&values).expect("plain data");
        let back: Vec<f64> = serde_json::from_str(&text).expect("reads");
        assert!(values.iter().zip(&back).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
