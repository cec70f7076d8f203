//! The file layer beneath `search`, `report` and `cli`: output directories checked and locked before
//! any work starts, atomic writes, and reading rule scripts. It knows no file formats; the modules
//! above decide what goes in each file.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
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
    /// Another process holds the output directory.
    #[error(
        "{dir}: in use by another synaptogen ({holder}); wait for it to finish, stop it, or choose \
         another directory with --out"
    )]
    Busy {
        /// The directory.
        dir: PathBuf,
        /// Who holds it, as the lock file says: `pid P on HOST since TIME`.
        holder: String,
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
    // Named per process: two processes probing one directory must not delete each other's probe.
    let probe = dir.join(format!(".synaptogen-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(unwritable)?;
    std::fs::remove_file(&probe).map_err(unwritable)?;
    Ok(())
}

/// The lock file in every output directory.
pub const LOCK_FILE: &str = ".synaptogen.lock";

/// Exclusive use of an output directory for as long as this value lives.
///
/// The lock is an advisory OS lock (`flock` on Unix, `LockFileEx` on Windows) on `DIR/.synaptogen.lock`.
/// The kernel releases it when the process ends, however it ends, so a `kill -9` never leaves a stale
/// lock behind (a PID file would). The file's text names the holder for the error a second process
/// prints; the file itself stays, empty of meaning once unlocked.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Creates `dir` if needed, checks it is writable and locks it (see [`DirLock`]); a directory another
/// process holds is [`Error::Busy`]. Temporary files an interrupted [`write_atomic`] left behind (a full
/// disk, a crash) are removed once the lock is held.
pub fn lock_dir(dir: &Path) -> Result<DirLock, Error> {
    create_dir(dir)?;
    let path = dir.join(LOCK_FILE);
    let unwritable = |source| Error::Unwritable {
        path: dir.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(unwritable)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(Error::Busy {
                dir: dir.to_path_buf(),
                holder: if holder.is_empty() {
                    "a process that is just starting".into()
                } else {
                    holder.to_string()
                },
            });
        }
        Err(TryLockError::Error(e)) => return Err(unwritable(e)),
    }
    let text = format!(
        "pid {} on {} since {}\n",
        std::process::id(),
        host_name(),
        utc_now()
    );
    file.set_len(0).map_err(unwritable)?;
    file.write_all(text.as_bytes()).map_err(unwritable)?;
    remove_leftover_temporaries(dir);
    Ok(DirLock { _file: file })
}

/// Removes `.NAME.tmp` files (what [`write_atomic`] writes before its rename) from `dir`.
fn remove_leftover_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") && entry.path().is_file() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// This machine's name, for telling the user where a lock is held.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this machine".into())
}

/// Seconds since 1970 split into the UTC calendar date and time of day: (year, month, day) and
/// (hour, minute, second), by the days-to-civil algorithm over the proleptic Gregorian calendar
/// (Hinnant, "chrono-Compatible Low-Level Date Algorithms", 2013).
pub fn civil_utc(secs: u64) -> ((i64, u32, u32), (u32, u32, u32)) {
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let t = (secs % 86_400) as u32;
    ((year, month, day), (t / 3600, t / 60 % 60, t % 60))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Now, as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_now() -> String {
    let ((y, mo, d), (h, mi, s)) = civil_utc(now_secs());
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// Today (UTC), as `YYYY-MM-DD`.
pub fn utc_today() -> String {
    let ((y, mo, d), _) = civil_utc(now_secs());
    format!("{y:04}-{mo:02}-{d:02}")
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
    fn a_locked_directory_is_refused_with_its_holder_and_released_on_drop() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("out");
        let held = lock_dir(&out).expect("the first lock succeeds");
        let err = lock_dir(&out).unwrap_err();
        assert!(err.is_input());
        let text = err.to_string();
        assert!(
            text.contains("in use by another synaptogen")
                && text.contains(&format!("pid {}", std::process::id()))
                && text.contains("--out"),
            "{text}"
        );
        drop(held);
        lock_dir(&out).expect("free again once dropped");
    }

    #[test]
    fn locking_removes_leftover_temporaries() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(".state.json.tmp"), b"half").expect("writes");
        std::fs::write(dir.path().join("keep.tmp"), b"user's").expect("writes");
        let _lock = lock_dir(dir.path()).expect("locks");
        assert!(!dir.path().join(".state.json.tmp").exists());
        assert!(dir.path().join("keep.tmp").exists());
    }

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_utc(0), ((1970, 1, 1), (0, 0, 0)));
        // 2000-02-29 12:34:56 UTC, a leap day of a century leap year.
        assert_eq!(civil_utc(951_827_696), ((2000, 2, 29), (12, 34, 56)));
        assert_eq!(civil_utc(1_796_083_200), ((2026, 12, 1), (0, 0, 0)));
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
