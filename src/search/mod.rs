//! The search engine: regularised evolution of rules over the IR, with successive-halving rungs over the
//! task-sequence length, a journal, exact resume and a final check on held-out seeds and data
//! (regularized evolution, Real et al. 2019; successive halving as in ASHA, Li et al. 2020;
//! functional-equivalence caching as in AutoML-Zero, Real et al. 2020).
//!
//! The search advances in **rounds**. A round is proposed from the state left by the previous one
//! alone (its random choices come from a stream keyed by `(seed, round, slot)`), its trials run in
//! parallel, and their results are folded into the state in proposal order. So the candidates, their
//! results and the ranking depend only on the spec and its seed, never on the thread count or on which
//! trial finished first. Round 0 trains the baselines at every rung; round 1 the seed rules; later rounds
//! promote the best candidates of each rung to the next and fill the rest of the batch with children;
//! the last round re-checks the finalists on held-out seeds and on a held-out dataset.
//!
//! Crash safety: every finished trial is appended to `journal.jsonl` and fsynced before it counts, and
//! the state is snapshotted atomically to `state.json` after every round. `--resume` loads the snapshot,
//! re-proposes the interrupted round (identically, being deterministic) and takes every trial the
//! journal already holds instead of re-running it, so a resumed search ends exactly as an uninterrupted
//! one would.

mod behaviour;
pub mod evaluate;
mod evolve;
mod execute;
pub mod journal;
pub mod lineage;
pub mod mutate;
pub mod objective;
pub mod spec;
pub mod state;
pub mod storage;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::data::{Dataset, DatasetKind};
use crate::learner::Rules;
use crate::rule::CompiledRule;
use crate::rule::ir::fnv1a;
use crate::run::RunOptions;
use crate::spec::LearnerSpec;
pub use behaviour::behaviour_hash;
use evaluate::TrialResult;
use execute::Job;
use journal::{Entry, Journal, Stage, Subject};
pub use spec::SearchSpec;
pub use state::{Candidate, Phase, Score, State, score_key, stage_name};

/// Entries kept in the functional-equivalence cache; the oldest are forgotten first, so memory stays
/// flat however long the search runs.
pub const BEHAVIOUR_CACHE: usize = 100_000;
/// Mutation attempts per slot before the slot is left empty (every attempt gave a known rule).
const ATTEMPTS: usize = 32;
/// Rounds in a row without a single new evaluation after which the search stops evolving.
const IDLE_ROUNDS: usize = 50;
/// Held-out seeds are the search seed plus this offset plus their index.
pub const HELD_OUT_SEED_OFFSET: u64 = 1000;

/// Errors that stop a search.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A seed rule does not fit the candidates' learner settings.
    #[error("{path}: cannot train this rule: {why}")]
    Untrainable {
        /// The file.
        path: PathBuf,
        /// Why.
        why: crate::learner::rule_learner::Unfit,
    },
    /// A seed rule has none of the sections the search evolves.
    #[error(
        "{path}: cannot train this rule: it has none of the sections the search evolves ({}), so no \
         mutation can change it; add one, or evolve a section it has",
        evolved.iter().map(|s| format!("{}()", s.function())).collect::<Vec<_>>().join(", ")
    )]
    NothingToEvolve {
        /// The file.
        path: PathBuf,
        /// The sections the search evolves.
        evolved: Vec<crate::rule::Section>,
    },
    /// The journal cannot be read or is damaged.
    #[error(transparent)]
    Journal(#[from] journal::Error),
    /// The output directory cannot be used or written, or a rule file cannot be read.
    #[error(transparent)]
    Files(#[from] crate::files::Error),
    /// The output directory already holds a search and neither `--resume` nor `--force` was given.
    #[error(
        "{dir} already holds a search ({journal}); continue it with --resume, or discard it with --force"
    )]
    Exists {
        /// The directory.
        dir: PathBuf,
        /// Its journal.
        journal: PathBuf,
    },
    /// A shared search cannot end by minutes: each machine's clock would end it at another round.
    #[error(
        "budget.minutes: a search shared through --storage ends by evaluations (each machine's clock would stop it at another round); set budget: (evaluations: N)"
    )]
    MinutesShared,
    /// The database of a shared search.
    #[error(transparent)]
    Storage(#[from] storage::Error),
    /// `--resume` without a journal.
    #[error("{dir}: nothing to resume (no journal.jsonl); start the search without --resume")]
    NothingToResume {
        /// The directory.
        dir: PathBuf,
    },
    /// The spec changed in a way that changes results since the journal was written.
    #[error(
        "{journal}: the journal was written by a different spec (only budget, threads and out may change on --resume); restore the spec, or start afresh with --force"
    )]
    SpecChanged {
        /// The journal.
        journal: PathBuf,
    },
}

impl Error {
    /// Whether the user can fix it by changing their input (exit status 2); the rest are failures
    /// while writing results.
    pub fn is_input(&self) -> bool {
        match self {
            Error::Storage(e) => e.is_input(),
            _ => !matches!(
                self,
                Error::Journal(journal::Error::Io { .. }) | Error::Files(crate::files::Error::Write { .. })
            ),
        }
    }
}

/// What the progress line shows.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// Candidate evaluations done.
    pub evaluations: usize,
    /// The evaluation budget, if any.
    pub budget: Option<usize>,
    /// Evaluations per rung.
    pub per_rung: Vec<usize>,
    /// Functional-equivalence cache hits.
    pub cache_hits: usize,
    /// Trials finished in the current round, and its size.
    pub round_trials: (usize, usize),
    /// The round running.
    pub round: usize,
    /// Best candidate so far: advantage, objective, rung, hash.
    pub best: Option<(f32, f32, usize, String)>,
    /// Wall time spent over every session.
    pub elapsed: f64,
    /// Seconds left, when a budget allows a guess.
    pub eta: Option<f64>,
    /// What the search is doing.
    pub phase: &'static str,
}

/// Sees a search as it goes (the CLI draws the progress line from it).
pub trait Monitor: Sync {
    /// Something changed.
    fn update(&self, progress: &Progress);
    /// A one-line message (a phase change).
    fn note(&self, text: &str);
    /// Something the user should know even when they asked for quiet (a damaged file set aside).
    fn warn(&self, text: &str);
}

/// Where a search writes, and whether it starts afresh.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The output directory.
    pub out: PathBuf,
    /// Continue the search in `out`.
    pub resume: bool,
    /// Discard any search in `out`.
    pub force: bool,
    /// Parallel trials.
    pub threads: usize,
    /// The command line, recorded in the journal header.
    pub command: String,
    /// The database the search is shared through (`--storage`); `None` for a search of this process
    /// alone.
    pub storage: Option<std::sync::Arc<storage::Storage>>,
    /// Follow a shared search without running trials (`--watch`).
    pub watch: bool,
}

/// How a search ended.
#[derive(Debug)]
pub enum Finish {
    /// Finished: budget spent and finalists checked.
    Finished,
    /// Stopped by Ctrl-C; `--resume` continues it.
    Interrupted,
}

/// A running search.
pub struct Search<'a> {
    spec: &'a SearchSpec,
    name: String,
    out: PathBuf,
    threads: usize,
    dataset: &'a Dataset,
    held_out_data: &'a Dataset,
    baselines: Vec<(String, LearnerSpec)>,
    rules: Rules,
    seed_rules: Vec<(PathBuf, CompiledRule)>,
    state: State,
    /// Behind a lock: worker threads append to it.
    journal: std::sync::Mutex<Journal>,
    /// The database a shared search goes through.
    shared: Option<storage::Shared>,
    /// Follow a shared search without running trials.
    watch: bool,
    /// Trials found in the journal that the snapshot has not folded in yet.
    replay: BTreeMap<(Subject, Stage, u64), TrialResult>,
    /// Candidate records already in the journal (not written again on resume).
    journaled_candidates: usize,
    compiled: BTreeMap<usize, CompiledRule>,
    started: Instant,
    elapsed_before: f64,
    options: RunOptions,
    /// Seconds this session spent proposing, folding and snapshotting.
    overhead: f64,
    /// Nanoseconds this session's workers spent appending to the journal.
    journal_nanos: AtomicU64,
    /// This process's hold on `out`.
    _lock: crate::files::DirLock,
}

impl std::fmt::Debug for Search<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Search")
            .field("name", &self.name)
            .field("out", &self.out)
            .finish()
    }
}

/// The hash of everything in a spec that changes results (not the budget, threads or output place).
pub fn spec_hash(spec: &SearchSpec) -> String {
    let mut s = spec.clone();
    s.budget = spec::Budget {
        evaluations: None,
        minutes: None,
    };
    s.threads = None;
    s.out = None;
    s.name = None;
    let json = serde_json::to_string(&s).expect("specs serialise");
    format!("{:016x}", fnv1a(json.as_bytes()))
}

/// Reads the snapshot at `path` for a journal of `journal_lines` lines with spec hash `hash`: `None`
/// when there is none (a search stopped before its first round ended), an error saying why when it
/// cannot be used (damaged, of another spec, or newer than the journal, whose last lines were lost).
fn load_state(path: &Path, hash: &str, journal_lines: usize) -> Result<Option<State>, String> {
    let bytes = match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot be read ({e})")),
        Ok(bytes) => bytes,
    };
    let state: State = serde_json::from_slice(&bytes).map_err(|e| format!("is damaged ({e})"))?;
    if state.spec_hash != hash || state.format != journal::FORMAT {
        return Err("belongs to another spec or format".into());
    }
    if state.journal_lines > journal_lines {
        return Err(format!(
            "was saved when the journal had {} lines, but it has {journal_lines}: its last {} lines were lost",
            state.journal_lines,
            state.journal_lines - journal_lines
        ));
    }
    Ok(Some(state))
}

/// Reads, compiles and checks every rule `spec` names: the seed rules (in order) and the baselines'
/// rules. A rule that does not compile, that training cannot run, or that does not fit the learner
/// settings (a structure schedule without a `prune()` section; a seed with none of the sections the
/// search evolves) is an error naming the file.
pub fn load_rules(spec: &SearchSpec) -> Result<(Vec<(PathBuf, CompiledRule)>, Rules), Error> {
    let mut seed_rules = Vec::with_capacity(spec.seed_rules.len());
    for path in &spec.seed_rules {
        let rule = crate::files::read_rule(path)?;
        if let Some(why) =
            crate::learner::rule_learner::structure_without_score(&rule, spec.learner.structure.as_ref())
        {
            return Err(Error::Untrainable {
                path: path.clone(),
                why,
            });
        }
        if !rule.programs.iter().any(|(s, _)| spec.evolve.contains(s)) {
            return Err(Error::NothingToEvolve {
                path: path.clone(),
                evolved: spec.evolve.clone(),
            });
        }
        seed_rules.push((path.clone(), rule));
    }
    let rules = crate::files::read_rules(&spec.baselines)?;
    Ok((seed_rules, rules))
}

impl<'a> Search<'a> {
    /// Prepares a search: compiles the seed and baseline rules, opens (or resumes) the journal. Nothing
    /// trains yet.
    pub fn start(
        spec: &'a SearchSpec,
        name: &str,
        dataset: &'a Dataset,
        held_out_data: &'a Dataset,
        launch: &Launch,
        monitor: &dyn Monitor,
    ) -> Result<Search<'a>, Error> {
        let (seed_rules, rules) = load_rules(spec)?;
        let baselines: Vec<(String, LearnerSpec)> = crate::spec::labels(&spec.baselines)
            .into_iter()
            .zip(spec.baselines.iter().cloned())
            .collect();

        let out = &launch.out;
        let journal_path = out.join("journal.jsonl");
        let state_path = out.join("state.json");
        let hash = spec_hash(spec);
        if launch.resume && !journal_path.exists() {
            return Err(Error::NothingToResume { dir: out.clone() });
        }
        // Held until the search is dropped: nothing below may race another process in `out`.
        let lock = crate::files::lock_dir(out)?;
        let fresh_state = || State {
            format: journal::FORMAT,
            spec_hash: hash.clone(),
            rounds: 0,
            phase: Phase::Evolving,
            candidates: Vec::new(),
            islands: vec![VecDeque::new(); spec.evolution.islands],
            known: BTreeSet::new(),
            behaviours: BTreeMap::new(),
            behaviour_order: VecDeque::new(),
            promotions: VecDeque::new(),
            baselines: baselines.iter().map(|(l, _)| l.clone()).collect(),
            baseline_trials: BTreeMap::new(),
            baseline_scores: BTreeMap::new(),
            evaluations: 0,
            cache_hits: 0,
            duplicates: 0,
            idle_rounds: 0,
            elapsed: 0.0,
            finalists: Vec::new(),
            journal_lines: 0,
        };
        if launch.storage.is_some() && spec.budget.minutes.is_some() {
            return Err(Error::MinutesShared);
        }
        // A shared search's local journal is rebuilt from the database on every start; what must not
        // be overwritten is a search of this process alone.
        let replaceable = |path: &Path| {
            launch.storage.is_some()
                && journal::read(path).is_ok_and(|c| {
                    matches!(c.entries.first(), Some(Entry::Header { storage: Some(_), spec_hash: h, .. }) if *h == hash)
                })
        };
        // The journal to continue, if any. One that holds no complete line is a search that stopped
        // before it started: nothing is lost by starting it afresh.
        let previous = if launch.force || !journal_path.exists() || replaceable(&journal_path) {
            None
        } else if launch.storage.is_some() {
            return Err(Error::Exists {
                dir: out.clone(),
                journal: journal_path,
            });
        } else {
            match journal::read(&journal_path) {
                Err(journal::Error::Empty { .. }) => {
                    if launch.resume {
                        monitor.warn(&format!(
                            "{} is empty (the search stopped before its first line); starting it afresh",
                            journal_path.display()
                        ));
                    }
                    None
                }
                _ if !launch.resume => {
                    return Err(Error::Exists {
                        dir: out.clone(),
                        journal: journal_path,
                    });
                }
                result => Some(result?),
            }
        };
        let header = Entry::Header {
            format: journal::FORMAT,
            name: name.to_string(),
            spec_hash: hash.clone(),
            spec: Box::new(spec.clone()),
            command: launch.command.clone(),
            storage: launch.storage.as_ref().map(|s| s.url().to_string()),
        };
        // Joined before the local journal is written: a refused join leaves the directory as it was.
        let shared = match &launch.storage {
            Some(storage) => {
                let header = serde_json::to_string(&header).expect("the header is plain data");
                Some(storage.clone().join(name, &hash, &header)?)
            }
            None => None,
        };
        let (journal, state, replay, journaled_candidates) = if let Some(contents) = previous {
            if let Some(w) = &contents.warning {
                monitor.warn(w);
            }
            let Some(Entry::Header { spec_hash: h, .. }) = contents.entries.first() else {
                unreachable!("read checks the header")
            };
            if *h != hash {
                return Err(Error::SpecChanged {
                    journal: journal_path,
                });
            }
            let journal = Journal::open(&journal_path, &contents)?;
            let state = match load_state(&state_path, &hash, contents.entries.len()) {
                Ok(Some(state)) => state,
                Ok(None) => fresh_state(),
                Err(why) => {
                    monitor.warn(&format!(
                        "{}: {why}; rebuilding the search from the journal, which replays every \
                         trial it holds and re-runs any it lacks: the results are exactly those of the \
                         uninterrupted search",
                        state_path.display()
                    ));
                    fresh_state()
                }
            };
            let mut replay = BTreeMap::new();
            let mut candidates = 0;
            for entry in contents.entries {
                match entry {
                    Entry::Candidate(c) => candidates = candidates.max(c.id + 1),
                    Entry::Trial(t) if t.round >= state.rounds => {
                        replay.insert((t.subject, t.stage, t.seed), t.result);
                    }
                    _ => {}
                }
            }
            (journal, state, replay, candidates)
        } else {
            for f in ["state.json", "lineage.dot", "best.rhai"] {
                let _ = std::fs::remove_file(out.join(f));
            }
            (
                Journal::create(&journal_path, &header)?,
                fresh_state(),
                BTreeMap::new(),
                0,
            )
        };
        let options = spec.run_spec(spec.top_tasks(), spec.seed).run_options();
        let elapsed_before = state.elapsed;
        Ok(Search {
            spec,
            name: name.to_string(),
            out: out.clone(),
            threads: launch.threads.max(1),
            dataset,
            held_out_data,
            baselines,
            rules,
            seed_rules,
            state,
            journal: std::sync::Mutex::new(journal),
            shared,
            watch: launch.watch,
            replay,
            journaled_candidates,
            compiled: BTreeMap::new(),
            started: Instant::now(),
            elapsed_before,
            options,
            overhead: 0.0,
            journal_nanos: AtomicU64::new(0),
            _lock: lock,
        })
    }

    /// The fraction of this session's wall time spent on the search itself rather than in trials:
    /// proposing (mutation, validation, hashing), folding results, snapshots, and journal appends
    /// (these happen on worker threads, so their total is divided by the thread count).
    pub fn overhead_fraction(&self) -> f64 {
        let journal = self.journal_nanos.load(Ordering::Relaxed) as f64 * 1e-9 / self.threads as f64;
        (self.overhead + journal) / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    /// The state (for the summary and tests).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The output directory.
    pub fn out(&self) -> &Path {
        &self.out
    }

    fn elapsed(&self) -> f64 {
        self.elapsed_before + self.started.elapsed().as_secs_f64()
    }

    fn seeds(&self) -> Vec<u64> {
        (0..self.spec.seeds as u64).map(|i| self.spec.seed + i).collect()
    }

    fn held_out_seeds(&self) -> Vec<u64> {
        (0..self.spec.held_out.seeds as u64)
            .map(|i| self.spec.seed + HELD_OUT_SEED_OFFSET + i)
            .collect()
    }

    fn budget_left(&self) -> Option<usize> {
        let by_count = self
            .spec
            .budget
            .evaluations
            .map(|b| b.saturating_sub(self.state.evaluations));
        let out_of_time = self
            .spec
            .budget
            .minutes
            .is_some_and(|m| self.elapsed() >= m * 60.0);
        if out_of_time { Some(0) } else { by_count }
    }

    /// Runs rounds until the search finishes or `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool, monitor: &dyn Monitor) -> Result<Finish, Error> {
        loop {
            if self.state.phase == Phase::Done {
                // A finished search resumed with a larger budget evolves again.
                if self.budget_left().is_some_and(|b| b > 0) {
                    self.state.phase = Phase::Evolving;
                } else {
                    return Ok(Finish::Finished);
                }
            }
            if self.state.phase == Phase::Evolving
                && self.state.rounds >= 2
                && (self.budget_left() == Some(0) || self.state.idle_rounds >= IDLE_ROUNDS)
            {
                if self.state.idle_rounds >= IDLE_ROUNDS {
                    monitor
                        .note("every mutation in the last rounds gave a known rule; stopping the evolution");
                }
                self.state.phase = Phase::HeldOut;
            }
            let clock = Instant::now();
            let jobs = match self.state.phase {
                Phase::Evolving => self.propose()?,
                Phase::HeldOut => self.held_out_jobs(),
                Phase::Done => unreachable!("handled above"),
            };
            self.overhead += clock.elapsed().as_secs_f64();
            let Some(results) = self.execute(&jobs, stop, monitor)? else {
                return Ok(Finish::Interrupted);
            };
            let clock = Instant::now();
            self.fold(&jobs, results);
            if self.state.phase == Phase::HeldOut {
                self.state.phase = Phase::Done;
            }
            self.state.rounds += 1;
            self.state.elapsed = self.elapsed();
            self.state.journal_lines = self.journal.lock().unwrap_or_else(|e| e.into_inner()).lines();
            self.snapshot()?;
            self.overhead += clock.elapsed().as_secs_f64();
            monitor.update(&self.progress((0, 0)));
        }
    }

    fn snapshot(&self) -> Result<(), Error> {
        let json = serde_json::to_vec(&self.state).expect("the state is plain data");
        crate::files::write_atomic(&self.out.join("state.json"), &json)?;
        Ok(())
    }

    /// The progress line's numbers.
    pub fn progress(&self, round_trials: (usize, usize)) -> Progress {
        let rungs = self.spec.fidelity.rungs.len();
        let mut per_rung = vec![0; rungs];
        for c in self
            .state
            .candidates
            .iter()
            .filter(|c| c.record.same_as.is_none())
        {
            for (k, s) in c.scores.iter().enumerate() {
                if s.is_some() {
                    per_rung[k] += 1;
                }
            }
        }
        let best = self.leaderboard().first().and_then(|c| {
            c.best_rung()
                .map(|(k, s)| (s.advantage, s.objective, k, c.record.hash.clone()))
        });
        let elapsed = self.elapsed();
        let rate = self.state.evaluations as f64 / elapsed.max(1e-9);
        let by_count = self
            .spec
            .budget
            .evaluations
            .filter(|_| rate > 0.0)
            .map(|b| b.saturating_sub(self.state.evaluations) as f64 / rate);
        let by_time = self.spec.budget.minutes.map(|m| (m * 60.0 - elapsed).max(0.0));
        let eta = match (by_count, by_time) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Progress {
            evaluations: self.state.evaluations,
            budget: self.spec.budget.evaluations,
            per_rung,
            cache_hits: self.state.cache_hits,
            round_trials,
            round: self.state.rounds,
            best,
            elapsed,
            eta,
            phase: match (self.state.phase, self.state.rounds) {
                (Phase::Evolving, 0) => "baselines",
                (Phase::Evolving, 1) => "seed rules",
                (Phase::Evolving, _) => "evolving",
                (Phase::HeldOut, _) => "held-out check",
                (Phase::Done, _) => "done",
            },
        }
    }

    /// Candidates (not cache clones) ranked: highest rung reached first, then objective there.
    pub fn leaderboard(&self) -> Vec<&Candidate> {
        self.state.leaderboard()
    }

    /// The dataset names: the search's and the held-out one.
    pub fn datasets(&self) -> (&str, &str) {
        (&self.dataset.name, &self.held_out_data.name)
    }

    /// The baseline labels.
    pub fn baseline_labels(&self) -> Vec<String> {
        self.baselines.iter().map(|(l, _)| l.clone()).collect()
    }
}

/// The dataset kinds a search loads: its own and the held-out one.
pub fn datasets(spec: &SearchSpec) -> (DatasetKind, DatasetKind) {
    (spec.benchmark.dataset, spec.held_out_dataset())
}
