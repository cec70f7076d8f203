//! The IDX format of MNIST and Fashion-MNIST (LeCun et al.), raw or gzip-compressed.
//!
//! Layout: a big-endian u32 magic `0x0000_08DD` (0x08 = unsigned byte, DD = number of dimensions), one
//! big-endian u32 per dimension, then the bytes. Images are 3-dimensional (n, rows, cols), labels
//! 1-dimensional (n). Every check names the file, because a half-downloaded file is the usual culprit.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::{Error, Split};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Reads a whole file, transparently gunzipping it when it starts with the gzip magic bytes.
/// The largest data section an IDX file may declare: 4 GiB, far above any image dataset we read, and
/// the bound on what a damaged or hostile header can make us allocate.
const MAX_BYTES: usize = 1 << 32;

/// Opens `path` for reading, inflating it on the fly when it starts with the gzip magic bytes.
fn open(path: &Path) -> Result<Box<dyn Read>, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = BufReader::new(File::open(path).map_err(io)?);
    let gzip = file.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

/// Reads up to `limit` bytes; an inflation error is a corrupt file.
fn read_at_most(path: &Path, reader: &mut dyn Read, limit: usize) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(limit.min(64 << 20));
    reader
        .take(limit as u64)
        .read_to_end(&mut out)
        .map_err(|e| Error::Malformed {
            path: path.to_path_buf(),
            problem: format!("unreadable or corrupt gzip stream ({e})"),
        })?;
    Ok(out)
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

/// Reads one IDX file: its header first (a wrong magic number is found before anything is inflated),
/// then exactly the bytes its dimensions declare, never more (a gzip bomb inflates no further than the
/// declared size). Every dimension must be at least 1 and their product must fit [`MAX_BYTES`].
fn read_idx(path: &Path, what: &'static str, magic: u32) -> Result<(Vec<usize>, Vec<u8>), Error> {
    let mut reader = open(path)?;
    let header_len = 4 * ((magic & 0xff) as usize + 1);
    let head = read_at_most(path, &mut reader, header_len)?;
    let dims = header(path, &head, what, magic)?;
    if let Some(i) = dims.iter().position(|&d| d == 0) {
        return Err(Error::Malformed {
            path: path.to_path_buf(),
            problem: format!("dimension {} of {dims:?} is 0; the file holds no {what}s", i + 1),
        });
    }
    let body = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&b| b <= MAX_BYTES)
        .ok_or_else(|| Error::Malformed {
            path: path.to_path_buf(),
            problem: format!(
                "its header declares dimensions {dims:?}, more than the {} GiB an IDX file may hold here; the header is damaged",
                MAX_BYTES >> 30
            ),
        })?;
    let data = read_at_most(path, &mut reader, body)?;
    if data.len() < body {
        return Err(Error::Truncated {
            path: path.to_path_buf(),
            expected: header_len + body,
            found: header_len + data.len(),
        });
    }
    Ok((dims, data))
}

/// Reads an image file and its label file: the images as f32 in [0, 1], row-major, then the width and
/// height. Both files must agree on the number of examples, and every label must be a digit.
pub fn read_pair(images: &Path, labels: &Path) -> Result<(Split, usize, usize), Error> {
    let (dims, image_bytes) = read_idx(images, "image", IMAGES_MAGIC)?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    let (label_dims, labels_out) = read_idx(labels, "label", LABELS_MAGIC)?;
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
    if let Some(bad) = labels_out.iter().find(|&&l| l > 9) {
        return Err(Error::Malformed {
            path: labels.to_path_buf(),
            problem: format!("label {bad} is outside 0..=9"),
        });
    }
    let images_out = image_bytes.iter().map(|&b| b as f32 / 255.0).collect();
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

    fn idx_images(dims: [u32; 3], data: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0, 0, 8, 3];
        for d in dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn empty_and_overflowing_dimensions_are_named_not_panics() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_, labels) = write_pair(dir.path(), 1, false);
        let images = dir.path().join("bad");
        for (dims, expected) in [
            ([1, 0, 0], "dimension 2 of [1, 0, 0] is 0"),
            ([0, 28, 28], "dimension 1 of [0, 28, 28] is 0"),
            ([u32::MAX, u32::MAX, u32::MAX], "the header is damaged"),
            ([60_000, 28, 28], "truncated"),
        ] {
            std::fs::write(&images, idx_images(dims, &[1, 2, 3, 4])).expect("write");
            let err = read_pair(&images, &labels).unwrap_err().to_string();
            assert!(err.contains(expected), "{dims:?}: {err}");
        }
    }

    #[test]
    fn a_gzip_stream_inflates_no_further_than_its_header_declares() {
        // One 2×2 image declared, 64 MiB of zeros behind it: only the 16 + 4 declared bytes are inflated.
        let dir = tempfile::tempdir().expect("temp dir");
        let (_, labels) = write_pair(dir.path(), 1, false);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&idx_images([1, 2, 2], &[7, 7, 7, 7]))
            .expect("in-memory");
        enc.write_all(&vec![0u8; 64 << 20]).expect("in-memory");
        let images = dir.path().join("bomb.gz");
        std::fs::write(&images, enc.finish().expect("in-memory")).expect("write");
        let (split, w, h) = read_pair(&images, &labels).expect("reads the declared image");
        assert_eq!((w, h, split.images.len()), (2, 2, 4));
        // A wrong magic number is found before anything past the header is inflated.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&[0, 0, 8, 9]).expect("in-memory");
        enc.write_all(&vec![0u8; 64 << 20]).expect("in-memory");
        std::fs::write(&images, enc.finish().expect("in-memory")).expect("write");
        let err = read_pair(&images, &labels).unwrap_err().to_string();
        assert!(err.contains("not an IDX image file"), "{err}");
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
