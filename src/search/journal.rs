//! The search journal: one JSON object per line, appended and fsynced before it counts.
//!
//! The journal is the search's record of truth (Optuna's JournalStorage is the model): a header with the
//! spec, one `candidate` line per rule born (its text, its parent and mutation), one `trial` line per
//! finished trial. Reports read it; `--resume` reuses every trial in it instead of re-running it.
//!
//! Every line carries its number and a checksum of its content:
//! `{"line":7,"sum":"<16 hex digits>","kind":"trial",…}`, the sum being FNV-1a over `7:` followed by the
//! entry's JSON (`{"kind":"trial",…}`). [`read`] checks, and names the line of, anything that does not
//! hold: a line missing, repeated or out of order, a line changed after it was written, a candidate
//! born twice or never, a trial recorded twice or of an unknown candidate. A `kill -9` can only cut the
//! last line short: [`read`] drops a truncated last line with a warning, and [`Journal::open`] trims it
//! off before appending. Anything else is damage: guessing would make a resumed search or a report
//! differ from the search that ran.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::evaluate::TrialResult;
use super::mutate::Kind;
use super::spec::SearchSpec;
use crate::rule::ir::fnv1a_parts;

/// Version of the journal and snapshot layout written now (numbered, checksummed lines).
pub const FORMAT: u32 = 2;
/// The layout before line numbers: still read (by `report`), verified by content only, never resumed.
pub const UNNUMBERED_FORMAT: u32 = 1;

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
        /// The database a shared search went through (its URL without password); absent for a search
        /// of one process.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        storage: Option<String>,
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
    #[error("{path}:{line}: not a journal entry ({message}); {}", recover(*line))]
    Corrupt {
        /// The journal.
        path: PathBuf,
        /// 1-based line of the file.
        line: usize,
        /// What the parser said.
        message: String,
    },
    /// Lines that parse but do not add up: missing, repeated, changed or contradicting each other.
    #[error("{path}:{line}: {message}; {}", recover(*line))]
    Damaged {
        /// The journal.
        path: PathBuf,
        /// 1-based line of the file.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file holds no complete line: the search stopped before its header was on disk.
    #[error(
        "{path}: the journal is empty (the search stopped before it wrote its first line, so nothing is \
         lost); start the search again"
    )]
    Empty {
        /// The journal.
        path: PathBuf,
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

/// What to do about a journal damaged at `line`, said once after every such error.
fn recover(line: usize) -> String {
    let keep = line.saturating_sub(1);
    format!(
        "the journal was edited or damaged. Restore it from a copy; or, to recover exactly, keep its \
         first {keep} lines (`head -n {keep} journal.jsonl > kept && mv kept journal.jsonl`) and \
         continue with --resume, which re-runs the trials after them to the same results"
    )
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
    /// The layout: [`FORMAT`] or [`UNNUMBERED_FORMAT`].
    pub format: u32,
}

/// The checksum of line `number` holding an entry whose JSON is `{` followed by `body`.
fn line_sum(number: usize, body: &[u8]) -> u64 {
    fnv1a_parts(&[number.to_string().as_bytes(), b":{", body])
}

/// Line `number` of a journal: its number and checksum, then the entry's own fields.
fn numbered_line(number: usize, entry: &Entry) -> String {
    let json = serde_json::to_string(entry).expect("journal entries are plain data");
    let sum = line_sum(number, &json.as_bytes()[1..]);
    // `json` is an object, `{"kind":…}`: the two fields go in front of its own.
    format!("{{\"line\":{number},\"sum\":\"{sum:016x}\",{}\n", &json[1..])
}

/// Splits a numbered line into its number, its checksum and the entry's JSON without the opening
/// brace; `None` when it does not start like one.
fn split_numbered(line: &[u8]) -> Option<(usize, u64, &[u8])> {
    let rest = line.strip_prefix(b"{\"line\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let number: usize = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = rest[digits..].strip_prefix(b",\"sum\":\"")?;
    let hex = std::str::from_utf8(rest.get(..16)?).ok()?;
    let sum = u64::from_str_radix(hex, 16).ok()?;
    let body = rest[16..].strip_prefix(b"\",")?;
    Some((number, sum, body))
}

/// Reads and verifies a journal (see the module documentation). A missing file is an IO error.
pub fn read(path: &Path) -> Result<Contents, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if bytes[..complete].iter().all(u8::is_ascii_whitespace) {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    let warning = (complete < bytes.len()).then(|| {
        format!(
            "{}: the last line was cut short ({} bytes, probably by a crash) and is ignored",
            path.display(),
            bytes.len() - complete
        )
    });
    let damaged = |line: usize, message: String| Error::Damaged {
        path: path.to_path_buf(),
        line,
        message,
    };
    let numbered = split_numbered(&bytes).is_some();
    let mut entries = Vec::new();
    let mut check = Verifier::default();
    for (i, line) in bytes[..complete].split(|b| *b == b'\n').enumerate() {
        let at = i + 1;
        if line.is_empty() {
            continue;
        }
        if numbered {
            let Some((number, sum, body)) = split_numbered(line) else {
                return Err(damaged(at, "not a numbered journal line".into()));
            };
            let expected = entries.len() + 1;
            if number < expected {
                return Err(damaged(
                    at,
                    format!("line number {number} again (expected {expected})"),
                ));
            }
            if number > expected {
                let missing = if number == expected + 1 {
                    format!("line {expected} is missing")
                } else {
                    format!("lines {expected} to {} are missing", number - 1)
                };
                return Err(damaged(at, format!("{missing} (this is line number {number})")));
            }
            if line_sum(number, body) != sum {
                return Err(damaged(
                    at,
                    "changed after it was written (its checksum does not match)".into(),
                ));
            }
        }
        let entry: Entry = serde_json::from_slice(line).map_err(|e| Error::Corrupt {
            path: path.to_path_buf(),
            line: at,
            message: e.to_string(),
        })?;
        check
            .entry(&entry, entries.is_empty(), at)
            .map_err(|m| damaged(at, m))?;
        entries.push(entry);
    }
    let format = match entries.first() {
        Some(Entry::Header { format, .. })
            if (*format == FORMAT && numbered) || (*format == UNNUMBERED_FORMAT && !numbered) =>
        {
            *format
        }
        Some(Entry::Header { format, .. }) => {
            return Err(Error::Incompatible {
                path: path.to_path_buf(),
                message: format!(
                    "written in journal format {format}; this synaptogen reads formats {UNNUMBERED_FORMAT} and {FORMAT}. Use the synaptogen version that wrote it, or start the search afresh (`synaptogen search SPEC --force`)"
                ),
            });
        }
        _ => {
            return Err(Error::Incompatible {
                path: path.to_path_buf(),
                message: "does not start with a journal header; is this a search output directory?".into(),
            });
        }
    };
    Ok(Contents {
        entries,
        warning,
        valid_len: complete as u64,
        format,
    })
}

/// The content checks of [`read`], line by line.
#[derive(Default)]
struct Verifier {
    /// Candidates born so far (ids run 0, 1, 2, …).
    candidates: usize,
    /// Every trial's key, and its line.
    trials: std::collections::BTreeMap<(Subject, Stage, u64), usize>,
}

impl Verifier {
    fn entry(&mut self, entry: &Entry, first: bool, line: usize) -> Result<(), String> {
        match entry {
            Entry::Header { .. } if first => Ok(()),
            Entry::Header { .. } => Err("a second header".into()),
            _ if first => Err("the first line is not the journal header".into()),
            Entry::Candidate(c) if c.id == self.candidates => {
                if let Origin::Mutation { parent, donor, .. } = &c.origin
                    && let Some(elder) = std::iter::once(parent).chain(donor).find(|p| **p >= c.id)
                {
                    return Err(format!(
                        "candidate #{} descends from #{elder}, born after it",
                        c.id
                    ));
                }
                self.candidates += 1;
                Ok(())
            }
            Entry::Candidate(c) if c.id < self.candidates => {
                Err(format!("candidate #{} is born twice", c.id))
            }
            Entry::Candidate(c) => Err(format!(
                "candidate #{} follows #{}: the {} between are missing",
                c.id,
                self.candidates as i64 - 1,
                if c.id == self.candidates + 1 {
                    format!("record of #{}", self.candidates)
                } else {
                    format!("records of #{} to #{}", self.candidates, c.id - 1)
                }
            )),
            Entry::Trial(t) => {
                if let Subject::Candidate(id) = t.subject
                    && id >= self.candidates
                {
                    return Err(format!(
                        "a trial of candidate #{id}, which no earlier line records"
                    ));
                }
                let key = (t.subject.clone(), t.stage, t.seed);
                match self.trials.insert(key, line) {
                    Some(earlier) => Err(format!(
                        "the trial of {} at {}, seed {}, again (first on line {earlier})",
                        match &t.subject {
                            Subject::Candidate(id) => format!("candidate #{id}"),
                            Subject::Baseline(label) => format!("baseline {label}"),
                        },
                        super::state::stage_name(t.stage),
                        t.seed
                    )),
                    None => Ok(()),
                }
            }
        }
    }
}

/// An open journal, appending numbered lines.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Lines written so far, the header included.
    lines: usize,
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
            lines: 0,
        };
        journal.append(header)?;
        Ok(journal)
    }

    /// Opens an existing journal read by [`read`] for appending after its complete lines.
    pub fn open(path: &Path, contents: &Contents) -> Result<Journal, Error> {
        if contents.format != FORMAT {
            return Err(Error::Incompatible {
                path: path.to_path_buf(),
                message: format!(
                    "written in journal format {} (without line numbers) by an earlier synaptogen: \
                     `synaptogen report` reads it, but only that version can continue it; or start \
                     afresh with --force",
                    contents.format
                ),
            });
        }
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new().append(true).open(path).map_err(io)?;
        file.set_len(contents.valid_len).map_err(io)?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            lines: contents.entries.len(),
        })
    }

    /// Lines written so far, the header included.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// Appends one entry as the next numbered line and waits until it is on disk.
    pub fn append(&mut self, entry: &Entry) -> Result<(), Error> {
        self.append_all(std::slice::from_ref(entry))
    }

    /// Appends entries as the next numbered lines and waits once until they are all on disk (for
    /// records another process already made durable in a shared search's database).
    pub fn append_all(&mut self, entries: &[Entry]) -> Result<(), Error> {
        let mut text = String::new();
        for (k, entry) in entries.iter().enumerate() {
            text.push_str(&numbered_line(self.lines + 1 + k, entry));
        }
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(text.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.lines += entries.len();
        Ok(())
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
            storage: None,
        }
    }

    #[test]
    fn a_truncated_last_line_is_dropped_with_a_warning_and_trimmed_before_appending() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::create(&path, &header()).expect("create");
        j.append(&candidate(0)).expect("append");
        drop(j);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.extend_from_slice(b"{\"kind\":\"cand");
        std::fs::write(&path, &bytes).expect("write");
        let contents = read(&path).expect("readable");
        assert_eq!(contents.entries.len(), 2);
        assert!(contents.warning.as_deref().expect("warned").contains("cut short"));
        let mut j = Journal::open(&path, &contents).expect("open");
        j.append(&candidate(1)).expect("append");
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
        assert!(
            err.contains("journal.jsonl:2: not a numbered journal line"),
            "{err}"
        );
    }

    fn candidate(id: usize) -> Entry {
        Entry::Candidate(CandidateRecord {
            id,
            hash: format!("{id:02x}"),
            source: "fn synapse() {\n    dw = -lr * grad;\n}\n".into(),
            complexity: 3,
            origin: Origin::Seed {
                path: "x.rhai".into(),
            },
            island: 0,
            round: 1,
            same_as: None,
        })
    }

    fn trial(id: usize, seed: u64) -> Entry {
        Entry::Trial(Box::new(TrialRecord {
            round: 1,
            subject: Subject::Candidate(id),
            stage: Stage::Rung(0),
            dataset: "synthetic".into(),
            seed,
            result: TrialResult {
                ending: super::super::evaluate::Ending::Completed,
                tasks: 1,
                objective: 0.5,
                plasticity: vec![0.5],
                retention: vec![None],
                effective_rank: vec![3.0],
                density: vec![1.0],
                dead_fraction: vec![0.0],
                synaptic_ops: vec![10.0],
                final_accuracy: Some(0.5),
                bwt: None,
                forgetting: None,
                matrix: None,
            },
            seconds: 1.0,
        }))
    }

    /// A journal of a header, three candidates and a trial of each; its lines.
    fn written(dir: &Path) -> (PathBuf, Vec<String>) {
        let path = dir.join("journal.jsonl");
        let mut j = Journal::create(&path, &header()).expect("create");
        for id in 0..3 {
            j.append(&candidate(id)).expect("append");
            j.append(&trial(id, 0)).expect("append");
        }
        let text = std::fs::read_to_string(&path).expect("read");
        (path, text.lines().map(str::to_string).collect())
    }

    fn damage(lines: &[String], edit: impl Fn(&mut Vec<String>)) -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal.jsonl");
        let mut lines = lines.to_vec();
        edit(&mut lines);
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        read(&path).unwrap_err().to_string()
    }

    #[test]
    fn every_line_is_numbered_and_an_intact_journal_reads_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, lines) = written(dir.path());
        for (i, line) in lines.iter().enumerate() {
            assert!(
                line.starts_with(&format!("{{\"line\":{},\"sum\":\"", i + 1)),
                "{line}"
            );
        }
        let contents = read(&path).expect("reads");
        assert_eq!(contents.entries.len(), 7);
        assert_eq!(contents.entries[1], candidate(0));
        assert_eq!(contents.format, FORMAT);
        let mut j = Journal::open(&path, &contents).expect("open");
        assert_eq!(j.lines(), 7);
        j.append(&candidate(3)).expect("append");
        assert_eq!(read(&path).expect("reads").entries.len(), 8);
    }

    #[test]
    fn a_missing_repeated_or_changed_line_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_, lines) = written(dir.path());
        let gap = damage(&lines, |l| {
            l.remove(3);
        });
        assert!(gap.contains("journal.jsonl:4: line 4 is missing"), "{gap}");
        assert!(
            gap.contains("head -n 3 journal.jsonl") && gap.contains("--resume"),
            "{gap}"
        );
        let twice = damage(&lines, |l| {
            let copy = l[2].clone();
            l.insert(3, copy);
        });
        assert!(twice.contains("journal.jsonl:4: line number 3 again"), "{twice}");
        let changed = damage(&lines, |l| l[2] = l[2].replace("\"seed\":0", "\"seed\":1"));
        assert!(
            changed.contains("journal.jsonl:3: changed after it was written"),
            "{changed}"
        );
    }

    #[test]
    fn content_that_does_not_add_up_is_named_in_an_unnumbered_journal_too() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal.jsonl");
        let write = |entries: &[Entry]| {
            let text: String = entries
                .iter()
                .map(|e| serde_json::to_string(e).expect("plain data") + "\n")
                .collect();
            std::fs::write(&path, text).expect("write");
            read(&path)
        };
        let Entry::Header { spec, .. } = header() else {
            unreachable!()
        };
        let old = Entry::Header {
            format: UNNUMBERED_FORMAT,
            name: "t".into(),
            spec_hash: "0".into(),
            spec,
            command: String::new(),
            storage: None,
        };
        let ok = write(&[old.clone(), candidate(0), trial(0, 0)]).expect("format 1 reads");
        assert_eq!(ok.format, UNNUMBERED_FORMAT);
        assert!(
            Journal::open(&path, &ok)
                .unwrap_err()
                .to_string()
                .contains("--force")
        );
        let cases = [
            (
                vec![old.clone(), candidate(0), trial(0, 0), trial(0, 0)],
                "journal.jsonl:4: the trial of candidate #0 at rung0, seed 0, again (first on line 3)",
            ),
            (
                vec![old.clone(), candidate(0), candidate(2)],
                "journal.jsonl:3: candidate #2 follows #0: the record of #1 between are missing",
            ),
            (
                vec![old.clone(), candidate(0), candidate(0)],
                "journal.jsonl:3: candidate #0 is born twice",
            ),
            (
                vec![old.clone(), trial(0, 0)],
                "journal.jsonl:2: a trial of candidate #0, which no earlier line records",
            ),
            (
                vec![candidate(0)],
                "journal.jsonl:1: the first line is not the journal header",
            ),
        ];
        for (entries, expected) in cases {
            let err = write(&entries).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}\nexpected: {expected}");
        }
    }

    #[test]
    fn an_empty_journal_says_nothing_was_lost() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal.jsonl");
        for bytes in [&b""[..], b"{\"line\":1,\"sum\""] {
            std::fs::write(&path, bytes).expect("write");
            let err = read(&path).unwrap_err();
            assert!(matches!(err, Error::Empty { .. }), "{err}");
        }
    }
}
