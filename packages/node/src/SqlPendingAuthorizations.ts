/**
 * `PendingAuthorizations` in a SQL database, so that digi.me's callback may reach another process
 * than the one that started the authorization. Requires an `SqlClient` (PostgreSQL or SQLite) and
 * takes the same `SqlTokenStore.Options` as the token store, so one value configures both layers.
 *
 * `make` creates its table if it does not exist (see `SqlTokenStore.migrate`). The state is a
 * bearer secret of the callback: rows are found by its SHA-256 hash, never by the state itself. The
 * PKCE verifier is sealed with AES-256-GCM when `encryptionKey` is set, bound to its row. An entry
 * is marked used when consumed, so that of two callbacks with the same state one finds it, and
 * entries are purged an hour after they expire.
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
import type { InvalidConfig } from "@digime-effect/core/DigimeError"
import * as PendingAuthorizations from "@digime-effect/core/PendingAuthorizations"
import * as TokenKey from "@digime-effect/core/TokenKey"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Encoding from "effect/Encoding"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Migration from "./internal/migration.js"
import { RowError } from "./internal/rowError.js"
import * as SqlStore from "./internal/sqlStore.js"
import type { Options } from "./SqlTokenStore.js"

const purgeAfterMillis = 60 * 60 * 1000
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

// The verifier is sealed for its row: a ciphertext moved to another state does not open.
const boundTo = (hash: string): string => `pending/${hash}`

interface PendingRow {
  readonly user_id: string
  readonly contract_id: string
  readonly kind: string
  readonly code_verifier: string
  readonly callback_url: string
  readonly expires_at: unknown
}

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
    const { codec, pendingTableName } = yield* SqlStore.settings(sql, options)
    yield* Migration.run(sql, Migration.pendingTable(sql, pendingTableName))
    const table = sql(pendingTableName)

    const put = (state: string, pending: PendingAuthorizations.Pending) =>
      Effect.gen(function*() {
        const hash = yield* stateHash(state)
        const verifier = yield* codec.seal(Redacted.value(pending.codeVerifier), boundTo(hash))
        yield* sql`
          INSERT INTO ${table} (state_hash, user_id, contract_id, kind, code_verifier, callback_url, expires_at, used)
          VALUES (${hash}, ${pending.key.userId}, ${pending.key.contractId}, ${pending.kind}, ${verifier},
            ${pending.callbackUrl}, ${DateTime.toEpochMillis(pending.expiresAt)}, 0)
          ON CONFLICT (state_hash) DO UPDATE SET
            user_id = excluded.user_id, contract_id = excluded.contract_id, kind = excluded.kind,
            code_verifier = excluded.code_verifier, callback_url = excluded.callback_url,
            expires_at = excluded.expires_at, used = 0
        `
      }).pipe(
        Effect.mapError(SqlStore.storeError("put", pending.key)),
        Effect.withSpan("SqlTokenStore.put", SqlStore.spanOf(pending.key))
      )

    // Fails for the row's key once it is known.
    const decodePending = (hash: string, row: PendingRow) =>
      Effect.gen(function*() {
        const key = yield* Effect.mapError(
          TokenKey.decode(row.user_id, row.contract_id),
          () => SqlStore.storeError("consume", undefined)(new RowError({ reason: "KeyInvalid" }))
        )
        const fail = SqlStore.storeError("consume", key)
        const kind = row.kind
        if (kind !== "authorize" && kind !== "reauthorize") {
          return yield* fail(new RowError({ reason: "KindInvalid" }))
        }
        const verifier = yield* Effect.mapError(codec.open(row.code_verifier, boundTo(hash)), fail)
        const expiresAt = yield* Effect.mapError(
          SqlStore.toInteger(row.expires_at),
          () => fail(new RowError({ reason: "ExpiryInvalid" }))
        )
        const pending: PendingAuthorizations.Pending = {
          key,
          kind,
          codeVerifier: Redacted.make(verifier),
          callbackUrl: row.callback_url,
          expiresAt: DateTime.unsafeMake(expiresAt)
        }
        return pending
      })

    const consume = (state: string, now: DateTime.Utc) =>
      Effect.gen(function*() {
        const nowMillis = DateTime.toEpochMillis(now)
        const hash = yield* stateHash(state)
        yield* sql`DELETE FROM ${table} WHERE expires_at < ${nowMillis - purgeAfterMillis}`
        const found = yield* sql<PendingRow>`
          UPDATE ${table} SET used = 1
          WHERE state_hash = ${hash} AND used = 0 AND expires_at > ${nowMillis}
          RETURNING user_id, contract_id, kind, code_verifier, callback_url, expires_at
        `
        if (found.length > 0) {
          const pending = yield* decodePending(hash, found[0]!)
          return { _tag: "Found", pending } satisfies PendingAuthorizations.Consumed
        }
        const rows = yield* sql<{ readonly used: unknown }>`SELECT used FROM ${table} WHERE state_hash = ${hash}`
        const consumed: PendingAuthorizations.Consumed = rows.length === 0
          ? { _tag: "Unknown" }
          : Number(rows[0]!.used) !== 0
          ? { _tag: "AlreadyUsed" }
          : { _tag: "Expired" }
        return consumed
      }).pipe(
        Effect.mapError((error) =>
          error._tag === "TokenStoreError" ? error : SqlStore.storeError("consume", undefined)(error)
        ),
        Effect.withSpan("SqlTokenStore.consume")
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
