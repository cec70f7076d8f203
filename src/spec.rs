//! Run specs: the `benchmark`, `network` and `learner` sections (RON) that `synaptogen run` reads and
//! that search specs reuse unchanged.
//!
//! This is a serialization boundary: these types derive serde and are converted by hand into the core
//! types ([`crate::snn::NetworkConfig`], [`crate::data::StreamConfig`]) after [`RunSpec::validate`], so the
//! core never sees an unchecked value. Unknown fields are rejected, so a typo in a spec is an error, not a
//! silently ignored setting. This module does no IO: `cli` reads the file and hands over its text.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{DatasetKind, StreamConfig};
use crate::snn::{self, Encoding, Init, Lif, NetworkConfig, Neuron};

/// Errors in a spec file. Parse errors carry line and column; validation errors name the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not valid RON for a spec (syntax, unknown field, wrong type).
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The spec file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// A value is out of its valid range.
    #[error("{path}: {field}: {message}")]
    Invalid {
        /// The spec file.
        path: PathBuf,
        /// Dotted path of the field, e.g. `benchmark.tasks`.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

/// A whole run spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// Name used for output directories and reports; defaults to the file name without extension.
    #[serde(default)]
    pub name: Option<String>,
    /// Seed for the task stream (permutations, example order) and the initial weights.
    #[serde(default)]
    pub seed: u64,
    /// The task stream and what is measured on it.
    pub benchmark: BenchmarkSpec,
    /// The network.
    pub network: NetworkSpec,
    /// How the network learns.
    pub learner: LearnerSpec,
}

/// The task stream and the measurement protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkSpec {
    /// Which dataset.
    pub dataset: DatasetKind,
    /// Where its files are; when absent, the usual places are searched (see the README).
    #[serde(default)]
    pub data_path: Option<PathBuf>,
    /// Number of tasks (≥ 1).
    pub tasks: usize,
    /// Average-pool side applied to every image before permuting (1 = none, 2 = 28×28 → 14×14).
    #[serde(default = "one")]
    pub pool: usize,
    /// Training examples per task.
    pub train_per_task: usize,
    /// Test examples per task.
    pub test_per_task: usize,
    /// Online (batch 1, one pass) or minibatch training.
    pub protocol: Protocol,
    /// Whether the learner is told where tasks begin.
    #[serde(default)]
    pub boundaries: Boundaries,
    /// After each task, at most this many earlier tasks are tested for retention: half the most recent,
    /// half evenly spaced over the rest. Every task is tested after the last one.
    #[serde(default = "default_retention_sample")]
    pub retention_sample: usize,
    /// Examples in the probe batch for effective rank, dead and dormant units at each task start.
    #[serde(default = "default_probe_size")]
    pub probe_size: usize,
    /// A unit is dormant when its mean activity is at most this fraction of its layer's mean (ReDo τ).
    #[serde(default = "default_dormant_threshold")]
    pub dormant_threshold: f32,
}

/// How a task's examples are presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// Batch size 1, one pass: each example is seen once.
    Online,
    /// Minibatches of `batch` examples for `epochs` passes.
    Minibatch {
        /// Examples per update.
        batch: usize,
        /// Passes over the task's examples.
        epochs: usize,
    },
}

/// Whether task boundaries are visible to the learner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Boundaries {
    /// The learner is told when a new task begins (`new_task` = 1).
    #[default]
    Visible,
    /// The stream changes silently.
    Hidden,
}

/// Spiking or ANN.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// LIF hidden layers over `time_steps` steps.
    #[default]
    Spiking,
    /// ReLU MLP, one step, for comparison with published non-spiking results.
    Ann,
}

/// When the reset by subtraction applies (see `snn::neuron`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResetTiming {
    /// Same step as the spike (DESIGN §4).
    #[default]
    SameStep,
    /// Next step, as snnTorch's default.
    NextStep,
}

/// Input encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncodingSpec {
    /// Pixel intensity as input current at every step.
    #[default]
    Direct,
    /// Bernoulli spikes with probability equal to the intensity, at every step.
    Bernoulli,
}

/// Initialisation scheme.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitSpec {
    /// Weights and biases uniform in ±1/√fan_in.
    #[default]
    FanIn,
    /// Kaiming-uniform weights, zero biases.
    KaimingUniform,
}

/// The network section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Spiking (default) or Ann.
    #[serde(default)]
    pub mode: Mode,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Simulation steps per example (ignored in Ann mode, which uses 1).
    #[serde(default = "default_time_steps")]
    pub time_steps: usize,
    /// Membrane decay β in [0, 1].
    #[serde(default = "default_beta")]
    pub beta: f32,
    /// Firing threshold θ > 0.
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    /// Reset timing.
    #[serde(default)]
    pub reset: ResetTiming,
    /// Input encoding.
    #[serde(default)]
    pub encoding: EncodingSpec,
    /// Fast-sigmoid surrogate slope k > 0.
    #[serde(default = "default_slope")]
    pub surrogate_slope: f32,
    /// Readout membrane decay β_o in [0, 1].
    #[serde(default = "default_beta")]
    pub readout_beta: f32,
    /// Initialisation.
    #[serde(default)]
    pub init: InitSpec,
}

/// The learner section: which update method, with its parameters. Every parameter but `lr` has the
/// default of the method's reference implementation (shared/reference/continual-learning.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum LearnerSpec {
    /// Plain SGD: `w ← w − lr·∂L/∂w`.
    Sgd {
        /// Step size (> 0).
        lr: f32,
    },
    /// SGD with L2 weight decay (§4.1).
    L2 {
        /// Step size.
        lr: f32,
        /// λ (Dohare et al. permuted MNIST: 1e-4).
        #[serde(default = "default_weight_decay")]
        weight_decay: f32,
    },
    /// SGD pulled toward the initial weights, penalty λ‖θ − θ₀‖² (§4.2, Kumar et al.).
    L2Init {
        /// Step size.
        lr: f32,
        /// λ. The paper tunes it per benchmark; 1e-3 is our default, not a published one.
        #[serde(default = "default_l2_init")]
        strength: f32,
    },
    /// Dohare's Shrink & Perturb: weight decay plus Gaussian noise after every step (§4.3).
    ShrinkPerturb {
        /// Step size.
        lr: f32,
        /// Shrink as weight decay (1e-4).
        #[serde(default = "default_weight_decay")]
        weight_decay: f32,
        /// Noise standard deviation σ (1e-5).
        #[serde(default = "default_noise_std")]
        noise_std: f32,
    },
    /// Ash & Adams' Shrink & Perturb at each task start: θ ← λθ + p·θ_fresh (§4.3). Needs visible
    /// task boundaries.
    ShrinkPerturbTask {
        /// Step size.
        lr: f32,
        /// λ (0.4).
        #[serde(default = "default_shrink")]
        shrink: f32,
        /// p (0.1).
        #[serde(default = "default_perturb")]
        perturb: f32,
    },
    /// Continual backpropagation (§1).
    Cbp(CbpParams),
    /// ReDo, recycling dormant units (§4.4).
    Redo {
        /// Step size.
        lr: f32,
        /// τ: a unit is dormant when its score is at most τ (0.025).
        #[serde(default = "default_dormant_threshold")]
        threshold: f32,
        /// Updates between recyclings (1000).
        #[serde(default = "default_redo_period")]
        period: usize,
    },
    /// MESU, Bayesian weights with σ² as each weight's learning rate (§2).
    Mesu(MesuParams),
    /// Online EWC: one running Fisher, consolidated at each task boundary (§4.5). Needs visible
    /// boundaries.
    EwcOnline {
        /// Step size.
        lr: f32,
        /// λ (MESU's permuted-MNIST setting: 2).
        #[serde(default = "default_ewc_online_lambda")]
        lambda: f32,
        /// γ, down-weighting of older tasks (0.2).
        #[serde(default = "default_ewc_gamma")]
        gamma: f32,
    },
    /// Stream EWC: Fisher and anchor updated after every step, no boundaries needed (§2.5).
    EwcStream {
        /// Step size.
        lr: f32,
        /// λ (5).
        #[serde(default = "default_ewc_stream_lambda")]
        lambda: f32,
        /// γ (0.2).
        #[serde(default = "default_ewc_gamma")]
        gamma: f32,
    },
    /// Synaptic intelligence (§4.6). Needs visible boundaries.
    Si {
        /// Step size.
        lr: f32,
        /// c (MESU's permuted-MNIST setting: 1e-4).
        #[serde(default = "default_si_strength")]
        strength: f32,
        /// Damping ξ (1).
        #[serde(default = "one_f32")]
        damping: f32,
    },
}

/// Which unit utility continual backprop ranks by (§1.1c).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Utility {
    /// `mean|w_out|·mean_b|h|`.
    Contribution,
    /// `mean|w_out|·mean_b|h − f̂|` (the reference's `zero_contribution`).
    MeanCorrected,
    /// `mean|w_out|·mean_b|h − f̂| / mean|w_in|`, used for permuted MNIST.
    #[default]
    Adaptable,
}

/// Parameters of continual backprop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CbpParams {
    /// Step size.
    pub lr: f32,
    /// ρ: fraction of eligible units replaced per update, in [0, 1) (1e-4, the GnT class default).
    #[serde(default = "default_replacement_rate")]
    pub replacement_rate: f64,
    /// m: units younger than this many updates are never replaced (100).
    #[serde(default = "default_maturity")]
    pub maturity: u32,
    /// η: decay of the running utility and mean activity, in [0, 1) (0.99).
    #[serde(default = "default_cbp_decay")]
    pub decay: f32,
    /// Which utility ranks units.
    #[serde(default)]
    pub utility: Utility,
    /// Move a replaced unit's mean contribution into the next layer's bias. Off by default: as
    /// published it adds exactly 0 (§1.2 step 5).
    #[serde(default)]
    pub bias_transfer: bool,
}

/// Parameters of MESU (JAX permuted-MNIST defaults unless noted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MesuParams {
    /// σ_prior > 0 (1).
    #[serde(default = "one_f32")]
    pub sigma_prior: f32,
    /// μ_prior (0).
    #[serde(default)]
    pub mu_prior: f32,
    /// N, the memory window in examples (3e5, about five 60k-example tasks); may be `inf`.
    #[serde(default = "default_mesu_memory")]
    pub memory: f64,
    /// Monte-Carlo samples per update, S ≥ 1 (10).
    #[serde(default = "default_mesu_samples")]
    pub samples: usize,
    /// Monte-Carlo samples per prediction (10).
    #[serde(default = "default_mesu_samples")]
    pub test_samples: usize,
    /// Initial σ as a fraction of the layer's initial weight bound (0.5, as the JAX code: σ₀ = ½ lim).
    #[serde(default = "default_half")]
    pub sigma_init: f32,
    /// σ is kept at or above this (1e-6).
    #[serde(default = "default_sigma_min")]
    pub sigma_min: f32,
    /// Clip each change to ±ratio_max·σ (PyTorch reference); none by default (JAX reference).
    #[serde(default)]
    pub ratio_max: Option<f32>,
    /// Step multiplier of the μ update (1).
    #[serde(default = "one_f32")]
    pub lr_mu: f32,
    /// Step multiplier of the σ update (1).
    #[serde(default = "one_f32")]
    pub lr_sigma: f32,
}

/// The learners `--learner NAME` accepts, as spelled there.
pub const LEARNER_NAMES: [&str; 11] = [
    "sgd",
    "l2",
    "l2_init",
    "shrink_perturb",
    "shrink_perturb_task",
    "cbp",
    "redo",
    "mesu",
    "ewc_online",
    "ewc_stream",
    "si",
];

impl LearnerSpec {
    /// The learner's name as reports and `--learner` spell it.
    pub fn name(&self) -> &'static str {
        match self {
            LearnerSpec::Sgd { .. } => "sgd",
            LearnerSpec::L2 { .. } => "l2",
            LearnerSpec::L2Init { .. } => "l2_init",
            LearnerSpec::ShrinkPerturb { .. } => "shrink_perturb",
            LearnerSpec::ShrinkPerturbTask { .. } => "shrink_perturb_task",
            LearnerSpec::Cbp(_) => "cbp",
            LearnerSpec::Redo { .. } => "redo",
            LearnerSpec::Mesu(_) => "mesu",
            LearnerSpec::EwcOnline { .. } => "ewc_online",
            LearnerSpec::EwcStream { .. } => "ewc_stream",
            LearnerSpec::Si { .. } => "si",
        }
    }

    /// The step size, where the method has one.
    pub fn lr(&self) -> Option<f32> {
        match *self {
            LearnerSpec::Sgd { lr }
            | LearnerSpec::L2 { lr, .. }
            | LearnerSpec::L2Init { lr, .. }
            | LearnerSpec::ShrinkPerturb { lr, .. }
            | LearnerSpec::ShrinkPerturbTask { lr, .. }
            | LearnerSpec::Redo { lr, .. }
            | LearnerSpec::EwcOnline { lr, .. }
            | LearnerSpec::EwcStream { lr, .. }
            | LearnerSpec::Si { lr, .. } => Some(lr),
            LearnerSpec::Cbp(ref p) => Some(p.lr),
            LearnerSpec::Mesu(_) => None,
        }
    }

    /// Whether the method needs to be told where tasks begin.
    pub fn needs_boundaries(&self) -> bool {
        matches!(
            self,
            LearnerSpec::EwcOnline { .. } | LearnerSpec::Si { .. } | LearnerSpec::ShrinkPerturbTask { .. }
        )
    }

    /// The learner `name` with reference defaults and step size `lr`; `None` for an unknown name.
    pub fn named(name: &str, lr: f32) -> Option<LearnerSpec> {
        Some(match name {
            "sgd" => LearnerSpec::Sgd { lr },
            "l2" => LearnerSpec::L2 {
                lr,
                weight_decay: default_weight_decay(),
            },
            "l2_init" => LearnerSpec::L2Init {
                lr,
                strength: default_l2_init(),
            },
            "shrink_perturb" => LearnerSpec::ShrinkPerturb {
                lr,
                weight_decay: default_weight_decay(),
                noise_std: default_noise_std(),
            },
            "shrink_perturb_task" => LearnerSpec::ShrinkPerturbTask {
                lr,
                shrink: default_shrink(),
                perturb: default_perturb(),
            },
            "cbp" => LearnerSpec::Cbp(CbpParams {
                lr,
                replacement_rate: default_replacement_rate(),
                maturity: default_maturity(),
                decay: default_cbp_decay(),
                utility: Utility::default(),
                bias_transfer: false,
            }),
            "redo" => LearnerSpec::Redo {
                lr,
                threshold: default_dormant_threshold(),
                period: default_redo_period(),
            },
            "mesu" => LearnerSpec::Mesu(MesuParams {
                sigma_prior: 1.0,
                mu_prior: 0.0,
                memory: default_mesu_memory(),
                samples: default_mesu_samples(),
                test_samples: default_mesu_samples(),
                sigma_init: default_half(),
                sigma_min: default_sigma_min(),
                ratio_max: None,
                lr_mu: 1.0,
                lr_sigma: 1.0,
            }),
            "ewc_online" => LearnerSpec::EwcOnline {
                lr,
                lambda: default_ewc_online_lambda(),
                gamma: default_ewc_gamma(),
            },
            "ewc_stream" => LearnerSpec::EwcStream {
                lr,
                lambda: default_ewc_stream_lambda(),
                gamma: default_ewc_gamma(),
            },
            "si" => LearnerSpec::Si {
                lr,
                strength: default_si_strength(),
                damping: 1.0,
            },
            _ => return None,
        })
    }

    /// Checks every parameter's range; returns (field, message) for the first violation.
    pub fn check(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: String| Err((format!("learner.{field}"), message));
        if let Some(lr) = self.lr()
            && !(lr > 0.0 && lr.is_finite())
        {
            return fail("lr", format!("must be positive (got {lr})"));
        }
        let non_negative: Vec<(&str, f64)> = match self {
            LearnerSpec::L2 { weight_decay, .. } => vec![("weight_decay", *weight_decay as f64)],
            LearnerSpec::L2Init { strength, .. } => vec![("strength", *strength as f64)],
            LearnerSpec::ShrinkPerturb {
                weight_decay,
                noise_std,
                ..
            } => vec![
                ("weight_decay", *weight_decay as f64),
                ("noise_std", *noise_std as f64),
            ],
            LearnerSpec::ShrinkPerturbTask { shrink, perturb, .. } => {
                vec![("shrink", *shrink as f64), ("perturb", *perturb as f64)]
            }
            LearnerSpec::Redo { threshold, .. } => vec![("threshold", *threshold as f64)],
            LearnerSpec::EwcOnline { lambda, gamma, .. } | LearnerSpec::EwcStream { lambda, gamma, .. } => {
                vec![("lambda", *lambda as f64), ("gamma", *gamma as f64)]
            }
            LearnerSpec::Si {
                strength, damping, ..
            } => {
                vec![("strength", *strength as f64), ("damping", *damping as f64)]
            }
            LearnerSpec::Cbp(p) => vec![("replacement_rate", p.replacement_rate)],
            LearnerSpec::Mesu(p) => vec![("sigma_min", p.sigma_min as f64)],
            LearnerSpec::Sgd { .. } => vec![],
        };
        for (field, value) in non_negative {
            if !(value >= 0.0 && value.is_finite()) {
                return fail(field, format!("must be zero or positive (got {value})"));
            }
        }
        match self {
            LearnerSpec::Cbp(p) if p.replacement_rate >= 1.0 => fail(
                "replacement_rate",
                format!(
                    "must be below 1: it is the fraction of units replaced per update (got {})",
                    p.replacement_rate
                ),
            ),
            LearnerSpec::Cbp(p) if !(0.0..1.0).contains(&p.decay) => {
                fail("decay", format!("must be in [0, 1) (got {})", p.decay))
            }
            LearnerSpec::Redo { period: 0, .. } => fail("period", "must be at least 1 (got 0)".into()),
            LearnerSpec::EwcOnline { gamma, .. } | LearnerSpec::EwcStream { gamma, .. } if *gamma > 1.0 => {
                fail("gamma", format!("must be in [0, 1] (got {gamma})"))
            }
            LearnerSpec::Mesu(p) => {
                if !(p.sigma_prior > 0.0 && p.sigma_prior.is_finite()) {
                    return fail("sigma_prior", format!("must be positive (got {})", p.sigma_prior));
                }
                if !(p.memory > 0.0) {
                    return fail("memory", format!("must be positive, or inf (got {})", p.memory));
                }
                if p.samples == 0 || p.test_samples == 0 {
                    let field = if p.samples == 0 { "samples" } else { "test_samples" };
                    return fail(field, "must be at least 1 (got 0)".into());
                }
                if !(p.sigma_init > 0.0 && p.sigma_init.is_finite()) {
                    return fail("sigma_init", format!("must be positive (got {})", p.sigma_init));
                }
                for (field, v) in [("lr_mu", p.lr_mu), ("lr_sigma", p.lr_sigma)] {
                    if !(v > 0.0 && v.is_finite()) {
                        return fail(field, format!("must be positive (got {v})"));
                    }
                }
                match p.ratio_max {
                    Some(r) if !(r > 0.0) => fail("ratio_max", format!("must be positive (got {r})")),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

fn default_weight_decay() -> f32 {
    1e-4
}
fn default_l2_init() -> f32 {
    1e-3
}
fn default_noise_std() -> f32 {
    1e-5
}
fn default_shrink() -> f32 {
    0.4
}
fn default_perturb() -> f32 {
    0.1
}
fn default_replacement_rate() -> f64 {
    1e-4
}
fn default_maturity() -> u32 {
    100
}
fn default_cbp_decay() -> f32 {
    0.99
}
fn default_redo_period() -> usize {
    1000
}
fn default_ewc_online_lambda() -> f32 {
    2.0
}
fn default_ewc_stream_lambda() -> f32 {
    5.0
}
fn default_ewc_gamma() -> f32 {
    0.2
}
fn default_si_strength() -> f32 {
    1e-4
}
fn default_mesu_memory() -> f64 {
    3e5
}
fn default_mesu_samples() -> usize {
    10
}
fn default_half() -> f32 {
    0.5
}
fn default_sigma_min() -> f32 {
    1e-6
}
fn one_f32() -> f32 {
    1.0
}
fn one() -> usize {
    1
}
fn default_retention_sample() -> usize {
    20
}
fn default_probe_size() -> usize {
    500
}
fn default_dormant_threshold() -> f32 {
    0.025
}
fn default_time_steps() -> usize {
    8
}
fn default_beta() -> f32 {
    0.9
}
fn default_threshold() -> f32 {
    1.0
}
fn default_slope() -> f32 {
    25.0
}

impl RunSpec {
    /// Parses and validates a spec; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<RunSpec, Error> {
        // Optional fields are written plainly (`name: "x"`, not `name: Some("x")`).
        let options =
            ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
        let spec: RunSpec = options.from_str(text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            line: e.span.start.line,
            column: e.span.start.col,
            message: e.code.to_string(),
        })?;
        spec.validate(path)?;
        Ok(spec)
    }

    /// Checks every value against its valid range; the first violation is returned.
    pub fn validate(&self, path: &Path) -> Result<(), Error> {
        let invalid = |field: &str, message: String| {
            Err(Error::Invalid {
                path: path.to_path_buf(),
                field: field.into(),
                message,
            })
        };
        let b = &self.benchmark;
        let n = &self.network;
        let positive = [
            ("benchmark.tasks", b.tasks),
            ("benchmark.pool", b.pool),
            ("benchmark.train_per_task", b.train_per_task),
            ("benchmark.test_per_task", b.test_per_task),
            ("benchmark.probe_size", b.probe_size),
            ("network.time_steps", n.time_steps),
        ];
        for (field, value) in positive {
            if value == 0 {
                return invalid(field, "must be at least 1 (got 0)".into());
            }
        }
        if let Protocol::Minibatch { batch, epochs } = b.protocol {
            if batch == 0 || epochs == 0 {
                let field = if batch == 0 {
                    "benchmark.protocol.batch"
                } else {
                    "benchmark.protocol.epochs"
                };
                return invalid(field, "must be at least 1 (got 0)".into());
            }
            if batch > b.train_per_task {
                return invalid(
                    "benchmark.protocol.batch",
                    format!("{batch} is larger than train_per_task ({})", b.train_per_task),
                );
            }
        }
        if n.hidden.is_empty() {
            return invalid(
                "network.hidden",
                "needs at least one hidden layer, e.g. [256]".into(),
            );
        }
        if let Some(i) = n.hidden.iter().position(|&w| w == 0) {
            return invalid(
                &format!("network.hidden[{i}]"),
                "a layer needs at least 1 unit (got 0)".into(),
            );
        }
        let unit = [
            ("network.beta", n.beta),
            ("network.readout_beta", n.readout_beta),
            ("benchmark.dormant_threshold", b.dormant_threshold),
        ];
        for (field, value) in unit {
            if !(0.0..=1.0).contains(&value) {
                return invalid(field, format!("must be in [0, 1] (got {value})"));
            }
        }
        let strictly_positive = [
            ("network.threshold", n.threshold),
            ("network.surrogate_slope", n.surrogate_slope),
        ];
        for (field, value) in strictly_positive {
            if !(value > 0.0 && value.is_finite()) {
                return invalid(field, format!("must be positive (got {value})"));
            }
        }
        self.learner
            .check()
            .or_else(|(field, message)| invalid(&field, message))?;
        if self.learner.needs_boundaries() && b.boundaries == Boundaries::Hidden {
            return invalid(
                "learner",
                format!(
                    "{} needs task boundaries but benchmark.boundaries is Hidden; set it to Visible or choose a task-free learner",
                    self.learner.name()
                ),
            );
        }
        Ok(())
    }

    /// The spec's name, or `fallback` (usually the file stem).
    pub fn name_or(&self, fallback: &str) -> String {
        self.name.clone().unwrap_or_else(|| fallback.to_string())
    }

    /// The stream configuration for this spec.
    pub fn stream_config(&self) -> StreamConfig {
        let (batch, epochs) = match self.benchmark.protocol {
            Protocol::Online => (1, 1),
            Protocol::Minibatch { batch, epochs } => (batch, epochs),
        };
        StreamConfig {
            tasks: self.benchmark.tasks,
            train_per_task: self.benchmark.train_per_task,
            test_per_task: self.benchmark.test_per_task,
            batch,
            epochs,
            seed: self.seed,
        }
    }

    /// The network configuration for inputs of `inputs` pixels and `classes` classes.
    pub fn network_config(&self, inputs: usize, classes: usize) -> NetworkConfig {
        let n = &self.network;
        let (neuron, time_steps, encoding) = match n.mode {
            Mode::Ann => (Neuron::Relu, 1, Encoding::Direct),
            Mode::Spiking => (
                Neuron::Lif(Lif {
                    beta: n.beta,
                    threshold: n.threshold,
                    slope: n.surrogate_slope,
                    reset: match n.reset {
                        ResetTiming::SameStep => snn::Reset::SameStep,
                        ResetTiming::NextStep => snn::Reset::NextStep,
                    },
                }),
                n.time_steps,
                match n.encoding {
                    EncodingSpec::Direct => Encoding::Direct,
                    EncodingSpec::Bernoulli => Encoding::Bernoulli,
                },
            ),
        };
        NetworkConfig {
            inputs,
            hidden: n.hidden.clone(),
            classes,
            neuron,
            time_steps,
            encoding,
            readout_beta: n.readout_beta,
            init: match n.init {
                InitSpec::FanIn => Init::FanIn,
                InitSpec::KaimingUniform => Init::KaimingUniform,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"(
        benchmark: (dataset: Synthetic, tasks: 2, train_per_task: 100, test_per_task: 50,
                    protocol: Minibatch(batch: 10, epochs: 1)),
        network: (hidden: [32]),
        learner: Sgd(lr: 0.05),
    )"#;

    fn check(text: &str) -> Result<RunSpec, String> {
        RunSpec::parse(text, Path::new("x.ron")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_fill_the_reference_network() {
        let spec = check(MINIMAL).expect("valid");
        assert_eq!(spec.network.time_steps, 8);
        assert_eq!(
            (
                spec.network.beta,
                spec.network.threshold,
                spec.network.surrogate_slope
            ),
            (0.9, 1.0, 25.0)
        );
        assert_eq!(spec.benchmark.boundaries, Boundaries::Visible);
    }

    #[test]
    fn unknown_fields_are_located() {
        let err = check(&MINIMAL.replace("hidden: [32]", "hidden: [32], hiden: [3]")).unwrap_err();
        assert!(
            err.starts_with("x.ron:4:33:") && err.contains("hiden") && err.contains("expected one of"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_are_located() {
        let err = check(&MINIMAL.replace("tasks: 2,", "tasks: 2,,")).unwrap_err();
        assert!(err.starts_with("x.ron:2:"), "{err}");
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        for (from, to, field) in [
            ("tasks: 2", "tasks: 0", "benchmark.tasks"),
            ("batch: 10", "batch: 0", "benchmark.protocol.batch"),
            ("lr: 0.05", "lr: -0.1", "learner.lr"),
            ("hidden: [32]", "hidden: [32, 0]", "network.hidden[1]"),
            ("hidden: [32]", "hidden: [32], beta: 1.5", "network.beta"),
        ] {
            let err = check(&MINIMAL.replace(from, to)).unwrap_err();
            assert!(err.starts_with(&format!("x.ron: {field}:")), "{err}");
        }
    }
}
