//! The rule learner: training with a compiled rule. Its `synapse()` program runs over every weight
//! matrix after the backward pass and `w += dw`; a `prune()` section scores synapses for the
//! structure schedule; a `neuron()` section keeps per-neuron state, writes thresholds and replaces
//! units.
//!
//! One update, in this order (this file):
//! 1. at a task's first update, regrowth and the pruning window (`structure.rs`);
//! 2. the pass: forward and backward, or forward only when nothing reads a gradient, or the weight
//!    samples of stochastic weights (`stochastic.rs`);
//! 3. per weight matrix: the signals the programs read ([`signals`]), the synapse program, the prune
//!    program on a pruning event, the bias program when biases follow the rule, then the outputs are
//!    written back and pruned synapses removed ([`synapses`]);
//! 4. biases that do not follow the rule take a plain SGD step;
//! 5. the neuron pass, which sees the updated weights ([`neurons`]); a replaced unit's synapses restart.
//!
//! Only what some program reads is computed (`hebb`'s GEMM, eligibility traces, neuron statistics,
//! the backward pass). Random draws come from one stream per update, in the order above, so results do
//! not depend on thread count.

pub mod neurons;
mod settings;
pub mod signals;
mod synapses;
#[cfg(test)]
mod tests;

pub use neurons::{NeuronWork, Replacement};
pub use settings::{Settings, Unfit, structure_without_score};
pub use signals::TRACE_DECAY;

use super::stochastic::{Sampled, StochasticWeights};
use super::structure::{self, Connectivity, Schedule};
use super::{Backprop, Learner, NoiseTable, UpdateContext, UpdateStats};
use crate::data::Batch;
use crate::rng::{Purpose, Rng};
use crate::rule::program::{Input, Scratch};
use crate::rule::vocab::Var;
use crate::rule::{CompiledRule, Program, Section};
use crate::snn::{Encoding, Network, OuterProductRows, Storage, Workspace, is_outer_product};
use neurons::NeuronPass;
pub use signals::Reads;
use signals::{Globals, Signals, reads_gradient};
use synapses::{BiasValues, MatrixState, SynapseView, by_rows};

/// A learner driven by a compiled rule.
#[derive(Debug)]
pub struct RuleLearner {
    core: Backprop,
    name: String,
    /// The `synapse()` program (`dw = -lr * grad` when the rule has none).
    program: Program,
    /// The `prune()` program, when the rule has one (it drives the structure schedule).
    prune: Option<Program>,
    /// The `neuron()` pass, when the rule has one.
    neurons: Option<NeuronPass>,
    /// False when nothing reads a gradient: every matrix and bias follows the rule and no section reads
    /// `grad` or `err`, so the backward pass is skipped.
    backward: bool,
    /// Whether the backward pass computes the weight gradients of the matrices that follow the rule.
    weight_gradients: bool,
    /// ∂L/∂logits scratch of a forward-only update.
    scratch: Vec<f32>,
    /// Stochastic weights, when the rule reads or writes `sigma`.
    stochastic: Option<StochasticWeights>,
    lr: f32,
    hidden_only: bool,
    schedule: Schedule,
    matrices: Vec<MatrixState>,
    loss_trace: Option<f32>,
    /// Only when a program calls `randn()` or the weights are stochastic: most rules draw no noise,
    /// and building the table (2^20 Box–Muller draws) costs about as much as a hundred training
    /// updates of the reference network, paid by every learner a search builds.
    noise: Option<NoiseTable>,
    seed: u64,
    updates: u64,
    /// The current matrix's signals, and the programs' scratch.
    signals: Signals,
    program_scratch: Scratch,
    /// The first layer's gradient of a batch where the backward pass left it as factors, computed by
    /// blocks of rows as the programs read it.
    grad_rows: OuterProductRows,
    /// The `prune()` scores of the current pruning event.
    scores: Vec<f32>,
    /// What the synapse program reads, so the learner computes only that.
    reads: Reads,
    /// What the prune program reads on a pruning event, and what it needs on every update (the
    /// activities its traces average).
    prune_reads: Reads,
    prune_traces: Reads,
    /// What the last update computed.
    work: Work,
    /// Whether the synapse or prune program reads `layer_rate` (the mean of `post`, summed only then).
    reads_layer_rate: bool,
}

/// What one update computed beyond the forward pass. Each part is paid only when some section reads
/// what needs it; `tests.rs` checks it for every vocabulary entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Work {
    /// The backward pass (BPTT).
    pub backward: bool,
    /// The backward pass's weight gradients of the matrices that follow the rule (a rule that reads
    /// `err` but not `grad` needs the errors, not these products).
    pub weight_gradients: bool,
    /// The weight samples of stochastic weights (`sigma`).
    pub sampled_weights: bool,
    /// The per-layer signals computed for the synapse and prune sections, and the age counted.
    pub signals: Reads,
    /// Whether the passes recorded the membrane sums (`v`) and the error sums (`err`).
    pub recorded: (bool, bool),
    /// The neuron pass's statistics, when the rule has a `neuron()` section.
    pub neuron: Option<NeuronWork>,
}

/// What every weight matrix of one update shares.
#[derive(Clone, Copy, Debug)]
struct Step {
    /// The signals some program reads this update.
    reads: Reads,
    /// The pruning event of this update, if any.
    event: Option<usize>,
    globals: Globals,
    task: usize,
}

/// The learner's noise table, which exists whenever something draws from it.
fn table(noise: &Option<NoiseTable>) -> &NoiseTable {
    noise
        .as_ref()
        .expect("built when a program calls randn() or the weights are stochastic")
}

/// The synapse program of a rule without a `synapse()` section, `dw = -lr * grad` (as applied, see
/// [`CompiledRule::synapse_applied`]): compiled once per process, so its kernels are built once.
fn default_synapse() -> &'static Program {
    static DEFAULT: std::sync::OnceLock<Program> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(|| {
        crate::rule::compile(
            "fn synapse() { dw = -lr * grad; }",
            std::path::Path::new("default"),
        )
        .expect("the default synapse rule compiles")
        .synapse_applied
        .expect("it has a synapse() section")
    })
}

impl RuleLearner {
    /// The learner for `rule`. The structure schedule applies to the matrices that follow the rule
    /// when the rule has a `prune()` section.
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
        // The synapse program writes `w + dw` into the `dw` buffer ([`CompiledRule::synapse_applied`]),
        // which then replaces the weights.
        let program = rule
            .synapse_applied
            .clone()
            .unwrap_or_else(|| default_synapse().clone());
        let prune = section(Section::Prune);
        let reads = Reads::of(&program);
        let prune_reads = prune.as_ref().map(Reads::of).unwrap_or_default();
        let prune_traces = prune.as_ref().map(Reads::traces).unwrap_or_default();
        let hidden = network.config().hidden.len();
        let follows_rule = |l: usize| !(settings.hidden_only && l == hidden);
        let mut matrices = Vec::with_capacity(hidden + 1);
        for (l, layer) in network.layers_mut().iter_mut().enumerate() {
            let connectivity = (prune.is_some() && follows_rule(l)).then(|| {
                let mut rng = structure::stream(seed, l, 0);
                let c = Connectivity::new(layer.outputs(), layer.inputs(), &settings.structure, &mut rng);
                for (w, &present) in layer.weights_mut().iter_mut().zip(c.present()) {
                    if !present {
                        *w = 0.0;
                    }
                }
                c
            });
            let biases = (settings.biases_follow_rule && follows_rule(l)).then(|| layer.bias());
            matrices.push(MatrixState::new(
                layer.weights(),
                biases,
                layer.inputs(),
                program.outputs.len(),
                connectivity,
            ));
        }
        // The neuron pass runs for a neuron() section, and to keep the neuron statistics the other
        // sections read.
        let statistics_readers = std::iter::once(&program).chain(&prune);
        let reads_layer_rate = statistics_readers
            .clone()
            .any(|p| p.inputs.contains(&Var::LayerRate));
        let statistics: Vec<Var> = statistics_readers
            .flat_map(|p| p.inputs.iter().copied())
            .filter(|&v| neurons::statistic(v).is_some())
            .collect();
        let neuron_program = section(Section::Neuron);
        let neurons = (neuron_program.is_some() || !statistics.is_empty())
            .then(|| NeuronPass::new(neuron_program, &statistics, settings.replacement, &network, seed));
        let (neuron_v, neuron_err) = neurons.as_ref().map_or((false, false), NeuronPass::reads_v_err);
        // The synapse program, not the file's sections: a rule without synapse() runs the default
        // `dw = -lr * grad`.
        let sections = || {
            std::iter::once(&program).chain(
                rule.programs
                    .iter()
                    .filter(|(s, _)| *s != Section::Synapse)
                    .map(|(_, p)| p),
            )
        };
        let reads_grad = sections().any(reads_gradient);
        let uses_sigma = rule.stochastic_weights();
        let stochastic = uses_sigma.then(|| {
            let sampled: Vec<Sampled> = matrices
                .iter()
                .enumerate()
                .map(|(l, m)| Sampled {
                    weights: follows_rule(l),
                    biases: follows_rule(l) && settings.biases_follow_rule,
                    present: m.present(),
                })
                .collect();
            let reads_grad_sigma = rule
                .programs
                .iter()
                .any(|(_, p)| p.inputs.contains(&Var::GradSigma));
            StochasticWeights::new(&network, settings.sampling, &sampled, reads_grad_sigma)
        });
        let backward =
            reads_grad || settings.hidden_only || !settings.biases_follow_rule || stochastic.is_some();
        // A weight gradient is needed where SGD moves the weights (the readout under `apply_to:
        // Hidden`), where the weight samples' estimate is built from it, or where a section reads
        // `grad`; elsewhere the backward pass computes only the errors and the biases' gradients.
        let weight_gradients = sections().any(|p| p.inputs.contains(&Var::Grad)) || stochastic.is_some();
        let mut core = Backprop::new(network);
        core.workspace.skip_weight_gradients(
            (0..=hidden)
                .map(|l| follows_rule(l) && !weight_gradients)
                .collect(),
        );
        // The first layer's weight gradient of a constant input is a sum of outer products over the
        // batch; a program reading `grad` computes it where it reads (online: multiplies its two
        // factors, `Input::Outer`; a batch: by blocks of rows, `Input::Blocks`) instead of the
        // backward pass writing it out. Weight samples build their estimate from the written
        // gradient, so they keep it.
        core.workspace
            .factor_first_gradient(weight_gradients && stochastic.is_none() && follows_rule(0));
        let recorded = reads.union(prune_reads);
        core.workspace
            .record(recorded.v || neuron_v, recorded.err || neuron_err);
        // Firing rates (`Rates`) are read by pre, post and hebb, and by the neuron pass.
        core.workspace
            .record_rates(recorded.pre || recorded.post || recorded.hebb || neurons.is_some());
        // `elig` of a first layer with constant input reads the surrogate summed over the steps with
        // the trace's weights (`Signals::elig`): summed by the pass as each step's comes out.
        let config = core.network.config();
        let constant_first = config.encoding == Encoding::Direct && !config.hidden.is_empty();
        let surrogate_weights = (recorded.elig && constant_first).then(|| {
            signals::constant_input_trace_weights(signals::trace_decay(&core, 0), config.time_steps)
        });
        core.workspace.record_weighted_surrogate(surrogate_weights);
        RuleLearner {
            core,
            name,
            program,
            prune,
            neurons,
            backward,
            weight_gradients: backward && weight_gradients,
            scratch: Vec::new(),
            stochastic,
            lr: settings.lr,
            hidden_only: settings.hidden_only,
            schedule: settings.structure,
            matrices,
            loss_trace: None,
            noise: (uses_sigma || rule.programs.iter().any(|(_, p)| p.draws_noise()))
                .then(|| NoiseTable::new(seed)),
            seed,
            updates: 0,
            signals: Signals::default(),
            program_scratch: Scratch::default(),
            grad_rows: OuterProductRows::default(),
            scores: Vec::new(),
            reads,
            prune_reads,
            prune_traces,
            work: Work::default(),
            reads_layer_rate,
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
                synapses::regrow(l, &regrown, state, weights, self.stochastic.as_mut());
            }
            if let Some(connectivity) = &mut state.connectivity {
                connectivity.open_window();
            }
        }
    }

    /// What the last update computed beyond the forward pass.
    pub fn work(&self) -> Work {
        self.work
    }

    /// Every unit the neuron pass replaced so far: (update, hidden layer, unit).
    pub fn replaced_units(&self) -> &[(u64, usize, usize)] {
        self.neurons.as_ref().map_or(&[], NeuronPass::replaced)
    }

    /// The pass of one update: the loss, and the gradients where something reads them.
    fn pass(&mut self, batch: &Batch, noise_rng: &mut Rng, rng: &mut Rng) -> UpdateStats {
        if let Some(st) = &mut self.stochastic {
            st.estimate(&mut self.core, table(&self.noise), noise_rng, batch, rng)
        } else if self.backward {
            self.core.compute(batch, rng)
        } else {
            self.core.forward_only(batch, rng, &mut self.scratch)
        }
    }

    /// Step 3 for weight matrix `l`: signals, the synapse, prune and bias programs, write-back and
    /// pruning.
    fn update_matrix(&mut self, l: usize, step: Step, batch: &Batch, noise_rng: &mut Rng) {
        let Step {
            reads,
            event,
            globals,
            task,
        } = step;
        let hidden = self.core.network.config().hidden.len();
        let (inputs, outputs) = {
            let layer = &self.core.network.layers()[l];
            (layer.inputs(), layer.outputs())
        };
        self.signals.compute(reads, l, &self.core, batch);
        self.matrices[l].update_traces(&self.signals);
        let bias_elig_per_column = reads.elig
            && self.matrices[l].bias.is_some()
            && self.signals.compute_bias_elig(l, &self.core, batch.len());
        // The first layer's gradient where the backward pass left it as factors, Σ_t ∂I[t] per example
        // and unit, and the input: one example's is multiplied where it is read, a batch's computed by
        // blocks of rows.
        let factors = self.core.workspace.first_gradient_factors().filter(|_| l == 0);
        let rows = batch.len();
        let grad_unwritten = match factors {
            Some(sums)
                if is_outer_product(Storage::Transposed, Storage::RowMajor, (outputs, rows, inputs)) =>
            {
                Some(Input::Outer(&sums[..outputs], &batch.images[..inputs]))
            }
            Some(sums) => {
                let shape = (outputs, rows, inputs);
                match self.signals.pixel_rows() {
                    // elig or hebb, prepared above, read the same pixels: their entries are found
                    // once.
                    Some(like) => self
                        .grad_rows
                        .prepare_sharing(like, sums, &batch.images, shape, 1.0),
                    None => self.grad_rows.prepare(sums, &batch.images, shape, 1.0),
                }
                Some(by_rows(&self.grad_rows))
            }
            None => None,
        };
        // The prune program scores the synapses as the synapse program saw them.
        let pruning = event.filter(|_| self.matrices[l].connectivity.is_some() && self.prune.is_some());
        // The output buffers leave the state while the programs read it.
        let mut outs = std::mem::take(&mut self.matrices[l].outputs);
        let mut bias_outs = self.matrices[l]
            .bias
            .as_mut()
            .map(|b| std::mem::take(&mut b.outputs));
        {
            let state = &self.matrices[l];
            let layer = &self.core.network.layers()[l];
            let gradients = &self.core.gradients.layers[l];
            let empty: &[f32] = &[];
            let [sigma_w, grad_sigma_w, sigma_b, grad_sigma_b] = match &self.stochastic {
                Some(st) => st.layer(l, outputs * inputs, outputs),
                None => [empty; 4],
            };
            let view = SynapseView {
                weights: layer.weights(),
                grad: &gradients.weights,
                grad_unwritten,
                sigma: sigma_w,
                grad_sigma: grad_sigma_w,
                state,
                signals: &self.signals,
                thresholds: if l < hidden {
                    self.core.network.thresholds(l)
                } else {
                    &[]
                },
                post_stats: self.neurons.as_ref().filter(|_| l < hidden).map(|n| n.stats(l)),
                pre_stats: self.neurons.as_ref().filter(|_| l > 0).map(|n| n.stats(l - 1)),
                layer_rate: if l < hidden && self.reads_layer_rate {
                    self.signals.post.iter().sum::<f32>() / outputs.max(1) as f32
                } else {
                    0.0
                },
                globals,
                inputs,
                outputs,
                layer: l,
            };
            let noise = &self.noise;
            let program_inputs: Vec<Input> = self.program.inputs.iter().map(|&v| view.input(v)).collect();
            let mut out_slices: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
            self.program.run_matrix(
                outputs,
                inputs,
                &program_inputs,
                &mut out_slices,
                &mut |chunk| table(noise).fill(chunk, noise_rng),
                &mut self.program_scratch,
            );
            if let Some(prune) = pruning.and(self.prune.as_ref()) {
                self.scores.resize(outputs * inputs, 0.0);
                let prune_inputs: Vec<Input> = prune.inputs.iter().map(|&v| view.input(v)).collect();
                prune.run_matrix(
                    outputs,
                    inputs,
                    &prune_inputs,
                    &mut [self.scores.as_mut_slice()],
                    &mut |chunk| table(noise).fill(chunk, noise_rng),
                    &mut self.program_scratch,
                );
            }
            if let (Some(bias), Some(bias_outs)) = (&state.bias, &mut bias_outs) {
                let values = BiasValues {
                    biases: layer.bias(),
                    grad: &gradients.bias,
                    sigma: sigma_b,
                    grad_sigma: grad_sigma_b,
                    elig_per_column: bias_elig_per_column,
                };
                let bias_inputs: Vec<Input> = self
                    .program
                    .inputs
                    .iter()
                    .map(|&v| view.bias_input(v, bias, &values))
                    .collect();
                let mut out_slices: Vec<&mut [f32]> = bias_outs.iter_mut().map(Vec::as_mut_slice).collect();
                self.program.run_matrix(
                    outputs,
                    1,
                    &bias_inputs,
                    &mut out_slices,
                    &mut |chunk| table(noise).fill(chunk, noise_rng),
                    &mut self.program_scratch,
                );
            }
        }
        let state = &mut self.matrices[l];
        state.outputs = outs;
        let written = || self.program.outputs.iter().map(|(v, _)| *v);
        let layer = &mut self.core.network.layers_mut()[l];
        synapses::write_back(written(), l, state, layer, self.stochastic.as_mut());
        if let (Some(bias), Some(bias_outs)) = (&mut state.bias, bias_outs) {
            bias.outputs = bias_outs;
            synapses::write_back_biases(written(), l, bias, layer.bias_mut(), self.stochastic.as_mut());
            if reads.age {
                bias.age.iter_mut().for_each(|a| *a += 1.0);
            }
        }
        if let (Some(k), Some(connectivity)) = (pruning, &mut state.connectivity) {
            let removed = connectivity.prune(&self.scores, k, task, &self.schedule);
            let weights = layer.weights_mut();
            for &i in &removed {
                weights[i] = 0.0;
            }
            if let Some(st) = &mut self.stochastic {
                st.remove(l, &removed);
            }
            if k == self.schedule.prune_steps && self.schedule.protect_tasks > 0 {
                connectivity.protect(task, self.schedule.protect_tasks);
            }
        }
        if reads.age {
            state.age.iter_mut().for_each(|a| *a += 1.0);
            self.signals.computed.age = true;
        }
    }

    /// Step 5: the neuron pass over the updated weights; replaced units' synapses restart.
    fn neuron_pass(&mut self, batch: &Batch, globals: Globals, noise_rng: &mut Rng) {
        let Some(neurons) = &mut self.neurons else {
            return;
        };
        let workspace = &self.core.workspace;
        let config = self.core.network.config().clone();
        let (steps, rows) = (config.time_steps, batch.len());
        let row_stats = |l: usize, wanted: [bool; 3]| {
            signals::neuron_signals(workspace, l, [config.hidden[l], steps, rows], wanted)
        };
        let noise = &self.noise;
        let rates = self.signals.rates.hidden(workspace, &config.hidden);
        let replaced = neurons.run(
            &mut self.core.network,
            &rates,
            globals,
            &row_stats,
            &mut |chunk| table(noise).fill(chunk, noise_rng),
            self.updates,
        );
        for (l, unit) in replaced {
            let weights = self.core.network.layers_mut()[l].weights_mut();
            synapses::restart_unit(l, unit, &mut self.matrices, weights, self.stochastic.as_mut());
        }
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
        self.matrices[layer].present()
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
        self.signals.computed = Reads::default();
        let stats = self.pass(batch, &mut noise_rng, rng);
        let loss_trace = match self.loss_trace {
            Some(t) => TRACE_DECAY * t + (1.0 - TRACE_DECAY) * stats.loss,
            None => stats.loss,
        };
        self.loss_trace = Some(loss_trace);
        let globals = Globals {
            batch: batch.len() as f32,
            lr: self.lr,
            step: context.step as f32,
            new_task: if context.new_task { 1.0 } else { 0.0 },
            loss: stats.loss,
            loss_trace,
        };
        let hidden = self.core.network.config().hidden.len();
        for l in 0..=hidden {
            if l == hidden && self.hidden_only {
                // The readout follows plain SGD.
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
            let step = Step {
                reads,
                event,
                globals,
                task: context.task,
            };
            self.update_matrix(l, step, batch, &mut noise_rng);
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
        self.neuron_pass(batch, globals, &mut noise_rng);
        if let Some(st) = &mut self.stochastic {
            st.take_mean(&self.core.network);
        }
        self.work = Work {
            backward: self.stochastic.is_some() || self.backward,
            weight_gradients: self.weight_gradients,
            sampled_weights: self.stochastic.is_some(),
            signals: self.signals.computed,
            recorded: self.core.workspace.recording(),
            neuron: self.neurons.as_ref().map(NeuronPass::computed),
        };
        self.updates += 1;
        stats
    }

    fn predict(&self, images: &[f32], workspace: &mut Workspace, rng: &mut Rng, predictions: &mut Vec<u8>) {
        match &self.stochastic {
            Some(st) => st.predict(table(&self.noise), images, workspace, rng, predictions),
            None => super::predict_once(self.network(), images, workspace, rng, predictions),
        }
    }
}
