/**
 * A `TokenStore` and a `PendingAuthorizations` store in a SQL database, shared by every process
 * that connects to it. Requires an `SqlClient` from @effect/sql: PostgreSQL (`@effect/sql-pg`) or
 * SQLite (`@effect/sql-sqlite-node`, the embedded default); other dialects are refused when the
 * layer is built.
 *
 * **Tables.** `make` and `makePending` create their table if it does not exist (see `migrate`),
 * so there is nothing to run beforehand; two processes may start together. Each token row holds
 * the key (`TokenKey.toId`, plus the user and contract ids), a version, the token as JSON text
 * (or its ciphertext) and the time of the last write. Deleting a token keeps the row as a
 * tombstone (`token` is `NULL`) so that its version keeps growing: a key that is deleted and set
 * again never reuses a version.
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
 * import { SqlTokenStore } from "@digime-effect/node"
 * import { SqliteClient } from "@effect/sql-sqlite-node"
 * import { Layer } from "effect"
 *
 * const StoreLive = Layer.merge(SqlTokenStore.layer(), SqlTokenStore.layerPending()).pipe(
 *   Layer.provide(SqliteClient.layer({ filename: "digime-tokens.db" }))
 * )
 *
 * @since 0.1.0
 */
import { InvalidConfig, TokenStoreError } from "@digime-effect/core/DigimeError"
import * as PendingAuthorizations from "@digime-effect/core/PendingAuthorizations"
import * as TokenKey from "@digime-effect/core/TokenKey"
import * as TokenStore from "@digime-effect/core/TokenStore"
import * as UserAccessToken from "@digime-effect/core/UserAccessToken"
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Encoding from "effect/Encoding"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"

/**
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

// -------------------------------------------------------------------------------------------
// migration
// -------------------------------------------------------------------------------------------

type Dialect = "pg" | "sqlite"

const dialectOf = (sql: SqlClient.SqlClient): Effect.Effect<Dialect, InvalidConfig> =>
  sql.onDialectOrElse({
    pg: () => Effect.succeed<Dialect>("pg"),
    sqlite: () => Effect.succeed<Dialect>("sqlite"),
    orElse: () => Effect.fail(new InvalidConfig({ field: "SqlClient", reason: "must be PostgreSQL or SQLite" }))
  })

const tokensTable = (sql: SqlClient.SqlClient, tableName: string) =>
  sql.onDialectOrElse({
    pg: () =>
      sql`CREATE TABLE IF NOT EXISTS ${sql(tableName)} (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        contract_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        token TEXT NULL,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP
      )`,
    orElse: () =>
      sql`CREATE TABLE IF NOT EXISTS ${sql(tableName)} (
        id TEXT PRIMARY KEY NOT NULL,
        user_id TEXT NOT NULL,
        contract_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        token TEXT NULL,
        updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
      )`
  })

const pendingTable = (sql: SqlClient.SqlClient, tableName: string) =>
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

// Concurrent `CREATE TABLE IF NOT EXISTS` can fail on PostgreSQL (both sessions pass the check),
// so the creation runs under an advisory lock there; SQLite's write lock serializes it already.
const migrateWith = (
  sql: SqlClient.SqlClient,
  create: Effect.Effect<unknown, SqlError>
): Effect.Effect<void, SqlError> =>
  sql.withTransaction(
    Effect.zipRight(
      sql.onDialectOrElse({
        pg: () => sql`SELECT pg_advisory_xact_lock(hashtext('@digime-effect/node/SqlTokenStore/migrate'))`,
        orElse: () => Effect.void
      }),
      create
    )
  ).pipe(Effect.asVoid)

/**
 * Creates the tables of the token store and of the pending authorizations if they do not exist.
 * `make` and `makePending` run it themselves; it is exported for deployments that create tables
 * ahead of time. Idempotent, and safe when several processes run it at once.
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
    yield* dialectOf(sql)
    const tableName = yield* validTableName("tableName", options.tableName, defaultTableName)
    const pendingTableName = yield* validTableName(
      "pendingTableName",
      options.pendingTableName,
      defaultPendingTableName
    )
    yield* migrateWith(sql, Effect.zipRight(tokensTable(sql, tableName), pendingTable(sql, pendingTableName)))
  })

const defaultTableName = "digime_tokens"
const defaultPendingTableName = "digime_pending_authorizations"
const defaultLockTimeout = Duration.minutes(1)

const validTableName = (
  field: string,
  name: string | undefined,
  fallback: string
): Effect.Effect<string, InvalidConfig> =>
  name === undefined
    ? Effect.succeed(fallback)
    : /^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)
    ? Effect.succeed(name)
    : Effect.fail(new InvalidConfig({ field, reason: "must be a plain SQL identifier (letters, digits, _)" }))

// -------------------------------------------------------------------------------------------
// encryption
// -------------------------------------------------------------------------------------------

// A failure to read or write one row, turned into `TokenStoreError` by the operation.
type RowFailure = string

interface Codec {
  readonly seal: (plaintext: string, boundTo: string) => Effect.Effect<string, RowFailure>
  readonly open: (stored: string, boundTo: string) => Effect.Effect<string, RowFailure>
}

const sealedPrefix = "aesgcm1"
const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder("utf-8", { fatal: true })

const clearCodec: Codec = {
  seal: (plaintext) => Effect.succeed(plaintext),
  open: (stored) =>
    stored.startsWith(`${sealedPrefix}.`)
      ? Effect.fail("the stored value is encrypted and no encryptionKey is configured")
      : Effect.succeed(stored)
}

const keyBytes = (key: Uint8Array | string): Option.Option<Uint8Array<ArrayBuffer>> => {
  if (typeof key !== "string") return key.length === 32 ? Option.some(new Uint8Array(key)) : Option.none()
  const trimmed = key.trim()
  const decoded = Either.orElse(Encoding.decodeBase64(trimmed), () => Encoding.decodeBase64Url(trimmed))
  return Either.isRight(decoded) && decoded.right.length === 32
    ? Option.some(new Uint8Array(decoded.right))
    : Option.none()
}

const makeCodec = (encryptionKey: Options["encryptionKey"]): Effect.Effect<Codec, InvalidConfig> => {
  if (encryptionKey === undefined) return Effect.succeed(clearCodec)
  const invalid = new InvalidConfig({
    field: "encryptionKey",
    reason: "must be 32 bytes: a Uint8Array or its base64 encoding"
  })
  return Effect.gen(function*() {
    const bytes = yield* Option.match(keyBytes(Redacted.value(encryptionKey)), {
      onNone: () => Effect.fail(invalid),
      onSome: Effect.succeed
    })
    const key = yield* Effect.tryPromise({
      try: () => globalThis.crypto.subtle.importKey("raw", bytes, "AES-GCM", false, ["encrypt", "decrypt"]),
      catch: () => invalid
    })
    // A fingerprint that tells keys apart without revealing anything about them.
    const fingerprint = yield* Effect.tryPromise({
      try: () =>
        globalThis.crypto.subtle.digest(
          "SHA-256",
          new Uint8Array([...textEncoder.encode("@digime-effect/node/SqlTokenStore key id\0"), ...bytes])
        ),
      catch: () => invalid
    })
    const keyId = Encoding.encodeBase64Url(new Uint8Array(fingerprint).subarray(0, 6))
    const aad = (boundTo: string) => textEncoder.encode(`${sealedPrefix}\0${keyId}\0${boundTo}`)
    return {
      seal: (plaintext, boundTo) =>
        Effect.tryPromise({
          try: async () => {
            const iv = globalThis.crypto.getRandomValues(new Uint8Array(12))
            const ciphertext = await globalThis.crypto.subtle.encrypt(
              { name: "AES-GCM", iv, additionalData: aad(boundTo) },
              key,
              textEncoder.encode(plaintext)
            )
            const sealed = Encoding.encodeBase64Url(new Uint8Array(ciphertext))
            return [sealedPrefix, keyId, Encoding.encodeBase64Url(iv), sealed].join(".")
          },
          catch: () => "encryption failed"
        }),
      open: (stored, boundTo) => {
        const parts = stored.split(".")
        if (parts[0] !== sealedPrefix) return Effect.fail("the stored value is not encrypted")
        if (parts.length !== 4) return Effect.fail("the stored ciphertext is malformed")
        if (parts[1] !== keyId) return Effect.fail("the stored value was encrypted with another encryption key")
        const iv = Encoding.decodeBase64Url(parts[2]!)
        const ciphertext = Encoding.decodeBase64Url(parts[3]!)
        if (Either.isLeft(iv) || Either.isLeft(ciphertext) || iv.right.length !== 12) {
          return Effect.fail("the stored ciphertext is malformed")
        }
        return Effect.tryPromise({
          try: async () =>
            textDecoder.decode(
              await globalThis.crypto.subtle.decrypt(
                { name: "AES-GCM", iv: new Uint8Array(iv.right), additionalData: aad(boundTo) },
                key,
                new Uint8Array(ciphertext.right)
              )
            ),
          catch: () => "the stored ciphertext does not authenticate (tampered with, or moved from another row)"
        })
      }
    } satisfies Codec
  })
}

// -------------------------------------------------------------------------------------------
// errors
// -------------------------------------------------------------------------------------------

const errorCode = (error: SqlError): string | undefined => {
  const cause: unknown = error.cause
  return Predicate.hasProperty(cause, "code") && typeof cause.code === "string" ? cause.code : undefined
}

// The driver's error may quote parameters (token ciphertexts, ids); only its code and the
// generic message of @effect/sql are kept.
const describeSqlError = (error: SqlError): string => {
  const code = errorCode(error)
  return code === undefined ? `database error: ${error.message}` : `database error ${code}: ${error.message}`
}

const storeError = (operation: string, key: TokenKey.TokenKey | undefined) => (cause: SqlError | RowFailure) =>
  new TokenStoreError({
    operation: `SqlTokenStore.${operation}`,
    ...(key === undefined ? {} : { key }),
    description: typeof cause === "string" ? cause : describeSqlError(cause)
  })

const toVersion = (value: unknown): Effect.Effect<number, RowFailure> => {
  const version = typeof value === "number" ? value : typeof value === "bigint" || typeof value === "string"
    ? Number(value)
    : Number.NaN
  return Number.isSafeInteger(version) ? Effect.succeed(version) : Effect.fail("the stored version is not an integer")
}

// -------------------------------------------------------------------------------------------
// locking
// -------------------------------------------------------------------------------------------

interface Lock {
  // Takes the lock on a transaction already open on the current connection.
  readonly within: (id: string) => Effect.Effect<void, SqlError | RowFailure>
  // Opens a transaction on the current connection (a reserved one) and takes the lock in it.
  readonly begin: (id: string) => Effect.Effect<void, SqlError | RowFailure | Busy>
  // How a `Busy` failure of `begin` is retried (the connection is released in between).
  readonly retry: Schedule.Schedule<unknown, unknown>
}

// Another process holds SQLite's write lock: retried, as the driver's own wait would block.
class Busy {
  readonly _tag = "Busy"
}

// The lock could not be taken: reported as such, never confused with the failures of the effect.
class NotLocked {
  readonly _tag = "NotLocked"
  constructor(readonly failure: SqlError | RowFailure) {}
}

const onConnection = <A, E, R>(conn: Connection, effect: Effect.Effect<A, E, R>) =>
  Effect.provideService(effect, SqlClient.TransactionConnection, [conn, 0] as const)

const waited = (lockTimeout: Duration.Duration): RowFailure =>
  `the lock was not acquired within ${Duration.format(lockTimeout)}`

const isBusy = (error: SqlError): boolean => errorCode(error)?.startsWith("SQLITE_BUSY") === true

const makePgLock = (sql: SqlClient.SqlClient, namespace: string, lockTimeout: Duration.Duration): Lock => {
  const millis = Duration.toMillis(lockTimeout)
  const setting = Number.isFinite(millis) ? `${Math.max(1, Math.ceil(millis))}ms` : "0"
  const within = (id: string) =>
    Effect.zipRight(
      sql`SELECT set_config('lock_timeout', ${setting}, true)`,
      sql`SELECT pg_advisory_xact_lock(hashtext(${namespace}), hashtext(${id}))`
    ).pipe(
      Effect.catchIf((error) => errorCode(error) === "55P03", () => Effect.fail(waited(lockTimeout))),
      Effect.asVoid
    )
  return {
    within,
    begin: (id) => Effect.zipRight(sql`BEGIN`, within(id)),
    retry: Schedule.stop
  }
}

const makeSqliteLock = (sql: SqlClient.SqlClient, tableName: string, lockTimeout: Duration.Duration): Lock => ({
  // A write statement takes the write lock, waiting as the driver's busy timeout says.
  within: (_id) =>
    sql`UPDATE ${sql(tableName)} SET version = version WHERE 0 = 1`.pipe(
      Effect.catchIf(isBusy, () => Effect.fail(waited(lockTimeout))),
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
        return yield* busy ? Effect.fail(new Busy()) : begun
      }
    })),
  retry: Schedule.exponential("5 millis", 2).pipe(
    Schedule.union(Schedule.spaced("100 millis")),
    Schedule.upTo(lockTimeout)
  )
})

const makeWithLock = (sql: SqlClient.SqlClient, lock: Lock, lockTimeout: Duration.Duration) =>
<A, E, R>(
  key: TokenKey.TokenKey,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | TokenStoreError, R> => {
  const id = TokenKey.toId(key)
  const fail = storeError("withLock", key)
  // Commits even when `effect` failed or was interrupted: what it wrote through the store is
  // kept. A transaction that failed to begin or to take the lock is rolled back. Answers whether
  // a commit that mattered failed.
  const finish = (conn: Connection, exit: Exit.Exit<unknown, unknown>): Effect.Effect<boolean> => {
    const began = Exit.isSuccess(exit) || !(exit.cause._tag === "Fail" && (
      exit.cause.error instanceof Busy || exit.cause.error instanceof NotLocked
    ))
    const rollback = Effect.ignore(conn.executeUnprepared("ROLLBACK", [], undefined))
    if (!began) return Effect.as(rollback, false)
    return conn.executeUnprepared("COMMIT", [], undefined).pipe(
      Effect.as(false),
      Effect.catchAll(() => Effect.as(rollback, Exit.isSuccess(exit)))
    )
  }
  const once = Effect.suspend(() => {
    let lost = false
    return Effect.acquireUseRelease(
      Effect.flatMap(Scope.make(), (scope) =>
        Scope.extend(sql.reserve, scope).pipe(
          Effect.map((conn) => [scope, conn] as const),
          Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause))),
          Effect.mapError(fail)
        )),
      ([, conn]) =>
        onConnection(
          conn,
          Effect.zipRight(
            Effect.mapError(lock.begin(id), (error) => error instanceof Busy ? error : new NotLocked(error)),
            effect
          )
        ),
      ([scope, conn], exit) =>
        finish(conn, exit).pipe(
          Effect.tap((failed) => Effect.sync(() => lost = failed)),
          Effect.ensuring(Scope.close(scope, exit))
        )
    ).pipe(
      Effect.filterOrFail(() => !lost, () => fail("the transaction holding the lock could not be committed"))
    )
  })
  const locked: Effect.Effect<A, E | TokenStoreError, R> = once.pipe(
    Effect.retry({ while: (error) => error instanceof Busy, schedule: lock.retry }),
    Effect.mapError((error) =>
      error instanceof Busy
        ? fail(waited(lockTimeout))
        : error instanceof NotLocked
        ? fail(error.failure)
        : error
    )
  )
  return Effect.flatMap(
    Effect.serviceOption(SqlClient.TransactionConnection),
    Option.match({
      // Already in a transaction (a nested lock, or the caller's own): lock on it, until it ends.
      onSome: () => Effect.zipRight(Effect.mapError(lock.within(id), fail), effect),
      onNone: () => locked
    })
  )
}

// -------------------------------------------------------------------------------------------
// token store
// -------------------------------------------------------------------------------------------

interface Settings {
  readonly dialect: Dialect
  readonly tableName: string
  readonly pendingTableName: string
  readonly codec: Codec
  readonly lockTimeout: Duration.Duration
}

const settings = (sql: SqlClient.SqlClient, options: Options): Effect.Effect<Settings, InvalidConfig> =>
  Effect.gen(function*() {
    const dialect = yield* dialectOf(sql)
    const tableName = yield* validTableName("tableName", options.tableName, defaultTableName)
    const pendingTableName = yield* validTableName(
      "pendingTableName",
      options.pendingTableName,
      defaultPendingTableName
    )
    const lockTimeout = options.lockTimeout === undefined ? defaultLockTimeout : Duration.decode(options.lockTimeout)
    if (Duration.lessThanOrEqualTo(lockTimeout, Duration.zero)) {
      return yield* new InvalidConfig({ field: "lockTimeout", reason: "must be positive" })
    }
    const codec = yield* makeCodec(options.encryptionKey)
    return { dialect, tableName, pendingTableName, codec, lockTimeout }
  })

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
    const { codec, dialect, lockTimeout, tableName } = yield* settings(sql, options)
    yield* migrateWith(sql, tokensTable(sql, tableName))
    const table = sql(tableName)

    const seal = (id: string, token: UserAccessToken.UserAccessToken) =>
      encodeToken(token).pipe(
        Effect.mapError((): RowFailure => "the token could not be encoded"),
        Effect.flatMap((json) => codec.seal(json, id))
      )
    const open = (id: string, stored: string) =>
      codec.open(stored, id).pipe(
        Effect.flatMap((json) =>
          Effect.mapError(decodeToken(json), (): RowFailure => "the stored token does not decode")
        )
      )
    const written = (rows: ReadonlyArray<{ readonly version: unknown }>, token: UserAccessToken.UserAccessToken) =>
      rows.length === 0
        ? Effect.succeed(Option.none<TokenStore.Versioned>())
        : Effect.map(toVersion(rows[0]!.version), (version) => Option.some<TokenStore.Versioned>({ token, version }))

    const get = (key: TokenKey.TokenKey) => {
      const id = TokenKey.toId(key)
      return sql<{ readonly version: unknown; readonly token: string }>`
        SELECT version, token FROM ${table} WHERE id = ${id} AND token IS NOT NULL
      `.pipe(
        Effect.flatMap((rows) =>
          rows.length === 0
            ? Effect.succeed(Option.none<TokenStore.Versioned>())
            : Effect.zipWith(
              toVersion(rows[0]!.version),
              open(id, rows[0]!.token),
              (version, token) => Option.some<TokenStore.Versioned>({ token, version })
            )
        ),
        Effect.mapError(storeError("get", key)),
        Effect.withSpan("SqlTokenStore.get", spanOf(key))
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
          onNone: () => Effect.fail<RowFailure>("the write returned no version"),
          onSome: Effect.succeed
        })),
        Effect.mapError(storeError("set", key)),
        Effect.withSpan("SqlTokenStore.set", spanOf(key))
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
        Effect.mapError(storeError("compareAndSet", key)),
        Effect.withSpan("SqlTokenStore.compareAndSet", spanOf(key))
      )
    }

    // The row stays as a tombstone so that the key's next version is still greater.
    const remove = (key: TokenKey.TokenKey) =>
      sql`
        UPDATE ${table} SET version = version + 1, token = NULL, updated_at = CURRENT_TIMESTAMP
        WHERE id = ${TokenKey.toId(key)} AND token IS NOT NULL
      `.pipe(
        Effect.asVoid,
        Effect.mapError(storeError("delete", key)),
        Effect.withSpan("SqlTokenStore.delete", spanOf(key))
      )

    const lock = dialect === "pg"
      ? makePgLock(sql, `@digime-effect/node/SqlTokenStore/${tableName}`, lockTimeout)
      : makeSqliteLock(sql, tableName, lockTimeout)

    return { get, set, compareAndSet, delete: remove, withLock: makeWithLock(sql, lock, lockTimeout) }
  })

const spanOf = (key: TokenKey.TokenKey) => ({
  attributes: { "digime.contract_id": key.contractId, "digime.key": TokenKey.hash(key) }
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

// -------------------------------------------------------------------------------------------
// pending authorizations
// -------------------------------------------------------------------------------------------

const purgeAfterMillis = 60 * 60 * 1000

// The state is a bearer secret of the callback: rows are found by its hash.
const stateHash = (state: string): Effect.Effect<string, RowFailure> =>
  Effect.tryPromise({
    try: async () =>
      Encoding.encodeBase64Url(
        new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", textEncoder.encode(state)))
      ),
    catch: () => "the state could not be hashed"
  })

interface PendingRow {
  readonly user_id: string
  readonly contract_id: string
  readonly kind: string
  readonly code_verifier: string
  readonly callback_url: string
  readonly expires_at: unknown
}

/**
 * Authorizations in progress on the `SqlClient`'s database, so that the callback may reach
 * another process than the one that started the authorization. Creates its table if needed.
 * The state is stored hashed; the PKCE verifier is encrypted when `encryptionKey` is set.
 * Entries are purged an hour after they expire.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makePending = (
  options: Options = {}
): Effect.Effect<PendingAuthorizations.Service, SqlError | InvalidConfig, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const { codec, pendingTableName } = yield* settings(sql, options)
    yield* migrateWith(sql, pendingTable(sql, pendingTableName))
    const table = sql(pendingTableName)
    const boundTo = (hash: string) => `pending/${hash}`

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
        Effect.mapError(storeError("put", pending.key)),
        Effect.withSpan("SqlTokenStore.put", spanOf(pending.key))
      )

    const decodePending = (hash: string, row: PendingRow) =>
      Effect.gen(function*() {
        const key = yield* Effect.mapError(
          TokenKey.decode(row.user_id, row.contract_id),
          (): RowFailure => "the stored key is invalid"
        )
        const fail = storeError("consume", key)
        const kind = row.kind
        if (kind !== "authorize" && kind !== "reauthorize") return yield* fail("the stored kind is invalid")
        const verifier = yield* Effect.mapError(codec.open(row.code_verifier, boundTo(hash)), fail)
        const expiresAt = yield* Effect.mapError(toVersion(row.expires_at), () => fail("the stored expiry is invalid"))
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
        Effect.mapError((error) => error instanceof TokenStoreError ? error : storeError("consume", undefined)(error)),
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
export const layerPending = (
  options: Options = {}
): Layer.Layer<PendingAuthorizations.PendingAuthorizations, SqlError | InvalidConfig, SqlClient.SqlClient> =>
  Layer.effect(PendingAuthorizations.PendingAuthorizations, makePending(options))
