/**
 * The tables of the SQL stores, created if they do not exist. `SqlTokenStore.migrate` documents
 * them.
 *
 * @since 0.1.0
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Crypto from "node:crypto"

/**
 * The table of tokens, in the dialect of `sql`, and its indexes.
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
        lease_until BIGINT NULL,
        access_expires_at BIGINT NULL,
        refresh_expires_at BIGINT NULL,
        access_due_at BIGINT NULL,
        refresh_due_at BIGINT NULL,
        reconnect_reason TEXT NULL,
        reconnect_version BIGINT NULL,
        reconnect_at BIGINT NULL
      )`.pipe(Effect.zipRight(pgUpgrade(sql, tableName))),
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
        lease_until INTEGER NULL,
        access_expires_at INTEGER NULL,
        refresh_expires_at INTEGER NULL,
        access_due_at INTEGER NULL,
        refresh_due_at INTEGER NULL,
        reconnect_reason TEXT NULL,
        reconnect_version INTEGER NULL,
        reconnect_at INTEGER NULL
      )`.pipe(Effect.zipRight(sqliteUpgrade(sql, tableName)))
  })

// The columns that earlier versions did not create: the lease, then the expiries, the due times of
// upkeep and the mark "needs reconnect".
const addedColumns = [
  { name: "lease_holder", pg: "TEXT", sqlite: "TEXT" },
  { name: "lease_version", pg: "BIGINT", sqlite: "INTEGER" },
  { name: "lease_until", pg: "BIGINT", sqlite: "INTEGER" },
  { name: "access_expires_at", pg: "BIGINT", sqlite: "INTEGER" },
  { name: "refresh_expires_at", pg: "BIGINT", sqlite: "INTEGER" },
  { name: "access_due_at", pg: "BIGINT", sqlite: "INTEGER" },
  { name: "refresh_due_at", pg: "BIGINT", sqlite: "INTEGER" },
  { name: "reconnect_reason", pg: "TEXT", sqlite: "TEXT" },
  { name: "reconnect_version", pg: "BIGINT", sqlite: "INTEGER" },
  { name: "reconnect_at", pg: "BIGINT", sqlite: "INTEGER" }
] as const

// The claims of upkeep by due time, the listings by expiry (then id, their cursor) and the listing
// of the keys marked "needs reconnect", which are few.
const tokenIndexes = [
  { name: "access_due_at", definition: "(access_due_at)" },
  { name: "refresh_due_at", definition: "(refresh_due_at)" },
  { name: "access_expires_at", definition: "(access_expires_at, id)" },
  { name: "refresh_expires_at", definition: "(refresh_expires_at, id)" },
  { name: "reconnect", definition: "(id) WHERE reconnect_reason IS NOT NULL" }
] as const

// The name of an index: the table's, then what it indexes. A name beyond PostgreSQL's 63 bytes
// (which it would cut, so that two indexes of a long-named table would share one name) keeps what
// it indexes and a hash of the table's name.
const indexName = (tableName: string, indexed: string): string => {
  const name = `${tableName}_${indexed}`
  if (name.length <= 63) return name
  const hash = Crypto.createHash("sha256").update(tableName).digest("hex").slice(0, 8)
  return `${tableName.slice(0, 63 - indexed.length - hash.length - 2)}_${hash}_${indexed}`
}

const createIndex = (
  sql: SqlClient.SqlClient,
  tableName: string,
  index: typeof tokenIndexes[number]
): Effect.Effect<unknown, SqlError> =>
  sql`CREATE INDEX IF NOT EXISTS ${sql(indexName(tableName, index.name))} ON ${sql(tableName)} ${
    sql.literal(index.definition)
  }`

// The table name as the statements write it (`sql(tableName)`): each dot-separated part quoted.
const quotedName = (tableName: string): string => `"${tableName.replace(/"/g, "\"\"").replace(/\./g, "\".\"")}"`

// A table made by an earlier version gets the columns and indexes it lacks. Only the missing ones,
// and only then: an ALTER TABLE takes an exclusive lock even when it changes nothing, which would
// queue every reader of the table behind any long transaction, and needs the table's owner; a
// CREATE INDEX IF NOT EXISTS locks out every writer before it finds the index there. The wait for
// those locks is bounded, so a migration never holds up the readers and writers for long.
const pgUpgrade = (sql: SqlClient.SqlClient, tableName: string): Effect.Effect<void, SqlError> =>
  Effect.flatMap(
    Effect.all([
      sql<{ readonly attname: string }>`
        SELECT attname FROM pg_attribute
        WHERE attrelid = to_regclass(${quotedName(tableName)}) AND attnum > 0 AND NOT attisdropped`,
      sql<{ readonly relname: string }>`
        SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = to_regclass(${quotedName(tableName)})`
    ]),
    ([columns, indexes]) => {
      const presentColumns = new Set(columns.map((column) => column.attname))
      const presentIndexes = new Set(indexes.map((index) => index.relname))
      const missingColumns = addedColumns.filter((column) => !presentColumns.has(column.name))
      const missingIndexes = tokenIndexes.filter((index) => !presentIndexes.has(indexName(tableName, index.name)))
      if (missingColumns.length === 0 && missingIndexes.length === 0) return Effect.void
      return sql`SET LOCAL lock_timeout = '10s'`.pipe(
        Effect.zipRight(Effect.forEach(
          missingColumns,
          ({ name, pg }) =>
            sql`ALTER TABLE ${sql(tableName)} ADD COLUMN IF NOT EXISTS ${sql(name)} ${sql.literal(pg)} NULL`,
          { discard: true }
        )),
        Effect.zipRight(
          Effect.forEach(missingIndexes, (index) => createIndex(sql, tableName, index), { discard: true })
        )
      )
    }
  )

// The same for SQLite, which has no ADD COLUMN IF NOT EXISTS and one writer at a time: its indexes
// are created IF NOT EXISTS at every start.
const sqliteUpgrade = (sql: SqlClient.SqlClient, tableName: string): Effect.Effect<void, SqlError> =>
  Effect.flatMap(sql<{ readonly name: string }>`SELECT name FROM pragma_table_info(${tableName})`, (columns) => {
    const present = new Set(columns.map((column) => column.name))
    return Effect.zipRight(
      Effect.forEach(
        addedColumns,
        ({ name, sqlite }) =>
          present.has(name)
            ? Effect.void
            : sql`ALTER TABLE ${sql(tableName)} ADD COLUMN ${sql(name)} ${sql.literal(sqlite)} NULL`,
        { discard: true }
      ),
      Effect.forEach(tokenIndexes, (index) => createIndex(sql, tableName, index), { discard: true })
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
