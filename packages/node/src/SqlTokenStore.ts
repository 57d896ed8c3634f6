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
 * **Leases.** A refresh is announced in the row before it is sent (`acquireLease`): the holder, the
 * version and the end of the lease, in three columns, written by one conditional `UPDATE`. The
 * compare-and-set write of the new token clears them in the same statement. No transaction, lock
 * or pooled connection is held while a refresh runs, so a holder whose session dies changes
 * nothing: its lease stays until it is released, written over, or outlived.
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
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
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
 *   token TEXT NULL, updated_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
 *   lease_holder TEXT NULL, lease_version BIGINT NULL, lease_until BIGINT NULL)
 * ```
 * SQLite: the same with `version INTEGER` and `updated_at TEXT`. A table made by an earlier version
 * gets the three lease columns added. Pending authorizations:
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
    const { codec, tableName } = yield* SqlStore.settings(sql, options)
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
      return sql<Row>`
        SELECT version, token, lease_holder, lease_version, lease_until FROM ${table}
        WHERE id = ${id} AND token IS NOT NULL
      `.pipe(
        Effect.flatMap((rows) =>
          rows.length === 0
            ? Effect.succeed(Option.none<TokenStore.Versioned>())
            : Effect.zipWith(
              SqlStore.toInteger(rows[0]!.version),
              Effect.zip(open(id, rows[0]!.token), leaseOf(rows[0]!)),
              (version, [token, lease]) =>
                Option.some<TokenStore.Versioned>(lease === undefined ? { token, version } : { token, version, lease })
            )
        ),
        SqlStore.retryLostConnection,
        Effect.mapError(SqlStore.storeError("get", key)),
        Effect.withSpan("SqlTokenStore.get", SqlStore.spanOf(key))
      )
    }

    // Every write of a token ends the lease on the version it replaces.
    const set = (key: TokenKey.TokenKey, token: UserAccessToken.UserAccessToken) => {
      const id = TokenKey.toId(key)
      return seal(id, token).pipe(
        Effect.flatMap((stored) =>
          sql<{ readonly version: unknown }>`
            INSERT INTO ${table} (id, user_id, contract_id, version, token, updated_at)
            VALUES (${id}, ${key.userId}, ${key.contractId}, 1, ${stored}, CURRENT_TIMESTAMP)
            ON CONFLICT (id) DO UPDATE SET
              version = ${table}.version + 1, token = excluded.token, updated_at = CURRENT_TIMESTAMP,
              lease_holder = NULL, lease_version = NULL, lease_until = NULL
            RETURNING version
          `
        ),
        Effect.flatMap((rows) => written(rows, token)),
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new RowError({ reason: "NoVersionReturned" })),
          onSome: Effect.succeed
        })),
        SqlStore.retryLostConnection,
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
            UPDATE ${table} SET version = version + 1, token = ${stored}, updated_at = CURRENT_TIMESTAMP,
              lease_holder = NULL, lease_version = NULL, lease_until = NULL
            WHERE id = ${id} AND version = ${expectedVersion} AND token IS NOT NULL
            RETURNING version
          `
        ),
        Effect.flatMap((rows) => written(rows, token)),
        SqlStore.retryLostConnection,
        Effect.mapError(SqlStore.storeError("compareAndSet", key)),
        Effect.withSpan("SqlTokenStore.compareAndSet", SqlStore.spanOf(key))
      )
    }

    // The row stays as a tombstone so that the key's next version is still greater.
    const remove = (key: TokenKey.TokenKey) =>
      sql`
        UPDATE ${table} SET version = version + 1, token = NULL, updated_at = CURRENT_TIMESTAMP,
          lease_holder = NULL, lease_version = NULL, lease_until = NULL
        WHERE id = ${TokenKey.toId(key)} AND token IS NOT NULL
      `.pipe(
        Effect.asVoid,
        SqlStore.retryLostConnection,
        Effect.mapError(SqlStore.storeError("delete", key)),
        Effect.withSpan("SqlTokenStore.delete", SqlStore.spanOf(key))
      )

    // Only on the stored version, and only when no lease was taken on it since it was written.
    const acquireLease = (key: TokenKey.TokenKey, lease: TokenStore.Lease) =>
      sql<{ readonly version: unknown }>`
        UPDATE ${table} SET lease_holder = ${lease.holder}, lease_version = ${lease.version},
          lease_until = ${lease.until}
        WHERE id = ${TokenKey.toId(key)} AND version = ${lease.version} AND token IS NOT NULL
          AND lease_version IS NULL
        RETURNING version
      `.pipe(
        Effect.map((rows) => rows.length > 0),
        SqlStore.retryLostConnection,
        Effect.mapError(SqlStore.storeError("acquireLease", key)),
        Effect.withSpan("SqlTokenStore.acquireLease", SqlStore.spanOf(key))
      )

    const endLease = (key: TokenKey.TokenKey, lease: TokenStore.Lease, end: TokenStore.LeaseEnd) =>
      (end === "Released"
        ? sql`
          UPDATE ${table} SET lease_holder = NULL, lease_version = NULL, lease_until = NULL
          WHERE id = ${TokenKey.toId(key)} AND lease_holder = ${lease.holder} AND lease_version = ${lease.version}
        `
        : sql`
          UPDATE ${table} SET lease_until = 0
          WHERE id = ${TokenKey.toId(key)} AND lease_holder = ${lease.holder} AND lease_version = ${lease.version}
        `).pipe(
          Effect.asVoid,
          SqlStore.retryLostConnection,
          Effect.mapError(SqlStore.storeError("endLease", key)),
          Effect.withSpan("SqlTokenStore.endLease", SqlStore.spanOf(key))
        )

    return { get, set, compareAndSet, delete: remove, acquireLease, endLease }
  })

interface Row {
  readonly version: unknown
  readonly token: string
  readonly lease_holder: string | null
  readonly lease_version: unknown
  readonly lease_until: unknown
}

const leaseOf = (row: Row): Effect.Effect<TokenStore.Lease | undefined, RowError> =>
  row.lease_holder === null || row.lease_version === null || row.lease_until === null
    ? Effect.succeed(undefined)
    : Effect.zipWith(
      SqlStore.toInteger(row.lease_version),
      SqlStore.toInteger(row.lease_until),
      (version, until) => ({ holder: row.lease_holder!, version, until })
    )

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
