//! The search journal: one JSON object per line, appended and fsynced before it counts.
//!
//! The journal is the search's record of truth (Optuna's JournalStorage is the model): a header with the
//! spec, one `candidate` line per rule born (its text, its parent and mutation), one `trial` line per
//! finished trial. Reports read it; `--resume` reuses every trial in it instead of re-running it. A
//! `kill -9` can only cut the last line short: [`read`] drops a truncated last line with a warning, and
//! [`Journal::open`] trims it off before appending. A malformed line anywhere else is an error: the
//! journal was edited or damaged, and guessing would make the resumed search differ from the original.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::evaluate::TrialResult;
use super::mutate::Kind;
use super::spec::SearchSpec;

/// Version of the journal and snapshot layout; a reader refuses anything else.
pub const FORMAT: u32 = 1;

/// Who a trial trained.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// The candidate with this id.
    Candidate(usize),
    /// The baseline with this label.
    Baseline(String),
}

/// Which part of the search a trial belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Fidelity rung `k` (from 0), on the search's seeds and dataset.
    Rung(usize),
    /// The final check on fresh seeds, at the top rung.
    HeldOutSeeds,
    /// The final check on another dataset, at the top rung.
    HeldOutDataset,
}

/// How a candidate came to be.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A seed rule file.
    Seed {
        /// The file.
        path: PathBuf,
    },
    /// A mutation of `parent` (and, for a crossover, of `donor`).
    Mutation {
        /// The parent's id.
        parent: usize,
        /// The crossover's second parent.
        donor: Option<usize>,
        /// The mutation kind.
        kind: Kind,
        /// What changed, e.g. `0.01 → 0.013`.
        detail: String,
    },
}

/// A rule born into the search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidateRecord {
    /// Id, in birth order from 0.
    pub id: usize,
    /// Structural hash of the canonical form, hex.
    pub hash: String,
    /// The canonical rule as Rhai.
    pub source: String,
    /// Expression nodes over the evolved sections.
    pub complexity: usize,
    /// Where it came from.
    pub origin: Origin,
    /// The island it lives on.
    pub island: usize,
    /// The round it was born in.
    pub round: usize,
    /// When the functional-equivalence cache matched it: the candidate whose results it shares.
    pub same_as: Option<usize>,
}

/// One finished trial.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// The round that ran it.
    pub round: usize,
    /// Who was trained.
    pub subject: Subject,
    /// Which stage.
    pub stage: Stage,
    /// Dataset name.
    pub dataset: String,
    /// The training seed (stream and weights).
    pub seed: u64,
    /// What it measured.
    pub result: TrialResult,
    /// Wall time of the trial (the only field that differs between identical searches).
    pub seconds: f64,
}

/// One journal line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// The first line: the layout version and the spec.
    Header {
        /// [`FORMAT`].
        format: u32,
        /// The search name.
        name: String,
        /// The hash of everything in the spec that changes results (hex).
        spec_hash: String,
        /// The spec.
        spec: Box<SearchSpec>,
        /// The command line that started the search (for the report's provenance).
        #[serde(default)]
        command: String,
    },
    /// A rule born.
    Candidate(CandidateRecord),
    /// A finished trial.
    Trial(Box<TrialRecord>),
}

/// Errors reading or writing the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// IO on the journal file.
    #[error("{path}: {source}")]
    Io {
        /// The journal.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A complete line that is not a journal entry.
    #[error(
        "{path}:{line}: not a journal entry ({message}); the journal is damaged. Restore it, or start afresh with --force (which discards it)"
    )]
    Corrupt {
        /// The journal.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What the parser said.
        message: String,
    },
    /// The first line is not a header of a layout this version reads.
    #[error("{path}: {message}")]
    Incompatible {
        /// The journal.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// Every entry of a journal, and a warning when its last line was cut short (and dropped).
#[derive(Debug)]
pub struct Contents {
    /// The entries, in file order.
    pub entries: Vec<Entry>,
    /// Set when a truncated last line was dropped.
    pub warning: Option<String>,
    /// Bytes of the file up to the end of the last complete line.
    pub valid_len: u64,
}

/// Reads a journal. A missing file is an IO error.
pub fn read(path: &Path) -> Result<Contents, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let warning = (complete < bytes.len()).then(|| {
        format!(
            "{}: the last line was cut short ({} bytes, probably by a crash) and is ignored",
            path.display(),
            bytes.len() - complete
        )
    });
    let mut entries = Vec::new();
    for (i, line) in bytes[..complete].split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let entry: Entry = serde_json::from_slice(line).map_err(|e| Error::Corrupt {
            path: path.to_path_buf(),
            line: i + 1,
            message: e.to_string(),
        })?;
        entries.push(entry);
    }
    match entries.first() {
        Some(Entry::Header { format, .. }) if *format == FORMAT => {}
        Some(Entry::Header { format, .. }) => {
            return Err(Error::Incompatible {
                path: path.to_path_buf(),
                message: format!(
                    "written in journal format {format}; this synaptogen reads format {FORMAT}. Rerun the search with --force, or use the synaptogen version that wrote it"
                ),
            });
        }
        _ => {
            return Err(Error::Incompatible {
                path: path.to_path_buf(),
                message: "does not start with a journal header; is this a search output directory?".into(),
            });
        }
    }
    Ok(Contents {
        entries,
        warning,
        valid_len: complete as u64,
    })
}

/// An open journal, appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Creates a new journal at `path` (replacing any) and writes its header.
    pub fn create(path: &Path, header: &Entry) -> Result<Journal, Error> {
        let file = File::create(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut journal = Journal {
            path: path.to_path_buf(),
            file,
        };
        journal.append(header)?;
        Ok(journal)
    }

    /// Opens an existing journal for appending after its first `valid_len` bytes (see [`read`]).
    pub fn open(path: &Path, valid_len: u64) -> Result<Journal, Error> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new().append(true).open(path).map_err(io)?;
        file.set_len(valid_len).map_err(io)?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one entry and waits until it is on disk.
    pub fn append(&mut self, entry: &Entry) -> Result<(), Error> {
        let mut line = serde_json::to_string(entry).expect("journal entries are plain data");
        line.push('\n');
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Entry {
        let spec = crate::search::spec::tests_support::minimal();
        Entry::Header {
            format: FORMAT,
            name: "t".into(),
            spec_hash: "0".into(),
            spec: Box::new(spec),
            command: String::new(),
        }
    }

    #[test]
    fn a_truncated_last_line_is_dropped_with_a_warning_and_trimmed_before_appending() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::create(&path, &header()).expect("create");
        let c = Entry::Candidate(CandidateRecord {
            id: 0,
            hash: "ab".into(),
            source: "fn synapse() {\n    dw = -lr * grad;\n}\n".into(),
            complexity: 3,
            origin: Origin::Seed {
                path: "x.rhai".into(),
            },
            island: 0,
            round: 1,
            same_as: None,
        });
        j.append(&c).expect("append");
        drop(j);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.extend_from_slice(b"{\"kind\":\"cand");
        std::fs::write(&path, &bytes).expect("write");
        let contents = read(&path).expect("readable");
        assert_eq!(contents.entries.len(), 2);
        assert!(contents.warning.expect("warned").contains("cut short"));
        let mut j = Journal::open(&path, contents.valid_len).expect("open");
        j.append(&c).expect("append");
        let again = read(&path).expect("readable");
        assert_eq!(again.entries.len(), 3);
        assert!(again.warning.is_none());
    }

    #[test]
    fn a_corrupt_line_in_the_middle_is_an_error_with_its_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal.jsonl");
        drop(Journal::create(&path, &header()).expect("create"));
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.extend_from_slice(b"garbage\n{\"kind\":\"x\"}\n");
        std::fs::write(&path, &bytes).expect("write");
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("journal.jsonl:2: not a journal entry"), "{err}");
    }
}
