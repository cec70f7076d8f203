//! The `learner` section of a spec: which update method, with its parameters and their reference
//! defaults (each method's paper and its authors' code, cited per variant), and the range checks of each.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::default_dormant_threshold;

/// The learner section: which update method, with its parameters. Every parameter but `lr` has the
/// default of the method's reference implementation (cited per variant).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum LearnerSpec {
    /// Plain SGD: `w ← w − lr·∂L/∂w`.
    Sgd {
        /// Step size (> 0).
        lr: f32,
    },
    /// SGD with L2 weight decay (Krogh & Hertz 1992).
    L2 {
        /// Step size.
        lr: f32,
        /// λ (Dohare et al. permuted MNIST: 1e-4).
        #[serde(default = "default_weight_decay")]
        weight_decay: f32,
    },
    /// SGD pulled toward the initial weights, penalty λ‖θ − θ₀‖² (Kumar et al. 2023, "Maintaining plasticity in continual learning via regenerative regularization").
    L2Init {
        /// Step size.
        lr: f32,
        /// λ. The paper tunes it per benchmark; 1e-3 is our default, not a published one.
        #[serde(default = "default_l2_init")]
        strength: f32,
    },
    /// Dohare's Shrink & Perturb: weight decay plus Gaussian noise after every step (Dohare et al. 2024).
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
    /// Ash & Adams' Shrink & Perturb at each task start: θ ← λθ + p·θ_fresh (Ash & Adams 2020). Needs visible
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
    /// Continual backpropagation (Dohare et al. 2024, "Loss of plasticity in deep continual learning").
    Cbp(CbpParams),
    /// ReDo, recycling dormant units (Sokar et al. 2023).
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
    /// MESU, Bayesian weights with σ² as each weight's learning rate (Bonnet et al. 2025).
    Mesu(MesuParams),
    /// Online EWC: one running Fisher, consolidated at each task boundary (Schwarz et al. 2018). Needs visible
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
    /// Stream EWC: Fisher and anchor updated after every step, no boundaries needed (as MESU's authors run it, Bonnet et al. 2025).
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
    /// A rule script: its `synapse()` section gives every weight's update (biases follow plain SGD),
    /// its `prune()` section scores synapses for the structure schedule, its `neuron()` section keeps
    /// per-neuron state and scores hidden units for replacement. Written `Rule(path: "x.rhai", ...)`.
    Rule(RuleSpec),
    /// Synaptic intelligence (Zenke et al. 2017). Needs visible boundaries.
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

/// Which weight matrices a rule applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleLayers {
    /// Every weight matrix, the readout included.
    #[default]
    All,
    /// Hidden layers only; the readout follows plain SGD.
    Hidden,
}

/// How the biases of the matrices that follow a rule learn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Biases {
    /// Plain SGD at the rule's `lr`: a synapse rule is about synapses.
    #[default]
    Sgd,
    /// The `synapse()` section, each bias seen as a synapse from an input that is always 1
    /// (`pre = pre_trace = 1`, `hebb = post`). With every matrix following the rule and no section
    /// reading `grad` or `err`, training then needs no backward pass.
    Rule,
}

impl Biases {
    /// The default (skipped when a spec is written back).
    pub fn is_sgd(&self) -> bool {
        *self == Biases::Sgd
    }
}

/// Who competes with whom when synapses are pruned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Competition {
    /// The incoming synapses of each postsynaptic neuron: every neuron keeps its share.
    #[default]
    PerNeuron,
    /// Every synapse of a weight matrix: a neuron can lose all its inputs.
    PerLayer,
}

/// The structure schedule of the matrices that follow a rule (`src/learner/structure.rs`): overproduce, prune the
/// lowest `prune()` scores toward a target density inside a window at each task's start, regrow,
/// consolidate. Defaults: halve each neuron's inputs over the first half of every task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StructureSpec {
    /// Fraction of synapses that exist at creation, in (0, 1] (1).
    pub initial_density: f32,
    /// Density each task's window prunes toward, in (0, 1] (0.5).
    pub target_density: f32,
    /// Fraction of each task's updates, from its start, during which pruning happens, in (0, 1] (0.5).
    pub window: f32,
    /// Pruning events in the window, ≥ 1 (10).
    pub prune_steps: usize,
    /// Who competes (PerNeuron).
    pub competition: Competition,
    /// Fraction of absent synapses regrown (at w = 0) at each task start after the first, in [0, 1] (0).
    pub regrow: f32,
    /// A window's survivors cannot be pruned during the next this many windows (0: off).
    pub protect_tasks: usize,
}

impl Default for StructureSpec {
    fn default() -> Self {
        StructureSpec {
            initial_density: 1.0,
            target_density: 0.5,
            window: 0.5,
            prune_steps: 10,
            competition: Competition::PerNeuron,
            regrow: 0.0,
            protect_tasks: 0,
        }
    }
}

impl StructureSpec {
    /// Checks every field's range; returns (field, message) for the first violation, the field
    /// relative to the structure section.
    pub fn check(&self) -> Result<(), (String, String)> {
        let unit = |field: &str, v: f32, zero_ok: bool| {
            let ok = v.is_finite() && v <= 1.0 && (v > 0.0 || (zero_ok && v == 0.0));
            if ok {
                Ok(())
            } else {
                let range = if zero_ok { "[0, 1]" } else { "(0, 1]" };
                Err((field.to_string(), format!("must be in {range} (got {v})")))
            }
        };
        unit("initial_density", self.initial_density, false)?;
        unit("target_density", self.target_density, false)?;
        unit("window", self.window, false)?;
        unit("regrow", self.regrow, true)?;
        if self.prune_steps == 0 {
            return Err(("prune_steps".into(), "must be at least 1 (got 0)".into()));
        }
        Ok(())
    }

    /// The learner's schedule.
    pub fn schedule(&self) -> crate::learner::structure::Schedule {
        use crate::learner::structure;
        structure::Schedule {
            initial_density: self.initial_density,
            target_density: self.target_density,
            window: self.window,
            prune_steps: self.prune_steps,
            competition: match self.competition {
                Competition::PerNeuron => structure::Competition::PerNeuron,
                Competition::PerLayer => structure::Competition::PerLayer,
            },
            regrow: self.regrow,
            protect_tasks: self.protect_tasks,
        }
    }
}

/// Stochastic weights for a rule that reads or writes `sigma` (MESU, Bonnet et al. 2025): each update trains on
/// `samples` draws of `w = μ + σε`, and prediction averages `test_samples` draws.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StochasticSpec {
    /// Weight samples per update, ≥ 1 (10).
    pub samples: usize,
    /// Weight samples per prediction, ≥ 1 (10).
    pub test_samples: usize,
    /// Initial σ as a fraction of the layer's initial weight bound, > 0 (0.5).
    pub sigma_init: f32,
    /// σ is kept at or above this, ≥ 0 (1e-6).
    pub sigma_min: f32,
}

impl Default for StochasticSpec {
    fn default() -> Self {
        StochasticSpec {
            samples: default_mesu_samples(),
            test_samples: default_mesu_samples(),
            sigma_init: default_half(),
            sigma_min: default_sigma_min(),
        }
    }
}

impl StochasticSpec {
    /// Checks every field; returns (field, message) relative to the stochastic section.
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.samples == 0 || self.test_samples == 0 {
            let field = if self.samples == 0 {
                "samples"
            } else {
                "test_samples"
            };
            return Err((field.into(), "must be at least 1 (got 0)".into()));
        }
        if !(self.sigma_init > 0.0 && self.sigma_init.is_finite()) {
            return Err((
                "sigma_init".into(),
                format!("must be a finite number above 0 (got {})", self.sigma_init),
            ));
        }
        if !(self.sigma_min >= 0.0 && self.sigma_min.is_finite()) {
            return Err((
                "sigma_min".into(),
                format!("must be zero or positive (got {})", self.sigma_min),
            ));
        }
        Ok(())
    }
}

/// Replacement of hidden units by a rule's `neuron()` score, continual-backprop style (Dohare et al. 2024): each
/// update, `rate` × (units older than `maturity`) accumulates and the floor of it is replaced, the
/// lowest scores first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplacementSpec {
    /// ρ: fraction of eligible units replaced per update, in [0, 1) (1e-4, as continual backprop).
    pub rate: f64,
    /// m: units younger than this many updates are never replaced (100).
    pub maturity: u32,
}

impl Default for ReplacementSpec {
    fn default() -> Self {
        ReplacementSpec {
            rate: default_replacement_rate(),
            maturity: default_maturity(),
        }
    }
}

impl ReplacementSpec {
    /// Checks the rate; returns (field, message) relative to the replacement section.
    pub fn check(&self) -> Result<(), (String, String)> {
        if !(0.0..1.0).contains(&self.rate) {
            return Err((
                "rate".into(),
                format!(
                    "must be in [0, 1): it is the fraction of units replaced per update (got {})",
                    self.rate
                ),
            ));
        }
        Ok(())
    }
}

/// Which unit utility continual backprop ranks by (Dohare et al. 2024).
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
    /// published it adds exactly 0 (the authors' `GnT`, step 5).
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

/// Distinct labels for a list of learners, for directories, tables and reports: the method's label,
/// and where a method appears more than once, its step size (`sgd-lr0.3`) or, failing that, a
/// counter (`cbp-2`).
pub fn labels(learners: &[LearnerSpec]) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for (i, learner) in learners.iter().enumerate() {
        let base = learner.label();
        let same: Vec<&LearnerSpec> = learners.iter().filter(|l| l.label() == base).collect();
        let label = if same.len() == 1 {
            base
        } else {
            let lr_distinguishes = learner
                .lr()
                .is_some_and(|lr| same.iter().filter(|l| l.lr() == Some(lr)).count() == 1);
            match learner.lr() {
                Some(lr) if lr_distinguishes => format!("{base}-lr{lr}"),
                _ => {
                    let n = learners[..i].iter().filter(|l| l.label() == base).count();
                    if n == 0 { base } else { format!("{base}-{}", n + 1) }
                }
            }
        };
        labels.push(label);
    }
    labels
}

/// The step size where a spec gives none: a rule learner's, and a `--learner NAME`'s when the spec's own
/// learner has no step size (MESU).
pub const DEFAULT_LR: f32 = 0.05;

fn default_lr() -> f32 {
    DEFAULT_LR
}

/// How a rule trains: the one spec of a rule learner's settings. A run spec's `Rule(...)` learner names
/// its file in `path`; a search's `learner` section has no `path` (its rules are the candidates).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// The `.rhai` file (a run's `Rule` learner only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The step size the rule reads as `lr` [default: 0.05].
    #[serde(default = "default_lr")]
    pub lr: f32,
    /// Which weight matrices follow the rule (the others follow plain SGD).
    #[serde(default)]
    pub apply_to: RuleLayers,
    /// Whether the biases of those matrices follow the rule too, or plain SGD (the default).
    #[serde(default, skip_serializing_if = "Biases::is_sgd")]
    pub biases: Biases,
    /// The structure schedule a `prune()` section drives; a rule with a `prune()` section and no
    /// schedule gets the default one (see [`StructureSpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structure: Option<StructureSpec>,
    /// How units are replaced by the `neuron()` score (continual backprop's defaults when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<ReplacementSpec>,
    /// Weight sampling for rules that use `sigma` (MESU's defaults when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stochastic: Option<StochasticSpec>,
}

impl Default for RuleSpec {
    fn default() -> Self {
        RuleSpec {
            path: None,
            lr: DEFAULT_LR,
            apply_to: RuleLayers::All,
            biases: Biases::Sgd,
            structure: None,
            replacement: None,
            stochastic: None,
        }
    }
}

impl RuleSpec {
    /// Checks every setting's range; returns (field, message) for the first violation, the field
    /// relative to the rule learner (`structure.window`).
    pub fn check(&self) -> Result<(), (String, String)> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err((
                "lr".into(),
                format!("must be a finite number above 0 (got {})", self.lr),
            ));
        }
        let within = |section: &str, result: Result<(), (String, String)>| {
            result.map_err(|(field, message)| (format!("{section}.{field}"), message))
        };
        if let Some(s) = &self.structure {
            within("structure", s.check())?;
        }
        if let Some(s) = &self.stochastic {
            within("stochastic", s.check())?;
        }
        if let Some(r) = &self.replacement {
            within("replacement", r.check())?;
        }
        Ok(())
    }
}

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
            LearnerSpec::Rule(_) => "rule",
        }
    }

    /// The label runs and reports use: the name, or a rule's file name.
    pub fn label(&self) -> String {
        match self {
            LearnerSpec::Rule(rule) => rule
                .path
                .as_deref()
                .and_then(|p| p.file_name())
                .map_or_else(|| "rule".into(), |f| f.to_string_lossy().into_owned()),
            other => other.name().to_string(),
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
            LearnerSpec::Rule(ref rule) => Some(rule.lr),
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
            return fail("lr", format!("must be a finite number above 0 (got {lr})"));
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
            LearnerSpec::Sgd { .. } | LearnerSpec::Rule(_) => vec![],
        };
        for (field, value) in non_negative {
            if !(value >= 0.0 && value.is_finite()) {
                return fail(field, format!("must be zero or positive (got {value})"));
            }
        }
        match self {
            LearnerSpec::Rule(rule) => {
                if rule.path.is_none() {
                    return fail(
                        "path",
                        "a Rule learner names its rule file: Rule(path: \"rules/local/oja.rhai\")".into(),
                    );
                }
                rule.check().or_else(|(field, message)| fail(&field, message))
            }
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
                    return fail(
                        "sigma_prior",
                        format!("must be a finite number above 0 (got {})", p.sigma_prior),
                    );
                }
                if p.memory.is_nan() || p.memory <= 0.0 {
                    return fail("memory", format!("must be positive, or inf (got {})", p.memory));
                }
                if p.samples == 0 || p.test_samples == 0 {
                    let field = if p.samples == 0 { "samples" } else { "test_samples" };
                    return fail(field, "must be at least 1 (got 0)".into());
                }
                if !(p.sigma_init > 0.0 && p.sigma_init.is_finite()) {
                    return fail(
                        "sigma_init",
                        format!("must be a finite number above 0 (got {})", p.sigma_init),
                    );
                }
                for (field, v) in [("lr_mu", p.lr_mu), ("lr_sigma", p.lr_sigma)] {
                    if !(v > 0.0 && v.is_finite()) {
                        return fail(field, format!("must be a finite number above 0 (got {v})"));
                    }
                }
                match p.ratio_max {
                    Some(r) if r.is_nan() || r <= 0.0 => {
                        fail("ratio_max", format!("must be a finite number above 0 (got {r})"))
                    }
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

#[cfg(test)]
mod label_tests {
    use super::*;

    #[test]
    fn repeated_methods_are_told_apart_by_step_size_or_counter() {
        let l = labels(&[
            LearnerSpec::Sgd { lr: 0.05 },
            LearnerSpec::Sgd { lr: 0.3 },
            LearnerSpec::named("cbp", 0.05).expect("known"),
            LearnerSpec::named("cbp", 0.05).expect("known"),
            LearnerSpec::named("mesu", 0.05).expect("known"),
        ]);
        assert_eq!(l, ["sgd-lr0.05", "sgd-lr0.3", "cbp", "cbp-2", "mesu"]);
    }
}
