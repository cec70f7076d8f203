//! Running a round's trials in parallel: longest first, each journaled (and fsynced) the moment it
//! finishes, trials already in the journal taken from it instead of re-run. With `--storage`, the
//! trials are shared with other processes through the database ([`super::storage`]): each process
//! claims what is free, and journals what anyone recorded.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::evaluate::{Bench, Trainee, TrialResult, running_means};
use super::journal::{Entry, Stage, Subject, TrialRecord};
use super::state::{baseline_key, score_key};
use super::storage::{Posted, Shared};
use super::{Error, Monitor, Search};
use crate::data::Dataset;
use crate::learner::Rules;
use crate::rule::CompiledRule;
use crate::spec::LearnerSpec;

/// A trial to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Job {
    pub(super) subject: Subject,
    pub(super) stage: Stage,
    pub(super) seed: u64,
    pub(super) tasks: usize,
}

/// What every trial of a round needs, gathered once before the workers start.
struct Round<'r> {
    jobs: &'r [Job],
    round: usize,
    trainees: BTreeMap<usize, CompiledRule>,
    references: Vec<Option<Vec<f32>>>,
    bench: Bench<'r>,
    baselines: &'r [(String, LearnerSpec)],
    rules: &'r Rules,
    dataset: &'r Dataset,
    held_out: &'r Dataset,
    top_tasks: usize,
}

impl Round<'_> {
    /// Runs job `i`; `None` when stopped.
    fn run(&self, i: usize) -> Option<TrialRecord> {
        let job = &self.jobs[i];
        let trainee = match &job.subject {
            Subject::Candidate(id) => Trainee::Candidate(&self.trainees[id]),
            Subject::Baseline(label) => {
                let spec = &self
                    .baselines
                    .iter()
                    .find(|(l, _)| l == label)
                    .expect("baseline jobs name known baselines")
                    .1;
                Trainee::Baseline(spec, self.rules)
            }
        };
        let data = if job.stage == Stage::HeldOutDataset {
            self.held_out
        } else {
            self.dataset
        };
        let clock = Instant::now();
        // The report draws accuracy matrices for the top rung and the held-out check; journaling them
        // for every trial would only grow the journal.
        let result = self.bench.trial(
            trainee,
            data,
            job.tasks,
            job.seed,
            self.references[i].as_deref(),
            job.tasks == self.top_tasks || !matches!(job.stage, Stage::Rung(_)),
        )?;
        Some(TrialRecord {
            round: self.round,
            subject: job.subject.clone(),
            stage: job.stage,
            dataset: data.name.clone(),
            seed: job.seed,
            result,
            seconds: clock.elapsed().as_secs_f64(),
        })
    }
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

    /// The compiled rules of the candidates `jobs` train.
    fn trainees(&mut self, jobs: &[Job]) -> BTreeMap<usize, CompiledRule> {
        let mut trainees = BTreeMap::new();
        for job in jobs {
            if let Subject::Candidate(id) = job.subject
                && let std::collections::btree_map::Entry::Vacant(slot) = trainees.entry(id)
            {
                slot.insert(self.compiled(id).clone());
            }
        }
        trainees
    }

    /// What every trial of `jobs` needs: the compiled candidates and early-stopping references.
    fn round<'r>(
        &'r self,
        jobs: &'r [Job],
        trainees: BTreeMap<usize, CompiledRule>,
        stop: &'r AtomicBool,
    ) -> Round<'r> {
        let references = jobs
            .iter()
            .map(|job| match (&job.subject, job.stage) {
                (Subject::Candidate(_), Stage::Rung(_)) => self.reference(job.stage, job.seed),
                _ => None,
            })
            .collect();
        Round {
            jobs,
            round: self.state.rounds,
            trainees,
            references,
            bench: Bench {
                spec: self.spec,
                options: self.options.clone(),
                stop,
            },
            baselines: &self.baselines,
            rules: &self.rules,
            dataset: self.dataset,
            held_out: self.held_out_data,
            top_tasks: self.spec.top_tasks(),
        }
    }

    /// Runs the jobs in parallel, longest first, journaling each as it finishes. `None` when stopped.
    pub(super) fn execute(
        &mut self,
        jobs: &[Job],
        stop: &AtomicBool,
        monitor: &dyn Monitor,
    ) -> Result<Option<Vec<TrialResult>>, Error> {
        if self.shared.is_some() {
            return self.execute_shared(jobs, stop, monitor);
        }
        let mut results: Vec<Option<TrialResult>> = jobs
            .iter()
            .map(|j| self.replay.remove(&(j.subject.clone(), j.stage, j.seed)))
            .collect();
        let mut pending: Vec<usize> = (0..jobs.len()).filter(|i| results[*i].is_none()).collect();
        // Longest first: the round ends when its last trial does.
        pending.sort_by_key(|i| std::cmp::Reverse(jobs[*i].tasks));
        let total = jobs.len();
        let done = AtomicUsize::new(total - pending.len());
        let next = AtomicUsize::new(0);
        let shared_results = Mutex::new(&mut results);
        let progress = Mutex::new(self.progress((done.load(Ordering::Relaxed), total)));
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        // No more threads than trials to run: 99,999 idle threads only cost time to start.
        let threads = self.threads.min(pending.len()).max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("starting the worker threads");
        let trainees = self.trainees(jobs);
        let round = self.round(jobs, trainees, stop);
        let journal = &self.journal;
        let (started, elapsed_before) = (self.started, self.elapsed_before);
        let journal_nanos = &self.journal_nanos;
        pool.scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|_| {
                    loop {
                        if stop.load(Ordering::Relaxed) || lock(&failure).is_some() {
                            return;
                        }
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = pending.get(k) else { return };
                        let Some(record) = round.run(i) else { return };
                        let append = Instant::now();
                        let result = record.result.clone();
                        if let Err(e) = lock(journal).append(&Entry::Trial(Box::new(record))) {
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

    /// [`Search::execute`] with the trials shared through the database: post the round (or find it
    /// posted), then until every trial has a record, claim a free one and run it, or wait, taking in
    /// what other processes record. A watching process claims nothing.
    fn execute_shared(
        &mut self,
        jobs: &[Job],
        stop: &AtomicBool,
        monitor: &dyn Monitor,
    ) -> Result<Option<Vec<TrialResult>>, Error> {
        let trainees = self.trainees(jobs);
        let shared: &Shared = self.shared.as_ref().expect("called with storage");
        let number = self.state.rounds;
        let posted: Vec<Posted> = jobs
            .iter()
            .map(|j| Posted {
                job: serde_json::to_string(j).expect("a job is plain data"),
                tasks: j.tasks,
            })
            .collect();
        shared.post_round(number, &posted)?;
        let total = jobs.len();
        let results: Mutex<Vec<Option<TrialResult>>> = Mutex::new(vec![None; total]);
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        let finished = AtomicBool::new(false);
        let progress = Mutex::new(self.progress((0, total)));
        let round = self.round(jobs, trainees, stop);
        let journal = &self.journal;
        let (started, elapsed_before) = (self.started, self.elapsed_before);
        let workers = if self.watch {
            0
        } else {
            self.threads.min(total).max(1)
        };
        let fail = |e: Error| {
            lock(&failure).get_or_insert(e);
        };
        // Takes records (ours or other processes') into the journal and the results, each once; the
        // database already holds them durably, so one fsync covers the batch.
        let take = |records: Vec<(usize, String)>| -> Result<(), Error> {
            let mut parsed = Vec::with_capacity(records.len());
            for (slot, text) in records {
                let record: TrialRecord = serde_json::from_str(&text)
                    .map_err(|e| Error::from(shared.unreadable(number, slot, e.to_string())))?;
                let job = &jobs[slot];
                if record.round != number
                    || record.subject != job.subject
                    || record.stage != job.stage
                    || record.seed != job.seed
                {
                    return Err(shared
                        .unreadable(number, slot, "it is of another trial".into())
                        .into());
                }
                parsed.push((slot, record));
            }
            let mut all = lock(&results);
            parsed.retain(|(slot, _)| all[*slot].is_none());
            if parsed.is_empty() {
                return Ok(());
            }
            let mut entries = Vec::with_capacity(parsed.len());
            for (slot, record) in parsed {
                all[slot] = Some(record.result.clone());
                entries.push(Entry::Trial(Box::new(record)));
            }
            if let Err(e) = lock(journal).append_all(&entries) {
                // Not journaled, so not counted: the round is taken in again on the next start.
                return Err(e.into());
            }
            let known = all.iter().filter(|r| r.is_some()).count();
            drop(all);
            let mut p = lock(&progress);
            p.round_trials = (known, total);
            p.elapsed = elapsed_before + started.elapsed().as_secs_f64();
            monitor.update(&p);
            Ok(())
        };
        // Takes in every record not yet known; true when the round is complete.
        let sync = || -> Result<bool, Error> {
            let known: Vec<usize> = lock(&results)
                .iter()
                .enumerate()
                .filter_map(|(k, r)| r.is_some().then_some(k))
                .collect();
            if known.len() == total {
                return Ok(true);
            }
            // Fetch only when there is something new: the count costs the server a fraction of what
            // comparing every recorded slot with `known` does.
            if total - shared.unrecorded(number)? == known.len() {
                return Ok(false);
            }
            take(shared.records(number, &known)?)?;
            Ok(lock(&results).iter().all(Option::is_some))
        };
        let known = || lock(&results).iter().filter(|r| r.is_some()).count();
        let nap = |d: Duration| {
            let until = Instant::now() + d;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) && !finished.load(Ordering::Relaxed)
            {
                std::thread::sleep(
                    Duration::from_millis(10).min(until.saturating_duration_since(Instant::now())),
                );
            }
        };
        // Workers: claim, run, record; when nothing is free, wait for the others' records.
        let work = || {
            let mut idle = FIRST_POLL;
            loop {
                if stop.load(Ordering::Relaxed) || finished.load(Ordering::Relaxed) {
                    return;
                }
                let step = || -> Result<Step, Error> {
                    let before = known();
                    if sync()? {
                        return Ok(Step::Done);
                    }
                    let claimed = if workers > 0 { shared.claim(number)? } else { None };
                    let Some(slot) = claimed else {
                        return Ok(if known() > before {
                            Step::Worked
                        } else {
                            Step::Waiting
                        });
                    };
                    if lock(&results)[slot].is_none() {
                        let Some(record) = round.run(slot) else {
                            return Ok(Step::Waiting);
                        };
                        let text = serde_json::to_string(&record).expect("a record is plain data");
                        let counted = shared.record(number, slot, &text)?;
                        take(vec![(slot, counted)])?;
                    }
                    Ok(Step::Worked)
                };
                match step() {
                    Ok(Step::Done) => {
                        finished.store(true, Ordering::Relaxed);
                        return;
                    }
                    Ok(Step::Worked) => idle = FIRST_POLL,
                    // Nothing free and nothing new: wait for the others' records, polling more slowly
                    // the longer nothing changes.
                    Ok(Step::Waiting) => {
                        nap(idle);
                        idle = (idle * 2).min(LAST_POLL);
                    }
                    Err(e) => {
                        fail(e);
                        finished.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        };
        std::thread::scope(|scope| {
            // Heartbeat: keeps this process's claims alive while it runs them.
            scope.spawn(|| {
                while !finished.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                    nap(shared.heartbeat_interval());
                    if finished.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Err(e) = shared.heartbeat() {
                        fail(e.into());
                        finished.store(true, Ordering::Relaxed);
                    }
                }
            });
            for _ in 0..workers.max(1) {
                scope.spawn(work);
            }
        });
        if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
        if results.iter().any(Option::is_none) {
            // Stopped: give the claims back so the other processes take them now, not after the lease.
            let _ = shared.release();
            return Ok(None);
        }
        Ok(Some(results.into_iter().flatten().collect()))
    }
}

/// What one step of a shared-search worker did.
enum Step {
    /// The round is complete.
    Done,
    /// Ran a trial or took in new records.
    Worked,
    /// Nothing to claim and nothing new.
    Waiting,
}

/// The first and the longest wait between two polls for other processes' records: short enough that a
/// round's end costs little, long enough that a thousand idle processes cost the database a few
/// thousand light queries per second.
const FIRST_POLL: Duration = Duration::from_millis(20);
const LAST_POLL: Duration = Duration::from_millis(250);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
