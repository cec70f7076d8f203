//! The report's tables, built with polars expressions from the trial and curve tables of
//! [`super::results`]: means and 95% confidence intervals over seeds, paired differences to the best
//! baseline, held-out results, per-task curves, and the Pareto front.

use polars::prelude::*;

use super::Error;

/// The per-trial metrics the leaderboard summarizes (column names of the trial table).
pub const METRICS: [&str; 12] = [
    "objective",
    "plasticity",
    "retention",
    "plasticity_last10",
    "retention_last10",
    "acc",
    "bwt",
    "forgetting",
    "effective_rank",
    "dead_fraction",
    "density",
    "synaptic_ops",
];

/// The 0.975 quantile of Student's t with `df` degrees of freedom: the half-width of a two-sided 95%
/// confidence interval of a mean of `df + 1` samples is this × s / √n. Exact to three decimals for
/// df ≤ 30 (standard tables), then the usual interpolation points; `None` for df = 0.
pub fn t975(df: usize) -> Option<f64> {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042,
    ];
    match df {
        0 => None,
        1..=30 => Some(TABLE[df - 1]),
        31..=40 => Some(2.021),
        41..=60 => Some(2.000),
        61..=120 => Some(1.980),
        _ => Some(1.960),
    }
}

/// `n` → t975(n − 1), for joining onto aggregated tables (n up to 1,000 seeds).
fn t_table() -> Result<LazyFrame, Error> {
    let n: Vec<u32> = (1..=1000).collect();
    let t: Vec<Option<f64>> = n.iter().map(|n| t975(*n as usize - 1)).collect();
    Ok(df!("n" => n, "t" => t)?.lazy())
}

fn ci_column(metric: &str) -> Expr {
    (col("t") * col(format!("{metric}_sd")) / col("n").cast(DataType::Float64).sqrt())
        .alias(format!("{metric}_ci"))
}

/// Mean, standard deviation and 95% CI half-width over seeds of every metric, per subject, at `stage`;
/// sorted by objective (best first). Columns: subject, kind, candidate, complexity, n, completed_seeds,
/// and for each metric m: m, m_sd, m_ci.
pub fn summarize(trials: &DataFrame, stage: &str) -> Result<DataFrame, Error> {
    let mut aggs = vec![
        len().alias("n"),
        col("candidate").first().alias("candidate"),
        col("complexity").first().alias("complexity"),
        col("completed")
            .cast(DataType::UInt32)
            .sum()
            .alias("completed_seeds"),
    ];
    for m in METRICS {
        aggs.push(col(m).mean().alias(m));
        aggs.push(col(m).std(1).alias(format!("{m}_sd")));
    }
    let cis: Vec<Expr> = METRICS.iter().map(|m| ci_column(m)).collect();
    Ok(trials
        .clone()
        .lazy()
        .filter(col("stage").eq(lit(stage)))
        .group_by_stable([col("subject"), col("kind")])
        .agg(aggs)
        .join(t_table()?, [col("n")], [col("n")], JoinArgs::new(JoinType::Left))
        .with_columns(cis)
        .sort(
            ["objective", "subject"],
            SortMultipleOptions::default().with_order_descending_multi([true, false]),
        )
        .collect()?)
}

/// The best baseline at a stage (highest mean objective), from a [`summarize`]d table.
pub fn best_baseline(summary: &DataFrame) -> Result<Option<String>, Error> {
    let best = summary
        .clone()
        .lazy()
        .filter(col("kind").neq(lit("candidate")))
        .select([col("subject")])
        .first()
        .collect()?;
    Ok(string_at(&best, "subject", 0))
}

/// Per subject, the mean over seeds of (its objective − `baseline`'s on the same seed) at `stage`,
/// with a 95% CI. Columns: subject, delta, delta_sd, delta_ci, delta_n.
pub fn paired_difference(trials: &DataFrame, stage: &str, baseline: &str) -> Result<DataFrame, Error> {
    let reference = trials
        .clone()
        .lazy()
        .filter(col("stage").eq(lit(stage)).and(col("subject").eq(lit(baseline))))
        .select([col("seed"), col("objective").alias("reference")]);
    Ok(trials
        .clone()
        .lazy()
        .filter(col("stage").eq(lit(stage)))
        .join(
            reference,
            [col("seed")],
            [col("seed")],
            JoinArgs::new(JoinType::Inner),
        )
        .with_column((col("objective") - col("reference")).alias("delta"))
        .group_by_stable([col("subject")])
        .agg([
            col("delta").mean().alias("delta"),
            col("delta").std(1).alias("delta_sd"),
            len().alias("n"),
        ])
        .join(t_table()?, [col("n")], [col("n")], JoinArgs::new(JoinType::Left))
        .with_columns([ci_column("delta"), col("n").alias("delta_n")])
        .select([
            col("subject"),
            col("delta"),
            col("delta_sd"),
            col("delta_ci"),
            col("delta_n"),
        ])
        .collect()?)
}

/// The board's order, applied last (a join does not keep row order): objective descending, then the
/// older candidate (the search's own tie-break, `search::state::rank_order`), then the name.
fn by_objective(frame: LazyFrame) -> LazyFrame {
    frame.sort(
        ["objective", "candidate", "subject"],
        SortMultipleOptions::default()
            .with_order_descending_multi([true, false, false])
            .with_nulls_last(true),
    )
}

/// The leaderboard at `stage`: every baseline and the `top` best candidates, with the paired
/// difference to the best baseline, sorted by objective (best first). Candidates whose results are
/// identical on every seed and metric (functionally the same rule) share one row, the oldest's, and
/// the others are named in its `same_results` column.
pub fn leaderboard(trials: &DataFrame, stage: &str, top: usize) -> Result<DataFrame, Error> {
    let summary = merge_identical(&summarize(trials, stage)?)?;
    let candidates = summary
        .clone()
        .lazy()
        .filter(col("kind").eq(lit("candidate")))
        .limit(top as IdxSize);
    let others = summary.clone().lazy().filter(col("kind").neq(lit("candidate")));
    let mut board = concat([candidates, others], UnionArgs::default())?;
    if let Some(best) = best_baseline(&summary)? {
        board = board.join(
            paired_difference(trials, stage, &best)?.lazy(),
            [col("subject")],
            [col("subject")],
            JoinArgs::new(JoinType::Left),
        );
    }
    Ok(by_objective(board).collect()?)
}

/// Keeps one row per group of candidates with identical results (every metric's mean and spread over
/// the same number of seeds, bit for bit), the first in the summary's order, and names the others in
/// a `same_results` column ("#191, #204"; null when alone).
fn merge_identical(summary: &DataFrame) -> Result<DataFrame, Error> {
    let ordered = by_objective(summary.clone().lazy()).collect()?;
    let mut columns: Vec<Float64Chunked> = Vec::new();
    for m in METRICS {
        for name in [m.to_string(), format!("{m}_sd")] {
            columns.push(ordered.column(&name)?.cast(&DataType::Float64)?.f64()?.clone());
        }
    }
    let n = ordered.column("n")?.cast(&DataType::UInt64)?;
    let n = n.u64()?;
    let kind = ordered.column("kind")?.str()?.clone();
    let subject = ordered.column("subject")?.str()?.clone();
    let mut first_of: std::collections::HashMap<Vec<u64>, usize> = std::collections::HashMap::new();
    // Per row: whether it stays, and the identical candidates it names.
    let mut rows: Vec<(bool, Vec<String>)> = vec![(true, Vec::new()); ordered.height()];
    for row in 0..ordered.height() {
        if kind.get(row) != Some("candidate") {
            continue;
        }
        let mut key: Vec<u64> = columns
            .iter()
            .map(|c| c.get(row).map_or(u64::MAX, f64::to_bits))
            .collect();
        key.push(n.get(row).unwrap_or(0));
        match first_of.get(&key) {
            Some(&first) => {
                rows[row].0 = false;
                rows[first]
                    .1
                    .push(subject.get(row).unwrap_or_default().to_string());
            }
            None => {
                first_of.insert(key, row);
            }
        }
    }
    let keep: Vec<bool> = rows.iter().map(|(k, _)| *k).collect();
    let same: Vec<Vec<String>> = rows.into_iter().map(|(_, s)| s).collect();
    let same: Vec<Option<String>> = same
        .into_iter()
        .map(|s| (!s.is_empty()).then(|| s.join(", ")))
        .collect();
    let mut merged = ordered;
    merged.with_column(Column::new("same_results".into(), same))?;
    Ok(merged.filter(&BooleanChunked::from_slice("keep".into(), &keep))?)
}

/// Held-out results beside the search score for every subject checked on held-out data: columns
/// subject, kind, search (objective at `search_stage`), seeds, seeds_ci, seeds_n, seeds_delta,
/// seeds_delta_ci, dataset, dataset_delta, and the means of plasticity_last10, retention,
/// effective_rank and dead_fraction over the held-out seeds (prefixed `seeds_`) and on the held-out
/// dataset (prefixed `dataset_`).
pub fn held_out(trials: &DataFrame, search_stage: &str) -> Result<DataFrame, Error> {
    let seeds = summarize(trials, "held_out_seeds")?;
    if seeds.height() == 0 {
        return Ok(DataFrame::empty());
    }
    let dataset = summarize(trials, "held_out_dataset")?;
    let search = summarize(trials, search_stage)?;
    let pick = |frame: &DataFrame, exprs: Vec<Expr>| frame.clone().lazy().select(exprs);
    // What a long-horizon claim rests on, for the held-out seeds and for the held-out dataset.
    let measurements = |prefix: &str| {
        [
            "plasticity_last10",
            "retention",
            "effective_rank",
            "dead_fraction",
        ]
        .map(|c| col(c).alias(format!("{prefix}_{c}")))
    };
    let mut table = pick(
        &seeds,
        [
            col("subject"),
            col("kind"),
            col("objective").alias("seeds"),
            col("objective_ci").alias("seeds_ci"),
            col("n").alias("seeds_n"),
        ]
        .into_iter()
        .chain(measurements("seeds"))
        .collect(),
    )
    .join(
        pick(&search, vec![col("subject"), col("objective").alias("search")]),
        [col("subject")],
        [col("subject")],
        JoinArgs::new(JoinType::Left),
    )
    .join(
        pick(
            &dataset,
            [col("subject"), col("objective").alias("dataset")]
                .into_iter()
                .chain(measurements("dataset"))
                .collect(),
        ),
        [col("subject")],
        [col("subject")],
        JoinArgs::new(JoinType::Left),
    );
    if let Some(best) = best_baseline(&seeds)? {
        let d = paired_difference(trials, "held_out_seeds", &best)?;
        table = table.join(
            pick(
                &d,
                vec![
                    col("subject"),
                    col("delta").alias("seeds_delta"),
                    col("delta_ci").alias("seeds_delta_ci"),
                ],
            ),
            [col("subject")],
            [col("subject")],
            JoinArgs::new(JoinType::Left),
        );
    }
    if let Some(best) = best_baseline(&dataset)? {
        let d = paired_difference(trials, "held_out_dataset", &best)?;
        table = table.join(
            pick(&d, vec![col("subject"), col("delta").alias("dataset_delta")]),
            [col("subject")],
            [col("subject")],
            JoinArgs::new(JoinType::Left),
        );
    }
    Ok(table
        .sort(
            ["seeds", "subject"],
            SortMultipleOptions::default().with_order_descending_multi([true, false]),
        )
        .collect()?)
}

/// Per-task means over seeds of plasticity, retention, effective rank and density for `subjects` at
/// `stage`. Columns: subject, task, plasticity, retention, effective_rank, density.
pub fn curves(curves: &DataFrame, stage: &str, subjects: &[String]) -> Result<DataFrame, Error> {
    let chosen = subjects
        .iter()
        .fold(lit(false), |acc, s| acc.or(col("subject").eq(lit(s.as_str()))));
    Ok(curves
        .clone()
        .lazy()
        .filter(col("stage").eq(lit(stage)).and(chosen))
        .group_by_stable([col("subject"), col("task")])
        .agg([
            col("plasticity").mean(),
            col("retention").mean(),
            col("effective_rank").mean(),
            col("density").mean(),
        ])
        .sort(["subject", "task"], SortMultipleOptions::default())
        .collect()?)
}

/// One point of a Pareto front: a subject with its mean plasticity and retention and its complexity.
#[derive(Clone, Debug, PartialEq)]
pub struct FrontPoint {
    /// Subject name.
    pub subject: String,
    /// Mean plasticity.
    pub plasticity: f64,
    /// Mean retention.
    pub retention: f64,
    /// Rule complexity (None for baselines).
    pub complexity: Option<i64>,
}

/// The points no other point dominates in (plasticity, retention), both maximised, sorted by
/// plasticity descending. A point dominates another when it is at least as good on both and better on
/// one.
pub fn pareto_front(points: &[FrontPoint]) -> Vec<FrontPoint> {
    let mut sorted: Vec<&FrontPoint> = points.iter().collect();
    sorted.sort_by(|a, b| {
        b.plasticity
            .total_cmp(&a.plasticity)
            .then(b.retention.total_cmp(&a.retention))
            .then(a.subject.cmp(&b.subject))
    });
    let mut front: Vec<FrontPoint> = Vec::new();
    let mut best_retention = f64::NEG_INFINITY;
    for p in sorted {
        // Sorted by plasticity: p is dominated exactly when an earlier point has retention ≥ its own
        // (ties in both count as the same point, kept once).
        if p.retention > best_retention {
            best_retention = p.retention;
            front.push(p.clone());
        }
    }
    front
}

/// The front's candidates from a leaderboard-like table (subject, plasticity, retention, complexity).
pub fn front_points(table: &DataFrame) -> Result<Vec<FrontPoint>, Error> {
    let subjects = table.column("subject")?.str()?.clone();
    let plasticity = table.column("plasticity")?.f64()?.clone();
    let retention = table.column("retention")?.f64()?.clone();
    let complexity = table.column("complexity")?.cast(&DataType::Int64)?;
    let complexity = complexity.i64()?;
    Ok((0..table.height())
        .filter_map(|i| {
            Some(FrontPoint {
                subject: subjects.get(i)?.to_string(),
                plasticity: plasticity.get(i)?,
                retention: retention.get(i)?,
                complexity: complexity.get(i),
            })
        })
        .collect())
}

/// A string cell.
pub fn string_at(frame: &DataFrame, column: &str, row: usize) -> Option<String> {
    // polars' `get` panics past the end: an empty board (no baseline, no candidate) is a `None` here.
    if row >= frame.height() {
        return None;
    }
    frame
        .column(column)
        .ok()?
        .str()
        .ok()?
        .get(row)
        .map(str::to_string)
}

/// A float cell (null or missing → None).
pub fn f64_at(frame: &DataFrame, column: &str, row: usize) -> Option<f64> {
    if row >= frame.height() {
        return None;
    }
    let c = frame.column(column).ok()?.cast(&DataType::Float64).ok()?;
    c.f64().ok()?.get(row).filter(|x| x.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trials() -> DataFrame {
        // Two subjects, three seeds each, at one stage; `b` is a baseline.
        let mut columns = df!(
            "subject" => ["a", "a", "a", "b", "b", "b"],
            "kind" => ["candidate", "candidate", "candidate", "baseline", "baseline", "baseline"],
            "candidate" => [Some(1i64), Some(1), Some(1), None, None, None],
            "stage" => ["rung0"; 6],
            "seed" => [0u64, 1, 2, 0, 1, 2],
            "completed" => [true; 6],
            "complexity" => [Some(5i64), Some(5), Some(5), None, None, None],
            "objective" => [0.70, 0.74, 0.72, 0.60, 0.66, 0.63],
        )
        .expect("frame");
        for m in &METRICS[1..] {
            columns
                .with_column(Column::new((*m).into(), [0.5f64; 6]))
                .expect("column");
        }
        columns
    }

    #[test]
    fn confidence_intervals_match_a_hand_computation() {
        let s = summarize(&trials(), "rung0").expect("summary");
        // a: mean 0.72, sd = √(((−0.02)² + 0.02² + 0²)/2) = 0.02, CI = 4.303 × 0.02 / √3.
        assert_eq!(string_at(&s, "subject", 0).as_deref(), Some("a"));
        let mean = f64_at(&s, "objective", 0).expect("mean");
        let ci = f64_at(&s, "objective_ci", 0).expect("ci");
        assert!((mean - 0.72).abs() < 1e-12, "{mean}");
        assert!((ci - 4.303 * 0.02 / 3f64.sqrt()).abs() < 1e-9, "{ci}");
        // Paired: a − b per seed = 0.10, 0.08, 0.09 → mean 0.09, sd 0.01, CI 4.303 × 0.01 / √3.
        let d = paired_difference(&trials(), "rung0", "b").expect("difference");
        let row = (0..d.height())
            .find(|&i| string_at(&d, "subject", i).as_deref() == Some("a"))
            .expect("a has a row");
        assert!((f64_at(&d, "delta", row).expect("delta") - 0.09).abs() < 1e-9);
        assert!((f64_at(&d, "delta_ci", row).expect("ci") - 4.303 * 0.01 / 3f64.sqrt()).abs() < 1e-9);
    }

    /// Asserts that `column` never increases down `frame` (nulls last).
    pub(crate) fn assert_never_increases(frame: &DataFrame, column: &str) {
        let values: Vec<Option<f64>> = (0..frame.height()).map(|i| f64_at(frame, column, i)).collect();
        for pair in values.windows(2) {
            match (pair[0], pair[1]) {
                (Some(a), Some(b)) => assert!(a >= b, "{column} rises from {a} to {b}:\n{frame}"),
                (None, Some(_)) => panic!("a missing {column} ranks above a present one:\n{frame}"),
                _ => {}
            }
        }
    }

    #[test]
    fn the_board_is_sorted_by_objective_after_the_paired_differences_join() {
        // Baselines between and above candidates: the join must not put candidates first.
        let mut t = trials();
        let extra = df!(
            "subject" => ["c", "c", "c", "d", "d", "d"],
            "kind" => ["baseline", "baseline", "baseline", "candidate", "candidate", "candidate"],
            "candidate" => [None, None, None, Some(2i64), Some(2), Some(2)],
            "stage" => ["rung0"; 6],
            "seed" => [0u64, 1, 2, 0, 1, 2],
            "completed" => [true; 6],
            "complexity" => [None, None, None, Some(3i64), Some(3), Some(3)],
            "objective" => [0.90, 0.91, 0.92, 0.50, 0.52, 0.51],
        )
        .expect("frame");
        let mut extra = extra;
        for m in &METRICS[1..] {
            extra
                .with_column(Column::new((*m).into(), [0.5f64; 6]))
                .expect("column");
        }
        t = t.vstack(&extra).expect("same columns");
        let board = leaderboard(&t, "rung0", 10).expect("board");
        assert_never_increases(&board, "objective");
        let order: Vec<String> = (0..board.height())
            .filter_map(|i| string_at(&board, "subject", i))
            .collect();
        assert_eq!(order, ["c", "a", "b", "d"]);
    }

    #[test]
    fn identical_candidates_share_one_row() {
        let mut t = trials();
        let twin = t
            .clone()
            .lazy()
            .filter(col("subject").eq(lit("a")))
            .with_columns([
                lit("#9").alias("subject"),
                lit(9i64).cast(DataType::Int64).alias("candidate"),
            ])
            .collect()
            .expect("twin");
        t = t.vstack(&twin).expect("same columns");
        let board = leaderboard(&t, "rung0", 10).expect("board");
        let order: Vec<String> = (0..board.height())
            .filter_map(|i| string_at(&board, "subject", i))
            .collect();
        assert_eq!(order, ["a", "b"], "{board}");
        assert_eq!(string_at(&board, "same_results", 0).as_deref(), Some("#9"));
        assert_eq!(string_at(&board, "same_results", 1), None);
    }

    #[test]
    fn one_seed_has_no_interval() {
        assert_eq!(t975(0), None);
        assert_eq!(t975(1), Some(12.706));
        assert_eq!(t975(500), Some(1.960));
    }

    #[test]
    fn pareto_front_matches_a_hand_computation() {
        let p = |s: &str, pl: f64, re: f64| FrontPoint {
            subject: s.into(),
            plasticity: pl,
            retention: re,
            complexity: None,
        };
        // c is dominated by a (better on both); e by b and d; the rest trade off.
        let points = [
            p("a", 0.90, 0.50),
            p("b", 0.85, 0.60),
            p("c", 0.80, 0.45),
            p("d", 0.70, 0.70),
            p("e", 0.69, 0.55),
        ];
        let front: Vec<String> = pareto_front(&points).into_iter().map(|f| f.subject).collect();
        assert_eq!(front, ["a", "b", "d"]);
    }
}
