//! `synaptogen search --storage postgresql://…` against a real PostgreSQL: a search shared by several
//! processes ends exactly as a single-process search, whoever joins late or dies; a database restart
//! and an outage; every bad input. `.ci/run` runs these under `pg_virtualenv`, which starts a throwaway
//! server and sets `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD` and `PGVERSION`:
//!
//!   pg_virtualenv cargo test --test storage -- --ignored --test-threads 1

mod util;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use postgres::{Config, NoTls};
use synaptogen::search::storage::credentials::{ProcessEnvironment, complete, redacted};
use util::{final_state, journal_content, search_spec, synaptogen};

/// The server's configuration from the environment, as the binary completes it.
fn server() -> Config {
    let mut config = Config::from_str("postgresql://").expect("an empty URL parses");
    complete(&mut config, &ProcessEnvironment);
    config
}

/// A fresh, empty database named `name`; its URL without password (the binary takes the password from
/// `PGPASSWORD`, as libpq does).
fn database(name: &str) -> String {
    let mut client = server()
        .connect(NoTls)
        .expect("PostgreSQL must be running: run these tests under pg_virtualenv (.ci/run does)");
    // Two statements, not one batch: a batch is one transaction, which DROP DATABASE refuses.
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .expect("drop the test database");
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create the test database");
    let mut config = server();
    config.dbname(name);
    redacted(&config)
}

/// A client of the database `url` names.
fn client(url: &str) -> postgres::Client {
    let mut config = Config::from_str(url).expect("a valid URL");
    complete(&mut config, &ProcessEnvironment);
    config.connect(NoTls).expect("connect")
}

/// The test search, named `name`, with `budget` evaluations.
fn spec(name: &str, budget: usize) -> String {
    search_spec(budget).replace("\"test-search\"", &format!("\"{name}\""))
}

/// `synaptogen search spec.ron --out OUT --quiet ARGS` in `dir`, not waited for.
fn start(dir: &Path, out: &str, args: &[&str]) -> Child {
    synaptogen(dir)
        .args(["search", "spec.ron", "--out", out, "--quiet", "--no-report"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

/// Waits for `child` (at most three minutes): status code, stdout, stderr.
fn finish(child: Child) -> (i32, String, String) {
    let id = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(180));
        let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
    });
    let out = child.wait_with_output().expect("wait");
    drop(watchdog);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the search of `dir/spec.ron` to its end in this process alone, into `dir/out`.
fn single_process(dir: &Path) -> PathBuf {
    let (code, _, stderr) = finish(start(dir, "single", &["--threads", "1"]));
    assert_eq!(code, 0, "{stderr}");
    dir.join("single")
}

/// Recorded trials of the search `name`.
fn recorded(url: &str, name: &str) -> i64 {
    client(url)
        .query_one(
            "SELECT count(*) FROM synaptogen_trials t JOIN synaptogen_searches s ON s.id = t.search \
             WHERE s.name = $1 AND t.record IS NOT NULL",
            &[&name],
        )
        .map_or(0, |r| r.get(0))
}

/// Waits until the search `name` has `n` recorded trials.
fn wait_for_records(url: &str, name: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while recorded(url, name) < n {
        assert!(Instant::now() < deadline, "never reached {n} recorded trials");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks that `out` holds exactly the single-process search's results.
fn assert_same_search(out: &Path, single: &Path) {
    assert_eq!(journal_content(out), journal_content(single), "{}", out.display());
    assert_eq!(final_state(out), final_state(single), "{}", out.display());
    assert_eq!(
        std::fs::read_to_string(out.join("best.rhai")).expect("best.rhai"),
        std::fs::read_to_string(single.join("best.rhai")).expect("best.rhai"),
    );
}

#[test]
#[ignore = "needs PostgreSQL; .ci/run runs it under pg_virtualenv"]
fn three_processes_one_killed_and_one_late_end_exactly_as_one_process() {
    let url = database("shared_equal");
    let dir = tempfile::tempdir().expect("dir");
    util::write_spec(dir.path(), &spec("shared", 40));
    let single = single_process(dir.path());

    let shared = ["--storage", url.as_str(), "--threads", "1", "--lease", "2"];
    let mut workers: Vec<Child> = (0..3)
        .map(|k| start(dir.path(), &format!("w{k}"), &shared))
        .collect();
    // Kill one mid-run, with trials of its own probably claimed: their leases must run out and others
    // take them.
    wait_for_records(&url, "shared", 8);
    let victim = workers.remove(1);
    Command::new("kill")
        .args(["-9", &victim.id().to_string()])
        .status()
        .expect("kill");
    let _ = finish(victim);
    wait_for_records(&url, "shared", 16);
    workers.push(start(dir.path(), "w3", &shared));
    // And one that only watches, started late too.
    workers.push(start(
        dir.path(),
        "watcher",
        &["--storage", url.as_str(), "--watch"],
    ));
    for (worker, out) in workers.into_iter().zip(["w0", "w2", "w3", "watcher"]) {
        let (code, stdout, stderr) = finish(worker);
        assert_eq!(code, 0, "{out}: {stderr}");
        assert!(stdout.contains("Top candidates"), "{out}: {stdout}");
        assert_same_search(&dir.path().join(out), &single);
    }
    // `synaptogen report` reads a shared search's files as any other.
    let report = synaptogen(dir.path())
        .args(["report", "w0", "--out", "r"])
        .output()
        .expect("report runs");
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
}

#[test]
#[ignore = "needs PostgreSQL; .ci/run runs it under pg_virtualenv"]
fn two_searches_in_one_database_do_not_interfere() {
    let url = database("shared_two");
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().expect("dir")).collect();
    let mut singles = Vec::new();
    for (k, dir) in dirs.iter().enumerate() {
        // Different names and seeds: different searches.
        let text = spec(&format!("search{k}"), 24).replace("seed: 3", &format!("seed: {}", 3 + k));
        util::write_spec(dir.path(), &text);
        singles.push(single_process(dir.path()));
    }
    let children: Vec<Child> = dirs
        .iter()
        .flat_map(|d| {
            (0..2).map(|k| start(d.path(), &format!("w{k}"), &["--storage", &url, "--threads", "1"]))
        })
        .collect();
    for (k, child) in children.into_iter().enumerate() {
        let (code, _, stderr) = finish(child);
        assert_eq!(code, 0, "{stderr}");
        let (dir, single) = (&dirs[k / 2], &singles[k / 2]);
        assert_same_search(&dir.path().join(format!("w{}", k % 2)), single);
    }
}

/// `pg_ctlcluster` on pg_virtualenv's cluster.
fn cluster(action: &[&str]) {
    let version = std::env::var("PGVERSION").expect("PGVERSION (set by pg_virtualenv)");
    let status = Command::new("pg_ctlcluster")
        .arg(&version)
        .arg("regress")
        .args(action)
        .status()
        .expect("pg_ctlcluster runs");
    assert!(status.success(), "pg_ctlcluster {action:?}");
}

#[test]
#[ignore = "needs PostgreSQL and stops it; .ci/run runs it under pg_virtualenv, one test at a time"]
fn a_database_restart_mid_search_changes_nothing_and_a_long_outage_exits_1() {
    let url = database("shared_restart");
    let dir = tempfile::tempdir().expect("dir");
    util::write_spec(dir.path(), &spec("restart", 40));
    let single = single_process(dir.path());

    let shared = ["--storage", url.as_str(), "--threads", "1", "--lease", "2"];
    let workers: Vec<Child> = (0..2)
        .map(|k| start(dir.path(), &format!("w{k}"), &shared))
        .collect();
    wait_for_records(&url, "restart", 10);
    cluster(&["stop", "-m", "immediate"]);
    std::thread::sleep(Duration::from_secs(3));
    cluster(&["start"]);
    for (worker, out) in workers.into_iter().zip(["w0", "w1"]) {
        let (code, _, stderr) = finish(worker);
        assert_eq!(code, 0, "{out}: {stderr}");
        assert_same_search(&dir.path().join(out), &single);
    }

    // A database gone for longer than --storage-timeout: status 1 and one clear line.
    util::write_spec(dir.path(), &spec("outage", 400));
    let worker = start(
        dir.path(),
        "outage",
        &[
            "--storage",
            url.as_str(),
            "--threads",
            "1",
            "--storage-timeout",
            "3",
        ],
    );
    wait_for_records(&url, "outage", 4);
    cluster(&["stop", "-m", "immediate"]);
    let (code, _, stderr) = finish(worker);
    cluster(&["start"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("lost the database for 3 s"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Runs a search that must fail at once: its status and stderr.
fn refused(dir: &Path, args: &[&str]) -> (i32, String) {
    let (code, _, stderr) = finish(start(dir, "out", args));
    (code, stderr)
}

#[test]
#[ignore = "needs PostgreSQL; .ci/run runs it under pg_virtualenv"]
fn bad_storage_input_is_one_clear_line_with_status_2_and_never_a_password() {
    let url = database("shared_bad");
    let dir = tempfile::tempdir().expect("dir");
    util::write_spec(dir.path(), &spec("bad", 8));
    let password = std::env::var("PGPASSWORD").expect("PGPASSWORD (set by pg_virtualenv)");
    let config = server();
    let user = config.get_user().expect("a user").to_string();
    let with_password = url.replacen(&format!("{user}@"), &format!("{user}:{password}@"), 1);
    assert!(with_password.contains(&password));
    let wrong = url.replacen(&format!("{user}@"), &format!("{user}:not-{password}@"), 1);
    let cases: Vec<(String, &str)> = vec![
        ("mysql://x@y/z".into(), "is not a PostgreSQL URL"),
        ("postgresql://a:secret@[::1".into(), "is not a PostgreSQL URL"),
        (
            "postgresql://nobody@127.0.0.1:1/x".into(),
            "cannot reach the database",
        ),
        (wrong.clone(), "refused the credentials"),
        (url.replace("/shared_bad", "/no_such_db"), "create it first"),
    ];
    for (storage, expected) in &cases {
        let (code, stderr) = refused(dir.path(), &["--storage", storage]);
        assert_eq!(code, 2, "{storage}: {stderr}");
        assert!(stderr.contains(expected), "{storage}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{storage}: {stderr}");
        assert!(
            !stderr.contains("secret") && !stderr.contains(&password),
            "{stderr}"
        );
    }

    // A search run with the password in its URL (and none in the environment) never shows it.
    let (code, stdout, stderr) = finish(
        synaptogen(dir.path())
            .args(["search", "spec.ron", "--out", "pw", "--storage", &with_password])
            .env_remove("PGPASSWORD")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts"),
    );
    assert_eq!(code, 0, "{stderr}");
    let mut seen = vec![stdout, stderr];
    for entry in walk(&dir.path().join("pw")) {
        seen.push(String::from_utf8_lossy(&std::fs::read(entry).expect("read")).into_owned());
    }
    let mut db = client(&url);
    for row in db
        .query("SELECT header FROM synaptogen_searches", &[])
        .expect("query")
    {
        seen.push(row.get(0));
    }
    for text in &seen {
        assert!(!text.contains(&password), "the password leaked: {text}");
    }

    // The same name with another spec.
    util::write_spec(dir.path(), &spec("bad", 8).replace("lr: 0.1", "lr: 0.2"));
    let (code, stderr) = refused(dir.path(), &["--storage", &url]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("with a different spec"), "{stderr}");

    // A minutes budget cannot be shared.
    util::write_spec(
        dir.path(),
        &spec("minutes", 8).replace("budget: (evaluations: 8)", "budget: (minutes: 1.0)"),
    );
    let (code, stderr) = refused(dir.path(), &["--storage", &url]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("budget.minutes"), "{stderr}");

    // Tables of another format.
    db.execute("UPDATE synaptogen_format SET format = 99", &[])
        .expect("update");
    util::write_spec(dir.path(), &spec("bad", 8));
    let (code, stderr) = refused(dir.path(), &["--storage", &url]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("tables of format 99"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// `squeue`'s state of one array task ("" once it left the queue).
fn slurm_state(task: &str) -> String {
    let out = Command::new("squeue")
        .args(["-h", "-j", task, "-o", "%T"])
        .output()
        .expect("squeue runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `command` and returns its stdout, failing the test on a non-zero status.
fn ok(command: &mut Command) -> String {
    let out = command.output().expect("runs");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
#[ignore = "needs PostgreSQL and a SLURM cluster (SLURM_CONF); .ci/run starts both"]
fn a_slurm_array_with_a_task_killed_and_requeued_ends_as_one_process() {
    let url = database("shared_slurm");
    let dir = tempfile::tempdir().expect("dir");
    util::write_spec(dir.path(), &spec("slurm", 40));
    let single = single_process(dir.path());
    let binary = assert_cmd::cargo::cargo_bin!("synaptogen");
    let script = util::repo().join("scripts/slurm/search.sbatch");
    let job = ok(Command::new("sbatch")
        .args(["--parsable", "--array=0-2", "--cpus-per-task=1", "--chdir"])
        .arg(dir.path())
        .arg("--output")
        .arg(dir.path().join("slurm-%a.out"))
        .arg(format!("--export=ALL,SYNAPTOGEN={}", binary.display()))
        .arg(&script)
        .args(["spec.ron", &url, "shared", "--lease", "2"]));
    let victim = format!("{job}_1");
    let deadline = Instant::now() + Duration::from_secs(120);
    while slurm_state(&victim) != "RUNNING" || recorded(&url, "slurm") < 8 {
        assert!(
            Instant::now() < deadline,
            "task 1 never ran alongside recorded trials"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ok(Command::new("scancel").args(["--signal=KILL", &victim]));
    while slurm_state(&victim) == "RUNNING" {
        assert!(Instant::now() < deadline, "scancel did not stop task 1");
        std::thread::sleep(Duration::from_millis(50));
    }
    ok(Command::new("scontrol").args(["requeue", &victim]));
    // A requeued job waits before it is eligible again; start it now.
    ok(Command::new("scontrol").args(["update", &format!("JobId={victim}"), "StartTime=now"]));
    let deadline = Instant::now() + Duration::from_secs(240);
    while !slurm_state(&job).is_empty() {
        assert!(Instant::now() < deadline, "the array never finished");
        std::thread::sleep(Duration::from_millis(200));
    }
    let log =
        |k: usize| std::fs::read_to_string(dir.path().join(format!("slurm-{k}.out"))).unwrap_or_default();
    for k in 0..3 {
        let out = dir.path().join(format!("shared/task-{k}"));
        assert!(
            out.join("best.rhai").exists(),
            "task {k} did not finish: {}",
            log(k)
        );
        assert_same_search(&out, &single);
    }
}
