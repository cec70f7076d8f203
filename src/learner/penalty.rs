//! SGD with a term added to the gradient: plain SGD, L2, L2-Init, online EWC, stream EWC and SI.
//!
//! Equations:
//! - L2 (Krogh & Hertz 1992): `θ ← θ − α(∇L + λθ)`.
//! - L2-Init (Kumar et al. 2023): penalty `λ‖θ − θ₀‖²`, so `θ ← θ − α(∇L + 2λ(θ − θ₀))`.
//! - Online EWC (Kirkpatrick et al. 2017; Schwarz et al. 2018): penalty `(λ/2)·Σ F(θ − θ*)²`; at each task boundary `F ← γF + F_task` and
//!   `θ* ← θ`, where `F_task` is the mean of `g²` over the task's updates (the empirical Fisher of the
//!   unregularised loss, per update).
//! - Stream EWC (as MESU's authors run it, Bonnet et al. 2025): the same penalty, but after *every* step `F ← γF + g²` and `θ*` = the parameters
//!   before that step. Needs no boundaries.
//! - SI (Zenke et al. 2017): penalty `c·Σ Ω(θ − θ̃)²`; each step `ω += −g·Δθ` with g the unregularised
//!   gradient; at each boundary `Ω += relu(ω / ((θ − θ̃)² + ξ))`, `ω ← 0`, `θ̃ ← θ` (the relu follows
//!   the MESU reference code).
//!
//! Each variant has its own loop over whole parameter slices (no per-element dispatch), so the extra
//! cost over SGD is one or two streams of per-parameter state.

use super::{Backprop, Learner, UpdateContext, UpdateStats};
use crate::data::Batch;
use crate::rng::Rng;
use crate::snn::Network;
use crate::snn::neuron::accumulate_scaled;

/// The term a [`Penalized`] learner adds to the gradient, with its per-parameter state (flat, in the
/// order of [`Network::parameters`]).
#[derive(Clone, Debug)]
pub enum Penalty {
    /// Plain SGD.
    None,
    /// L2 weight decay.
    WeightDecay {
        /// λ.
        lambda: f32,
    },
    /// Pull toward the initial parameters.
    ToInit {
        /// λ.
        lambda: f32,
        /// θ₀.
        init: Vec<f32>,
    },
    /// Online EWC.
    EwcOnline {
        /// λ.
        lambda: f32,
        /// γ, the down-weighting of older Fisher information.
        gamma: f32,
        /// F, consolidated over past tasks.
        fisher: Vec<f32>,
        /// θ*, the parameters at the last boundary.
        anchor: Vec<f32>,
        /// Σ g² over the current task.
        task_fisher: Vec<f32>,
        /// Updates in the current task.
        task_updates: usize,
    },
    /// Stream (task-free) EWC.
    EwcStream {
        /// λ.
        lambda: f32,
        /// γ.
        gamma: f32,
        /// F.
        fisher: Vec<f32>,
        /// θ before the previous step.
        anchor: Vec<f32>,
    },
    /// Synaptic intelligence.
    Si {
        /// c.
        strength: f32,
        /// ξ.
        damping: f32,
        /// Ω.
        importance: Vec<f32>,
        /// ω, the path integral over the current task.
        path: Vec<f32>,
        /// θ̃, the parameters at the last boundary.
        anchor: Vec<f32>,
    },
}

impl Penalty {
    /// Online EWC with empty state (sized by [`Penalized::new`]).
    pub fn ewc_online(lambda: f32, gamma: f32) -> Penalty {
        Penalty::EwcOnline {
            lambda,
            gamma,
            fisher: vec![],
            anchor: vec![],
            task_fisher: vec![],
            task_updates: 0,
        }
    }

    /// Stream EWC with empty state.
    pub fn ewc_stream(lambda: f32, gamma: f32) -> Penalty {
        Penalty::EwcStream {
            lambda,
            gamma,
            fisher: vec![],
            anchor: vec![],
        }
    }

    /// SI with empty state.
    pub fn si(strength: f32, damping: f32) -> Penalty {
        Penalty::Si {
            strength,
            damping,
            importance: vec![],
            path: vec![],
            anchor: vec![],
        }
    }

    /// Sizes the state for parameters `params` (anchors start at the initial parameters).
    fn size_for(&mut self, params: &[f32]) {
        let n = params.len();
        match self {
            Penalty::None | Penalty::WeightDecay { .. } | Penalty::ToInit { .. } => {}
            Penalty::EwcOnline {
                fisher,
                anchor,
                task_fisher,
                ..
            } => {
                *fisher = vec![0.0; n];
                *anchor = params.to_vec();
                *task_fisher = vec![0.0; n];
            }
            Penalty::EwcStream { fisher, anchor, .. } => {
                *fisher = vec![0.0; n];
                *anchor = params.to_vec();
            }
            Penalty::Si {
                importance,
                path,
                anchor,
                ..
            } => {
                *importance = vec![0.0; n];
                *path = vec![0.0; n];
                *anchor = params.to_vec();
            }
        }
    }

    /// The penalty's value at the flat parameters `params`.
    pub fn value(&self, params: &[f32]) -> f64 {
        let sum = |f: &dyn Fn(usize) -> f64| (0..params.len()).map(f).sum::<f64>();
        let p = |i: usize| params[i] as f64;
        match self {
            Penalty::None => 0.0,
            Penalty::WeightDecay { lambda } => 0.5 * *lambda as f64 * sum(&|i| p(i) * p(i)),
            Penalty::ToInit { lambda, init } => *lambda as f64 * sum(&|i| (p(i) - init[i] as f64).powi(2)),
            Penalty::EwcOnline {
                lambda,
                fisher,
                anchor,
                ..
            }
            | Penalty::EwcStream {
                lambda,
                fisher,
                anchor,
                ..
            } => 0.5 * *lambda as f64 * sum(&|i| fisher[i] as f64 * (p(i) - anchor[i] as f64).powi(2)),
            Penalty::Si {
                strength,
                importance,
                anchor,
                ..
            } => *strength as f64 * sum(&|i| importance[i] as f64 * (p(i) - anchor[i] as f64).powi(2)),
        }
    }

    /// The penalty's gradient at `params`, written into `out`.
    pub fn gradient(&self, params: &[f32], out: &mut [f32]) {
        for (i, (o, &w)) in out.iter_mut().zip(params).enumerate() {
            *o = match self {
                Penalty::None => 0.0,
                Penalty::WeightDecay { lambda } => lambda * w,
                Penalty::ToInit { lambda, init } => 2.0 * lambda * (w - init[i]),
                Penalty::EwcOnline {
                    lambda,
                    fisher,
                    anchor,
                    ..
                }
                | Penalty::EwcStream {
                    lambda,
                    fisher,
                    anchor,
                    ..
                } => lambda * fisher[i] * (w - anchor[i]),
                Penalty::Si {
                    strength,
                    importance,
                    anchor,
                    ..
                } => 2.0 * strength * importance[i] * (w - anchor[i]),
            };
        }
    }

    /// Task-boundary consolidation (online EWC and SI); a no-op for the others.
    fn consolidate(&mut self, network: &Network) {
        match self {
            Penalty::EwcOnline {
                gamma,
                fisher,
                anchor,
                task_fisher,
                task_updates,
                ..
            } if *task_updates > 0 => {
                let scale = 1.0 / *task_updates as f32;
                for (f, t) in fisher.iter_mut().zip(task_fisher.iter_mut()) {
                    *f = *gamma * *f + *t * scale;
                    *t = 0.0;
                }
                copy_parameters(network, anchor);
                *task_updates = 0;
            }
            Penalty::Si {
                damping,
                importance,
                path,
                anchor,
                ..
            } => {
                let mut offset = 0;
                for p in network.parameters() {
                    let range = offset..offset + p.len();
                    for (((&w, om), a), imp) in p
                        .iter()
                        .zip(&mut path[range.clone()])
                        .zip(&mut anchor[range.clone()])
                        .zip(&mut importance[range])
                    {
                        let delta = w - *a;
                        *imp += (*om / (delta * delta + *damping)).max(0.0);
                        *om = 0.0;
                        *a = w;
                    }
                    offset += p.len();
                }
            }
            _ => {}
        }
    }
}

fn copy_parameters(network: &Network, into: &mut [f32]) {
    let mut offset = 0;
    for p in network.parameters() {
        into[offset..offset + p.len()].copy_from_slice(p);
        offset += p.len();
    }
}

/// SGD with a [`Penalty`].
#[derive(Debug)]
pub struct Penalized {
    core: Backprop,
    lr: f32,
    penalty: Penalty,
    name: &'static str,
}

impl Penalized {
    /// The learner with step size `lr`.
    pub fn new(network: Network, lr: f32, mut penalty: Penalty) -> Penalized {
        let flat: Vec<f32> = network.parameters().flat_map(|p| p.iter().copied()).collect();
        penalty.size_for(&flat);
        let name = match penalty {
            Penalty::None => "sgd",
            Penalty::WeightDecay { .. } => "l2",
            Penalty::ToInit { .. } => "l2_init",
            Penalty::EwcOnline { .. } => "ewc_online",
            Penalty::EwcStream { .. } => "ewc_stream",
            Penalty::Si { .. } => "si",
        };
        Penalized {
            core: Backprop::new(network),
            lr,
            penalty,
            name,
        }
    }

    /// The penalty and its state.
    pub fn penalty(&self) -> &Penalty {
        &self.penalty
    }
}

impl Learner for Penalized {
    fn name(&self) -> &str {
        self.name
    }

    fn network(&self) -> &Network {
        &self.core.network
    }

    fn update(&mut self, batch: &Batch, context: UpdateContext, rng: &mut Rng) -> UpdateStats {
        let stats = self.core.compute(batch, rng);
        self.step(context.new_task);
        stats
    }
}

impl Penalized {
    /// Applies the penalised step with the gradients of the last forward/backward pass.
    fn step(&mut self, new_task: bool) {
        if new_task {
            self.penalty.consolidate(&self.core.network);
        }
        let lr = self.lr;
        let Backprop {
            network, gradients, ..
        } = &mut self.core;
        if let Penalty::EwcOnline { task_updates, .. } = &mut self.penalty {
            *task_updates += 1;
        }
        let mut offset = 0;
        for (p, g) in network.parameters_mut().zip(gradients.slices()) {
            let range = offset..offset + p.len();
            offset += p.len();
            match &mut self.penalty {
                // w − lr·g is w + (−lr)·g bit for bit (IEEE 754 defines subtraction as adding the
                // negation, and negating lr is exact), so the step is one AVX2 pass.
                Penalty::None => accumulate_scaled(p, g, -lr),
                Penalty::WeightDecay { lambda } => {
                    let lambda = *lambda;
                    for (w, g) in p.iter_mut().zip(g) {
                        *w -= lr * (g + lambda * *w);
                    }
                }
                Penalty::ToInit { lambda, init } => {
                    let two_lambda = 2.0 * *lambda;
                    for ((w, g), w0) in p.iter_mut().zip(g).zip(&init[range]) {
                        *w -= lr * (g + two_lambda * (*w - w0));
                    }
                }
                Penalty::EwcOnline {
                    lambda,
                    fisher,
                    anchor,
                    task_fisher,
                    ..
                } => {
                    let lambda = *lambda;
                    for ((((w, g), f), a), tf) in p
                        .iter_mut()
                        .zip(g)
                        .zip(&fisher[range.clone()])
                        .zip(&anchor[range.clone()])
                        .zip(&mut task_fisher[range])
                    {
                        *tf += g * g;
                        *w -= lr * (g + lambda * f * (*w - a));
                    }
                }
                Penalty::EwcStream {
                    lambda,
                    gamma,
                    fisher,
                    anchor,
                } => {
                    let (lambda, gamma) = (*lambda, *gamma);
                    for (((w, g), f), a) in p
                        .iter_mut()
                        .zip(g)
                        .zip(&mut fisher[range.clone()])
                        .zip(&mut anchor[range])
                    {
                        let before = *w;
                        *w -= lr * (g + lambda * *f * (before - *a));
                        *f = gamma * *f + g * g;
                        *a = before;
                    }
                }
                Penalty::Si {
                    strength,
                    importance,
                    path,
                    anchor,
                    ..
                } => {
                    let two_c = 2.0 * *strength;
                    for ((((w, g), imp), om), a) in p
                        .iter_mut()
                        .zip(g)
                        .zip(&importance[range.clone()])
                        .zip(&mut path[range.clone()])
                        .zip(&anchor[range])
                    {
                        let step = -lr * (g + two_c * imp * (*w - a));
                        *om -= g * step;
                        *w += step;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic;
    use crate::rng::Purpose;
    use crate::snn::NetworkConfig;

    fn network() -> Network {
        Network::new(NetworkConfig::test_ann(256, 12, 10), 1)
    }

    fn batch(offset: usize) -> Batch {
        let data = synthetic(40, 10);
        Batch {
            images: data.train.images[offset * 256..(offset + 8) * 256].to_vec(),
            labels: data.train.labels[offset..offset + 8].to_vec(),
        }
    }

    fn flat(network: &Network) -> Vec<f32> {
        network.parameters().flat_map(|p| p.iter().copied()).collect()
    }

    /// Trains two tasks' worth of updates so every piece of state is non-trivial.
    fn trained(penalty: Penalty) -> Penalized {
        let mut learner = Penalized::new(network(), 0.1, penalty);
        let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
        for step in 0..6 {
            let context = UpdateContext {
                task: step / 3,
                step: step % 3,
                new_task: step % 3 == 0,
                updates_per_task: 3,
            };
            learner.update(&batch(step * 4), context, &mut rng);
        }
        learner
    }

    fn every_penalty() -> Vec<Penalty> {
        let init = flat(&network());
        vec![
            Penalty::WeightDecay { lambda: 0.01 },
            Penalty::ToInit { lambda: 0.05, init },
            Penalty::ewc_online(2.0, 0.2),
            Penalty::ewc_stream(5.0, 0.2),
            Penalty::si(0.5, 1.0),
        ]
    }

    #[test]
    fn ewc_and_si_penalties_are_zero_at_the_anchor() {
        for learner in [
            trained(Penalty::ewc_online(2.0, 0.2)),
            trained(Penalty::si(0.5, 1.0)),
        ] {
            let anchor = match learner.penalty() {
                Penalty::EwcOnline { anchor, fisher, .. } => {
                    assert!(
                        fisher.iter().any(|&f| f > 0.0),
                        "Fisher consolidated at the boundary"
                    );
                    anchor.clone()
                }
                Penalty::Si {
                    anchor, importance, ..
                } => {
                    assert!(
                        importance.iter().any(|&f| f > 0.0),
                        "Ω consolidated at the boundary"
                    );
                    anchor.clone()
                }
                _ => unreachable!("built above"),
            };
            assert_eq!(learner.penalty().value(&anchor), 0.0);
            let mut grad = vec![1.0; anchor.len()];
            learner.penalty().gradient(&anchor, &mut grad);
            assert!(grad.iter().all(|&g| g == 0.0));
            assert!(learner.penalty().value(&flat(learner.network())) > 0.0);
        }
    }

    #[test]
    fn penalty_gradients_match_finite_differences() {
        for penalty in every_penalty() {
            let learner = trained(penalty);
            let theta = flat(learner.network());
            let mut grad = vec![0.0; theta.len()];
            learner.penalty().gradient(&theta, &mut grad);
            let eps = 1e-2f32;
            for i in [0, 7, 500, theta.len() - 3] {
                let mut up = theta.clone();
                up[i] += eps;
                let mut down = theta.clone();
                down[i] -= eps;
                let fd = (learner.penalty().value(&up) - learner.penalty().value(&down)) / (2.0 * eps as f64);
                assert!(
                    (fd - grad[i] as f64).abs() < 1e-4 + 1e-3 * fd.abs(),
                    "{}: parameter {i}: fd {fd} vs {}",
                    learner.name(),
                    grad[i]
                );
            }
        }
    }

    #[test]
    fn the_update_applies_exactly_the_closed_form_penalty_gradient() {
        for penalty in every_penalty() {
            let mut learner = trained(penalty);
            let before = flat(learner.network());
            let mut expected_penalty = vec![0.0; before.len()];
            learner.penalty().gradient(&before, &mut expected_penalty);
            let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
            let context = UpdateContext {
                task: 1,
                step: 5,
                new_task: false,
                updates_per_task: 0,
            };
            learner.update(&batch(24), context, &mut rng);
            let after = flat(learner.network());
            let grads: Vec<f32> = learner
                .core
                .gradients
                .slices()
                .flat_map(|g| g.iter().copied())
                .collect();
            for i in 0..before.len() {
                let want = before[i] - 0.1 * (grads[i] + expected_penalty[i]);
                assert!(
                    (after[i] - want).abs() < 1e-6,
                    "{}: parameter {i}",
                    learner.name()
                );
            }
        }
    }

    #[test]
    fn l2_init_pulls_parameters_with_no_gradient_toward_their_initial_values_not_zero() {
        let net = network();
        let init = flat(&net);
        let penalty = Penalty::ToInit {
            lambda: 0.5,
            init: init.clone(),
        };
        let mut learner = Penalized::new(net, 0.1, penalty);
        for p in learner.core.network.parameters_mut() {
            p.iter_mut().for_each(|w| *w += 1.0);
        }
        for g in learner.core.gradients.slices_mut() {
            g.fill(0.0);
        }
        // Each step with zero gradient: θ − θ₀ shrinks by the factor 1 − α·2λ = 0.9.
        for k in 1..=30 {
            learner.step(false);
            let expected = 0.9f32.powi(k);
            for (w, w0) in flat(learner.network()).iter().zip(&init) {
                assert!(
                    (w - w0 - expected).abs() < 1e-4,
                    "step {k}: {w} vs {w0} + {expected}"
                );
            }
        }
    }
}
