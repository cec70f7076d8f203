//! The per-layer signals a rule reads, computed from one update's forward (and backward) pass: the
//! one place they are defined, for the synapse, prune and neuron sections alike.
//!
//! For weight matrix `l` (rows = postsynaptic neurons, columns = presynaptic ones), as means over the
//! batch and the T steps:
//! - `pre`: the input intensity (first layer) or the presynaptic layer's firing rate;
//! - `post`: this layer's firing rate, or the readout's mean softmax probability;
//! - `hebb`: post × pre activity (one GEMM per matrix; for the readout, softmax probability ×
//!   presynaptic rate);
//! - `psi`: the postsynaptic surrogate derivative (1 for the linear readout, the ReLU derivative in ANN
//!   mode);
//! - `v`: the pre-reset membrane (the readout's mean membrane, the logit);
//! - `err`: the error at the postsynaptic neuron's output, Σ over batch and steps of ∂L/∂s divided by T
//!   (for the readout, the batch mean of softmax − one-hot);
//! - `elig`: the e-prop eligibility (Bellec et al. 2020), ψ_post[t] × x̄_pre[t] with the presynaptic
//!   trace x̄[t] = β·x̄[t−1] + x[t] decaying with the postsynaptic layer's β (for the readout ψ = 1 and
//!   β = β_o, so it is one value per presynaptic neuron).
//!
//! Only what a program reads is computed ([`Reads`]); the rest stay empty.

use super::super::Backprop;
use crate::data::Batch;
use crate::rule::Program;
use crate::rule::vocab::Var;
use crate::snn::{
    OuterProductRows, SparseScratch, Storage, Workspace, accumulate_softmax, grow, matmul_divided, neuron,
    outer_products_skipping_zeros,
};

/// Decay of `pre_trace`, `post_trace`, `rate_trace` and `loss_trace` per update.
pub const TRACE_DECAY: f32 = 0.99;

/// Which derived signals a program needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reads {
    /// `pre` (and, to average it, `pre_trace`).
    pub pre: bool,
    /// `post` (and `post_trace`; on the readout also the softmax that `hebb` and `err` use).
    pub post: bool,
    /// `hebb`.
    pub hebb: bool,
    /// `psi`.
    pub psi: bool,
    /// `age` (counted only when read).
    pub age: bool,
    /// `v`.
    pub v: bool,
    /// `err`.
    pub err: bool,
    /// `elig`.
    pub elig: bool,
}

impl Reads {
    /// What `program` reads.
    pub fn of(program: &Program) -> Reads {
        program
            .inputs
            .iter()
            .fold(Reads::default(), |r, v| r.union(Reads::of_var(*v)))
    }

    /// What reading `var` needs computed.
    fn of_var(var: Var) -> Reads {
        let none = Reads::default();
        match var {
            Var::Pre | Var::PreTrace => Reads { pre: true, ..none },
            Var::Post | Var::PostTrace => Reads { post: true, ..none },
            // On the readout, hebb and err use its softmax probabilities, computed with post.
            Var::Hebb => Reads {
                hebb: true,
                post: true,
                ..none
            },
            Var::Err => Reads {
                err: true,
                post: true,
                ..none
            },
            Var::Psi => Reads { psi: true, ..none },
            Var::Age => Reads { age: true, ..none },
            Var::V => Reads { v: true, ..none },
            Var::Elig => Reads { elig: true, ..none },
            // The postsynaptic layer's mean of post.
            Var::LayerRate => Reads { post: true, ..none },
            Var::W
            | Var::W0
            | Var::Grad
            | Var::M
            | Var::U
            | Var::Sigma
            | Var::GradSigma
            | Var::Dw
            | Var::Rate
            | Var::RateTrace
            | Var::InW
            | Var::OutW
            | Var::ActDev
            | Var::Util
            | Var::H
            | Var::Theta
            | Var::Score
            | Var::Lr
            | Var::Step
            | Var::NewTask
            | Var::Batch
            | Var::Loss
            | Var::LossTrace
            | Var::FanIn
            | Var::FanOut
            | Var::Layer
            // Neuron statistics come from the neuron pass (`neurons.rs`).
            | Var::PreRateTrace
            | Var::PreInW
            | Var::PreOutW
            | Var::PreActDev
            | Var::PreUtil
            | Var::PreH => none,
        }
    }

    /// What `program` needs on every update even when it does not run: the activities its traces
    /// average, and the age it counts.
    pub fn traces(program: &Program) -> Reads {
        let reads = |var: Var| program.inputs.contains(&var);
        Reads {
            pre: reads(Var::PreTrace),
            post: reads(Var::PostTrace),
            age: reads(Var::Age),
            ..Reads::default()
        }
    }

    /// Everything either needs.
    pub fn union(self, other: Reads) -> Reads {
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

/// Whether a program reads a gradient (`grad` or `err`), which needs the backward pass.
pub fn reads_gradient(program: &Program) -> bool {
    program.inputs.iter().any(|v| matches!(v, Var::Grad | Var::Err))
}

/// Values one update shares across layers and sections.
#[derive(Clone, Copy, Debug)]
pub struct Globals {
    /// Examples in this update.
    pub batch: f32,
    /// The learner's step size.
    pub lr: f32,
    /// Updates since the task began.
    pub step: f32,
    /// 1 on a task's first update when boundaries are visible.
    pub new_task: f32,
    /// This update's loss.
    pub loss: f32,
    /// Its running average.
    pub loss_trace: f32,
}

/// One layer's signals, recomputed per weight matrix into reused buffers. A signal the program does
/// not read is left empty.
#[derive(Debug, Default)]
pub struct Signals {
    /// Per presynaptic neuron.
    pub pre: Vec<f32>,
    /// Per postsynaptic neuron.
    pub post: Vec<f32>,
    /// Per postsynaptic neuron.
    pub psi: Vec<f32>,
    /// Per postsynaptic neuron.
    pub v: Vec<f32>,
    /// Per postsynaptic neuron.
    pub err: Vec<f32>,
    /// Per synapse: the first `outputs × inputs` of the matrix computed last ([`Signals::hebb`]).
    pub hebb: Vec<f32>,
    /// `hebb` of a first layer with constant input, a sum of outer products over the batch (by a
    /// power of two), handed out by blocks of rows as the synapse program reads them.
    pub hebb_rows: OuterProductRows,
    /// Whether this matrix's `hebb` is `hebb_rows` (`hebb` then holds an older matrix's).
    pub hebb_by_rows: bool,
    /// Per synapse (hidden layers), as `hebb`.
    pub elig: Vec<f32>,
    /// Per presynaptic neuron: `elig` of the readout, where ψ = 1 ([`Signals::elig_per_column`]).
    /// Kept apart from `elig` so neither buffer is shrunk and refilled on every update.
    pub elig_columns: Vec<f32>,
    /// Whether this matrix's `elig` is `elig_columns` (the readout).
    pub elig_per_column: bool,
    /// `elig` of a first layer with constant input, a sum of outer products over the batch, handed
    /// out by blocks of rows as the synapse program reads them ([`Signals::elig_by_rows`]).
    pub elig_rows: OuterProductRows,
    /// Whether this matrix's `elig` is `elig_rows` (`elig` then holds an older matrix's).
    pub elig_by_rows: bool,
    /// `elig` of the biases (synapses from an always-on input): per neuron, or one value on the readout.
    pub bias_elig: Vec<f32>,
    /// What [`Signals::compute`] has computed since the learner last cleared it (for tests that a rule
    /// pays only for what it reads).
    pub computed: Reads,
    /// Each hidden layer's firing rates in the last pass, shared by the matrices and the neuron pass.
    pub rates: Rates,
    /// Scratch of the sums of outer products (`hebb`, `elig`) from their operands' nonzero entries.
    outer_scratch: SparseScratch,
    /// Scratch: the readout's softmax.
    probabilities: Vec<f32>,
    /// Scratch of `elig`: the presynaptic traces, or for a constant input the c_t-weighted surrogate.
    trace: Vec<f32>,
}

/// Hidden layers' firing rates (`batch × width`, [`Workspace::activity_into`]), each computed at most
/// once per forward pass.
#[derive(Debug, Default)]
pub struct Rates {
    /// Per hidden layer: the pass the rates are of, and the rates.
    layers: Vec<(Option<u64>, Vec<f32>)>,
}

impl Rates {
    /// Layer `l`'s rates in `ws`'s last pass (`width` units), computed unless they already are.
    pub fn of(&mut self, ws: &Workspace, l: usize, width: usize) -> &[f32] {
        if self.layers.len() <= l {
            self.layers.resize_with(l + 1, Default::default);
        }
        let (pass, rates) = &mut self.layers[l];
        if *pass != Some(ws.pass_id()) {
            ws.activity_into(l, width, rates);
            *pass = Some(ws.pass_id());
        }
        rates
    }

    /// Every hidden layer's rates in `ws`'s last pass (`widths` units each), computed unless they
    /// already are.
    pub fn hidden(&mut self, ws: &Workspace, widths: &[usize]) -> Vec<&[f32]> {
        for (l, &width) in widths.iter().enumerate() {
            self.of(ws, l, width);
        }
        self.layers[..widths.len()].iter().map(|(_, r)| &r[..]).collect()
    }

    /// Layer `l`'s rates as [`Rates::of`] last computed them.
    fn get(&self, l: usize) -> &[f32] {
        &self.layers[l].1
    }
}

impl Signals {
    /// Computes what `reads` asks for, for weight matrix `l` of `core`'s network after a pass on
    /// `batch`.
    pub fn compute(&mut self, reads: Reads, l: usize, core: &Backprop, batch: &Batch) {
        let config = core.network.config();
        let hidden = config.hidden.len();
        let layer = &core.network.layers()[l];
        let (inputs, outputs) = (layer.inputs(), layer.outputs());
        let ws = &core.workspace;
        let (steps, rows) = (config.time_steps, batch.len());
        // The firing rates pre, post and hebb share, computed once per pass.
        let direct_first = l == 0 && ws.input_sequence().is_empty();
        if l > 0 && (reads.pre || (reads.hebb && l == hidden)) {
            self.rates.of(ws, l - 1, inputs);
        }
        if l < hidden && (reads.post || (reads.hebb && direct_first)) {
            self.rates.of(ws, l, outputs);
        }
        self.pre.clear();
        if reads.pre {
            self.computed.pre = true;
            if l == 0 {
                row_mean_into(&batch.images, inputs, &mut self.pre);
            } else {
                row_mean_into(self.rates.get(l - 1), inputs, &mut self.pre);
            }
        }
        self.post.clear();
        if reads.post {
            self.computed.post = true;
            if l < hidden {
                row_mean_into(self.rates.get(l), outputs, &mut self.post);
            } else {
                self.probabilities.clear();
                self.probabilities.resize(ws.logits().len(), 0.0);
                accumulate_softmax(ws.logits(), outputs, &mut self.probabilities);
                row_mean_into(&self.probabilities, outputs, &mut self.post);
            }
        }
        self.hebb_by_rows = false;
        if reads.hebb {
            self.computed.hebb = true;
            self.hebb(l, core, batch);
        }
        self.psi.clear();
        if reads.psi {
            self.computed.psi = true;
            if l == hidden {
                self.psi.resize(outputs, 1.0);
            } else {
                row_mean_into(ws.surrogate(l), outputs, &mut self.psi);
            }
        }
        self.v.clear();
        if reads.v {
            self.computed.v = true;
            if l == hidden {
                row_mean_into(ws.logits(), outputs, &mut self.v);
            } else {
                mean_membrane_into(ws, l, steps * rows, &mut self.v);
            }
        }
        self.err.clear();
        if reads.err {
            self.computed.err = true;
            if l == hidden {
                // probabilities hold the softmax (computed with post); subtract the one-hot labels.
                row_mean_into(&self.probabilities, outputs, &mut self.err);
                for &y in &batch.labels {
                    self.err[y as usize] -= 1.0 / rows as f32;
                }
            } else {
                output_error_into(ws, l, steps, &mut self.err);
            }
        }
        self.elig_per_column = false;
        self.elig_by_rows = false;
        if reads.elig {
            self.computed.elig = true;
            self.elig(l, core, batch);
        }
    }

    /// A product over this matrix's pixels computed by blocks of rows this update (`elig`'s or
    /// `hebb`'s), whose entries of the pixels another such product can share.
    pub fn pixel_rows(&self) -> Option<&OuterProductRows> {
        if self.elig_by_rows {
            Some(&self.elig_rows)
        } else if self.hebb_by_rows {
            Some(&self.hebb_rows)
        } else {
            None
        }
    }

    /// `hebb` of matrix `l`: the mean over batch and steps of post × pre activity.
    fn hebb(&mut self, l: usize, core: &Backprop, batch: &Batch) {
        let config = core.network.config();
        let hidden = config.hidden.len();
        let layer = &core.network.layers()[l];
        let (inputs, outputs) = (layer.inputs(), layer.outputs());
        let ws = &core.workspace;
        let (steps, rows) = (config.time_steps, batch.len());
        grow(&mut self.hebb, outputs * inputs);
        if l == hidden {
            // Readout: mean over the batch of softmax probability × presynaptic firing rate
            // (computed by `compute`).
            outer_products_divided(
                &mut self.hebb,
                &self.probabilities,
                self.rates.get(l - 1),
                (outputs, rows, inputs),
                rows,
                &mut self.outer_scratch,
            );
        } else if l == 0 && ws.input_sequence().is_empty() {
            // Direct input is the same at every step: Σ_t s[t]ᵀx = T·(rate)ᵀx (the rate computed by
            // `compute`). Dividing by a power of two is scaling, so then the blocks have the bits of
            // `outer_products_divided`'s product.
            let (rates, shape) = (self.rates.get(0), (outputs, rows, inputs));
            if rows.is_power_of_two() {
                self.hebb_rows
                    .prepare(rates, &batch.images, shape, 1.0 / rows as f32);
                self.hebb_by_rows = true;
            } else {
                outer_products_divided(
                    &mut self.hebb,
                    rates,
                    &batch.images,
                    shape,
                    rows,
                    &mut self.outer_scratch,
                );
            }
        } else {
            let pre_steps = if l == 0 {
                ws.input_sequence()
            } else {
                ws.spikes(l - 1)
            };
            outer_products_skipping_zeros(
                &mut self.hebb,
                ws.spikes(l),
                pre_steps,
                (outputs, steps * rows, inputs),
                1.0 / (steps * rows) as f32,
                &mut self.outer_scratch,
            );
        }
    }

    /// `elig` of matrix `l`.
    fn elig(&mut self, l: usize, core: &Backprop, batch: &Batch) {
        let config = core.network.config();
        let hidden = config.hidden.len();
        let layer = &core.network.layers()[l];
        let (inputs, outputs) = (layer.inputs(), layer.outputs());
        let ws = &core.workspace;
        let (steps, rows) = (config.time_steps, batch.len());
        let beta = trace_decay(core, l);
        let direct_first = l == 0 && ws.input_sequence().is_empty();
        if direct_first && l < hidden {
            // A constant input x makes the trace c_t·x with c_t = Σ_{k≤t} βᵏ, so
            // Σ_t ψ[t]ᵀ·(c_t x) = (Σ_t c_t ψ[t])ᵀ·x: one product over the batch, not over T × batch.
            let per_step = rows * outputs;
            let weights = constant_input_trace_weights(beta, steps);
            // Summed by the forward pass where the learner asked for it, else here.
            let recorded = ws.weighted_surrogate(&weights);
            if recorded.is_none() {
                // Every element is written by the weighted sum: no need to zero it first.
                self.trace.resize(per_step, 0.0);
                neuron::weighted_sum_over_steps(
                    &ws.surrogate(l)[..steps * per_step],
                    &weights,
                    &mut self.trace,
                );
            }
            let (surrogate, shape) = (recorded.unwrap_or(&self.trace), (outputs, rows, inputs));
            let scale = 1.0 / (steps * rows) as f32;
            if self.hebb_by_rows {
                // hebb, prepared above, read the same pixels: their entries are found once.
                self.elig_rows
                    .prepare_sharing(&self.hebb_rows, surrogate, &batch.images, shape, scale);
            } else {
                self.elig_rows.prepare(surrogate, &batch.images, shape, scale);
            }
            self.elig_by_rows = true;
            return;
        }
        let per_step = rows * inputs;
        let input_at = |t: usize| -> &[f32] {
            if direct_first {
                &batch.images
            } else if l == 0 {
                &ws.input_sequence()[t * per_step..(t + 1) * per_step]
            } else {
                &ws.spikes(l - 1)[t * per_step..(t + 1) * per_step]
            }
        };
        if l == hidden {
            // ψ = 1 for the linear readout: the mean trace of each presynaptic unit over steps and
            // batch, summed row by row as the trace advances (so only one step of it is kept; its
            // first step is written before it is read, so the buffer needs no zeros).
            grow(&mut self.trace, per_step);
            self.elig_columns.clear();
            self.elig_columns.resize(inputs, 0.0);
            let x = if direct_first {
                // No hidden layer: the readout's input is the pixels, the same at every step.
                &batch.images[..per_step]
            } else if l == 0 {
                &ws.input_sequence()[..steps * per_step]
            } else {
                &ws.spikes(l - 1)[..steps * per_step]
            };
            neuron::sum_trace_over_steps(
                x,
                steps,
                beta,
                &mut self.trace[..per_step],
                &mut self.elig_columns,
            );
            let samples = (steps * rows).max(1) as f32;
            self.elig_columns.iter_mut().for_each(|m| *m /= samples);
            self.elig_per_column = true;
            return;
        }
        // The presynaptic trace at every step, T × batch × inputs.
        self.trace.clear();
        self.trace.resize(steps * per_step, 0.0);
        for t in 0..steps {
            let x = input_at(t);
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
        grow(&mut self.elig, outputs * inputs);
        outer_products_skipping_zeros(
            &mut self.elig,
            ws.surrogate(l),
            &self.trace,
            (outputs, steps * rows, inputs),
            1.0 / (steps * rows) as f32,
            &mut self.outer_scratch,
        );
    }

    /// `elig` of layer `l`'s biases, synapses from an input that is 1 at every step: the mean over
    /// batch and steps of ψ_i[t]·Σ_{k≤t} β^k. Returns whether it is one value for every neuron (the
    /// readout).
    pub fn compute_bias_elig(&mut self, l: usize, core: &Backprop, rows: usize) -> bool {
        let config = core.network.config();
        let hidden = config.hidden.len();
        let outputs = core.network.layers()[l].outputs();
        let steps = config.time_steps;
        let beta = trace_decay(core, l);
        let trace = constant_input_trace_weights(beta, steps);
        if l == hidden {
            self.bias_elig = vec![trace.iter().sum::<f32>() / steps as f32];
            true
        } else {
            let surrogate = core.workspace.surrogate(l);
            self.bias_elig = vec![0.0; outputs];
            for (t, block) in surrogate.chunks_exact(rows * outputs).enumerate() {
                for row in block.chunks_exact(outputs) {
                    for (e, p) in self.bias_elig.iter_mut().zip(row) {
                        *e += p * trace[t];
                    }
                }
            }
            let scale = 1.0 / (steps * rows) as f32;
            self.bias_elig.iter_mut().for_each(|e| *e *= scale);
            false
        }
    }
}

/// The decay β of the presynaptic trace of matrix `l`: its postsynaptic layer's (0 for ReLU units).
pub fn trace_decay(core: &Backprop, l: usize) -> f32 {
    let config = core.network.config();
    let hidden = config.hidden.len();
    match config.neuron {
        crate::snn::Neuron::Lif(lif) if l < hidden => lif.beta,
        _ if l == hidden => config.readout_beta,
        _ => 0.0,
    }
}

/// Per-neuron statistics of hidden layer `l` that the neuron section shares with the synapse section:
/// (`psi`, `v`, `err`), each computed only where `wanted` says (left empty otherwise).
pub fn neuron_signals(
    workspace: &Workspace,
    l: usize,
    [width, steps, rows]: [usize; 3],
    wanted: [bool; 3],
) -> [Vec<f32>; 3] {
    let mut out: [Vec<f32>; 3] = Default::default();
    if wanted[0] {
        row_mean_into(workspace.surrogate(l), width, &mut out[0]);
    }
    if wanted[1] {
        mean_membrane_into(workspace, l, steps * rows, &mut out[1]);
    }
    if wanted[2] {
        output_error_into(workspace, l, steps, &mut out[2]);
    }
    out
}

/// The mean of the rows of a row-major `rows × width` matrix: a per-neuron mean over the batch (and
/// the steps, when they are rows too).
pub fn row_mean(values: &[f32], width: usize) -> Vec<f32> {
    let mut mean = Vec::new();
    row_mean_into(values, width, &mut mean);
    mean
}

/// [`row_mean`] into a reused buffer.
fn row_mean_into(values: &[f32], width: usize, mean: &mut Vec<f32>) {
    mean.clear();
    mean.resize(width, 0.0);
    let rows = values.len() / width.max(1);
    neuron::add_rows(mean, &values[..rows * width]);
    mean.iter_mut().for_each(|m| *m /= rows.max(1) as f32);
}

/// The weights `c_t = Σ_{k≤t} βᵏ` of a constant input's presynaptic trace at steps `0..steps`
/// (`elig`'s `Σ_t c_t·ψ[t]`).
pub fn constant_input_trace_weights(beta: f32, steps: usize) -> Vec<f32> {
    (0..steps)
        .scan(0.0f32, |c, _| {
            *c = beta * *c + 1.0;
            Some(*c)
        })
        .collect()
}

/// `dst = aᵀ·b / divisor`, [`matmul_divided`]'s bits, from the operands' nonzero entries where that is
/// faster ([`outer_products_skipping_zeros`]; a divisor that is a power of two is an exact scale).
fn outer_products_divided(
    dst: &mut [f32],
    a: &[f32],
    b: &[f32],
    shape: (usize, usize, usize),
    divisor: usize,
    scratch: &mut SparseScratch,
) {
    if divisor.is_power_of_two() {
        outer_products_skipping_zeros(dst, a, b, shape, 1.0 / divisor as f32, scratch);
    } else {
        matmul_divided(dst, a, Storage::Transposed, b, Storage::RowMajor, shape, divisor);
    }
}

/// Mean pre-reset membrane of each neuron of hidden layer `l` (the workspace sums over `samples` =
/// steps × batch).
fn mean_membrane_into(workspace: &Workspace, l: usize, samples: usize, out: &mut Vec<f32>) {
    let scale = 1.0 / samples as f32;
    out.clear();
    out.extend(workspace.membrane_sum(l).iter().map(|m| m * scale));
}

/// The error at each output of hidden layer `l`: Σ over batch and steps of ∂L/∂s, divided by T.
fn output_error_into(workspace: &Workspace, l: usize, steps: usize, out: &mut Vec<f32>) {
    let scale = 1.0 / steps as f32;
    out.clear();
    out.extend(workspace.error_sum(l).iter().map(|e| e * scale));
}
