//! Does a shorter horizon predict the top rung? Successive halving promotes by the score at the lower
//! rungs, which helps only if that score orders rules roughly as the top rung does. Over long task
//! sequences it may not: plain SGD forgets less than continual backprop while its units are still
//! alive, so over the first few tasks it scores higher, and its collapse shows only later (Dohare et
//! al. 2024, Nature 632:768, Fig. 1). This check measures it on the search's own top-rung trials.
//!
//! A trial's first `h` tasks are what an `h`-task rung would have trained (same seed, same stream), so
//! scoring that prefix with the search's objective gives, for every subject that reached the top rung,
//! the score a rung of `h` tasks would have given it, nearly: the last task of a run measures
//! retention on every earlier task, the tasks before it on a sample.

use std::collections::BTreeMap;

use crate::search::SearchSpec;
use crate::search::evaluate::Ending;
use crate::search::journal::{Stage, TrialRecord};

use super::results::{mean, subject_name};

/// How well one shorter horizon orders the top rung's subjects.
#[derive(Clone, Debug, PartialEq)]
pub struct Horizon {
    /// The first tasks scored.
    pub tasks: usize,
    /// One of the search's rungs.
    pub rung: bool,
    /// Spearman's rank correlation between the subjects' mean scores over `tasks` and over the whole
    /// top rung (1: the same order; 0: unrelated; below 0: reversed).
    pub spearman: f64,
}

/// The check over a search's top rung.
#[derive(Clone, Debug, PartialEq)]
pub struct Horizons {
    /// The top rung's tasks.
    pub top: usize,
    /// Subjects (candidates and baselines) with a completed top-rung trial.
    pub subjects: usize,
    /// The lower rungs and a few fractions of the top rung, shortest first.
    pub rows: Vec<Horizon>,
}

/// The check, or `None` when fewer than three subjects completed the top rung (a rank correlation of
/// two says nothing) or the top rung has fewer than two tasks.
pub fn check(trials: &[TrialRecord], spec: &SearchSpec) -> Option<Horizons> {
    let rungs = &spec.fidelity.rungs;
    let top_rung = rungs.len().checked_sub(1)?;
    let top = *rungs.last()?;
    let objective = spec.objective;
    // Each subject's completed top-rung trials, whose prefixes are scored.
    let mut by_subject: BTreeMap<String, Vec<&TrialRecord>> = BTreeMap::new();
    for t in trials {
        if t.stage == Stage::Rung(top_rung)
            && t.result.ending == Ending::Completed
            && t.result.plasticity.len() == top
        {
            by_subject.entry(subject_name(&t.subject)).or_default().push(t);
        }
    }
    if by_subject.len() < 3 || top < 2 {
        return None;
    }
    // Each subject's mean score over its trials (every subject here has at least one).
    let per_subject = |score: &dyn Fn(&TrialRecord) -> f64| -> Vec<f64> {
        by_subject
            .values()
            .map(|ts| mean(ts.iter().map(|t| score(t))).unwrap_or(0.0))
            .collect()
    };
    let whole = per_subject(&|t| t.result.objective as f64);
    let mut horizons: Vec<(usize, bool)> = rungs[..top_rung].iter().map(|&h| (h, true)).collect();
    for (numerator, denominator) in [(1, 20), (1, 10), (3, 20), (1, 5), (1, 4), (1, 2)] {
        let h = top * numerator / denominator;
        if h >= 1 && !horizons.iter().any(|&(t, _)| t == h) {
            horizons.push((h, false));
        }
    }
    horizons.sort_unstable();
    let rows = horizons
        .into_iter()
        .map(|(tasks, rung)| {
            let prefix = per_subject(&|t| t.result.objective_over(objective, tasks) as f64);
            Horizon {
                tasks,
                rung,
                spearman: spearman(&prefix, &whole),
            }
        })
        .collect();
    Some(Horizons {
        top,
        subjects: by_subject.len(),
        rows,
    })
}

/// Spearman's rank correlation: Pearson's correlation of the ranks, tied values sharing their mean
/// rank. 0 when either side is constant.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    let (rx, ry) = (ranks(x), ranks(y));
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// 1-based ranks, ties at their mean rank; NaN ranks lowest.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::evaluate::TrialResult;
    use crate::search::journal::Subject;

    #[test]
    fn spearman_matches_hand_computations() {
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), 1.0);
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
        // Ranks (1, 2, 3, 4) against (2, 1, 4, 3): d² = 4, so 1 - 6·4 / (4·15) = 0.6.
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[0.2, 0.1, 0.4, 0.3]) - 0.6).abs() < 1e-12);
        // Ties share their mean rank: (1.5, 1.5, 3) against (1, 2, 3).
        let r = spearman(&[5.0, 5.0, 7.0], &[1.0, 2.0, 3.0]);
        assert!((r - 0.866_025_403_784_438_6).abs() < 1e-12, "{r}");
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), 0.0);
    }

    /// A top-rung trial of `subject` whose plasticity is `early` for the first half of `tasks` and
    /// `late` after.
    fn trial(subject: usize, tasks: usize, early: f32, late: f32, spec: &SearchSpec) -> TrialRecord {
        let plasticity: Vec<f32> = (0..tasks)
            .map(|t| if t < tasks / 2 { early } else { late })
            .collect();
        let mut result = TrialResult {
            ending: Ending::Completed,
            tasks,
            objective: 0.0,
            retention: vec![None; tasks],
            effective_rank: vec![10.0; tasks],
            density: vec![1.0; tasks],
            dead_fraction: vec![0.0; tasks],
            synaptic_ops: vec![0.0; tasks],
            plasticity,
            final_accuracy: None,
            bwt: None,
            forgetting: None,
            matrix: None,
        };
        result.objective = result.objective_over(spec.objective, tasks);
        TrialRecord {
            round: 0,
            subject: Subject::Candidate(subject),
            stage: Stage::Rung(spec.fidelity.rungs.len() - 1),
            dataset: "d".into(),
            seed: 0,
            result,
            seconds: 0.0,
        }
    }

    #[test]
    fn a_horizon_that_ranks_fast_starters_first_is_reported_as_reversed() {
        let mut spec = crate::search::spec::tests_support::minimal();
        spec.fidelity.rungs = vec![10, 40];
        spec.objective = crate::search::objective::Objective::long_horizon();
        // The better a subject starts, the worse it ends.
        let trials: Vec<TrialRecord> = (0..5)
            .map(|i| trial(i, 40, 0.5 + 0.1 * i as f32, 0.9 - 0.1 * i as f32, &spec))
            .collect();
        let check = check(&trials, &spec).expect("five subjects");
        assert_eq!((check.top, check.subjects), (40, 5));
        let tasks: Vec<(usize, bool)> = check.rows.iter().map(|r| (r.tasks, r.rung)).collect();
        assert_eq!(
            tasks,
            vec![
                (2, false),
                (4, false),
                (6, false),
                (8, false),
                (10, true),
                (20, false)
            ]
        );
        // Over the first half only the start is seen: exactly reversed.
        assert!(check.rows.iter().all(|r| r.spearman == -1.0), "{:?}", check.rows);
        // Aborted trials and lower rungs are not the top rung's; with two subjects left there is
        // no check.
        let few: Vec<TrialRecord> = trials.into_iter().take(2).collect();
        assert_eq!(super::check(&few, &spec), None);
    }
}
