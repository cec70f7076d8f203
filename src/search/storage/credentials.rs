//! Filling in what a storage URL leaves out, the way libpq does (PostgreSQL manual, "Environment
//! Variables" and "The Password File"): `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE` and `PGPASSWORD`
//! from the environment, else the password from `PGPASSFILE` or `~/.pgpass`, whose lines are
//! `host:port:database:user:password` with `*` matching anything and `\:` / `\\` escaping.
//!
//! Nothing here prints a password: [`redacted`] is the only way a URL is shown.

use std::path::{Path, PathBuf};

use postgres::Config;
use postgres::config::Host;

/// The environment a URL is completed from (a parameter, so tests need not touch the process's).
pub trait Environment {
    /// The variable's value, if set and not empty.
    fn var(&self, name: &str) -> Option<String>;
    /// The user's home directory.
    fn home(&self) -> Option<PathBuf>;
}

/// The process's own environment.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    fn home(&self) -> Option<PathBuf> {
        self.var("HOME").map(PathBuf::from)
    }
}

/// Completes `config` as libpq would: host, port, user and database from `PG*` variables (then
/// `localhost`, 5432, `$USER`, the user's name), and a password from `PGPASSWORD` or the password file
/// when the URL has none. The URL's own values always win.
pub fn complete(config: &mut Config, env: &dyn Environment) {
    if config.get_hosts().is_empty() {
        let host = env.var("PGHOST").unwrap_or_else(|| "localhost".into());
        config.host(&host);
    }
    if config.get_ports().is_empty()
        && let Some(port) = env.var("PGPORT").and_then(|p| p.parse::<u16>().ok())
    {
        config.port(port);
    }
    if config.get_user().is_none()
        && let Some(user) = env.var("PGUSER").or_else(|| env.var("USER"))
    {
        config.user(&user);
    }
    if config.get_dbname().is_none()
        && let Some(db) = env
            .var("PGDATABASE")
            .or_else(|| config.get_user().map(str::to_string))
    {
        config.dbname(&db);
    }
    if config.get_password().is_some() {
        return;
    }
    if let Some(password) = env.var("PGPASSWORD") {
        config.password(password);
        return;
    }
    let file = env
        .var("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env.home().map(|h| h.join(".pgpass")));
    if let Some(file) = file
        && let Some(password) = from_password_file(&file, config)
    {
        config.password(password);
    }
}

/// The host as the password file names it: a socket directory counts as `localhost`, as in libpq.
fn host_name(config: &Config) -> String {
    match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        _ => "localhost".into(),
    }
}

/// The first matching line's password. libpq ignores a file others can read; so do we.
fn from_password_file(path: &Path, config: &Config) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            return None;
        }
    }
    let text = std::fs::read_to_string(path).ok()?;
    let port = config.get_ports().first().copied().unwrap_or(5432).to_string();
    let wanted = [
        host_name(config),
        port,
        config.get_dbname().unwrap_or_default().to_string(),
        config.get_user().unwrap_or_default().to_string(),
    ];
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let fields = split_fields(l);
            (fields.len() == 5).then_some(fields)
        })
        .find(|fields| {
            fields[..4]
                .iter()
                .zip(&wanted)
                .all(|(pattern, value)| pattern == "*" || pattern == value)
        })
        .map(|fields| fields[4].clone())
}

/// A password-file line's fields, unescaped.
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("never empty").push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => fields.last_mut().expect("never empty").push(c),
        }
    }
    fields
}

/// The URL as it may be shown: `postgresql://user@host:port/db`, never a password.
pub fn redacted(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(dir)) => dir.display().to_string(),
        None => String::new(),
    };
    let port = config
        .get_ports()
        .first()
        .map_or(String::new(), |p| format!(":{p}"));
    let user = config.get_user().map_or(String::new(), |u| format!("{u}@"));
    let db = config.get_dbname().unwrap_or_default();
    format!("postgresql://{user}{host}{port}/{db}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::str::FromStr;

    struct Fake {
        vars: BTreeMap<&'static str, String>,
        home: Option<PathBuf>,
    }

    impl Environment for Fake {
        fn var(&self, name: &str) -> Option<String> {
            self.vars.get(name).cloned()
        }
        fn home(&self) -> Option<PathBuf> {
            self.home.clone()
        }
    }

    fn fake(vars: &[(&'static str, &str)], home: Option<&Path>) -> Fake {
        Fake {
            vars: vars.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            home: home.map(Path::to_path_buf),
        }
    }

    fn password(config: &Config) -> Option<String> {
        config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    #[test]
    fn the_url_wins_then_the_environment_then_defaults() {
        let mut c = Config::from_str("postgresql://ann:secret@db.lab:6000/runs").expect("valid");
        complete(&mut c, &fake(&[("PGUSER", "bob"), ("PGPASSWORD", "other")], None));
        assert_eq!(redacted(&c), "postgresql://ann@db.lab:6000/runs");
        assert_eq!(password(&c).as_deref(), Some("secret"));

        let mut c = Config::from_str("postgresql://").expect("valid");
        let env = fake(
            &[
                ("PGHOST", "h"),
                ("PGPORT", "5433"),
                ("PGUSER", "bob"),
                ("PGPASSWORD", "pw"),
            ],
            None,
        );
        complete(&mut c, &env);
        assert_eq!(redacted(&c), "postgresql://bob@h:5433/bob");
        assert_eq!(password(&c).as_deref(), Some("pw"));
    }

    #[test]
    fn the_password_file_is_read_as_libpq_reads_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join(".pgpass");
        std::fs::write(
            &file,
            "# comment\nother:*:*:*:nope\ndb.lab:5432:runs:ann:first\n*:*:*:ann:a\\:b\\\\c\n",
        )
        .expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let mut c = Config::from_str("postgresql://ann@db.lab/runs").expect("valid");
        complete(&mut c, &fake(&[], Some(dir.path())));
        assert_eq!(password(&c).as_deref(), Some("first"));
        let mut c = Config::from_str("postgresql://ann@elsewhere/x").expect("valid");
        complete(&mut c, &fake(&[], Some(dir.path())));
        assert_eq!(password(&c).as_deref(), Some("a:b\\c"));
        // A file others can read is ignored, as libpq ignores it.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let mut c = Config::from_str("postgresql://ann@db.lab/runs").expect("valid");
            complete(&mut c, &fake(&[], Some(dir.path())));
            assert_eq!(password(&c), None);
        }
    }
}
