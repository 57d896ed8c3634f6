/**
 * The tables of the SQL stores, created if they do not exist. `SqlTokenStore.migrate` documents
 * them.
 *
 * @since 0.1.0
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"

/**
 * The table of tokens, in the dialect of `sql`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const tokensTable = (sql: SqlClient.SqlClient, tableName: string): Effect.Effect<unknown, SqlError> =>
  sql.onDialectOrElse({
    pg: () =>
      sql`CREATE TABLE IF NOT EXISTS ${sql(tableName)} (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        contract_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        token TEXT NULL,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
        lease_holder TEXT NULL,
        lease_version BIGINT NULL,
        lease_until BIGINT NULL
      )`.pipe(Effect.zipRight(pgLeaseColumns(sql, tableName))),
    orElse: () =>
      sql`CREATE TABLE IF NOT EXISTS ${sql(tableName)} (
        id TEXT PRIMARY KEY NOT NULL,
        user_id TEXT NOT NULL,
        contract_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        token TEXT NULL,
        updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
        lease_holder TEXT NULL,
        lease_version INTEGER NULL,
        lease_until INTEGER NULL
      )`.pipe(Effect.zipRight(sqliteLeaseColumns(sql, tableName)))
  })

const leaseColumns = [
  { name: "lease_holder", pg: "TEXT", sqlite: "TEXT" },
  { name: "lease_version", pg: "BIGINT", sqlite: "INTEGER" },
  { name: "lease_until", pg: "BIGINT", sqlite: "INTEGER" }
] as const

// The table name as the statements write it (`sql(tableName)`): each dot-separated part quoted.
const quotedName = (tableName: string): string => `"${tableName.replace(/"/g, "\"\"").replace(/\./g, "\".\"")}"`

// A table made before leases existed gets their columns. Only the missing ones, and only then:
// an ALTER TABLE takes an exclusive lock even when it changes nothing, which would queue every
// reader of the table behind any long transaction, and needs the table's owner. The wait for
// that lock is bounded, so a migration never holds up the readers for long.
const pgLeaseColumns = (sql: SqlClient.SqlClient, tableName: string): Effect.Effect<void, SqlError> =>
  Effect.flatMap(
    sql<{ readonly attname: string }>`
      SELECT attname FROM pg_attribute
      WHERE attrelid = to_regclass(${quotedName(tableName)}) AND attnum > 0 AND NOT attisdropped`,
    (columns) => {
      const present = new Set(columns.map((column) => column.attname))
      const missing = leaseColumns.filter((column) => !present.has(column.name))
      return missing.length === 0 ? Effect.void : sql`SET LOCAL lock_timeout = '10s'`.pipe(
        Effect.zipRight(Effect.forEach(
          missing,
          ({ name, pg }) =>
            sql`ALTER TABLE ${sql(tableName)} ADD COLUMN IF NOT EXISTS ${sql(name)} ${sql.literal(pg)} NULL`,
          { discard: true }
        ))
      )
    }
  )

// The same for SQLite (which has no ADD COLUMN IF NOT EXISTS).
const sqliteLeaseColumns = (sql: SqlClient.SqlClient, tableName: string): Effect.Effect<void, SqlError> =>
  Effect.flatMap(sql<{ readonly name: string }>`SELECT name FROM pragma_table_info(${tableName})`, (columns) => {
    const present = new Set(columns.map((column) => column.name))
    return Effect.forEach(
      leaseColumns,
      ({ name, sqlite }) =>
        present.has(name)
          ? Effect.void
          : sql`ALTER TABLE ${sql(tableName)} ADD COLUMN ${sql(name)} ${sql.literal(sqlite)} NULL`,
      { discard: true }
    )
  })

/**
 * The table of authorizations in progress, and its index on expiry.
 *
 * @since 0.1.0
 * @category constructors
 */
export const pendingTable = (sql: SqlClient.SqlClient, tableName: string): Effect.Effect<unknown, SqlError> =>
  Effect.zipRight(
    sql`CREATE TABLE IF NOT EXISTS ${sql(tableName)} (
      state_hash TEXT PRIMARY KEY NOT NULL,
      user_id TEXT NOT NULL,
      contract_id TEXT NOT NULL,
      kind TEXT NOT NULL,
      code_verifier TEXT NOT NULL,
      callback_url TEXT NOT NULL,
      expires_at BIGINT NOT NULL,
      used INTEGER NOT NULL DEFAULT 0
    )`,
    sql`CREATE INDEX IF NOT EXISTS ${sql(`${tableName}_expires_at`)} ON ${sql(tableName)} (expires_at)`
  )

/**
 * Runs `create` in a transaction. Concurrent `CREATE TABLE IF NOT EXISTS` can fail on PostgreSQL
 * (both sessions pass the check), so it runs under an advisory lock there; SQLite's write lock
 * serializes it already.
 *
 * @since 0.1.0
 * @category constructors
 */
export const run = (
  sql: SqlClient.SqlClient,
  create: Effect.Effect<unknown, SqlError>
): Effect.Effect<void, SqlError> =>
  sql.withTransaction(
    Effect.zipRight(
      sql.onDialectOrElse({
        // A 64-bit key: the first 8 bytes of SHA-256("@digime-effect/node/SqlTokenStore/migrate").
        pg: () => sql`SELECT pg_advisory_xact_lock(685427665555722623)`,
        orElse: () => Effect.void
      }),
      create
    )
  ).pipe(Effect.asVoid)
