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
import type * as Tracer from "effect/Tracer"
import type { Options, Reencrypted } from "../SqlTokenStore.js"
import * as AesGcm from "./aesGcm.js"
import { type Reason, RowError } from "./rowError.js"

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
    const codec = yield* AesGcm.make(options)
    return { dialect, tableName: tokens, pendingTableName: pending, codec }
  })

/**
 * A stored integer as the driver returns it (a number, a bigint or decimal text), if it is one
 * from `min` to `max`; anything else (a fraction, text, a blob, a value beyond 2^53) fails with
 * `reason`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const toInteger = (
  value: unknown,
  reason: Reason,
  min: number = Number.MIN_SAFE_INTEGER,
  max: number = Number.MAX_SAFE_INTEGER
): Effect.Effect<number, RowError> => {
  const integer = integerOf(value, min, max)
  return integer === undefined ? Effect.fail(new RowError({ reason })) : Effect.succeed(integer)
}

/**
 * `toInteger` without an effect: the integer, or `undefined`.
 *
 * @since 0.4.0
 * @category constructors
 */
export const integerOf = (
  value: unknown,
  min: number = Number.MIN_SAFE_INTEGER,
  max: number = Number.MAX_SAFE_INTEGER
): number | undefined => {
  const integer = typeof value === "number"
    ? value
    : typeof value === "bigint" || (typeof value === "string" && /^-?[0-9]{1,16}$/.test(value))
    ? Number(value)
    : Number.NaN
  return Number.isSafeInteger(integer) && integer >= min && integer <= max ? integer : undefined
}

/**
 * A stored version: from 1 (the first write) to 2^53 - 2, so that the next one is still exact.
 *
 * @since 0.1.0
 * @category constructors
 */
export const toVersion = (value: unknown): Effect.Effect<number, RowError> =>
  toInteger(value, "VersionNotInteger", 1, Number.MAX_SAFE_INTEGER - 1)

/**
 * A stored text column; anything else (a blob, which SQLite keeps as it was written) fails with
 * `reason`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const toText = (value: unknown, reason: Reason): Effect.Effect<string, RowError> =>
  typeof value === "string" ? Effect.succeed(value) : Effect.fail(new RowError({ reason }))

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
// node-postgres reports a connection that ended under a query without a code, by its message.
const connectionLost = (error: SqlError): boolean => {
  const code = errorCode(error)
  if (code === undefined) {
    const cause: unknown = error.cause
    return Predicate.hasProperty(cause, "message") && typeof cause.message === "string" &&
      /^Connection terminated/.test(cause.message)
  }
  return code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03" || code === "ECONNRESET" ||
    code === "EPIPE"
}

const lostConnectionRetry = Schedule.exponential("20 millis").pipe(Schedule.intersect(Schedule.recurs(5)))

const isLostConnection = (error: unknown): boolean =>
  Predicate.isTagged(error, "SqlError") && connectionLost(error as SqlError)

/**
 * Runs a statement again when its connection died under it: up to 5 times over about 0.6 s, so
 * that the pool, which learns of its dead connections asynchronously, hands out a live one. Every
 * statement of the stores is safe to repeat: a repeated write finds its version moved, or its
 * lease taken, and says so. The schedule is set up only after a first lost connection: setting one
 * up costs every statement otherwise (tens of microseconds), and the first attempt counts as the
 * schedule's first, as with `Effect.retry`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const retryLostConnection = <A, E, R>(
  statement: Effect.Effect<A, E | SqlError, R>
): Effect.Effect<A, E | SqlError, R> =>
  Effect.catchAll(statement, (first) => {
    if (!isLostConnection(first)) return Effect.fail(first)
    let replayed = false
    return Effect.retry(
      Effect.suspend(() => {
        if (replayed) return statement
        replayed = true
        return Effect.fail(first)
      }),
      { schedule: lostConnectionRetry, while: isLostConnection }
    )
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

// What `Effect.tracer` gives a program that installed none: its spans go nowhere.
const defaultTracer: Tracer.Tracer = Effect.runSync(Effect.tracer)

/**
 * Runs `self` in a span named `name` whose attributes name the key by its contract id and its
 * keyed tag (`TokenKey.tag`), never by the user id. With Effect's default tracer (no tracer
 * installed) no span is made: nothing would receive it, and it costs every store call.
 *
 * @since 0.2.0
 * @category combinators
 */
export const withKeySpan =
  (name: string, key: TokenKey.TokenKey) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.tracerWith((tracer) =>
      tracer === defaultTracer ? self : Effect.flatMap(
        TokenKey.tag(key),
        (tag) =>
          Effect.withSpan(self, name, { attributes: { "digime.contract_id": key.contractId, "digime.key": tag } })
      )
    )

/**
 * The condition that `column` is not in the current form of `codec` (sealed with this format and
 * the current key). `substr` rather than `LIKE`, where `_` of a key id would be a wildcard.
 *
 * @since 0.1.0
 * @category constructors
 */
export const notCurrent = (sql: SqlClient.SqlClient, column: string, current: string) =>
  sql`substr(${sql(column)}, 1, ${sql.literal(String(current.length))}) <> ${current}`

/**
 * What became of one row that a re-encryption looked at.
 *
 * @since 0.1.0
 * @category models
 */
export type Rewrite = "Rewritten" | "Skipped" | "Failed" | "Current"

/**
 * Goes through a table in batches of `batchSize` rows ordered by their primary key (`batch`
 * answers the rows after a key, or from the start), one row at a time, and counts what became of
 * them. Only one batch is in memory at a time.
 *
 * @since 0.1.0
 * @category constructors
 */
export const inBatches = <Row, E>(options: {
  readonly batchSize: number
  readonly batch: (after: unknown) => Effect.Effect<ReadonlyArray<Row>, E>
  readonly keyOf: (row: Row) => unknown
  readonly rewrite: (row: Row) => Effect.Effect<Rewrite, E>
}): Effect.Effect<Reencrypted, E> =>
  Effect.gen(function*() {
    const counts = { rewritten: 0, skipped: 0, failed: 0 }
    let after: unknown = undefined
    while (true) {
      const rows: ReadonlyArray<Row> = yield* options.batch(after)
      for (const row of rows) {
        const outcome = yield* options.rewrite(row)
        if (outcome === "Rewritten") counts.rewritten++
        else if (outcome === "Skipped") counts.skipped++
        else if (outcome === "Failed") counts.failed++
      }
      if (rows.length < options.batchSize) return counts
      after = options.keyOf(rows[rows.length - 1]!)
    }
  })

/**
 * The batch size of a re-encryption: `batchSize`, 100 by default, from 1 to 10 000.
 *
 * @since 0.1.0
 * @category constructors
 */
export const batchSizeOf = (batchSize: number | undefined): Effect.Effect<number, InvalidConfig> =>
  batchSize === undefined
    ? Effect.succeed(100)
    : Number.isSafeInteger(batchSize) && batchSize >= 1 && batchSize <= 10_000
    ? Effect.succeed(batchSize)
    : Effect.fail(new InvalidConfig({ field: "batchSize", reason: "must be an integer from 1 to 10000" }))

/**
 * The codec of a re-encryption: it needs a key to seal with.
 *
 * @since 0.1.0
 * @category constructors
 */
export const currentOf = (codec: AesGcm.Codec): Effect.Effect<string, InvalidConfig> =>
  codec.current === undefined
    ? Effect.fail(new InvalidConfig({ field: "encryption", reason: "is required to re-encrypt" }))
    : Effect.succeed(codec.current)
