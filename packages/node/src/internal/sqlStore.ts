/**
 * What the SQL stores share: their settings, read from `SqlTokenStore.Options` and checked when a
 * store is made, and the `TokenStoreError` every operation reports.
 *
 * @since 0.1.0
 */
import { InvalidConfig, TokenStoreError } from "@digime-effect/core/DigimeError"
import * as TokenKey from "@digime-effect/core/TokenKey"
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Predicate from "effect/Predicate"
import * as Schedule from "effect/Schedule"
import type { Options } from "../SqlTokenStore.js"
import * as AesGcm from "./aesGcm.js"
import { RowError } from "./rowError.js"

/**
 * The dialects the stores are written for.
 *
 * @since 0.1.0
 * @category models
 */
export type Dialect = "pg" | "sqlite"

/**
 * The dialect of `sql`; any other fails with `InvalidConfig`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const dialectOf = (sql: SqlClient.SqlClient): Effect.Effect<Dialect, InvalidConfig> =>
  sql.onDialectOrElse({
    pg: () => Effect.succeed<Dialect>("pg"),
    sqlite: () => Effect.succeed<Dialect>("sqlite"),
    orElse: () => Effect.fail(new InvalidConfig({ field: "SqlClient", reason: "must be PostgreSQL or SQLite" }))
  })

/**
 * `name`, or `fallback` when it is not given; a name that is not a plain SQL identifier fails with
 * `InvalidConfig` for `field`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const tableName = (
  field: "tableName" | "pendingTableName",
  name: string | undefined
): Effect.Effect<string, InvalidConfig> =>
  name === undefined
    ? Effect.succeed(field === "tableName" ? "digime_tokens" : "digime_pending_authorizations")
    : /^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)
    ? Effect.succeed(name)
    : Effect.fail(new InvalidConfig({ field, reason: "must be a plain SQL identifier (letters, digits, _)" }))

/**
 * The options, checked and with their defaults.
 *
 * @since 0.1.0
 * @category models
 */
export interface Settings {
  readonly dialect: Dialect
  readonly tableName: string
  readonly pendingTableName: string
  readonly codec: AesGcm.Codec
}

/**
 * Checks every option, whichever store is made, so that one set of options serves both stores.
 *
 * @since 0.1.0
 * @category constructors
 */
export const settings = (sql: SqlClient.SqlClient, options: Options): Effect.Effect<Settings, InvalidConfig> =>
  Effect.gen(function*() {
    const dialect = yield* dialectOf(sql)
    const tokens = yield* tableName("tableName", options.tableName)
    const pending = yield* tableName("pendingTableName", options.pendingTableName)
    const codec = yield* AesGcm.make(options.encryptionKey)
    return { dialect, tableName: tokens, pendingTableName: pending, codec }
  })

/**
 * A stored integer (a version, an expiry), as the driver returns it: a number, a bigint or text.
 *
 * @since 0.1.0
 * @category constructors
 */
export const toInteger = (value: unknown): Effect.Effect<number, RowError> => {
  const integer = typeof value === "number" ? value : typeof value === "bigint" || typeof value === "string"
    ? Number(value)
    : Number.NaN
  return Number.isSafeInteger(integer)
    ? Effect.succeed(integer)
    : Effect.fail(new RowError({ reason: "VersionNotInteger" }))
}

/**
 * The driver's error code (PostgreSQL's SQLSTATE, SQLite's `SQLITE_*`), if any.
 *
 * @since 0.1.0
 * @category errors
 */
export const errorCode = (error: SqlError): string | undefined => {
  const cause: unknown = error.cause
  return Predicate.hasProperty(cause, "code") && typeof cause.code === "string" ? cause.code : undefined
}

// The driver's error may quote parameters (token ciphertexts, ids); only its code and the
// generic message of @effect/sql are kept.
const describeSqlError = (error: SqlError): string => {
  const code = errorCode(error)
  return code === undefined ? `database error: ${error.message}` : `database error ${code}: ${error.message}`
}

// The connection died under the statement (PostgreSQL's classes 08 and 57P0x: terminated by an
// administrator or a timeout, server shutting down; a reset socket): a new connection may succeed.
const connectionLost = (error: SqlError): boolean => {
  const code = errorCode(error)
  return code !== undefined &&
    (code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03" || code === "ECONNRESET" ||
      code === "EPIPE")
}

/**
 * Runs a statement again when its connection died under it: up to 5 times over about 0.6 s, so
 * that the pool, which learns of its dead connections asynchronously, hands out a live one. Every
 * statement of the stores is safe to repeat: a repeated write finds its version moved, or its
 * lease taken, and says so.
 *
 * @since 0.1.0
 * @category constructors
 */
export const retryLostConnection = <A, E, R>(statement: Effect.Effect<A, E | SqlError, R>) =>
  Effect.retry(statement, {
    schedule: Schedule.exponential("20 millis").pipe(Schedule.intersect(Schedule.recurs(5))),
    while: (error) => Predicate.isTagged(error, "SqlError") && connectionLost(error as SqlError)
  })

/**
 * What an operation may fail with before it becomes a `TokenStoreError`.
 *
 * @since 0.1.0
 * @category errors
 */
export type Failure = RowError | SqlError

/**
 * The `TokenStoreError` of `SqlTokenStore.<operation>`. Its description is the message of one of
 * our errors, or the code and generic message of a database error: never a value of the row.
 *
 * @since 0.1.0
 * @category errors
 */
export const storeError =
  (operation: string, key: TokenKey.TokenKey | undefined) => (failure: Failure): TokenStoreError =>
    new TokenStoreError({
      operation: `SqlTokenStore.${operation}`,
      ...(key === undefined ? {} : { key }),
      description: failure._tag === "SqlError" ? describeSqlError(failure) : failure.message
    })

/**
 * The span attributes of an operation on `key`: its contract id and `TokenKey.hash`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const spanOf = (key: TokenKey.TokenKey): {
  readonly attributes: Readonly<Record<string, string>>
} => ({
  attributes: { "digime.contract_id": key.contractId, "digime.key": TokenKey.hash(key) }
})
