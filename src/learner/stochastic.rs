//! Stochastic weights `w = μ + σ·ε`: the sampling MESU and rules that read `sigma` share
//! (Bonnet et al. 2025, "Bayesian continual learning and forgetting in neural networks", MESU).
//!
//! An update draws S weight samples, runs a forward and backward pass on each, and sums
//! `∂L/∂w` and `ε·∂L/∂w` over the samples: divided by S they estimate `∂L/∂μ` and `∂L/∂σ`. Every
//! parameter's ε comes from one [`NoiseTable`] window per sample, in the order of
//! [`Network::parameters`], so two learners with the same seed draw the same weights. Prediction
//! averages the softmax over samples.

use super::{Backprop, NoiseTable, UpdateStats};
use crate::data::Batch;
use crate::rng::Rng;
use crate::snn::{Network, Pass, Workspace, accumulate_softmax, argmax};

/// How a rule's stochastic weights are sampled (the spec's `learner.stochastic`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// Weight samples per update.
    pub samples: usize,
    /// Weight samples per prediction.
    pub test_samples: usize,
    /// Initial σ as a fraction of the layer's initial weight bound.
    pub sigma_init: f32,
    /// Floor of σ.
    pub sigma_min: f32,
}

/// Writes `w = μ + σ·ε` into `network`, every slice flat in parameter order.
pub fn write_sample(network: &mut Network, mean: &[f32], sigma: &[f32], eps: &[f32]) {
    let mut offset = 0;
    for p in network.parameters_mut() {
        let n = p.len();
        let (m, s, e) = (
            &mean[offset..offset + n],
            &sigma[offset..offset + n],
            &eps[offset..offset + n],
        );
        for (((w, m), s), e) in p.iter_mut().zip(m).zip(s).zip(e) {
            *w = m + s * e;
        }
        offset += n;
    }
}

/// The sums over `samples` weight samples of the batch-mean gradient (into `grad_sum`) and of ε × it
/// (into `grad_sigma_sum`, when given: a rule that neither reads ∂L/∂σ nor is MESU leaves it out, and
/// with it two of the accumulation's six memory streams), drawing each sample's ε as a window of
/// `noise` with `noise_rng` (read in place; `scratch` holds a window that wraps around the table's
/// end). The network holds the last sample afterwards. Returns the mean loss over samples and the
/// examples the sample-averaged softmax got right.
#[allow(clippy::too_many_arguments)]
pub fn sample_gradients(
    core: &mut Backprop,
    mean: &[f32],
    sigma: &[f32],
    samples: usize,
    noise: &NoiseTable,
    noise_rng: &mut Rng,
    batch: &Batch,
    rng: &mut Rng,
    scratch: &mut Vec<f32>,
    grad_sum: &mut [f32],
    mut grad_sigma_sum: Option<&mut [f32]>,
) -> UpdateStats {
    let n = mean.len();
    let classes = core.network.config().classes;
    grad_sum.fill(0.0);
    if let Some(gs) = grad_sigma_sum.as_deref_mut() {
        gs.fill(0.0);
    }
    let mut probabilities = vec![0.0f32; batch.len() * classes];
    let mut loss = 0.0;
    for _ in 0..samples {
        let eps = noise.window(n, noise_rng, scratch);
        write_sample(&mut core.network, mean, sigma, eps);
        let stats = core.compute(batch, rng);
        loss += stats.loss;
        accumulate_softmax(core.workspace.logits(), classes, &mut probabilities);
        let mut offset = 0;
        for g in core.gradients.slices() {
            let k = g.len();
            let gm = &mut grad_sum[offset..offset + k];
            match grad_sigma_sum.as_deref_mut() {
                Some(gs) => {
                    let (gs, e) = (&mut gs[offset..offset + k], &eps[offset..offset + k]);
                    for (((gm, gs), &gi), &e) in gm.iter_mut().zip(gs.iter_mut()).zip(g).zip(e) {
                        *gm += gi;
                        *gs += e * gi;
                    }
                }
                None => gm.iter_mut().zip(g).for_each(|(gm, &gi)| *gm += gi),
            }
            offset += k;
        }
    }
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

/// Copies the flat `values` into `network`'s parameters.
pub fn write_parameters(network: &mut Network, values: &[f32]) {
    let mut offset = 0;
    for p in network.parameters_mut() {
        p.copy_from_slice(&values[offset..offset + p.len()]);
        offset += p.len();
    }
}

/// Scratch for [`predict`], behind a lock because prediction takes `&self`.
#[derive(Debug)]
pub struct PredictScratch(std::sync::Mutex<(Network, Vec<f32>, Vec<f32>)>);

impl PredictScratch {
    /// Scratch for networks shaped like `network`.
    pub fn new(network: &Network) -> PredictScratch {
        PredictScratch(std::sync::Mutex::new((network.clone(), Vec::new(), Vec::new())))
    }
}

/// Predicted classes of the examples in `images`: the argmax of the softmax averaged over `samples`
/// weight samples.
#[allow(clippy::too_many_arguments)]
pub fn predict(
    scratch: &PredictScratch,
    mean: &[f32],
    sigma: &[f32],
    samples: usize,
    noise: &NoiseTable,
    images: &[f32],
    workspace: &mut Workspace,
    rng: &mut Rng,
    predictions: &mut Vec<u8>,
) {
    let mut guard = scratch
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (network, scratch, probabilities) = &mut *guard;
    let classes = network.config().classes;
    let examples = images.len() / network.config().inputs.max(1);
    probabilities.clear();
    probabilities.resize(examples * classes, 0.0);
    for _ in 0..samples {
        let eps = noise.window(mean.len(), rng, scratch);
        write_sample(network, mean, sigma, eps);
        network.forward(images, examples, workspace, Pass::Predict, rng);
        accumulate_softmax(workspace.logits(), classes, probabilities);
    }
    predictions.clear();
    predictions.extend(probabilities.chunks_exact(classes).map(|p| argmax(p).0 as u8));
}

/// Initial σ of every parameter, flat: `sigma_init` × the half-width of a uniform fan-in
/// initialisation of its layer (1/√fan_in, or √(6/fan_in) for Kaiming), biases included (MESU's JAX
/// reference: σ₀ = ½ of the bound).
pub fn initial_sigma(network: &Network, sigma_init: f32) -> Vec<f32> {
    let config = network.config();
    let mut sigma = Vec::with_capacity(network.parameter_count());
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
        sigma.extend(std::iter::repeat_n(sigma_init * bound, count));
    }
    sigma
}

/// The stochastic weights of a rule that uses `sigma`: μ (the network holds it between updates), σ and
/// the estimates of one update, flat in parameter order. Weights and biases that do not follow the
/// rule, and absent synapses, have σ = 0 and so are not sampled.
#[derive(Debug)]
pub struct StochasticWeights {
    sampling: Sampling,
    /// μ, σ, σ at creation, the ∂L/∂σ estimate (empty when nothing reads it), the gradient sum, and a
    /// noise window that wraps.
    mean: Vec<f32>,
    sigma: Vec<f32>,
    initial: Vec<f32>,
    grad_sigma: Vec<f32>,
    /// Whether [`StochasticWeights::estimate`] estimates ∂L/∂σ.
    sigma_gradient: bool,
    grad_sum: Vec<f32>,
    noise_scratch: Vec<f32>,
    /// Where each layer's weights and biases start in the flat buffers.
    offsets: Vec<(usize, usize)>,
    scratch: PredictScratch,
}

/// Which of a layer's parameters follow the rule, for [`StochasticWeights::new`].
#[derive(Clone, Copy, Debug)]
pub struct Sampled<'a> {
    /// Its weights follow the rule.
    pub weights: bool,
    /// Its biases follow the rule.
    pub biases: bool,
    /// Which synapses exist (`None`: all).
    pub present: Option<&'a [bool]>,
}

impl StochasticWeights {
    /// σ₀ for the parameters `sampled` says follow the rule (layer by layer), 0 for the rest.
    /// `sigma_gradient`: whether something reads ∂L/∂σ, which [`StochasticWeights::estimate`] then
    /// estimates ([`StochasticWeights::layer`] gives empty slices for it otherwise).
    pub fn new(
        network: &Network,
        sampling: Sampling,
        sampled: &[Sampled],
        sigma_gradient: bool,
    ) -> StochasticWeights {
        let mut sigma = initial_sigma(network, sampling.sigma_init);
        let mut offsets = Vec::with_capacity(sampled.len());
        let mut offset = 0;
        for (layer, s) in network.layers().iter().zip(sampled) {
            let n = layer.weights().len();
            offsets.push((offset, offset + n));
            if !s.weights {
                sigma[offset..offset + n].fill(0.0);
            }
            if !s.biases {
                sigma[offset + n..offset + n + layer.outputs()].fill(0.0);
            }
            if let Some(present) = s.present {
                for (x, &present) in sigma[offset..offset + n].iter_mut().zip(present) {
                    if !present {
                        *x = 0.0;
                    }
                }
            }
            offset += n + layer.outputs();
        }
        let total = sigma.len();
        StochasticWeights {
            sampling,
            mean: network.parameters().flatten().copied().collect(),
            initial: sigma.clone(),
            sigma,
            grad_sigma: if sigma_gradient {
                vec![0.0; total]
            } else {
                Vec::new()
            },
            sigma_gradient,
            grad_sum: vec![0.0; total],
            noise_scratch: Vec::new(),
            offsets,
            scratch: PredictScratch::new(network),
        }
    }

    /// One update's gradient estimates ([`sample_gradients`]): afterwards the network holds μ again,
    /// `core`'s gradients hold the batch-mean ∂L/∂μ (which rules read as `grad`), and
    /// [`StochasticWeights::layer`] gives ∂L/∂σ.
    pub fn estimate(
        &mut self,
        core: &mut Backprop,
        noise: &NoiseTable,
        noise_rng: &mut Rng,
        batch: &Batch,
        rng: &mut Rng,
    ) -> UpdateStats {
        let stats = sample_gradients(
            core,
            &self.mean,
            &self.sigma,
            self.sampling.samples,
            noise,
            noise_rng,
            batch,
            rng,
            &mut self.noise_scratch,
            &mut self.grad_sum,
            self.sigma_gradient.then_some(self.grad_sigma.as_mut_slice()),
        );
        // Sums over samples → the batch means.
        let inv = 1.0 / self.sampling.samples as f32;
        self.grad_sigma.iter_mut().for_each(|g| *g *= inv);
        write_parameters(&mut core.network, &self.mean);
        let mut offset = 0;
        for g in core.gradients.slices_mut() {
            for (gi, s) in g.iter_mut().zip(&self.grad_sum[offset..]) {
                *gi = s * inv;
            }
            offset += g.len();
        }
        stats
    }

    /// σ and ∂L/∂σ of layer `l`'s weights (`n` of them) and biases (`outputs`); ∂L/∂σ empty when it is
    /// not estimated.
    pub fn layer(&self, l: usize, n: usize, outputs: usize) -> [&[f32]; 4] {
        let (w, b) = self.offsets[l];
        let grad_sigma = |start: usize, len: usize| {
            if self.sigma_gradient {
                &self.grad_sigma[start..start + len]
            } else {
                &[][..]
            }
        };
        [
            &self.sigma[w..w + n],
            grad_sigma(w, n),
            &self.sigma[b..b + outputs],
            grad_sigma(b, outputs),
        ]
    }

    /// A rule wrote σ of layer `l`'s weights: floored at σ_min, 0 where no synapse is.
    pub fn write_weights(&mut self, l: usize, new: &[f32], present: Option<&[bool]>) {
        let (start, _) = self.offsets[l];
        let floor = self.sampling.sigma_min;
        for (i, (s, new)) in self.sigma[start..start + new.len()]
            .iter_mut()
            .zip(new)
            .enumerate()
        {
            let exists = present.is_none_or(|p| p[i]);
            *s = if exists { new.max(floor) } else { 0.0 };
        }
    }

    /// A rule wrote σ of layer `l`'s biases: floored at σ_min.
    pub fn write_biases(&mut self, l: usize, new: &[f32]) {
        let (_, start) = self.offsets[l];
        let floor = self.sampling.sigma_min;
        for (s, new) in self.sigma[start..start + new.len()].iter_mut().zip(new) {
            *s = new.max(floor);
        }
    }

    /// Synapses `indices` of layer `l` were created again: their σ restarts at σ₀.
    pub fn restart(&mut self, l: usize, indices: impl IntoIterator<Item = usize>) {
        let (start, _) = self.offsets[l];
        for i in indices {
            self.sigma[start + i] = self.initial[start + i];
        }
    }

    /// Synapses `indices` of layer `l` were pruned: σ = 0, so they are not sampled.
    pub fn remove(&mut self, l: usize, indices: &[usize]) {
        let (start, _) = self.offsets[l];
        indices.iter().for_each(|&i| self.sigma[start + i] = 0.0);
    }

    /// After the update: μ is the network's parameters.
    pub fn take_mean(&mut self, network: &Network) {
        // Slice by slice: a flattened iterator copies one value at a time.
        self.mean.clear();
        network.parameters().for_each(|p| self.mean.extend_from_slice(p));
    }

    /// Predicted classes: the softmax averaged over the test-time weight samples ([`predict`]).
    pub fn predict(
        &self,
        noise: &NoiseTable,
        images: &[f32],
        workspace: &mut Workspace,
        rng: &mut Rng,
        predictions: &mut Vec<u8>,
    ) {
        predict(
            &self.scratch,
            &self.mean,
            &self.sigma,
            self.sampling.test_samples,
            noise,
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
    use crate::rng::Purpose;
    use crate::snn::NetworkConfig;

    #[test]
    fn leaving_out_the_sigma_gradient_changes_no_bit_of_the_mean_gradient() {
        let network = Network::new(NetworkConfig::test_ann(256, 16, 10), 2);
        let mean: Vec<f32> = network.parameters().flatten().copied().collect();
        let sigma = vec![0.05f32; mean.len()];
        let noise = NoiseTable::new(3);
        let data = synthetic(100, 10);
        let batch = Batch {
            images: data.train.images[..10 * 256].to_vec(),
            labels: data.train.labels[..10].to_vec(),
        };
        let run = |with_sigma_gradient: bool| {
            let mut core = Backprop::new(network.clone());
            let mut noise_rng = Rng::stream(0, Purpose::Learner, &[1]);
            let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
            let (mut grad, mut grad_sigma) = (vec![0.0; mean.len()], vec![0.0; mean.len()]);
            let stats = sample_gradients(
                &mut core,
                &mean,
                &sigma,
                4,
                &noise,
                &mut noise_rng,
                &batch,
                &mut rng,
                &mut Vec::new(),
                &mut grad,
                with_sigma_gradient.then_some(grad_sigma.as_mut_slice()),
            );
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            (stats.loss.to_bits(), stats.correct, bits(&grad), grad_sigma)
        };
        let (with, without) = (run(true), run(false));
        assert_eq!(with.0, without.0);
        assert_eq!(with.1, without.1);
        assert_eq!(with.2, without.2);
        assert!(
            with.3.iter().any(|&g| g != 0.0),
            "the sigma gradient was estimated"
        );
        assert!(without.3.iter().all(|&g| g == 0.0), "and left out");
    }
}
