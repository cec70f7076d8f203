//! ReDo: recycling dormant neurons (Sokar et al., ICML 2023).
//!
//! Plain SGD, and every `period` updates, for each hidden layer: the score of unit i is
//! `s_i = E|h_i| / (mean over the layer of E|h| + 1e-9)`; every unit with `s_i ≤ τ` gets fresh input
//! weights from the initial distribution, bias 0 and outgoing weights 0. The readout is never recycled.
//! Defaults: τ = 0.025, period 1000 updates.
//!
//! The expectation E is over every training example since the last recycling, not over the last batch
//! alone: the reference scores a batch of experience, and with the online protocol (batch 1) a single
//! example would make every unit that happens to be silent on it look dormant.

use super::{Backprop, Learner, UpdateContext, UpdateStats};
use crate::data::Batch;
use crate::rng::{Purpose, Rng};
use crate::snn::Network;

/// The ReDo learner.
#[derive(Debug)]
pub struct Redo {
    core: Backprop,
    lr: f32,
    threshold: f32,
    period: usize,
    seed: u64,
    updates: u64,
    activity: Vec<f32>,
    /// Σ|h| per unit of each hidden layer since the last recycling.
    activity_sums: Vec<Vec<f64>>,
    /// Examples those sums cover.
    examples: usize,
    recycled: u64,
}

impl Redo {
    /// The learner; `seed` keys the redrawn weights.
    pub fn new(network: Network, lr: f32, threshold: f32, period: usize, seed: u64) -> Redo {
        // Every update reads the hidden layers' rates: summed as the pass makes them.
        let mut core = Backprop::new(network);
        core.workspace.record_rates(true);
        Redo {
            core,
            lr,
            threshold,
            period,
            seed,
            updates: 0,
            activity: Vec::new(),
            activity_sums: Vec::new(),
            examples: 0,
            recycled: 0,
        }
    }

    /// Units recycled since the start.
    pub fn recycled(&self) -> u64 {
        self.recycled
    }

    /// Adds the last training pass's activity to the running sums.
    fn accumulate(&mut self, batch: usize) {
        let hidden = &self.core.network.config().hidden;
        self.activity_sums.resize_with(hidden.len(), Vec::new);
        for (l, &width) in hidden.iter().enumerate() {
            self.core.workspace.activity_into(l, width, &mut self.activity);
            let sums = &mut self.activity_sums[l];
            sums.resize(width, 0.0);
            for row in self.activity.chunks_exact(width) {
                for (s, h) in sums.iter_mut().zip(row) {
                    *s += h.abs() as f64;
                }
            }
        }
        self.examples += batch;
    }

    /// Recycles the dormant units of every hidden layer and restarts the sums.
    fn recycle(&mut self) {
        for l in 0..self.activity_sums.len() {
            let sums = std::mem::take(&mut self.activity_sums[l]);
            let layer_mean = sums.iter().sum::<f64>() / sums.len() as f64;
            for (unit, &s) in sums.iter().enumerate() {
                if s / (layer_mean + 1e-9) <= self.threshold as f64 {
                    let mut rng = Rng::stream(
                        self.seed,
                        Purpose::Learner,
                        &[self.updates, l as u64, unit as u64],
                    );
                    self.core.network.redraw_incoming(l, unit, &mut rng);
                    self.core.network.zero_outgoing(l, unit);
                    self.recycled += 1;
                }
            }
        }
        self.examples = 0;
    }
}

impl Learner for Redo {
    fn name(&self) -> &str {
        "redo"
    }

    fn network(&self) -> &Network {
        &self.core.network
    }

    fn update(&mut self, batch: &Batch, _context: UpdateContext, rng: &mut Rng) -> UpdateStats {
        let stats = self.core.compute(batch, rng);
        self.accumulate(batch.len());
        self.core.descend(self.lr);
        self.updates += 1;
        if self.updates.is_multiple_of(self.period as u64) {
            self.recycle();
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snn::{Encoding, Init, NetworkConfig, Neuron};

    fn redo(period: usize) -> Redo {
        let network = Network::new(
            NetworkConfig {
                inputs: 4,
                hidden: vec![3],
                classes: 2,
                neuron: Neuron::Relu,
                time_steps: 1,
                encoding: Encoding::Direct,
                readout_beta: 0.0,
                init: Init::KaimingUniform,
            },
            0,
        );
        Redo::new(network, 0.0, 0.1, period, 0)
    }

    #[test]
    fn only_units_dormant_over_the_whole_period_are_recycled() {
        let mut r = redo(2);
        // Unit 0 never fires; unit 1 fires only on the second example; unit 2 on both.
        for (l, w) in r.core.network.layers_mut()[0]
            .weights_mut()
            .chunks_exact_mut(4)
            .enumerate()
        {
            let row: [f32; 4] = [
                [-1.0, -1.0, -1.0, -1.0],
                [0.0, 1.0, 0.0, 0.0],
                [1.0, 1.0, 0.0, 0.0],
            ][l];
            w.copy_from_slice(&row);
        }
        r.core.network.layers_mut()[0].bias_mut().fill(0.0);
        let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
        for x in [[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]] {
            let batch = Batch {
                images: x.to_vec(),
                labels: vec![0],
            };
            // lr 0: only recycling changes the network.
            r.update(&batch, UpdateContext::default(), &mut rng);
        }
        assert_eq!(r.recycled(), 1, "unit 1 was silent on one example only and stays");
        let w = r.core.network.layers()[0].weights();
        assert_ne!(&w[0..4], &[-1.0, -1.0, -1.0, -1.0], "unit 0 was redrawn");
        assert_eq!(&w[4..8], &[0.0, 1.0, 0.0, 0.0]);
        assert!(
            r.core.network.layers()[1]
                .weights()
                .iter()
                .step_by(3)
                .all(|&v| v == 0.0)
        );
    }
}
