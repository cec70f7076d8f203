//! Continual backpropagation (Dohare et al., Nature 2024): SGD plus generate-and-test of hidden units.
//!
//! Follows the reference `GnT` (Dohare et al. 2024; the authors' `lop/algos/gnt.py`), after every SGD
//! step, for each hidden layer:
//! 1. `age += 1`; `u ← η·u`; `f ← η·f + (1−η)·mean_b(h)`; `f̂ = f / (1 − η^age)`;
//! 2. `u += (1−η)·y` with the utility `y` of the chosen kind, from `out = mean_k |W_{l+1}[k,i]|` and
//!    `in = mean_j |W_l[i,j]|`: contribution `out·mean_b|h|`; mean-corrected `out·mean_b|h − f̂|`;
//!    adaptable `out·mean_b|h − f̂| / in`; ranking uses `û = u / (1 − η^age)`;
//! 3. units with `age > m` are eligible; `ρ·#eligible` accumulates and `floor` of it is replaced (the
//!    `accumulate=True` mode the permuted-MNIST experiments use), the lowest `û` first;
//! 4. a replaced unit gets fresh input weights from the initial distribution, bias 0, outgoing weights 0,
//!    and `u = f = age = 0`. Optionally (off by default) its mean contribution `W_{l+1}[:,i]·f̂_i` moves into
//!    the next layer's bias first: as published the transfer adds exactly 0 (`GnT` step 5), so the default
//!    reproduces the published results.
//!
//! `h` is a unit's output per example: its firing rate over the T steps in spiking mode, its ReLU
//! activation in ANN mode.

use super::{Backprop, Learner, UpdateContext, UpdateStats};
use crate::data::Batch;
use crate::rng::{Purpose, Rng};
use crate::snn::{Dense, Network};
use crate::spec::{CbpParams, Utility};

/// Adam-style bias correction `1 − η^age` of a running average started at 0 (1 when η = 0 or age = 0,
/// where there is nothing to correct).
pub(super) fn bias_correction(decay: f32, age: u32) -> f32 {
    let c = 1.0 - (decay as f64).powi(age.min(100_000) as i32);
    if c > 0.0 { c as f32 } else { 1.0 }
}

/// Σ|x| with eight independent accumulators: a single running sum is a chain of dependent float adds
/// the compiler may not reorder, which runs at add latency instead of vector width.
#[inline(always)]
pub(super) fn sum_abs(xs: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|x| x.abs()).sum();
    for chunk in chunks {
        for (l, x) in lanes.iter_mut().zip(chunk) {
            *l += x.abs();
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `mean_j |W[i,j]|` of every unit i of `layer`: the mean magnitude of its incoming weights.
pub(crate) fn incoming_magnitude(layer: &Dense) -> Vec<f32> {
    let mut magnitude = vec![0.0f32; layer.outputs()];
    row_abs_means(layer.weights(), &mut magnitude);
    magnitude
}

crate::snn::neuron::simd_or_portable! {
    /// `out[i] = Σ_j |w[i][j]| / width` for the rows of `w` (`out.len()` rows).
    fn row_abs_means(w: &[f32], out: &mut [f32]) {
        let width = w.len() / out.len().max(1);
        if width == 0 {
            out.fill(0.0);
            return;
        }
        for (o, row) in out.iter_mut().zip(w.chunks_exact(width)) {
            *o = sum_abs(row) / width as f32;
        }
    }
}

/// `mean_k |W[k,i]|` of every input i of `next`: the mean magnitude of a unit's outgoing weights,
/// given the layer it feeds.
pub(crate) fn outgoing_magnitude(next: &Dense) -> Vec<f32> {
    let width = next.inputs();
    let mut magnitude = vec![0.0f32; width];
    for row in next.weights().chunks_exact(width) {
        for (o, w) in magnitude.iter_mut().zip(row) {
            *o += w.abs();
        }
    }
    let inv = 1.0 / next.outputs() as f32;
    magnitude.iter_mut().for_each(|o| *o *= inv);
    magnitude
}

/// Per-unit statistics of one hidden layer.
#[derive(Clone, Debug)]
struct LayerUtility {
    utility: Vec<f32>,
    mean_activity: Vec<f32>,
    age: Vec<u32>,
    pending: f64,
}

/// The continual-backprop learner.
#[derive(Debug)]
pub struct ContinualBackprop {
    core: Backprop,
    params: CbpParams,
    layers: Vec<LayerUtility>,
    activity: Vec<f32>,
    seed: u64,
    updates: u64,
    /// Every replacement so far: (update, hidden layer, unit).
    replaced: Vec<(u64, usize, usize)>,
}

impl ContinualBackprop {
    /// The learner; `seed` keys the redrawn input weights.
    pub fn new(network: Network, params: CbpParams, seed: u64) -> ContinualBackprop {
        let layers = network
            .config()
            .hidden
            .iter()
            .map(|&n| LayerUtility {
                utility: vec![0.0; n],
                mean_activity: vec![0.0; n],
                age: vec![0; n],
                pending: 0.0,
            })
            .collect();
        // Every update reads the hidden layers' rates: summed as the pass makes them.
        let mut core = Backprop::new(network);
        core.workspace.record_rates(true);
        ContinualBackprop {
            core,
            params,
            layers,
            activity: Vec::new(),
            seed,
            updates: 0,
            replaced: Vec::new(),
        }
    }

    /// Units replaced since the start.
    pub fn replaced(&self) -> u64 {
        self.replaced.len() as u64
    }

    /// Every replacement so far: (update, hidden layer, unit).
    pub fn replaced_units(&self) -> &[(u64, usize, usize)] {
        &self.replaced
    }

    /// Bias-corrected utility `û` of every unit of hidden layer `layer`.
    pub fn corrected_utility(&self, layer: usize) -> Vec<f32> {
        let stats = &self.layers[layer];
        stats
            .utility
            .iter()
            .zip(&stats.age)
            .map(|(&u, &age)| u / self.bias_correction(age))
            .collect()
    }

    fn bias_correction(&self, age: u32) -> f32 {
        bias_correction(self.params.decay, age)
    }

    /// Step 1–2: updates ages, mean activities and utilities from the last training pass.
    fn update_utilities(&mut self) {
        let eta = self.params.decay;
        let network = &self.core.network;
        let hidden = network.config().hidden.clone();
        for (l, &width) in hidden.iter().enumerate() {
            self.core.workspace.activity_into(l, width, &mut self.activity);
            let batch = self.activity.len() / width;
            let out_mag = outgoing_magnitude(&network.layers()[l + 1]);
            let mut mean_h = vec![0.0f32; width];
            for row in self.activity.chunks_exact(width) {
                for (m, h) in mean_h.iter_mut().zip(row) {
                    *m += h;
                }
            }
            mean_h.iter_mut().for_each(|m| *m /= batch as f32);
            for i in 0..width {
                self.layers[l].age[i] += 1;
            }
            let corrections: Vec<f32> = self.layers[l]
                .age
                .iter()
                .map(|&a| self.bias_correction(a))
                .collect();
            let stats = &mut self.layers[l];
            for ((u, f), h) in stats
                .utility
                .iter_mut()
                .zip(&mut stats.mean_activity)
                .zip(&mean_h)
            {
                *u *= eta;
                *f = eta * *f + (1.0 - eta) * h;
            }
            let utility = self.params.utility;
            let in_mag = (utility == Utility::Adaptable).then(|| incoming_magnitude(&network.layers()[l]));
            let f_hat: Vec<f32> = match utility {
                Utility::Contribution => vec![0.0; width],
                Utility::MeanCorrected | Utility::Adaptable => stats
                    .mean_activity
                    .iter()
                    .zip(&corrections)
                    .map(|(f, c)| f / c)
                    .collect(),
            };
            // mean_b |h − f̂| (f̂ = 0 for the plain contribution), accumulated row by row so the loop
            // runs over contiguous memory.
            let mut spread = vec![0.0f32; width];
            for row in self.activity.chunks_exact(width) {
                for ((s, h), f) in spread.iter_mut().zip(row).zip(&f_hat) {
                    *s += (h - f).abs();
                }
            }
            for i in 0..width {
                let mut y = out_mag[i] * spread[i] / batch as f32;
                if let Some(in_mag) = &in_mag {
                    y /= in_mag[i].max(f32::MIN_POSITIVE);
                }
                stats.utility[i] += (1.0 - eta) * y;
            }
        }
    }

    /// Steps 3–4: replaces the lowest-utility mature units; returns how many.
    pub fn generate_and_test(&mut self) -> usize {
        let mut count = 0;
        let hidden = self.core.network.config().hidden.clone();
        for (l, &width) in hidden.iter().enumerate() {
            let utilities = self.corrected_utility(l);
            let stats = &mut self.layers[l];
            let eligible: Vec<usize> = (0..width)
                .filter(|&i| stats.age[i] > self.params.maturity)
                .collect();
            stats.pending += self.params.replacement_rate * eligible.len() as f64;
            let k = (stats.pending.floor() as usize).min(eligible.len());
            if k == 0 {
                continue;
            }
            stats.pending -= k as f64;
            let mut ranked = eligible;
            ranked.sort_by(|&a, &b| utilities[a].total_cmp(&utilities[b]).then(a.cmp(&b)));
            for &unit in &ranked[..k] {
                let f_hat = stats.mean_activity[unit] / bias_correction(self.params.decay, stats.age[unit]);
                let network = &mut self.core.network;
                if self.params.bias_transfer {
                    let next = &mut network.layers_mut()[l + 1];
                    let inputs = next.inputs();
                    let column: Vec<f32> = next
                        .weights()
                        .iter()
                        .skip(unit)
                        .step_by(inputs)
                        .copied()
                        .collect();
                    for (b, w) in next.bias_mut().iter_mut().zip(column) {
                        *b += w * f_hat;
                    }
                }
                let mut rng = Rng::stream(
                    self.seed,
                    Purpose::Learner,
                    &[self.updates, l as u64, unit as u64],
                );
                network.redraw_incoming(l, unit, &mut rng);
                network.zero_outgoing(l, unit);
                stats.utility[unit] = 0.0;
                stats.mean_activity[unit] = 0.0;
                stats.age[unit] = 0;
                self.replaced.push((self.updates, l, unit));
            }
            count += k;
        }
        count
    }
}

impl Learner for ContinualBackprop {
    fn name(&self) -> &str {
        "cbp"
    }

    fn network(&self) -> &Network {
        &self.core.network
    }

    fn update(&mut self, batch: &Batch, _context: UpdateContext, rng: &mut Rng) -> UpdateStats {
        let stats = self.core.compute(batch, rng);
        self.core.descend(self.params.lr);
        self.update_utilities();
        self.generate_and_test();
        self.updates += 1;
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic;
    use crate::snn::{Encoding, Init, Lif, NetworkConfig, Neuron, Pass, Reset, Workspace};

    fn network(neuron: Neuron) -> Network {
        let time_steps = if neuron == Neuron::Relu { 1 } else { 4 };
        Network::new(
            NetworkConfig {
                inputs: 256,
                hidden: vec![20, 16],
                classes: 10,
                neuron,
                time_steps,
                encoding: Encoding::Direct,
                readout_beta: 0.9,
                init: Init::FanIn,
            },
            3,
        )
    }

    fn lif() -> Neuron {
        Neuron::Lif(Lif {
            beta: 0.9,
            threshold: 0.5,
            slope: 25.0,
            reset: Reset::SameStep,
        })
    }

    fn params(rate: f64, maturity: u32) -> CbpParams {
        CbpParams {
            lr: 0.05,
            replacement_rate: rate,
            maturity,
            decay: 0.99,
            utility: Utility::Adaptable,
            bias_transfer: false,
        }
    }

    fn batch(step: usize) -> Batch {
        let data = synthetic(200, 10);
        let start = (step * 8) % 192;
        Batch {
            images: data.train.images[start * 256..(start + 8) * 256].to_vec(),
            labels: data.train.labels[start..start + 8].to_vec(),
        }
    }

    fn logits(net: &Network, probe: &Batch) -> Vec<f32> {
        let mut ws = Workspace::default();
        let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
        net.forward(&probe.images, probe.len(), &mut ws, Pass::Eval, &mut rng);
        ws.logits().to_vec()
    }

    /// The first replacement of a short run: networks before and after it, the replaced (layer, unit)s
    /// and every unit's f̂ just before it.
    struct Replacement {
        before: Network,
        after: Network,
        replaced: Vec<(usize, usize)>,
        f_hat: Vec<Vec<f32>>,
    }

    fn replace_once(neuron: Neuron, bias_transfer: bool) -> Replacement {
        let mut cbp = ContinualBackprop::new(
            network(neuron),
            CbpParams {
                bias_transfer,
                ..params(0.2, 2)
            },
            1,
        );
        let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
        for step in 0..20 {
            cbp.core.compute(&batch(step), &mut rng);
            cbp.core.descend(0.05);
            cbp.update_utilities();
            let before = cbp.core.network.clone();
            let f_hat: Vec<Vec<f32>> = (0..2)
                .map(|l| {
                    let stats = &cbp.layers[l];
                    stats
                        .mean_activity
                        .iter()
                        .zip(&stats.age)
                        .map(|(&f, &a)| f / cbp.bias_correction(a))
                        .collect()
                })
                .collect();
            if cbp.generate_and_test() > 0 {
                let replaced = (0..2)
                    .flat_map(|l| (0..cbp.layers[l].age.len()).map(move |u| (l, u)))
                    .filter(|&(l, u)| cbp.layers[l].age[u] == 0)
                    .collect();
                return Replacement {
                    before,
                    after: cbp.core.network.clone(),
                    replaced,
                    f_hat,
                };
            }
        }
        panic!("no replacement in 20 steps");
    }

    #[test]
    fn the_fresh_unit_contributes_nothing_to_the_outputs() {
        // After a replacement the network computes exactly what it computed before with the old unit
        // removed: the fresh unit's outgoing weights are zero.
        for neuron in [lif(), Neuron::Relu] {
            let Replacement {
                before,
                after,
                replaced,
                ..
            } = replace_once(neuron, false);
            assert!(!replaced.is_empty());
            let mut removed = before.clone();
            for &(l, u) in &replaced {
                removed.zero_outgoing(l, u);
            }
            let probe = batch(7);
            assert_eq!(logits(&after, &probe), logits(&removed, &probe), "{neuron:?}");
            for &(l, u) in &replaced {
                let fan_in = after.layers()[l].inputs();
                assert_ne!(
                    after.layers()[l].weights()[u * fan_in..(u + 1) * fan_in],
                    before.layers()[l].weights()[u * fan_in..(u + 1) * fan_in],
                    "input weights were redrawn"
                );
                assert_eq!(after.layers()[l].bias()[u], 0.0);
            }
        }
    }

    #[test]
    fn bias_transfer_moves_the_mean_contribution_into_the_next_bias() {
        let Replacement {
            before,
            after,
            replaced,
            f_hat,
        } = replace_once(Neuron::Relu, true);
        let mut expected = before.clone();
        for &(l, u) in &replaced {
            let next = &mut expected.layers_mut()[l + 1];
            let inputs = next.inputs();
            let column: Vec<f32> = next.weights().iter().skip(u).step_by(inputs).copied().collect();
            for (b, w) in next.bias_mut().iter_mut().zip(column) {
                *b += w * f_hat[l][u];
            }
            expected.zero_outgoing(l, u);
        }
        for l in 0..3 {
            for (i, (a, e)) in after.layers()[l]
                .bias()
                .iter()
                .zip(expected.layers()[l].bias())
                .enumerate()
            {
                // A replaced unit's own bias restarts at 0; every other bias is the transfer's result.
                let e = if replaced.contains(&(l, i)) { 0.0 } else { *e };
                assert!((a - e).abs() < 1e-6, "layer {l} unit {i} bias {a} vs {e}");
            }
        }
        assert!(
            replaced.iter().any(|&(l, u)| f_hat[l][u] != 0.0),
            "the transfer was not trivially zero"
        );
    }

    #[test]
    fn immature_units_are_never_replaced() {
        let mut cbp = ContinualBackprop::new(network(Neuron::Relu), params(0.5, 10), 1);
        let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
        for step in 0..10 {
            cbp.update(&batch(step), UpdateContext::default(), &mut rng);
        }
        assert_eq!(cbp.replaced(), 0, "no unit is older than 10 updates yet");
        cbp.update(&batch(10), UpdateContext::default(), &mut rng);
        assert!(cbp.replaced() > 0);
        for step in 11..40 {
            let ages_before: Vec<Vec<u32>> = cbp.layers.iter().map(|l| l.age.clone()).collect();
            cbp.update(&batch(step), UpdateContext::default(), &mut rng);
            for (stats, before) in cbp.layers.iter().zip(&ages_before) {
                for (now, was) in stats.age.iter().zip(before) {
                    assert!(
                        *now == was + 1 || (*now == 0 && *was >= 10),
                        "a unit aged {was} was replaced"
                    );
                }
            }
        }
    }

    #[test]
    fn replacement_count_is_rate_times_eligible_times_steps() {
        // Maturity 0: every unit is eligible at every step (age ≥ 1 after the increment).
        let (rate, steps) = (0.013, 50usize);
        let mut cbp = ContinualBackprop::new(network(lif()), params(rate, 0), 1);
        let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
        for step in 0..steps {
            cbp.update(&batch(step), UpdateContext::default(), &mut rng);
        }
        let expected: f64 = [20.0, 16.0]
            .iter()
            .map(|n| (rate * n * steps as f64).floor())
            .sum();
        assert!(
            (cbp.replaced() as f64 - expected).abs() <= 2.0,
            "{} vs {expected}",
            cbp.replaced()
        );
    }

    #[test]
    fn the_lowest_utility_unit_goes_first() {
        let mut cbp = ContinualBackprop::new(network(Neuron::Relu), params(1.0 / 20.0, 0), 1);
        let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
        cbp.core.compute(&batch(0), &mut rng);
        cbp.update_utilities();
        let utilities = cbp.corrected_utility(0);
        let lowest = (0..20)
            .min_by(|&a, &b| utilities[a].total_cmp(&utilities[b]).then(a.cmp(&b)))
            .expect("20 units");
        cbp.generate_and_test();
        assert_eq!(
            cbp.layers[0].age[lowest], 0,
            "unit {lowest} had the lowest û and was replaced"
        );
        assert_eq!(cbp.layers[0].age.iter().filter(|&&a| a == 0).count(), 1);
    }
}
