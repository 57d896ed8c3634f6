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
      )`.pipe(
        Effect.zipRight(sql`ALTER TABLE ${sql(tableName)}
          ADD COLUMN IF NOT EXISTS lease_holder TEXT NULL,
          ADD COLUMN IF NOT EXISTS lease_version BIGINT NULL,
          ADD COLUMN IF NOT EXISTS lease_until BIGINT NULL`)
      ),
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

// A table made before leases existed gets their columns (SQLite has no ADD COLUMN IF NOT EXISTS).
const sqliteLeaseColumns = (sql: SqlClient.SqlClient, tableName: string): Effect.Effect<void, SqlError> =>
  Effect.flatMap(sql<{ readonly name: string }>`SELECT name FROM pragma_table_info(${tableName})`, (columns) => {
    const present = new Set(columns.map((column) => column.name))
    return Effect.forEach(
      [["lease_holder", "TEXT"], ["lease_version", "INTEGER"], ["lease_until", "INTEGER"]] as const,
      ([name, type]) =>
        present.has(name)
          ? Effect.void
          : sql`ALTER TABLE ${sql(tableName)} ADD COLUMN ${sql(name)} ${sql.literal(type)} NULL`,
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
