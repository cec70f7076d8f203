//! ReDo: recycling dormant neurons (Sokar et al., ICML 2023; shared/reference/continual-learning.md §4.4).
//!
//! Plain SGD, and every `period` updates, for each hidden layer: the score of unit i is
//! `s_i = mean_b|h_i| / (mean over the layer of mean_b|h| + 1e-9)` on the current batch; every unit with
//! `s_i ≤ τ` gets fresh input weights from the initial distribution, bias 0 and outgoing weights 0. The
//! readout is never recycled. Defaults: τ = 0.025, period 1000 updates.

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
    recycled: u64,
}

impl Redo {
    /// The learner; `seed` keys the redrawn weights.
    pub fn new(network: Network, lr: f32, threshold: f32, period: usize, seed: u64) -> Redo {
        Redo {
            core: Backprop::new(network),
            lr,
            threshold,
            period,
            seed,
            updates: 0,
            activity: Vec::new(),
            recycled: 0,
        }
    }

    /// Units recycled since the start.
    pub fn recycled(&self) -> u64 {
        self.recycled
    }

    /// Recycles the dormant units of every hidden layer, scored on the last training pass.
    fn recycle(&mut self) {
        let hidden = self.core.network.config().hidden.clone();
        for (l, &width) in hidden.iter().enumerate() {
            self.core.workspace.activity_into(l, width, &mut self.activity);
            let mut score = vec![0.0f32; width];
            for row in self.activity.chunks_exact(width) {
                for (s, h) in score.iter_mut().zip(row) {
                    *s += h.abs();
                }
            }
            let layer_mean = score.iter().sum::<f32>() / width as f32;
            for (unit, &s) in score.iter().enumerate() {
                if s / (layer_mean + 1e-9) <= self.threshold {
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
        self.core.descend(self.lr);
        self.updates += 1;
        if self.updates % self.period as u64 == 0 {
            self.recycle();
        }
        stats
    }
}
