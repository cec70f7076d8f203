//! The `synaptogen` command line: flags, the environment, progress, Ctrl-C and exit codes.
//!
//! The only module that reads argv or the environment. Parse first (clap gives plain arguments), then
//! resolve (spec file, `--data-dir` / `SYNAPTOGEN_DATA`, overrides), then run. Context is added here once;
//! [`exit_code`] is the one place that maps an error to a status: 0 ok, 1 the run itself failed (IO while
//! writing results), 2 bad input (flags, spec, dataset, output directory), 130 interrupted by Ctrl-C.

mod progress;
mod rules;
mod search;
mod summary;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::data::{self, Locator, TaskStream};
use crate::learner;
use crate::metrics::{self, AccuracyMatrix, TaskRecord};
use crate::report::{self, RunFiles, RunSnapshot};
use crate::run::{self, Observer, RunOptions, Status};
use crate::snn::Network;
use crate::spec::{self, LEARNER_NAMES, LearnerSpec, RunSpec};

use progress::Progress;

const EXAMPLES: &str = "\
Examples:
  # Fetch the datasets once, then train over 20 permuted MNIST tasks:
  scripts/fetch-data.sh
  synaptogen run searches/pmnist-quick.ron

  # The 200-task benchmark, only the first 50 tasks, another seed:
  synaptogen run searches/pmnist-200.ron --tasks 50 --seed 3 --out runs/sgd-s3

  # Compare baselines on identical streams and seeds, in parallel:
  synaptogen run searches/pmnist-quick.ron --learner sgd --learner cbp \\
      --learner 'Cbp(lr: 0.05, replacement_rate: 1e-3)' --learner mesu";

const SEARCH_EXAMPLES: &str = "\
Examples:
  # Ten minutes on two cores: find a rule that beats plain SGD on permuted MNIST:
  scripts/fetch-data.sh
  synaptogen search searches/quickstart.ron

  # An overnight search; after a crash or Ctrl-C, continue exactly where it stopped:
  synaptogen search searches/overnight.ron
  synaptogen search searches/overnight.ron --resume

  # Start again from scratch in the same directory:
  synaptogen search searches/quickstart.ron --force";

/// Discover local plasticity and pruning rules for spiking networks that keep learning.
#[derive(Debug, Parser)]
#[command(name = "synaptogen", version, about, after_help = EXAMPLES, max_term_width = 80)]
#[command(help_expected = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a network over a permuted task stream and measure every continual-learning metric.
    #[command(after_help = EXAMPLES)]
    Run(RunArgs),
    /// Search for rules: evolve the seed rules, evaluate candidates against the baselines over
    /// growing task sequences, and rank them; crash-safe and resumable.
    #[command(after_help = SEARCH_EXAMPLES)]
    Search(search::SearchArgs),
    /// Write the ranked report of a search or a multi-learner run: leaderboard with confidence
    /// intervals, held-out check, Pareto front, per-task curves, the winner's rule and lineage, as
    /// Markdown and self-contained HTML, with CSV and Parquet data beside them.
    #[command(
        after_help = "Examples:\n  synaptogen report runs/quickstart                # → reports/quickstart/\n  synaptogen report runs/baselines-pmnist --out /tmp/r"
    )]
    Report(ReportArgs),
    /// Validate a rule script: print its canonical form, the variables it reads and writes, and the
    /// compiled program of each section.
    #[command(after_help = "Example:\n  synaptogen check rules/my_rule.rhai")]
    Check(CheckArgs),
    /// List the vocabulary rules are written in: every variable with its meaning, scope and access,
    /// and the built-in functions.
    Vars,
    /// Write a rule as a self-contained Python module for NumPy or PyTorch: one function per section,
    /// taking the variables it reads and returning those it writes, equal to synaptogen bit for bit.
    #[command(
        after_help = "Examples:\n  synaptogen export reports/quickstart/best.rhai --to numpy              # to stdout\n  synaptogen export rules/local/oja.rhai --to torch --out oja_rule.py"
    )]
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    /// The rule script (.rhai).
    #[arg(value_name = "RULE")]
    rule: PathBuf,
    /// The library the module computes with.
    #[arg(long, value_enum, value_name = "TARGET")]
    to: ExportTarget,
    /// Write the module to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// `--to`: one value per [`crate::rule::export::Target`].
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ExportTarget {
    /// NumPy arrays (float32).
    Numpy,
    /// PyTorch tensors (float32), on any device.
    Torch,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// The output directory of `synaptogen search` or `synaptogen run`.
    #[arg(value_name = "RESULTS_DIR")]
    results: PathBuf,
    /// Where to write the report [default: reports/<name>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The rule script (.rhai).
    #[arg(value_name = "RULE")]
    rule: PathBuf,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The run spec (RON): benchmark, network and learner sections.
    #[arg(value_name = "SPEC")]
    spec: PathBuf,
    /// Train only the first N tasks of the stream (overrides benchmark.tasks).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    tasks: Option<u64>,
    /// Seed for the task stream and the initial weights (overrides the spec's seed).
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// Output directory [default: runs/<spec name>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Where to look for datasets before $SYNAPTOGEN_DATA and ./data.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Train this learner instead of the spec's learner and baselines; repeat it to compare several on
    /// identical streams and seeds, in parallel. A NAME (sgd, l2, l2_init, shrink_perturb, shrink_perturb_task, cbp, redo, mesu,
    /// ewc_online, ewc_stream, si) takes the reference defaults and the spec's step size; a RON value such
    /// as 'Cbp(lr: 0.05, maturity: 500)' sets parameters.
    #[arg(long = "learner", value_name = "LEARNER")]
    learners: Vec<String>,
    /// Train with this rule script (its synapse() section), beside any --learner; repeatable. The rule
    /// reads the spec's step size as lr. Learners train, and are listed, in command-line order.
    #[arg(long = "rule", value_name = "RULE")]
    rules: Vec<PathBuf>,
    /// Per `--rule`, how many `--learner` flags come before it on the command line (filled in after
    /// parsing, from clap's argument indices: the derived fields keep each flag's own order only).
    #[arg(skip)]
    learners_before_rule: Vec<usize>,
    /// Learners trained at once [default: one per core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    threads: Option<u64>,
    /// No progress output on stderr (results still go to stdout and the output directory).
    #[arg(long, short)]
    quiet: bool,
    /// With several learners, do not write the report at the end (to reports/<name>/, or
    /// DIR/report/ with --out DIR).
    #[arg(long)]
    no_report: bool,
}

/// An error the user can fix by changing their input; exits with status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct InputError(String);

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = parse();
    // `SYNAPTOGEN_JIT=off` interprets every rule program instead of running native kernels (the same
    // results, slower): for comparing the two, or on a host where generated code misbehaves.
    // `SYNAPTOGEN_JIT=cranelift` writes every kernel with Cranelift (four lanes), even where the CPU has
    // AVX-512 (sixteen): the same results, for comparing the two or output independent of the CPU.
    match std::env::var_os("SYNAPTOGEN_JIT") {
        Some(v) if v == "off" => crate::rule::program::set_native(false),
        Some(v) if v == "cranelift" => crate::rule::program::set_avx512(false),
        _ => {}
    }
    match dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", message(&err));
            ExitCode::from(exit_code(&err))
        }
    }
}

/// The command line, with `run`'s learners in the order they were given: `--learner sgd --rule a.rhai
/// --learner sgd` trains SGD, the rule, then SGD again (`scripts/rule-speed.sh` relies on it to time
/// each rule between two SGD runs).
fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let (Command::Run(args), Some(("run", run))) = (&mut cli.command, matches.subcommand()) {
        let positions =
            |id: &str| -> Vec<usize> { run.indices_of(id).map(Iterator::collect).unwrap_or_default() };
        let learners = positions("learners");
        args.learners_before_rule = positions("rules")
            .iter()
            .map(|&rule| learners.iter().filter(|&&learner| learner < rule).count())
            .collect();
    }
    cli
}

/// The error and its causes on one line, each said once: many of our errors already quote their
/// cause (`…: cannot write (No space left on device)`), which `{:#}` would print again after them.
fn message(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// The one place an error becomes an exit status.
fn exit_code(err: &anyhow::Error) -> u8 {
    let is_input = err.chain().any(|cause| {
        cause.is::<spec::Error>()
            || cause.is::<data::Error>()
            || cause.is::<InputError>()
            || cause.is::<crate::rule::Error>()
            || cause
                .downcast_ref::<crate::search::Error>()
                .is_some_and(crate::search::Error::is_input)
            || cause
                .downcast_ref::<crate::search::storage::Error>()
                .is_some_and(crate::search::storage::Error::is_input)
            || cause
                .downcast_ref::<report::Error>()
                .is_some_and(report::Error::is_input)
            || cause
                .downcast_ref::<crate::files::Error>()
                .is_some_and(crate::files::Error::is_input)
    });
    if is_input { 2 } else { 1 }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run_command(args),
        Command::Search(args) => search::search_command(args),
        Command::Report(args) => report_command(&args),
        Command::Check(args) => check_command(&args),
        Command::Vars => print_stdout(&rules::vocabulary_table()),
        Command::Export(args) => export_command(&args),
    }
}

fn export_command(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let compiled = crate::files::read_rule(&args.rule)?;
    let target = match args.to {
        ExportTarget::Numpy => crate::rule::export::Target::Numpy,
        ExportTarget::Torch => crate::rule::export::Target::Torch,
    };
    let file_name = args.rule.file_name().map_or_else(
        || args.rule.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let module = crate::rule::export::python(&compiled, &file_name, target);
    match &args.out {
        Some(path) => {
            crate::files::write_atomic(path, module.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        None => print_stdout(&module),
    }
}

fn report_command(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let mut command = format!("synaptogen report {}", args.results.display());
    if let Some(out) = &args.out {
        command.push_str(&format!(" --out {}", out.display()));
    }
    let written = report::build(&args.results, args.out.as_deref(), &command)?;
    for w in &written.warnings {
        eprintln!("warning: {w}");
    }
    let mut text = format!(
        "Report written to {}: report.md, report.html, leaderboard.csv, evaluations.parquet, curves.csv{}\n",
        written.dir.display(),
        written
            .winner
            .map_or(String::new(), |w| format!(" (winner: {w})"))
    );
    if let Some(command) = &written.export {
        text.push_str(&format!(
            "To use the winner in Python: {command} (or --to torch)\n"
        ));
    }
    print_stdout(&text)
}

/// Writes the report of a finished search or multi-learner run: under `DIR/report/` when the user
/// chose the output directory with `--out DIR` (everything the command writes stays in DIR), else in
/// `reports/<name>/`. A report that cannot be made is a warning, not a failure of the run whose
/// results are already saved.
fn auto_report(results: &Path, out_flag: Option<&Path>, command: &str) -> Option<PathBuf> {
    let report_dir = out_flag.map(|dir| dir.join("report"));
    match report::build(results, report_dir.as_deref(), command) {
        Ok(written) => Some(written.dir),
        Err(e) => {
            eprintln!(
                "warning: the report could not be written ({e}); retry with `synaptogen report {}`",
                results.display()
            );
            None
        }
    }
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
fn print_stdout(text: &str) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn check_command(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let compiled = crate::files::read_rule(&args.rule)?;
    print_stdout(&rules::check_report(&args.rule, &compiled))
}

/// The data directories to search, in order: `--data-dir`, `$SYNAPTOGEN_DATA`, `./data`.
fn data_roots(flag: Option<&Path>) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = flag.map(Path::to_path_buf).into_iter().collect();
    if let Some(env) = std::env::var_os("SYNAPTOGEN_DATA").filter(|v| !v.is_empty()) {
        roots.push(PathBuf::from(env));
    }
    roots.push(PathBuf::from("data"));
    roots
}

fn read_spec(path: &Path) -> anyhow::Result<RunSpec> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| InputError(format!("{}: cannot read the spec ({e})", path.display())))?;
    Ok(RunSpec::parse(&text, path)?)
}

/// Sets a flag when Ctrl-C arrives; the run polls it between updates.
fn install_interrupt() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // A second handler cannot be installed in the same process (tests call this once per process);
    // without one, Ctrl-C simply kills the process, which loses at most the unfinished task.
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    stop
}

/// Turns one `--learner` value into a learner spec: a known name with reference defaults and the
/// spec's step size, or a RON learner section.
fn resolve_learner(text: &str, spec: &RunSpec) -> anyhow::Result<LearnerSpec> {
    let source = PathBuf::from(format!("--learner {text}"));
    let learner = if text.contains('(') {
        spec::parse_learner(text, &source)?
    } else {
        let lr = spec.learner.lr().unwrap_or(spec::DEFAULT_LR);
        LearnerSpec::named(text, lr).ok_or_else(|| {
            let hint = crate::names::closest(text, LEARNER_NAMES)
                .map_or(String::new(), |n| format!(" (did you mean '{n}'?)"));
            InputError(format!(
                "--learner: unknown learner '{text}'{hint}; known learners: {}",
                LEARNER_NAMES.join(", ")
            ))
        })?
    };
    RunSpec {
        learner: learner.clone(),
        baselines: vec![],
        ..spec.clone()
    }
    .validate(&source)?;
    Ok(learner)
}

/// One learner's run: where it writes and how it ended.
struct LearnerResult {
    label: String,
    outcome: run::RunOutcome,
    summary: Option<metrics::Summary>,
    dir: PathBuf,
}

/// What every learner of one `synaptogen run` shares.
struct Shared<'a> {
    spec: &'a RunSpec,
    name: &'a str,
    dataset: &'a data::Dataset,
    stream: &'a TaskStream<'a>,
    options: &'a RunOptions,
    display: &'a progress::Display,
    stop: &'a Arc<AtomicBool>,
    labelled: bool,
    rules: &'a learner::Rules,
}

fn run_learner(
    shared: &Shared,
    label: &str,
    learner_spec: &LearnerSpec,
    files: &RunFiles,
) -> anyhow::Result<LearnerResult> {
    let spec = RunSpec {
        learner: learner_spec.clone(),
        baselines: vec![],
        ..shared.spec.clone()
    };
    let network = Network::new(
        spec.network_config(shared.dataset.pixels(), shared.dataset.classes),
        spec.seed,
    );
    let mut learner = learner::build(&spec.learner, network, spec.seed, shared.rules);
    let config = shared.stream.config();
    let progress = shared.display.learner(
        shared.labelled.then(|| label.to_string()),
        config.tasks,
        config.train_per_task * config.epochs,
    );
    let mut observer = FileObserver {
        files,
        spec: &spec,
        name: shared.name,
        learner: label.to_string(),
        dataset: &shared.dataset.name,
        records: Vec::new(),
        error: None,
        stop: shared.stop.clone(),
        progress,
    };
    let outcome = run::run(shared.stream, &mut *learner, shared.options, &mut observer);
    observer.progress.finish();
    if let Some(err) = observer.error.take() {
        return Err(anyhow::Error::new(err).context(format!(
            "{label}: the run stopped because its results could not be saved"
        )));
    }
    let summary = metrics::summarize(&outcome.matrix, &outcome.records);
    files
        .write(RunSnapshot {
            name: shared.name,
            learner: label,
            dataset: &shared.dataset.name,
            status: &outcome.status,
            spec: &spec,
            records: &outcome.records,
            matrix: &outcome.matrix,
            summary: summary.as_ref(),
        })
        .with_context(|| format!("{label}: saving the final results"))?;
    Ok(LearnerResult {
        label: label.to_string(),
        outcome,
        summary,
        dir: files.dir().to_path_buf(),
    })
}

fn run_command(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut spec = read_spec(&args.spec)?;
    if let Some(tasks) = args.tasks {
        spec.benchmark.tasks = usize::try_from(tasks).context("--tasks is too large")?;
    }
    if let Some(seed) = args.seed {
        spec.seed = seed;
    }
    // The flags change sizes the spec file was checked with (--tasks): check them again.
    spec.validate(&args.spec)?;
    let named_on_command_line = !args.learners.is_empty() || !args.rules.is_empty();
    let mut learners: Vec<LearnerSpec> = if named_on_command_line {
        args.learners
            .iter()
            .map(|text| resolve_learner(text, &spec))
            .collect::<anyhow::Result<_>>()?
    } else {
        std::iter::once(&spec.learner)
            .chain(&spec.baselines)
            .cloned()
            .collect()
    };
    // `--rule` files train like the spec's own rule learner (its step size, layers, biases, structure
    // schedule and replacement) when it has one, else with its step size and every matrix following the rule.
    let template = match &spec.learner {
        LearnerSpec::Rule(rule) => rule.clone(),
        other => spec::RuleSpec {
            lr: other.lr().unwrap_or(spec::DEFAULT_LR),
            ..spec::RuleSpec::default()
        },
    };
    // Each rule goes after the learners named before it (the last rule first, so the positions of
    // the earlier ones still hold); without positions (a caller other than `main`), after them all.
    for (k, file) in args.rules.iter().enumerate().rev() {
        let learners_before = args
            .learners_before_rule
            .get(k)
            .map_or(args.learners.len(), |&n| n);
        let rule = LearnerSpec::Rule(spec::RuleSpec {
            path: Some(file.clone()),
            ..template.clone()
        });
        learners.insert(learners_before.min(learners.len()), rule);
    }
    let rules = crate::files::read_rules(&learners)?;
    let stem = args
        .spec
        .file_stem()
        .map_or("run".into(), |s| s.to_string_lossy().into_owned());
    let name = spec.name_or(&stem);
    let out_dir = args.out.clone().unwrap_or_else(|| Path::new("runs").join(&name));
    // One learner from the spec writes straight into the output directory; learners named on the
    // command line get a subdirectory each (a repeated name gets a suffix).
    let labels = spec::labels(&learners);
    let labelled = learners.len() > 1 || named_on_command_line;
    if out_dir.join("journal.jsonl").exists() {
        return Err(InputError(format!(
            "{}: holds a search (journal.jsonl); a run there would mix with it: choose another --out",
            out_dir.display()
        ))
        .into());
    }
    // Held until the run ends: one process per results directory.
    let _lock = crate::files::lock_dir(&out_dir)?;
    if report::clear_previous_run(&out_dir)? && !args.quiet {
        eprintln!(
            "note: {} held an earlier run; its results are replaced by this one's",
            out_dir.display()
        );
    }
    let files: Vec<RunFiles> = labels
        .iter()
        .map(|label| {
            RunFiles::create(&if labelled {
                out_dir.join(label)
            } else {
                out_dir.clone()
            })
        })
        .collect::<Result<_, _>>()?;

    let locator = Locator {
        explicit: spec.benchmark.data_path.clone(),
        roots: data_roots(args.data_dir.as_deref()),
    };
    let dataset = data::load(spec.benchmark.dataset, &locator)?.pooled(spec.benchmark.pool)?;
    let stream = TaskStream::new(&dataset, spec.stream_config())?;
    let options = spec.run_options();
    let stop = install_interrupt();
    let display = progress::Display::new(args.quiet);
    display.announce(&format!(
        "{name}: {} on {} ({} tasks, {} inputs, hidden {:?}), seed {}",
        labels.join(", "),
        dataset.name,
        spec.benchmark.tasks,
        dataset.pixels(),
        spec.network.hidden,
        spec.seed
    ));
    let shared = Shared {
        spec: &spec,
        name: &name,
        dataset: &dataset,
        stream: &stream,
        options: &options,
        display: &display,
        stop: &stop,
        labelled,
        rules: &rules,
    };
    // No more threads than learners: each trains on one thread, and idle threads only cost time to start.
    let threads = args.threads.map_or(0, |t| {
        usize::try_from(t).unwrap_or(usize::MAX).min(learners.len())
    });
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("starting the worker threads")?;
    let results: Vec<anyhow::Result<LearnerResult>> = pool.install(|| {
        use rayon::prelude::*;
        // One job per learner: runs differ in cost by 10× (MESU), and rayon would otherwise hand a
        // thread a run of neighbouring learners to do one after the other while another thread idles.
        labels
            .par_iter()
            .zip(&learners)
            .zip(&files)
            .with_max_len(1)
            .map(|((label, learner), files)| run_learner(&shared, label, learner, files))
            .collect()
    });
    let results: Vec<LearnerResult> = results.into_iter().collect::<anyhow::Result<_>>()?;

    let text = if labelled {
        let rows: Vec<report::ComparisonRow> = results
            .iter()
            .map(|r| comparison_row(r, spec.benchmark.tasks))
            .collect();
        report::write_comparison(&out_dir, &rows).context("saving comparison.csv")?;
        let mut text = summary::comparison(&name, &rows, &out_dir);
        if !args.no_report {
            let command = format!("synaptogen report {}", out_dir.display());
            if let Some(dir) = auto_report(&out_dir, args.out.as_deref(), &command) {
                text.push_str(&format!("Report: {}\n", dir.join("report.html").display()));
            }
        }
        text
    } else {
        let r = &results[0];
        summary::render(&name, &r.label, &r.outcome, r.summary.as_ref(), &r.dir)
    };
    print_stdout(&text)?;
    let interrupted = results.iter().any(|r| r.outcome.status == Status::Interrupted);
    Ok(if interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// One learner's comparison line; `planned` is the number of tasks the run was to train.
fn comparison_row(result: &LearnerResult, planned: usize) -> report::ComparisonRow {
    let last = result.outcome.records.last();
    report::ComparisonRow {
        learner: result.label.clone(),
        status: match &result.outcome.status {
            Status::Completed => "completed".into(),
            Status::Interrupted => "interrupted".into(),
            Status::Diverged { task, .. } => format!("diverged in task {task}"),
        },
        summary: result.summary.clone(),
        effective_rank: last.map(|r| r.start.mean_effective_rank()),
        long_horizon: last.map(|_| {
            let records = &result.outcome.records;
            // A diverged run was planned longer than it got: its missing tasks count as collapsed.
            let planned = match result.outcome.status {
                Status::Diverged { .. } => planned,
                _ => records.len(),
            };
            crate::search::objective::Objective::long_horizon().score_records(records, planned)
        }),
        dead_fraction: last.map(|r| r.start.dead_fraction),
        samples_per_second: (!result.outcome.records.is_empty()).then(|| {
            result
                .outcome
                .records
                .iter()
                .map(|r| r.samples_per_second)
                .sum::<f64>()
                / result.outcome.records.len() as f64
        }),
    }
}

/// Saves every finished task as it lands and drives the progress display.
struct FileObserver<'a> {
    files: &'a RunFiles,
    spec: &'a RunSpec,
    name: &'a str,
    learner: String,
    dataset: &'a str,
    records: Vec<TaskRecord>,
    error: Option<report::Error>,
    stop: Arc<AtomicBool>,
    progress: Progress,
}

impl Observer for FileObserver<'_> {
    fn task_started(&mut self, _task: usize, _tasks: usize) {
        self.progress.task_started();
    }

    fn progress(&mut self, task: usize, samples_done: usize, _samples_total: usize, online_accuracy: f32) {
        self.progress.update(task, samples_done, online_accuracy);
    }

    fn task_finished(&mut self, record: &TaskRecord, matrix: &AccuracyMatrix) {
        self.records.push(record.clone());
        self.progress.task_finished(record);
        let summary = metrics::summarize(matrix, &self.records);
        let status = Status::Interrupted;
        let written = self.files.write(RunSnapshot {
            name: self.name,
            learner: &self.learner,
            dataset: self.dataset,
            status: &status,
            spec: self.spec,
            records: &self.records,
            matrix,
            summary: summary.as_ref(),
        });
        if let Err(e) = written {
            self.error = Some(e);
        }
    }

    fn should_stop(&mut self) -> bool {
        self.error.is_some() || self.stop.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_says_each_cause_once() {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let err = anyhow::Error::from(crate::files::Error::Write {
            path: "out/state.json".into(),
            source: full,
        })
        .context("saving the search results");
        let text = super::message(&err);
        let said = text
            .matches(&std::io::Error::from(std::io::ErrorKind::StorageFull).to_string())
            .count();
        assert_eq!(said, 1, "{text}");
        assert!(
            text.starts_with("saving the search results: out/state.json: cannot write"),
            "{text}"
        );
    }
}
