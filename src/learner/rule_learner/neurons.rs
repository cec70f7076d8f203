//! The `neuron()` section of a rule: per hidden neuron statistics and state, and the replacement of
//! hidden units by its `score`, continual-backprop style.
//!
//! Once per update, after the synapse section's weight changes, for every hidden layer: `age += 1`
//! (updates completed since the unit was created or replaced), `rate_trace ← 0.99·rate_trace +
//! 0.01·rate`, then the program runs over the layer's neurons and its outputs are kept (`h`) or used
//! (`score`). The statistics follow continual backprop's generate-and-test (Dohare et al. 2024,
//! "Loss of plasticity in deep continual learning", Nature; `src/learner/cbp.rs`), so
//! `rules/baselines/cbp.rhai` is that method:
//!
//! - `rate` = mean over the batch of the unit's output h (its firing rate over the T steps);
//! - `act_dev` = mean over the batch of |h − f̂|, with f̂ = `rate_trace` / (1 − 0.99^age), the running
//!   mean corrected for starting at 0;
//! - `in_w` = mean |incoming w|, `out_w` = mean |outgoing w| (the next layer's column);
//! - `util` = the running adaptable contribution utility, `u ← 0.99·u + 0.01·out_w·act_dev/in_w`,
//!   bias-corrected like f̂: what native continual backprop ranks by.
//!
//! Replacement: units older than `maturity` are eligible; `rate` × #eligible accumulates and the floor of
//! it is replaced, the lowest `score` first (NaN counts as lowest). A replaced unit gets fresh incoming
//! weights from the initial distribution (the same random stream as the native learner), bias 0,
//! outgoing weights 0, the configured threshold, and its state (`h`, traces, age) restarts at 0.
//!
//! Writing `theta` sets each LIF neuron's own threshold (adaptive thresholds, homeostasis); the
//! simulator uses it from the next forward pass.
//!
//! The pass also runs without a `neuron()` section when `synapse()` or `prune()` reads a neuron
//! statistic (`rate_trace`, `in_w`, `out_w`, `act_dev`, `util`, `h`, of the postsynaptic neuron or,
//! as `pre_*`, of the presynaptic one). Those sections run before it in an update, so they read what
//! the previous update's pass computed ([`NeuronStats`]; 0 before the first pass, and for a unit the
//! pass replaced): one value per neuron, never per synapse.

use super::signals::{Globals, TRACE_DECAY, row_mean};
use crate::learner::cbp::{bias_correction, incoming_magnitude, outgoing_magnitude};
use crate::rng::{Purpose, Rng};
use crate::rule::Program;
use crate::rule::program::{Input, Scratch};
use crate::rule::vocab::Var;
use crate::snn::Network;

/// How units are replaced (the spec's `learner.replacement`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Replacement {
    /// ρ: fraction of eligible units replaced per update.
    pub rate: f64,
    /// m: units at most this old are never replaced.
    pub maturity: u32,
}

/// Per hidden layer state.
#[derive(Clone, Debug)]
struct LayerState {
    h: Vec<f32>,
    rate_trace: Vec<f32>,
    utility: Vec<f32>,
    age: Vec<f32>,
    pending: f64,
    outputs: Vec<Vec<f32>>,
    /// What the last pass computed, kept for the next update's synapse and prune sections (zeros
    /// where it computed nothing).
    act_dev: Vec<f32>,
    in_w: Vec<f32>,
    out_w: Vec<f32>,
    util: Vec<f32>,
}

/// One hidden layer's neuron statistics as the last pass left them.
#[derive(Clone, Copy, Debug)]
pub struct NeuronStats<'a> {
    /// `rate_trace`.
    pub rate_trace: &'a [f32],
    /// `in_w`.
    pub in_w: &'a [f32],
    /// `out_w`.
    pub out_w: &'a [f32],
    /// `act_dev`.
    pub act_dev: &'a [f32],
    /// `util`, bias-corrected.
    pub util: &'a [f32],
    /// `h`.
    pub h: &'a [f32],
}

impl<'a> NeuronStats<'a> {
    /// The statistic `var` names (`pre_x` reads `x`); `None` for any other variable.
    pub fn get(&self, var: Var) -> Option<&'a [f32]> {
        Some(match statistic(var)? {
            Var::RateTrace => self.rate_trace,
            Var::InW => self.in_w,
            Var::OutW => self.out_w,
            Var::ActDev => self.act_dev,
            Var::Util => self.util,
            _ => self.h,
        })
    }
}

/// The neuron statistic a `synapse()` or `prune()` variable reads, post- or presynaptic.
pub fn statistic(var: Var) -> Option<Var> {
    Some(match var {
        Var::RateTrace | Var::PreRateTrace => Var::RateTrace,
        Var::InW | Var::PreInW => Var::InW,
        Var::OutW | Var::PreOutW => Var::OutW,
        Var::ActDev | Var::PreActDev => Var::ActDev,
        Var::Util | Var::PreUtil => Var::Util,
        Var::H | Var::PreH => Var::H,
        _ => return None,
    })
}

/// Per-neuron signals the synapse pass also uses, for hidden layer `l`: `psi`, `v`, `err`, each
/// computed only where the flags say (`signals::neuron_signals`).
pub type RowStats<'a> = &'a dyn Fn(usize, [bool; 3]) -> [Vec<f32>; 3];

/// The statistics the last neuron pass computed beyond the rate, its trace and the age, each only
/// when the program reads what needs it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeuronWork {
    /// `act_dev` (also for `util`).
    pub act_dev: bool,
    /// `in_w`, the mean |incoming w| (also for `util`).
    pub in_w: bool,
    /// `out_w`, the mean |outgoing w| (also for `util`).
    pub out_w: bool,
    /// `util`.
    pub util: bool,
    /// `psi`: the mean surrogate derivative.
    pub psi: bool,
    /// `v`: the mean pre-reset membrane.
    pub v: bool,
    /// `err`: the error at the output.
    pub err: bool,
}

/// The neuron pass of one rule learner.
#[derive(Debug)]
pub struct NeuronPass {
    /// The `neuron()` program; `None` when the pass only keeps statistics for the other sections.
    program: Option<Program>,
    replacement: Replacement,
    layers: Vec<LayerState>,
    seed: u64,
    reads: Vec<Var>,
    scratch: Scratch,
    /// Every replacement so far: (update, layer, unit).
    replaced: Vec<(u64, usize, usize)>,
    /// What the last pass computed.
    computed: NeuronWork,
}

impl NeuronPass {
    /// The pass for `program` over the hidden layers of `network`; `statistics` are the variables the
    /// other sections read from it (see [`statistic`]).
    pub fn new(
        program: Option<Program>,
        statistics: &[Var],
        replacement: Replacement,
        network: &Network,
        seed: u64,
    ) -> NeuronPass {
        let outputs = program.as_ref().map_or(0, |p| p.outputs.len());
        let layers = network
            .config()
            .hidden
            .iter()
            .map(|&n| LayerState {
                h: vec![0.0; n],
                rate_trace: vec![0.0; n],
                utility: vec![0.0; n],
                age: vec![0.0; n],
                pending: 0.0,
                outputs: vec![vec![0.0; n]; outputs],
                act_dev: vec![0.0; n],
                in_w: vec![0.0; n],
                out_w: vec![0.0; n],
                util: vec![0.0; n],
            })
            .collect();
        let mut reads: Vec<Var> = program.as_ref().map_or_else(Vec::new, |p| p.inputs.clone());
        reads.extend(statistics.iter().filter_map(|&v| statistic(v)));
        NeuronPass {
            program,
            replacement,
            layers,
            seed,
            reads,
            scratch: Scratch::default(),
            replaced: Vec::new(),
            computed: NeuronWork::default(),
        }
    }

    /// Whether the program reads `v` or `err` (the workspace must record them).
    pub fn reads_v_err(&self) -> (bool, bool) {
        (self.reads.contains(&Var::V), self.reads.contains(&Var::Err))
    }

    /// What the last pass computed.
    pub fn computed(&self) -> NeuronWork {
        self.computed
    }

    /// Hidden layer `l`'s statistics as the last pass left them.
    pub fn stats(&self, l: usize) -> NeuronStats<'_> {
        let s = &self.layers[l];
        NeuronStats {
            rate_trace: &s.rate_trace,
            in_w: &s.in_w,
            out_w: &s.out_w,
            act_dev: &s.act_dev,
            util: &s.util,
            h: &s.h,
        }
    }

    /// Every replacement so far: (update, hidden layer, unit).
    pub fn replaced(&self) -> &[(u64, usize, usize)] {
        &self.replaced
    }

    /// Runs the program over every hidden layer, then replaces units by score. `update` is the
    /// learner's update count (it keys the fresh weights). Returns this update's replacements as
    /// (layer, unit) so the caller resets its per-synapse state.
    pub fn run(
        &mut self,
        network: &mut Network,
        rates: &[&[f32]],
        globals: Globals,
        row_stats: RowStats,
        noise: &mut dyn FnMut(&mut [f32]),
        update: u64,
    ) -> Vec<(usize, usize)> {
        let reads = |var: Var| self.reads.contains(&var);
        let (needs_dev, needs_in, needs_out, needs_util) = (
            reads(Var::ActDev) || reads(Var::Util),
            reads(Var::InW) || reads(Var::Util),
            reads(Var::OutW) || reads(Var::Util),
            reads(Var::Util),
        );
        let wanted_rows = [reads(Var::Psi), reads(Var::V), reads(Var::Err)];
        self.computed = NeuronWork {
            act_dev: needs_dev,
            in_w: needs_in,
            out_w: needs_out,
            util: needs_util,
            psi: wanted_rows[0],
            v: wanted_rows[1],
            err: wanted_rows[2],
        };
        let config = network.config().clone();
        for (l, state) in self.layers.iter_mut().enumerate() {
            let width = config.hidden[l];
            let activity = rates[l];
            let batch = (activity.len() / width).max(1);
            let rate = row_mean(activity, width);
            state.age.iter_mut().for_each(|a| *a += 1.0);
            for (t, r) in state.rate_trace.iter_mut().zip(&rate) {
                *t = TRACE_DECAY * *t + (1.0 - TRACE_DECAY) * r;
            }
            // Only `act_dev` and `util` read the bias corrections (a power per neuron).
            let corrections: Vec<f32> = if needs_dev || needs_util {
                state
                    .age
                    .iter()
                    .map(|&a| bias_correction(TRACE_DECAY, a as u32))
                    .collect()
            } else {
                Vec::new()
            };
            if needs_dev {
                let f_hat: Vec<f32> = state
                    .rate_trace
                    .iter()
                    .zip(&corrections)
                    .map(|(f, c)| f / c)
                    .collect();
                state.act_dev.fill(0.0);
                for row in activity.chunks_exact(width) {
                    for ((s, h), f) in state.act_dev.iter_mut().zip(row).zip(&f_hat) {
                        *s += (h - f).abs();
                    }
                }
                state.act_dev.iter_mut().for_each(|s| *s /= batch as f32);
            }
            let layer = &network.layers()[l];
            if needs_in {
                state.in_w = incoming_magnitude(layer);
            }
            if needs_out {
                state.out_w = outgoing_magnitude(&network.layers()[l + 1]);
            }
            if needs_util {
                for i in 0..width {
                    let y = state.out_w[i] * state.act_dev[i] / state.in_w[i].max(f32::MIN_POSITIVE);
                    state.utility[i] = TRACE_DECAY * state.utility[i] + (1.0 - TRACE_DECAY) * y;
                }
                for ((u, raw), c) in state.util.iter_mut().zip(&state.utility).zip(&corrections) {
                    *u = raw / c;
                }
            }
            let Some(program) = &self.program else {
                continue;
            };
            let [psi, v, err] = row_stats(l, wanted_rows);
            let layer_rate = rate.iter().sum::<f32>() / width.max(1) as f32;
            let inputs: Vec<Input> = program
                .inputs
                .iter()
                .map(|&var| match var {
                    Var::Rate => Input::PerRow(&rate),
                    Var::RateTrace => Input::PerRow(&state.rate_trace),
                    Var::ActDev => Input::PerRow(&state.act_dev),
                    Var::InW => Input::PerRow(&state.in_w),
                    Var::OutW => Input::PerRow(&state.out_w),
                    Var::Util => Input::PerRow(&state.util),
                    Var::LayerRate => Input::Scalar(layer_rate),
                    Var::Age => Input::PerRow(&state.age),
                    Var::H => Input::PerRow(&state.h),
                    Var::Psi => Input::PerRow(&psi),
                    Var::V => Input::PerRow(&v),
                    Var::Err => Input::PerRow(&err),
                    Var::Theta if !network.thresholds(l).is_empty() => Input::PerRow(network.thresholds(l)),
                    Var::Theta => Input::Scalar(0.0),
                    Var::FanIn => Input::Scalar(layer.inputs() as f32),
                    Var::FanOut => Input::Scalar(layer.outputs() as f32),
                    Var::Layer => Input::Scalar(l as f32),
                    Var::Lr | Var::Step | Var::NewTask | Var::Batch | Var::Loss | Var::LossTrace => {
                        Input::Scalar(globals.scalar(var))
                    }
                    Var::W
                    | Var::W0
                    | Var::Grad
                    | Var::Hebb
                    | Var::Elig
                    | Var::M
                    | Var::U
                    | Var::Sigma
                    | Var::GradSigma
                    | Var::Pre
                    | Var::PreTrace
                    | Var::Post
                    | Var::PostTrace
                    | Var::Dw
                    | Var::Score
                    | Var::PreRateTrace
                    | Var::PreInW
                    | Var::PreOutW
                    | Var::PreActDev
                    | Var::PreUtil
                    | Var::PreH => {
                        unreachable!("'{var}' is not readable in neuron(); the compiler refuses it")
                    }
                })
                .collect();
            let mut outs: Vec<&mut [f32]> = state.outputs.iter_mut().map(Vec::as_mut_slice).collect();
            program.run_matrix(width, 1, &inputs, &mut outs, noise, &mut self.scratch);
        }
        let mut replaced = Vec::new();
        let Some(program) = &self.program else {
            return replaced;
        };
        for (l, state) in self.layers.iter_mut().enumerate() {
            let mut score = None;
            for (k, &(var, _)) in program.outputs.iter().enumerate() {
                match var {
                    Var::H => std::mem::swap(&mut state.h, &mut state.outputs[k]),
                    Var::Score => score = Some(k),
                    // Adaptive thresholds (ignored in ANN mode, where units have none).
                    Var::Theta => {
                        let thresholds = network.thresholds_mut(l);
                        if !thresholds.is_empty() {
                            thresholds.copy_from_slice(&state.outputs[k]);
                        }
                    }
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
                    | Var::V
                    | Var::Err
                    | Var::Psi
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
                    | Var::PreH => {
                        unreachable!("'{var}' is not writable in neuron(); the compiler refuses it")
                    }
                }
            }
            let Some(k) = score else { continue };
            let scores = &state.outputs[k];
            let mut eligible: Vec<usize> = (0..scores.len())
                .filter(|&i| state.age[i] > self.replacement.maturity as f32)
                .collect();
            state.pending += self.replacement.rate * eligible.len() as f64;
            let count = (state.pending.floor() as usize).min(eligible.len());
            if count == 0 {
                continue;
            }
            state.pending -= count as f64;
            let key = |i: usize| {
                if scores[i].is_nan() {
                    f32::NEG_INFINITY
                } else {
                    scores[i]
                }
            };
            eligible.sort_by(|&a, &b| key(a).total_cmp(&key(b)).then(a.cmp(&b)));
            for &unit in &eligible[..count] {
                let mut rng = Rng::stream(self.seed, Purpose::Learner, &[update, l as u64, unit as u64]);
                network.redraw_incoming(l, unit, &mut rng);
                network.zero_outgoing(l, unit);
                state.h[unit] = 0.0;
                state.rate_trace[unit] = 0.0;
                state.utility[unit] = 0.0;
                state.age[unit] = 0.0;
                for kept in [
                    &mut state.act_dev,
                    &mut state.in_w,
                    &mut state.out_w,
                    &mut state.util,
                ] {
                    kept[unit] = 0.0;
                }
                self.replaced.push((update, l, unit));
                replaced.push((l, unit));
            }
        }
        replaced
    }
}
