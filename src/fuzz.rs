//! Every reader of user-supplied input, fed random and damaged inputs: whatever it is given, it
//! answers with a value or an error, never a panic, as README's crash-safety section promises. The damaged inputs start from valid
//! ones (a shipped spec, rule, journal, IDX pair and npm digit file) and cut, repeat, flip or insert
//! bytes, which reaches far deeper into each parser than random bytes alone.

use std::path::Path;

use proptest::prelude::*;

use crate::search::journal;

/// One edit of a valid input.
#[derive(Clone, Debug)]
enum Edit {
    /// Remove `len` bytes at `at` (both taken modulo the length).
    Cut { at: usize, len: usize },
    /// Insert these bytes at `at`.
    Insert { at: usize, bytes: Vec<u8> },
    /// Overwrite the byte at `at`.
    Flip { at: usize, byte: u8 },
    /// Repeat `len` bytes at `at` in place.
    Repeat { at: usize, len: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Edit::Cut { at, len }),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Flip { at, byte }),
        (any::<usize>(), 1usize..256).prop_map(|(at, len)| Edit::Repeat { at, len }),
    ]
}

fn damage(valid: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    for e in edits {
        let n = bytes.len().max(1);
        match e {
            Edit::Cut { at, len } => {
                let start = at % n;
                let end = (start + len).min(bytes.len());
                if start < end {
                    bytes.drain(start..end);
                }
            }
            Edit::Insert { at, bytes: new } => {
                let at = (at % n).min(bytes.len());
                bytes.splice(at..at, new.iter().copied());
            }
            Edit::Flip { at, byte } => {
                if !bytes.is_empty() {
                    bytes[at % n] = *byte;
                }
            }
            Edit::Repeat { at, len } => {
                let start = (at % n).min(bytes.len());
                let end = (start + len).min(bytes.len());
                let copy = bytes[start..end].to_vec();
                bytes.splice(end..end, copy);
            }
        }
    }
    bytes
}

fn shipped(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect("shipped file")
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    proptest::collection::vec(edit(), 1..6)
}

/// A small valid journal: a header, candidates and trials, written by the journal itself.
fn valid_journal() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("journal.jsonl");
    let fixture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/search/journal.jsonl"),
    )
    .expect("fixture");
    let mut entries = fixture
        .lines()
        .map(|l| serde_json::from_str::<journal::Entry>(l).expect("fixture entry"));
    let Some(journal::Entry::Header {
        name,
        spec_hash,
        spec,
        command,
        ..
    }) = entries.next()
    else {
        panic!("the fixture starts with a header")
    };
    let header = journal::Entry::Header {
        format: journal::FORMAT,
        name,
        spec_hash,
        spec,
        command,
        storage: None,
    };
    let mut j = journal::Journal::create(&path, &header).expect("create");
    for e in entries.take(12) {
        j.append(&e).expect("append");
    }
    std::fs::read(&path).expect("read back")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn spec_readers_never_panic(edits in edits(), random in proptest::collection::vec(any::<u8>(), 0..300)) {
        for valid in [shipped("searches/quickstart.ron"), shipped("searches/pmnist-quick.ron")] {
            for bytes in [damage(&valid, &edits), random.clone()] {
                let text = String::from_utf8_lossy(&bytes);
                let _ = crate::spec::RunSpec::parse(&text, Path::new("s.ron"));
                let _ = crate::search::SearchSpec::parse(&text, Path::new("s.ron"));
            }
        }
    }

    #[test]
    fn the_rule_compiler_never_panics(edits in edits(), random in proptest::collection::vec(any::<u8>(), 0..300)) {
        for valid in [shipped("rules/baselines/mesu.rhai"), shipped("rules/local/stdp_trace.rhai"), shipped("rules/pruning/usage.rhai")] {
            for bytes in [damage(&valid, &edits), random.clone()] {
                let text = String::from_utf8_lossy(&bytes);
                let _ = crate::rule::compile(&text, Path::new("r.rhai"));
            }
        }
    }

    #[test]
    fn the_journal_reader_never_panics(edits in edits()) {
        let valid = valid_journal();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal.jsonl");
        std::fs::write(&path, damage(&valid, &edits)).expect("write");
        if let Ok(contents) = journal::read(&path) {
            // What reads must also build a report's lineage without panicking.
            let records: Vec<_> = contents.entries.iter().filter_map(|e| match e {
                journal::Entry::Candidate(c) => Some(c.clone()),
                _ => None,
            }).collect();
            let _ = crate::search::lineage::Lineage::from_candidates(&records);
        }
    }

    #[test]
    fn the_idx_reader_never_panics(image_edits in edits(), label_edits in edits(), gzip in any::<bool>()) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (images, labels) = crate::data::idx::tests::write_pair(dir.path(), 3, gzip);
        let damaged = damage(&std::fs::read(&images).expect("read"), &image_edits);
        std::fs::write(&images, damaged).expect("write");
        let damaged = damage(&std::fs::read(&labels).expect("read"), &label_edits);
        std::fs::write(&labels, damaged).expect("write");
        let _ = crate::data::idx::read_pair(&images, &labels);
    }

    #[test]
    fn the_npm_reader_never_panics(edits in edits(), digit in 0u8..10) {
        let dir = tempfile::tempdir().expect("temp dir");
        let valid = format!("{{\"data\": [{}]}}", vec!["0.5"; 784 * 2].join(","));
        for d in 0..10u8 {
            let text = if d == digit { damage(valid.as_bytes(), &edits) } else { valid.clone().into_bytes() };
            std::fs::write(dir.path().join(format!("{d}.json")), text).expect("write");
        }
        let _ = crate::data::npm::read(dir.path());
    }
}
