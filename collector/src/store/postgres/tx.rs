//! The pool's connections, each keeping the statements it prepared ([`Conn`]), and a
//! transaction that uses them ([`Tx`]).
//!
//! The synchronous client prepares an unnamed statement for every query given as text: a round
//! trip to the server before the one that runs it. Ingest runs a handful of statements per
//! event, so each connection prepares each statement once and keeps it, by its text. Every
//! statement text here is a constant or one of a few shapes (filters' conditions), so the
//! cache stays small; [`CACHED`] bounds it anyway. Prepared statements outlive transactions,
//! rolled back or not.
//!
//! A read that is one statement runs on the [`Conn`] itself, outside any transaction
//! ([`Query`]): a statement sees one snapshot of its own, and a transaction would cost two more
//! round trips (its start and its end). Heartbeats read a host's state this way, thousands of
//! times a second across a fleet.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, Config, Error, IsolationLevel, Portal, Row, Statement, Transaction};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Most statements one connection keeps prepared (all of them are forgotten past it).
const CACHED: usize = 256;

/// A pooled connection.
pub struct Conn {
    pub client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    fn statement(&mut self, sql: &str) -> Result<Statement, Error> {
        cached(&mut self.statements, sql, |sql| self.client.prepare(sql))
    }

    /// A read-write transaction.
    pub fn transaction(&mut self) -> Result<Tx<'_>, Error> {
        Ok(Tx {
            tx: self.client.transaction()?,
            statements: &mut self.statements,
        })
    }

    /// A read-only transaction that sees one snapshot.
    pub fn read_transaction(&mut self) -> Result<Tx<'_>, Error> {
        let tx = self
            .client
            .build_transaction()
            .read_only(true)
            .isolation_level(IsolationLevel::RepeatableRead)
            .start()?;
        Ok(Tx {
            tx,
            statements: &mut self.statements,
        })
    }
}

/// Opens [`Conn`]s for the pool, and connections of their own for whoever needs one (the
/// feed's LISTEN, leases).
#[derive(Clone)]
pub struct Manager {
    pub config: Config,
    pub tls: MakeRustlsConnect,
}

impl Manager {
    /// A connection outside the pool.
    pub fn client(&self) -> Result<Client, Error> {
        self.config.connect(self.tls.clone())
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = Error;

    fn connect(&self) -> Result<Conn, Error> {
        Ok(Conn {
            client: self.client()?,
            statements: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), Error> {
        conn.client.simple_query("").map(drop)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.client.is_closed()
    }
}

/// A transaction (or a savepoint in one) running statements prepared once per connection.
pub struct Tx<'a> {
    tx: Transaction<'a>,
    statements: &'a mut HashMap<String, Statement>,
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

/// `sql` prepared, from `statements` or by `prepare` (and then kept).
fn cached(
    statements: &mut HashMap<String, Statement>,
    sql: &str,
    prepare: impl FnOnce(&str) -> Result<Statement, Error>,
) -> Result<Statement, Error> {
    if let Some(statement) = statements.get(sql) {
        return Ok(statement.clone());
    }
    let statement = prepare(sql)?;
    if statements.len() >= CACHED {
        statements.clear();
    }
    statements.insert(sql.to_owned(), statement.clone());
    Ok(statement)
}

/// What reads of one statement need: a [`Tx`], or a [`Conn`] outside any transaction.
pub trait Query {
    fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error>;
    fn query_opt(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>, Error>;
}

impl Query for Conn {
    fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
        let statement = self.statement(sql)?;
        self.client.query(&statement, params)
    }

    fn query_opt(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>, Error> {
        let statement = self.statement(sql)?;
        self.client.query_opt(&statement, params)
    }
}

impl Query for Tx<'_> {
    fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
        Tx::query(self, sql, params)
    }

    fn query_opt(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>, Error> {
        Tx::query_opt(self, sql, params)
    }
}

impl Tx<'_> {
    fn statement(&mut self, sql: &str) -> Result<Statement, Error> {
        cached(self.statements, sql, |sql| self.tx.prepare(sql))
    }

    pub fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
        let statement = self.statement(sql)?;
        self.tx.query(&statement, params)
    }

    pub fn query_one(&mut self, sql: &str, params: Params<'_>) -> Result<Row, Error> {
        let statement = self.statement(sql)?;
        self.tx.query_one(&statement, params)
    }

    pub fn query_opt(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>, Error> {
        let statement = self.statement(sql)?;
        self.tx.query_opt(&statement, params)
    }

    /// A query whose rows are read a page at a time ([`Tx::next_page`]), for a reader that may
    /// stop before the last.
    pub fn bind(&mut self, sql: &str, params: Params<'_>) -> Result<Portal, Error> {
        let statement = self.statement(sql)?;
        self.tx.bind(&statement, params)
    }

    /// Up to `rows` more rows of a query [`Tx::bind`] started (fewer: the last page).
    pub fn next_page(&mut self, portal: &Portal, rows: i32) -> Result<Vec<Row>, Error> {
        self.tx.query_portal(portal, rows)
    }

    pub fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, Error> {
        let statement = self.statement(sql)?;
        self.tx.execute(&statement, params)
    }

    /// Statements without parameters, as one simple query (not prepared).
    pub fn batch_execute(&mut self, sql: &str) -> Result<(), Error> {
        self.tx.batch_execute(sql)
    }

    /// A savepoint: dropped or rolled back, it undoes what ran in it.
    pub fn savepoint(&mut self, name: &str) -> Result<Tx<'_>, Error> {
        Ok(Tx {
            tx: self.tx.savepoint(name)?,
            statements: &mut *self.statements,
        })
    }

    pub fn commit(self) -> Result<(), Error> {
        self.tx.commit()
    }

    pub fn rollback(self) -> Result<(), Error> {
        self.tx.rollback()
    }
}
