//! The state a rule keeps per synapse and per bias, what each vocabulary variable is for a synapse or a
//! bias, and how a section's outputs are written back.
//!
//! A bias is a synapse from an input that is always 1: `pre = pre_trace = 1`, `hebb = post`,
//! `fan_in = 1`, and its own `w`, `w0`, `grad`, `age`, `m`, `u`, `sigma`.

use super::neurons::NeuronStats;
use super::signals::{Globals, Signals, TRACE_DECAY};
use crate::learner::stochastic::StochasticWeights;
use crate::learner::structure::Connectivity;
use crate::rule::program::{Input, RowBlocks};
use crate::rule::vocab::Var;
use crate::snn::{Dense, OuterProductRows};

/// A product computed by blocks of rows as the program reads it, or whole where it was computed whole.
pub fn by_rows(rows: &OuterProductRows) -> Input<'_> {
    rows.whole().map_or(Input::Blocks(rows), Input::PerSynapse)
}

impl RowBlocks for OuterProductRows {
    fn shape(&self) -> (usize, usize) {
        let (m, _, n) = OuterProductRows::shape(self);
        (m, n)
    }

    fn block_rows(&self) -> usize {
        OuterProductRows::BLOCK_ROWS
    }

    fn rows_into(&self, start: usize, out: &mut [f32], scratch: &mut Vec<f32>) {
        OuterProductRows::rows_into(self, start, out, scratch);
    }
}

/// What one weight matrix's synapses remember between updates.
#[derive(Clone, Debug)]
pub struct MatrixState {
    /// The weight when each synapse was (re)created.
    pub w0: Vec<f32>,
    /// The free slots.
    pub m: Vec<f32>,
    pub u: Vec<f32>,
    /// Updates since creation (counted only when a program reads `age`).
    pub age: Vec<f32>,
    /// Running averages of `pre` (per column) and `post` (per row).
    pub pre_trace: Vec<f32>,
    pub post_trace: Vec<f32>,
    /// Output buffers of the synapse program, one per output, reused.
    pub outputs: Vec<Vec<f32>>,
    /// Which synapses exist, when the structure schedule applies to this matrix.
    pub connectivity: Option<Connectivity>,
    /// The biases' state, when biases follow the rule.
    pub bias: Option<BiasState>,
}

/// What a layer's biases remember, when they follow the rule.
#[derive(Clone, Debug)]
pub struct BiasState {
    pub w0: Vec<f32>,
    pub m: Vec<f32>,
    pub u: Vec<f32>,
    pub age: Vec<f32>,
    /// Output buffers of the synapse program, one per output, reused.
    pub outputs: Vec<Vec<f32>>,
}

impl MatrixState {
    /// Fresh state for `weights` (`outputs × inputs`), with `program_outputs` output buffers.
    pub fn new(
        weights: &[f32],
        biases: Option<&[f32]>,
        inputs: usize,
        program_outputs: usize,
        connectivity: Option<Connectivity>,
    ) -> MatrixState {
        let n = weights.len();
        let outputs = n / inputs.max(1);
        MatrixState {
            w0: weights.to_vec(),
            m: vec![0.0; n],
            u: vec![0.0; n],
            age: vec![0.0; n],
            pre_trace: vec![0.0; inputs],
            post_trace: vec![0.0; outputs],
            outputs: vec![vec![0.0; n]; program_outputs],
            connectivity,
            bias: biases.map(|b| BiasState {
                w0: b.to_vec(),
                m: vec![0.0; outputs],
                u: vec![0.0; outputs],
                age: vec![0.0; outputs],
                outputs: vec![vec![0.0; outputs]; program_outputs],
            }),
        }
    }

    /// Folds this update's `pre` and `post` into their traces (each only when it was computed).
    pub fn update_traces(&mut self, signals: &Signals) {
        for (t, p) in self.pre_trace.iter_mut().zip(&signals.pre) {
            *t = TRACE_DECAY * *t + (1.0 - TRACE_DECAY) * p;
        }
        for (t, p) in self.post_trace.iter_mut().zip(&signals.post) {
            *t = TRACE_DECAY * *t + (1.0 - TRACE_DECAY) * p;
        }
    }

    /// Which synapses exist (`None`: all).
    pub fn present(&self) -> Option<&[bool]> {
        self.connectivity.as_ref().map(Connectivity::present)
    }
}

/// Everything a synapse variable of one weight matrix can be read from.
pub struct SynapseView<'a> {
    /// The weights, their gradient, σ and ∂L/∂σ (empty unless stochastic).
    pub weights: &'a [f32],
    pub grad: &'a [f32],
    /// The gradient where the backward pass left it unwritten (`Workspace::first_gradient_factors`):
    /// its two factors (one example, [`Input::Outer`]) or computed by blocks of rows; `grad` is then
    /// stale.
    pub grad_unwritten: Option<Input<'a>>,
    pub sigma: &'a [f32],
    pub grad_sigma: &'a [f32],
    pub state: &'a MatrixState,
    pub signals: &'a Signals,
    /// The postsynaptic neurons' thresholds (empty for the readout and ReLU units).
    pub thresholds: &'a [f32],
    /// The neuron statistics of the postsynaptic and of the presynaptic neurons, as the last neuron
    /// pass left them; `None` where those neurons are the readout or the inputs, or nothing reads them.
    pub post_stats: Option<NeuronStats<'a>>,
    pub pre_stats: Option<NeuronStats<'a>>,
    /// The postsynaptic layer's mean rate this update (0 for the readout).
    pub layer_rate: f32,
    pub globals: Globals,
    /// The matrix's shape and index.
    pub inputs: usize,
    pub outputs: usize,
    pub layer: usize,
}

impl SynapseView<'_> {
    /// The value of `var` for every synapse of the matrix.
    pub fn input(&self, var: Var) -> Input<'_> {
        let (state, signals) = (self.state, self.signals);
        match var {
            Var::W => Input::PerSynapse(self.weights),
            Var::W0 => Input::PerSynapse(&state.w0),
            Var::Grad => self.grad_unwritten.unwrap_or(Input::PerSynapse(self.grad)),
            Var::Hebb if signals.hebb_by_rows => by_rows(&signals.hebb_rows),
            Var::Hebb => Input::PerSynapse(&signals.hebb[..self.outputs * self.inputs]),
            Var::Elig if signals.elig_per_column => Input::PerColumn(&signals.elig_columns),
            Var::Elig if signals.elig_by_rows => by_rows(&signals.elig_rows),
            Var::Elig => Input::PerSynapse(&signals.elig[..self.outputs * self.inputs]),
            Var::Age => Input::PerSynapse(&state.age),
            Var::M => Input::PerSynapse(&state.m),
            Var::U => Input::PerSynapse(&state.u),
            Var::Sigma => Input::PerSynapse(self.sigma),
            Var::GradSigma => Input::PerSynapse(self.grad_sigma),
            Var::Pre => Input::PerColumn(&signals.pre),
            Var::PreTrace => Input::PerColumn(&state.pre_trace),
            Var::Post => Input::PerRow(&signals.post),
            Var::PostTrace => Input::PerRow(&state.post_trace),
            Var::Psi => Input::PerRow(&signals.psi),
            Var::V => Input::PerRow(&signals.v),
            Var::Err => Input::PerRow(&signals.err),
            // Each postsynaptic neuron's threshold; 0 for the readout and ReLU units.
            Var::Theta if !self.thresholds.is_empty() => Input::PerRow(self.thresholds),
            Var::Theta => Input::Scalar(0.0),
            Var::FanIn => Input::Scalar(self.inputs as f32),
            Var::FanOut => Input::Scalar(self.outputs as f32),
            Var::Layer => Input::Scalar(self.layer as f32),
            Var::LayerRate => Input::Scalar(self.layer_rate),
            Var::Lr | Var::Step | Var::NewTask | Var::Batch | Var::Loss | Var::LossTrace => {
                Input::Scalar(self.globals.scalar(var))
            }
            Var::RateTrace | Var::InW | Var::OutW | Var::ActDev | Var::Util | Var::H => {
                match self.post_stats.and_then(|s| s.get(var)) {
                    Some(values) => Input::PerRow(values),
                    None => Input::Scalar(0.0),
                }
            }
            Var::PreRateTrace | Var::PreInW | Var::PreOutW | Var::PreActDev | Var::PreUtil | Var::PreH => {
                match self.pre_stats.and_then(|s| s.get(var)) {
                    Some(values) => Input::PerColumn(values),
                    None => Input::Scalar(0.0),
                }
            }
            Var::Dw | Var::Score | Var::Rate => {
                unreachable!("'{var}' is not readable in synapse() or prune(); the compiler refuses it")
            }
        }
    }

    /// The value of `var` for every bias of the layer (a synapse from an always-on input).
    pub fn bias_input<'b>(&'b self, var: Var, bias: &'b BiasState, values: &'b BiasValues<'b>) -> Input<'b> {
        const ONE: &[f32] = &[1.0];
        match var {
            Var::W => Input::PerSynapse(values.biases),
            Var::W0 => Input::PerSynapse(&bias.w0),
            Var::Grad => Input::PerSynapse(values.grad),
            Var::Hebb => Input::PerSynapse(&self.signals.post),
            Var::Age => Input::PerSynapse(&bias.age),
            Var::M => Input::PerSynapse(&bias.m),
            Var::U => Input::PerSynapse(&bias.u),
            Var::Pre | Var::PreTrace => Input::PerColumn(ONE),
            Var::Elig if values.elig_per_column => Input::PerColumn(&self.signals.bias_elig),
            Var::Elig => Input::PerSynapse(&self.signals.bias_elig),
            Var::FanIn => Input::Scalar(1.0),
            Var::Sigma => Input::PerSynapse(values.sigma),
            Var::GradSigma => Input::PerSynapse(values.grad_sigma),
            // The always-on input is no neuron.
            Var::PreRateTrace | Var::PreInW | Var::PreOutW | Var::PreActDev | Var::PreUtil | Var::PreH => {
                Input::Scalar(0.0)
            }
            Var::Post
            | Var::PostTrace
            | Var::Psi
            | Var::V
            | Var::Err
            | Var::Theta
            | Var::FanOut
            | Var::Layer
            | Var::Lr
            | Var::Step
            | Var::NewTask
            | Var::Batch
            | Var::Loss
            | Var::LossTrace
            | Var::Dw
            | Var::Score
            | Var::Rate
            | Var::RateTrace
            | Var::InW
            | Var::OutW
            | Var::ActDev
            | Var::Util
            | Var::H
            | Var::LayerRate => self.input(var),
        }
    }
}

/// A layer's biases as a bias section reads them.
pub struct BiasValues<'a> {
    pub biases: &'a [f32],
    pub grad: &'a [f32],
    pub sigma: &'a [f32],
    pub grad_sigma: &'a [f32],
    /// Whether `bias_elig` is one value for every neuron (the readout).
    pub elig_per_column: bool,
}

impl Globals {
    /// The value of a per-update variable.
    pub fn scalar(&self, var: Var) -> f32 {
        match var {
            Var::Lr => self.lr,
            Var::Step => self.step,
            Var::NewTask => self.new_task,
            Var::Batch => self.batch,
            Var::Loss => self.loss,
            Var::LossTrace => self.loss_trace,
            Var::W
            | Var::W0
            | Var::Grad
            | Var::Hebb
            | Var::Elig
            | Var::Age
            | Var::M
            | Var::U
            | Var::Sigma
            | Var::GradSigma
            | Var::Pre
            | Var::PreTrace
            | Var::Post
            | Var::PostTrace
            | Var::Dw
            | Var::Rate
            | Var::RateTrace
            | Var::InW
            | Var::OutW
            | Var::ActDev
            | Var::Util
            | Var::H
            | Var::V
            | Var::Err
            | Var::Psi
            | Var::Theta
            | Var::Score
            | Var::FanIn
            | Var::FanOut
            | Var::Layer
            | Var::LayerRate
            | Var::PreRateTrace
            | Var::PreInW
            | Var::PreOutW
            | Var::PreActDev
            | Var::PreUtil
            | Var::PreH => unreachable!("'{var}' is not one value per update"),
        }
    }
}

/// Applies what the synapse program wrote for matrix `l`: the new weights (`w + dw`, see
/// [`crate::rule::CompiledRule::synapse_applied`]) on existing synapses, the slots `m` and `u`, and σ
/// (floored, through `stochastic`).
pub fn write_back(
    outputs: impl IntoIterator<Item = Var>,
    l: usize,
    state: &mut MatrixState,
    layer: &mut Dense,
    stochastic: Option<&mut StochasticWeights>,
) {
    let present = state.connectivity.as_ref().map(Connectivity::present);
    let slots = Slots {
        buffers: &mut state.outputs,
        m: &mut state.m,
        u: &mut state.u,
    };
    let store = |new: &mut Vec<f32>| match present {
        // The buffer becomes the weights, and the old weights the next update's buffer.
        None => layer.swap_weights(new),
        Some(present) => keep_present(layer.weights_mut(), new, present),
    };
    apply(outputs, slots, store, |sigma| {
        stochastic
            .expect("a rule that writes sigma is stochastic")
            .write_weights(l, sigma, present);
    });
}

crate::snn::neuron::simd_or_portable! {
    /// `weights[i] = new[i]` where `present[i]`, else unchanged. A bitwise blend of the new and the
    /// old weight, not a branch, so it vectorises: about half the synapses are present mid-schedule,
    /// and a branch on each is mispredicted at every other synapse. Every bit is the branch's.
    fn keep_present(weights: &mut [f32], new: &[f32], present: &[bool]) {
        for ((w, n), &present) in weights.iter_mut().zip(new).zip(present) {
            let keep = (present as u32).wrapping_neg();
            *w = f32::from_bits((n.to_bits() & keep) | (w.to_bits() & !keep));
        }
    }
}

/// Applies what the synapse program wrote for layer `l`'s biases (`b + db` in the `dw` buffer).
pub fn write_back_biases(
    outputs: impl IntoIterator<Item = Var>,
    l: usize,
    bias: &mut BiasState,
    biases: &mut [f32],
    stochastic: Option<&mut StochasticWeights>,
) {
    let slots = Slots {
        buffers: &mut bias.outputs,
        m: &mut bias.m,
        u: &mut bias.u,
    };
    apply(
        outputs,
        slots,
        |new| biases.copy_from_slice(new),
        |sigma| {
            stochastic
                .expect("a rule that writes sigma is stochastic")
                .write_biases(l, sigma);
        },
    );
}

/// The program's output buffers and the persistent slots they replace.
struct Slots<'a> {
    buffers: &'a mut [Vec<f32>],
    m: &'a mut Vec<f32>,
    u: &'a mut Vec<f32>,
}

/// Writes each output back: the `dw` buffer, which holds the new parameters, goes to `store`, `m` and
/// `u` swap with their buffers (the old slot becomes the next update's buffer), `sigma` goes to
/// `write_sigma`.
fn apply(
    outputs: impl IntoIterator<Item = Var>,
    slots: Slots,
    store: impl FnOnce(&mut Vec<f32>),
    write_sigma: impl FnOnce(&[f32]),
) {
    let mut store = Some(store);
    let mut write_sigma = Some(write_sigma);
    for (k, var) in outputs.into_iter().enumerate() {
        let buffer = &mut slots.buffers[k];
        match var {
            Var::Dw => {
                if let Some(store) = store.take() {
                    store(buffer);
                }
            }
            Var::M => std::mem::swap(slots.m, buffer),
            Var::U => std::mem::swap(slots.u, buffer),
            Var::Sigma => {
                if let Some(write) = write_sigma.take() {
                    write(buffer);
                }
            }
            Var::W
            | Var::W0
            | Var::Grad
            | Var::Hebb
            | Var::Elig
            | Var::Age
            | Var::GradSigma
            | Var::Pre
            | Var::PreTrace
            | Var::Post
            | Var::PostTrace
            | Var::Rate
            | Var::RateTrace
            | Var::InW
            | Var::OutW
            | Var::ActDev
            | Var::Util
            | Var::H
            | Var::V
            | Var::Err
            | Var::Psi
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
            | Var::LayerRate
            | Var::PreRateTrace
            | Var::PreInW
            | Var::PreOutW
            | Var::PreActDev
            | Var::PreUtil
            | Var::PreH => unreachable!("'{var}' is not writable in synapse(); the compiler refuses it"),
        }
    }
}

/// Task start under the structure schedule: synapses `regrown` of matrix `l` exist again, at `w = 0`
/// with fresh state (and σ₀).
pub fn regrow(
    l: usize,
    regrown: &[usize],
    state: &mut MatrixState,
    weights: &mut [f32],
    stochastic: Option<&mut StochasticWeights>,
) {
    for &i in regrown {
        weights[i] = 0.0;
        state.w0[i] = 0.0;
        state.age[i] = 0.0;
        state.m[i] = 0.0;
        state.u[i] = 0.0;
    }
    if let Some(st) = stochastic {
        st.restart(l, regrown.iter().copied());
    }
}

/// After hidden unit `unit` of layer `l` was replaced (the neuron pass): its incoming synapses are
/// new (`w0` is their fresh weight; absent ones stay at 0), its outgoing ones and its bias restart at
/// 0, and every synapse's state and the unit's traces restart. `matrices` holds layer `l` and the
/// next; `weights` are layer `l`'s.
pub fn restart_unit(
    l: usize,
    unit: usize,
    matrices: &mut [MatrixState],
    weights: &mut [f32],
    stochastic: Option<&mut StochasticWeights>,
) {
    let (incoming, next) = matrices.split_at_mut(l + 1);
    let state = &mut incoming[l];
    let inputs = state.pre_trace.len();
    let row = unit * inputs..(unit + 1) * inputs;
    let weights = &mut weights[row.clone()];
    if let Some(present) = state.present() {
        for (w, &present) in weights.iter_mut().zip(&present[row.clone()]) {
            if !present {
                *w = 0.0;
            }
        }
    }
    state.w0[row.clone()].copy_from_slice(weights);
    if let Some(st) = stochastic {
        st.restart(l, row.clone());
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
