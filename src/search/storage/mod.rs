//! A search shared by many processes through PostgreSQL (`synaptogen search SPEC --storage URL`).
//!
//! Nothing coordinates the processes but the database. A round is a pure function of the state
//! before it, so every process proposes each round itself; the first to post it inserts its trials,
//! the others find them there and check they are the same. A trial is claimed with
//! `FOR UPDATE SKIP LOCKED` under a lease that a heartbeat renews, recorded once (a second record of
//! the same trial is absorbed), and taken again by anyone when its lease runs out, so a process killed
//! at any moment loses only the trials it was running. Every process folds every round from the
//! recorded results in proposal order: its state is the state of a single-process search, whoever ran
//! what. (Job queues in PostgreSQL: `SKIP LOCKED`, PostgreSQL manual, "The Locking Clause".)
//!
//! One connection per process, shared by its worker threads and its heartbeat. A lost connection is
//! re-opened with backoff; past `outage` seconds without the database the search stops with
//! [`Error::Outage`], nothing recorded lost.

pub mod credentials;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Config, NoTls, Row, Statement};

/// Version of the tables this synaptogen writes; a database holding another is refused.
pub const FORMAT: i32 = 1;
/// Default seconds a claimed trial stays claimed without a heartbeat.
pub const LEASE_SECONDS: u64 = 60;
/// Heartbeats per lease: a lease survives five missed ones.
const HEARTBEATS_PER_LEASE: f64 = 6.0;
/// Default seconds without the database before a running search gives up.
pub const OUTAGE_SECONDS: u64 = 600;
/// Key of the advisory lock that serialises creating the tables and joining a search.
const SCHEMA_LOCK: i64 = 0x5359_4e41_5054; // "SYNAPT"

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS synaptogen_format (format integer NOT NULL);
CREATE TABLE IF NOT EXISTS synaptogen_searches (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    spec_hash text NOT NULL,
    build text NOT NULL,
    header text NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS synaptogen_trials (
    search bigint NOT NULL REFERENCES synaptogen_searches (id) ON DELETE CASCADE,
    round integer NOT NULL,
    slot integer NOT NULL,
    job text NOT NULL,
    tasks integer NOT NULL,
    lease_owner text,
    lease_until timestamptz,
    record text,
    recorded_by text,
    PRIMARY KEY (search, round, slot)
);
-- The trials not yet recorded, in the order they are claimed: claiming one and counting them (what an
-- idle process asks, several times a second) read only these, not the whole round.
CREATE INDEX IF NOT EXISTS synaptogen_open_trials ON synaptogen_trials (search, round, tasks DESC, slot)
    WHERE record IS NULL;
";

/// Errors of a shared search.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not a PostgreSQL URL.
    #[error(
        "--storage: '{shown}' is not a PostgreSQL URL ({why}); expected postgresql://USER@HOST:PORT/DATABASE"
    )]
    BadUrl {
        /// What the user gave, password removed.
        shown: String,
        /// What the parser said.
        why: String,
    },
    /// No server answered.
    #[error("--storage {url}: cannot reach the database ({why}); is PostgreSQL running there?")]
    Unreachable {
        /// The URL, password removed.
        url: String,
        /// The cause.
        why: String,
    },
    /// The server refused the user or password.
    #[error(
        "--storage {url}: the database refused the credentials ({why}); set the password in the URL, PGPASSWORD or ~/.pgpass"
    )]
    Credentials {
        /// The URL, password removed.
        url: String,
        /// The server's message.
        why: String,
    },
    /// The database does not exist.
    #[error("--storage {url}: {why}; create it first (createdb) or name another")]
    NoDatabase {
        /// The URL, password removed.
        url: String,
        /// The server's message.
        why: String,
    },
    /// The tables are of another layout.
    #[error(
        "--storage {url}: the database holds synaptogen tables of format {found}; this synaptogen uses format {FORMAT}. Use the synaptogen that created them, or another database"
    )]
    Format {
        /// The URL, password removed.
        url: String,
        /// The format found.
        found: i32,
    },
    /// A search of the same name with another spec.
    #[error(
        "--storage {url}: the database already holds a search named '{name}' with a different spec (only budget, threads and out may differ); restore that spec, or rename this search (`name:` in the spec)"
    )]
    SpecDiffers {
        /// The URL, password removed.
        url: String,
        /// The search name.
        name: String,
    },
    /// A search started by another build of synaptogen (results would differ).
    #[error(
        "--storage {url}: search '{name}' was started by synaptogen {stored}; this is {ours}. Every process of a search must run the same build (results depend on the code)"
    )]
    Build {
        /// The URL, password removed.
        url: String,
        /// The search name.
        name: String,
        /// The build that started it.
        stored: String,
        /// This build.
        ours: String,
    },
    /// The stored round is not the one this process proposes.
    #[error(
        "search '{name}', round {round}: the trials stored by another process differ from this process's ({why}); every process must run the same build on the same spec"
    )]
    Diverged {
        /// The search name.
        name: String,
        /// The round.
        round: usize,
        /// What differs.
        why: String,
    },
    /// The database was unreachable for too long during the search.
    #[error(
        "--storage {url}: lost the database for {seconds} s ({why}); every recorded trial is kept: start the process again to continue"
    )]
    Outage {
        /// The URL, password removed.
        url: String,
        /// How long it tried.
        seconds: u64,
        /// The last cause.
        why: String,
    },
    /// The database answered with an error.
    #[error("--storage {url}: {why}")]
    Database {
        /// The URL, password removed.
        url: String,
        /// The server's message.
        why: String,
    },
    /// A stored record this synaptogen cannot read.
    #[error("search '{name}', round {round}, trial {slot}: unreadable record ({why})")]
    Record {
        /// The search name.
        name: String,
        /// The round.
        round: usize,
        /// The trial's slot.
        slot: usize,
        /// What the parser said.
        why: String,
    },
}

impl Error {
    /// Whether the user can fix it by changing their input (exit status 2); an outage, a divergence
    /// or a database error during the run is a failure (1).
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            Error::BadUrl { .. }
                | Error::Unreachable { .. }
                | Error::Credentials { .. }
                | Error::NoDatabase { .. }
                | Error::Format { .. }
                | Error::SpecDiffers { .. }
                | Error::Build { .. }
        )
    }
}

/// This build of synaptogen: the version and, when built from a git checkout, its commit.
pub fn build() -> String {
    match option_env!("SYNAPTOGEN_COMMIT") {
        Some(commit) if !commit.is_empty() => format!("{} ({commit})", env!("CARGO_PKG_VERSION")),
        _ => env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// One connection and the statements prepared on it. Each query is parsed and planned once per
/// connection rather than at every call (after five runs PostgreSQL keeps a generic plan): an idle
/// process asks several times a second, and planning cost the server more than running the queries.
struct Session {
    client: Client,
    prepared: HashMap<&'static str, Statement>,
}

impl Session {
    fn new(client: Client) -> Session {
        Session {
            client,
            prepared: HashMap::new(),
        }
    }

    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.prepared.insert(sql, statement.clone());
        Ok(statement)
    }

    fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.execute(&statement, params)
    }

    fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query(&statement, params)
    }

    fn query_one(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query_one(&statement, params)
    }

    fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query_opt(&statement, params)
    }
}

/// Where a search is stored, before joining it.
pub struct Storage {
    config: Config,
    url: String,
    session: Mutex<Option<Session>>,
    outage: Duration,
    /// Seconds a claim lasts without a heartbeat.
    lease: f64,
    owner: String,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the config: it holds the password.
        f.debug_struct("Storage").field("url", &self.url).finish()
    }
}

/// A joined search: the storage and the search's row.
#[derive(Debug)]
pub struct Shared {
    storage: Arc<Storage>,
    search: i64,
    name: String,
}

/// A trial as posted: its place in the round and what to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Posted {
    /// The job, as JSON (subject, stage, seed, tasks).
    pub job: String,
    /// Tasks it trains (claims take the longest first).
    pub tasks: usize,
}

/// Whether a database error means the connection is gone (retry) rather than a refused statement.
fn is_connection(e: &postgres::Error) -> bool {
    e.is_closed() || e.code().is_none() && e.as_db_error().is_none()
}

fn message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                let part = c.to_string();
                if !text.contains(&part) {
                    text = format!("{text}: {part}");
                }
                cause = c.source();
            }
            text
        }
    }
}

impl Storage {
    /// Parses `url`, completes it from the environment (as libpq), and connects once to check it.
    /// `lease_seconds`: how long a claimed trial stays claimed without a heartbeat.
    pub fn connect(url: &str, outage_seconds: u64, lease_seconds: u64) -> Result<Storage, Error> {
        let scheme_ok = url.starts_with("postgresql://") || url.starts_with("postgres://");
        let shown = || match Config::from_str(url) {
            Ok(c) => credentials::redacted(&c),
            Err(_) => url
                .split_once('@')
                .map_or(url.to_string(), |(_, rest)| format!("…@{rest}")),
        };
        if !scheme_ok {
            return Err(Error::BadUrl {
                shown: shown(),
                why: "it does not start with postgresql://".into(),
            });
        }
        let mut config = Config::from_str(url).map_err(|e| Error::BadUrl {
            shown: shown(),
            why: e.to_string(),
        })?;
        credentials::complete(&mut config, &credentials::ProcessEnvironment);
        config
            .connect_timeout(Duration::from_secs(10))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .application_name("synaptogen");
        let url = credentials::redacted(&config);
        let client = config.connect(NoTls).map_err(|e| {
            let why = message(&e);
            match e.code() {
                Some(c)
                    if *c == SqlState::INVALID_PASSWORD
                        || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
                {
                    Error::Credentials {
                        url: url.clone(),
                        why,
                    }
                }
                Some(c) if *c == SqlState::INVALID_CATALOG_NAME => Error::NoDatabase {
                    url: url.clone(),
                    why,
                },
                _ => Error::Unreachable {
                    url: url.clone(),
                    why,
                },
            }
        })?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "host".into());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Ok(Storage {
            config,
            url,
            session: Mutex::new(Some(Session::new(client))),
            outage: Duration::from_secs(outage_seconds),
            lease: lease_seconds.max(1) as f64,
            owner: format!("{host}:{}:{nanos:08x}", std::process::id()),
        })
    }

    /// The URL without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `f` on the connection, re-opening it with backoff while the database is unreachable, for
    /// at most the outage timeout. Every `f` must be safe to run twice (an answer lost with the
    /// connection makes it run again).
    fn with<T>(&self, mut f: impl FnMut(&mut Session) -> Result<T, postgres::Error>) -> Result<T, Error> {
        let mut guard = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let mut lost: Option<Instant> = None;
        let mut wait = Duration::from_millis(200);
        loop {
            let why = match guard.as_mut() {
                Some(session) => match f(session) {
                    Ok(v) => return Ok(v),
                    Err(e) if is_connection(&e) => {
                        *guard = None;
                        message(&e)
                    }
                    Err(e) => {
                        return Err(Error::Database {
                            url: self.url.clone(),
                            why: message(&e),
                        });
                    }
                },
                None => match self.config.connect(NoTls) {
                    Ok(client) => {
                        *guard = Some(Session::new(client));
                        continue;
                    }
                    Err(e) => message(&e),
                },
            };
            let since = *lost.get_or_insert_with(Instant::now);
            if since.elapsed() >= self.outage {
                return Err(Error::Outage {
                    url: self.url.clone(),
                    seconds: self.outage.as_secs(),
                    why,
                });
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// Creates the tables if needed, then joins the search `name` (creating it with `header` if it is
    /// new). Refuses a database of another format, a search of the same name with another spec, and one
    /// started by another build.
    pub fn join(self: Arc<Self>, name: &str, spec_hash: &str, header: &str) -> Result<Shared, Error> {
        let ours = build();
        let joined = self.with(|c| {
            let mut tx = c.client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
            tx.batch_execute(SCHEMA)?;
            let format: Option<i32> = tx
                .query_opt("SELECT format FROM synaptogen_format LIMIT 1", &[])?
                .map(|r| r.get(0));
            if format.is_none() {
                tx.execute("INSERT INTO synaptogen_format (format) VALUES ($1)", &[&FORMAT])?;
            }
            let row = tx.query_opt(
                "SELECT id, spec_hash, build FROM synaptogen_searches WHERE name = $1",
                &[&name],
            )?;
            let found = match row {
                Some(r) => (r.get::<_, i64>(0), r.get::<_, String>(1), r.get::<_, String>(2)),
                None => {
                    let id: i64 = tx
                        .query_one(
                            "INSERT INTO synaptogen_searches (name, spec_hash, build, header) \
                             VALUES ($1, $2, $3, $4) RETURNING id",
                            &[&name, &spec_hash, &ours, &header],
                        )?
                        .get(0);
                    (id, spec_hash.to_string(), ours.clone())
                }
            };
            tx.commit()?;
            Ok((format, found))
        })?;
        let (format, (search, stored_hash, stored_build)) = joined;
        if let Some(found) = format.filter(|f| *f != FORMAT) {
            return Err(Error::Format {
                url: self.url.clone(),
                found,
            });
        }
        if stored_hash != spec_hash {
            return Err(Error::SpecDiffers {
                url: self.url.clone(),
                name: name.to_string(),
            });
        }
        if stored_build != ours {
            return Err(Error::Build {
                url: self.url.clone(),
                name: name.to_string(),
                stored: stored_build,
                ours,
            });
        }
        Ok(Shared {
            storage: self,
            search,
            name: name.to_string(),
        })
    }
}

impl Shared {
    /// The URL without its password.
    pub fn url(&self) -> &str {
        self.storage.url()
    }

    /// Time between two heartbeats.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs_f64(self.storage.lease / HEARTBEATS_PER_LEASE)
    }

    /// This process's name in leases: `host:pid:nonce`.
    pub fn owner(&self) -> &str {
        &self.storage.owner
    }

    /// Posts round `round`'s trials (a no-op for trials already there) and checks that what is stored
    /// is what this process proposed.
    pub fn post_round(&self, round: usize, trials: &[Posted]) -> Result<(), Error> {
        let slots: Vec<i32> = (0..trials.len() as i32).collect();
        let jobs: Vec<&str> = trials.iter().map(|t| t.job.as_str()).collect();
        let tasks: Vec<i32> = trials.iter().map(|t| t.tasks as i32).collect();
        let (search, r) = (self.search, round as i32);
        let stored = self.storage.with(|c| {
            let read = |c: &mut Session| -> Result<Vec<(i32, String)>, postgres::Error> {
                Ok(c.query(
                    "SELECT slot, job FROM synaptogen_trials WHERE search = $1 AND round = $2 ORDER BY slot",
                    &[&search, &r],
                )?
                .into_iter()
                .map(|row| (row.get::<_, i32>(0), row.get::<_, String>(1)))
                .collect())
            };
            // Usually another process posted the round already: reading it is cheaper for the server
            // than inserting every trial again only to skip each as a conflict.
            let stored = read(c)?;
            if stored.len() >= trials.len() {
                return Ok(stored);
            }
            c.execute(
                "INSERT INTO synaptogen_trials (search, round, slot, job, tasks) \
                 SELECT $1, $2, s, j, t FROM unnest($3::int4[], $4::text[], $5::int4[]) AS x(s, j, t) \
                 ON CONFLICT DO NOTHING",
                &[&search, &r, &slots, &jobs, &tasks],
            )?;
            read(c)
        })?;
        let diverged = |why: String| Error::Diverged {
            name: self.name.clone(),
            round,
            why,
        };
        if stored.len() != trials.len() {
            return Err(diverged(format!(
                "{} trials stored, {} proposed",
                stored.len(),
                trials.len()
            )));
        }
        for ((slot, job), trial) in stored.iter().zip(trials) {
            if *job != trial.job {
                return Err(diverged(format!(
                    "trial {slot}: stored {job}, proposed {}",
                    trial.job
                )));
            }
        }
        Ok(())
    }

    /// Claims the longest unclaimed trial of `round` (or one whose lease ran out); `None` when none is
    /// free.
    pub fn claim(&self, round: usize) -> Result<Option<usize>, Error> {
        let (search, r) = (self.search, round as i32);
        let owner = self.storage.owner.as_str();
        let slot = self.storage.with(|c| {
            Ok(c.query_opt(
                "UPDATE synaptogen_trials SET lease_owner = $3, \
                     lease_until = now() + make_interval(secs => $4) \
                     WHERE search = $1 AND round = $2 AND slot = (\
                       SELECT slot FROM synaptogen_trials \
                       WHERE search = $1 AND round = $2 AND record IS NULL \
                         AND (lease_until IS NULL OR lease_until < now()) \
                       ORDER BY tasks DESC, slot LIMIT 1 FOR UPDATE SKIP LOCKED) \
                     RETURNING slot",
                &[&search, &r, &owner, &self.storage.lease],
            )?
            .map(|row| row.get::<_, i32>(0)))
        })?;
        Ok(slot.map(|s| s as usize))
    }

    /// Records a finished trial. Returns the record that counts: `record` itself, or the one another
    /// process recorded first.
    pub fn record(&self, round: usize, slot: usize, record: &str) -> Result<String, Error> {
        let (search, r, s) = (self.search, round as i32, slot as i32);
        let owner = self.storage.owner.as_str();
        self.storage.with(|c| {
            let updated = c.execute(
                "UPDATE synaptogen_trials SET record = $4, recorded_by = $5, lease_owner = NULL, \
                 lease_until = NULL WHERE search = $1 AND round = $2 AND slot = $3 AND record IS NULL",
                &[&search, &r, &s, &record, &owner],
            )?;
            if updated == 1 {
                return Ok(record.to_string());
            }
            let row = c.query_one(
                "SELECT record FROM synaptogen_trials WHERE search = $1 AND round = $2 AND slot = $3",
                &[&search, &r, &s],
            )?;
            Ok(row
                .get::<_, Option<String>>(0)
                .unwrap_or_else(|| record.to_string()))
        })
    }

    /// How many trials of `round` are not yet recorded: the cheap question an idle process asks before
    /// fetching records (it reads the unrecorded trials' index entries only).
    pub fn unrecorded(&self, round: usize) -> Result<usize, Error> {
        let (search, r) = (self.search, round as i32);
        let count = self.storage.with(|c| {
            Ok(c.query_one(
                "SELECT count(*) FROM synaptogen_trials WHERE search = $1 AND round = $2 AND record IS NULL",
                &[&search, &r],
            )?
            .get::<_, i64>(0))
        })?;
        Ok(count as usize)
    }

    /// The records of `round` whose slots are not in `known`, as (slot, record). `NOT IN` a subquery is
    /// a hash lookup per row; `<> ALL($3)` would compare each row with every known slot.
    pub fn records(&self, round: usize, known: &[usize]) -> Result<Vec<(usize, String)>, Error> {
        let (search, r) = (self.search, round as i32);
        let known: Vec<i32> = known.iter().map(|&k| k as i32).collect();
        self.storage.with(|c| {
            Ok(c.query(
                "SELECT slot, record FROM synaptogen_trials WHERE search = $1 AND round = $2 \
                     AND record IS NOT NULL AND slot NOT IN (SELECT unnest($3::int4[])) ORDER BY slot",
                &[&search, &r, &known],
            )?
            .into_iter()
            .map(|row| (row.get::<_, i32>(0) as usize, row.get::<_, String>(1)))
            .collect())
        })
    }

    /// Renews the leases of every trial this process holds.
    pub fn heartbeat(&self) -> Result<(), Error> {
        let owner = self.storage.owner.as_str();
        let search = self.search;
        self.storage.with(|c| {
            c.execute(
                "UPDATE synaptogen_trials SET lease_until = now() + make_interval(secs => $3) \
                 WHERE search = $1 AND lease_owner = $2 AND record IS NULL",
                &[&search, &owner, &self.storage.lease],
            )
        })?;
        Ok(())
    }

    /// Gives back the trials this process holds (on Ctrl-C), so others take them at once.
    pub fn release(&self) -> Result<(), Error> {
        let owner = self.storage.owner.as_str();
        let search = self.search;
        self.storage.with(|c| {
            c.execute(
                "UPDATE synaptogen_trials SET lease_owner = NULL, lease_until = NULL \
                 WHERE search = $1 AND lease_owner = $2 AND record IS NULL",
                &[&search, &owner],
            )
        })?;
        Ok(())
    }

    /// An error for a record this synaptogen cannot read.
    pub fn unreadable(&self, round: usize, slot: usize, why: String) -> Error {
        Error::Record {
            name: self.name.clone(),
            round,
            slot,
            why,
        }
    }
}
