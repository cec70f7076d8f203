//! A small built-in dataset that needs no files, for tests and examples.
//!
//! Ten classes of 16×16 images. Each class is a fixed pattern of three soft blobs; each example shifts
//! the pattern by up to one pixel and adds uniform noise, so a small network learns it in a few hundred
//! updates but not trivially. Everything derives from a fixed seed, so it is the same dataset everywhere.

use super::{Dataset, Split};
use crate::rng::{Purpose, Rng};

const SIDE: usize = 16;
const CLASSES: usize = 10;
const BLOBS: usize = 3;

/// The synthetic dataset: `train` and `test` examples (classes balanced round-robin).
pub fn synthetic(train: usize, test: usize) -> Dataset {
    let mut rng = Rng::stream(0, Purpose::Synthetic, &[]);
    let centres: Vec<[(f32, f32); BLOBS]> = (0..CLASSES)
        .map(|_| {
            std::array::from_fn(|_| {
                (
                    2.0 + rng.uniform() * (SIDE as f32 - 4.0),
                    2.0 + rng.uniform() * (SIDE as f32 - 4.0),
                )
            })
        })
        .collect();
    let make = |n: usize, rng: &mut Rng| -> Split {
        let mut images = vec![0.0f32; n * SIDE * SIDE];
        let mut labels = Vec::with_capacity(n);
        for (i, image) in images.chunks_exact_mut(SIDE * SIDE).enumerate() {
            let class = i % CLASSES;
            labels.push(class as u8);
            let dx = rng.below(3) as f32 - 1.0;
            let dy = rng.below(3) as f32 - 1.0;
            for (p, pixel) in image.iter_mut().enumerate() {
                let (x, y) = ((p % SIDE) as f32, (p / SIDE) as f32);
                let signal: f32 = centres[class]
                    .iter()
                    .map(|&(cx, cy)| {
                        let d2 = (x - cx - dx).powi(2) + (y - cy - dy).powi(2);
                        (-d2 / 4.0).exp()
                    })
                    .sum();
                *pixel = (signal + 0.3 * rng.uniform()).clamp(0.0, 1.0);
            }
        }
        Split { images, labels }
    };
    let train_split = make(train, &mut rng);
    let test_split = make(test, &mut rng);
    Dataset {
        name: "synthetic".into(),
        width: SIDE,
        height: SIDE,
        classes: CLASSES,
        train: train_split,
        test: test_split,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_deterministic_and_in_range() {
        let a = synthetic(50, 20);
        let b = synthetic(50, 20);
        assert_eq!(a.train.images, b.train.images);
        assert!(a.train.images.iter().all(|p| (0.0..=1.0).contains(p)));
        assert_eq!(a.test.len(), 20);
        assert_eq!(a.train.labels[..11], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0]);
    }
}
