/**
 * `PendingAuthorizations` in a SQL database, so that digi.me's callback may reach another process
 * than the one that started the authorization. Requires an `SqlClient` (PostgreSQL or SQLite) and
 * takes the same `SqlTokenStore.Options` as the token store, so one value configures both layers.
 *
 * `make` creates its table if it does not exist (see `SqlTokenStore.migrate`). The state is a
 * bearer secret of the callback: rows are found by its SHA-256 hash, never by the state itself. The
 * PKCE verifier is sealed with AES-256-GCM when `encryption` (or `encryptionKey`) is set, bound to
 * its row and to the row's other columns (key, kind, callback URL, expiry). An entry is marked used
 * when consumed, so that of two callbacks with the same state one finds it, and entries are purged
 * an hour after they expire. A row that holds what `put` never writes fails with `TokenStoreError`
 * and is left as it was.
 *
 * @example
 * import { SqlPendingAuthorizations, SqlTokenStore } from "@digime-effect/node"
 * import { PgClient } from "@effect/sql-pg"
 * import { Config, Layer } from "effect"
 *
 * const options: SqlTokenStore.Options = { tableName: "app_tokens", pendingTableName: "app_pending" }
 * const StoreLive = Layer.merge(SqlTokenStore.layer(options), SqlPendingAuthorizations.layer(options)).pipe(
 *   Layer.provide(PgClient.layerConfig({ url: Config.redacted("DATABASE_URL") }))
 * )
 *
 * @since 0.1.0
 */
import type { InvalidConfig, TokenStoreError } from "@digime-effect/core/DigimeError"
import * as PendingAuthorizations from "@digime-effect/core/PendingAuthorizations"
import * as TokenKey from "@digime-effect/core/TokenKey"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Encoding from "effect/Encoding"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as AesGcm from "./internal/aesGcm.js"
import * as Migration from "./internal/migration.js"
import { RowError } from "./internal/rowError.js"
import * as SqlStore from "./internal/sqlStore.js"
import { optionsFromEnv } from "./SqlTokenStore.js"
import type { Options, Reencrypted, ReencryptOptions } from "./SqlTokenStore.js"

const purgeAfterMillis = 60 * 60 * 1000
// The latest instant a `DateTime` (a JavaScript `Date`) holds, in epoch milliseconds.
const maxEpochMillis = 8_640_000_000_000_000
const textEncoder = new TextEncoder()

// The state is a bearer secret of the callback: rows are found by its hash.
const stateHash = (state: string): Effect.Effect<string, RowError> =>
  Effect.tryPromise({
    try: async () =>
      Encoding.encodeBase64Url(
        new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", textEncoder.encode(state)))
      ),
    catch: () => new RowError({ reason: "StateNotHashable" })
  })

interface Columns {
  readonly key: TokenKey.TokenKey
  readonly kind: PendingAuthorizations.Pending["kind"]
  readonly callbackUrl: string
  readonly expiresAt: number
}

// The verifier is sealed for its row and every column read with it: a ciphertext moved to
// another state does not open, nor does one whose key, kind, callback or expiry was changed.
const bindingOf = (hash: string, columns: Columns): AesGcm.Binding => ({
  row: `pending/${hash}`,
  context: [columns.key.userId, columns.key.contractId, columns.kind, columns.callbackUrl, String(columns.expiresAt)]
})

interface PendingRow {
  readonly state_hash: unknown
  readonly user_id: unknown
  readonly contract_id: unknown
  readonly kind: unknown
  readonly code_verifier: unknown
  readonly callback_url: unknown
  readonly expires_at: unknown
  readonly used: unknown
}

const keyOf = (row: PendingRow): Effect.Effect<TokenKey.TokenKey, RowError> =>
  Effect.gen(function*() {
    const userId = yield* SqlStore.toText(row.user_id, "KeyInvalid")
    const contractId = yield* SqlStore.toText(row.contract_id, "KeyInvalid")
    return yield* Effect.mapError(TokenKey.decode(userId, contractId), () => new RowError({ reason: "KeyInvalid" }))
  })

// Every column is checked before anything is written: a row that holds what `put` never writes
// (an expiry before 1970 or beyond what a `DateTime` holds, text, a fraction, a blob) fails, and
// is left as it is.
const columnsOf = (
  row: PendingRow,
  key: TokenKey.TokenKey
): Effect.Effect<Columns & { readonly used: boolean }, RowError> =>
  Effect.gen(function*() {
    const kind = row.kind
    if (kind !== "authorize" && kind !== "reauthorize") return yield* new RowError({ reason: "KindInvalid" })
    const callbackUrl = yield* SqlStore.toText(row.callback_url, "CallbackUrlInvalid")
    const expiresAt = yield* SqlStore.toInteger(row.expires_at, "ExpiryInvalid", 0, maxEpochMillis)
    const used = yield* SqlStore.toInteger(row.used, "UsedInvalid", 0, 1)
    return { key, kind, callbackUrl, expiresAt, used: used === 1 }
  })

const selectColumns = "state_hash, user_id, contract_id, kind, code_verifier, callback_url, expires_at, used"

/**
 * Authorizations in progress on the `SqlClient`'s database. Creates its table if needed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<PendingAuthorizations.Service, SqlError | InvalidConfig, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const { codec, dialect, pendingTableName } = yield* SqlStore.settings(sql, options)
    yield* Migration.run(sql, Migration.pendingTable(sql, pendingTableName))
    const table = sql(pendingTableName)
    const columns = sql.literal(selectColumns)

    const put = (state: string, pending: PendingAuthorizations.Pending) =>
      Effect.gen(function*() {
        const hash = yield* stateHash(state)
        const expiresAt = DateTime.toEpochMillis(pending.expiresAt)
        const verifier = yield* codec.seal(
          Redacted.value(pending.codeVerifier),
          bindingOf(hash, { key: pending.key, kind: pending.kind, callbackUrl: pending.callbackUrl, expiresAt })
        )
        yield* sql`
          INSERT INTO ${table} (state_hash, user_id, contract_id, kind, code_verifier, callback_url, expires_at, used)
          VALUES (${hash}, ${pending.key.userId}, ${pending.key.contractId}, ${pending.kind}, ${verifier},
            ${pending.callbackUrl}, ${expiresAt}, 0)
          ON CONFLICT (state_hash) DO UPDATE SET
            user_id = excluded.user_id, contract_id = excluded.contract_id, kind = excluded.kind,
            code_verifier = excluded.code_verifier, callback_url = excluded.callback_url,
            expires_at = excluded.expires_at, used = 0
        `
      }).pipe(
        Effect.mapError(SqlStore.storeError("put", pending.key)),
        SqlStore.withKeySpan("SqlPendingAuthorizations.put", pending.key)
      )

    // Only rows whose expiry is one `put` writes: any other is refused when consumed, never purged.
    const purge = (before: number) =>
      dialect === "sqlite"
        ? sql`
          DELETE FROM ${table}
          WHERE expires_at >= 0 AND expires_at < ${before} AND typeof(expires_at) = 'integer'
        `
        : sql`DELETE FROM ${table} WHERE expires_at >= 0 AND expires_at < ${before}`

    // Checked, and its verifier opened, before it is marked used: a row that fails is left as it
    // was. Of two callbacks with the same state, the one whose mark is written finds it.
    const consume = (state: string, now: DateTime.Utc) =>
      Effect.gen(function*() {
        const nowMillis = DateTime.toEpochMillis(now)
        const hash = yield* stateHash(state)
        yield* purge(nowMillis - purgeAfterMillis)
        const rows = yield* sql<PendingRow>`SELECT ${columns} FROM ${table} WHERE state_hash = ${hash}`
        if (rows.length === 0) return { _tag: "Unknown" } satisfies PendingAuthorizations.Consumed
        const row = rows[0]!
        const key = yield* Effect.mapError(keyOf(row), SqlStore.storeError("consume", undefined))
        const fail = SqlStore.storeError("consume", key)
        const found = yield* Effect.mapError(columnsOf(row, key), fail)
        if (found.used) return { _tag: "AlreadyUsed" } satisfies PendingAuthorizations.Consumed
        if (found.expiresAt <= nowMillis) return { _tag: "Expired" } satisfies PendingAuthorizations.Consumed
        const verifier = yield* SqlStore.toText(row.code_verifier, "ValueNotText").pipe(
          Effect.flatMap((stored) => codec.open(stored, bindingOf(hash, found))),
          Effect.mapError(fail)
        )
        const expiresAt = yield* Option.match(DateTime.make(found.expiresAt), {
          onNone: () => Effect.fail(fail(new RowError({ reason: "ExpiryInvalid" }))),
          onSome: Effect.succeed
        })
        const marked = yield* sql`
          UPDATE ${table} SET used = 1 WHERE state_hash = ${hash} AND used = 0 RETURNING state_hash
        `
        if (marked.length === 0) return { _tag: "AlreadyUsed" } satisfies PendingAuthorizations.Consumed
        const pending: PendingAuthorizations.Pending = {
          key: found.key,
          kind: found.kind,
          codeVerifier: Redacted.make(verifier),
          callbackUrl: found.callbackUrl,
          expiresAt
        }
        return { _tag: "Found", pending } satisfies PendingAuthorizations.Consumed
      }).pipe(
        Effect.mapError((error) =>
          error._tag === "TokenStoreError" ? error : SqlStore.storeError("consume", undefined)(error)
        ),
        Effect.withSpan("SqlPendingAuthorizations.consume")
      )

    return { put, consume }
  })

/**
 * Authorizations in progress on the `SqlClient`'s database; creates its table when the layer is
 * built.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<PendingAuthorizations.PendingAuthorizations, SqlError | InvalidConfig, SqlClient.SqlClient> =>
  Layer.effect(PendingAuthorizations.PendingAuthorizations, make(options))

/**
 * Authorizations in progress with their options from `config` (by default
 * `SqlTokenStore.optionsFromEnv`, the same as the token store's).
 *
 * @since 0.3.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<Options> = optionsFromEnv
): Layer.Layer<
  PendingAuthorizations.PendingAuthorizations,
  SqlError | InvalidConfig | ConfigError.ConfigError,
  SqlClient.SqlClient
> => Layer.unwrapEffect(Effect.map(config, layer))

/**
 * Seals every PKCE verifier that is not sealed with the current key in the current format again,
 * as `SqlTokenStore.reencrypt` does for tokens (same options, same counts): entries live for
 * minutes, but a key must not be dropped while one it sealed may still be consumed. A verifier
 * written meanwhile is never overwritten. Creates the table if it does not exist.
 *
 * @since 0.1.0
 * @category constructors
 */
export const reencrypt = (
  options: ReencryptOptions = {}
): Effect.Effect<Reencrypted, InvalidConfig | TokenStoreError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const { codec, pendingTableName } = yield* SqlStore.settings(sql, options)
    const current = yield* SqlStore.currentOf(codec)
    const batchSize = yield* SqlStore.batchSizeOf(options.batchSize)
    const fail = SqlStore.storeError("reencrypt", undefined)
    yield* Effect.mapError(Migration.run(sql, Migration.pendingTable(sql, pendingTableName)), fail)
    const table = sql(pendingTableName)
    const open = options.sealPlaintext === true ? codec.openOrClear : codec.open
    const pending = SqlStore.notCurrent(sql, "code_verifier", current)

    const resealed = (row: PendingRow) =>
      Effect.gen(function*() {
        const hash = yield* SqlStore.toText(row.state_hash, "KeyInvalid")
        const binding = bindingOf(hash, yield* columnsOf(row, yield* keyOf(row)))
        const stored = yield* SqlStore.toText(row.code_verifier, "ValueNotText")
        return { hash, stored, sealed: yield* codec.seal(yield* open(stored, binding), binding) }
      })

    // Entries are written once: one that changed meanwhile was consumed and purged, or put again
    // by a writer, whose verifier is left to it.
    const rewrite = (row: PendingRow): Effect.Effect<SqlStore.Rewrite, SqlError> =>
      Effect.gen(function*() {
        const next = yield* Effect.either(resealed(row))
        if (next._tag === "Left") return "Failed"
        const { hash, sealed, stored } = next.right
        const updated = yield* sql`
          UPDATE ${table} SET code_verifier = ${sealed}
          WHERE state_hash = ${hash} AND code_verifier = ${stored}
          RETURNING state_hash
        `.pipe(SqlStore.retryLostConnection)
        return updated.length > 0 ? "Rewritten" : "Skipped"
      })

    return yield* SqlStore.inBatches({
      batchSize,
      batch: (after) =>
        sql<PendingRow>`
          SELECT ${sql.literal(selectColumns)} FROM ${table}
          WHERE ${pending} AND state_hash > ${after ?? ""}
          ORDER BY state_hash LIMIT ${batchSize}
        `.pipe(SqlStore.retryLostConnection),
      keyOf: (row) => row.state_hash,
      rewrite
    }).pipe(Effect.mapError(fail))
  }).pipe(Effect.withSpan("SqlPendingAuthorizations.reencrypt"))
