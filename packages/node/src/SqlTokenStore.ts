/**
 * A `TokenStore` in a SQL database, shared by every process that connects to it. Requires an
 * `SqlClient` from @effect/sql: PostgreSQL (`@effect/sql-pg`) or SQLite (`@effect/sql-sqlite-node`,
 * the embedded default); other dialects are refused when the layer is built. Its companion
 * `SqlPendingAuthorizations` keeps authorizations in progress in the same database and takes the
 * same `Options`.
 *
 * **Tables.** `make` creates its table if it does not exist (see `migrate`), so there is nothing
 * to run beforehand; two processes may start together. Each token row holds the key
 * (`TokenKey.toId`, plus the user and contract ids), a version, the token as JSON text (or its
 * ciphertext) and the time of the last write. Deleting a token keeps the row as a tombstone
 * (`token` is `NULL`) so that its version keeps growing: a key that is deleted and set again never
 * reuses a version.
 *
 * **Encryption.** With `encryptionKey` (32 bytes: a `Uint8Array` or its base64 text), the token
 * JSON and the PKCE verifiers are sealed with AES-256-GCM (Web Crypto): a random 96-bit IV per
 * write, stored with the ciphertext and a fingerprint of the key, and the row's key bound as
 * additional authenticated data, so a ciphertext copied to another row does not open. A row that
 * does not open (tampered, another key, or no key configured) fails with `TokenStoreError` for
 * that key only.
 *
 * **Locking.** `withLock(key, effect)` runs `effect` inside a database transaction that holds the
 * lock, on one connection; the store's operations inside `effect` use that connection, and the
 * transaction commits when `effect` ends, whether it succeeded, failed or was interrupted, so
 * that a token written inside is kept as it would be by any other store.
 * - PostgreSQL: `pg_advisory_xact_lock(hashtext(tableName), hashtext(id))`, one lock per key.
 *   It is released when the transaction ends, or when PostgreSQL notices that the holder's
 *   connection died. A waiter gives up after `lockTimeout` (PostgreSQL's `lock_timeout`).
 *   Each holder uses one pooled connection for the time it holds the lock.
 * - SQLite: `BEGIN IMMEDIATE`, which takes the database's write lock: one holder at a time for
 *   the whole file, not per key, and the process's other queries wait for the holder (the driver
 *   has one connection). Waiting for another process's holder does not block the event loop: the
 *   lock is tried without waiting and retried until `lockTimeout`. Other writes of other processes
 *   wait for a holder up to the driver's busy timeout (5 seconds by default), blocking their event
 *   loop meanwhile. The lock is released when the holder's transaction ends or its process dies.
 *
 * A lock not acquired within `lockTimeout` (one minute by default, longer than the default
 * request timeout of a refresh) fails with `TokenStoreError`.
 *
 * @example
 * import { SqlPendingAuthorizations, SqlTokenStore } from "@digime-effect/node"
 * import { SqliteClient } from "@effect/sql-sqlite-node"
 * import { Layer } from "effect"
 *
 * const StoreLive = Layer.merge(SqlTokenStore.layer(), SqlPendingAuthorizations.layer()).pipe(
 *   Layer.provide(SqliteClient.layer({ filename: "digime-tokens.db" }))
 * )
 *
 * @since 0.1.0
 */
import type { InvalidConfig } from "@digime-effect/core/DigimeError"
import * as TokenKey from "@digime-effect/core/TokenKey"
import * as TokenStore from "@digime-effect/core/TokenStore"
import * as UserAccessToken from "@digime-effect/core/UserAccessToken"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as LockedTransaction from "./internal/lockedTransaction.js"
import * as Migration from "./internal/migration.js"
import { RowError } from "./internal/rowError.js"
import * as SqlStore from "./internal/sqlStore.js"

/**
 * The options of `SqlTokenStore` and of `SqlPendingAuthorizations`: every field is checked by
 * both, so that one value serves the two layers.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The table of tokens; `"digime_tokens"` by default. */
  readonly tableName?: string | undefined
  /** The table of authorizations in progress; `"digime_pending_authorizations"` by default. */
  readonly pendingTableName?: string | undefined
  /**
   * A 256-bit key (32 bytes, or their base64 text) to encrypt tokens and PKCE verifiers at rest.
   * Without it they are stored in clear.
   */
  readonly encryptionKey?: Redacted.Redacted<Uint8Array | string> | undefined
  /** How long `withLock` waits for another holder; one minute by default. */
  readonly lockTimeout?: Duration.DurationInput | undefined
}

/**
 * Creates the tables of the token store and of the pending authorizations if they do not exist.
 * `SqlTokenStore.make` and `SqlPendingAuthorizations.make` run it themselves, each for its own
 * table; it is exported for deployments that create tables ahead of time. Idempotent, and safe
 * when several processes run it at once.
 *
 * PostgreSQL:
 * ```sql
 * CREATE TABLE IF NOT EXISTS digime_tokens (
 *   id TEXT PRIMARY KEY, user_id TEXT NOT NULL, contract_id TEXT NOT NULL, version BIGINT NOT NULL,
 *   token TEXT NULL, updated_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP)
 * ```
 * SQLite: the same with `version INTEGER` and `updated_at TEXT`. Pending authorizations:
 * ```sql
 * CREATE TABLE IF NOT EXISTS digime_pending_authorizations (
 *   state_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, contract_id TEXT NOT NULL, kind TEXT NOT NULL,
 *   code_verifier TEXT NOT NULL, callback_url TEXT NOT NULL, expires_at BIGINT NOT NULL,
 *   used INTEGER NOT NULL DEFAULT 0)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const migrate = (
  options: Pick<Options, "tableName" | "pendingTableName"> = {}
): Effect.Effect<void, SqlError | InvalidConfig, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    yield* SqlStore.dialectOf(sql)
    const tableName = yield* SqlStore.tableName("tableName", options.tableName)
    const pendingTableName = yield* SqlStore.tableName("pendingTableName", options.pendingTableName)
    yield* Migration.run(
      sql,
      Effect.zipRight(Migration.tokensTable(sql, tableName), Migration.pendingTable(sql, pendingTableName))
    )
  })

// -------------------------------------------------------------------------------------------
// the lock's steps, by dialect
// -------------------------------------------------------------------------------------------

type Steps = Pick<LockedTransaction.Options, "begin" | "lock" | "retryBusy">

// One advisory lock per key, waited for up to `lockTimeout` (PostgreSQL's `lock_timeout`).
const pgSteps = (sql: SqlClient.SqlClient, namespace: string, lockTimeout: Duration.Duration): Steps => {
  const millis = Duration.toMillis(lockTimeout)
  const setting = Number.isFinite(millis) ? `${Math.max(1, Math.ceil(millis))}ms` : "0"
  const lock = (id: string) =>
    Effect.zipRight(
      sql`SELECT set_config('lock_timeout', ${setting}, true)`,
      sql`SELECT pg_advisory_xact_lock(hashtext(${namespace}), hashtext(${id}))`
    ).pipe(
      Effect.catchIf(
        (error) => SqlStore.errorCode(error) === "55P03",
        () => Effect.fail(new LockedTransaction.LockTimeout({ timeout: lockTimeout }))
      ),
      Effect.asVoid
    )
  return { lock, begin: (id) => Effect.zipRight(sql`BEGIN`, lock(id)), retryBusy: Schedule.stop }
}

const isBusy = (error: SqlError): boolean => SqlStore.errorCode(error)?.startsWith("SQLITE_BUSY") === true

// The database's write lock, for every key at once.
const sqliteSteps = (sql: SqlClient.SqlClient, tableName: string, lockTimeout: Duration.Duration): Steps => ({
  // A write statement takes the write lock, waiting as the driver's busy timeout says.
  lock: (_id) =>
    sql`UPDATE ${sql(tableName)} SET version = version WHERE 0 = 1`.pipe(
      Effect.catchIf(isBusy, () => Effect.fail(new LockedTransaction.LockTimeout({ timeout: lockTimeout }))),
      Effect.asVoid
    ),
  // One attempt without waiting: the driver's busy handler would block the event loop.
  begin: (_id) =>
    Effect.uninterruptible(Effect.gen(function*() {
      const rows = yield* sql<{ readonly timeout: unknown }>`PRAGMA busy_timeout`
      const previous = Number(rows[0]?.timeout)
      yield* sql`PRAGMA busy_timeout = 0`
      const begun = yield* Effect.exit(sql`BEGIN IMMEDIATE`)
      yield* sql`PRAGMA busy_timeout = ${sql.literal(String(Number.isSafeInteger(previous) ? previous : 5000))}`
      if (Exit.isFailure(begun)) {
        const busy = begun.cause._tag === "Fail" && isBusy(begun.cause.error)
        return yield* busy ? new LockedTransaction.LockBusy() : begun
      }
    })),
  retryBusy: Schedule.exponential("5 millis", 2).pipe(
    Schedule.union(Schedule.spaced("100 millis")),
    Schedule.upTo(lockTimeout)
  )
})

// -------------------------------------------------------------------------------------------
// token store
// -------------------------------------------------------------------------------------------

const encodeToken = Schema.encode(UserAccessToken.UserAccessTokenFromJson)
const decodeToken = Schema.decode(UserAccessToken.UserAccessTokenFromJson)

/**
 * A token store on the `SqlClient`'s database. Creates its table if needed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<TokenStore.Service, SqlError | InvalidConfig, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const { codec, dialect, lockTimeout, tableName } = yield* SqlStore.settings(sql, options)
    yield* Migration.run(sql, Migration.tokensTable(sql, tableName))
    const table = sql(tableName)

    const seal = (id: string, token: UserAccessToken.UserAccessToken) =>
      encodeToken(token).pipe(
        Effect.mapError(() => new RowError({ reason: "TokenNotEncodable" })),
        Effect.flatMap((json) => codec.seal(json, id))
      )
    const open = (id: string, stored: string) =>
      codec.open(stored, id).pipe(
        Effect.flatMap((json) =>
          Effect.mapError(decodeToken(json), () => new RowError({ reason: "TokenNotDecodable" }))
        )
      )
    const written = (rows: ReadonlyArray<{ readonly version: unknown }>, token: UserAccessToken.UserAccessToken) =>
      rows.length === 0
        ? Effect.succeed(Option.none<TokenStore.Versioned>())
        : Effect.map(
          SqlStore.toInteger(rows[0]!.version),
          (version) => Option.some<TokenStore.Versioned>({ token, version })
        )

    const get = (key: TokenKey.TokenKey) => {
      const id = TokenKey.toId(key)
      return sql<{ readonly version: unknown; readonly token: string }>`
        SELECT version, token FROM ${table} WHERE id = ${id} AND token IS NOT NULL
      `.pipe(
        Effect.flatMap((rows) =>
          rows.length === 0
            ? Effect.succeed(Option.none<TokenStore.Versioned>())
            : Effect.zipWith(
              SqlStore.toInteger(rows[0]!.version),
              open(id, rows[0]!.token),
              (version, token) => Option.some<TokenStore.Versioned>({ token, version })
            )
        ),
        Effect.mapError(SqlStore.storeError("get", key)),
        Effect.withSpan("SqlTokenStore.get", SqlStore.spanOf(key))
      )
    }

    const set = (key: TokenKey.TokenKey, token: UserAccessToken.UserAccessToken) => {
      const id = TokenKey.toId(key)
      return seal(id, token).pipe(
        Effect.flatMap((stored) =>
          sql<{ readonly version: unknown }>`
            INSERT INTO ${table} (id, user_id, contract_id, version, token, updated_at)
            VALUES (${id}, ${key.userId}, ${key.contractId}, 1, ${stored}, CURRENT_TIMESTAMP)
            ON CONFLICT (id) DO UPDATE SET
              version = ${table}.version + 1, token = excluded.token, updated_at = CURRENT_TIMESTAMP
            RETURNING version
          `
        ),
        Effect.flatMap((rows) => written(rows, token)),
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new RowError({ reason: "NoVersionReturned" })),
          onSome: Effect.succeed
        })),
        Effect.mapError(SqlStore.storeError("set", key)),
        Effect.withSpan("SqlTokenStore.set", SqlStore.spanOf(key))
      )
    }

    const compareAndSet = (key: TokenKey.TokenKey, expectedVersion: number, token: UserAccessToken.UserAccessToken) => {
      const id = TokenKey.toId(key)
      if (!Number.isSafeInteger(expectedVersion)) return Effect.succeed(Option.none<TokenStore.Versioned>())
      return seal(id, token).pipe(
        Effect.flatMap((stored) =>
          sql<{ readonly version: unknown }>`
            UPDATE ${table} SET version = version + 1, token = ${stored}, updated_at = CURRENT_TIMESTAMP
            WHERE id = ${id} AND version = ${expectedVersion} AND token IS NOT NULL
            RETURNING version
          `
        ),
        Effect.flatMap((rows) => written(rows, token)),
        Effect.mapError(SqlStore.storeError("compareAndSet", key)),
        Effect.withSpan("SqlTokenStore.compareAndSet", SqlStore.spanOf(key))
      )
    }

    // The row stays as a tombstone so that the key's next version is still greater.
    const remove = (key: TokenKey.TokenKey) =>
      sql`
        UPDATE ${table} SET version = version + 1, token = NULL, updated_at = CURRENT_TIMESTAMP
        WHERE id = ${TokenKey.toId(key)} AND token IS NOT NULL
      `.pipe(
        Effect.asVoid,
        Effect.mapError(SqlStore.storeError("delete", key)),
        Effect.withSpan("SqlTokenStore.delete", SqlStore.spanOf(key))
      )

    const lockedTransaction = LockedTransaction.make({
      ...(dialect === "pg"
        ? pgSteps(sql, `@digime-effect/node/SqlTokenStore/${tableName}`, lockTimeout)
        : sqliteSteps(sql, tableName, lockTimeout)),
      reserve: sql.reserve,
      lockTimeout,
      commit: (conn) => Effect.asVoid(conn.executeUnprepared("COMMIT", [], undefined)),
      rollback: (conn) => Effect.asVoid(conn.executeUnprepared("ROLLBACK", [], undefined))
    })
    const withLock = <A, E, R>(key: TokenKey.TokenKey, effect: Effect.Effect<A, E, R>) =>
      lockedTransaction(TokenKey.toId(key), effect, SqlStore.storeError("withLock", key))

    return { get, set, compareAndSet, delete: remove, withLock }
  })

/**
 * The token store on the `SqlClient`'s database; creates its table when the layer is built.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<TokenStore.TokenStore, SqlError | InvalidConfig, SqlClient.SqlClient> =>
  Layer.effect(TokenStore.TokenStore, make(options))
