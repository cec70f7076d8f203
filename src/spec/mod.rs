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

pub mod footprint;
mod learner;

use crate::snn::{self, Encoding, Init, Lif, NetworkConfig, Neuron};
pub use learner::{
    Biases, CbpParams, Competition, DEFAULT_LR, LEARNER_NAMES, LearnerSpec, MesuParams, ReplacementSpec,
    RuleLayers, RuleSpec, StochasticSpec, StructureSpec, Utility, labels,
};

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

impl Error {
    /// Appends `hint` to a parse error's message when `applies`: a file of the other kind of spec
    /// fails on its first field that kind lacks, and the hint says which command takes it.
    pub(crate) fn with_hint(self, applies: bool, hint: &str) -> Error {
        match self {
            Error::Parse {
                path,
                line,
                column,
                message,
            } if applies => Error::Parse {
                path,
                line,
                column,
                message: format!("{message}; {hint}"),
            },
            other => other,
        }
    }
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
    /// More learners to run beside `learner` on identical streams and seeds, for a comparison table.
    #[serde(default)]
    pub baselines: Vec<LearnerSpec>,
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
    /// Same step as the spike (`src/snn/neuron.rs`).
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

fn one() -> usize {
    1
}
fn default_retention_sample() -> usize {
    20
}
fn default_probe_size() -> usize {
    500
}
pub(crate) fn default_dormant_threshold() -> f32 {
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

/// Checks that a spec's `name` is a plain file name: it names the directory under `runs/` and
/// `reports/`, so a path (`../x`, `/tmp/x`) would write outside them.
fn plain_name(name: &str) -> Result<(), String> {
    let fix = "use letters, digits, '-', '_' and '.', e.g. \"pmnist-sgd\"";
    if name.trim().is_empty() {
        return Err(format!("must not be empty; {fix}"));
    }
    if name == "." || name == ".." || name.contains(['/', '\\', '\0']) || name.chars().any(char::is_control) {
        return Err(format!(
            "{name:?} is not a plain file name (it names a directory under runs/ and reports/); {fix}"
        ));
    }
    Ok(())
}

/// Parses RON text into `T` with the extensions every synaptogen file uses: optional fields written
/// plainly (`name: "x"`, not `name: Some("x")`), and `Cbp(lr: 0.05)` rather than `Cbp((lr: 0.05))`.
pub(crate) fn parse_ron<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T, Error> {
    let options = ron::Options::default().with_default_extension(
        ron::extensions::Extensions::IMPLICIT_SOME | ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES,
    );
    // Editors on some systems start UTF-8 files with a byte-order mark; it is not part of the text.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    options.from_str(text).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        line: e.span.start.line,
        column: e.span.start.col,
        message: e.code.to_string(),
    })
}

/// Parses a learner section on its own (the RON form of `--learner`); `source` names it in messages.
pub fn parse_learner(text: &str, source: &Path) -> Result<LearnerSpec, Error> {
    parse_ron(text, source)
}

impl RunSpec {
    /// Parses and validates a spec; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<RunSpec, Error> {
        let spec: RunSpec = parse_ron(text, path).map_err(|e| {
            e.with_hint(
                text.contains("seed_rules"),
                "this is a search spec (it has seed_rules): run it with `synaptogen search`",
            )
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
        if let Some(name) = &self.name
            && let Err(message) = plain_name(name)
        {
            return invalid("name", message);
        }
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
                return invalid(field, format!("must be a finite number above 0 (got {value})"));
            }
        }
        self.learner
            .check()
            .or_else(|(field, message)| invalid(&field, message))?;
        if let Some((field, message)) = footprint::Footprint::of(self).check() {
            return invalid(field, message);
        }
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

    /// The measurement settings of a run of this spec.
    pub fn run_options(&self) -> crate::run::RunOptions {
        crate::run::RunOptions {
            retention_sample: self.benchmark.retention_sample,
            probe_size: self.benchmark.probe_size,
            dormant_threshold: self.benchmark.dormant_threshold,
            boundaries_visible: self.benchmark.boundaries == Boundaries::Visible,
            eval_batch: 500,
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
    fn a_name_is_a_plain_file_name() {
        assert!(plain_name("pmnist-sgd_2.v1").is_ok());
        for bad in ["", "  ", ".", "..", "../../escape", "/tmp/x", "a\\b", "a\nb"] {
            let err = plain_name(bad).unwrap_err();
            assert!(err.contains("e.g."), "{bad:?}: {err}");
        }
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
