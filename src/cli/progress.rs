//! Progress on stderr: live bars on a terminal (one per learner), one line per finished task otherwise
//! (logs, CI), nothing with `--quiet`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::metrics::TaskRecord;

/// Where progress goes for every learner of one `synaptogen run`.
#[derive(Clone)]
pub struct Display {
    quiet: bool,
    bars: Option<MultiProgress>,
}

impl Display {
    /// Bars when stderr is a terminal and not `quiet`, plain lines otherwise.
    pub fn new(quiet: bool) -> Display {
        let bars = (!quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4)));
        Display { quiet, bars }
    }

    /// A line above the bars (or on stderr).
    pub fn announce(&self, line: &str) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(line);
            }
            None if !self.quiet => eprintln!("{line}"),
            None => {}
        }
    }

    /// The progress of one learner; `label` prefixes its lines when several learners run.
    pub fn learner(&self, label: Option<String>, tasks: usize, samples_per_task: usize) -> Progress {
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new((tasks * samples_per_task) as u64));
            bar.set_style(
                ProgressStyle::with_template("{prefix}{bar:30} {msg} │ {elapsed_precise} ETA {eta}")
                    .expect("the template is a constant"),
            );
            bar.set_prefix(label.as_ref().map_or(String::new(), |l| format!("{l:<20} ")));
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Progress {
            display: self.clone(),
            bar,
            label,
            tasks,
            samples_per_task,
            started: Instant::now(),
            task_started: Instant::now(),
        }
    }
}

/// The progress display of one learner's run.
pub struct Progress {
    display: Display,
    bar: Option<ProgressBar>,
    label: Option<String>,
    tasks: usize,
    samples_per_task: usize,
    started: Instant,
    task_started: Instant,
}

impl Progress {
    /// A task begins.
    pub fn task_started(&mut self) {
        self.task_started = Instant::now();
    }

    /// Training progress within task `task` (from 0).
    pub fn update(&self, task: usize, samples_done: usize, online_accuracy: f32) {
        if let Some(bar) = &self.bar {
            let rate = samples_done as f64 / self.task_started.elapsed().as_secs_f64().max(1e-9);
            bar.set_position((task * self.samples_per_task + samples_done) as u64);
            bar.set_message(format!(
                "task {}/{} │ online {:5.1}% │ {:>7.0} samples/s",
                task + 1,
                self.tasks,
                100.0 * online_accuracy,
                rate
            ));
        }
    }

    /// A task finished: one line with its headline numbers.
    pub fn task_finished(&self, record: &TaskRecord) {
        let retention = record
            .retention
            .map_or("     —".to_string(), |r| format!("{:5.1}%", 100.0 * r));
        let label = self.label.as_ref().map_or(String::new(), |l| format!("{l}: "));
        let line = format!(
            "{label}task {:>3}/{}: plasticity {:5.1}%  retention {retention}  online {:5.1}%  {:>7.0} samples/s  [{:.0?}]",
            record.task,
            self.tasks,
            100.0 * record.plasticity,
            100.0 * record.online_accuracy,
            record.samples_per_second,
            self.started.elapsed(),
        );
        self.display.announce(&line);
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
