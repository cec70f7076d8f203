//! Spiking networks: LIF hidden layers, a non-spiking leaky readout, forward over T steps and BPTT.
//!
//! Also the ANN mode (ReLU MLP, T = 1) through the same code path, so baselines can be checked against
//! published non-spiking results. This module does no IO and knows nothing about tasks or learners: it
//! maps a batch of inputs to logits and, on request, to gradients.
//!
//! ## Model
//! Hidden layer `l` at step `t`: `I = x_l[t]·Wᵀ + b`, then the neuron kernel of [`neuron`]. The readout
//! integrates `z[t] = s_L[t]·W_oᵀ + b_o` as `u[t] = β_o·u[t−1] + z[t]` and the logits are the mean
//! membrane `(1/T)·Σ_t u[t]`. Because the readout is linear, that mean equals `Σ_t c_t·z[t]` with
//! `c_t = (1/T)·(1 − β_o^(T−t)) / (1 − β_o)`, so the forward pass computes the weighted spike sum
//! `Σ_t c_t·s_L[t]` once and runs one GEMM instead of T, and the backward pass gets `∂L/∂z[t] = c_t·g`.
//!
//! With direct-current encoding the input is the same at every step, so the first layer's current is
//! computed once per batch and its weight gradient is `(Σ_t ∂I[t])ᵀ·x`.
//!
//! ## Layout
//! Weights are `outputs × inputs`, row-major (the PyTorch convention). Per-step buffers are
//! `[T][batch][width]`, contiguous, so "all steps" is one matrix of `T·batch` rows for the GEMMs.

mod matmul;
pub mod neuron;
mod sparse;

pub use matmul::{Storage, is_outer_product, matmul, matmul_divided, matmul_scaled};
pub use neuron::{Lif, Reset};
pub use sparse::{
    InputName, OuterProductRows, SparseScratch, matmul_skipping_zeros, outer_products_skipping_zeros,
};

use crate::rng::{Purpose, Rng};

/// The activation of hidden units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Neuron {
    /// Leaky integrate-and-fire (spiking mode).
    Lif(Lif),
    /// Rectified linear (ANN mode, T = 1).
    Relu,
}

/// How inputs enter the first layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// The pixel intensities are the input current at every step.
    Direct,
    /// At every step each input spikes with probability equal to its intensity.
    Bernoulli,
}

/// How weights and biases are drawn at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// Weights and biases uniform in ±1/√fan_in (PyTorch's `nn.Linear` default).
    FanIn,
    /// Kaiming-uniform weights (±√(6/fan_in) hidden, ±√(3/fan_in) readout) and zero biases, as Dohare
    /// et al. initialise their MLPs (Dohare et al. 2024, their code's `lop` nets).
    KaimingUniform,
}

/// The shape and dynamics of a network.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    /// Input width (pixels after pooling).
    pub inputs: usize,
    /// Hidden layer widths, input side first.
    pub hidden: Vec<usize>,
    /// Number of classes (readout width).
    pub classes: usize,
    /// Hidden activation.
    pub neuron: Neuron,
    /// Simulation steps per example (1 in ANN mode).
    pub time_steps: usize,
    /// Input encoding.
    pub encoding: Encoding,
    /// Readout membrane decay β_o in [0, 1].
    pub readout_beta: f32,
    /// Initialisation.
    pub init: Init,
}

/// A fully connected layer: `outputs × inputs` weights and `outputs` biases.
#[derive(Clone, Debug)]
pub struct Dense {
    weights: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl Dense {
    /// Fan-in.
    pub fn inputs(&self) -> usize {
        self.inputs
    }
    /// Width.
    pub fn outputs(&self) -> usize {
        self.outputs
    }
    /// Weights, `outputs × inputs` row-major.
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }
    /// Weights, mutable.
    pub fn weights_mut(&mut self) -> &mut [f32] {
        &mut self.weights
    }
    /// Replaces the weights with `new` (as many, same layout), leaving the old ones in `new`: a
    /// learner that computes the next weights into a buffer of its own takes them without a copy.
    pub fn swap_weights(&mut self, new: &mut Vec<f32>) {
        assert_eq!(new.len(), self.weights.len(), "a weight matrix keeps its shape");
        std::mem::swap(&mut self.weights, new);
    }
    /// Biases.
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }
    /// Biases, mutable.
    pub fn bias_mut(&mut self) -> &mut [f32] {
        &mut self.bias
    }
}

/// Gradients of the loss with respect to one layer's parameters (batch means).
#[derive(Clone, Debug)]
pub struct DenseGradient {
    /// ∂L/∂W, `outputs × inputs`.
    pub weights: Vec<f32>,
    /// ∂L/∂b.
    pub bias: Vec<f32>,
}

/// Gradients for every layer, hidden layers first, the readout last (the order of [`Network::layers`]).
#[derive(Clone, Debug)]
pub struct Gradients {
    /// One entry per layer.
    pub layers: Vec<DenseGradient>,
}

impl Gradients {
    /// Gradient slices in the order of [`Network::parameters`].
    pub fn slices(&self) -> impl Iterator<Item = &[f32]> {
        self.layers
            .iter()
            .flat_map(|d| [d.weights.as_slice(), d.bias.as_slice()])
    }

    /// [`Gradients::slices`], mutable.
    pub fn slices_mut(&mut self) -> impl Iterator<Item = &mut [f32]> {
        self.layers
            .iter_mut()
            .flat_map(|d| [d.weights.as_mut_slice(), d.bias.as_mut_slice()])
    }
}

/// The network: hidden layers and readout.
#[derive(Clone, Debug)]
pub struct Network {
    config: NetworkConfig,
    layers: Vec<Dense>,
    /// Each hidden LIF neuron's firing threshold, per hidden layer (the configured θ unless a rule
    /// adapts it; empty in ANN mode).
    thresholds: Vec<Vec<f32>>,
    /// `c_t` for each step (see the module doc).
    step_weights: Vec<f32>,
    /// `Σ_t c_t`: the readout bias's weight in the mean membrane.
    bias_weight: f32,
    /// Names the weights' current values: a number never used before, given at creation and by every
    /// method that lends the weights out mutably; a clone keeps it while it holds the same weights.
    /// So a cache of something computed from the weights, keyed by it, is never stale.
    version: u64,
}

/// A [`Network::version`] never handed out before.
fn fresh_version() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// What a forward pass keeps for the backward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Keep surrogate derivatives for BPTT.
    Train,
    /// Logits and activity only.
    Eval,
    /// Logits only: the last hidden layer's spikes go straight into the readout's sum as they are
    /// produced and are not kept (that layer's [`Workspace::spikes`] is stale afterwards). The same
    /// logits as [`Pass::Eval`], bit for bit, without writing and rereading T steps of spikes.
    Predict,
}

/// Per-layer buffers of a forward/backward pass.
#[derive(Clone, Debug, Default)]
struct LayerBuffers {
    /// Input currents: `batch × width` (constant input) or `T × batch × width`.
    current: Vec<f32>,
    /// Membrane, `batch × width`.
    membrane: Vec<f32>,
    /// Output spikes (or ReLU activations), `T × batch × width`.
    spikes: Vec<f32>,
    /// Surrogate derivative, `T × batch × width` (training only).
    psi: Vec<f32>,
    /// ∂L/∂output, then (in place) ∂L/∂I, `T × batch × width`.
    grad: Vec<f32>,
    /// `Σ_t ∂L/∂I[t]`, `batch × width` (first layer with constant input).
    grad_sum: Vec<f32>,
    /// Σ over batch and steps of the pre-reset membrane, per unit (when recorded).
    membrane_sum: Vec<f32>,
    /// Σ over batch and steps of ∂L/∂s, per unit (when recorded).
    error_sum: Vec<f32>,
    /// Σ over steps of the spikes, `batch × width`, summed as each step's come out (when recorded).
    spike_sum: Vec<f32>,
    /// The pass whose spikes `spike_sum` holds, if any.
    spike_sum_pass: Option<u64>,
    /// `Σ_t c_t·ψ[t]`, `batch × width`, with the step weights of `Workspace::surrogate_weights`,
    /// summed as each step's surrogate comes out (first layer, training passes, when recorded).
    weighted_surrogate: Vec<f32>,
    /// The pass whose surrogate `weighted_surrogate` holds, if any.
    weighted_surrogate_pass: Option<u64>,
    /// Scratch of the input product `x·Wᵀ` (packed weights, kept while the weights are unchanged).
    sparse: SparseScratch,
}

/// Reusable buffers for passes through one network; grows to the largest batch it has seen and never
/// allocates in the time-step loop.
#[derive(Clone, Debug, Default)]
pub struct Workspace {
    batch: usize,
    /// Whether passes accumulate [`Workspace::membrane_sum`] and [`Workspace::error_sum`] (rules that
    /// read `v` or `err` ask for it; nothing else pays for it).
    record_membrane: bool,
    record_error: bool,
    /// Whether passes sum each hidden layer's spikes over the steps as they come out (for
    /// [`Workspace::activity_into`]).
    record_rates: bool,
    /// The step weights `c_t` with which training passes sum the first layer's surrogate
    /// ([`Workspace::record_weighted_surrogate`]), if any.
    surrogate_weights: Option<Vec<f32>>,
    /// Layers whose weight gradient backward passes leave out (a rule that reads `err` but not `grad`
    /// needs the backward pass's errors, not the weight products: the first layer's is the largest
    /// product of an update). Empty: every layer's is computed.
    skip_weight_gradients: Vec<bool>,
    /// Whether backward passes may leave the first layer's weight gradient of a constant input as
    /// its two factors, `Σ_t ∂I[t]` per example and unit and the input.
    factor_first_gradient: bool,
    /// Whether the last backward pass did ([`Workspace::first_gradient_factors`]).
    first_gradient_factored: bool,
    input_sequence: Vec<f32>,
    zeros: Vec<f32>,
    /// One row's previous-step spikes, scratch of a `Pass::Predict` layer.
    row_spikes: Vec<f32>,
    layers: Vec<LayerBuffers>,
    weighted_spikes: Vec<f32>,
    /// Scratch of the readout's product (its packed weights).
    readout_sparse: SparseScratch,
    /// Scratch of the hidden layers' weight gradients (`outer_products_skipping_zeros`), apart from
    /// the forward products' so their packed weights stay valid.
    gradient_sparse: SparseScratch,
    logits: Vec<f32>,
    grad_logits: Vec<f32>,
    /// A number no other forward pass (of any workspace) has had: the last one's, so what is derived
    /// from a pass can be cached against it.
    pass_id: u64,
    /// The name the caller gave the input of the coming passes ([`Workspace::name_input`]).
    input_name: Option<InputName>,
}

impl Workspace {
    /// The last forward pass's number, unique in the process ([`Workspace::activity_into`] and other
    /// derived quantities change exactly when it does).
    pub fn pass_id(&self) -> u64 {
        self.pass_id
    }

    /// Names the input of the coming passes (`None`: unnamed). Passes whose inputs have the same name
    /// must have the same input: the first layer's product then finds its nonzero entries once, at
    /// the first pass, and keeps them ([`matmul_skipping_zeros`]). A test chunk is tested after
    /// each of some twenty tasks, and a stochastic learner predicts it once per weight sample.
    pub fn name_input(&mut self, name: Option<InputName>) {
        self.input_name = name;
    }

    /// Makes later passes record per-unit membrane sums (`membrane`) and error sums (`error`).
    pub fn record(&mut self, membrane: bool, error: bool) {
        self.record_membrane = membrane;
        self.record_error = error;
    }

    /// Makes later passes sum each hidden layer's spikes over the steps as each step's come out, while
    /// they are in cache, for [`Workspace::activity_into`]: summed afterwards, the `T × batch × width`
    /// spikes are read back from memory (6 µs of a 196-256-10 batch of 32 after its backward pass).
    pub fn record_rates(&mut self, record: bool) {
        self.record_rates = record;
    }

    /// Makes later training passes sum the first hidden layer's surrogate over the steps with these
    /// weights, `Σ_t c_t·ψ[t]` (one per step), as each step's comes out (the rule learner's `elig`
    /// of a first layer with constant input), instead of its reader reading `T × batch × width`
    /// values back from memory: [`Workspace::weighted_surrogate`].
    pub fn record_weighted_surrogate(&mut self, weights: Option<Vec<f32>>) {
        self.surrogate_weights = weights;
    }

    /// The first hidden layer's `Σ_t c_t·ψ[t]` (`batch × width`) of the last pass, summed from 0 in
    /// step order as `neuron::weighted_sum_over_steps` sums it, when that pass recorded it with
    /// exactly `weights`.
    pub fn weighted_surrogate(&self, weights: &[f32]) -> Option<&[f32]> {
        let buffers = self.layers.first()?;
        let recorded = buffers.weighted_surrogate_pass == Some(self.pass_id)
            && self.surrogate_weights.as_deref() == Some(weights);
        recorded.then_some(&buffers.weighted_surrogate[..])
    }

    /// Makes later backward passes leave out the weight gradient of every layer `l` with
    /// `skip[l]` (they keep what they held); biases' gradients and the errors are still computed.
    pub fn skip_weight_gradients(&mut self, skip: Vec<bool>) {
        self.skip_weight_gradients = skip;
    }

    /// Lets later backward passes leave the first layer's weight gradient of a constant input as its
    /// factors, `∂W = (Σ_t ∂I[t])ᵀ·x` over the batch: a reader that computes it where it reads (one
    /// example: multiplied in registers; a batch: by blocks of rows, `OuterProductRows`) saves writing
    /// and reading back a matrix as large as the weights. The gradient's buffer then keeps what it
    /// held.
    pub fn factor_first_gradient(&mut self, factor: bool) {
        self.factor_first_gradient = factor;
    }

    /// The first layer's `Σ_t ∂I[t]`, `batch × width`, when the last backward pass left its weight
    /// gradient as factors ([`Workspace::factor_first_gradient`]); the other factor is the input, and
    /// the gradient is `outer_products_skipping_zeros(Σ_t ∂I[t], input, (width, batch, inputs), 1)`.
    pub fn first_gradient_factors(&self) -> Option<&[f32]> {
        let layer = self.layers.first()?;
        self.first_gradient_factored.then_some(&layer.grad_sum[..])
    }

    /// Whether backward passes compute layer `l`'s weight gradient.
    fn weight_gradient(&self, l: usize) -> bool {
        !self.skip_weight_gradients.get(l).copied().unwrap_or(false)
    }

    /// Whether passes record (the membrane sums, the error sums), as [`Workspace::record`] set.
    pub fn recording(&self) -> (bool, bool) {
        (self.record_membrane, self.record_error)
    }

    /// Σ over batch and steps of hidden layer `layer`'s pre-reset membrane (ReLU: its input current),
    /// per unit, from the last forward pass with membrane recording on.
    pub fn membrane_sum(&self, layer: usize) -> &[f32] {
        &self.layers[layer].membrane_sum
    }

    /// Σ over batch and steps of ∂L/∂s of hidden layer `layer`'s outputs, per unit, from the last
    /// backward pass with error recording on.
    pub fn error_sum(&self, layer: usize) -> &[f32] {
        &self.layers[layer].error_sum
    }

    /// Logits of the last forward pass, `batch × classes`.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Mean activity of hidden layer `layer` over the steps of the last pass, `batch × width`: the
    /// firing rate in spiking mode, the activation in ANN mode.
    pub fn activity(&self, layer: usize, width: usize) -> Vec<f32> {
        let mut out = Vec::new();
        self.activity_into(layer, width, &mut out);
        out
    }

    /// Per-step outputs of hidden layer `layer` in the last pass: spikes (or ReLU activations),
    /// `T × batch × width`.
    pub fn spikes(&self, layer: usize) -> &[f32] {
        &self.layers[layer].spikes
    }

    /// Surrogate derivatives of hidden layer `layer` in the last training pass, `T × batch × width`
    /// (empty after an eval pass).
    pub fn surrogate(&self, layer: usize) -> &[f32] {
        &self.layers[layer].psi
    }

    /// The per-step input of the first layer in the last pass with Bernoulli encoding
    /// (`T × batch × inputs`); empty with direct encoding, whose input is the batch itself at every step.
    pub fn input_sequence(&self) -> &[f32] {
        &self.input_sequence
    }

    /// [`Workspace::activity`] into a reused buffer.
    pub fn activity_into(&self, layer: usize, width: usize, out: &mut Vec<f32>) {
        let per_step = self.batch * width;
        let buffers = &self.layers[layer];
        let spikes = &buffers.spikes[..];
        let steps = spikes.len() / per_step.max(1);
        let scale = 1.0 / steps.max(1) as f32;
        out.clear();
        if buffers.spike_sum_pass == Some(self.pass_id) && buffers.spike_sum.len() == per_step {
            // The same sum (from 0, in step order) and the same scaling as mean_over_steps.
            out.extend(buffers.spike_sum.iter().map(|sum| sum * scale));
            return;
        }
        out.resize(per_step, 0.0);
        neuron::mean_over_steps(&spikes[..steps * per_step], scale, out);
    }

    /// Non-zero inputs reaching each hidden layer and the readout over the last pass, per input unit,
    /// summed over steps and the batch; index `hidden.len()` is the readout. Used for synaptic-operation
    /// counts (an event at input j costs one operation per existing synapse of column j).
    pub fn input_events(&self, network: &Network, input: &[f32]) -> Vec<Vec<f64>> {
        let t_steps = network.config.time_steps;
        let per_unit = |values: &[f32], width: usize| {
            let mut counts = vec![0.0f64; width];
            for row in values.chunks_exact(width) {
                for (c, &v) in counts.iter_mut().zip(row) {
                    *c += (v != 0.0) as u8 as f64;
                }
            }
            counts
        };
        let inputs = network.config.inputs;
        let mut out = Vec::with_capacity(network.layers.len());
        out.push(match network.config.encoding {
            // The analog input is re-injected at every step, as neuromorphic hardware would.
            Encoding::Direct => {
                let mut counts = per_unit(&input[..self.batch * inputs], inputs);
                counts.iter_mut().for_each(|c| *c *= t_steps as f64);
                counts
            }
            Encoding::Bernoulli => per_unit(&self.input_sequence, inputs),
        });
        for (buffers, &width) in self.layers.iter().zip(&network.config.hidden) {
            out.push(per_unit(&buffers.spikes, width));
        }
        out
    }
}

/// Half-widths of the uniform initial distributions (weights, biases) of layer `l` (readout last).
fn init_bounds(config: &NetworkConfig, l: usize) -> (f32, f32) {
    let fan_in = if l == 0 {
        config.inputs
    } else {
        config.hidden[l - 1]
    } as f32;
    let is_readout = l == config.hidden.len();
    match config.init {
        Init::FanIn => (1.0 / fan_in.sqrt(), 1.0 / fan_in.sqrt()),
        Init::KaimingUniform if is_readout => ((3.0 / fan_in).sqrt(), 0.0),
        Init::KaimingUniform => ((6.0 / fan_in).sqrt(), 0.0),
    }
}

impl NetworkConfig {
    /// A small ReLU network (ANN mode, one hidden layer, fan-in init) for unit tests.
    #[cfg(test)]
    pub(crate) fn test_ann(inputs: usize, hidden: usize, classes: usize) -> NetworkConfig {
        NetworkConfig {
            inputs,
            hidden: vec![hidden],
            classes,
            neuron: Neuron::Relu,
            time_steps: 1,
            encoding: Encoding::Direct,
            readout_beta: 0.0,
            init: Init::FanIn,
        }
    }

    /// A small spiking network (LIF θ = 1, β = 0.9, T = 4, direct input, fan-in init) for unit tests.
    #[cfg(test)]
    pub(crate) fn test_lif(inputs: usize, hidden: Vec<usize>, classes: usize) -> NetworkConfig {
        NetworkConfig {
            inputs,
            hidden,
            classes,
            neuron: Neuron::Lif(Lif {
                beta: 0.9,
                threshold: 1.0,
                slope: 25.0,
                reset: Reset::SameStep,
            }),
            time_steps: 4,
            encoding: Encoding::Direct,
            readout_beta: 0.9,
            init: Init::FanIn,
        }
    }
}

impl Network {
    /// A freshly initialised network; the weights depend only on `seed`.
    pub fn new(config: NetworkConfig, seed: u64) -> Network {
        let mut widths = vec![config.inputs];
        widths.extend(&config.hidden);
        widths.push(config.classes);
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(l, pair)| {
                let (inputs, outputs) = (pair[0], pair[1]);
                let mut rng = Rng::stream(seed, Purpose::Init, &[l as u64]);
                let (w_bound, b_bound) = init_bounds(&config, l);
                Dense {
                    weights: (0..inputs * outputs).map(|_| rng.symmetric(w_bound)).collect(),
                    bias: (0..outputs).map(|_| rng.symmetric(b_bound)).collect(),
                    inputs,
                    outputs,
                }
            })
            .collect();
        let t = config.time_steps as f32;
        let b = config.readout_beta;
        let step_weights: Vec<f32> = (0..config.time_steps)
            .map(|step| {
                // Σ_{j=0}^{T−1−t} β^j, written as a sum so β = 1 needs no special case.
                let terms = config.time_steps - step;
                (0..terms).map(|j| b.powi(j as i32)).sum::<f32>() / t
            })
            .collect();
        let bias_weight = step_weights.iter().sum();
        let thresholds = match config.neuron {
            Neuron::Lif(lif) => config.hidden.iter().map(|&n| vec![lif.threshold; n]).collect(),
            Neuron::Relu => vec![Vec::new(); config.hidden.len()],
        };
        Network {
            config,
            layers,
            thresholds,
            step_weights,
            bias_weight,
            version: fresh_version(),
        }
    }

    /// The firing thresholds of hidden layer `layer` (empty in ANN mode).
    pub fn thresholds(&self, layer: usize) -> &[f32] {
        &self.thresholds[layer]
    }

    /// [`Network::thresholds`], mutable: adaptive thresholds.
    pub fn thresholds_mut(&mut self, layer: usize) -> &mut [f32] {
        &mut self.thresholds[layer]
    }

    /// Redraws the incoming weights of `unit` in hidden layer `layer` from the initial distribution and
    /// sets its bias to 0 and its threshold back to the configured θ (how continual backprop and ReDo
    /// recycle a unit).
    pub fn redraw_incoming(&mut self, layer: usize, unit: usize, rng: &mut Rng) {
        self.version = fresh_version();
        let (bound, _) = init_bounds(&self.config, layer);
        let dense = &mut self.layers[layer];
        let row = &mut dense.weights[unit * dense.inputs..(unit + 1) * dense.inputs];
        row.iter_mut().for_each(|w| *w = rng.symmetric(bound));
        dense.bias[unit] = 0.0;
        if let Neuron::Lif(lif) = self.config.neuron {
            self.thresholds[layer][unit] = lif.threshold;
        }
    }

    /// Half-width of the uniform distribution layer `layer`'s weights were drawn from (readout last).
    pub fn init_weight_bound(&self, layer: usize) -> f32 {
        init_bounds(&self.config, layer).0
    }

    /// Sets every outgoing weight of `unit` in hidden layer `layer` to 0, so the unit no longer affects
    /// the network's output.
    pub fn zero_outgoing(&mut self, layer: usize, unit: usize) {
        self.version = fresh_version();
        let next = &mut self.layers[layer + 1];
        let inputs = next.inputs;
        next.weights
            .iter_mut()
            .skip(unit)
            .step_by(inputs)
            .for_each(|w| *w = 0.0);
    }

    /// The configuration the network was built from.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Every layer, hidden first, readout last.
    pub fn layers(&self) -> &[Dense] {
        &self.layers
    }

    /// Every layer, mutable.
    pub fn layers_mut(&mut self) -> &mut [Dense] {
        self.version = fresh_version();
        &mut self.layers
    }

    /// Zeroed gradients shaped like this network.
    pub fn zero_gradients(&self) -> Gradients {
        Gradients {
            layers: self
                .layers
                .iter()
                .map(|d| DenseGradient {
                    weights: vec![0.0; d.weights.len()],
                    bias: vec![0.0; d.bias.len()],
                })
                .collect(),
        }
    }

    /// Every parameter slice in a fixed order: weights then bias of each layer, hidden layers first.
    /// Per-parameter state of learners (anchors, Fisher, Ω, σ) is laid out flat in this order.
    pub fn parameters(&self) -> impl Iterator<Item = &[f32]> {
        self.layers
            .iter()
            .flat_map(|d| [d.weights.as_slice(), d.bias.as_slice()])
    }

    /// [`Network::parameters`], mutable.
    pub fn parameters_mut(&mut self) -> impl Iterator<Item = &mut [f32]> {
        self.version = fresh_version();
        self.layers
            .iter_mut()
            .flat_map(|d| [d.weights.as_mut_slice(), d.bias.as_mut_slice()])
    }

    /// Total parameters (weights and biases).
    pub fn parameter_count(&self) -> usize {
        self.parameters().map(<[f32]>::len).sum()
    }

    /// Total weights (biases excluded).
    pub fn weight_count(&self) -> usize {
        self.layers.iter().map(|d| d.weights.len()).sum()
    }

    fn prepare(&self, ws: &mut Workspace, batch: usize, pass: Pass) {
        let t = self.config.time_steps;
        let hidden = &self.config.hidden;
        ws.batch = batch;
        ws.layers.resize_with(hidden.len(), LayerBuffers::default);
        let widest = hidden.iter().copied().max().unwrap_or(0);
        ws.zeros.resize(batch * widest, 0.0);
        ws.row_spikes.resize(widest, 0.0);
        if self.config.encoding == Encoding::Bernoulli {
            ws.input_sequence.resize(t * batch * self.config.inputs, 0.0);
        }
        let constant_first = self.config.encoding == Encoding::Direct;
        for (l, (buffers, &width)) in ws.layers.iter_mut().zip(hidden).enumerate() {
            let per_step = batch * width;
            let current_len = if l == 0 && constant_first {
                per_step
            } else {
                t * per_step
            };
            buffers.current.resize(current_len, 0.0);
            if ws.record_membrane {
                buffers.membrane_sum.clear();
                buffers.membrane_sum.resize(width, 0.0);
            }
            if ws.record_error {
                buffers.error_sum.clear();
                buffers.error_sum.resize(width, 0.0);
            }
            buffers.spike_sum_pass = None;
            if ws.record_rates {
                buffers.spike_sum.clear();
                buffers.spike_sum.resize(per_step, 0.0);
            }
            buffers.weighted_surrogate_pass = None;
            if l == 0 && pass == Pass::Train && ws.surrogate_weights.is_some() {
                buffers.weighted_surrogate.clear();
                buffers.weighted_surrogate.resize(per_step, 0.0);
            }
            buffers.membrane.resize(per_step, 0.0);
            buffers.spikes.resize(t * per_step, 0.0);
            if pass == Pass::Train {
                buffers.psi.resize(t * per_step, 0.0);
                buffers.grad.resize(t * per_step, 0.0);
                if l == 0 && constant_first {
                    buffers.grad_sum.resize(per_step, 0.0);
                }
            }
        }
        let last = hidden.last().copied().unwrap_or(self.config.inputs);
        ws.weighted_spikes.resize(batch * last, 0.0);
        ws.logits.resize(batch * self.config.classes, 0.0);
        ws.grad_logits.resize(batch * self.config.classes, 0.0);
    }

    /// Runs `batch` examples (`input` is `batch × inputs`) through all steps; the logits land in
    /// `ws.logits()`. `rng` drives Bernoulli encoding and is untouched otherwise.
    pub fn forward(&self, input: &[f32], batch: usize, ws: &mut Workspace, pass: Pass, rng: &mut Rng) {
        self.prepare(ws, batch, pass);
        ws.pass_id = fresh_version();
        let t_steps = self.config.time_steps;
        let n_in = self.config.inputs;
        let constant_first = self.config.encoding == Encoding::Direct;
        if !constant_first {
            for step in ws.input_sequence.chunks_exact_mut(batch * n_in) {
                for (s, &p) in step.iter_mut().zip(&input[..batch * n_in]) {
                    *s = if rng.uniform() < p { 1.0 } else { 0.0 };
                }
            }
        }
        let hidden_count = self.config.hidden.len();
        // Whether the last hidden layer's spikes were summed for the readout as they came.
        let mut summed = false;
        for l in 0..hidden_count {
            let layer = &self.layers[l];
            let width = layer.outputs;
            let per_step = batch * width;
            let (before, rest) = ws.layers.split_at_mut(l);
            let buffers = &mut rest[0];
            let (source, rows, name): (&[f32], usize, _) = match l {
                0 if constant_first => (input, batch, ws.input_name),
                0 => (&ws.input_sequence, t_steps * batch, None),
                _ => (&before[l - 1].spikes, t_steps * batch, None),
            };
            // I = b + x·Wᵀ, for one step (constant input) or for all steps at once. x is spikes or
            // pixels, mostly zeros: the product skips them where that is faster, with the same bits.
            for row in buffers.current.chunks_exact_mut(width) {
                row.copy_from_slice(&layer.bias);
            }
            matmul_skipping_zeros(
                &mut buffers.current,
                (source, name),
                (&layer.weights, self.version),
                (rows, layer.inputs, width),
                &mut buffers.sparse,
            );
            let per_step_current = buffers.current.len() > per_step;
            if let (Pass::Predict, Neuron::Lif(lif), true, false) = (
                pass,
                self.config.neuron,
                l + 1 == hidden_count,
                ws.record_membrane,
            ) {
                // Neither the membranes nor the sums need zeroing: `summed` starts both at 0.
                let steps = if per_step_current { t_steps } else { 1 };
                lif.summed(
                    &mut buffers.membrane,
                    &buffers.current[..steps * per_step],
                    (t_steps, per_step_current),
                    &self.step_weights,
                    &self.thresholds[l],
                    &mut ws.weighted_spikes,
                    &mut ws.row_spikes[..width],
                );
                summed = true;
                continue;
            }
            buffers.membrane.fill(0.0);
            for t in 0..t_steps {
                let current = if per_step_current {
                    &buffers.current[t * per_step..(t + 1) * per_step]
                } else {
                    &buffers.current[..per_step]
                };
                let (earlier, now) = buffers.spikes.split_at_mut(t * per_step);
                let prev = if t == 0 {
                    &ws.zeros[..per_step]
                } else {
                    &earlier[(t - 1) * per_step..]
                };
                let spikes = &mut now[..per_step];
                let psi = match pass {
                    Pass::Train => Some(&mut buffers.psi[t * per_step..(t + 1) * per_step]),
                    Pass::Eval | Pass::Predict => None,
                };
                let theta = &self.thresholds[l];
                match self.config.neuron {
                    Neuron::Lif(lif) => lif.step(&mut buffers.membrane, current, prev, spikes, psi, theta),
                    Neuron::Relu => neuron::relu(current, spikes, psi),
                }
                if ws.record_rates {
                    neuron::add_rows(&mut buffers.spike_sum, spikes);
                }
                let weight = ws.surrogate_weights.as_ref().and_then(|w| w.get(t));
                if let (0, Pass::Train, Some(&c)) = (l, pass, weight) {
                    let psi = &buffers.psi[t * per_step..(t + 1) * per_step];
                    neuron::accumulate_scaled(&mut buffers.weighted_surrogate, psi, c);
                }
                if ws.record_membrane {
                    // The pre-reset membrane: after a same-step reset, v + s·θ; ReLU: the input current.
                    let sum = &mut buffers.membrane_sum;
                    match self.config.neuron {
                        Neuron::Lif(lif) if lif.reset == Reset::SameStep => {
                            for (row, srow) in buffers
                                .membrane
                                .chunks_exact(width)
                                .zip(spikes.chunks_exact(width))
                            {
                                for (((m, v), sp), th) in sum.iter_mut().zip(row).zip(srow).zip(theta) {
                                    *m += v + sp * th;
                                }
                            }
                        }
                        Neuron::Lif(_) => {
                            for row in buffers.membrane.chunks_exact(width) {
                                for (m, v) in sum.iter_mut().zip(row) {
                                    *m += v;
                                }
                            }
                        }
                        Neuron::Relu => {
                            for row in current.chunks_exact(width) {
                                for (m, v) in sum.iter_mut().zip(row) {
                                    *m += v;
                                }
                            }
                        }
                    }
                }
            }
            if ws.record_rates {
                buffers.spike_sum_pass = Some(ws.pass_id);
            }
            let weights = ws.surrogate_weights.as_ref();
            if l == 0 && pass == Pass::Train && weights.is_some_and(|w| w.len() == t_steps) {
                buffers.weighted_surrogate_pass = Some(ws.pass_id);
            }
        }
        // Readout: logits = (Σ_t c_t·s_L[t])·W_oᵀ + (Σ_t c_t)·b_o.
        let readout = &self.layers[hidden_count];
        let last_width = readout.inputs;
        let per_step = batch * last_width;
        let last_spikes: &[f32] = match hidden_count {
            0 => &input[..per_step],
            _ => &ws.layers[hidden_count - 1].spikes,
        };
        if !summed {
            ws.weighted_spikes.fill(0.0);
            for (t, &c) in self.step_weights.iter().enumerate() {
                let src = if hidden_count == 0 {
                    last_spikes
                } else {
                    &last_spikes[t * per_step..(t + 1) * per_step]
                };
                neuron::accumulate_scaled(&mut ws.weighted_spikes, src, c);
            }
        }
        for row in ws.logits.chunks_exact_mut(readout.outputs) {
            for (o, &b) in row.iter_mut().zip(&readout.bias) {
                *o = b * self.bias_weight;
            }
        }
        // Spike sums are mostly zeros too (silent units): on a test chunk the product skips them.
        matmul_skipping_zeros(
            &mut ws.logits,
            (&ws.weighted_spikes, None),
            (&readout.weights, self.version),
            (batch, last_width, readout.outputs),
            &mut ws.readout_sparse,
        );
    }

    /// Backpropagates the mean cross-entropy of the last [`Pass::Train`] forward pass into `grads`.
    /// Returns the mean loss and the number of correct predictions (argmax of the logits), both of the
    /// forward pass *before* any update: the online (prequential) accuracy.
    pub fn backward(
        &self,
        input: &[f32],
        labels: &[u8],
        ws: &mut Workspace,
        grads: &mut Gradients,
    ) -> (f32, usize) {
        let batch = ws.batch;
        let classes = self.config.classes;
        ws.first_gradient_factored = false;
        let (loss, correct) = softmax_cross_entropy(&ws.logits, labels, classes, &mut ws.grad_logits);
        let hidden_count = self.config.hidden.len();
        let readout = &self.layers[hidden_count];
        // Readout: ∂W_o = gᵀ·(Σ_t c_t s_L[t]), ∂b_o = (Σ_t c_t)·Σ_batch g.
        let gr = &mut grads.layers[hidden_count];
        if ws.weight_gradient(hidden_count) {
            matmul(
                &mut gr.weights,
                &ws.grad_logits,
                Storage::Transposed,
                &ws.weighted_spikes,
                Storage::RowMajor,
                (classes, batch, readout.inputs),
                false,
            );
        }
        gr.bias.fill(0.0);
        for row in ws.grad_logits.chunks_exact(classes) {
            for (b, &g) in gr.bias.iter_mut().zip(row) {
                *b += g * self.bias_weight;
            }
        }
        if hidden_count == 0 {
            return (loss, correct);
        }
        let t_steps = self.config.time_steps;
        // ∂L/∂s_L[t] = c_t·(g·W_o): compute g·W_o once into step 0, scale into the other steps
        // (unless the error is recorded, as the BPTT below reads them: `spread_backward_through_time`).
        let spread_in_bptt = !ws.record_error;
        {
            let last = &mut ws.layers[hidden_count - 1];
            let per_step = batch * readout.inputs;
            let (first, rest) = last.grad.split_at_mut(per_step);
            matmul(
                first,
                &ws.grad_logits,
                Storage::RowMajor,
                &readout.weights,
                Storage::RowMajor,
                (batch, classes, readout.inputs),
                false,
            );
            if !spread_in_bptt {
                for (t, chunk) in rest.chunks_exact_mut(per_step).enumerate() {
                    neuron::scaled_copy(chunk, first, self.step_weights[t + 1]);
                }
                neuron::scale(first, self.step_weights[0]);
            }
        }
        let beta = match self.config.neuron {
            Neuron::Lif(lif) => lif.beta,
            Neuron::Relu => 0.0,
        };
        let constant_first = self.config.encoding == Encoding::Direct;
        for l in (0..hidden_count).rev() {
            let layer = &self.layers[l];
            let width = layer.outputs;
            let per_step = batch * width;
            let weight_gradient = ws.weight_gradient(l);
            let (before, rest) = ws.layers.split_at_mut(l);
            let buffers = &mut rest[0];
            if ws.record_error {
                for row in buffers.grad.chunks_exact(width) {
                    for (e, g) in buffers.error_sum.iter_mut().zip(row) {
                        *e += g;
                    }
                }
            }
            if spread_in_bptt && l + 1 == hidden_count {
                let weights = &self.step_weights;
                neuron::spread_backward_through_time(
                    &mut buffers.grad,
                    weights,
                    &buffers.psi,
                    per_step,
                    beta,
                );
            } else {
                neuron::backward_through_time(&mut buffers.grad, &buffers.psi, per_step, beta);
            }
            let g = &mut grads.layers[l];
            g.bias.fill(0.0);
            neuron::add_rows(&mut g.bias, &buffers.grad);
            if weight_gradient && l == 0 && constant_first {
                // x is the same at every step: ∂W = (Σ_t ∂I[t])ᵀ·x.
                buffers.grad_sum.copy_from_slice(&buffers.grad[..per_step]);
                neuron::add_rows(&mut buffers.grad_sum, &buffers.grad[per_step..]);
                let shape = (width, batch, layer.inputs);
                if ws.factor_first_gradient {
                    ws.first_gradient_factored = true;
                } else {
                    // From the input's nonzero entries where that is faster (a quarter of pooled
                    // MNIST's pixels), with gemm's bits (`src/snn/sparse.rs`).
                    outer_products_skipping_zeros(
                        &mut g.weights,
                        &buffers.grad_sum,
                        input,
                        shape,
                        1.0,
                        &mut ws.gradient_sparse,
                    );
                }
            } else if weight_gradient {
                let source: &[f32] = if l == 0 {
                    &ws.input_sequence
                } else {
                    &before[l - 1].spikes
                };
                // Spikes are mostly zeros: from their nonzero entries where that is faster.
                outer_products_skipping_zeros(
                    &mut g.weights,
                    &buffers.grad,
                    source,
                    (width, t_steps * batch, layer.inputs),
                    1.0,
                    &mut ws.gradient_sparse,
                );
            }
            if l > 0 {
                // ∂L/∂s_{l−1}[t] = ∂I_l[t]·W_l for all steps at once.
                matmul(
                    &mut before[l - 1].grad,
                    &buffers.grad,
                    Storage::RowMajor,
                    &layer.weights,
                    Storage::RowMajor,
                    (t_steps * batch, width, layer.inputs),
                    false,
                );
            }
        }
        (loss, correct)
    }
}

/// Mean softmax cross-entropy over the batch. Writes `∂L/∂logits = (softmax − onehot)/batch` into
/// `grad` and returns (mean loss, correct predictions).
pub fn softmax_cross_entropy(
    logits: &[f32],
    labels: &[u8],
    classes: usize,
    grad: &mut [f32],
) -> (f32, usize) {
    let batch = labels.len();
    let scale = 1.0 / batch as f32;
    let mut loss = 0.0f64;
    let mut correct = 0;
    for ((row, g), &y) in logits
        .chunks_exact(classes)
        .zip(grad.chunks_exact_mut(classes))
        .zip(labels)
    {
        let (arg, max) = argmax(row);
        if arg == y as usize {
            correct += 1;
        }
        let mut sum = 0.0f32;
        for (gi, &z) in g.iter_mut().zip(row) {
            *gi = (z - max).exp();
            sum += *gi;
        }
        let inv = 1.0 / sum;
        for gi in g.iter_mut() {
            *gi *= inv * scale;
        }
        loss -= ((row[y as usize] - max) as f64) - (sum as f64).ln();
        g[y as usize] -= scale;
    }
    ((loss * scale as f64) as f32, correct)
}

/// Adds the softmax of every row of `logits` (`rows × classes`) into `into`: averaging predictions
/// over weight samples (MESU) accumulates, a plain softmax starts from zeros.
///
/// Each exponential is computed once and kept for the division (computing it again, as the sum's
/// iterator and the division's each did, cost 3 µs of a `pmnist-quick` update for a rule reading
/// the readout's `post`).
pub fn accumulate_softmax(logits: &[f32], classes: usize, into: &mut [f32]) {
    let mut exps = vec![0.0f32; classes];
    for (z, p) in logits.chunks_exact(classes).zip(into.chunks_exact_mut(classes)) {
        let max = argmax(z).1;
        let mut sum = 0.0f32;
        for (e, zk) in exps.iter_mut().zip(z) {
            *e = (zk - max).exp();
            sum += *e;
        }
        for (pk, e) in p.iter_mut().zip(&exps) {
            *pk += e / sum;
        }
    }
}

/// Makes `buffer` hold at least `len` floats without shrinking it, for a scratch buffer whose users
/// write every element they read and take its first `len`: buffers that several products of
/// different sizes take turns with were shrunk and refilled with zeros at every update (up to
/// 200 KB on `pmnist-quick`).
pub(crate) fn grow(buffer: &mut Vec<f32>, len: usize) {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
}

/// Index and value of the largest entry (the first one on ties; NaN never wins).
pub fn argmax(row: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &v) in row.iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best
}

#[cfg(test)]
mod tests;
