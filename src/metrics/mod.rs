//! Continual-learning metrics: the accuracy matrix and everything derived from it, and the
//! representation diagnostics measured on a probe batch at each task start.
//!
//! Definitions:
//! - `R[i][j]`: test accuracy on task j after training task i (Lopez-Paz & Ranzato 2017, GEM). Plasticity(t) = R[t][t];
//!   retention(t) = mean of R[t][j] over the earlier tasks tested.
//! - ACC = mean of the final row; BWT = mean over j < T of R[T][j] − R[j][j] (GEM).
//! - Forgetting of task j = max over l < T of R[l][j] − R[T][j], averaged over j < T (Chaudhry et al. 2018).
//! - Effective rank (Roy & Vetterli 2007; used for plasticity by Dohare et al. 2024): p_k = σ_k / Σσ, erank = exp(−Σ p_k ln p_k).
//! - Dead unit: no activity on any probe example (Dohare et al. 2024). Dormant unit: mean activity at most τ times
//!   its layer's mean (ReDo, Sokar et al. 2023).
//!
//! Only some entries of `R` are measured when the sequence is long (see [`retention_sample`]); every
//! derived number uses the measured entries only, and the record says which tasks were tested.

use serde::{Deserialize, Serialize};

use crate::snn::{Network, Workspace};

/// The tasks j < `task` tested after training `task` (0-based): all of them when there are at most
/// `budget`, otherwise the `budget / 2` most recent ones plus the rest of the budget spread evenly over
/// the older tasks (the first task always included). Sorted ascending.
pub fn retention_sample(task: usize, budget: usize) -> Vec<usize> {
    if task <= budget {
        return (0..task).collect();
    }
    let recent = budget / 2;
    let spread = budget - recent;
    let older = task - recent; // tasks 0..older are "old"
    let mut out: Vec<usize> = (0..spread).map(|i| i * older / spread).collect();
    out.extend(older..task);
    out.dedup();
    out
}

/// The accuracy matrix, with `None` for entries that were not measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AccuracyMatrix {
    /// `rows[i][j]` = accuracy on task j after training task i (j ≤ i).
    pub rows: Vec<Vec<Option<f32>>>,
}

impl AccuracyMatrix {
    /// Appends the row for the task just trained.
    pub fn push_row(&mut self, row: Vec<Option<f32>>) {
        self.rows.push(row);
    }

    /// `R[i][j]` when measured.
    pub fn get(&self, i: usize, j: usize) -> Option<f32> {
        self.rows.get(i).and_then(|r| r.get(j).copied().flatten())
    }
}

/// Representation diagnostics of one probe pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Representation {
    /// Effective rank of each hidden layer's activity matrix (probe examples × units).
    #[serde(deserialize_with = "nan_for_null::numbers")]
    pub effective_rank: Vec<f64>,
    /// Fraction of hidden units with no activity on the whole probe batch.
    pub dead_fraction: f64,
    /// Fraction of hidden units that are τ-dormant.
    pub dormant_fraction: f64,
    /// Mean activity per hidden unit and step: the firing rate in spiking mode, the mean activation in
    /// ANN mode.
    pub firing_rate: f64,
    /// Synaptic operations per example: Σ over layers and steps of non-zero inputs × fan-out.
    pub synaptic_ops: f64,
}

/// JSON has no NaN: serde_json writes a non-finite number as `null`. A measurement that came out NaN
/// (an effective rank whose eigensolver did not converge) is read back as NaN, so the journal always
/// reads what the search wrote.
pub mod nan_for_null {
    use serde::{Deserialize, Deserializer};

    /// A number that may have been written as `null`.
    pub trait Float: Copy + for<'de> Deserialize<'de> {
        /// Not a number.
        const NAN: Self;
    }
    impl Float for f32 {
        const NAN: f32 = f32::NAN;
    }
    impl Float for f64 {
        const NAN: f64 = f64::NAN;
    }

    /// Deserialises a number, `null` as NaN.
    pub fn number<'de, D: Deserializer<'de>, T: Float>(d: D) -> Result<T, D::Error> {
        Ok(Option::<T>::deserialize(d)?.unwrap_or(T::NAN))
    }

    /// Deserialises a list of numbers, each `null` as NaN.
    pub fn numbers<'de, D: Deserializer<'de>, T: Float>(d: D) -> Result<Vec<T>, D::Error> {
        let values = Vec::<Option<T>>::deserialize(d)?;
        Ok(values.into_iter().map(|v| v.unwrap_or(T::NAN)).collect())
    }
}

impl Representation {
    /// The mean effective rank over hidden layers (0 without any).
    pub fn mean_effective_rank(&self) -> f64 {
        self.effective_rank.iter().sum::<f64>() / self.effective_rank.len().max(1) as f64
    }
}

/// Computes the diagnostics from the workspace of an eval pass over `probe_len` examples of `input`.
/// `present[l]` says which synapses of weight matrix l exist (`None`, or a missing entry: all of them).
pub fn representation(
    network: &Network,
    workspace: &Workspace,
    input: &[f32],
    probe_len: usize,
    dormant_threshold: f32,
    present: &[Option<&[bool]>],
) -> Representation {
    let widths = &network.config().hidden;
    let mut ranks = Vec::with_capacity(widths.len());
    let (mut dead, mut dormant, mut units) = (0usize, 0usize, 0usize);
    let mut activity_sum = 0.0f64;
    for (l, &width) in widths.iter().enumerate() {
        let activity = workspace.activity(l, width);
        ranks.push(effective_rank(&activity, probe_len, width));
        let mut unit_mean = vec![0.0f64; width];
        for row in activity.chunks_exact(width) {
            for (m, &a) in unit_mean.iter_mut().zip(row) {
                *m += a.abs() as f64;
            }
        }
        unit_mean.iter_mut().for_each(|m| *m /= probe_len as f64);
        let layer_mean = unit_mean.iter().sum::<f64>() / width as f64;
        dead += unit_mean.iter().filter(|&&m| m == 0.0).count();
        dormant += unit_mean
            .iter()
            .filter(|&&m| m <= dormant_threshold as f64 * layer_mean)
            .count();
        activity_sum += unit_mean.iter().sum::<f64>();
        units += width;
    }
    let events = workspace.input_events(network, input);
    let mut synaptic_ops = 0.0;
    for (l, (per_input, layer)) in events.iter().zip(network.layers()).enumerate() {
        match present.get(l).copied().flatten() {
            None => synaptic_ops += per_input.iter().sum::<f64>() * layer.outputs() as f64,
            Some(present) => {
                let mut fan_out = vec![0.0f64; layer.inputs()];
                for row in present.chunks_exact(layer.inputs()) {
                    for (f, &p) in fan_out.iter_mut().zip(row) {
                        *f += p as u8 as f64;
                    }
                }
                synaptic_ops += per_input.iter().zip(&fan_out).map(|(e, f)| e * f).sum::<f64>();
            }
        }
    }
    let synaptic_ops = synaptic_ops / probe_len as f64;
    Representation {
        effective_rank: ranks,
        dead_fraction: dead as f64 / units as f64,
        dormant_fraction: dormant as f64 / units as f64,
        firing_rate: activity_sum / units as f64,
        synaptic_ops,
    }
}

/// Fraction of the network's synapses (every weight matrix) that exist; `present` as in
/// [`representation`].
pub fn density(network: &Network, present: &[Option<&[bool]>]) -> f64 {
    let (mut existing, mut all) = (0usize, 0usize);
    for (l, layer) in network.layers().iter().enumerate() {
        all += layer.weights().len();
        existing += match present.get(l).copied().flatten() {
            Some(p) => p.iter().filter(|&&p| p).count(),
            None => layer.weights().len(),
        };
    }
    existing as f64 / all.max(1) as f64
}

/// Effective rank (Roy & Vetterli) of a `rows × cols` row-major matrix. 0 for the zero matrix, NaN if
/// the eigensolver does not converge.
pub fn effective_rank(matrix: &[f32], rows: usize, cols: usize) -> f64 {
    let m = faer::Mat::<f64>::from_fn(rows, cols, |i, j| matrix[i * cols + j] as f64);
    // The singular values are the square roots of the eigenvalues of the smaller Gram matrix. Not
    // faer's SVD (0.24): on a nearly rank-one matrix, such as a layer where every unit fires at every
    // step on every probe example but one, it spends 20 s and then fails to converge, where the
    // symmetric eigensolver takes 30 ms. Squaring loses only singular values below about 1e-8 of the
    // largest, which the entropy weighs at under 1e-6 each.
    let gram = if rows <= cols {
        &m * m.transpose()
    } else {
        m.transpose() * &m
    };
    match gram.self_adjoint_eigenvalues(faer::Side::Lower) {
        Ok(eigenvalues) => {
            let singular: Vec<f64> = eigenvalues.into_iter().map(|l| l.max(0.0).sqrt()).collect();
            effective_rank_of(&singular)
        }
        Err(_) => f64::NAN,
    }
}

/// Effective rank from singular values (any order, non-negative).
pub fn effective_rank_of(singular: &[f64]) -> f64 {
    let total: f64 = singular.iter().map(|s| s.abs()).sum();
    if total == 0.0 {
        return 0.0;
    }
    let entropy: f64 = singular
        .iter()
        .map(|s| s.abs() / total)
        .filter(|&p| p > 0.0)
        .map(|p| -p * p.ln())
        .sum();
    entropy.exp()
}

/// Mean |w| over every weight matrix, readout included, biases excluded (Dohare et al. 2024).
pub fn mean_abs_weight(network: &Network) -> f64 {
    let sum: f64 = network
        .layers()
        .iter()
        .flat_map(|l| l.weights())
        .map(|w| w.abs() as f64)
        .sum();
    sum / network.weight_count() as f64
}

/// Whether every weight and bias is finite.
pub fn is_finite(network: &Network) -> bool {
    network
        .layers()
        .iter()
        .all(|l| l.weights().iter().chain(l.bias()).all(|v| v.is_finite()))
}

/// Everything measured for one task. Tasks are numbered from 1 in every output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Task number, from 1.
    pub task: usize,
    /// Test accuracy on this task right after training it, R[t][t].
    pub plasticity: f32,
    /// Mean test accuracy over the earlier tasks tested; `None` for the first task.
    pub retention: Option<f32>,
    /// The earlier tasks (numbered from 1) that retention averages over.
    pub retention_tasks: Vec<usize>,
    /// Prequential accuracy: predictions of the training forward passes, before each update.
    pub online_accuracy: f32,
    /// Mean training loss over the task.
    pub train_loss: f32,
    /// Representation diagnostics at the task's start (before training on it).
    pub start: Representation,
    /// Mean |w| after training the task.
    pub mean_abs_weight: f64,
    /// Fraction of synapses present (1 without structural plasticity).
    pub density: f64,
    /// Training examples per second of wall time on this task (training only, not testing).
    pub samples_per_second: f64,
}

/// Whole-run numbers derived from the accuracy matrix and the task records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Tasks completed.
    pub tasks: usize,
    /// Mean of the final row of R over the tasks tested after the last task (every task when the run
    /// completed).
    pub final_accuracy: f32,
    /// Backward transfer (negative = forgetting).
    pub bwt: Option<f32>,
    /// Average forgetting (Chaudhry et al.).
    pub forgetting: Option<f32>,
    /// Mean plasticity over tasks.
    pub mean_plasticity: f32,
    /// Mean retention over tasks 2..T.
    pub mean_retention: Option<f32>,
    /// Mean online accuracy over tasks.
    pub mean_online_accuracy: f32,
    /// Mean plasticity over the last [`LAST_TASKS`] tasks: where a long run ends.
    #[serde(default)]
    pub plasticity_last10: Option<f32>,
    /// Mean retention over the last [`LAST_TASKS`] tasks (`None` when none of them has one).
    #[serde(default)]
    pub retention_last10: Option<f32>,
    /// The default search objective: mean over tasks of (plasticity + retention) / 2, with plasticity
    /// alone for the first task.
    pub objective: f32,
}

/// Tasks in the "last 10" measures: long runs are judged by where they end, not by their mean
/// (Dohare et al. 2024, Nature 632:768, Fig. 1).
pub const LAST_TASKS: usize = 10;

/// The last [`LAST_TASKS`] entries of a per-task series (all of it when shorter).
pub fn last_tasks<T>(series: &[T]) -> &[T] {
    &series[series.len().saturating_sub(LAST_TASKS)..]
}

fn mean(values: impl Iterator<Item = f32>) -> Option<f32> {
    let (sum, n) = values.fold((0.0f64, 0usize), |(s, n), v| (s + v as f64, n + 1));
    (n > 0).then(|| (sum / n as f64) as f32)
}

/// Summarizes a run. Returns `None` before the first task finished.
pub fn summarize(matrix: &AccuracyMatrix, records: &[TaskRecord]) -> Option<Summary> {
    let last = records.len().checked_sub(1)?;
    let final_row = &matrix.rows[last];
    let final_accuracy = mean(final_row.iter().flatten().copied())?;
    let earlier = || (0..last).filter(|&j| final_row[j].is_some());
    let bwt = mean(earlier().filter_map(|j| Some(matrix.get(last, j)? - matrix.get(j, j)?)));
    let forgetting = mean(earlier().filter_map(|j| {
        let best = (j..last)
            .filter_map(|l| matrix.get(l, j))
            .fold(f32::NEG_INFINITY, f32::max);
        Some(best - matrix.get(last, j)?)
    }));
    Some(Summary {
        tasks: records.len(),
        final_accuracy,
        bwt,
        forgetting,
        mean_plasticity: mean(records.iter().map(|r| r.plasticity))?,
        mean_retention: mean(records.iter().filter_map(|r| r.retention)),
        mean_online_accuracy: mean(records.iter().map(|r| r.online_accuracy))?,
        plasticity_last10: mean(last_tasks(records).iter().map(|r| r.plasticity)),
        retention_last10: mean(last_tasks(records).iter().filter_map(|r| r.retention)),
        objective: mean(
            records
                .iter()
                .map(|r| r.retention.map_or(r.plasticity, |ret| (r.plasticity + ret) / 2.0)),
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_sample_is_everything_when_short_and_recent_plus_spread_when_long() {
        assert_eq!(retention_sample(0, 4), Vec::<usize>::new());
        assert_eq!(retention_sample(3, 4), vec![0, 1, 2]);
        let s = retention_sample(100, 10);
        assert_eq!(s, vec![0, 19, 38, 57, 76, 95, 96, 97, 98, 99]);
    }

    #[test]
    fn effective_rank_of_known_spectra() {
        assert!((effective_rank_of(&[1.0, 1.0, 1.0, 1.0]) - 4.0).abs() < 1e-12);
        assert!((effective_rank_of(&[5.0, 0.0, 0.0]) - 1.0).abs() < 1e-12);
        assert_eq!(effective_rank_of(&[0.0, 0.0]), 0.0);
        // p = (3/4, 1/4): exp(H) with H = −(¾ln¾ + ¼ln¼).
        let h: f64 = -(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
        assert!((effective_rank_of(&[3.0, 1.0]) - h.exp()).abs() < 1e-12);
    }

    #[test]
    fn a_nan_measurement_written_as_null_reads_back_as_nan() {
        let mut r = record(1, 0.5, None);
        r.start.effective_rank = vec![f64::NAN, 2.0];
        let json = serde_json::to_string(&r).expect("serialises");
        assert!(json.contains("[null,2.0]"), "{json}");
        let back: TaskRecord = serde_json::from_str(&json).expect("reads what it wrote");
        assert!(back.start.effective_rank[0].is_nan());
        assert_eq!(back.start.effective_rank[1], 2.0);
    }

    #[test]
    fn effective_rank_of_a_nearly_rank_one_matrix_on_which_an_svd_does_not_converge() {
        // Every unit fired at every step on every example but one: 250 × 256 ones and one 7/8.
        let mut m = vec![1.0f32; 250 * 256];
        m[184 * 256 + 5] = 0.875;
        let rank = effective_rank(&m, 250, 256);
        assert!((1.0..1.01).contains(&rank), "{rank}");
        // The same along the other side.
        let transposed: Vec<f32> = (0..256 * 250).map(|k| m[(k % 250) * 256 + k / 250]).collect();
        let rank_t = effective_rank(&transposed, 256, 250);
        assert!((rank - rank_t).abs() < 1e-6, "{rank} vs {rank_t}");
    }

    #[test]
    fn effective_rank_of_a_matrix_uses_its_singular_values() {
        // diag(3, 1) padded with a zero row: singular values 3 and 1.
        let m = [3.0, 0.0, 0.0, 1.0, 0.0, 0.0];
        let h: f64 = -(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
        assert!((effective_rank(&m, 3, 2) - h.exp()).abs() < 1e-9);
    }

    fn record(task: usize, plasticity: f32, retention: Option<f32>) -> TaskRecord {
        TaskRecord {
            task,
            plasticity,
            retention,
            retention_tasks: vec![],
            online_accuracy: 0.5,
            train_loss: 1.0,
            start: Representation {
                effective_rank: vec![],
                dead_fraction: 0.0,
                dormant_fraction: 0.0,
                firing_rate: 0.0,
                synaptic_ops: 0.0,
            },
            mean_abs_weight: 0.0,
            density: 1.0,
            samples_per_second: 0.0,
        }
    }

    #[test]
    fn summary_follows_gem_and_chaudhry() {
        // R = [[0.9], [0.6, 0.8], [0.5, 0.7, 0.95]]
        let mut m = AccuracyMatrix::default();
        m.push_row(vec![Some(0.9)]);
        m.push_row(vec![Some(0.6), Some(0.8)]);
        m.push_row(vec![Some(0.5), Some(0.7), Some(0.95)]);
        let records = [
            record(1, 0.9, None),
            record(2, 0.8, Some(0.6)),
            record(3, 0.95, Some(0.6)),
        ];
        let s = summarize(&m, &records).expect("three tasks");
        assert!((s.final_accuracy - (0.5 + 0.7 + 0.95) / 3.0).abs() < 1e-6);
        // BWT = ((0.5 − 0.9) + (0.7 − 0.8)) / 2 = −0.25
        assert!((s.bwt.expect("two earlier tasks") + 0.25).abs() < 1e-6);
        // Forgetting = ((0.9 − 0.5) + (0.8 − 0.7)) / 2 = 0.25
        assert!((s.forgetting.expect("two earlier tasks") - 0.25).abs() < 1e-6);
        // Objective = (0.9 + (0.8+0.6)/2 + (0.95+0.6)/2) / 3
        assert!((s.objective - (0.9 + 0.7 + 0.775) / 3.0).abs() < 1e-6);
    }
}
