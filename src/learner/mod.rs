//! Learners: how a network is updated from a minibatch.
//!
//! A [`Learner`] owns its network and whatever per-synapse state its method needs, and turns one
//! minibatch into one update. This issue ships plain SGD; the baselines (continual backprop, MESU, EWC,
//! …) and compiled rules plug in behind the same trait. A learner never sees files, tasks or metrics
//! beyond the `new_task` signal of [`UpdateContext`].

use crate::data::Batch;
use crate::rng::Rng;
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

    /// The network being trained.
    fn network(&self) -> &Network;

    /// One update from `batch`. `rng` drives any stochastic part (input encoding, noise).
    fn update(&mut self, batch: &Batch, context: UpdateContext, rng: &mut Rng) -> UpdateStats;

    /// Predicted classes for `batch`, written into `predictions`. Learners whose prediction is not
    /// one deterministic forward pass (MESU averages samples) override this.
    fn predict(&self, batch: &Batch, workspace: &mut Workspace, rng: &mut Rng, predictions: &mut Vec<u8>) {
        let network = self.network();
        let classes = network.config().classes;
        network.forward(&batch.images, batch.len(), workspace, Pass::Eval, rng);
        predictions.clear();
        predictions.extend(
            workspace
                .logits()
                .chunks_exact(classes)
                .map(|row| argmax(row).0 as u8),
        );
    }
}

/// Builds the learner a spec names, around a freshly initialised network.
pub fn build(spec: &LearnerSpec, network: Network) -> Box<dyn Learner> {
    match *spec {
        LearnerSpec::Sgd { lr } => Box::new(Sgd::new(network, lr)),
    }
}

/// Plain SGD: `w ← w − lr·∂L/∂w` for every weight and bias.
#[derive(Debug)]
pub struct Sgd {
    network: Network,
    workspace: Workspace,
    gradients: Gradients,
    lr: f32,
}

impl Sgd {
    /// SGD with step size `lr`.
    pub fn new(network: Network, lr: f32) -> Sgd {
        let gradients = network.zero_gradients();
        Sgd {
            network,
            workspace: Workspace::default(),
            gradients,
            lr,
        }
    }
}

impl Learner for Sgd {
    fn name(&self) -> &str {
        "sgd"
    }

    fn network(&self) -> &Network {
        &self.network
    }

    fn update(&mut self, batch: &Batch, _context: UpdateContext, rng: &mut Rng) -> UpdateStats {
        let n = batch.len();
        self.network
            .forward(&batch.images, n, &mut self.workspace, Pass::Train, rng);
        let (loss, correct) = self.network.backward(
            &batch.images,
            &batch.labels,
            &mut self.workspace,
            &mut self.gradients,
        );
        let lr = self.lr;
        for (layer, grad) in self.network.layers_mut().iter_mut().zip(&self.gradients.layers) {
            for (w, g) in layer.weights_mut().iter_mut().zip(&grad.weights) {
                *w -= lr * g;
            }
            for (b, g) in layer.bias_mut().iter_mut().zip(&grad.bias) {
                *b -= lr * g;
            }
        }
        UpdateStats { loss, correct }
    }
}
