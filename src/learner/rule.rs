//! Training with a compiled rule: the `synapse()` program runs over every weight matrix after the
//! backward pass, and `w += dw`.
//!
//! Per update and per weight matrix (rows = postsynaptic neurons, columns = presynaptic ones), the
//! learner gathers exactly the vocabulary the program reads: `w`, `w0` (the weight at creation), `grad`
//! (the batch-mean gradient), `age` (updates since creation), the persistent slots `m` and `u`, `pre` and
//! `post` (mean activity over the batch and the T steps: the input intensity for the first layer, firing
//! rates for hidden layers, the mean softmax probability for the readout), `hebb` (the mean over batch
//! and steps of post × pre activity: one GEMM per matrix, computed only when the rule reads it), their
//! running averages
//! `pre_trace` and `post_trace` (decay 0.99 per update), and the scalars `lr`, `step`, `new_task`,
//! `loss`, `loss_trace`, `fan_in`, `fan_out`, `layer`. Biases follow plain SGD: a synapse rule is about
//! synapses.
//!
//! `psi` is the postsynaptic neuron's mean surrogate derivative over batch and steps (1 for the linear
//! readout, the ReLU derivative in ANN mode); `theta` its threshold (θ of a LIF layer; 0 for the readout
//! and ReLU units).
//!
//! `v` is the postsynaptic membrane averaged over batch and steps (before the reset; the readout's is
//! its mean membrane, the logit); `err` the error at the postsynaptic neuron's output, Σ over batch and
//! steps of ∂L/∂s divided by T (for the readout, the batch mean of softmax − one-hot); `elig` the e-prop
//! eligibility, the mean over batch and steps of ψ_post[t] × x̄_pre[t], where the presynaptic trace
//! x̄[t] = β·x̄[t−1] + x[t] decays with the postsynaptic layer's β (for the readout ψ = 1 and β = β_o).
//!
//! Not trained yet (refused with a clear error before anything runs): `sigma`, `grad_sigma`, and the
//! `neuron()` and `prune()` sections.

use super::{Backprop, Learner, NoiseTable, UpdateContext, UpdateStats};
use crate::data::Batch;
use crate::rng::{Purpose, Rng};
use crate::rule::program::Input;
use crate::rule::{CompiledRule, Program, Section};
use crate::snn::{Network, Storage, accumulate_softmax, matmul};

/// Decay of `pre_trace`, `post_trace` and `loss_trace` per update.
pub const TRACE_DECAY: f32 = 0.99;

/// The vocabulary a synapse rule can be trained with today.
pub const TRAINABLE: [&str; 24] = [
    "w",
    "w0",
    "grad",
    "hebb",
    "elig",
    "v",
    "err",
    "age",
    "m",
    "u",
    "pre",
    "pre_trace",
    "post",
    "post_trace",
    "psi",
    "theta",
    "lr",
    "step",
    "new_task",
    "loss",
    "loss_trace",
    "fan_in",
    "fan_out",
    "layer",
];

/// Why a compiled rule cannot be trained yet; `None` when it can.
pub fn unsupported(rule: &CompiledRule) -> Option<String> {
    for (section, program) in &rule.programs {
        if *section != Section::Synapse {
            return Some(format!(
                "{}() rules are not trained yet (synapse() rules are); remove it to train the synapse rule",
                section.function()
            ));
        }
        let mut missing: Vec<&str> = Vec::new();
        for name in program
            .inputs
            .iter()
            .chain(program.outputs.iter().map(|(n, _)| n))
        {
            if !TRAINABLE.contains(name) && *name != "dw" && !missing.contains(name) {
                missing.push(name);
            }
        }
        if !missing.is_empty() {
            return Some(format!(
                "the rule uses {}, which training does not compute yet; trainable today: {}",
                missing.join(", "),
                TRAINABLE.join(", ")
            ));
        }
    }
    None
}

/// Per weight matrix state.
#[derive(Clone, Debug)]
struct MatrixState {
    w0: Vec<f32>,
    m: Vec<f32>,
    u: Vec<f32>,
    age: Vec<f32>,
    pre_trace: Vec<f32>,
    post_trace: Vec<f32>,
    /// Output buffers of the program, one per output, reused.
    outputs: Vec<Vec<f32>>,
}

/// A learner driven by a compiled synapse rule.
#[derive(Debug)]
pub struct RuleLearner {
    core: Backprop,
    name: String,
    program: Program,
    lr: f32,
    hidden_only: bool,
    matrices: Vec<MatrixState>,
    loss_trace: Option<f32>,
    noise: NoiseTable,
    seed: u64,
    updates: u64,
    registers: Vec<Vec<f32>>,
    broadcast: Vec<Vec<f32>>,
    activity: Vec<f32>,
    probabilities: Vec<f32>,
    /// `hebb` of the current matrix (when the rule reads it).
    hebb: Vec<f32>,
    reads_hebb: bool,
    /// `elig` of the current matrix, and the presynaptic trace sequence it is built from.
    elig: Vec<f32>,
    trace: Vec<f32>,
    /// What the program reads, so the learner computes only that (DESIGN §3).
    reads: Reads,
}

/// Which derived quantities the program needs.
#[derive(Clone, Copy, Debug, Default)]
struct Reads {
    pre: bool,
    post: bool,
    psi: bool,
    age: bool,
    v: bool,
    err: bool,
    elig: bool,
}

impl RuleLearner {
    /// The learner for `rule` (checked with [`unsupported`] first); `hidden_only` leaves the readout to
    /// plain SGD.
    pub fn new(
        network: Network,
        name: String,
        rule: &CompiledRule,
        lr: f32,
        hidden_only: bool,
        seed: u64,
    ) -> RuleLearner {
        let program = rule
            .programs
            .iter()
            .find(|(s, _)| *s == Section::Synapse)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| {
                let default = crate::rule::compile(
                    "fn synapse() { dw = -lr * grad; }",
                    std::path::Path::new("default"),
                )
                .expect("the default synapse rule compiles");
                default.programs[0].1.clone()
            });
        let reads_hebb = program.inputs.contains(&"hebb");
        let reads_any = |names: &[&str]| program.inputs.iter().any(|n| names.contains(n));
        let reads = Reads {
            pre: reads_any(&["pre", "pre_trace"]),
            // hebb and err on the readout use its softmax probabilities, computed with post.
            post: reads_any(&["post", "post_trace", "hebb", "err"]),
            psi: reads_any(&["psi"]),
            age: reads_any(&["age"]),
            v: reads_any(&["v"]),
            err: reads_any(&["err"]),
            elig: reads_any(&["elig"]),
        };
        let matrices = network
            .layers()
            .iter()
            .map(|d| MatrixState {
                w0: d.weights().to_vec(),
                m: vec![0.0; d.weights().len()],
                u: vec![0.0; d.weights().len()],
                age: vec![0.0; d.weights().len()],
                pre_trace: vec![0.0; d.inputs()],
                post_trace: vec![0.0; d.outputs()],
                outputs: vec![vec![0.0; d.weights().len()]; program.outputs.len()],
            })
            .collect();
        let mut core = Backprop::new(network);
        core.workspace.record(reads.v, reads.err);
        RuleLearner {
            core,
            name,
            program,
            lr,
            hidden_only,
            matrices,
            loss_trace: None,
            noise: NoiseTable::new(seed),
            seed,
            updates: 0,
            registers: Vec::new(),
            broadcast: Vec::new(),
            activity: Vec::new(),
            probabilities: Vec::new(),
            hebb: Vec::new(),
            reads_hebb,
            elig: Vec::new(),
            trace: Vec::new(),
            reads,
        }
    }

    /// Mean over the batch of `values` (`batch × width`).
    fn batch_mean(values: &[f32], width: usize) -> Vec<f32> {
        let mut mean = vec![0.0f32; width];
        let rows = values.len() / width.max(1);
        for row in values.chunks_exact(width) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= rows.max(1) as f32);
        mean
    }
}

impl Learner for RuleLearner {
    fn name(&self) -> &str {
        &self.name
    }

    fn network(&self) -> &Network {
        &self.core.network
    }

    fn update(&mut self, batch: &Batch, context: UpdateContext, rng: &mut Rng) -> UpdateStats {
        let stats = self.core.compute(batch, rng);
        let loss_trace = match self.loss_trace {
            Some(t) => TRACE_DECAY * t + (1.0 - TRACE_DECAY) * stats.loss,
            None => stats.loss,
        };
        self.loss_trace = Some(loss_trace);
        let config = self.core.network.config().clone();
        let hidden = config.hidden.len();
        let mut noise_rng = Rng::stream(self.seed, Purpose::Learner, &[self.updates]);
        for l in 0..=hidden {
            let (inputs, outputs) = {
                let layer = &self.core.network.layers()[l];
                (layer.inputs(), layer.outputs())
            };
            if l == hidden && self.hidden_only {
                let lr = self.lr;
                let grad = &self.core.gradients.layers[l].weights;
                for (w, g) in self.core.network.layers_mut()[l]
                    .weights_mut()
                    .iter_mut()
                    .zip(grad)
                {
                    *w -= lr * g;
                }
                continue;
            }
            // pre: input intensities (first layer) or the previous layer's firing rates.
            let reads = self.reads;
            let pre = if !reads.pre {
                Vec::new()
            } else if l == 0 {
                Self::batch_mean(&batch.images, inputs)
            } else {
                self.core
                    .workspace
                    .activity_into(l - 1, inputs, &mut self.activity);
                Self::batch_mean(&self.activity, inputs)
            };
            // post: this layer's firing rates, or the readout's mean softmax probability.
            let post = if !reads.post {
                Vec::new()
            } else if l < hidden {
                self.core.workspace.activity_into(l, outputs, &mut self.activity);
                Self::batch_mean(&self.activity, outputs)
            } else {
                self.probabilities.clear();
                self.probabilities.resize(self.core.workspace.logits().len(), 0.0);
                accumulate_softmax(self.core.workspace.logits(), outputs, &mut self.probabilities);
                Self::batch_mean(&self.probabilities, outputs)
            };
            let state = &mut self.matrices[l];
            for (t, p) in state.pre_trace.iter_mut().zip(&pre) {
                *t = TRACE_DECAY * *t + (1.0 - TRACE_DECAY) * p;
            }
            for (t, p) in state.post_trace.iter_mut().zip(&post) {
                *t = TRACE_DECAY * *t + (1.0 - TRACE_DECAY) * p;
            }
            if self.reads_hebb {
                self.hebb.resize(outputs * inputs, 0.0);
                let ws = &self.core.workspace;
                let steps = config.time_steps;
                let rows = batch.len();
                if l == hidden {
                    // Readout: mean over the batch of softmax probability × presynaptic firing rate.
                    ws.activity_into(l - 1, inputs, &mut self.activity);
                    matmul(
                        &mut self.hebb,
                        &self.probabilities,
                        Storage::Transposed,
                        &self.activity,
                        Storage::RowMajor,
                        (outputs, rows, inputs),
                        false,
                    );
                    self.hebb.iter_mut().for_each(|h| *h /= rows as f32);
                } else if l == 0 && ws.input_sequence().is_empty() {
                    // Direct input is the same at every step: Σ_t s[t]ᵀx = T·(rate)ᵀx.
                    ws.activity_into(0, outputs, &mut self.activity);
                    matmul(
                        &mut self.hebb,
                        &self.activity,
                        Storage::Transposed,
                        &batch.images,
                        Storage::RowMajor,
                        (outputs, rows, inputs),
                        false,
                    );
                    self.hebb.iter_mut().for_each(|h| *h /= rows as f32);
                } else {
                    let pre_steps = if l == 0 {
                        ws.input_sequence()
                    } else {
                        ws.spikes(l - 1)
                    };
                    matmul(
                        &mut self.hebb,
                        ws.spikes(l),
                        Storage::Transposed,
                        pre_steps,
                        Storage::RowMajor,
                        (outputs, steps * rows, inputs),
                        false,
                    );
                    let scale = 1.0 / (steps * rows) as f32;
                    self.hebb.iter_mut().for_each(|h| *h *= scale);
                }
            }
            let psi: Vec<f32> = if !reads.psi {
                Vec::new()
            } else if l == hidden {
                vec![1.0; outputs]
            } else {
                let surrogate = self.core.workspace.surrogate(l);
                let mut mean = vec![0.0f32; outputs];
                for row in surrogate.chunks_exact(outputs) {
                    for (m, p) in mean.iter_mut().zip(row) {
                        *m += p;
                    }
                }
                let count = (surrogate.len() / outputs).max(1) as f32;
                mean.iter_mut().for_each(|m| *m /= count);
                mean
            };
            let theta = match config.neuron {
                crate::snn::Neuron::Lif(lif) if l < hidden => lif.threshold,
                _ => 0.0,
            };
            let steps = config.time_steps;
            let rows = batch.len();
            let v: Vec<f32> = if !reads.v {
                Vec::new()
            } else if l == hidden {
                Self::batch_mean(self.core.workspace.logits(), outputs)
            } else {
                let scale = 1.0 / (steps * rows) as f32;
                self.core
                    .workspace
                    .membrane_sum(l)
                    .iter()
                    .map(|m| m * scale)
                    .collect()
            };
            let err: Vec<f32> = if !reads.err {
                Vec::new()
            } else if l == hidden {
                // probabilities hold the softmax (computed with post); subtract the one-hot labels.
                let mut e = Self::batch_mean(&self.probabilities, outputs);
                for &y in &batch.labels {
                    e[y as usize] -= 1.0 / rows as f32;
                }
                e
            } else {
                let scale = 1.0 / steps as f32;
                self.core
                    .workspace
                    .error_sum(l)
                    .iter()
                    .map(|e| e * scale)
                    .collect()
            };
            let mut elig_is_per_column = false;
            if reads.elig {
                let ws = &self.core.workspace;
                let beta = match config.neuron {
                    crate::snn::Neuron::Lif(lif) if l < hidden => lif.beta,
                    _ if l == hidden => config.readout_beta,
                    _ => 0.0,
                };
                // The presynaptic trace at every step, T × batch × inputs.
                let direct_first = l == 0 && ws.input_sequence().is_empty();
                let per_step = rows * inputs;
                self.trace.clear();
                self.trace.resize(steps * per_step, 0.0);
                for t in 0..steps {
                    let x: &[f32] = if direct_first {
                        &batch.images
                    } else if l == 0 {
                        &ws.input_sequence()[t * per_step..(t + 1) * per_step]
                    } else {
                        &ws.spikes(l - 1)[t * per_step..(t + 1) * per_step]
                    };
                    let (before, now) = self.trace.split_at_mut(t * per_step);
                    let now = &mut now[..per_step];
                    if t == 0 {
                        now.copy_from_slice(x);
                    } else {
                        let prev = &before[(t - 1) * per_step..];
                        for ((n, p), xi) in now.iter_mut().zip(prev).zip(x) {
                            *n = beta * p + xi;
                        }
                    }
                }
                let scale = 1.0 / (steps * rows) as f32;
                if l == hidden {
                    // ψ = 1 for the linear readout: the mean trace of each presynaptic unit.
                    self.elig = Self::batch_mean(&self.trace, inputs);
                    elig_is_per_column = true;
                } else {
                    self.elig.resize(outputs * inputs, 0.0);
                    matmul(
                        &mut self.elig,
                        ws.surrogate(l),
                        Storage::Transposed,
                        &self.trace,
                        Storage::RowMajor,
                        (outputs, steps * rows, inputs),
                        false,
                    );
                    self.elig.iter_mut().for_each(|e| *e *= scale);
                }
            }
            let weights = self.core.network.layers()[l].weights();
            let grad = &self.core.gradients.layers[l].weights;
            let program_inputs: Vec<Input> = self
                .program
                .inputs
                .iter()
                .map(|name| match *name {
                    "w" => Input::PerSynapse(weights),
                    "w0" => Input::PerSynapse(&state.w0),
                    "grad" => Input::PerSynapse(grad),
                    "hebb" => Input::PerSynapse(&self.hebb),
                    "age" => Input::PerSynapse(&state.age),
                    "m" => Input::PerSynapse(&state.m),
                    "u" => Input::PerSynapse(&state.u),
                    "pre" => Input::PerColumn(&pre),
                    "pre_trace" => Input::PerColumn(&state.pre_trace),
                    "post" => Input::PerRow(&post),
                    "post_trace" => Input::PerRow(&state.post_trace),
                    "psi" => Input::PerRow(&psi),
                    "v" => Input::PerRow(&v),
                    "err" => Input::PerRow(&err),
                    "elig" if elig_is_per_column => Input::PerColumn(&self.elig),
                    "elig" => Input::PerSynapse(&self.elig),
                    "theta" => Input::Scalar(theta),
                    "lr" => Input::Scalar(self.lr),
                    "step" => Input::Scalar(context.step as f32),
                    "new_task" => Input::Scalar(if context.new_task { 1.0 } else { 0.0 }),
                    "loss" => Input::Scalar(stats.loss),
                    "loss_trace" => Input::Scalar(loss_trace),
                    "fan_in" => Input::Scalar(inputs as f32),
                    "fan_out" => Input::Scalar(outputs as f32),
                    "layer" => Input::Scalar(l as f32),
                    other => unreachable!("'{other}' is refused by unsupported() before training"),
                })
                .collect();
            let mut outs: Vec<&mut [f32]> = state.outputs.iter_mut().map(Vec::as_mut_slice).collect();
            let noise = &self.noise;
            self.program.run_matrix(
                outputs,
                inputs,
                &program_inputs,
                &mut outs,
                &mut |chunk| noise.fill(chunk, &mut noise_rng),
                &mut self.registers,
                &mut self.broadcast,
            );
            drop(program_inputs);
            for (k, (name, _)) in self.program.outputs.iter().enumerate() {
                match *name {
                    "dw" => {
                        let dw = &state.outputs[k];
                        for (w, d) in self.core.network.layers_mut()[l].weights_mut().iter_mut().zip(dw) {
                            *w += d;
                        }
                    }
                    "m" => std::mem::swap(&mut state.m, &mut state.outputs[k]),
                    "u" => std::mem::swap(&mut state.u, &mut state.outputs[k]),
                    other => unreachable!("'{other}' is refused by unsupported() before training"),
                }
            }
            if reads.age {
                state.age.iter_mut().for_each(|a| *a += 1.0);
            }
        }
        // Biases: plain SGD.
        let lr = self.lr;
        for (layer, grad) in self
            .core
            .network
            .layers_mut()
            .iter_mut()
            .zip(&self.core.gradients.layers)
        {
            for (b, g) in layer.bias_mut().iter_mut().zip(&grad.bias) {
                *b -= lr * g;
            }
        }
        self.updates += 1;
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snn::{
        Encoding, Init, Lif, NetworkConfig, Neuron, Pass, Reset, Workspace, softmax_cross_entropy,
    };

    /// With `dw = hebb`, an update moves every weight by exactly `hebb`; check it against the definition
    /// computed element by element from the same forward pass.
    #[test]
    fn hebb_is_the_mean_over_batch_and_steps_of_post_times_pre() {
        let config = NetworkConfig {
            inputs: 6,
            hidden: vec![5, 4],
            classes: 3,
            neuron: Neuron::Lif(Lif {
                beta: 0.9,
                threshold: 0.2,
                slope: 25.0,
                reset: Reset::SameStep,
            }),
            time_steps: 3,
            encoding: Encoding::Direct,
            readout_beta: 0.9,
            init: Init::FanIn,
        };
        let network = Network::new(config.clone(), 4);
        let compiled = crate::rule::compile("fn synapse() { dw = hebb; }", std::path::Path::new("h.rhai"))
            .expect("compiles");
        let mut learner = RuleLearner::new(network.clone(), "h".into(), &compiled, 0.0, false, 0);
        let batch = Batch {
            images: (0..2 * 6).map(|i| ((i * 5 % 7) as f32) / 6.0).collect(),
            labels: vec![0, 2],
        };
        let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
        learner.update(&batch, UpdateContext::default(), &mut rng.clone());
        // The same forward pass, by hand.
        let mut ws = Workspace::default();
        network.forward(&batch.images, 2, &mut ws, Pass::Train, &mut rng);
        let (t_steps, b) = (3usize, 2usize);
        let probabilities: Vec<f32> = ws
            .logits()
            .chunks_exact(3)
            .flat_map(|z| {
                let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = z.iter().map(|v| (v - m).exp()).sum();
                z.iter().map(move |v| (v - m).exp() / sum).collect::<Vec<_>>()
            })
            .collect();
        for l in 0..3 {
            let before = network.layers()[l].weights();
            let after = learner.network().layers()[l].weights();
            let (outs, ins) = (network.layers()[l].outputs(), network.layers()[l].inputs());
            for i in 0..outs {
                for j in 0..ins {
                    let want: f32 = if l == 2 {
                        (0..b)
                            .map(|bb| {
                                let rate: f32 = (0..t_steps)
                                    .map(|t| ws.spikes(1)[(t * b + bb) * ins + j])
                                    .sum::<f32>()
                                    / t_steps as f32;
                                probabilities[bb * outs + i] * rate
                            })
                            .sum::<f32>()
                            / b as f32
                    } else {
                        let mut sum = 0.0;
                        for t in 0..t_steps {
                            for bb in 0..b {
                                let post = ws.spikes(l)[(t * b + bb) * outs + i];
                                let pre = if l == 0 {
                                    batch.images[bb * ins + j]
                                } else {
                                    ws.spikes(l - 1)[(t * b + bb) * ins + j]
                                };
                                sum += post * pre;
                            }
                        }
                        sum / (t_steps * b) as f32
                    };
                    let got = after[i * ins + j] - before[i * ins + j];
                    assert!((got - want).abs() < 1e-5, "layer {l} ({i},{j}): {got} vs {want}");
                }
            }
        }
        let active: usize = ws.spikes(0).iter().filter(|&&s| s > 0.0).count();
        assert!(active > 0, "the test must see spikes");

        // psi and theta: dw = psi + 10·theta moves row i of hidden layer l by mean ψ_i + 10·θ.
        let compiled = crate::rule::compile(
            "fn synapse() { dw = psi + 10.0 * theta; }",
            std::path::Path::new("p.rhai"),
        )
        .expect("compiles");
        let mut learner = RuleLearner::new(network.clone(), "p".into(), &compiled, 0.0, false, 0);
        learner.update(
            &batch,
            UpdateContext::default(),
            &mut Rng::stream(0, Purpose::Encoding, &[]),
        );
        for l in 0..3 {
            let (outs, ins) = (network.layers()[l].outputs(), network.layers()[l].inputs());
            for i in 0..outs {
                let want = if l == 2 {
                    1.0
                } else {
                    let psi = ws.surrogate(l);
                    (0..t_steps * b).map(|r| psi[r * outs + i]).sum::<f32>() / (t_steps * b) as f32
                        + 10.0 * 0.2
                };
                let got =
                    learner.network().layers()[l].weights()[i * ins] - network.layers()[l].weights()[i * ins];
                assert!((got - want).abs() < 1e-5, "layer {l} row {i}: {got} vs {want}");
            }
        }
    }

    fn lif_network(hidden: Vec<usize>, time_steps: usize) -> Network {
        Network::new(
            NetworkConfig {
                inputs: 6,
                hidden,
                classes: 3,
                neuron: Neuron::Lif(Lif {
                    beta: 0.9,
                    threshold: 0.2,
                    slope: 25.0,
                    reset: Reset::SameStep,
                }),
                time_steps,
                encoding: Encoding::Direct,
                readout_beta: 0.8,
                init: Init::FanIn,
            },
            4,
        )
    }

    fn batch() -> Batch {
        Batch {
            images: (0..2 * 6).map(|i| ((i * 5 % 7) as f32) / 6.0).collect(),
            labels: vec![0, 2],
        }
    }

    /// The weight change of one update with `dw = <expr>` and lr 0 (biases untouched).
    fn delta(network: &Network, expr: &str) -> Vec<Vec<f32>> {
        let compiled = crate::rule::compile(
            &format!("fn synapse() {{ dw = {expr}; }}"),
            std::path::Path::new("t.rhai"),
        )
        .expect("compiles");
        let mut learner = RuleLearner::new(network.clone(), "t".into(), &compiled, 0.0, false, 0);
        learner.update(
            &batch(),
            UpdateContext::default(),
            &mut Rng::stream(0, Purpose::Encoding, &[]),
        );
        (0..network.layers().len())
            .map(|l| {
                let (a, b) = (
                    learner.network().layers()[l].weights(),
                    network.layers()[l].weights(),
                );
                a.iter().zip(b).map(|(x, y)| x - y).collect()
            })
            .collect()
    }

    #[test]
    fn elig_is_the_mean_of_post_surrogate_times_presynaptic_trace() {
        let network = lif_network(vec![5, 4], 3);
        let got = delta(&network, "elig");
        let mut ws = Workspace::default();
        let b = batch();
        network.forward(
            &b.images,
            2,
            &mut ws,
            Pass::Train,
            &mut Rng::stream(0, Purpose::Encoding, &[]),
        );
        let (t_steps, rows, betas) = (3usize, 2usize, [0.9f32, 0.9, 0.8]);
        for l in 0..3 {
            let (outs, ins) = (network.layers()[l].outputs(), network.layers()[l].inputs());
            let x = |t: usize, bb: usize, j: usize| {
                if l == 0 {
                    b.images[bb * ins + j]
                } else {
                    ws.spikes(l - 1)[(t * rows + bb) * ins + j]
                }
            };
            for i in 0..outs {
                for j in 0..ins {
                    let mut sum = 0.0;
                    for bb in 0..rows {
                        let mut trace = 0.0;
                        for t in 0..t_steps {
                            trace = betas[l] * trace + x(t, bb, j);
                            let psi = if l == 2 {
                                1.0
                            } else {
                                ws.surrogate(l)[(t * rows + bb) * outs + i]
                            };
                            sum += psi * trace;
                        }
                    }
                    let want = sum / (t_steps * rows) as f32;
                    assert!(
                        (got[l][i * ins + j] - want).abs() < 1e-5,
                        "layer {l} ({i},{j}): {} vs {want}",
                        got[l][i * ins + j]
                    );
                }
            }
        }
    }

    #[test]
    fn v_is_the_mean_pre_reset_membrane_and_err_the_error_at_the_output() {
        // T = 1: the pre-reset membrane is the input current W·x + b, and ∂L/∂s of the last hidden
        // layer is g·W_o (c_0 = 1), with g = (softmax − one-hot)/batch.
        let network = lif_network(vec![5], 1);
        let b = batch();
        let v = delta(&network, "v");
        let err = delta(&network, "err");
        let (w1, b1) = (network.layers()[0].weights(), network.layers()[0].bias());
        let mut ws = Workspace::default();
        network.forward(
            &b.images,
            2,
            &mut ws,
            Pass::Eval,
            &mut Rng::stream(0, Purpose::Encoding, &[]),
        );
        assert!(
            ws.spikes(0).iter().any(|&s| s > 0.0),
            "some unit fires, so the v + s·θ reconstruction is exercised"
        );
        let logits = ws.logits().to_vec();
        let mut g = vec![0.0f32; 6];
        softmax_cross_entropy(&logits, &b.labels, 3, &mut g);
        let wo = network.layers()[1].weights();
        for i in 0..5 {
            let current: f32 = (0..2)
                .map(|bb| b1[i] + (0..6).map(|j| w1[i * 6 + j] * b.images[bb * 6 + j]).sum::<f32>())
                .sum::<f32>()
                / 2.0;
            assert!(
                (v[0][i * 6] - current).abs() < 1e-5,
                "v of unit {i}: {} vs {current}",
                v[0][i * 6]
            );
            let e: f32 = (0..2)
                .map(|bb| (0..3).map(|k| g[bb * 3 + k] * wo[k * 5 + i]).sum::<f32>())
                .sum();
            assert!(
                (err[0][i * 6] - e).abs() < 1e-6,
                "err of unit {i}: {} vs {e}",
                err[0][i * 6]
            );
        }
        for k in 0..3 {
            let mean_logit = (logits[k] + logits[3 + k]) / 2.0;
            assert!((v[1][k * 5] - mean_logit).abs() < 1e-5, "readout v");
            let e = g[k] + g[3 + k];
            assert!(
                (err[1][k * 5] - e).abs() < 1e-6,
                "readout err {} vs {e}",
                err[1][k * 5]
            );
        }
    }
}
