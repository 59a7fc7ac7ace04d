//! Running statements and reading their rows back, with errors as the `eventloom-core` traits
//! report them: a server or pool failure is the backend's error (see
//! [`pg_error`](crate::connect::pg_error)), a row that does not read as the store wrote it is
//! [`Error::Corrupt`](eventloom_core::Error::Corrupt) naming the row and the column.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::{Object, Pool};
use eventloom_core::{Error as CoreError, Position, Result};
use tokio_postgres::types::{BorrowToSql, FromSql, ToSql};
use tokio_postgres::{Client, Row, RowStream, Statement};

use crate::connect::unavailable;

/// How a store reports a failed statement.
pub(crate) type ErrorMap = fn(tokio_postgres::Error) -> CoreError;

/// Parameters of a statement.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A store's pool, with the way it reports failed statements: one call checks a connection out,
/// prepares the statement (cached on the connection) and runs it.
#[derive(Clone)]
pub(crate) struct Db {
    pool: Pool,
    errors: ErrorMap,
}

impl Db {
    pub(crate) fn new(pool: Pool, errors: ErrorMap) -> Self {
        Db { pool, errors }
    }

    /// The same pool, reporting failed statements with `errors`.
    pub(crate) fn with_errors(&self, errors: ErrorMap) -> Self {
        Db { pool: self.pool.clone(), errors }
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A pooled connection.
    pub(crate) async fn conn(&self) -> Result<Conn> {
        let client = self.pool.get().await.map_err(unavailable)?;
        Ok(Conn { client: Some(client), errors: self.errors, ended: AtomicBool::new(false) })
    }

    pub(crate) async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        self.conn().await?.query(sql, params).await
    }

    pub(crate) async fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row> {
        self.conn().await?.query_one(sql, params).await
    }

    pub(crate) async fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        self.conn().await?.query_opt(sql, params).await
    }

    /// The number of rows changed.
    pub(crate) async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64> {
        self.conn().await?.execute(sql, params).await
    }
}

/// A pooled connection of a [`Db`]; statements are prepared once per connection. One whose
/// session ended under a statement (the server terminated it, the socket closed) is not given
/// back to the pool when dropped: the pool's check of a connection it gets back (is it closed?)
/// can run before the connection's task has read the end of the socket, and would hand the dead
/// connection to the next caller.
pub(crate) struct Conn {
    /// `None` only once dropped.
    client: Option<Object>,
    errors: ErrorMap,
    /// A statement's error said that the session ended.
    ended: AtomicBool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.ended.load(Ordering::Relaxed) {
            if let Some(client) = self.client.take() {
                // Out of the pool; the connection closes as the client drops.
                drop(Object::take(client));
            }
        }
    }
}

/// Whether `error` ended the session it came on: a closed connection, an I/O error, or a
/// server error of severity FATAL or PANIC.
fn ends_session(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::Severity;
    match error.as_db_error() {
        Some(db) => matches!(db.parsed_severity(), Some(Severity::Fatal | Severity::Panic)),
        None => error.is_closed() || std::error::Error::source(error).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

impl Conn {
    fn object(&self) -> &Object {
        self.client.as_ref().expect("a connection holds its client until dropped")
    }

    /// `result`, noting an error that ended the session, so that the connection is not given
    /// back to the pool. Every statement's result passes through here.
    pub(crate) fn noted<T>(
        &self,
        result: std::result::Result<T, tokio_postgres::Error>,
    ) -> std::result::Result<T, tokio_postgres::Error> {
        if let Err(error) = &result {
            if ends_session(error) {
                self.ended.store(true, Ordering::Relaxed);
            }
        }
        result
    }

    /// The next row of `rows` (a statement of this connection's), its error noted and mapped
    /// as the store reports failed statements.
    pub(crate) async fn next_row(&self, rows: &mut std::pin::Pin<&mut RowStream>) -> Result<Option<Row>> {
        use futures_util::StreamExt;
        self.mapped(rows.next().await.transpose())
    }

    /// Takes the connection out of the pool when dropped: for a caller that stops reading a
    /// statement's rows on an error, so that the next caller does not wait while the rest are
    /// received and dropped.
    pub(crate) fn discard(&self) {
        self.ended.store(true, Ordering::Relaxed);
    }

    /// `result` noted, with its error mapped as the store maps errors.
    fn mapped<T>(&self, result: std::result::Result<T, tokio_postgres::Error>) -> Result<T> {
        self.noted(result).map_err(self.errors)
    }

    /// The statement, prepared on this connection (once: later calls find it cached).
    pub(crate) async fn prepare(&self, sql: &str) -> Result<Statement> {
        self.mapped(self.object().prepare_cached(sql).await)
    }

    /// The statement, prepared on this connection, with the server's error as it came, for a
    /// caller that sorts it on its own.
    pub(crate) async fn prepare_unmapped(&self, sql: &str) -> std::result::Result<Statement, tokio_postgres::Error> {
        self.noted(self.object().prepare_cached(sql).await)
    }

    /// The connection itself, for a caller that sorts a statement's errors on its own (and
    /// passes each result through [`noted`](Self::noted)).
    pub(crate) fn client(&self) -> &Client {
        self.object()
    }

    pub(crate) async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        let statement = self.prepare(sql).await?;
        self.mapped(self.object().query(&statement, params).await)
    }

    pub(crate) async fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row> {
        let statement = self.prepare(sql).await?;
        self.mapped(self.object().query_one(&statement, params).await)
    }

    pub(crate) async fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        let statement = self.prepare(sql).await?;
        self.mapped(self.object().query_opt(&statement, params).await)
    }

    pub(crate) async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64> {
        let statement = self.prepare(sql).await?;
        self.mapped(self.object().execute(&statement, params).await)
    }

    /// The rows as they arrive (see [`next_row`](Self::next_row)).
    pub(crate) async fn query_raw<P, I>(&self, sql: &str, params: I) -> Result<RowStream>
    where
        P: BorrowToSql,
        I: IntoIterator<Item = P>,
        I::IntoIter: ExactSizeIterator,
    {
        let statement = self.prepare(sql).await?;
        self.mapped(self.object().query_raw(&statement, params).await)
    }
}

/// A row read back, with where it came from. Columns are read by name; a value that does not
/// read as the store wrote it (a column of another type or missing, a NULL where the store
/// writes none, a negative version, an unparsable transaction id) is
/// [`Error::Corrupt`](CoreError::Corrupt) at the row's location, naming the column: the schema
/// or the data was changed under the store, and reading again reads the same row.
pub(crate) struct Fields<'r, L> {
    row: &'r Row,
    location: L,
}

/// A column of a row: its name, or its place ([`At`]) in a statement whose columns the store
/// lists itself, which spares looking the name up in every row of a long read.
pub(crate) trait Column: Copy + Display {
    fn read<'r, T: FromSql<'r>>(self, row: &'r Row) -> std::result::Result<T, tokio_postgres::Error>;
}

impl Column for &str {
    fn read<'r, T: FromSql<'r>>(self, row: &'r Row) -> std::result::Result<T, tokio_postgres::Error> {
        row.try_get(self)
    }
}

/// The column at place `.0` (from 0), named `.1` in errors.
#[derive(Clone, Copy)]
pub(crate) struct At(pub(crate) usize, pub(crate) &'static str);

impl Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.1)
    }
}

impl Column for At {
    fn read<'r, T: FromSql<'r>>(self, row: &'r Row) -> std::result::Result<T, tokio_postgres::Error> {
        // The place and the name must agree: a statement changed without its reader is a bug,
        // not corrupt data, and reading the wrong column must not pass for either.
        debug_assert_eq!(row.columns().get(self.0).map(|c| c.name()), Some(self.1));
        row.try_get(self.0)
    }
}

/// A `xid8` column (a transaction id) in binary: 8 bytes, big-endian, sent without the server
/// printing it as text and read without parsing.
pub(crate) struct Xid8(pub(crate) u64);

impl<'a> FromSql<'a> for Xid8 {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let bytes: [u8; 8] = raw.try_into().map_err(|_| format!("a xid8 of {} bytes", raw.len()))?;
        Ok(Xid8(u64::from_be_bytes(bytes)))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::XID8
    }
}

impl<'r, L: Fn() -> String> Fields<'r, L> {
    /// The row, and a description of where it is for errors (built only on an error).
    pub(crate) fn new(row: &'r Row, location: L) -> Self {
        Fields { row, location }
    }

    /// The column `name`, of the type the store wrote it with (`Option<T>` for a column that
    /// may be NULL).
    pub(crate) fn get<T: FromSql<'r>>(&self, name: impl Column) -> Result<T> {
        name.read(self.row).map_err(|e| self.corrupt(format_args!("column {name}: {e}")))
    }

    /// A `bigint` column that is never negative (a version, a sequence, a count, an id).
    pub(crate) fn unsigned(&self, name: impl Column) -> Result<u64> {
        let value: i64 = self.get(name)?;
        self.non_negative(name, value)
    }

    /// As [`unsigned`](Self::unsigned), for a column that may be NULL.
    pub(crate) fn unsigned_opt(&self, name: impl Column) -> Result<Option<u64>> {
        self.get::<Option<i64>>(name)?.map(|value| self.non_negative(name, value)).transpose()
    }

    /// An `integer` column that is never negative (a schema or snapshot version).
    pub(crate) fn unsigned_int(&self, name: impl Column) -> Result<u32> {
        let value: i32 = self.get(name)?;
        u32::try_from(value).map_err(|_| self.negative(name, value))
    }

    /// A schema version sent as NULL when it is 1 (`fold_stream.sql`).
    pub(crate) fn schema_version_past_1(&self, name: impl Column) -> Result<u32> {
        match self.get::<Option<i32>>(name)? {
            None => Ok(1),
            Some(value) => {
                u32::try_from(value).map_err(|_| self.corrupt(format_args!("negative schema version {value}")))
            }
        }
    }

    /// A position from a transaction id (as text) and a sequence.
    pub(crate) fn position(&self, transaction: impl Column, sequence: impl Column) -> Result<Position> {
        let tx: &str = self.get(transaction)?;
        let tx = tx.parse().map_err(|_| self.corrupt(format_args!("unparsable transaction id {tx:?}")))?;
        Ok(Position::new(tx, self.unsigned(sequence)?))
    }

    /// A position from a transaction id (`xid8`, in binary) and a sequence.
    pub(crate) fn position_xid8(&self, transaction: impl Column, sequence: impl Column) -> Result<Position> {
        let Xid8(tx) = self.get(transaction)?;
        Ok(Position::new(tx, self.unsigned(sequence)?))
    }

    /// A checkpoint of the read side: a position from two columns that are both NULL for none.
    /// One that does not read is corrupt, named `checkpoint <transaction>.<sequence>`.
    pub(crate) fn checkpoint(&self, transaction: &str, sequence: &str) -> Result<Option<Position>> {
        match (self.get::<Option<&str>>(transaction)?, self.get::<Option<i64>>(sequence)?) {
            (Some(tx), Some(seq)) => {
                let bad = || self.corrupt(format_args!("checkpoint {tx}.{seq}"));
                Ok(Some(Position::new(tx.parse().map_err(|_| bad())?, u64::try_from(seq).map_err(|_| bad())?)))
            }
            _ => Ok(None),
        }
    }

    /// Corrupt data at this row.
    pub(crate) fn corrupt(&self, reason: impl Display) -> CoreError {
        CoreError::Corrupt { location: (self.location)(), reason: reason.to_string() }
    }

    fn non_negative(&self, name: impl Column, value: i64) -> Result<u64> {
        u64::try_from(value).map_err(|_| self.negative(name, value))
    }

    /// `negative schema version -1` for the column `schema_version`.
    fn negative(&self, name: impl Column, value: impl Display) -> CoreError {
        self.corrupt(format_args!("negative {} {value}", name.to_string().replace('_', " ")))
    }
}

/// A column's value as text for a location (`?` when it is NULL or does not read as text or a
/// number).
pub(crate) fn shown(row: &Row, name: &str) -> String {
    if let Ok(Some(text)) = row.try_get::<_, Option<&str>>(name) {
        return text.to_owned();
    }
    if let Ok(Some(Xid8(tx))) = row.try_get::<_, Option<Xid8>>(name) {
        return tx.to_string();
    }
    match row.try_get::<_, Option<i64>>(name) {
        Ok(Some(number)) => number.to_string(),
        _ => "?".to_owned(),
    }
}
