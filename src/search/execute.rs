//! Running a round's trials in parallel: longest first, each journaled (and fsynced) the moment it
//! finishes, trials already in the journal taken from it instead of re-run.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use super::evaluate::{Bench, Trainee, TrialResult, running_means};
use super::journal::{Entry, Stage, Subject, TrialRecord};
use super::state::{baseline_key, score_key};
use super::{Error, Monitor, Search};
use crate::rule::CompiledRule;

/// A trial to run.
#[derive(Clone, Debug)]
pub(super) struct Job {
    pub(super) subject: Subject,
    pub(super) stage: Stage,
    pub(super) seed: u64,
    pub(super) tasks: usize,
}

impl Search<'_> {
    /// The weakest baseline's running objective on `seed` at `stage`, for early stopping.
    fn reference(&self, stage: Stage, seed: u64) -> Option<Vec<f32>> {
        let weakest = self
            .state
            .baselines
            .iter()
            .filter_map(|l| Some((l, self.state.baseline_scores.get(&score_key(l, stage))?)))
            .min_by(|a, b| a.1.objective.total_cmp(&b.1.objective))?;
        let trial = self
            .state
            .baseline_trials
            .get(&baseline_key(weakest.0, stage, seed))?;
        Some(running_means(&trial.task_scores(self.spec.objective)))
    }

    /// Runs the jobs in parallel, longest first, journaling each as it finishes. `None` when stopped.
    pub(super) fn execute(
        &mut self,
        jobs: &[Job],
        stop: &AtomicBool,
        monitor: &dyn Monitor,
    ) -> Result<Option<Vec<TrialResult>>, Error> {
        let mut results: Vec<Option<TrialResult>> = jobs
            .iter()
            .map(|j| self.replay.remove(&(j.subject.clone(), j.stage, j.seed)))
            .collect();
        let mut pending: Vec<usize> = (0..jobs.len()).filter(|i| results[*i].is_none()).collect();
        // Longest first: the round ends when its last trial does.
        pending.sort_by_key(|i| std::cmp::Reverse(jobs[*i].tasks));
        let mut trainees: BTreeMap<usize, CompiledRule> = BTreeMap::new();
        let mut references: Vec<Option<Vec<f32>>> = Vec::with_capacity(jobs.len());
        for job in jobs {
            if let Subject::Candidate(id) = job.subject
                && let std::collections::btree_map::Entry::Vacant(slot) = trainees.entry(id)
            {
                slot.insert(self.compiled(id).clone());
            }
            references.push(match (&job.subject, job.stage) {
                (Subject::Candidate(_), Stage::Rung(_)) => self.reference(job.stage, job.seed),
                _ => None,
            });
        }
        let bench = Bench {
            spec: self.spec,
            options: self.options.clone(),
            stop,
        };
        let total = jobs.len();
        let done = AtomicUsize::new(total - pending.len());
        let next = AtomicUsize::new(0);
        let shared_results = Mutex::new(&mut results);
        let progress = Mutex::new(self.progress((done.load(Ordering::Relaxed), total)));
        let journal = Mutex::new(&mut self.journal);
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        let round = self.state.rounds;
        // No more threads than trials to run: 99,999 idle threads only cost time to start.
        let threads = self.threads.min(pending.len()).max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("starting the worker threads");
        let baselines = &self.baselines;
        let rules = &self.rules;
        let (dataset, held_out) = (self.dataset, self.held_out_data);
        let started = self.started;
        let journal_nanos = &self.journal_nanos;
        // The report draws accuracy matrices for the top rung and the held-out check; journaling them
        // for every trial would only grow the journal.
        let top_tasks = self.spec.top_tasks();
        let elapsed_before = self.elapsed_before;
        pool.scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|_| {
                    loop {
                        if stop.load(Ordering::Relaxed) || lock(&failure).is_some() {
                            return;
                        }
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = pending.get(k) else { return };
                        let job = &jobs[i];
                        let trainee = match &job.subject {
                            Subject::Candidate(id) => Trainee::Candidate(&trainees[id]),
                            Subject::Baseline(label) => {
                                let spec = &baselines
                                    .iter()
                                    .find(|(l, _)| l == label)
                                    .expect("baseline jobs name known baselines")
                                    .1;
                                Trainee::Baseline(spec, rules)
                            }
                        };
                        let data = if job.stage == Stage::HeldOutDataset {
                            held_out
                        } else {
                            dataset
                        };
                        let clock = Instant::now();
                        let Some(result) = bench.trial(
                            trainee,
                            data,
                            job.tasks,
                            job.seed,
                            references[i].as_deref(),
                            job.tasks == top_tasks || !matches!(job.stage, Stage::Rung(_)),
                        ) else {
                            return;
                        };
                        let record = TrialRecord {
                            round,
                            subject: job.subject.clone(),
                            stage: job.stage,
                            dataset: data.name.clone(),
                            seed: job.seed,
                            result: result.clone(),
                            seconds: clock.elapsed().as_secs_f64(),
                        };
                        let append = Instant::now();
                        if let Err(e) = lock(&journal).append(&Entry::Trial(Box::new(record))) {
                            *lock(&failure) = Some(e.into());
                            return;
                        }
                        journal_nanos.fetch_add(append.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        lock(&shared_results)[i] = Some(result);
                        let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                        let mut p = lock(&progress);
                        p.round_trials = (finished, total);
                        p.elapsed = elapsed_before + started.elapsed().as_secs_f64();
                        monitor.update(&p);
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        if results.iter().any(Option::is_none) {
            return Ok(None);
        }
        Ok(Some(results.into_iter().flatten().collect()))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
