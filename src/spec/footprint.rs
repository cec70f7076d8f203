//! What a spec asks of memory, estimated before anything runs, so that an absurd size (a hundred
//! million hidden units, four billion tasks) is one clear error naming the figure and the limit rather
//! than an allocation failure minutes (or, for a search, hours) in.
//!
//! The estimate is an upper bound of the order of magnitude, not an accounting: it counts what grows
//! with the spec's sizes. Per synapse, the weight and up to eleven more arrays of the same shape a
//! learner may keep (gradient, eligibility, traces, slots, uncertainty, masks); per unit, per time step
//! and per example of a batch, the states backpropagation through time keeps; per task, its input
//! permutation and a row of the accuracy matrix, which has as many columns as there are tasks; per
//! layer, a few KiB of bookkeeping. The work a spec implies is not bounded: a long run is a legitimate
//! overnight job, and its progress line gives its ETA.

use super::{Protocol, RunSpec};

/// The memory one learner's run may need: 16 GiB, the most a spec may ask for.
pub const LIMIT_BYTES: f64 = 16.0 * GIB;

const GIB: f64 = (1u64 << 30) as f64;
/// The inputs of the largest image the datasets hold (28 × 28).
const MAX_PIXELS: f64 = 784.0;
/// Output classes.
const CLASSES: f64 = 10.0;
/// f32 arrays per synapse a learner may keep.
const ARRAYS_PER_SYNAPSE: f64 = 12.0;
/// f32 states per unit, time step and example kept for the backward pass.
const STATES_PER_UNIT: f64 = 8.0;
/// Bytes per task besides its permutation and matrix row (its records and metrics).
const BYTES_PER_TASK: f64 = 1024.0;
/// Bytes per layer besides its arrays: the layer's and its learner's bookkeeping (array headers,
/// statistics, buffers of the per-layer signals), which ten million one-unit layers multiply.
const BYTES_PER_LAYER: f64 = 4096.0;

/// The estimate, part by part.
#[derive(Debug)]
pub struct Footprint {
    /// (what, the spec field that sets it, bytes).
    pub parts: Vec<(&'static str, &'static str, f64)>,
}

impl Footprint {
    /// The estimate for one learner trained on `spec`.
    pub fn of(spec: &RunSpec) -> Footprint {
        let b = &spec.benchmark;
        let pool = b.pool.max(1) as f64;
        let inputs = (MAX_PIXELS / (pool * pool)).ceil();
        let hidden: Vec<f64> = spec.network.hidden.iter().map(|&h| h as f64).collect();
        let widths: Vec<f64> = std::iter::once(inputs)
            .chain(hidden.iter().copied())
            .chain(std::iter::once(CLASSES))
            .collect();
        let synapses: f64 = widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
        let units: f64 = widths[1..].iter().sum();
        let batch = match b.protocol {
            Protocol::Online => 1.0,
            Protocol::Minibatch { batch, .. } => batch as f64,
        };
        let steps = spec.network.time_steps as f64;
        let tasks = b.tasks as f64;
        Footprint {
            parts: vec![
                (
                    "layers, synapses and their state",
                    "network.hidden",
                    synapses * 4.0 * ARRAYS_PER_SYNAPSE + (widths.len() - 1) as f64 * BYTES_PER_LAYER,
                ),
                (
                    "states kept for the backward pass",
                    "network.hidden",
                    units * steps * batch * 4.0 * STATES_PER_UNIT,
                ),
                (
                    "task permutations and the accuracy matrix",
                    "benchmark.tasks",
                    tasks * (inputs * 4.0 + tasks * 8.0 + BYTES_PER_TASK),
                ),
            ],
        }
    }

    /// The whole estimate, in bytes.
    pub fn total(&self) -> f64 {
        self.parts.iter().map(|(_, _, b)| b).sum()
    }

    /// `None` within [`LIMIT_BYTES`]; otherwise the field most responsible and the message.
    pub fn check(&self) -> Option<(&'static str, String)> {
        let total = self.total();
        if total <= LIMIT_BYTES {
            return None;
        }
        let (_, field, _) = self
            .parts
            .iter()
            .max_by(|a, b| a.2.total_cmp(&b.2))
            .expect("three parts");
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|(what, _, b)| format!("{what} {}", bytes(*b)))
            .collect();
        Some((
            field,
            format!(
                "one learner would need about {} of memory ({}), above the limit of {}; use fewer \
                 hidden units, layers or tasks",
                bytes(total),
                parts.join(", "),
                bytes(LIMIT_BYTES)
            ),
        ))
    }
}

/// Bytes in binary units, about three significant digits: `3.65 TiB`, `16 GiB`.
pub fn bytes(b: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = b;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value >= 1024.0 {
        return format!("{b:.2e} B");
    }
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let mut text = format!("{value:.digits$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{text} {}", units[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_sizes_pass_and_absurd_ones_do_not() {
        let spec = |hidden: Vec<usize>, tasks: usize, online: bool| {
            let mut s: RunSpec = crate::spec::parse_ron(
                "(benchmark: (dataset: Synthetic, tasks: 1, train_per_task: 100, test_per_task: 50, \
                  protocol: Minibatch(batch: 32, epochs: 1)), network: (hidden: [16]), learner: Sgd(lr: 0.05))",
                std::path::Path::new("s.ron"),
            )
            .expect("valid");
            s.network.hidden = hidden;
            s.benchmark.tasks = tasks;
            if online {
                // One example, one time step: only the per-layer bookkeeping grows with depth.
                s.benchmark.protocol = Protocol::Online;
                s.network.time_steps = 1;
            }
            Footprint::of(&s).check()
        };
        assert!(spec(vec![256], 200, false).is_none());
        assert!(spec(vec![100, 100, 100], 2000, true).is_none());
        assert_eq!(
            spec(vec![100_000_000], 1, false).map(|c| c.0),
            Some("network.hidden")
        );
        assert_eq!(
            spec(vec![1; 10_000_000], 1, true).map(|c| c.0),
            Some("network.hidden")
        );
        assert_eq!(
            spec(vec![256], 4_000_000_000, false).map(|c| c.0),
            Some("benchmark.tasks")
        );
    }

    #[test]
    fn units_are_binary_and_short() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(16.0 * GIB), "16 GiB");
        assert_eq!(bytes(1.5 * 1024.0 * 1024.0), "1.5 MiB");
        assert_eq!(bytes(3.654 * 1024.0 * GIB), "3.65 TiB");
    }
}
