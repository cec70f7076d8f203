//! Learners: how a network is updated from a minibatch.
//!
//! A [`Learner`] owns its network and whatever per-parameter state its method needs, and turns one
//! minibatch into one update. The built-in baselines (each cited in its file) are all
//! "backprop plus something":
//! - [`penalty`]: SGD with a term added to the gradient: plain SGD, L2, L2-Init, online and stream EWC,
//!   SI;
//! - [`shrink_perturb`]: Dohare's per-step form and Ash & Adams' task-boundary form;
//! - [`cbp`]: continual backprop (generate-and-test of hidden units);
//! - [`redo`]: recycling of dormant units;
//! - [`mesu`]: Bayesian weights with per-synapse uncertainty as learning rate.
//!
//! A learner never sees files, tasks or metrics beyond [`UpdateContext`]. Per-parameter state is laid
//! out flat in the order of [`Network::parameters`], so every method's loop runs over slices.

pub mod cbp;
#[cfg(test)]
mod equivalence;
pub mod mesu;
pub mod penalty;
pub mod redo;
pub mod rule_learner;
pub mod shrink_perturb;
pub mod stochastic;
pub mod structure;

use crate::data::Batch;
use crate::rng::{Purpose, Rng};
use crate::snn::{Gradients, Network, Pass, Workspace, argmax};
use crate::spec::LearnerSpec;

/// What a learner may know about where it is in the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpdateContext {
    /// Index of the current task (from 0).
    pub task: usize,
    /// Updates since the task began.
    pub step: usize,
    /// True on a task's first update when boundaries are visible.
    pub new_task: bool,
    /// Updates in the current task (the protocol's length, which the structure schedule's window is a
    /// fraction of; 0 when unknown, as in unit tests that drive a learner by hand).
    pub updates_per_task: usize,
}

/// The outcome of one update, measured on the forward pass *before* the weights changed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpdateStats {
    /// Mean cross-entropy over the batch.
    pub loss: f32,
    /// Examples whose prediction was right (prequential accuracy).
    pub correct: usize,
}

/// An update method bound to its network.
pub trait Learner: Send {
    /// The method's name as reports print it.
    fn name(&self) -> &str;

    /// The network being trained (for a Bayesian learner: the network of mean weights).
    fn network(&self) -> &Network;

    /// One update from `batch`. `rng` drives any stochastic part (input encoding, noise).
    fn update(&mut self, batch: &Batch, context: UpdateContext, rng: &mut Rng) -> UpdateStats;

    /// Which synapses of weight matrix `layer` exist (row-major, like its weights); `None` when all do.
    /// Only learners with a structure schedule prune.
    fn present(&self, _layer: usize) -> Option<&[bool]> {
        None
    }

    /// Predicted classes of the examples in `images` (`examples × inputs`, row-major), written into
    /// `predictions`. Learners whose prediction is not one deterministic forward pass (MESU averages
    /// samples) override this.
    fn predict(&self, images: &[f32], workspace: &mut Workspace, rng: &mut Rng, predictions: &mut Vec<u8>) {
        predict_once(self.network(), images, workspace, rng, predictions);
    }
}

/// Predicted classes of the examples in `images` from one deterministic forward pass of `network`.
pub fn predict_once(
    network: &Network,
    images: &[f32],
    workspace: &mut Workspace,
    rng: &mut Rng,
    predictions: &mut Vec<u8>,
) {
    let classes = network.config().classes;
    let examples = images.len() / network.config().inputs.max(1);
    network.forward(images, examples, workspace, Pass::Predict, rng);
    predictions.clear();
    predictions.extend(
        workspace
            .logits()
            .chunks_exact(classes)
            .map(|row| argmax(row).0 as u8),
    );
}

/// Compiled rule scripts by path, for the `Rule` learners of a run (the caller reads and compiles them).
pub type Rules = std::collections::BTreeMap<std::path::PathBuf, crate::rule::CompiledRule>;

/// Builds the learner a spec names, around a freshly initialised network. `seed` keys the learner's own
/// random streams (noise, redrawn units), apart from the network's initial weights. `rules` must hold
/// every rule the spec names.
pub fn build(spec: &LearnerSpec, network: Network, seed: u64, rules: &Rules) -> Box<dyn Learner> {
    match spec.clone() {
        LearnerSpec::Rule(rule) => {
            let path = rule
                .path
                .as_ref()
                .expect("a run's Rule learner names its file (spec check)");
            let compiled = rules
                .get(path)
                .expect("the caller compiles every rule before building learners");
            Box::new(rule_learner::RuleLearner::new(
                network,
                spec.label(),
                compiled,
                rule_learner::Settings::new(&rule),
                seed,
            ))
        }
        LearnerSpec::Sgd { lr } => Box::new(penalty::Penalized::new(network, lr, penalty::Penalty::None)),
        LearnerSpec::L2 { lr, weight_decay } => Box::new(penalty::Penalized::new(
            network,
            lr,
            penalty::Penalty::WeightDecay { lambda: weight_decay },
        )),
        LearnerSpec::L2Init { lr, strength } => {
            let init = network.parameters().flat_map(|p| p.iter().copied()).collect();
            Box::new(penalty::Penalized::new(
                network,
                lr,
                penalty::Penalty::ToInit {
                    lambda: strength,
                    init,
                },
            ))
        }
        LearnerSpec::EwcOnline { lr, lambda, gamma } => Box::new(penalty::Penalized::new(
            network,
            lr,
            penalty::Penalty::ewc_online(lambda, gamma),
        )),
        LearnerSpec::EwcStream { lr, lambda, gamma } => Box::new(penalty::Penalized::new(
            network,
            lr,
            penalty::Penalty::ewc_stream(lambda, gamma),
        )),
        LearnerSpec::Si {
            lr,
            strength,
            damping,
        } => Box::new(penalty::Penalized::new(
            network,
            lr,
            penalty::Penalty::si(strength, damping),
        )),
        LearnerSpec::ShrinkPerturb {
            lr,
            weight_decay,
            noise_std,
        } => Box::new(shrink_perturb::PerStep::new(
            network,
            lr,
            weight_decay,
            noise_std,
            seed,
        )),
        LearnerSpec::ShrinkPerturbTask { lr, shrink, perturb } => Box::new(shrink_perturb::AtTaskStart::new(
            network, lr, shrink, perturb, seed,
        )),
        LearnerSpec::Cbp(params) => Box::new(cbp::ContinualBackprop::new(network, params, seed)),
        LearnerSpec::Redo {
            lr,
            threshold,
            period,
        } => Box::new(redo::Redo::new(network, lr, threshold, period, seed)),
        LearnerSpec::Mesu(params) => Box::new(mesu::Mesu::new(network, params, seed)),
    }
}

/// The part every gradient-based learner shares: a network, the buffers of its passes and its
/// gradients.
#[derive(Clone, Debug)]
pub struct Backprop {
    /// The network being trained.
    pub network: Network,
    /// Buffers of the training pass (its activity is read by CBP and ReDo).
    pub workspace: Workspace,
    /// Gradients of the last [`Backprop::compute`].
    pub gradients: Gradients,
}

impl Backprop {
    /// Wraps a network.
    pub fn new(network: Network) -> Backprop {
        let gradients = network.zero_gradients();
        Backprop {
            network,
            workspace: Workspace::default(),
            gradients,
        }
    }

    /// Forward (training pass) and backward on `batch`; gradients land in `self.gradients`.
    pub fn compute(&mut self, batch: &Batch, rng: &mut Rng) -> UpdateStats {
        self.network
            .forward(&batch.images, batch.len(), &mut self.workspace, Pass::Train, rng);
        let (loss, correct) = self.network.backward(
            &batch.images,
            &batch.labels,
            &mut self.workspace,
            &mut self.gradients,
        );
        UpdateStats { loss, correct }
    }

    /// The forward training pass alone, for a learner that reads no gradient: loss and accuracy come
    /// from the logits, and `self.gradients` is left as it was (zero unless a backward pass ran).
    pub fn forward_only(&mut self, batch: &Batch, rng: &mut Rng, scratch: &mut Vec<f32>) -> UpdateStats {
        self.network
            .forward(&batch.images, batch.len(), &mut self.workspace, Pass::Train, rng);
        let logits = self.workspace.logits();
        scratch.resize(logits.len(), 0.0);
        let classes = self.network.config().classes;
        let (loss, correct) = crate::snn::softmax_cross_entropy(logits, &batch.labels, classes, scratch);
        UpdateStats { loss, correct }
    }

    /// `θ ← θ − lr·g` for every parameter.
    pub fn descend(&mut self, lr: f32) {
        for (p, g) in self.network.parameters_mut().zip(self.gradients.slices()) {
            for (w, g) in p.iter_mut().zip(g) {
                *w -= lr * g;
            }
        }
    }
}

/// A table of standard normal draws read at random offsets: the cheap Gaussian noise of per-step
/// Shrink & Perturb and MESU's weight samples.
///
/// Drawing 53,000 fresh normals per update with Box–Muller would cost more than the update itself. A
/// shared table of 2^20 exact draws, read as a contiguous window at a random offset, costs one read per
/// value; the same trick carries OpenAI's evolution strategies (Salimans et al. 2017, "shared noise
/// table"). Two windows overlap only as shifted sequences, so a synapse never sees correlated noise
/// across its own draws unless two offsets coincide (probability 2^-20 per pair).
#[derive(Clone, Debug)]
pub struct NoiseTable {
    values: Vec<f32>,
}

impl NoiseTable {
    /// Entries in the table.
    pub const LEN: usize = 1 << 20;

    /// The table for `seed`.
    pub fn new(seed: u64) -> NoiseTable {
        let mut rng = Rng::stream(seed, Purpose::Noise, &[]);
        NoiseTable {
            values: (0..Self::LEN).map(|_| rng.normal()).collect(),
        }
    }

    /// Fills `out` with consecutive table values from a random offset, wrapping around the end.
    pub fn fill(&self, out: &mut [f32], rng: &mut Rng) {
        let start = rng.below(Self::LEN);
        self.copy_from(start, out);
    }

    /// The `len` values [`NoiseTable::fill`] would write, drawing the same offset from `rng`: borrowed
    /// from the table when they do not wrap around its end (nearly always: a window is the size of a
    /// network), copied into `scratch` when they do. Saves a copy of the window on every weight sample.
    pub fn window<'a>(&'a self, len: usize, rng: &mut Rng, scratch: &'a mut Vec<f32>) -> &'a [f32] {
        let start = rng.below(Self::LEN);
        if start + len <= Self::LEN {
            return &self.values[start..start + len];
        }
        scratch.resize(len, 0.0);
        self.copy_from(start, scratch);
        scratch
    }

    /// Writes the table's values from `start` on into `out`, wrapping around the end.
    fn copy_from(&self, mut start: usize, out: &mut [f32]) {
        let mut done = 0;
        while done < out.len() {
            let take = (out.len() - done).min(Self::LEN - start);
            out[done..done + take].copy_from_slice(&self.values[start..start + take]);
            done += take;
            start = 0;
        }
    }
}

#[cfg(test)]
mod noise_table_tests {
    use super::NoiseTable;
    use crate::rng::{Purpose, Rng};

    #[test]
    fn a_window_is_what_fill_writes_from_the_same_draw() {
        let table = NoiseTable::new(3);
        // Half the offsets make a window this long wrap around the table's end.
        let len = NoiseTable::LEN / 2 + 3;
        let (mut borrowed, mut wrapped) = (0, 0);
        let mut scratch = Vec::new();
        for seed in 0..16 {
            let mut filled = vec![0.0; len];
            let mut rng = Rng::stream(seed, Purpose::Noise, &[1]);
            table.fill(&mut filled, &mut rng);
            let after_fill = rng.next_u64();
            let mut rng = Rng::stream(seed, Purpose::Noise, &[1]);
            let at = table.window(len, &mut rng, &mut scratch).as_ptr() as usize;
            let is_scratch = at == scratch.as_ptr() as usize;
            let window = table.window(len, &mut Rng::stream(seed, Purpose::Noise, &[1]), &mut scratch);
            assert_eq!(window, filled.as_slice(), "seed {seed}");
            if is_scratch {
                wrapped += 1;
            } else {
                borrowed += 1;
            }
            assert_eq!(rng.next_u64(), after_fill, "window draws what fill draws");
        }
        assert!(
            borrowed > 0 && wrapped > 0,
            "both cases seen: {borrowed} borrowed, {wrapped} wrapped"
        );
    }
}
