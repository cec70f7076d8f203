//! What a candidate is ranked by: the objective, computed from a trial's per-task series.
//!
//! The mean over tasks (`Balanced`, `Weighted`) rewards a rule that learns fast early and collapses
//! late: 180 good tasks outweigh 20 bad ones. `LongHorizon` judges a long run the way the
//! loss-of-plasticity literature does: accuracy on new tasks over the final part of the sequence
//! (Dohare et al. 2024, Nature 632:768, Fig. 1), its decline from the start (Lyle et al. 2023,
//! "Understanding plasticity in neural networks"), and the collapse that comes with it, dead units and
//! lost effective rank (Kumar et al. 2021, "Implicit under-parameterization"; Dohare et al. 2024,
//! Fig. 3).

use serde::{Deserialize, Serialize};

use crate::metrics::TaskRecord;

/// What a candidate is ranked by. Every variant scores a trial from its per-task plasticity,
/// retention, dead-unit fraction and effective rank; higher is better.
/// A misspelt weight (`LongHorizon(dead: 1.0)`) is an error, not a default silently kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Objective {
    /// Mean over tasks of (plasticity + retention) / 2 (plasticity alone on the first task).
    #[default]
    Balanced,
    /// Mean over tasks of (a·plasticity + b·retention) / (a + b).
    Weighted {
        /// Weight of plasticity.
        plasticity: f32,
        /// Weight of retention.
        retention: f32,
    },
    /// The end of the run and what it cost to get there:
    /// (a·P_final + b·R_final) / (a + b) − c·max(0, P_first − P_final) − d·dead_final
    /// − e·max(0, 1 − rank_final / rank_start), where P and R are mean plasticity and retention over the
    /// first and the final `window` of the tasks, dead and rank are the hidden layers' dead-unit fraction
    /// and effective rank at the starts of the final window's tasks, and rank_start is the effective
    /// rank of the untrained network.
    LongHorizon {
        /// The fraction of the tasks in the first and in the final window (at least one task each).
        #[serde(default = "default_window")]
        window: f32,
        /// a: weight of plasticity over the final window.
        #[serde(default = "one")]
        final_plasticity: f32,
        /// b: weight of retention over the final window.
        #[serde(default = "one")]
        final_retention: f32,
        /// c: penalty per unit of plasticity lost between the first and the final window.
        #[serde(default = "one")]
        plasticity_decline: f32,
        /// d: penalty per unit of dead-unit fraction over the final window.
        #[serde(default = "default_collapse")]
        dead_units: f32,
        /// e: penalty per unit of effective rank lost, relative to the untrained network's.
        #[serde(default = "default_collapse")]
        rank_loss: f32,
    },
}

fn default_window() -> f32 {
    0.1
}
fn one() -> f32 {
    1.0
}
fn default_collapse() -> f32 {
    0.1
}

/// A trial's per-task measurements, as the objective reads them. Index t is task t + 1.
#[derive(Clone, Copy, Debug)]
pub struct Series<'a> {
    /// R[t][t] per completed task.
    pub plasticity: &'a [f32],
    /// Mean accuracy on earlier tasks after each completed task (`None` for the first).
    pub retention: &'a [Option<f32>],
    /// Dead hidden units at each task's start.
    pub dead_fraction: &'a [f64],
    /// Mean effective rank of the hidden layers at each task's start.
    pub effective_rank: &'a [f64],
}

impl Objective {
    /// `LongHorizon` with its default weights: what `LongHorizon()` in a spec means, and the "long
    /// horizon" column of `synaptogen run`'s comparison.
    pub fn long_horizon() -> Objective {
        Objective::LongHorizon {
            window: default_window(),
            final_plasticity: one(),
            final_retention: one(),
            plasticity_decline: one(),
            dead_units: default_collapse(),
            rank_loss: default_collapse(),
        }
    }

    /// The objective of a run from its task records, as if it had been planned for `tasks` tasks.
    pub fn score_records(self, records: &[TaskRecord], tasks: usize) -> f32 {
        let plasticity: Vec<f32> = records.iter().map(|r| r.plasticity).collect();
        let retention: Vec<Option<f32>> = records.iter().map(|r| r.retention).collect();
        let dead_fraction: Vec<f64> = records.iter().map(|r| r.start.dead_fraction).collect();
        let effective_rank: Vec<f64> = records.iter().map(|r| r.start.mean_effective_rank()).collect();
        self.score(
            Series {
                plasticity: &plasticity,
                retention: &retention,
                dead_fraction: &dead_fraction,
                effective_rank: &effective_rank,
            },
            tasks,
        )
    }

    /// The per-task score that early stopping compares running means of: for `LongHorizon`, the
    /// weighted mean of plasticity and retention (its window terms need the whole run).
    pub fn task_score(self, plasticity: f32, retention: Option<f32>) -> f32 {
        let Some(retention) = retention else {
            return plasticity;
        };
        let (a, b) = match self {
            Objective::Balanced => return (plasticity + retention) / 2.0,
            Objective::Weighted {
                plasticity: a,
                retention: b,
            } => (a, b),
            Objective::LongHorizon {
                final_plasticity: a,
                final_retention: b,
                ..
            } => (a, b),
        };
        (a * plasticity + b * retention) / (a + b)
    }

    /// The objective of a run planned for `tasks` tasks of which `series` holds the first ones. Tasks
    /// the run never reached (it diverged) count as learning nothing: plasticity and retention 0, every
    /// unit dead, effective rank 0. To score a run over the tasks it completed (an aborted trial, or a
    /// baseline compared with one), pass `tasks = series.plasticity.len()`.
    pub fn score(self, series: Series, tasks: usize) -> f32 {
        let done = series.plasticity.len();
        if tasks == 0 {
            return 0.0;
        }
        match self {
            Objective::Balanced | Objective::Weighted { .. } => {
                let sum: f64 = (0..done)
                    .map(|t| self.task_score(series.plasticity[t], series.retention[t]) as f64)
                    .sum();
                (sum / tasks as f64) as f32
            }
            Objective::LongHorizon {
                window,
                final_plasticity: a,
                final_retention: b,
                plasticity_decline: c,
                dead_units: d,
                rank_loss: e,
            } => {
                let width = ((window as f64 * tasks as f64).ceil() as usize).clamp(1, tasks);
                let first = 0..width;
                let last = tasks - width..tasks;
                let plasticity = |t: usize| series.plasticity.get(t).map_or(0.0, |&p| p as f64);
                // The first task has no earlier task: its retention is not defined, not zero.
                let retention = |t: usize| {
                    if t < done {
                        series.retention[t].map(|r| r as f64)
                    } else {
                        Some(0.0)
                    }
                };
                let dead = |t: usize| series.dead_fraction.get(t).copied().unwrap_or(1.0);
                let rank = |t: usize| series.effective_rank.get(t).copied().unwrap_or(0.0);
                let mean = |values: &mut dyn Iterator<Item = f64>| {
                    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
                    (n > 0).then(|| sum / n as f64)
                };
                let p_first = mean(&mut first.clone().map(plasticity)).unwrap_or(0.0);
                let p_final = mean(&mut last.clone().map(plasticity)).unwrap_or(0.0);
                let quality = match mean(&mut last.clone().filter_map(retention)) {
                    Some(r_final) => (a as f64 * p_final + b as f64 * r_final) / (a + b) as f64,
                    None => p_final,
                };
                let dead_final = mean(&mut last.clone().map(dead)).unwrap_or(1.0);
                let rank_start = rank(0);
                let rank_lost = if rank_start > 0.0 {
                    let rank_final = mean(&mut last.map(rank)).unwrap_or(0.0);
                    (1.0 - rank_final / rank_start).max(0.0)
                } else {
                    0.0
                };
                (quality
                    - c as f64 * (p_first - p_final).max(0.0)
                    - d as f64 * dead_final
                    - e as f64 * rank_lost) as f32
            }
        }
    }

    /// Why the weights cannot be used, if they cannot: the spec field and what to write instead.
    pub fn check(&self) -> Result<(), String> {
        let weights: &[(&str, f32)] = match self {
            Objective::Balanced => &[],
            Objective::Weighted {
                plasticity,
                retention,
            } => &[("plasticity", *plasticity), ("retention", *retention)],
            Objective::LongHorizon {
                window,
                final_plasticity,
                final_retention,
                plasticity_decline,
                dead_units,
                rank_loss,
            } => {
                if !(*window > 0.0 && *window <= 0.5) {
                    return Err(format!(
                        "window must be in (0, 0.5], the fraction of the tasks in the first and the \
                         final window (got {window}), e.g. LongHorizon(window: 0.1)"
                    ));
                }
                &[
                    ("final_plasticity", *final_plasticity),
                    ("final_retention", *final_retention),
                    ("plasticity_decline", *plasticity_decline),
                    ("dead_units", *dead_units),
                    ("rank_loss", *rank_loss),
                ]
            }
        };
        if let Some((name, value)) = weights.iter().find(|(_, w)| !(w.is_finite() && *w >= 0.0)) {
            return Err(format!("{name} must be finite and ≥ 0 (got {value})"));
        }
        let (a, b) = match self {
            Objective::Balanced => return Ok(()),
            Objective::Weighted {
                plasticity,
                retention,
            } => (*plasticity, *retention),
            Objective::LongHorizon {
                final_plasticity,
                final_retention,
                ..
            } => (*final_plasticity, *final_retention),
        };
        if a + b > 0.0 {
            Ok(())
        } else {
            Err("the plasticity and retention weights must not both be 0, e.g. Weighted(plasticity: 1.0, retention: 2.0)".into())
        }
    }

    /// The objective in words, for the report's header.
    pub fn describe(&self) -> String {
        match *self {
            Objective::Balanced => {
                "mean over tasks of (plasticity + retention) / 2 (plasticity alone on task 1)".into()
            }
            Objective::Weighted {
                plasticity,
                retention,
            } => format!(
                "mean over tasks of ({plasticity}·plasticity + {retention}·retention) / {}",
                plasticity + retention
            ),
            Objective::LongHorizon {
                window,
                final_plasticity: a,
                final_retention: b,
                plasticity_decline: c,
                dead_units: d,
                rank_loss: e,
            } => format!(
                "long horizon over windows of {}% of the tasks: ({a}·plasticity + {b}·retention) / {} over \
                 the final window − {c}·(plasticity decline from the first window) − {d}·(dead-unit \
                 fraction) − {e}·(effective rank lost relative to the untrained network)",
                100.0 * window,
                a + b
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_horizon() -> Objective {
        Objective::LongHorizon {
            window: 0.25,
            final_plasticity: 1.0,
            final_retention: 1.0,
            plasticity_decline: 1.0,
            dead_units: 0.1,
            rank_loss: 0.1,
        }
    }

    #[test]
    fn balanced_is_the_mean_of_per_task_scores_with_unreached_tasks_zero() {
        let series = Series {
            plasticity: &[0.9, 0.8],
            retention: &[None, Some(0.6)],
            dead_fraction: &[0.0, 0.0],
            effective_rank: &[10.0, 10.0],
        };
        assert!((Objective::Balanced.score(series, 2) - (0.9 + 0.7) / 2.0).abs() < 1e-6);
        assert!((Objective::Balanced.score(series, 4) - (0.9 + 0.7) / 4.0).abs() < 1e-6);
    }

    #[test]
    fn long_horizon_reads_the_windows_and_charges_decline_and_collapse() {
        // Eight tasks, windows of two: first = tasks 1–2, final = tasks 7–8.
        let plasticity = [0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.7, 0.6];
        let retention = [
            None,
            Some(0.5),
            Some(0.5),
            Some(0.5),
            Some(0.5),
            Some(0.5),
            Some(0.4),
            Some(0.2),
        ];
        let dead = [0.0, 0.0, 0.1, 0.1, 0.2, 0.2, 0.4, 0.6];
        let rank = [40.0, 40.0, 38.0, 36.0, 34.0, 30.0, 24.0, 16.0];
        let series = Series {
            plasticity: &plasticity,
            retention: &retention,
            dead_fraction: &dead,
            effective_rank: &rank,
        };
        let p_final = 0.65;
        let r_final = 0.3;
        let expected = (p_final + r_final) / 2.0 - (0.9 - p_final) - 0.1 * 0.5 - 0.1 * (1.0 - 20.0 / 40.0);
        let got = long_horizon().score(series, 8);
        assert!((got as f64 - expected).abs() < 1e-6, "{got} vs {expected}");
    }

    #[test]
    fn long_horizon_does_not_reward_a_rising_plasticity_twice_and_never_divides_by_zero() {
        let series = Series {
            plasticity: &[0.5, 0.9],
            retention: &[None, Some(0.7)],
            dead_fraction: &[0.0, 0.0],
            effective_rank: &[0.0, 0.0],
        };
        let got = long_horizon().score(series, 2);
        assert!((got - 0.8).abs() < 1e-6, "{got}");
    }

    #[test]
    fn a_diverged_run_scores_its_unreached_tasks_as_collapsed() {
        let full = Series {
            plasticity: &[0.9; 4],
            retention: &[None, Some(0.5), Some(0.5), Some(0.5)],
            dead_fraction: &[0.0; 4],
            effective_rank: &[10.0; 4],
        };
        let cut = Series {
            plasticity: &full.plasticity[..2],
            retention: &full.retention[..2],
            dead_fraction: &full.dead_fraction[..2],
            effective_rank: &full.effective_rank[..2],
        };
        let whole = long_horizon().score(full, 4);
        let diverged = long_horizon().score(cut, 4);
        // Final window = task 4: nothing learned, all dead, no rank; decline 0.9.
        assert!((diverged - (0.0 - 0.9 - 0.1 - 0.1)).abs() < 1e-6, "{diverged}");
        assert!(whole > diverged);
    }

    #[test]
    fn bad_weights_are_refused_with_the_field_named() {
        let bad = Objective::LongHorizon {
            window: 0.1,
            final_plasticity: 1.0,
            final_retention: 1.0,
            plasticity_decline: -1.0,
            dead_units: 0.1,
            rank_loss: 0.1,
        };
        assert!(bad.check().unwrap_err().contains("plasticity_decline"));
        let nan = Objective::Weighted {
            plasticity: f32::NAN,
            retention: 1.0,
        };
        assert!(nan.check().unwrap_err().contains("plasticity"));
        let wide = Objective::LongHorizon {
            window: 0.8,
            final_plasticity: 1.0,
            final_retention: 1.0,
            plasticity_decline: 1.0,
            dead_units: 0.1,
            rank_loss: 0.1,
        };
        assert!(wide.check().unwrap_err().contains("window"));
        assert!(long_horizon().check().is_ok());
    }
}
