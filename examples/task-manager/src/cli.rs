//! The command line: `task-manager [--role all|command|query|projector] [--addr HOST:PORT]`,
//! or `task-manager admin <command>`.

pub use eventloom::Role;

/// The address served when `--addr` is not given (except by the projector, which then serves
/// nothing).
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// What this process does.
    pub role: Role,
    /// Where it serves HTTP; `None` for a projector without `--addr`.
    pub addr: Option<String>,
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Run with these arguments.
    Run(Args),
    /// Print [`USAGE`] and exit successfully.
    Help,
    /// `task-manager admin ...`: the admin commands, with these arguments after `admin`.
    Admin(Vec<String>),
}

/// A command line that does not parse: print the message and [`USAGE`], exit with status 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

/// The help text.
pub const USAGE: &str = "\
Usage: task-manager [--role all|command|query|projector] [--addr HOST:PORT]
       task-manager admin <command>   (with the `postgres` feature; `admin --help` lists them)

A task manager over HTTP whose command, query and projector roles scale on their own.

Options:
  --role ROLE       all (default): every role in one process
                    command: POST /tasks, /tasks/{id}/assign|complete|reopen
                    query: GET /tasks, /tasks/{id}, /stats
                    projector: keeps the views up to date (serves /health only with --addr)
  --addr HOST:PORT  where to serve HTTP (default 127.0.0.1:8080)
  -h, --help        print this help

Environment:
  DATABASE_URL         PostgreSQL for events, leases, snapshots (and views without Redis);
                       needs the `postgres` feature. Unset: memory.
  REDIS_URL            Redis for the views; needs the `redis` feature. Unset: PostgreSQL or memory.
                       A Redis Cluster: its nodes' URLs, comma-separated.
  EVENTLOOM_READ_REPLICA_URL
                       a streaming replica of DATABASE_URL to read the log from
  TASK_MANAGER_SCHEMA  PostgreSQL schema of the tables (default task_manager)
  TASK_MANAGER_PREFIX  Redis key prefix (default task-manager:)
  TASK_MANAGER_VIEW_PARTITIONS
                       split the task views into this many partitions, 1 to 1024 (default 1),
                       shared out among the projector processes; the same in every process
  RUST_LOG             log filter (default info)

The split roles need shared stores: on memory only --role all runs.
";

/// Checks `HOST:PORT` (the host may be a name or `[ipv6]`).
fn check_addr(addr: &str) -> Result<(), UsageError> {
    let bad = || UsageError(format!("--addr must be HOST:PORT, not {addr:?}"));
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(())
}

/// Parses the arguments after the program's name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, UsageError> {
    let mut role = None;
    let mut addr = None;
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|first| first == "admin") {
        return Ok(Parsed::Admin(args.skip(1).collect()));
    }
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name.to_owned(), Some(value.to_owned())),
            _ => (arg, None),
        };
        let mut value = |name: &str| {
            inline.clone().or_else(|| args.next()).ok_or_else(|| UsageError(format!("{name} needs a value")))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--role" => {
                if role.is_some() {
                    return Err(UsageError("--role is given twice".into()));
                }
                let text = value("--role")?;
                role = Some(text.parse::<Role>().map_err(|_| {
                    UsageError(format!("--role must be all, command, query or projector, not {text:?}"))
                })?);
            }
            "--addr" => {
                if addr.is_some() {
                    return Err(UsageError("--addr is given twice".into()));
                }
                let text = value("--addr")?;
                check_addr(&text)?;
                addr = Some(text);
            }
            other => return Err(UsageError(format!("unexpected argument {other:?}"))),
        }
    }
    let role = role.unwrap_or(Role::All);
    let addr = match (role, addr) {
        (_, Some(addr)) => Some(addr),
        (Role::Projector, None) => None,
        (_, None) => Some(DEFAULT_ADDR.to_owned()),
    };
    Ok(Parsed::Run(Args { role, addr }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Parsed, UsageError> {
        parse(args.iter().map(|s| s.to_string()))
    }

    fn args(role: Role, addr: Option<&str>) -> Parsed {
        Parsed::Run(Args { role, addr: addr.map(str::to_owned) })
    }

    #[test]
    fn defaults() {
        assert_eq!(run(&[]), Ok(args(Role::All, Some(DEFAULT_ADDR))));
        assert_eq!(run(&["--role", "query"]), Ok(args(Role::Query, Some(DEFAULT_ADDR))));
        assert_eq!(run(&["--role", "projector"]), Ok(args(Role::Projector, None)));
    }

    #[test]
    fn options() {
        assert_eq!(run(&["--role=command", "--addr", "0.0.0.0:9000"]), Ok(args(Role::Command, Some("0.0.0.0:9000"))));
        assert_eq!(run(&["--addr=[::1]:1", "--role", "projector"]), Ok(args(Role::Projector, Some("[::1]:1"))));
        assert_eq!(run(&["--addr", "localhost:80"]), Ok(args(Role::All, Some("localhost:80"))));
        assert_eq!(run(&["-h"]), Ok(Parsed::Help));
        assert_eq!(run(&["--role", "all", "--help"]), Ok(Parsed::Help));
        assert_eq!(
            run(&["admin", "projections", "--json"]),
            Ok(Parsed::Admin(vec!["projections".into(), "--json".into()]))
        );
        assert!(run(&["--role", "all", "admin"]).is_err(), "admin comes first");
    }

    #[test]
    fn mistakes() {
        for bad in [
            &["--role"][..],
            &["--role", "writer"],
            &["--role", "all", "--role", "all"],
            &["--addr", "8080"],
            &["--addr", ":8080"],
            &["--addr", "host:99999"],
            &["--addr"],
            &["serve"],
            &["--verbose"],
        ] {
            assert!(run(bad).is_err(), "{bad:?}");
        }
    }
}
