//! The file layer beneath `search`, `report` and `cli`: output directories checked before any work
//! starts, atomic writes, and reading rule scripts. It knows no file formats; the modules above decide
//! what goes in each file.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::learner::Rules;
use crate::learner::rule_learner::{Unfit, structure_without_score};
use crate::rule::CompiledRule;
use crate::spec::{LearnerSpec, RuleSpec};

/// A file or directory that cannot be written, or a rule script that cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The output directory cannot be created or written.
    #[error("{path}: cannot write the output directory ({source}); choose another with --out")]
    Unwritable {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("{path}: cannot write ({source})")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A rule script cannot be read.
    #[error("{path}: cannot read the rule ({source})")]
    ReadRule {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A rule script does not compile.
    #[error(transparent)]
    Rule(#[from] crate::rule::Error),
    /// A rule does not fit its learner settings.
    #[error("{path}: cannot train this rule: {why}")]
    Untrainable {
        /// The rule file.
        path: PathBuf,
        /// Why.
        why: Unfit,
    },
}

impl Error {
    /// Whether the user can fix it by changing their input (exit status 2): a directory or rule they
    /// named. A write failing midway is a failure of the run (status 1).
    pub fn is_input(&self) -> bool {
        !matches!(self, Error::Write { .. })
    }
}

/// Creates (or reuses) `dir` and checks it is writable, so a bad `--out` fails before any work.
pub fn create_dir(dir: &Path) -> Result<(), Error> {
    let unwritable = |source| Error::Unwritable {
        path: dir.to_path_buf(),
        source,
    };
    if dir.exists() && !dir.is_dir() {
        return Err(unwritable(std::io::Error::other("it is a file, not a directory")));
    }
    std::fs::create_dir_all(dir).map_err(unwritable)?;
    let probe = dir.join(".synaptogen-write-test");
    std::fs::write(&probe, b"").map_err(unwritable)?;
    std::fs::remove_file(&probe).map_err(unwritable)?;
    Ok(())
}

/// Replaces `path` with `bytes` so that a crash at any moment leaves either the old file or the new one,
/// never a mix: write a temporary file beside it, fsync it, rename it over `path`, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map_or("file".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.tmp"));
    let write_err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::create(&tmp).map_err(write_err)?;
    file.write_all(bytes).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    std::fs::rename(&tmp, path).map_err(write_err)?;
    // The rename is durable only once the directory entry is; not every platform can open a directory.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads and compiles the rule script at `path`: the one loader of rule files, for `run --rule`, a
/// run spec's `Rule` learners, a search's seed rules and its rule baselines.
pub fn read_rule(path: &Path) -> Result<CompiledRule, Error> {
    let source = std::fs::read_to_string(path).map_err(|source| Error::ReadRule {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(crate::rule::compile(&source, path)?)
}

/// Reads and compiles every rule file `learners` name (each once) and checks it fits its learner's
/// settings (a structure schedule needs a `prune()` section), before anything trains.
pub fn read_rules(learners: &[LearnerSpec]) -> Result<Rules, Error> {
    let mut rules = Rules::new();
    for learner in learners {
        let LearnerSpec::Rule(RuleSpec {
            path: Some(path),
            structure,
            ..
        }) = learner
        else {
            continue;
        };
        if !rules.contains_key(path) {
            rules.insert(path.clone(), read_rule(path)?);
        }
        if let Some(why) = structure_without_score(&rules[path], structure.as_ref()) {
            return Err(Error::Untrainable {
                path: path.clone(),
                why,
            });
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unwritable_directory_is_refused_before_work_starts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("file");
        std::fs::write(&file, "x").expect("temp dir is writable");
        for bad in [file.join("sub"), file.clone()] {
            let err = create_dir(&bad).unwrap_err();
            assert!(err.is_input());
            let text = err.to_string();
            assert!(
                text.contains("cannot write the output directory") && text.contains("--out"),
                "{text}"
            );
        }
    }

    #[test]
    fn an_atomic_write_replaces_the_whole_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a.txt");
        write_atomic(&path, b"first, longer").expect("writes");
        write_atomic(&path, b"second").expect("writes");
        assert_eq!(std::fs::read(&path).expect("reads"), b"second");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("lists").count(),
            1,
            "no temporary left"
        );
    }
}
