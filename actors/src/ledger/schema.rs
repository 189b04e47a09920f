//! The ledger's tables, as numbered migrations: migration `n` brings a file
//! from `PRAGMA user_version = n` to `n + 1`. Add a table by appending one.

use rusqlite::Connection;

/// Migrations in order; never edit one that shipped, append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the run history of scheduled services.
    "CREATE TABLE runs (
        id          INTEGER PRIMARY KEY,
        service     TEXT NOT NULL,
        trigger     TEXT NOT NULL,
        started_at  TEXT NOT NULL,
        ended_at    TEXT,
        exit_code   INTEGER,
        outcome     TEXT NOT NULL,
        reason      TEXT,
        output_tail TEXT
    );
    CREATE INDEX runs_by_service ON runs (service, id);",
    // 2: the deploy history.
    "CREATE TABLE deploys (
        id          INTEGER PRIMARY KEY,
        service     TEXT NOT NULL,
        trigger     TEXT NOT NULL,
        old_digest  TEXT,
        new_digest  TEXT,
        started_at  TEXT NOT NULL,
        ended_at    TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        reason      TEXT
    );
    CREATE INDEX deploys_by_service ON deploys (service, id);",
    // 3: the registry tag of a tracked service's deploy (`[dispenser] track`).
    "ALTER TABLE deploys ADD COLUMN tag TEXT;",
];

/// Applies the migrations the file has not seen yet, each in a transaction.
pub fn migrate(connection: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    for (index, migration) in MIGRATIONS.iter().enumerate() {
        let target = index as i64 + 1;
        if version >= target {
            continue;
        }
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", target)?;
        transaction.commit()?;
    }
    Ok(())
}
