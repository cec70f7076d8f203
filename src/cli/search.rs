//! `synaptogen search`: load the spec and data, drive the search with a live progress line, and print
//! the ranked summary at the end.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{InputError, auto_report, data_roots, install_interrupt, print_stdout};
use crate::data::{self, Locator, TaskStream};
use crate::report;
use crate::search::journal::Stage;
use crate::search::{self, Finish, Launch, Monitor, Progress, Search, SearchSpec};

/// Arguments of `synaptogen search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// The search spec (RON).
    #[arg(value_name = "SPEC")]
    spec: PathBuf,
    /// Continue the search in the output directory from its journal and snapshot.
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Discard any search already in the output directory and start afresh.
    #[arg(long)]
    force: bool,
    /// Output directory [default: the spec's `out`, else runs/<spec name>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Trials run at once [default: the spec's `threads`, else one per core]. Never changes results.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    threads: Option<u64>,
    /// Where to look for datasets before $SYNAPTOGEN_DATA and ./data.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// No progress output on stderr (the summary still goes to stdout).
    #[arg(long, short)]
    quiet: bool,
    /// Do not write the report at the end (to reports/<name>/, or DIR/report/ with --out DIR).
    #[arg(long)]
    no_report: bool,
    /// Share the search with every process started with the same spec and URL, on any machine
    /// (postgresql://USER@HOST:PORT/DATABASE; a missing password is taken from PGPASSWORD or ~/.pgpass).
    /// The first process creates the search, later ones join it; each writes its files to its own --out.
    #[arg(long, value_name = "URL", conflicts_with = "resume")]
    storage: Option<String>,
    /// With --storage: seconds without the database before the process gives up (status 1; nothing
    /// recorded is lost).
    #[arg(long, value_name = "SECONDS", default_value_t = search::storage::OUTAGE_SECONDS, requires = "storage")]
    storage_timeout: u64,
    /// With --storage: seconds a claimed trial stays claimed without a heartbeat; after that another
    /// process takes it (a killed process loses its trials for at most this long).
    #[arg(long, value_name = "SECONDS", default_value_t = search::storage::LEASE_SECONDS, value_parser = clap::value_parser!(u64).range(1..), requires = "storage")]
    lease: u64,
    /// With --storage: follow the search (progress, and the files and report when it ends) without
    /// running trials.
    #[arg(long, requires = "storage")]
    watch: bool,
}

/// Draws the progress line: a live line on a terminal, one line per round otherwise.
struct Line {
    bar: Option<ProgressBar>,
    quiet: bool,
    last_round: Mutex<(usize, Instant)>,
}

fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

fn render(p: &Progress) -> String {
    let budget = p.budget.map_or(String::new(), |b| format!("/{b}"));
    let rate = p.evaluations as f64 / p.elapsed.max(1e-9);
    let rungs: Vec<String> = p.per_rung.iter().map(usize::to_string).collect();
    let best = p.best.as_ref().map_or("—".into(), |(adv, obj, rung, hash)| {
        format!(
            "{:.2}% ({:+.2} pp, rung {rung}, {})",
            100.0 * obj,
            100.0 * adv,
            &hash[..8]
        )
    });
    let eta = p.eta.map_or(String::new(), |e| format!(" ETA {}", clock(e)));
    format!(
        "{} │ round {} ({}/{} trials) │ evals {}{budget} ({rate:.2}/s) │ rungs {} │ cache {} │ best {best} │ {}{eta}",
        p.phase,
        p.round,
        p.round_trials.0,
        p.round_trials.1,
        p.evaluations,
        rungs.join("/"),
        p.cache_hits,
        clock(p.elapsed),
    )
}

impl Monitor for Line {
    fn update(&self, progress: &Progress) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.set_message(render(progress)),
            None => {
                // Logs get one line per round, and at most one every 10 s.
                let mut last = self.last_round.lock().unwrap_or_else(|e| e.into_inner());
                if progress.round != last.0 && last.1.elapsed() >= Duration::from_secs(10) {
                    *last = (progress.round, Instant::now());
                    eprintln!("{}", render(progress));
                }
            }
        }
    }

    fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None if !self.quiet => eprintln!("{text}"),
            None => {}
        }
    }

    fn warn(&self, text: &str) {
        // Not progress: --quiet keeps it.
        let line = format!("warning: {text}");
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

/// Runs `synaptogen search`.
pub fn search_command(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.spec)
        .map_err(|e| InputError(format!("{}: cannot read the spec ({e})", args.spec.display())))?;
    let spec = SearchSpec::parse(&text, &args.spec)?;
    // The database first: a wrong URL or password should not wait for the datasets to load.
    let storage = args
        .storage
        .as_deref()
        .map(|url| {
            search::storage::Storage::connect(url, args.storage_timeout, args.lease).map(std::sync::Arc::new)
        })
        .transpose()?;
    let stem = args
        .spec
        .file_stem()
        .map_or("search".into(), |s| s.to_string_lossy().into_owned());
    let name = spec.name_or(&stem);
    let out = args
        .out
        .clone()
        .or_else(|| spec.out.clone())
        .unwrap_or_else(|| Path::new("runs").join(&name));
    let threads = args
        .threads
        .map(|t| t as usize)
        .or(spec.threads)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

    let roots = data_roots(args.data_dir.as_deref());
    let (kind, held_out_kind) = search::datasets(&spec);
    let locator = Locator {
        explicit: spec.benchmark.data_path.clone(),
        roots: roots.clone(),
    };
    let dataset = data::load(kind, &locator)?.pooled(spec.benchmark.pool)?;
    let held_out = if held_out_kind == kind {
        dataset.clone()
    } else {
        let locator = Locator {
            explicit: None,
            roots,
        };
        data::load(held_out_kind, &locator)
            .context("loading the held-out dataset (set held_out.dataset in the spec to choose another)")?
            .pooled(spec.benchmark.pool)?
    };
    // Every trial's stream must fit its dataset; check the longest one now rather than mid-search.
    for d in [&dataset, &held_out] {
        TaskStream::new(d, spec.run_spec(spec.top_tasks(), spec.seed).stream_config())?;
    }

    let bar = (!args.quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(ProgressStyle::with_template("{spinner} {wide_msg}").expect("constant template"));
        bar.enable_steady_tick(Duration::from_millis(250));
        bar
    });
    let line = Line {
        bar,
        quiet: args.quiet,
        last_round: Mutex::new((usize::MAX, Instant::now() - Duration::from_secs(3600))),
    };
    let launch = Launch {
        out: out.clone(),
        resume: args.resume,
        force: args.force,
        threads,
        command: std::iter::once("synaptogen".to_string())
            .chain(shown_args(storage.as_deref()))
            .collect::<Vec<_>>()
            .join(" "),
        storage: storage.clone(),
        watch: args.watch,
    };
    let mut search = Search::start(&spec, &name, &dataset, &held_out, &launch, &line)?;
    let shared = storage.as_ref().map_or(String::new(), |s| {
        let role = if args.watch { "watching" } else { "shared" };
        format!(" ({role} through {})", s.url())
    });
    line.note(&format!(
        "{name}: {} seed rules, baselines [{}], rungs {:?} tasks on {}, {} seed(s), {threads} thread(s) → {}{shared}",
        spec.seed_rules.len(),
        search.baseline_labels().join(", "),
        spec.fidelity.rungs,
        dataset.name,
        spec.seeds,
        out.display()
    ));
    let stop = install_interrupt();
    let finish = search.run(&stop, &line)?;
    if let Some(bar) = &line.bar {
        bar.finish_and_clear();
    }
    match finish {
        Finish::Interrupted if storage.is_some() => {
            eprintln!(
                "interrupted: every recorded trial is in the database, and the other processes go on; \
                 rejoin with\n  {}",
                std::iter::once("synaptogen".to_string())
                    .chain(shown_args(storage.as_deref()))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            Ok(ExitCode::from(130))
        }
        Finish::Interrupted => {
            eprintln!(
                "interrupted: every finished trial is in {}; continue with\n  {}",
                out.join("journal.jsonl").display(),
                resume_command(std::env::args().skip(1))
            );
            Ok(ExitCode::from(130))
        }
        Finish::Finished => {
            // The same ranking and writer as the report's (one winner, wherever it is named).
            report::build::write_search_files(&out).context("saving the search results")?;
            let mut text = summary(&search, &spec, &name);
            if !args.no_report {
                let command = format!("synaptogen report {}", out.display());
                if let Some(dir) = auto_report(&out, args.out.as_deref(), &command) {
                    text.push_str(&format!("Report: {}\n", dir.join("report.html").display()));
                }
            }
            print_stdout(&text)
        }
    }
}

/// The arguments after the program name, the storage URL shown without its password: what the
/// journal header and messages may print.
fn shown_args(storage: Option<&search::storage::Storage>) -> Vec<String> {
    let mut shown = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), storage) {
            ("--storage", Some(s)) => {
                let _ = args.next();
                shown.push(a);
                shown.push(s.url().to_string());
            }
            (_, Some(s)) if a.starts_with("--storage=") => shown.push(format!("--storage={}", s.url())),
            _ => shown.push(a),
        }
    }
    shown
}

/// The command line as the user typed it (arguments after the program name), with `--force` or
/// `--resume` replaced by one `--resume` at the end, quoted for a POSIX shell where needed.
fn resume_command(args: impl Iterator<Item = String>) -> String {
    let quote = |a: &str| {
        if !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
        {
            a.to_string()
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    std::iter::once("synaptogen".to_string())
        .chain(
            args.filter(|a| a != "--force" && a != "--resume")
                .map(|a| quote(&a)),
        )
        .chain(std::iter::once("--resume".to_string()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A rule's source on one line: constants and assignments, without the function braces.
fn one_line(source: &str) -> String {
    source
        .lines()
        .filter(|l| !l.starts_with("fn ") && *l != "}" && !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

fn percent(x: f32) -> String {
    format!("{:.2}", 100.0 * x)
}

/// The ranked summary printed at the end of a search.
fn summary(search: &Search, spec: &SearchSpec, name: &str) -> String {
    let state = search.state();
    let mut out = String::new();
    let top = spec.fidelity.rungs.len() - 1;
    let _ = writeln!(
        out,
        "{name}: {} evaluations, {} candidates ({} cache hits, {} duplicate mutations retried) in {}",
        state.evaluations,
        state.candidates.len(),
        state.cache_hits,
        state.duplicates,
        clock(state.elapsed)
    );
    let _ = writeln!(
        out,
        "\nTop candidates (objective in %, mean over {} seed(s); advantage over the best baseline in pp):",
        spec.seeds
    );
    let _ = writeln!(
        out,
        "  {:>4}  {:<8}  {:>4}  {:>9}  {:>9}  {:>10}  rule",
        "id", "hash", "rung", "objective", "advantage", "complexity"
    );
    for c in search.leaderboard().iter().take(10) {
        let (k, s) = c.best_rung().expect("ranked candidates are scored");
        let rule = one_line(&c.record.source);
        let _ = writeln!(
            out,
            "  {:>4}  {:<8}  {:>4}  {:>9}  {:>+9.2}  {:>10}  {rule}",
            c.record.id,
            &c.record.hash[..8],
            k,
            percent(s.objective),
            100.0 * s.advantage,
            c.record.complexity,
        );
    }
    let _ = writeln!(
        out,
        "\nHall of fame (best per complexity; * = Pareto front of complexity vs rank):"
    );
    for (c, on_front) in state.hall_of_fame() {
        let (k, s) = c.best_rung().expect("ranked candidates are scored");
        let _ = writeln!(
            out,
            "  {} complexity {:>3}: #{:<5} rung {k} objective {}",
            if on_front { '*' } else { ' ' },
            c.record.complexity,
            c.record.id,
            percent(s.objective)
        );
    }
    let _ = writeln!(out, "\nBaselines at the top rung ({} tasks):", spec.top_tasks());
    for label in &state.baselines {
        if let Some(s) = state
            .baseline_scores
            .get(&search::score_key(label, Stage::Rung(top)))
        {
            let _ = writeln!(out, "  {label:<24} {:>9}", percent(s.objective));
        }
    }
    if !state.finalists.is_empty() {
        let (data, held_out) = search.datasets();
        let _ = writeln!(
            out,
            "\nHeld-out check at {} tasks: fresh seeds on {data}, and {held_out} (objective %, advantage pp):",
            spec.held_out_tasks()
        );
        for id in &state.finalists {
            let c = &state.candidates[*id];
            let show = |s: &Option<search::Score>| {
                s.as_ref().map_or("—".to_string(), |s| {
                    format!("{} ({:+.2})", percent(s.objective), 100.0 * s.advantage)
                })
            };
            let _ = writeln!(
                out,
                "  #{:<4} {:<8}  seeds {:<18} dataset {}",
                id,
                &c.record.hash[..8],
                show(&c.held_out_seeds),
                show(&c.held_out_dataset)
            );
        }
        for label in &state.baselines {
            let get = |stage| {
                state
                    .baseline_scores
                    .get(&search::score_key(label, stage))
                    .map_or("—".to_string(), |s| percent(s.objective))
            };
            let _ = writeln!(
                out,
                "  {label:<14} seeds {:<18} dataset {}",
                get(Stage::HeldOutSeeds),
                get(Stage::HeldOutDataset)
            );
        }
    }
    let _ = writeln!(
        out,
        "\nSearch overhead (proposing, hashing, journal, snapshots): {:.2}% of this session's wall time.",
        100.0 * search.overhead_fraction()
    );
    let _ = writeln!(
        out,
        "\nWritten to {}: journal.jsonl, state.json, lineage.dot, best.rhai",
        search.out().display()
    );
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_resume_hint_keeps_every_flag_given() {
        let args = [
            "search",
            "my spec.ron",
            "--force",
            "--data-dir",
            "/d",
            "--threads",
            "1",
            "--out",
            "it's",
        ];
        assert_eq!(
            super::resume_command(args.iter().map(|a| a.to_string())),
            r"synaptogen search 'my spec.ron' --data-dir /d --threads 1 --out 'it'\''s' --resume"
        );
    }
}
