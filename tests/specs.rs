//! Every spec shipped in `searches/` parses and validates, and every rule a search spec names compiles
//! and trains, so a newcomer never meets a broken example.

mod util;

use synaptogen::search::{self, SearchSpec};
use synaptogen::spec::RunSpec;

#[test]
fn every_shipped_spec_is_valid() {
    let dir = util::repo().join("searches");
    let (mut runs, mut searches) = (0, 0);
    for entry in std::fs::read_dir(&dir).expect("searches/ exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_none_or(|e| e != "ron") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable spec");
        if text.contains("seed_rules:") {
            let spec = SearchSpec::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
            search::load_rules(&spec).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            searches += 1;
        } else {
            RunSpec::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
            runs += 1;
        }
    }
    assert!(runs >= 5, "found {runs} run specs");
    assert!(searches >= 3, "found {searches} search specs");
}

/// The random-search control differs from the quickstart only in its name and in having no selection
/// (tournament of one, no migration), so the comparison in README measures selection alone.
#[test]
fn the_random_search_control_is_the_quickstart_without_selection() {
    let read = |name: &str| {
        let path = util::repo().join("searches").join(name);
        let text = std::fs::read_to_string(&path).expect("readable spec");
        SearchSpec::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"))
    };
    let (quickstart, mut control) = (read("quickstart.ron"), read("quickstart-random.ron"));
    assert_eq!(control.evolution.tournament, 1);
    assert_eq!(control.evolution.migrate_every, 0);
    control.name = quickstart.name.clone();
    control.evolution.tournament = quickstart.evolution.tournament;
    control.evolution.migrate_every = quickstart.evolution.migrate_every;
    assert_eq!(control, quickstart);
}
