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
