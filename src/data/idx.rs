//! The IDX format of MNIST and Fashion-MNIST (LeCun et al.), raw or gzip-compressed.
//!
//! Layout: a big-endian u32 magic `0x0000_08DD` (0x08 = unsigned byte, DD = number of dimensions), one
//! big-endian u32 per dimension, then the bytes. Images are 3-dimensional (n, rows, cols), labels
//! 1-dimensional (n). Every check names the file, because a half-downloaded file is the usual culprit.

use std::io::Read;
use std::path::Path;

use super::{Error, Split};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Reads a whole file, transparently gunzipping it when it starts with the gzip magic bytes.
fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::Malformed {
                path: path.to_path_buf(),
                problem: format!("corrupt gzip stream ({e})"),
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn header(path: &Path, bytes: &[u8], what: &'static str, magic: u32) -> Result<Vec<usize>, Error> {
    let word = |i: usize| -> Option<u32> {
        bytes
            .get(4 * i..4 * i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let dims = (magic & 0xff) as usize;
    let found = word(0).ok_or_else(|| Error::Truncated {
        path: path.to_path_buf(),
        expected: 4,
        found: bytes.len(),
    })?;
    if found != magic {
        return Err(Error::BadMagic {
            path: path.to_path_buf(),
            what,
            found,
            expected: magic,
        });
    }
    (1..=dims)
        .map(|i| {
            word(i).map(|d| d as usize).ok_or(Error::Truncated {
                path: path.to_path_buf(),
                expected: 4 * (dims + 1),
                found: bytes.len(),
            })
        })
        .collect()
}

/// Reads an IDX image file and its label file into a [`Split`], with pixels scaled to [0, 1].
/// Returns the split and the image (width, height).
pub fn read_pair(images: &Path, labels: &Path) -> Result<(Split, usize, usize), Error> {
    let image_bytes = read_maybe_gzip(images)?;
    let dims = header(images, &image_bytes, "image", IMAGES_MAGIC)?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    let offset = 16;
    let expected = offset + n * rows * cols;
    if image_bytes.len() < expected {
        return Err(Error::Truncated {
            path: images.to_path_buf(),
            expected,
            found: image_bytes.len(),
        });
    }
    let label_bytes = read_maybe_gzip(labels)?;
    let label_dims = header(labels, &label_bytes, "label", LABELS_MAGIC)?;
    if label_dims[0] != n {
        return Err(Error::Malformed {
            path: labels.to_path_buf(),
            problem: format!(
                "holds {} labels but {} holds {n} images",
                label_dims[0],
                images.display()
            ),
        });
    }
    if label_bytes.len() < 8 + n {
        return Err(Error::Truncated {
            path: labels.to_path_buf(),
            expected: 8 + n,
            found: label_bytes.len(),
        });
    }
    let labels_out = label_bytes[8..8 + n].to_vec();
    if let Some(bad) = labels_out.iter().find(|&&l| l > 9) {
        return Err(Error::Malformed {
            path: labels.to_path_buf(),
            problem: format!("label {bad} is outside 0..=9"),
        });
    }
    let images_out = image_bytes[offset..expected]
        .iter()
        .map(|&b| b as f32 / 255.0)
        .collect();
    Ok((
        Split {
            images: images_out,
            labels: labels_out,
        },
        cols,
        rows,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// Writes a valid IDX pair of `n` 2×2 images into `dir`, optionally gzipped.
    pub(crate) fn write_pair(dir: &Path, n: usize, gzip: bool) -> (std::path::PathBuf, std::path::PathBuf) {
        let mut img = vec![0, 0, 8, 3];
        for d in [n as u32, 2, 2] {
            img.extend_from_slice(&d.to_be_bytes());
        }
        img.extend((0..n * 4).map(|i| (i * 60 % 256) as u8));
        let mut lab = vec![0, 0, 8, 1];
        lab.extend_from_slice(&(n as u32).to_be_bytes());
        lab.extend((0..n).map(|i| (i % 10) as u8));
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            let mut f = std::fs::File::create(&path).expect("temp dir is writable");
            if gzip {
                let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(bytes).expect("in-memory");
                f.write_all(&enc.finish().expect("in-memory"))
                    .expect("temp dir is writable");
            } else {
                f.write_all(bytes).expect("temp dir is writable");
            }
            path
        };
        (write("img", &img), write("lab", &lab))
    }

    #[test]
    fn reads_raw_and_gzip() {
        for gzip in [false, true] {
            let dir = tempfile::tempdir().expect("temp dir");
            let (i, l) = write_pair(dir.path(), 3, gzip);
            let (split, w, h) = read_pair(&i, &l).expect("valid pair");
            assert_eq!((w, h, split.len()), (2, 2, 3));
            assert_eq!(split.labels, vec![0, 1, 2]);
            assert_eq!(split.images[1], 60.0 / 255.0);
        }
    }

    #[test]
    fn rejects_wrong_magic_and_truncation() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (i, l) = write_pair(dir.path(), 3, false);
        // Swapped files: the label file has the wrong magic for images.
        let err = read_pair(&l, &i).unwrap_err().to_string();
        assert!(err.contains("not an IDX image file"), "{err}");
        let bytes = std::fs::read(&i).expect("written above");
        std::fs::write(&i, &bytes[..bytes.len() - 1]).expect("temp dir is writable");
        let err = read_pair(&i, &l).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        std::fs::write(&i, [0u8, 0]).expect("temp dir is writable");
        let err = read_pair(&i, &l).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}
