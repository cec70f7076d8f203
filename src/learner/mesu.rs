//! MESU, Metaplasticity from Synaptic Uncertainty (Bonnet et al., Nat. Commun. 2025).
//!
//! Every parameter is a Gaussian `N(μ, σ²)`. An update draws S weight samples `w = μ + σ·ε`, runs a
//! forward and backward pass on each, and estimates `∂C/∂μ = E[∂L/∂w]`, `∂C/∂σ = E[ε·∂L/∂w]`,
//! with C the loss **summed** over the batch as in the JAX reference. Then (the JAX reference's form):
//!
//! ```text
//! μ ← μ + lr_μ · [ −σ²·∂C/∂μ + σ²(μ_p − μ) / (N·σ_p²) ]
//! σ ← σ + lr_σ · ½ · [ −σ²·∂C/∂σ + σ(σ_p² − σ²) / (N·σ_p²) ]
//! ```
//!
//! The data terms give each weight the learning rate σ² (uncertain weights stay plastic, certain ones
//! consolidate); the 1/N terms forget toward the prior, so N is the memory window in updates × batch.
//! Optionally each change is clipped to ±ratio_max·σ (the PyTorch reference's guard). σ is kept above
//! `sigma_min` so it stays a standard deviation. Prediction averages the softmax over S samples.
//!
//! Biases are Gaussian too (as in the PyTorch reference). Initial μ is the network's initialisation;
//! initial σ is `sigma_init` × the layer's initial weight bound (JAX: σ₀ = ½ of the bound).

use super::stochastic::{self, PredictScratch};
use super::{Backprop, Learner, NoiseTable, UpdateContext, UpdateStats};
use crate::data::Batch;
use crate::rng::{Purpose, Rng};
use crate::snn::{Network, Workspace};
use crate::spec::MesuParams;

/// The MESU learner.
#[derive(Debug)]
pub struct Mesu {
    core: Backprop,
    params: MesuParams,
    /// μ, flat in parameter order.
    mean: Vec<f32>,
    /// σ, flat in parameter order.
    sigma: Vec<f32>,
    /// A noise window that wraps around the table's end ([`NoiseTable::window`]).
    noise_scratch: Vec<f32>,
    grad_mean: Vec<f32>,
    grad_sigma: Vec<f32>,
    noise: NoiseTable,
    seed: u64,
    updates: u64,
    /// Network used for sampled predictions (predict takes `&self`).
    scratch: PredictScratch,
}

impl Mesu {
    /// The learner around `network` (its weights become the initial means).
    pub fn new(network: Network, params: MesuParams, seed: u64) -> Mesu {
        let mean: Vec<f32> = network.parameters().flat_map(|p| p.iter().copied()).collect();
        let sigma = stochastic::initial_sigma(&network, params.sigma_init);
        let n = mean.len();
        let scratch = PredictScratch::new(&network);
        Mesu {
            core: Backprop::new(network),
            params,
            mean,
            sigma,
            noise_scratch: Vec::new(),
            grad_mean: vec![0.0; n],
            grad_sigma: vec![0.0; n],
            noise: NoiseTable::new(seed),
            seed,
            updates: 0,
            scratch,
        }
    }

    /// σ of every parameter, flat.
    pub fn sigma(&self) -> &[f32] {
        &self.sigma
    }

    /// μ of every parameter, flat.
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// The MESU step from gradient estimates of the summed loss (one formula, used by training and tests).
    pub fn apply(&mut self, grad_mean: &[f32], grad_sigma: &[f32]) {
        let p = &self.params;
        let sp2 = p.sigma_prior * p.sigma_prior;
        let forget = 1.0 / (p.memory * sp2 as f64);
        let forget = forget as f32;
        let ratio = p.ratio_max;
        for i in 0..self.mean.len() {
            let (m, s) = (self.mean[i], self.sigma[i]);
            let s2 = s * s;
            let mut dm = p.lr_mu * (-s2 * grad_mean[i] + s2 * (p.mu_prior - m) * forget);
            let mut ds = p.lr_sigma * 0.5 * (-s2 * grad_sigma[i] + s * (sp2 - s2) * forget);
            if let Some(r) = ratio {
                let limit = r * s;
                dm = dm.clamp(-limit, limit);
                ds = ds.clamp(-limit, limit);
            }
            self.mean[i] = m + dm;
            self.sigma[i] = (s + ds).max(p.sigma_min);
        }
    }
}

impl Learner for Mesu {
    fn name(&self) -> &str {
        "mesu"
    }

    fn network(&self) -> &Network {
        &self.core.network
    }

    fn update(&mut self, batch: &Batch, _context: UpdateContext, rng: &mut Rng) -> UpdateStats {
        let mut noise_rng = Rng::stream(self.seed, Purpose::Learner, &[self.updates]);
        self.updates += 1;
        let stats = stochastic::sample_gradients(
            &mut self.core,
            &self.mean,
            &self.sigma,
            self.params.samples,
            &self.noise,
            &mut noise_rng,
            batch,
            rng,
            &mut self.noise_scratch,
            &mut self.grad_mean,
            Some(&mut self.grad_sigma),
        );
        // Batch-mean gradients summed over samples → gradients of the batch-summed loss.
        let scale = batch.len() as f32 / self.params.samples as f32;
        let (mut gm, mut gs) = (
            std::mem::take(&mut self.grad_mean),
            std::mem::take(&mut self.grad_sigma),
        );
        gm.iter_mut().chain(gs.iter_mut()).for_each(|g| *g *= scale);
        self.apply(&gm, &gs);
        self.grad_mean = gm;
        self.grad_sigma = gs;
        // The network shows the means between updates.
        stochastic::write_parameters(&mut self.core.network, &self.mean);
        stats
    }

    fn predict(&self, images: &[f32], workspace: &mut Workspace, rng: &mut Rng, predictions: &mut Vec<u8>) {
        stochastic::predict(
            &self.scratch,
            &self.mean,
            &self.sigma,
            self.params.test_samples,
            &self.noise,
            images,
            workspace,
            rng,
            predictions,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic;
    use crate::snn::NetworkConfig;

    fn params(memory: f64) -> MesuParams {
        MesuParams {
            sigma_prior: 0.2,
            mu_prior: 0.0,
            memory,
            samples: 3,
            test_samples: 3,
            sigma_init: 2.0,
            sigma_min: 1e-6,
            ratio_max: None,
            lr_mu: 1.0,
            lr_sigma: 1.0,
        }
    }

    fn mesu(memory: f64) -> Mesu {
        let net = Network::new(NetworkConfig::test_ann(256, 16, 10), 2);
        Mesu::new(net, params(memory), 4)
    }

    #[test]
    fn without_data_sigma_relaxes_to_the_prior_and_mu_to_its_prior_at_the_rate_set_by_n() {
        let mut m = mesu(50.0);
        let zeros = vec![0.0; m.mean.len()];
        let start: f32 = m.mean.iter().map(|v| v.abs()).sum();
        let (mu0, s0) = (m.mean[5], m.sigma[5]);
        m.apply(&zeros, &zeros);
        let forget = 1.0 / (50.0 * 0.04);
        let want_mu = mu0 + s0 * s0 * (0.0 - mu0) * forget;
        let want_sigma = s0 + 0.5 * s0 * (0.04 - s0 * s0) * forget;
        assert!((m.mean[5] - want_mu).abs() < 1e-7, "{} vs {want_mu}", m.mean[5]);
        assert!((m.sigma[5] - want_sigma).abs() < 1e-7);
        for _ in 0..20_000 {
            m.apply(&zeros, &zeros);
        }
        assert!(m.sigma.iter().all(|s| (s - 0.2).abs() < 1e-3), "σ → σ_prior");
        let after: f32 = m.mean.iter().map(|v| v.abs()).sum();
        assert!(after < 1e-3 * start, "μ → μ_prior = 0: {start} → {after}");
    }

    #[test]
    fn with_an_infinite_window_the_forgetting_terms_vanish() {
        let mut m = mesu(f64::INFINITY);
        let zeros = vec![0.0; m.mean.len()];
        let (mu, sigma) = (m.mean.clone(), m.sigma.clone());
        m.apply(&zeros, &zeros);
        assert_eq!((m.mean.clone(), m.sigma.clone()), (mu, sigma));
    }

    #[test]
    fn sigma_stays_positive_and_training_learns() {
        let mut m = mesu(1e5);
        let data = synthetic(400, 100);
        let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
        let mut correct = 0;
        for step in 0..40 {
            let batch = Batch {
                images: data.train.images[step * 10 * 256..(step + 1) * 10 * 256].to_vec(),
                labels: data.train.labels[step * 10..(step + 1) * 10].to_vec(),
            };
            let stats = m.update(&batch, UpdateContext::default(), &mut rng);
            if step >= 30 {
                correct += stats.correct;
            }
            assert!(m.sigma.iter().all(|&s| s > 0.0 && s.is_finite()));
        }
        assert!(
            correct > 30,
            "online accuracy over the last 10 updates: {correct}/100"
        );
        let test = Batch {
            images: data.test.images.clone(),
            labels: data.test.labels.clone(),
        };
        let mut predictions = vec![];
        m.predict(
            &test.images,
            &mut Workspace::default(),
            &mut rng,
            &mut predictions,
        );
        let right = predictions
            .iter()
            .zip(&test.labels)
            .filter(|(p, y)| p == y)
            .count();
        assert!(right > 30, "sampled prediction {right}/100");
    }
}
