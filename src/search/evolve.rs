//! Regularised evolution over rounds: proposing a round (promotions, then children bred by tournament
//! and mutation), and folding its results back in (scores, islands, promotions).
//!
//! Every random choice comes from a stream keyed by `(seed, round, slot)` and every fold walks the
//! round's trials in proposal order, so a round's outcome depends on nothing but the state before it.

use std::path::Path;

use super::evaluate::{Ending, TrialResult};
use super::journal::{CandidateRecord, Entry, Origin, Stage, Subject};
use super::state::{Candidate, Phase, Score, baseline_key, score_key};
use super::{ATTEMPTS, BEHAVIOUR_CACHE, Error, HELD_OUT_SEED_OFFSET, Job, Search, behaviour_hash, mutate};
use crate::rng::{Purpose, Rng};
use crate::rule::{CompiledRule, Rule};

impl Search<'_> {
    pub(super) fn add_candidate(
        &mut self,
        compiled: CompiledRule,
        origin: Origin,
        island: usize,
        same_as: Option<usize>,
    ) -> Result<usize, Error> {
        let id = self.state.candidates.len();
        let canonical = &compiled.canonical;
        let hash = canonical.structural_hash();
        let record = CandidateRecord {
            id,
            hash: format!("{hash:016x}"),
            source: canonical.to_rhai(),
            complexity: mutate::complexity(canonical, &self.spec.evolve),
            origin,
            island,
            round: self.state.rounds,
            same_as,
        };
        if id >= self.journaled_candidates {
            self.journal
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .append(&Entry::Candidate(record.clone()))?;
        }
        let behaviour = behaviour_hash(&compiled);
        let rungs = self.spec.fidelity.rungs.len();
        let scores = match same_as {
            Some(src) => self.state.candidates[src].scores.clone(),
            None => vec![None; rungs],
        };
        self.state.known.insert(hash);
        if same_as.is_none() {
            self.state.behaviours.insert(behaviour, id);
            self.state.behaviour_order.push_back(behaviour);
            while self.state.behaviour_order.len() > BEHAVIOUR_CACHE {
                if let Some(old) = self.state.behaviour_order.pop_front() {
                    self.state.behaviours.remove(&old);
                }
            }
        }
        self.state.candidates.push(Candidate {
            record,
            behaviour,
            scheduled: 0,
            scores,
            held_out_seeds: None,
            held_out_dataset: None,
        });
        self.compiled.insert(id, compiled);
        Ok(id)
    }

    pub(super) fn compiled(&mut self, id: usize) -> &CompiledRule {
        let source = &self.state.candidates[id].record.source;
        self.compiled.entry(id).or_insert_with(|| {
            crate::rule::compile(source, Path::new("candidate.rhai"))
                .expect("a candidate's canonical text compiled when it was born")
        })
    }

    pub(super) fn rung_jobs(&self, subject: Subject, rung: usize) -> Vec<Job> {
        self.seeds()
            .into_iter()
            .map(|seed| Job {
                subject: subject.clone(),
                stage: Stage::Rung(rung),
                seed,
                tasks: self.spec.fidelity.rungs[rung],
            })
            .collect()
    }

    /// The next round's trials (and the candidates born for it).
    pub(super) fn propose(&mut self) -> Result<Vec<Job>, Error> {
        let round = self.state.rounds;
        if round == 0 {
            let mut jobs = Vec::new();
            for (label, _) in &self.baselines {
                for rung in 0..self.spec.fidelity.rungs.len() {
                    jobs.extend(self.rung_jobs(Subject::Baseline(label.clone()), rung));
                }
            }
            return Ok(jobs);
        }
        if round == 1 {
            let mut jobs = Vec::new();
            for (path, compiled) in self.seed_rules.clone() {
                let hash = compiled.canonical.structural_hash();
                if self.state.known.contains(&hash) {
                    continue;
                }
                let id = self.add_candidate(compiled, Origin::Seed { path }, 0, None)?;
                jobs.extend(self.rung_jobs(Subject::Candidate(id), 0));
            }
            return Ok(jobs);
        }
        let batch = self.spec.evolution.batch;
        let mut left = self.budget_left().unwrap_or(usize::MAX);
        let mut jobs = Vec::new();
        let mut slots = 0;
        while slots < batch && left > 0 {
            let Some((id, rung)) = self.state.promotions.pop_front() else {
                break;
            };
            jobs.extend(self.rung_jobs(Subject::Candidate(id), rung));
            slots += 1;
            left -= 1;
        }
        for slot in slots..batch {
            if left == 0 {
                break;
            }
            let mut rng = Rng::stream(self.spec.seed, Purpose::Search, &[round as u64, slot as u64]);
            let island = (round * batch + slot) % self.spec.evolution.islands;
            if let Some(id) = self.breed(island, &mut rng)?
                && self.state.candidates[id].record.same_as.is_none()
            {
                jobs.extend(self.rung_jobs(Subject::Candidate(id), 0));
                left -= 1;
            }
        }
        Ok(jobs)
    }

    fn tournament(&self, island: usize, rng: &mut Rng) -> Option<usize> {
        let members = &self.state.islands[island];
        if members.is_empty() {
            return None;
        }
        let sample: Vec<usize> = (0..self.spec.evolution.tournament)
            .map(|_| members[rng.below(members.len())])
            .collect();
        self.fittest(sample.into_iter())
    }

    /// The fittest of `ids`; ties go to the younger candidate.
    fn fittest(&self, ids: impl Iterator<Item = usize>) -> Option<usize> {
        ids.max_by(|a, b| {
            let (fa, fb) = (
                self.state.candidates[*a].fitness(),
                self.state.candidates[*b].fitness(),
            );
            fa.total_cmp(&fb).then(a.cmp(b))
        })
    }

    /// One child for `island`: mutate tournament winners until the child is new, valid and trainable.
    fn breed(&mut self, island: usize, rng: &mut Rng) -> Result<Option<usize>, Error> {
        let weights = self.spec.mutation.as_array();
        for _ in 0..ATTEMPTS {
            let Some(parent) = self.tournament(island, rng) else {
                return Ok(None);
            };
            let kind = mutate::choose_kind(&weights, rng);
            let donor = if kind == mutate::Kind::Crossover {
                let other =
                    (island + 1 + rng.below(self.spec.evolution.islands)) % self.spec.evolution.islands;
                self.tournament(other, rng).or(Some(parent))
            } else {
                None
            };
            let parent_rule: Rule = self.compiled(parent).canonical.clone();
            let donor_rule: Rule = match donor {
                Some(d) => self.compiled(d).canonical.clone(),
                None => parent_rule.clone(),
            };
            let Some((child, detail)) =
                mutate::mutate(&parent_rule, &donor_rule, kind, &self.spec.evolve, rng)
            else {
                continue;
            };
            let child = child.canonical();
            if mutate::complexity(&child, &self.spec.evolve) > self.spec.evolution.max_complexity {
                continue;
            }
            let Ok(compiled) = crate::rule::compile(&child.to_rhai(), Path::new("child.rhai")) else {
                continue;
            };
            let hash = compiled.canonical.structural_hash();
            if self.state.known.contains(&hash) {
                self.state.duplicates += 1;
                continue;
            }
            let behaviour = behaviour_hash(&compiled);
            let same_as = match self.state.behaviours.get(&behaviour) {
                // The twin is evaluated: share its results.
                Some(&src) if self.state.candidates[src].scores[0].is_some() => Some(src),
                // The twin is being evaluated in this very round: try another mutation.
                Some(_) => continue,
                None => None,
            };
            let origin = Origin::Mutation {
                parent,
                donor,
                kind,
                detail,
            };
            let id = self.add_candidate(compiled, origin, island, same_as)?;
            if same_as.is_some() {
                self.state.cache_hits += 1;
                self.join(id);
            }
            return Ok(Some(id));
        }
        Ok(None)
    }

    /// Puts a scored candidate on its island (a seed rule on every island); the oldest member dies when
    /// an island is full.
    fn join(&mut self, id: usize) {
        let c = &self.state.candidates[id];
        let islands: Vec<usize> = match c.record.origin {
            Origin::Seed { .. } => (0..self.state.islands.len()).collect(),
            Origin::Mutation { .. } => vec![c.record.island],
        };
        for island in islands {
            self.join_island(id, island);
        }
    }

    fn join_island(&mut self, id: usize, island: usize) {
        let members = &mut self.state.islands[island];
        members.push_back(id);
        while members.len() > self.spec.evolution.population {
            members.pop_front();
        }
    }

    /// Every `migrate_every` rounds, each island receives a copy of its neighbour's fittest member
    /// (SR.jl-style migration), unless it already holds it.
    fn migrate(&mut self) {
        let every = self.spec.evolution.migrate_every;
        let n = self.state.islands.len();
        if every == 0 || n < 2 || !self.state.rounds.is_multiple_of(every) {
            return;
        }
        let fittest: Vec<Option<usize>> = self
            .state
            .islands
            .iter()
            .map(|members| self.fittest(members.iter().copied()))
            .collect();
        for island in 0..n {
            if let Some(migrant) = fittest[(island + 1) % n]
                && !self.state.islands[island].contains(&migrant)
            {
                self.join_island(migrant, island);
            }
        }
    }

    pub(super) fn finalists(&self) -> Vec<usize> {
        self.state
            .leaderboard()
            .iter()
            .take(self.spec.held_out.finalists)
            .map(|c| c.record.id)
            .collect()
    }

    pub(super) fn held_out_jobs(&mut self) -> Vec<Job> {
        let finalists = self.finalists();
        self.state.finalists = finalists.clone();
        if finalists.is_empty() {
            return Vec::new();
        }
        let tasks = self.spec.held_out_tasks();
        let subjects: Vec<Subject> = finalists
            .iter()
            .map(|id| Subject::Candidate(*id))
            .chain(self.baselines.iter().map(|(l, _)| Subject::Baseline(l.clone())))
            .collect();
        // A search resumed with a larger budget checks its finalists again: who was checked before keeps
        // that result (the same trials would give the same numbers) and is not trained twice.
        let checked = |subject: &Subject, stage: Stage| match subject {
            Subject::Candidate(id) => {
                let c = &self.state.candidates[*id];
                match stage {
                    Stage::HeldOutSeeds => c.held_out_seeds.is_some(),
                    _ => c.held_out_dataset.is_some(),
                }
            }
            Subject::Baseline(label) => self.state.baseline_scores.contains_key(&score_key(label, stage)),
        };
        let mut jobs = Vec::new();
        for subject in subjects {
            if !checked(&subject, Stage::HeldOutSeeds) {
                for seed in self.held_out_seeds() {
                    jobs.push(Job {
                        subject: subject.clone(),
                        stage: Stage::HeldOutSeeds,
                        seed,
                        tasks,
                    });
                }
            }
            if self.spec.held_out.seeds > 0 && !checked(&subject, Stage::HeldOutDataset) {
                jobs.push(Job {
                    subject,
                    stage: Stage::HeldOutDataset,
                    seed: self.spec.seed + HELD_OUT_SEED_OFFSET,
                    tasks,
                });
            }
        }
        jobs
    }

    /// Folds a round's results into the state, in job order.
    pub(super) fn fold(&mut self, jobs: &[Job], results: Vec<TrialResult>) {
        // Group the seeds of each (subject, stage), keeping the order of first appearance.
        type Seeds = Vec<(u64, TrialResult)>;
        let mut groups: Vec<((Subject, Stage), Seeds)> = Vec::new();
        for (job, result) in jobs.iter().zip(results) {
            let key = (job.subject.clone(), job.stage);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push((job.seed, result)),
                None => groups.push((key, vec![(job.seed, result)])),
            }
        }
        // Baselines first: candidates' advantages are measured against them.
        for ((subject, stage), trials) in &groups {
            if let Subject::Baseline(label) = subject {
                for (seed, r) in trials {
                    self.state
                        .baseline_trials
                        .insert(baseline_key(label, *stage, *seed), r.clone());
                }
                let score = self.score(trials, *stage, false);
                self.state.baseline_scores.insert(score_key(label, *stage), score);
            }
        }
        let mut evaluated = 0;
        for ((subject, stage), trials) in &groups {
            let Subject::Candidate(id) = subject else { continue };
            let score = self.score(trials, *stage, true);
            let c = &mut self.state.candidates[*id];
            match stage {
                Stage::Rung(k) => {
                    let first = c.scores[*k].is_none() && *k == 0;
                    c.scores[*k] = Some(score);
                    c.scheduled = c.scheduled.max(*k);
                    evaluated += 1;
                    if first {
                        self.join(*id);
                    }
                }
                Stage::HeldOutSeeds => c.held_out_seeds = Some(score),
                Stage::HeldOutDataset => c.held_out_dataset = Some(score),
            }
        }
        if self.state.phase == Phase::Evolving && self.state.rounds >= 1 {
            self.state.evaluations += evaluated;
            if self.state.rounds >= 2 {
                self.state.idle_rounds = if evaluated == 0 {
                    self.state.idle_rounds + 1
                } else {
                    0
                };
            }
            self.promote();
            self.migrate();
        }
        // Compiled rules are a cache: keep those that can still be trained (alive or promoted).
        let keep: std::collections::BTreeSet<usize> = self
            .state
            .islands
            .iter()
            .flatten()
            .copied()
            .chain(self.state.promotions.iter().map(|(id, _)| *id))
            .collect();
        self.compiled.retain(|id, _| keep.contains(id));
    }

    /// Successive halving (ASHA-style): a candidate whose score at rung k is in the top `promote`
    /// fraction of every completed result at rung k is scheduled for rung k + 1.
    fn promote(&mut self) {
        let rungs = self.spec.fidelity.rungs.len();
        for k in 0..rungs.saturating_sub(1) {
            let mut pool: Vec<(f32, usize)> = self
                .state
                .candidates
                .iter()
                .filter(|c| c.record.same_as.is_none())
                .filter_map(|c| {
                    let s = c.scores[k].as_ref()?;
                    s.completed.then_some((s.objective, c.record.id))
                })
                .collect();
            pool.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let n = (pool.len() as f32 * self.spec.fidelity.promote).floor() as usize;
            for &(_, id) in &pool[..n] {
                let c = &mut self.state.candidates[id];
                if c.scheduled < k + 1 {
                    c.scheduled = k + 1;
                    self.state.promotions.push_back((id, k + 1));
                }
            }
        }
    }

    /// Means over seeds, and the advantage over the best baseline at the same stage on the same seeds.
    fn score(&self, trials: &[(u64, TrialResult)], stage: Stage, against_baselines: bool) -> Score {
        let objective = self.spec.objective;
        let best = against_baselines
            .then(|| {
                self.state
                    .baselines
                    .iter()
                    .filter_map(|l| Some((l, self.state.baseline_scores.get(&score_key(l, stage))?)))
                    .max_by(|a, b| a.1.objective.total_cmp(&b.1.objective))
                    .map(|(l, _)| l.clone())
            })
            .flatten();
        let mut per_seed = Vec::new();
        let mut advantages = Vec::new();
        for (seed, r) in trials {
            per_seed.push(r.objective);
            let reference = best
                .as_ref()
                .and_then(|l| self.state.baseline_trials.get(&baseline_key(l, stage, *seed)))
                .map(|b| match r.ending {
                    // An aborted trial is compared over the tasks it ran.
                    Ending::Aborted { task } => b.objective_over(objective, task.max(1)),
                    _ => b.objective,
                })
                .unwrap_or(0.0);
            advantages.push(r.objective - reference);
        }
        let mean = |v: &[f32]| v.iter().map(|x| *x as f64).sum::<f64>() as f32 / v.len().max(1) as f32;
        let completed = trials.iter().all(|(_, r)| r.ending == Ending::Completed);
        let endings: Vec<String> = trials
            .iter()
            .map(|(_, r)| match r.ending {
                Ending::Completed => "completed".to_string(),
                Ending::Aborted { task } => format!("aborted after {task} tasks"),
                Ending::Diverged { task } => format!("diverged in task {task}"),
            })
            .collect();
        let mut distinct = endings.clone();
        distinct.dedup();
        Score {
            objective: mean(&per_seed),
            advantage: mean(&advantages),
            per_seed,
            completed,
            ending: if distinct.len() == 1 {
                distinct.remove(0)
            } else {
                endings.join(", ")
            },
        }
    }
}
