//! MESU, Metaplasticity from Synaptic Uncertainty (Bonnet et al., Nat. Commun. 2025;
//! shared/reference/continual-learning.md §2).
//!
//! Every parameter is a Gaussian `N(μ, σ²)`. An update draws S weight samples `w = μ + σ·ε`, runs a
//! forward and backward pass on each, and estimates `∂C/∂μ = E[∂L/∂w]`, `∂C/∂σ = E[ε·∂L/∂w]` (§2.3),
//! with C the loss **summed** over the batch as in the JAX reference. Then (§2.2, JAX form):
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

use super::{Backprop, Learner, NoiseTable, UpdateContext, UpdateStats};
use crate::data::Batch;
use crate::rng::{Purpose, Rng};
use crate::snn::{Network, Pass, Workspace, accumulate_softmax, argmax};
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
    /// ε of every sample of the current update, `samples × parameters`.
    noise_draws: Vec<f32>,
    grad_mean: Vec<f32>,
    grad_sigma: Vec<f32>,
    noise: NoiseTable,
    seed: u64,
    updates: u64,
    /// Network used for sampled predictions (predict takes `&self`).
    scratch: std::sync::Mutex<(Network, Vec<f32>, Vec<f32>)>,
}

impl Mesu {
    /// The learner around `network` (its weights become the initial means).
    pub fn new(network: Network, params: MesuParams, seed: u64) -> Mesu {
        let mean: Vec<f32> = network.parameters().flat_map(|p| p.iter().copied()).collect();
        let mut sigma = Vec::with_capacity(mean.len());
        let config = network.config();
        for (l, layer) in network.layers().iter().enumerate() {
            let fan_in = if l == 0 {
                config.inputs
            } else {
                config.hidden[l - 1]
            } as f32;
            let bound = match config.init {
                crate::snn::Init::FanIn => 1.0 / fan_in.sqrt(),
                crate::snn::Init::KaimingUniform => (6.0 / fan_in).sqrt(),
            };
            let count = layer.weights().len() + layer.bias().len();
            sigma.extend(std::iter::repeat_n(params.sigma_init * bound, count));
        }
        let n = mean.len();
        let scratch = std::sync::Mutex::new((network.clone(), Vec::new(), Vec::new()));
        Mesu {
            core: Backprop::new(network),
            params,
            mean,
            sigma,
            noise_draws: Vec::new(),
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

    /// Writes `w = μ + σ·ε` into `network`.
    fn write_sample(network: &mut Network, mean: &[f32], sigma: &[f32], eps: &[f32]) {
        let mut offset = 0;
        for p in network.parameters_mut() {
            let range = offset..offset + p.len();
            for (((w, m), s), e) in p
                .iter_mut()
                .zip(&mean[range.clone()])
                .zip(&sigma[range.clone()])
                .zip(&eps[range])
            {
                *w = m + s * e;
            }
            offset += p.len();
        }
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
        let n = self.mean.len();
        let samples = self.params.samples;
        let classes = self.core.network.config().classes;
        self.noise_draws.resize(samples * n, 0.0);
        let mut noise_rng = Rng::stream(self.seed, Purpose::Learner, &[self.updates]);
        self.updates += 1;
        self.grad_mean.fill(0.0);
        self.grad_sigma.fill(0.0);
        let mut probabilities = vec![0.0f32; batch.len() * classes];
        let mut loss = 0.0;
        for s in 0..samples {
            let eps = &mut self.noise_draws[s * n..(s + 1) * n];
            self.noise.fill(eps, &mut noise_rng);
            Self::write_sample(&mut self.core.network, &self.mean, &self.sigma, eps);
            let stats = self.core.compute(batch, rng);
            loss += stats.loss;
            accumulate_softmax(self.core.workspace.logits(), classes, &mut probabilities);
            let mut offset = 0;
            for g in self.core.gradients.slices() {
                let range = offset..offset + g.len();
                for ((gm, gs), (&gi, &e)) in self.grad_mean[range.clone()]
                    .iter_mut()
                    .zip(&mut self.grad_sigma[range.clone()])
                    .zip(g.iter().zip(&eps[range]))
                {
                    *gm += gi;
                    *gs += e * gi;
                }
                offset += g.len();
            }
        }
        // Batch-mean gradients averaged over samples → gradients of the batch-summed loss.
        let scale = batch.len() as f32 / samples as f32;
        let (mut gm, mut gs) = (
            std::mem::take(&mut self.grad_mean),
            std::mem::take(&mut self.grad_sigma),
        );
        gm.iter_mut().chain(gs.iter_mut()).for_each(|g| *g *= scale);
        self.apply(&gm, &gs);
        self.grad_mean = gm;
        self.grad_sigma = gs;
        // The network shows the means between updates.
        let mean = std::mem::take(&mut self.mean);
        let mut offset = 0;
        for p in self.core.network.parameters_mut() {
            p.copy_from_slice(&mean[offset..offset + p.len()]);
            offset += p.len();
        }
        self.mean = mean;
        let correct = probabilities
            .chunks_exact(classes)
            .zip(&batch.labels)
            .filter(|(p, y)| argmax(p).0 == **y as usize)
            .count();
        UpdateStats {
            loss: loss / samples as f32,
            correct,
        }
    }

    fn predict(&self, batch: &Batch, workspace: &mut Workspace, rng: &mut Rng, predictions: &mut Vec<u8>) {
        let classes = self.core.network.config().classes;
        let samples = self.params.test_samples;
        let mut guard = self
            .scratch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (network, eps, probabilities) = &mut *guard;
        let n = self.mean.len();
        eps.resize(n, 0.0);
        probabilities.clear();
        probabilities.resize(batch.len() * classes, 0.0);
        for _ in 0..samples {
            self.noise.fill(eps, rng);
            Self::write_sample(network, &self.mean, &self.sigma, eps);
            network.forward(&batch.images, batch.len(), workspace, Pass::Eval, rng);
            accumulate_softmax(workspace.logits(), classes, probabilities);
        }
        predictions.clear();
        predictions.extend(probabilities.chunks_exact(classes).map(|p| argmax(p).0 as u8));
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
        m.predict(&test, &mut Workspace::default(), &mut rng, &mut predictions);
        let right = predictions
            .iter()
            .zip(&test.labels)
            .filter(|(p, y)| p == y)
            .count();
        assert!(right > 30, "sampled prediction {right}/100");
    }
}
