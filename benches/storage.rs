//! The database side of a search shared through PostgreSQL (`--storage`): what one trial costs
//! (claim, one heartbeat, record), taking in a round of 1,000 records (fetch, parse, one journal
//! append with one fsync), and one look of an idle process waiting for a round's last records (the
//! count it asks first, and the fetch it avoids). Needs a server; without one it says so and measures
//! nothing:
//!
//!   pg_virtualenv cargo bench --bench storage

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use synaptogen::search::journal::{Entry, Journal, TrialRecord};
use synaptogen::search::storage::{Posted, Storage};

/// A journal line of the test fixture, as a shared search stores it (without number and checksum).
fn fixture(kind: &str) -> String {
    let text = include_str!("../tests/fixtures/search/journal.jsonl");
    let line = text
        .lines()
        .filter(|l| l.contains(&format!("\"kind\":\"{kind}\"")))
        .max_by_key(|l| l.len())
        .expect("the fixture has one");
    let entry = serde_json::Value::from_str(line).expect("JSON");
    entry.to_string()
}

fn storage(c: &mut Criterion) {
    let storage = match Storage::connect("postgresql://", 10, 60) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!(
                "storage benchmarks skipped: they need PostgreSQL ({e}); run `pg_virtualenv cargo bench --bench storage`"
            );
            return;
        }
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("bench-{nanos}");
    let shared = storage.join(&name, "bench", "{}").expect("join");
    let trial = fixture("trial");
    serde_json::from_str::<TrialRecord>(&trial).expect("the fixture's trial is a record");
    let mut round = 0;
    let mut post = |n: u64| {
        round += 1;
        let posted: Vec<Posted> = (0..n)
            .map(|k| Posted {
                job: format!("{{\"k\":{k}}}"),
                tasks: 1,
            })
            .collect();
        shared.post_round(round, &posted).expect("post");
        round
    };

    c.bench_function("storage: claim, heartbeat and record one trial", |b| {
        b.iter_custom(|iters| {
            let r = post(iters);
            let start = Instant::now();
            for _ in 0..iters {
                let slot = shared.claim(r).expect("claim").expect("a free trial");
                shared.heartbeat().expect("heartbeat");
                shared.record(r, slot, &trial).expect("record");
            }
            start.elapsed()
        })
    });

    let r = post(1000);
    while let Some(slot) = shared.claim(r).expect("claim") {
        shared.record(r, slot, &trial).expect("record");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let header: Entry = serde_json::from_str(&fixture("header")).expect("a header");
    let mut group = c.benchmark_group("storage");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.bench_function("take in a round of 1,000 records", |b| {
        b.iter(|| {
            let mut journal = Journal::create(&dir.path().join("journal.jsonl"), &header).expect("journal");
            let records = shared.records(r, &[]).expect("records");
            let entries: Vec<Entry> = records
                .iter()
                .map(|(_, text)| {
                    let parsed: TrialRecord = serde_json::from_str(text).expect("a record");
                    Entry::Trial(Box::new(parsed))
                })
                .collect();
            journal.append_all(&entries).expect("append");
            assert_eq!(entries.len(), 1000);
        })
    });
    // What an idle process waiting for a round's last records costs the server each time it looks:
    // 1,000 workers look about 4 times a second each.
    let known: Vec<usize> = (0..1000).collect();
    group.bench_function("poll a round of 1,000 records: count the unrecorded", |b| {
        b.iter(|| assert_eq!(shared.unrecorded(r).expect("count"), 0))
    });
    group.bench_function("poll a round of 1,000 records: fetch the unknown", |b| {
        b.iter(|| assert!(shared.records(r, &known).expect("records").is_empty()))
    });
    group.finish();
}

criterion_group!(benches, storage);
criterion_main!(benches);
