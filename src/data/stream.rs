//! The permuted task stream: one dataset becomes a sequence of tasks, each with its own pixel permutation.
//!
//! Task `t` draws its permutation from the stream `(seed, Permutation, t)` and its training examples from
//! `(seed, ExampleOrder, t, …)`, so any task can be built on its own, in any order, on any thread, and
//! always comes out the same. Every task is permuted, the first included.

use super::{Dataset, Error};
use crate::rng::{Purpose, Rng};

/// How a dataset is cut into tasks and batches. Sizes are checked against the dataset by
/// [`TaskStream::new`].
#[derive(Clone, Debug, PartialEq)]
pub struct StreamConfig {
    /// Number of tasks.
    pub tasks: usize,
    /// Training examples per task (a fixed random subset of the training split per task).
    pub train_per_task: usize,
    /// Test examples per task (the first ones of the test split, permuted per task).
    pub test_per_task: usize,
    /// Minibatch size (1 for the online protocol).
    pub batch: usize,
    /// Passes over the task's training examples (1 for the online protocol).
    pub epochs: usize,
    /// The stream seed: permutations and example orders derive from it.
    pub seed: u64,
}

/// A minibatch (or a whole evaluation set) of permuted images with their labels.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// `len × pixels` values, row-major.
    pub images: Vec<f32>,
    /// One label per example.
    pub labels: Vec<u8>,
}

impl Batch {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch holds no example.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// One task of the stream: its permutation and its training examples.
#[derive(Clone, Debug)]
pub struct Task {
    /// Index of the task, from 0.
    pub index: usize,
    /// `permutation[i]` is the source pixel of input `i`.
    pub permutation: Vec<u32>,
    /// Indices into the training split of this task's examples.
    pub examples: Vec<u32>,
}

/// A dataset seen as a sequence of permuted tasks.
#[derive(Debug)]
pub struct TaskStream<'d> {
    data: &'d Dataset,
    config: StreamConfig,
}

impl<'d> TaskStream<'d> {
    /// A stream over `data`; fails when the dataset has fewer examples than a task asks for.
    pub fn new(data: &'d Dataset, config: StreamConfig) -> Result<Self, Error> {
        for (split, have, want) in [
            ("training", data.train.len(), config.train_per_task),
            ("test", data.test.len(), config.test_per_task),
        ] {
            if want > have {
                return Err(Error::TooFewExamples {
                    dataset: data.name.clone(),
                    split,
                    have,
                    want,
                });
            }
        }
        Ok(TaskStream { data, config })
    }

    /// The stream's configuration.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// The underlying dataset.
    pub fn dataset(&self) -> &Dataset {
        self.data
    }

    /// Task `index`'s pixel permutation alone (all that testing it needs).
    pub fn permutation(&self, index: usize) -> Vec<u32> {
        Rng::stream(self.config.seed, Purpose::Permutation, &[index as u64]).permutation(self.data.pixels())
    }

    /// Builds task `index`.
    pub fn task(&self, index: usize) -> Task {
        let seed = self.config.seed;
        let permutation = self.permutation(index);
        let mut examples: Vec<u32> = (0..self.data.train.len() as u32).collect();
        Rng::stream(seed, Purpose::ExampleOrder, &[index as u64, 0]).shuffle(&mut examples);
        examples.truncate(self.config.train_per_task);
        Task {
            index,
            permutation,
            examples,
        }
    }

    /// The order in which `task`'s examples are presented in `epoch`.
    pub fn epoch_order(&self, task: &Task, epoch: usize) -> Vec<u32> {
        let mut order = task.examples.clone();
        Rng::stream(
            self.config.seed,
            Purpose::ExampleOrder,
            &[task.index as u64, 1 + epoch as u64],
        )
        .shuffle(&mut order);
        order
    }

    /// Fills `out` with the training examples `indices` of `task`, permuted.
    pub fn fill_train(&self, task: &Task, indices: &[u32], out: &mut Batch) {
        gather(
            &self.data.train.images,
            &self.data.train.labels,
            &task.permutation,
            indices,
            out,
        );
    }

    /// Task `index`'s test set: the first `test_per_task` test examples under its permutation. Needs
    /// only the permutation, not the task's shuffled training examples.
    pub fn test_set(&self, index: usize) -> Batch {
        let mut out = Batch::default();
        self.fill_test_set(index, &mut out);
        out
    }

    /// [`TaskStream::test_set`] into `out`, reusing its buffers.
    pub fn fill_test_set(&self, index: usize, out: &mut Batch) {
        let indices: Vec<u32> = (0..self.config.test_per_task as u32).collect();
        let permutation = self.permutation(index);
        gather(
            &self.data.test.images,
            &self.data.test.labels,
            &permutation,
            &indices,
            out,
        );
    }

    /// A probe batch for representation metrics at the task's start: its first `n` training examples.
    pub fn probe(&self, task: &Task, n: usize) -> Batch {
        let n = n.min(task.examples.len());
        let mut out = Batch::default();
        self.fill_train(task, &task.examples[..n], &mut out);
        out
    }
}

fn gather(images: &[f32], labels: &[u8], permutation: &[u32], indices: &[u32], out: &mut Batch) {
    let pixels = permutation.len();
    out.images.resize(indices.len() * pixels, 0.0);
    out.labels.clear();
    for (n, (row, &i)) in out.images.chunks_exact_mut(pixels).zip(indices).enumerate() {
        if let Some(&next) = indices.get(n + AHEAD) {
            prefetch(&images[next as usize * pixels..(next as usize + 1) * pixels]);
        }
        let src = &images[i as usize * pixels..(i as usize + 1) * pixels];
        for (dst, &p) in row.iter_mut().zip(permutation) {
            *dst = src[p as usize];
        }
        out.labels.push(labels[i as usize]);
    }
}

/// Images ahead of the one being copied whose lines are asked for ([`prefetch`]).
const AHEAD: usize = 2;

/// Asks for `image`'s cache lines: a permuted copy reads them in random order, so the hardware's
/// prefetchers, which follow strides, do not fetch them, and each copy waited on its image's misses.
/// In a run, where training and testing evict the dataset from the caches between two copies, this
/// took `searches/pmnist-200.ron`'s sgd from 15.0/15.3 s to 14.5/14.6 s; `cargo bench --bench train
/// -- batches/`, which copies from warm caches, shows 8% on batches and nothing on test sets (4
/// images ahead measured the same as 2).
#[inline]
fn prefetch(image: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in image.chunks(16) {
        // SAFETY: a prefetch is a hint; it never faults and reads a valid address here anyway.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr().cast())
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = image;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic;

    fn config() -> StreamConfig {
        StreamConfig {
            tasks: 5,
            train_per_task: 100,
            test_per_task: 30,
            batch: 10,
            epochs: 1,
            seed: 9,
        }
    }

    #[test]
    fn tasks_do_not_depend_on_build_order() {
        let data = synthetic(200, 50);
        let stream = TaskStream::new(&data, config()).expect("sizes fit");
        let forward: Vec<_> = (0..5).map(|t| stream.task(t).permutation).collect();
        let backward: Vec<_> = (0..5).rev().map(|t| stream.task(t).permutation).collect();
        assert!(forward.iter().eq(backward.iter().rev()));
        assert_ne!(forward[0], forward[1]);
    }

    #[test]
    fn every_task_is_permuted_including_the_first() {
        let data = synthetic(200, 50);
        let stream = TaskStream::new(&data, config()).expect("sizes fit");
        let identity: Vec<u32> = (0..data.pixels() as u32).collect();
        assert_ne!(stream.task(0).permutation, identity);
        let test = stream.test_set(0);
        let p = &stream.task(0).permutation;
        assert_eq!(test.images[0], data.test.images[p[0] as usize]);
        assert_eq!(test.len(), 30);
    }

    #[test]
    fn epochs_reorder_the_same_examples() {
        let data = synthetic(200, 50);
        let stream = TaskStream::new(&data, config()).expect("sizes fit");
        let task = stream.task(2);
        let (mut a, mut b) = (stream.epoch_order(&task, 0), stream.epoch_order(&task, 1));
        assert_ne!(a, b);
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
    }

    #[test]
    fn asking_for_more_examples_than_exist_is_an_error() {
        let data = synthetic(50, 50);
        let err = TaskStream::new(&data, config()).unwrap_err().to_string();
        assert!(
            err.contains("100 training examples") && err.contains("has 50"),
            "{err}"
        );
    }
}
