//! One learner over one task stream: train each task, test, measure, record.
//!
//! The loop per task: build the task → probe the representation at its start → train on
//! its examples (online accuracy from the training passes) → test it and a sample of earlier tasks
//! (every task after the last one) → record. Divergence (a non-finite loss or weight) ends the run with
//! [`Status::Diverged`]; it is a result, not an error. The run does no IO: an [`Observer`] sees progress
//! and each finished task, and can ask the loop to stop between two updates.

use std::time::Instant;

use crate::data::{Batch, TaskStream};
use crate::learner::{Learner, UpdateContext};
use crate::metrics::{self, AccuracyMatrix, TaskRecord};
use crate::rng::{Purpose, Rng};
use crate::snn::{Pass, Workspace};

/// Measurement settings of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOptions {
    /// Earlier tasks tested after each task (see [`metrics::retention_sample`]).
    pub retention_sample: usize,
    /// Probe batch size for representation metrics.
    pub probe_size: usize,
    /// ReDo dormancy threshold τ.
    pub dormant_threshold: f32,
    /// Whether the learner is told where tasks begin.
    pub boundaries_visible: bool,
    /// Examples per forward pass when testing.
    pub eval_batch: usize,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum Status {
    /// Every task was trained and tested.
    Completed,
    /// Stopped on request; every finished task is recorded.
    Interrupted,
    /// The learner diverged during `task` (numbered from 1).
    Diverged {
        /// The task during which it diverged.
        task: usize,
        /// What was non-finite.
        reason: String,
    },
}

/// Everything a run produced.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// One record per finished task.
    pub records: Vec<TaskRecord>,
    /// The accuracy matrix over finished tasks.
    pub matrix: AccuracyMatrix,
    /// How the run ended.
    pub status: Status,
}

/// Sees a run as it goes. Every method has a do-nothing default.
pub trait Observer {
    /// Task `task` (from 0) of `tasks` begins.
    fn task_started(&mut self, _task: usize, _tasks: usize) {}
    /// Training progress within the current task.
    fn progress(&mut self, _task: usize, _samples_done: usize, _samples_total: usize, _online_accuracy: f32) {
    }
    /// A task finished and was measured.
    fn task_finished(&mut self, _record: &TaskRecord, _matrix: &AccuracyMatrix) {}
    /// Polled between updates; `true` stops the run, discarding the unfinished task.
    fn should_stop(&mut self) -> bool {
        false
    }
}

/// Accuracy of `learner` on task `task`'s test set `set`, predicted in chunks of `eval_batch`.
///
/// Each chunk's input is named after the task and the chunk ([`Workspace::name_input`]): `ws` lives
/// for one run, and within a run a task's test set is the same images whenever it is built, so the
/// first layer finds a chunk's nonzero entries once for all the tests of its task.
fn accuracy(
    learner: &dyn Learner,
    (task, set): (usize, &Batch),
    eval_batch: usize,
    ws: &mut Workspace,
    rng: &mut Rng,
) -> f32 {
    let pixels = set.images.len() / set.len().max(1);
    let chunks = set.len().div_ceil(eval_batch.max(1));
    let mut predictions = Vec::new();
    let mut correct = 0usize;
    for (c, (images, labels)) in set
        .images
        .chunks(eval_batch * pixels)
        .zip(set.labels.chunks(eval_batch))
        .enumerate()
    {
        ws.name_input(Some(task * chunks + c));
        learner.predict(images, ws, rng, &mut predictions);
        correct += predictions.iter().zip(labels).filter(|(p, y)| p == y).count();
    }
    ws.name_input(None);
    correct as f32 / set.len() as f32
}

/// The earlier tasks tested after training task `t` (0-based) of `tasks`: every one after the last
/// task, else [`metrics::retention_sample`].
fn tested_before(t: usize, tasks: usize, retention_sample: usize) -> Vec<usize> {
    if t + 1 == tasks {
        (0..t).collect()
    } else {
        metrics::retention_sample(t, retention_sample)
    }
}

/// Test sets kept from one task's tests to the next. The tasks tested after consecutive tasks are
/// mostly the same (the recent half of [`metrics::retention_sample`]), and building a test set
/// (a permuted copy of every test image) cost 8% of a 200-task run when each was built anew.
/// Only sets the next task's tests need are kept, at most [`TestSets::KEEP_BYTES`] of them.
#[derive(Default)]
struct TestSets {
    kept: std::collections::BTreeMap<usize, Batch>,
    /// A buffer to build the next set into.
    spare: Batch,
}

impl TestSets {
    /// Test images kept per run at most: 21 sets of 2,000 pooled MNIST images are 33 MB; of
    /// full-size ones, 132 MB, of which the most recent sets are kept.
    const KEEP_BYTES: usize = 64 << 20;

    /// Task `j`'s test set: kept from earlier, or built.
    fn take(&mut self, stream: &TaskStream, j: usize) -> Batch {
        self.kept.remove(&j).unwrap_or_else(|| {
            let mut set = std::mem::take(&mut self.spare);
            stream.fill_test_set(j, &mut set);
            set
        })
    }

    /// Gives back task `j`'s set after testing: kept if it is among the sets [`TestSets::keep_only`]
    /// would keep for `next` (the tasks the next tests need, ascending).
    fn give_back(&mut self, j: usize, set: Batch, next: &[usize]) {
        if Self::wanted(next, Self::bytes(&set)).contains(&j) {
            self.kept.insert(j, set);
        } else {
            self.spare = set;
        }
    }

    /// Drops the kept sets other than those `next` needs, of which the most recent that fit in
    /// [`TestSets::KEEP_BYTES`].
    fn keep_only(&mut self, next: &[usize]) {
        let Some(bytes) = self.kept.values().next().map(Self::bytes) else {
            return;
        };
        let wanted = Self::wanted(next, bytes);
        self.kept.retain(|j, _| wanted.contains(j));
    }

    /// The most recent tasks of `next` whose sets, of `bytes` each, fit in the budget.
    fn wanted(next: &[usize], bytes: usize) -> &[usize] {
        let fit = (Self::KEEP_BYTES / bytes.max(1)).min(next.len());
        &next[next.len() - fit..]
    }

    fn bytes(set: &Batch) -> usize {
        set.images.len() * std::mem::size_of::<f32>() + set.labels.len()
    }
}

/// Trains `learner` over every task of `stream`.
pub fn run(
    stream: &TaskStream,
    learner: &mut dyn Learner,
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> RunOutcome {
    let config = stream.config().clone();
    let seed = config.seed;
    let mut records = Vec::with_capacity(config.tasks);
    let mut matrix = AccuracyMatrix::default();
    let mut eval_ws = Workspace::default();
    let mut test_sets = TestSets::default();
    let mut batch = Batch::default();
    let samples_total = config.train_per_task * config.epochs;
    let updates_per_task = config.epochs * config.train_per_task.div_ceil(config.batch);
    let report_every = (updates_per_task / 200).max(1);
    for t in 0..config.tasks {
        observer.task_started(t, config.tasks);
        let task = stream.task(t);
        let task_no = t + 1;

        let probe = stream.probe(&task, options.probe_size);
        let mut probe_rng = Rng::stream(seed, Purpose::Probe, &[t as u64]);
        learner.network().forward(
            &probe.images,
            probe.len(),
            &mut eval_ws,
            Pass::Eval,
            &mut probe_rng,
        );
        let present: Vec<Option<&[bool]>> = (0..learner.network().layers().len())
            .map(|l| learner.present(l))
            .collect();
        let start = metrics::representation(
            learner.network(),
            &eval_ws,
            &probe.images,
            probe.len(),
            options.dormant_threshold,
            &present,
        );

        let clock = Instant::now();
        let (mut seen, mut correct, mut loss_sum, mut updates) = (0usize, 0usize, 0.0f64, 0usize);
        for epoch in 0..config.epochs {
            let order = stream.epoch_order(&task, epoch);
            for indices in order.chunks(config.batch) {
                if observer.should_stop() {
                    return RunOutcome {
                        records,
                        matrix,
                        status: Status::Interrupted,
                    };
                }
                stream.fill_train(&task, indices, &mut batch);
                let context = UpdateContext {
                    task: t,
                    step: updates,
                    new_task: options.boundaries_visible && updates == 0,
                    updates_per_task,
                };
                let mut rng = Rng::stream(seed, Purpose::Encoding, &[t as u64, updates as u64]);
                let stats = learner.update(&batch, context, &mut rng);
                if !stats.loss.is_finite() {
                    return RunOutcome {
                        records,
                        matrix,
                        status: Status::Diverged {
                            task: task_no,
                            reason: format!("loss became {} at update {updates}", stats.loss),
                        },
                    };
                }
                seen += indices.len();
                correct += stats.correct;
                loss_sum += stats.loss as f64;
                updates += 1;
                if updates % report_every == 0 {
                    observer.progress(t, seen, samples_total, correct as f32 / seen as f32);
                }
            }
        }
        let train_seconds = clock.elapsed().as_secs_f64();
        if !metrics::is_finite(learner.network()) {
            return RunOutcome {
                records,
                matrix,
                status: Status::Diverged {
                    task: task_no,
                    reason: "a weight became non-finite".into(),
                },
            };
        }

        let tested = tested_before(t, config.tasks, options.retention_sample);
        // The tasks the next task's tests need (none after the last).
        let next = if t + 1 < config.tasks {
            tested_before(t + 1, config.tasks, options.retention_sample)
        } else {
            Vec::new()
        };
        let mut row = vec![None; t + 1];
        for &j in tested.iter().chain(std::iter::once(&t)) {
            let test = test_sets.take(stream, j);
            let mut rng = Rng::stream(seed, Purpose::Encoding, &[t as u64, (1 << 40) + j as u64]);
            row[j] = Some(accuracy(
                &*learner,
                (j, &test),
                options.eval_batch,
                &mut eval_ws,
                &mut rng,
            ));
            test_sets.give_back(j, test, &next);
        }
        test_sets.keep_only(&next);
        let plasticity = row[t].expect("the current task is always tested");
        let retention = (!tested.is_empty()).then(|| {
            tested.iter().map(|&j| row[j].expect("tested above")).sum::<f32>() / tested.len() as f32
        });
        matrix.push_row(row);
        let record = TaskRecord {
            task: task_no,
            plasticity,
            retention,
            retention_tasks: tested.iter().map(|j| j + 1).collect(),
            online_accuracy: correct as f32 / seen.max(1) as f32,
            train_loss: (loss_sum / updates.max(1) as f64) as f32,
            start,
            mean_abs_weight: metrics::mean_abs_weight(learner.network()),
            density: {
                let network = learner.network();
                let present: Vec<Option<&[bool]>> =
                    (0..network.layers().len()).map(|l| learner.present(l)).collect();
                metrics::density(network, &present)
            },
            samples_per_second: seen as f64 / train_seconds.max(1e-9),
        };
        observer.task_finished(&record, &matrix);
        records.push(record);
    }
    RunOutcome {
        records,
        matrix,
        status: Status::Completed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{StreamConfig, synthetic};
    use crate::learner;
    use crate::snn::{Encoding, Init, Network, NetworkConfig, Neuron};

    fn setup(tasks: usize, seed: u64) -> RunOutcome {
        let data = synthetic(300, 100).pooled(2).expect("2 divides 16");
        let stream = TaskStream::new(
            &data,
            StreamConfig {
                tasks,
                train_per_task: 300,
                test_per_task: 100,
                batch: 10,
                epochs: 2,
                seed,
            },
        )
        .expect("sizes fit");
        let config = NetworkConfig::test_lif(64, vec![48], 10);
        let mut learner = learner::build(
            &crate::spec::LearnerSpec::Sgd { lr: 0.1 },
            Network::new(config, seed),
            seed,
            &Default::default(),
        );
        let options = RunOptions {
            retention_sample: 2,
            probe_size: 50,
            dormant_threshold: 0.025,
            boundaries_visible: true,
            eval_batch: 64,
        };
        run(&stream, &mut *learner, &options, &mut NoObserver)
    }

    struct NoObserver;
    impl Observer for NoObserver {}

    #[test]
    fn kept_test_sets_are_the_sets_and_only_those_the_next_tests_need() {
        let data = synthetic(30, 40).pooled(2).expect("2 divides 16");
        let config = StreamConfig {
            tasks: 40,
            train_per_task: 30,
            test_per_task: 40,
            batch: 10,
            epochs: 1,
            seed: 3,
        };
        let stream = TaskStream::new(&data, config).expect("sizes fit");
        let mut sets = TestSets::default();
        let (mut taken, mut kept_hits) = (0, 0);
        for t in 0..40 {
            let next = if t + 1 < 40 {
                tested_before(t + 1, 40, 6)
            } else {
                vec![]
            };
            for j in tested_before(t, 40, 6).into_iter().chain([t]) {
                kept_hits += usize::from(sets.kept.contains_key(&j));
                let set = sets.take(&stream, j);
                let fresh = stream.test_set(j);
                assert_eq!(
                    (&set.images, &set.labels),
                    (&fresh.images, &fresh.labels),
                    "task {j} after {t}"
                );
                taken += 1;
                sets.give_back(j, set, &next);
            }
            sets.keep_only(&next);
            assert!(sets.kept.keys().all(|j| next.contains(j)));
        }
        // The recent half of every sample was tested the task before.
        assert!(
            kept_hits * 2 > taken,
            "{kept_hits} of {taken} taken from the kept sets"
        );
    }

    #[test]
    fn learns_the_synthetic_tasks_and_fills_the_matrix() {
        let out = setup(4, 1);
        assert_eq!(out.status, Status::Completed);
        assert_eq!(out.records.len(), 4);
        assert!(
            out.records[0].plasticity > 0.3,
            "task 1 plasticity {} (chance is 0.1)",
            out.records[0].plasticity
        );
        assert_eq!(out.records[2].retention_tasks, vec![1, 2]);
        // The last task tests every earlier task.
        assert_eq!(out.records[3].retention_tasks, vec![1, 2, 3]);
        assert!(out.matrix.rows[3].iter().all(Option::is_some));
        assert!(out.records.iter().all(|r| r.start.effective_rank[0] >= 1.0));
    }

    #[test]
    fn same_seed_same_metrics_different_seed_different_metrics() {
        let strip = |o: RunOutcome| -> Vec<(f32, Option<f32>, f32)> {
            o.records
                .iter()
                .map(|r| (r.plasticity, r.retention, r.online_accuracy))
                .collect()
        };
        assert_eq!(strip(setup(2, 3)), strip(setup(2, 3)));
        assert_ne!(strip(setup(2, 3)), strip(setup(2, 4)));
    }

    #[test]
    fn stopping_keeps_finished_tasks_only() {
        struct StopAfterOne(usize);
        impl Observer for StopAfterOne {
            fn task_finished(&mut self, _: &TaskRecord, _: &AccuracyMatrix) {
                self.0 += 1;
            }
            fn should_stop(&mut self) -> bool {
                self.0 >= 1
            }
        }
        let data = synthetic(100, 50);
        let stream = TaskStream::new(
            &data,
            StreamConfig {
                tasks: 3,
                train_per_task: 100,
                test_per_task: 50,
                batch: 10,
                epochs: 1,
                seed: 0,
            },
        )
        .expect("sizes fit");
        let config = NetworkConfig {
            inputs: 256,
            hidden: vec![16],
            classes: 10,
            neuron: Neuron::Relu,
            time_steps: 1,
            encoding: Encoding::Direct,
            readout_beta: 0.0,
            init: Init::KaimingUniform,
        };
        let mut learner = learner::build(
            &crate::spec::LearnerSpec::Sgd { lr: 0.01 },
            Network::new(config, 0),
            0,
            &Default::default(),
        );
        let options = RunOptions {
            retention_sample: 5,
            probe_size: 20,
            dormant_threshold: 0.025,
            boundaries_visible: false,
            eval_batch: 32,
        };
        let out = run(&stream, &mut *learner, &options, &mut StopAfterOne(0));
        assert_eq!(out.status, Status::Interrupted);
        assert_eq!(out.records.len(), 1);
        assert_eq!(out.matrix.rows.len(), 1);
    }
}
