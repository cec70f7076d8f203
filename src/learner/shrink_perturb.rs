//! Shrink & Perturb, both published forms (Ash & Adams 2020; Dohare et al. 2024).
//!
//! - [`PerStep`] (Dohare et al.): SGD with weight decay as the shrink, then i.i.d. Gaussian noise
//!   `N(0, σ²)` added to every weight and bias after each step. Defaults for permuted MNIST: α = 0.003,
//!   weight decay 1e-4, σ = 1e-5.
//! - [`AtTaskStart`] (Ash & Adams): plain SGD, and at each new task `θ ← λ·θ + p·θ_fresh`, where
//!   `θ_fresh` is a freshly initialised network (so the noise follows each layer's init distribution).
//!   Defaults λ = 0.4, p = 0.1. Needs visible task boundaries.

use super::{Backprop, Learner, NoiseTable, UpdateContext, UpdateStats};
use crate::data::Batch;
use crate::rng::{Purpose, Rng};
use crate::snn::Network;

/// Dohare's per-step Shrink & Perturb.
#[derive(Debug)]
pub struct PerStep {
    core: Backprop,
    lr: f32,
    weight_decay: f32,
    noise_std: f32,
    noise: NoiseTable,
    buffer: Vec<f32>,
    seed: u64,
    updates: u64,
}

impl PerStep {
    /// The learner; `seed` keys its noise.
    pub fn new(network: Network, lr: f32, weight_decay: f32, noise_std: f32, seed: u64) -> PerStep {
        PerStep {
            core: Backprop::new(network),
            lr,
            weight_decay,
            noise_std,
            noise: NoiseTable::new(seed),
            buffer: Vec::new(),
            seed,
            updates: 0,
        }
    }
}

impl Learner for PerStep {
    fn name(&self) -> &str {
        "shrink_perturb"
    }

    fn network(&self) -> &Network {
        &self.core.network
    }

    fn update(&mut self, batch: &Batch, _context: UpdateContext, rng: &mut Rng) -> UpdateStats {
        let stats = self.core.compute(batch, rng);
        let (lr, decay, std) = (self.lr, self.weight_decay, self.noise_std);
        let mut noise_rng = Rng::stream(self.seed, Purpose::Learner, &[self.updates]);
        self.updates += 1;
        let Backprop {
            network, gradients, ..
        } = &mut self.core;
        for (p, g) in network.parameters_mut().zip(gradients.slices()) {
            self.buffer.resize(p.len(), 0.0);
            self.noise.fill(&mut self.buffer, &mut noise_rng);
            for ((w, g), e) in p.iter_mut().zip(g).zip(&self.buffer) {
                *w -= lr * (g + decay * *w);
                *w += std * e;
            }
        }
        stats
    }
}

/// Ash & Adams' Shrink & Perturb at each task boundary.
#[derive(Debug)]
pub struct AtTaskStart {
    core: Backprop,
    lr: f32,
    shrink: f32,
    perturb: f32,
    seed: u64,
    boundaries: u64,
}

impl AtTaskStart {
    /// The learner; `seed` keys the fresh networks.
    pub fn new(network: Network, lr: f32, shrink: f32, perturb: f32, seed: u64) -> AtTaskStart {
        AtTaskStart {
            core: Backprop::new(network),
            lr,
            shrink,
            perturb,
            seed,
            boundaries: 0,
        }
    }

    /// `θ ← λ·θ + p·θ_fresh`.
    fn shrink_and_perturb(&mut self) {
        let fresh_seed = Rng::stream(self.seed, Purpose::Learner, &[self.boundaries]).next_u64();
        self.boundaries += 1;
        let fresh = Network::new(self.core.network.config().clone(), fresh_seed);
        for (p, f) in self.core.network.parameters_mut().zip(fresh.parameters()) {
            for (w, n) in p.iter_mut().zip(f) {
                *w = self.shrink * *w + self.perturb * n;
            }
        }
    }
}

impl Learner for AtTaskStart {
    fn name(&self) -> &str {
        "shrink_perturb_task"
    }

    fn network(&self) -> &Network {
        &self.core.network
    }

    fn update(&mut self, batch: &Batch, context: UpdateContext, rng: &mut Rng) -> UpdateStats {
        // The first task starts from the initialisation itself; every later task is a warm start.
        if context.new_task && context.task > 0 {
            self.shrink_and_perturb();
        }
        let stats = self.core.compute(batch, rng);
        self.core.descend(self.lr);
        stats
    }
}
