//! Training with a compiled rule: the `synapse()` program runs over every weight matrix after the
//! backward pass, and `w += dw`.
//!
//! Per update and per weight matrix (rows = postsynaptic neurons, columns = presynaptic ones), the
//! learner gathers exactly the vocabulary the program reads: `w`, `w0` (the weight at creation), `grad`
//! (the batch-mean gradient), `age` (updates since creation), the persistent slots `m` and `u`, `pre` and
//! `post` (mean activity over the batch and the T steps: the input intensity for the first layer, firing
//! rates for hidden layers, the mean softmax probability for the readout), `hebb` (the mean over batch
//! and steps of post × pre activity: one GEMM per matrix, computed only when the rule reads it), their
//! running averages `pre_trace` and `post_trace` (decay 0.99 per update), and the scalars `lr`, `step`,
//! `new_task`, `batch`, `loss`, `loss_trace`, `fan_in`, `fan_out`, `layer`.
//!
//! `psi` is the postsynaptic neuron's mean surrogate derivative over batch and steps (1 for the linear
//! readout, the ReLU derivative in ANN mode); `theta` its own threshold (0 for the readout and ReLU
//! units).
//!
//! `v` is the postsynaptic membrane averaged over batch and steps (before the reset; the readout's is
//! its mean membrane, the logit); `err` the error at the postsynaptic neuron's output, Σ over batch and
//! steps of ∂L/∂s divided by T (for the readout, the batch mean of softmax − one-hot); `elig` the e-prop
//! eligibility, the mean over batch and steps of ψ_post[t] × x̄_pre[t], where the presynaptic trace
//! x̄[t] = β·x̄[t−1] + x[t] decays with the postsynaptic layer's β (for the readout ψ = 1 and β = β_o).
//!
//! Biases follow plain SGD, or with `biases: Rule` the same program as synapses from an input that is
//! always 1. With every matrix and bias following the rule and no section reading `grad` or `err`, the
//! backward pass is skipped.
//!
//! A `prune()` section scores every synapse with the same statistics, on the updates where the
//! structure schedule prunes (`structure.rs`); absent synapses stay at `w = 0` and take no update. A
//! `neuron()` section runs after the synapse update (`neurons.rs`). A rule that uses `sigma` trains
//! stochastic weights (`stochastic.rs`): `grad` and `grad_sigma` are estimated over the weight samples,
//! and the activity statistics (`pre`, `post`, `hebb`, …) come from the last sample's pass.

use super::neurons::{Globals, NeuronPass, Replacement};
use super::stochastic::{self, PredictScratch, Sampling};
use super::structure::{self, Connectivity, Schedule};
use super::{Backprop, Learner, NoiseTable, UpdateContext, UpdateStats};
use crate::data::Batch;
use crate::rng::{Purpose, Rng};
use crate::rule::program::Input;
use crate::rule::{CompiledRule, Program, Section};
use crate::snn::{Network, Storage, Workspace, accumulate_softmax, matmul};
use crate::spec::{Biases, ReplacementSpec, RuleLayers, StochasticSpec, StructureSpec};

/// Decay of `pre_trace`, `post_trace` and `loss_trace` per update.
pub const TRACE_DECAY: f32 = 0.99;

/// The vocabulary a synapse rule can be trained with today.
pub const TRAINABLE: [&str; 34] = [
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
    "rate",
    "rate_trace",
    "in_w",
    "out_w",
    "act_dev",
    "util",
    "h",
    "batch",
    "sigma",
    "grad_sigma",
];

/// Why a compiled rule cannot be trained yet; `None` when it can.
pub fn unsupported(rule: &CompiledRule) -> Option<String> {
    for (_, program) in &rule.programs {
        let mut missing: Vec<&str> = Vec::new();
        for name in program
            .inputs
            .iter()
            .chain(program.outputs.iter().map(|(n, _)| n))
        {
            if !TRAINABLE.contains(name) && !["dw", "score"].contains(name) && !missing.contains(name) {
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

/// Why `structure` cannot be used with `rule`: a schedule prunes by the `prune()` score.
pub fn structure_without_score(rule: &CompiledRule, structure: Option<&StructureSpec>) -> Option<String> {
    let scores = rule.programs.iter().any(|(s, _)| *s == Section::Prune);
    (structure.is_some() && !scores).then(|| {
        "the learner has a structure schedule but the rule has no prune() section to score synapses; \
         add one (rules/pruning/ has examples) or remove `structure`"
            .to_string()
    })
}

/// How a rule trains: the spec's `learner` settings, resolved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// The step size the rule reads as `lr`.
    pub lr: f32,
    /// The readout follows plain SGD.
    pub hidden_only: bool,
    /// The structure schedule a `prune()` section drives (the default one when the spec gives none).
    pub structure: Schedule,
    /// How a `neuron()` score replaces hidden units (continual backprop's defaults when absent).
    pub replacement: Replacement,
    /// Biases follow the synapse rule too (else plain SGD).
    pub biases_follow_rule: bool,
    /// Weight sampling, when the rule reads or writes `sigma` (MESU's defaults when absent).
    pub sampling: Sampling,
}

impl Settings {
    /// The settings of a `Rule` learner section (or a search's candidate learner).
    pub fn new(
        lr: f32,
        apply_to: RuleLayers,
        biases: Biases,
        structure: Option<&StructureSpec>,
        replacement: Option<&ReplacementSpec>,
        stochastic: Option<&StochasticSpec>,
    ) -> Settings {
        let replacement = replacement.cloned().unwrap_or_default();
        let stochastic = stochastic.cloned().unwrap_or_default();
        Settings {
            sampling: Sampling {
                samples: stochastic.samples,
                test_samples: stochastic.test_samples,
                sigma_init: stochastic.sigma_init,
                sigma_min: stochastic.sigma_min,
            },
            lr,
            hidden_only: apply_to == RuleLayers::Hidden,
            biases_follow_rule: biases == Biases::Rule,
            structure: structure.cloned().unwrap_or_default().schedule(),
            replacement: Replacement {
                rate: replacement.rate,
                maturity: replacement.maturity,
            },
        }
    }
}

/// The stochastic weights of a rule that uses `sigma`: the network holds μ between updates.
#[derive(Debug)]
struct Stochastic {
    sampling: Sampling,
    /// μ, σ, σ at creation, the ∂L/∂σ estimate, the gradient sum and the sampled ε, flat in parameter
    /// order.
    mean: Vec<f32>,
    sigma: Vec<f32>,
    initial: Vec<f32>,
    grad_sigma: Vec<f32>,
    grad_sum: Vec<f32>,
    eps: Vec<f32>,
    /// Where each layer's weights and biases start in the flat buffers.
    offsets: Vec<(usize, usize)>,
    scratch: PredictScratch,
}

impl Stochastic {
    /// σ and ∂L/∂σ of layer `l`'s weights (`n` of them) and biases (`outputs`).
    fn layer(&self, l: usize, n: usize, outputs: usize) -> [&[f32]; 4] {
        let (w, b) = self.offsets[l];
        [
            &self.sigma[w..w + n],
            &self.grad_sigma[w..w + n],
            &self.sigma[b..b + outputs],
            &self.grad_sigma[b..b + outputs],
        ]
    }
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
    /// Which synapses exist, when the structure schedule applies to this matrix.
    connectivity: Option<Connectivity>,
    /// The `prune()` scores of the current pruning event.
    scores: Vec<f32>,
    /// The biases' `w0`, `m`, `u`, `age` and output buffers, when biases follow the rule.
    bias: Option<BiasState>,
}

/// A bias seen as a synapse from an input that is always 1 (`pre = pre_trace = 1`, `hebb = post`).
#[derive(Clone, Debug)]
struct BiasState {
    w0: Vec<f32>,
    m: Vec<f32>,
    u: Vec<f32>,
    age: Vec<f32>,
    outputs: Vec<Vec<f32>>,
    /// `elig` of the biases this update.
    elig: Vec<f32>,
}

/// A learner driven by a compiled synapse rule.
#[derive(Debug)]
pub struct RuleLearner {
    core: Backprop,
    name: String,
    program: Program,
    /// The `prune()` program, when the rule has one (it drives the structure schedule).
    prune: Option<Program>,
    /// The `neuron()` pass, when the rule has one.
    neurons: Option<NeuronPass>,
    /// False when nothing reads a gradient: every matrix and bias follows the rule and no section reads
    /// `grad` or `err` (DESIGN §3: no backward pass when nothing needs it).
    backward: bool,
    /// ∂L/∂logits scratch of a forward-only update.
    scratch: Vec<f32>,
    /// Stochastic weights, when the rule reads or writes `sigma`.
    stochastic: Option<Stochastic>,
    lr: f32,
    hidden_only: bool,
    schedule: Schedule,
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
    /// `elig` of the current matrix, and the presynaptic trace sequence it is built from.
    elig: Vec<f32>,
    trace: Vec<f32>,
    /// What the synapse program reads, so the learner computes only that (DESIGN §3).
    reads: Reads,
    /// What the prune program reads on a pruning event, and what it needs on every update (the
    /// activities its traces average).
    prune_reads: Reads,
    prune_traces: Reads,
}

/// Which derived quantities a program needs.
#[derive(Clone, Copy, Debug, Default)]
struct Reads {
    pre: bool,
    post: bool,
    hebb: bool,
    psi: bool,
    age: bool,
    v: bool,
    err: bool,
    elig: bool,
}

impl Reads {
    /// What `program` reads.
    fn of(program: &Program) -> Reads {
        let reads_any = |names: &[&str]| program.inputs.iter().any(|n| names.contains(n));
        Reads {
            pre: reads_any(&["pre", "pre_trace"]),
            // hebb and err on the readout use its softmax probabilities, computed with post.
            post: reads_any(&["post", "post_trace", "hebb", "err"]),
            hebb: reads_any(&["hebb"]),
            psi: reads_any(&["psi"]),
            age: reads_any(&["age"]),
            v: reads_any(&["v"]),
            err: reads_any(&["err"]),
            elig: reads_any(&["elig"]),
        }
    }

    /// What `program` needs on every update even when it does not run: the activities its traces
    /// average, and the age it counts.
    fn traces(program: &Program) -> Reads {
        let reads_any = |names: &[&str]| program.inputs.iter().any(|n| names.contains(n));
        Reads {
            pre: reads_any(&["pre_trace"]),
            post: reads_any(&["post_trace"]),
            age: reads_any(&["age"]),
            ..Reads::default()
        }
    }

    fn union(self, other: Reads) -> Reads {
        Reads {
            pre: self.pre || other.pre,
            post: self.post || other.post,
            hebb: self.hebb || other.hebb,
            psi: self.psi || other.psi,
            age: self.age || other.age,
            v: self.v || other.v,
            err: self.err || other.err,
            elig: self.elig || other.elig,
        }
    }
}

impl RuleLearner {
    /// The learner for `rule` (checked with [`unsupported`] first). The structure schedule applies to
    /// the matrices that follow the rule when the rule has a `prune()` section.
    pub fn new(
        mut network: Network,
        name: String,
        rule: &CompiledRule,
        settings: Settings,
        seed: u64,
    ) -> RuleLearner {
        let section = |wanted: Section| {
            rule.programs
                .iter()
                .find(|(s, _)| *s == wanted)
                .map(|(_, p)| p.clone())
        };
        let program = section(Section::Synapse).unwrap_or_else(|| {
            let default = crate::rule::compile(
                "fn synapse() { dw = -lr * grad; }",
                std::path::Path::new("default"),
            )
            .expect("the default synapse rule compiles");
            default.programs[0].1.clone()
        });
        let prune = section(Section::Prune);
        let reads = Reads::of(&program);
        let prune_reads = prune.as_ref().map(Reads::of).unwrap_or_default();
        let prune_traces = prune.as_ref().map(Reads::traces).unwrap_or_default();
        let hidden = network.config().hidden.len();
        let mut matrices = Vec::with_capacity(hidden + 1);
        for (l, layer) in network.layers_mut().iter_mut().enumerate() {
            let follows_rule = !(settings.hidden_only && l == hidden);
            let connectivity = (prune.is_some() && follows_rule).then(|| {
                let mut rng = structure::stream(seed, l, 0);
                let c = Connectivity::new(layer.outputs(), layer.inputs(), &settings.structure, &mut rng);
                for (w, &present) in layer.weights_mut().iter_mut().zip(c.present()) {
                    if !present {
                        *w = 0.0;
                    }
                }
                c
            });
            let n = layer.weights().len();
            matrices.push(MatrixState {
                w0: layer.weights().to_vec(),
                m: vec![0.0; n],
                u: vec![0.0; n],
                age: vec![0.0; n],
                pre_trace: vec![0.0; layer.inputs()],
                post_trace: vec![0.0; layer.outputs()],
                outputs: vec![vec![0.0; n]; program.outputs.len()],
                connectivity,
                scores: Vec::new(),
                bias: (settings.biases_follow_rule && follows_rule).then(|| BiasState {
                    w0: layer.bias().to_vec(),
                    m: vec![0.0; layer.outputs()],
                    u: vec![0.0; layer.outputs()],
                    age: vec![0.0; layer.outputs()],
                    outputs: vec![vec![0.0; layer.outputs()]; program.outputs.len()],
                    elig: Vec::new(),
                }),
            });
        }
        let neurons = section(Section::Neuron)
            .map(|program| NeuronPass::new(program, settings.replacement, &network, seed));
        let (neuron_v, neuron_err) = neurons.as_ref().map_or((false, false), NeuronPass::reads_v_err);
        // The synapse program, not the file's sections: a rule without synapse() runs the default
        // `dw = -lr * grad`.
        let reads_gradient = std::iter::once(&program)
            .chain(
                rule.programs
                    .iter()
                    .filter(|(s, _)| *s != Section::Synapse)
                    .map(|(_, p)| p),
            )
            .any(|p| p.inputs.iter().any(|n| ["grad", "err"].contains(n)));
        let uses_sigma = rule.programs.iter().any(|(_, p)| {
            p.inputs.iter().any(|n| ["sigma", "grad_sigma"].contains(n))
                || p.outputs.iter().any(|(n, _)| *n == "sigma")
        });
        let stochastic = uses_sigma.then(|| {
            let mut sigma = stochastic::initial_sigma(&network, settings.sampling.sigma_init);
            let mut offsets = Vec::with_capacity(hidden + 1);
            let mut offset = 0;
            for (l, layer) in network.layers().iter().enumerate() {
                let n = layer.weights().len();
                offsets.push((offset, offset + n));
                let follows_rule = !(settings.hidden_only && l == hidden);
                // Weights and biases that do not follow the rule, and absent synapses, are not sampled.
                if !follows_rule {
                    sigma[offset..offset + n].fill(0.0);
                }
                if !(follows_rule && settings.biases_follow_rule) {
                    sigma[offset + n..offset + n + layer.outputs()].fill(0.0);
                }
                if let Some(c) = &matrices[l].connectivity {
                    for (s, &present) in sigma[offset..offset + n].iter_mut().zip(c.present()) {
                        if !present {
                            *s = 0.0;
                        }
                    }
                }
                offset += n + layer.outputs();
            }
            let total = sigma.len();
            Stochastic {
                sampling: settings.sampling,
                mean: network.parameters().flatten().copied().collect(),
                initial: sigma.clone(),
                sigma,
                grad_sigma: vec![0.0; total],
                grad_sum: vec![0.0; total],
                eps: Vec::new(),
                offsets,
                scratch: PredictScratch::new(&network),
            }
        });
        let backward =
            reads_gradient || settings.hidden_only || !settings.biases_follow_rule || stochastic.is_some();
        let mut core = Backprop::new(network);
        let recorded = reads.union(prune_reads);
        core.workspace
            .record(recorded.v || neuron_v, recorded.err || neuron_err);
        RuleLearner {
            core,
            name,
            program,
            prune,
            neurons,
            backward,
            scratch: Vec::new(),
            stochastic,
            lr: settings.lr,
            hidden_only: settings.hidden_only,
            schedule: settings.structure,
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
            elig: Vec::new(),
            trace: Vec::new(),
            reads,
            prune_reads,
            prune_traces,
        }
    }

    /// Task start under the structure schedule: regrowth (after the first task), then the window opens.
    fn start_task(&mut self, task: usize) {
        let regrow = self.schedule.regrow;
        for (l, state) in self.matrices.iter_mut().enumerate() {
            let Some(connectivity) = &mut state.connectivity else {
                continue;
            };
            if task > 0 && regrow > 0.0 {
                let regrown = connectivity.regrow(regrow, &mut structure::stream(self.seed, l, task));
                let weights = self.core.network.layers_mut()[l].weights_mut();
                for i in regrown {
                    weights[i] = 0.0;
                    state.w0[i] = 0.0;
                    state.age[i] = 0.0;
                    state.m[i] = 0.0;
                    state.u[i] = 0.0;
                    if let Some(st) = &mut self.stochastic {
                        let (start, _) = st.offsets[l];
                        st.sigma[start + i] = st.initial[start + i];
                    }
                }
            }
            connectivity.open_window();
        }
    }

    /// Every unit the neuron pass replaced so far: (update, hidden layer, unit).
    pub fn replaced_units(&self) -> &[(u64, usize, usize)] {
        self.neurons.as_ref().map_or(&[], NeuronPass::replaced)
    }

    /// After hidden unit `unit` of layer `l` was replaced: its incoming synapses are new (`w0` is their
    /// fresh weight, absent ones stay at 0), its outgoing ones and its bias restart at 0, and every
    /// synapse's state and the unit's traces restart.
    fn restart_synapses_of(&mut self, l: usize, unit: usize) {
        let (incoming, next) = self.matrices.split_at_mut(l + 1);
        let state = &mut incoming[l];
        let layer = &mut self.core.network.layers_mut()[l];
        let inputs = layer.inputs();
        let row = unit * inputs..(unit + 1) * inputs;
        let weights = &mut layer.weights_mut()[row.clone()];
        if let Some(c) = &state.connectivity {
            for (w, &present) in weights.iter_mut().zip(&c.present()[row.clone()]) {
                if !present {
                    *w = 0.0;
                }
            }
        }
        state.w0[row.clone()].copy_from_slice(weights);
        if let Some(st) = &mut self.stochastic {
            let (start, _) = st.offsets[l];
            let range = start + row.start..start + row.end;
            st.sigma[range.clone()].copy_from_slice(&st.initial[range]);
        }
        for slot in [&mut state.age, &mut state.m, &mut state.u] {
            slot[row.clone()].fill(0.0);
        }
        state.post_trace[unit] = 0.0;
        // Its bias restarted at 0 (redraw_incoming).
        if let Some(bias) = &mut state.bias {
            for slot in [&mut bias.w0, &mut bias.m, &mut bias.u, &mut bias.age] {
                slot[unit] = 0.0;
            }
        }
        let outgoing = &mut next[0];
        let width = outgoing.pre_trace.len();
        for slot in [
            &mut outgoing.w0,
            &mut outgoing.age,
            &mut outgoing.m,
            &mut outgoing.u,
        ] {
            slot.iter_mut().skip(unit).step_by(width).for_each(|x| *x = 0.0);
        }
        outgoing.pre_trace[unit] = 0.0;
    }
}

impl Learner for RuleLearner {
    fn name(&self) -> &str {
        &self.name
    }

    fn network(&self) -> &Network {
        &self.core.network
    }

    fn present(&self, layer: usize) -> Option<&[bool]> {
        self.matrices[layer]
            .connectivity
            .as_ref()
            .map(Connectivity::present)
    }

    fn update(&mut self, batch: &Batch, context: UpdateContext, rng: &mut Rng) -> UpdateStats {
        if context.step == 0 {
            self.start_task(context.task);
        }
        let event = self
            .prune
            .as_ref()
            .and_then(|_| self.schedule.event(context.step, context.updates_per_task));
        let reads = self.reads.union(if event.is_some() {
            self.prune_reads
        } else {
            self.prune_traces
        });
        let mut noise_rng = Rng::stream(self.seed, Purpose::Learner, &[self.updates]);
        let stats = if let Some(st) = &mut self.stochastic {
            let stats = stochastic::sample_gradients(
                &mut self.core,
                &st.mean,
                &st.sigma,
                st.sampling.samples,
                &self.noise,
                &mut noise_rng,
                batch,
                rng,
                &mut st.eps,
                &mut st.grad_sum,
                &mut st.grad_sigma,
            );
            // Sums over samples → the batch-mean ∂L/∂μ (read as `grad`) and ∂L/∂σ.
            let inv = 1.0 / st.sampling.samples as f32;
            st.grad_sigma.iter_mut().for_each(|g| *g *= inv);
            stochastic::write_parameters(&mut self.core.network, &st.mean);
            let mut offset = 0;
            for g in self.core.gradients.slices_mut() {
                for (gi, s) in g.iter_mut().zip(&st.grad_sum[offset..]) {
                    *gi = s * inv;
                }
                offset += g.len();
            }
            stats
        } else if self.backward {
            self.core.compute(batch, rng)
        } else {
            self.core.forward_only(batch, rng, &mut self.scratch)
        };
        let loss_trace = match self.loss_trace {
            Some(t) => TRACE_DECAY * t + (1.0 - TRACE_DECAY) * stats.loss,
            None => stats.loss,
        };
        self.loss_trace = Some(loss_trace);
        let config = self.core.network.config().clone();
        let hidden = config.hidden.len();
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
            let pre = if !reads.pre {
                Vec::new()
            } else if l == 0 {
                row_mean(&batch.images, inputs)
            } else {
                self.core
                    .workspace
                    .activity_into(l - 1, inputs, &mut self.activity);
                row_mean(&self.activity, inputs)
            };
            // post: this layer's firing rates, or the readout's mean softmax probability.
            let post = if !reads.post {
                Vec::new()
            } else if l < hidden {
                self.core.workspace.activity_into(l, outputs, &mut self.activity);
                row_mean(&self.activity, outputs)
            } else {
                self.probabilities.clear();
                self.probabilities.resize(self.core.workspace.logits().len(), 0.0);
                accumulate_softmax(self.core.workspace.logits(), outputs, &mut self.probabilities);
                row_mean(&self.probabilities, outputs)
            };
            let state = &mut self.matrices[l];
            for (t, p) in state.pre_trace.iter_mut().zip(&pre) {
                *t = TRACE_DECAY * *t + (1.0 - TRACE_DECAY) * p;
            }
            for (t, p) in state.post_trace.iter_mut().zip(&post) {
                *t = TRACE_DECAY * *t + (1.0 - TRACE_DECAY) * p;
            }
            if reads.hebb {
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
                mean_surrogate(&self.core.workspace, l, outputs)
            };
            let steps = config.time_steps;
            let rows = batch.len();
            let v: Vec<f32> = if !reads.v {
                Vec::new()
            } else if l == hidden {
                row_mean(self.core.workspace.logits(), outputs)
            } else {
                mean_membrane(&self.core.workspace, l, steps * rows)
            };
            let err: Vec<f32> = if !reads.err {
                Vec::new()
            } else if l == hidden {
                // probabilities hold the softmax (computed with post); subtract the one-hot labels.
                let mut e = row_mean(&self.probabilities, outputs);
                for &y in &batch.labels {
                    e[y as usize] -= 1.0 / rows as f32;
                }
                e
            } else {
                output_error(&self.core.workspace, l, steps)
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
                    self.elig = row_mean(&self.trace, inputs);
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
            let thresholds: &[f32] = if l < hidden {
                self.core.network.thresholds(l)
            } else {
                &[]
            };
            let empty: &[f32] = &[];
            let [sigma_w, grad_sigma_w, sigma_b, grad_sigma_b] = match &self.stochastic {
                Some(st) => st.layer(l, outputs * inputs, outputs),
                None => [empty; 4],
            };
            let lookup = |name: &&str| match *name {
                "sigma" => Input::PerSynapse(sigma_w),
                "grad_sigma" => Input::PerSynapse(grad_sigma_w),
                "batch" => Input::Scalar(rows as f32),
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
                // Each postsynaptic neuron's threshold; 0 for the readout and ReLU units.
                "theta" if l < hidden && !thresholds.is_empty() => Input::PerRow(thresholds),
                "theta" => Input::Scalar(0.0),
                "lr" => Input::Scalar(self.lr),
                "step" => Input::Scalar(context.step as f32),
                "new_task" => Input::Scalar(if context.new_task { 1.0 } else { 0.0 }),
                "loss" => Input::Scalar(stats.loss),
                "loss_trace" => Input::Scalar(loss_trace),
                "fan_in" => Input::Scalar(inputs as f32),
                "fan_out" => Input::Scalar(outputs as f32),
                "layer" => Input::Scalar(l as f32),
                other => unreachable!("'{other}' is refused by unsupported() before training"),
            };
            let noise = &self.noise;
            let program_inputs: Vec<Input> = self.program.inputs.iter().map(lookup).collect();
            let mut outs: Vec<&mut [f32]> = state.outputs.iter_mut().map(Vec::as_mut_slice).collect();
            self.program.run_matrix(
                outputs,
                inputs,
                &program_inputs,
                &mut outs,
                &mut |chunk| noise.fill(chunk, &mut noise_rng),
                &mut self.registers,
                &mut self.broadcast,
            );
            // The prune program scores the synapses as the synapse program saw them.
            let prune_now = event
                .filter(|_| state.connectivity.is_some())
                .and(self.prune.as_ref());
            if let Some(prune) = prune_now {
                state.scores.resize(outputs * inputs, 0.0);
                let prune_inputs: Vec<Input> = prune.inputs.iter().map(lookup).collect();
                prune.run_matrix(
                    outputs,
                    inputs,
                    &prune_inputs,
                    &mut [state.scores.as_mut_slice()],
                    &mut |chunk| noise.fill(chunk, &mut noise_rng),
                    &mut self.registers,
                    &mut self.broadcast,
                );
            }
            if let Some(bias) = &mut state.bias {
                // The bias of neuron i is a synapse from an always-on input: pre = pre_trace = 1,
                // hebb = post, elig = mean over batch and steps of ψ_i[t]·Σ_{k≤t} β^k.
                let ones = [1.0f32];
                let mut bias_elig_per_column = false;
                if reads.elig {
                    let beta = match config.neuron {
                        crate::snn::Neuron::Lif(lif) if l < hidden => lif.beta,
                        _ if l == hidden => config.readout_beta,
                        _ => 0.0,
                    };
                    let trace: Vec<f32> = (0..steps)
                        .scan(0.0f32, |c, _| {
                            *c = beta * *c + 1.0;
                            Some(*c)
                        })
                        .collect();
                    if l == hidden {
                        bias.elig = vec![trace.iter().sum::<f32>() / steps as f32];
                        bias_elig_per_column = true;
                    } else {
                        let surrogate = self.core.workspace.surrogate(l);
                        bias.elig = vec![0.0; outputs];
                        for (t, block) in surrogate.chunks_exact(rows * outputs).enumerate() {
                            for row in block.chunks_exact(outputs) {
                                for (e, p) in bias.elig.iter_mut().zip(row) {
                                    *e += p * trace[t];
                                }
                            }
                        }
                        let scale = 1.0 / (steps * rows) as f32;
                        bias.elig.iter_mut().for_each(|e| *e *= scale);
                    }
                }
                let layer = &self.core.network.layers()[l];
                let bias_grad = &self.core.gradients.layers[l].bias;
                let bias_inputs: Vec<Input> = self
                    .program
                    .inputs
                    .iter()
                    .map(|name| match *name {
                        "w" => Input::PerSynapse(layer.bias()),
                        "w0" => Input::PerSynapse(&bias.w0),
                        "grad" => Input::PerSynapse(bias_grad),
                        "hebb" => Input::PerSynapse(&post),
                        "age" => Input::PerSynapse(&bias.age),
                        "m" => Input::PerSynapse(&bias.m),
                        "u" => Input::PerSynapse(&bias.u),
                        "pre" | "pre_trace" => Input::PerColumn(&ones),
                        "elig" if bias_elig_per_column => Input::PerColumn(&bias.elig),
                        "elig" => Input::PerSynapse(&bias.elig),
                        "fan_in" => Input::Scalar(1.0),
                        "sigma" => Input::PerSynapse(sigma_b),
                        "grad_sigma" => Input::PerSynapse(grad_sigma_b),
                        other => lookup(&other),
                    })
                    .collect();
                let mut outs: Vec<&mut [f32]> = bias.outputs.iter_mut().map(Vec::as_mut_slice).collect();
                self.program.run_matrix(
                    outputs,
                    1,
                    &bias_inputs,
                    &mut outs,
                    &mut |chunk| noise.fill(chunk, &mut noise_rng),
                    &mut self.registers,
                    &mut self.broadcast,
                );
                drop(bias_inputs);
            }
            drop(program_inputs);
            for (k, (name, _)) in self.program.outputs.iter().enumerate() {
                match *name {
                    "dw" => {
                        let dw = &state.outputs[k];
                        let weights = self.core.network.layers_mut()[l].weights_mut();
                        match &state.connectivity {
                            None => weights.iter_mut().zip(dw).for_each(|(w, d)| *w += d),
                            Some(c) => {
                                for ((w, d), &present) in weights.iter_mut().zip(dw).zip(c.present()) {
                                    if present {
                                        *w += d;
                                    }
                                }
                            }
                        }
                    }
                    "m" => std::mem::swap(&mut state.m, &mut state.outputs[k]),
                    "u" => std::mem::swap(&mut state.u, &mut state.outputs[k]),
                    "sigma" => {
                        let st = self
                            .stochastic
                            .as_mut()
                            .expect("a rule that writes sigma is stochastic");
                        let (start, _) = st.offsets[l];
                        let floor = st.sampling.sigma_min;
                        let sigma = &mut st.sigma[start..start + outputs * inputs];
                        for (i, (s, new)) in sigma.iter_mut().zip(&state.outputs[k]).enumerate() {
                            let present = state.connectivity.as_ref().is_none_or(|c| c.present()[i]);
                            *s = if present { new.max(floor) } else { 0.0 };
                        }
                    }
                    other => unreachable!("'{other}' is refused by unsupported() before training"),
                }
            }
            if let Some(bias) = &mut state.bias {
                for (k, (name, _)) in self.program.outputs.iter().enumerate() {
                    match *name {
                        "dw" => {
                            let biases = self.core.network.layers_mut()[l].bias_mut();
                            biases.iter_mut().zip(&bias.outputs[k]).for_each(|(b, d)| *b += d);
                        }
                        "m" => std::mem::swap(&mut bias.m, &mut bias.outputs[k]),
                        "u" => std::mem::swap(&mut bias.u, &mut bias.outputs[k]),
                        "sigma" => {
                            let st = self
                                .stochastic
                                .as_mut()
                                .expect("a rule that writes sigma is stochastic");
                            let (_, start) = st.offsets[l];
                            let floor = st.sampling.sigma_min;
                            for (s, new) in st.sigma[start..start + outputs].iter_mut().zip(&bias.outputs[k])
                            {
                                *s = new.max(floor);
                            }
                        }
                        other => unreachable!("'{other}' is refused by unsupported() before training"),
                    }
                }
                if reads.age {
                    bias.age.iter_mut().for_each(|a| *a += 1.0);
                }
            }
            if let (Some(k), Some(connectivity)) = (prune_now.and(event), &mut state.connectivity) {
                let removed = connectivity.prune(&state.scores, k, context.task, &self.schedule);
                let weights = self.core.network.layers_mut()[l].weights_mut();
                for &i in &removed {
                    weights[i] = 0.0;
                }
                if let Some(st) = &mut self.stochastic {
                    let (start, _) = st.offsets[l];
                    removed.iter().for_each(|&i| st.sigma[start + i] = 0.0);
                }
                if k == self.schedule.prune_steps && self.schedule.protect_tasks > 0 {
                    connectivity.protect(context.task, self.schedule.protect_tasks);
                }
            }
            if reads.age {
                state.age.iter_mut().for_each(|a| *a += 1.0);
            }
        }
        // Biases that do not follow the rule: plain SGD.
        let lr = self.lr;
        for ((layer, grad), state) in self
            .core
            .network
            .layers_mut()
            .iter_mut()
            .zip(&self.core.gradients.layers)
            .zip(&self.matrices)
        {
            if state.bias.is_none() {
                for (b, g) in layer.bias_mut().iter_mut().zip(&grad.bias) {
                    *b -= lr * g;
                }
            }
        }
        // The neuron pass sees the updated weights; a replaced unit's bias restarts at 0 after SGD
        // moved it, as in continual backprop.
        if let Some(neurons) = &mut self.neurons {
            let workspace = &self.core.workspace;
            let (steps, rows) = (config.time_steps, batch.len());
            let row_stats = |l: usize| {
                (
                    mean_surrogate(workspace, l, config.hidden[l]),
                    mean_membrane(workspace, l, steps * rows),
                    output_error(workspace, l, steps),
                )
            };
            let globals = Globals {
                batch: batch.len() as f32,
                lr: self.lr,
                step: context.step as f32,
                new_task: if context.new_task { 1.0 } else { 0.0 },
                loss: stats.loss,
                loss_trace,
            };
            let noise = &self.noise;
            let replaced = neurons.run(
                &mut self.core.network,
                workspace,
                globals,
                &row_stats,
                &mut |chunk| noise.fill(chunk, &mut noise_rng),
                self.updates,
            );
            for (l, unit) in replaced {
                self.restart_synapses_of(l, unit);
            }
        }
        if let Some(st) = &mut self.stochastic {
            st.mean.clear();
            st.mean.extend(self.core.network.parameters().flatten());
        }
        self.updates += 1;
        stats
    }

    fn predict(&self, batch: &Batch, workspace: &mut Workspace, rng: &mut Rng, predictions: &mut Vec<u8>) {
        let Some(st) = &self.stochastic else {
            return super::predict_once(self.network(), batch, workspace, rng, predictions);
        };
        stochastic::predict(
            &st.scratch,
            &st.mean,
            &st.sigma,
            st.sampling.test_samples,
            &self.noise,
            batch,
            workspace,
            rng,
            predictions,
        );
    }
}

/// The mean of the rows of a row-major `rows × width` matrix: a per-neuron mean over the batch (and
/// the steps, when they are rows too).
pub(super) fn row_mean(values: &[f32], width: usize) -> Vec<f32> {
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

/// Mean surrogate derivative ψ of each neuron of hidden layer `l` over batch and steps.
fn mean_surrogate(workspace: &Workspace, l: usize, width: usize) -> Vec<f32> {
    row_mean(workspace.surrogate(l), width)
}

/// Mean pre-reset membrane of each neuron of hidden layer `l` (the workspace sums over `samples` =
/// steps × batch).
fn mean_membrane(workspace: &Workspace, l: usize, samples: usize) -> Vec<f32> {
    let scale = 1.0 / samples as f32;
    workspace.membrane_sum(l).iter().map(|m| m * scale).collect()
}

/// The error at each output of hidden layer `l`: Σ over batch and steps of ∂L/∂s, divided by T.
fn output_error(workspace: &Workspace, l: usize, steps: usize) -> Vec<f32> {
    let scale = 1.0 / steps as f32;
    workspace.error_sum(l).iter().map(|e| e * scale).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snn::{Encoding, Init, Lif, NetworkConfig, Neuron, Pass, Reset, softmax_cross_entropy};

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
        let mut learner = RuleLearner::new(
            network.clone(),
            "h".into(),
            &compiled,
            Settings::new(0.0, RuleLayers::All, Biases::Sgd, None, None, None),
            0,
        );
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
        let mut learner = RuleLearner::new(
            network.clone(),
            "p".into(),
            &compiled,
            Settings::new(0.0, RuleLayers::All, Biases::Sgd, None, None, None),
            0,
        );
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
        let mut learner = RuleLearner::new(
            network.clone(),
            "t".into(),
            &compiled,
            Settings::new(0.0, RuleLayers::All, Biases::Sgd, None, None, None),
            0,
        );
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

    fn pruning_learner(lr: f32, structure: StructureSpec) -> (Network, RuleLearner) {
        let network = lif_network(vec![5, 4], 3);
        let compiled = crate::rule::compile(
            "fn synapse() { dw = -lr * grad; }\nfn prune() { score = abs(w); }",
            std::path::Path::new("magnitude.rhai"),
        )
        .expect("compiles");
        let settings = Settings::new(lr, RuleLayers::All, Biases::Sgd, Some(&structure), None, None);
        let learner = RuleLearner::new(network.clone(), "m".into(), &compiled, settings, 3);
        (network, learner)
    }

    fn context(task: usize, step: usize) -> UpdateContext {
        UpdateContext {
            task,
            step,
            new_task: step == 0,
            updates_per_task: 4,
        }
    }

    fn present_per_row(learner: &RuleLearner, l: usize) -> Vec<usize> {
        let inputs = learner.network().layers()[l].inputs();
        let present = learner.present(l).expect("every matrix follows the rule");
        present
            .chunks(inputs)
            .map(|r| r.iter().filter(|&&p| p).count())
            .collect()
    }

    #[test]
    fn pruning_keeps_each_neurons_strongest_synapses_at_the_window_end() {
        // lr 0: nothing moves, so the survivors must be the initial largest |w| of each row.
        let structure = StructureSpec {
            target_density: 0.5,
            window: 1.0,
            prune_steps: 2,
            ..StructureSpec::default()
        };
        let (network, mut learner) = pruning_learner(0.0, structure);
        let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
        for step in 0..4 {
            learner.update(&batch(), context(0, step), &mut rng);
            let expected_density = match step {
                // Event 1 of 2 after update 2: 1 → 0.5 + 0.5·(1/2)³ of each row.
                0 => 1.0,
                1..=2 => 0.5 + 0.5 / 8.0,
                _ => 0.5,
            };
            for l in 0..3 {
                let inputs = network.layers()[l].inputs();
                let keep = (expected_density * inputs as f64).round() as usize;
                assert!(
                    present_per_row(&learner, l).iter().all(|&n| n == keep),
                    "layer {l} step {step}"
                );
            }
        }
        for l in 0..3 {
            let inputs = network.layers()[l].inputs();
            let initial = network.layers()[l].weights();
            let now = learner.network().layers()[l].weights();
            let present = learner.present(l).expect("structured");
            for (r, row) in present.chunks(inputs).enumerate() {
                let w = |j: usize| initial[r * inputs + j].abs();
                let weakest_kept = (0..inputs)
                    .filter(|&j| row[j])
                    .map(w)
                    .fold(f32::INFINITY, f32::min);
                let strongest_removed = (0..inputs).filter(|&j| !row[j]).map(w).fold(0.0, f32::max);
                assert!(weakest_kept >= strongest_removed, "layer {l} row {r}");
                for j in 0..inputs {
                    let got = now[r * inputs + j];
                    assert_eq!(got, if row[j] { initial[r * inputs + j] } else { 0.0 });
                }
            }
        }
        assert!(
            (crate::metrics::density(
                learner.network(),
                &[learner.present(0), learner.present(1), learner.present(2)]
            ) - 0.5)
                .abs()
                < 0.1
        );
    }

    #[test]
    fn absent_synapses_stay_at_zero_and_regrow_at_task_start() {
        let structure = StructureSpec {
            initial_density: 0.5,
            target_density: 0.5,
            window: 1.0,
            prune_steps: 1,
            regrow: 0.5,
            ..StructureSpec::default()
        };
        let (network, mut learner) = pruning_learner(0.5, structure);
        let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
        let start: Vec<Vec<usize>> = (0..3).map(|l| present_per_row(&learner, l)).collect();
        for step in 0..4 {
            learner.update(&batch(), context(0, step), &mut rng);
            for (l, start) in start.iter().enumerate() {
                let present = learner.present(l).expect("structured");
                let w = learner.network().layers()[l].weights();
                assert!(
                    w.iter().zip(present).all(|(w, &p)| p || *w == 0.0),
                    "absent weights stay 0"
                );
                assert_eq!(
                    &present_per_row(&learner, l),
                    start,
                    "at the target: nothing pruned"
                );
            }
        }
        learner.update(&batch(), context(1, 0), &mut rng);
        for (l, start) in start.iter().enumerate() {
            let inputs = network.layers()[l].inputs();
            for (&before, &after) in start.iter().zip(&present_per_row(&learner, l)) {
                let absent = inputs - before;
                assert_eq!(
                    after,
                    before + (0.5 * absent as f64).round() as usize,
                    "layer {l}"
                );
            }
        }
        // Task 1's window prunes back to the target by its last update.
        for step in 1..4 {
            learner.update(&batch(), context(1, step), &mut rng);
        }
        assert_eq!(present_per_row(&learner, 0), start[0]);
    }

    /// With `biases: Rule`, a bias is a synapse from an always-on input: `dw = hebb` moves it by its
    /// neuron's mean activity (`post`), and since nothing reads a gradient no backward pass runs.
    #[test]
    fn rule_biases_see_pre_1_and_a_gradient_free_rule_skips_the_backward_pass() {
        let network = lif_network(vec![5, 4], 3);
        let compiled = crate::rule::compile(
            "fn synapse() { dw = hebb + 0.0 * pre; }",
            std::path::Path::new("hebb.rhai"),
        )
        .expect("compiles");
        let settings = Settings::new(0.0, RuleLayers::All, Biases::Rule, None, None, None);
        let mut learner = RuleLearner::new(network.clone(), "h".into(), &compiled, settings, 0);
        assert!(!learner.backward);
        let b = batch();
        let mut ws = Workspace::default();
        network.forward(
            &b.images,
            2,
            &mut ws,
            Pass::Train,
            &mut Rng::stream(0, Purpose::Encoding, &[]),
        );
        learner.update(
            &b,
            UpdateContext::default(),
            &mut Rng::stream(0, Purpose::Encoding, &[]),
        );
        assert!(
            learner
                .core
                .gradients
                .slices()
                .all(|g| g.iter().all(|&x| x == 0.0))
        );
        for l in 0..2 {
            let width = network.layers()[l].outputs();
            let spikes = ws.spikes(l);
            let steps = spikes.len() / (2 * width);
            for i in 0..width {
                let rate: f32 =
                    (0..steps * 2).map(|r| spikes[r * width + i]).sum::<f32>() / (steps * 2) as f32;
                let moved = learner.network().layers()[l].bias()[i] - network.layers()[l].bias()[i];
                assert!(
                    (moved - rate).abs() < 1e-6,
                    "layer {l} unit {i}: {moved} vs {rate}"
                );
            }
        }
        // The readout's post is its mean softmax probability, which sums to 1 over the classes.
        let readout = 2;
        let moved: f32 = learner.network().layers()[readout]
            .bias()
            .iter()
            .zip(network.layers()[readout].bias())
            .map(|(a, b)| a - b)
            .sum();
        assert!((moved - 1.0).abs() < 1e-5, "{moved}");
        // Reading grad brings the backward pass back.
        let with_grad = crate::rule::compile(
            "fn synapse() { dw = -lr * grad; }",
            std::path::Path::new("g.rhai"),
        )
        .expect("compiles");
        assert!(RuleLearner::new(network, "g".into(), &with_grad, settings, 0).backward);
    }

    /// `neuron()` writing `theta` sets each hidden neuron's own threshold; the synapse section reads
    /// its postsynaptic neuron's threshold, and the next forward pass uses it.
    #[test]
    fn neuron_thresholds_adapt_and_the_simulator_uses_them() {
        let network = lif_network(vec![5, 4], 3);
        let compiled = crate::rule::compile(
            "fn synapse() { dw = 0.0 * w; }\nfn neuron() { theta = theta + 0.25 * (layer + 1.0); }",
            std::path::Path::new("t.rhai"),
        )
        .expect("compiles");
        assert_eq!(unsupported(&compiled), None);
        let settings = Settings::new(0.0, RuleLayers::All, Biases::Sgd, None, None, None);
        let mut learner = RuleLearner::new(network.clone(), "t".into(), &compiled, settings, 0);
        let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
        learner.update(&batch(), UpdateContext::default(), &mut rng);
        learner.update(&batch(), UpdateContext::default(), &mut rng);
        for l in 0..2 {
            let start = network.thresholds(l)[0];
            let want = start + 2.0 * 0.25 * (l as f32 + 1.0);
            assert!(
                learner
                    .network()
                    .thresholds(l)
                    .iter()
                    .all(|&t| (t - want).abs() < 1e-6)
            );
        }
        // Higher thresholds, fewer spikes.
        let mut ws = Workspace::default();
        let b = batch();
        network.forward(&b.images, 2, &mut ws, Pass::Eval, &mut rng);
        let before: f32 = ws.spikes(0).iter().sum();
        learner
            .network()
            .forward(&b.images, 2, &mut ws, Pass::Eval, &mut rng);
        let after: f32 = ws.spikes(0).iter().sum();
        assert!(after < before, "{after} spikes vs {before}");
        // theta in synapse() is the postsynaptic neuron's own threshold.
        let reads = crate::rule::compile("fn synapse() { dw = theta; }", std::path::Path::new("r.rhai"))
            .expect("compiles");
        let mut adapted = learner.network().clone();
        adapted.thresholds_mut(0)[2] = 7.0;
        let mut probe = RuleLearner::new(adapted.clone(), "r".into(), &reads, settings, 0);
        probe.update(&batch(), UpdateContext::default(), &mut rng);
        let inputs = adapted.layers()[0].inputs();
        for (i, (a, b)) in probe.network().layers()[0]
            .weights()
            .chunks(inputs)
            .zip(adapted.layers()[0].weights().chunks(inputs))
            .enumerate()
        {
            let want = adapted.thresholds(0)[i];
            assert!(
                a.iter().zip(b).all(|(x, y)| (x - y - want).abs() < 1e-5),
                "row {i}"
            );
        }
    }

    #[test]
    fn training_computes_the_whole_vocabulary() {
        for v in crate::rule::vocab::VOCABULARY {
            assert!(
                TRAINABLE.contains(&v.name) || ["dw", "score"].contains(&v.name),
                "{} is in the vocabulary but training does not compute it",
                v.name
            );
        }
    }
}
