//! Every spec shipped in `searches/` parses and validates, so a newcomer never meets a broken example.

mod util;

use synaptogen::spec::RunSpec;

#[test]
fn every_shipped_spec_is_valid() {
    let dir = util::repo().join("searches");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("searches/ exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_some_and(|e| e == "ron") {
            let text = std::fs::read_to_string(&path).expect("readable spec");
            if let Err(e) = RunSpec::parse(&text, &path) {
                panic!("{e}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "found {checked} specs");
}
