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
 * ciphertext), its two expiries and the time of the last write. Deleting a token keeps the row as a
 * tombstone (`token` is `NULL`) so that its version keeps growing: a key that is deleted and set
 * again never reuses a version.
 *
 * **Encryption.** With `encryption` (a key ring) or `encryptionKey` (one key), the token JSON and
 * the PKCE verifiers are sealed with AES-256-GCM (Web Crypto): a random 96-bit IV per write, stored
 * with the ciphertext and the id of the key, and bound as additional authenticated data to the
 * row's key and to the version it is written as (a PKCE verifier: to its state and the columns of
 * its row). A ciphertext copied to another row does not open, nor does an older ciphertext of the
 * same row (a backup's, whose refresh token is spent). A row that does not open (tampered, moved,
 * older than the row, sealed with a key not configured, or no key configured) fails with
 * `TokenStoreError` for that key only, and is left as it was. Keys are rotated by making a new key
 * `current` with the old one in `previous`, then running `reencrypt`, after which the old key may be
 * dropped. The expiries of the access and refresh tokens, their due times and the marks "needs
 * reconnect" are kept in clear beside the ciphertext, so that they can be indexed: timestamps and a
 * reason, never a token value.
 *
 * **Leases.** A refresh is announced in the row before it is sent (`acquireLease`): the holder, the
 * version and the end of the lease, in three columns, written by one conditional `UPDATE`;
 * `acquireLeaseAndGet` returns the row it leased from that same statement, so that a refresh takes
 * its lease and re-reads its token in one round trip. The compare-and-set write of the new token
 * clears them in the same statement. No transaction, lock or pooled connection is held while a
 * refresh runs, so a holder whose session dies changes nothing: its lease stays until it is
 * released, written over, or outlived.
 *
 * **Upkeep.** Every write of a token stores its two expiries (`listDue` reads them through an
 * index of each) and makes them its two due times, which `claimDue` moves to the end of a claim,
 * in one `UPDATE`: on PostgreSQL, with `FOR UPDATE SKIP LOCKED`, so that instances claiming at once
 * neither wait for each other nor take the same key; SQLite has one writer at a time. A mark
 * "needs reconnect" clears the due times until the next token. Rows written before these columns
 * existed are neither listed nor claimed until their next write: run `backfillExpiries` once after
 * upgrading. On PostgreSQL the first start after an upgrade adds the columns and builds their
 * indexes in one transaction that holds the table's lock (about 8 s for 400,000 rows, measured):
 * on a large table, upgrade at a quiet time, or create the indexes beforehand (`migrate` lists
 * them) with `CREATE INDEX CONCURRENTLY`.
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
import { type InvalidConfig, TokenStoreError } from "@digime-effect/core/DigimeError"
import * as TokenKey from "@digime-effect/core/TokenKey"
import * as TokenStore from "@digime-effect/core/TokenStore"
import * as UserAccessToken from "@digime-effect/core/UserAccessToken"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as AesGcm from "./internal/aesGcm.js"
import * as Migration from "./internal/migration.js"
import { RowError } from "./internal/rowError.js"
import * as SqlStore from "./internal/sqlStore.js"
import * as TokenJson from "./internal/tokenJson.js"
import * as TokenRows from "./internal/tokenRows.js"

/**
 * A key of an encryption key ring.
 *
 * @since 0.1.0
 * @category models
 */
export interface EncryptionKey {
  /**
   * The key's name, stored in clear with every value it seals: 1 to 64 letters, digits, `-` or
   * `_`, unique in the ring, and never derived from the key (a date or a counter will do).
   */
  readonly id: string
  /** A 256-bit key: 32 bytes, or their base64 text. */
  readonly key: Redacted.Redacted<Uint8Array | string>
}

/**
 * The keys of encryption at rest: every write seals with `current`; values sealed with a key of
 * `previous` still open, until `reencrypt` has moved them to `current`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Encryption {
  readonly current: EncryptionKey
  readonly previous?: ReadonlyArray<EncryptionKey> | undefined
}

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
   * The keys to encrypt tokens and PKCE verifiers at rest with. Without them (and without
   * `encryptionKey`) they are stored in clear.
   */
  readonly encryption?: Encryption | undefined
  /**
   * One 256-bit key (32 bytes, or their base64 text), known by its fingerprint: the same as
   * `encryption` with this key alone, and what 0.1.0 took. Values it sealed still open when it is
   * moved into `encryption` under any id. Not with `encryption`.
   */
  readonly encryptionKey?: Redacted.Redacted<Uint8Array | string> | undefined
}

/**
 * The options of `reencrypt`: the store's, with the keys to move to, and how to go about it.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReencryptOptions extends Options {
  /** Rows read and rewritten at a time; 100 by default. */
  readonly batchSize?: number | undefined
  /**
   * Whether values stored in clear are sealed too: once, after encryption is turned on for a
   * table written without it. Otherwise they are counted as `failed` and left as they are, so
   * that a row written in clear behind the store's back is not made to look like its own.
   */
  readonly sealPlaintext?: boolean | undefined
}

/**
 * What a re-encryption did. Rows already sealed with the current key are not counted.
 *
 * @since 0.1.0
 * @category models
 */
export interface Reencrypted {
  /** Rows rewritten: sealed with the current key, in the current format, as the same version. */
  readonly rewritten: number
  /** Rows that kept changing while they were rewritten (each change is kept): run it again. */
  readonly skipped: number
  /**
   * Rows that do not open or decode (tampered, sealed with a key not configured, in clear without
   * `sealPlaintext`): left as they were; reading them fails with `TokenStoreError`.
   */
  readonly failed: number
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
 *   lease_holder TEXT NULL, lease_version BIGINT NULL, lease_until BIGINT NULL,
 *   access_expires_at BIGINT NULL, refresh_expires_at BIGINT NULL,
 *   access_due_at BIGINT NULL, refresh_due_at BIGINT NULL,
 *   reconnect_reason TEXT NULL, reconnect_version BIGINT NULL, reconnect_at BIGINT NULL)
 * CREATE INDEX IF NOT EXISTS digime_tokens_access_due_at ON digime_tokens (access_due_at)
 * CREATE INDEX IF NOT EXISTS digime_tokens_refresh_due_at ON digime_tokens (refresh_due_at)
 * CREATE INDEX IF NOT EXISTS digime_tokens_access_expires_at ON digime_tokens (access_expires_at, id)
 * CREATE INDEX IF NOT EXISTS digime_tokens_refresh_expires_at ON digime_tokens (refresh_expires_at, id)
 * CREATE INDEX IF NOT EXISTS digime_tokens_reconnect ON digime_tokens (id) WHERE reconnect_reason IS NOT NULL
 * ```
 * SQLite: the same with `INTEGER` for `BIGINT` and `updated_at TEXT`. The indexes are named after
 * the table. A table made by an earlier version gets the columns and indexes it lacks, on
 * PostgreSQL only when it lacks them, waiting at most 10 s for its lock. Its rows keep `NULL`
 * expiries until their next write: they are neither listed by expiry nor claimed before. Pending
 * authorizations:
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

// Synchronous, and made once: the token's schema encodes without effects; the JSON this library
// writes is decoded without the schema's interpreter (see `TokenJson`).
const encodeToken = Schema.encodeEither(UserAccessToken.UserAccessTokenFromJson)
const decodeToken = TokenJson.decode

// How many times `set` reads the version and writes the next one before it gives up: each miss is
// another writer's success.
const setAttempts = 20

// A token is sealed for its row and for the version it is written as.
const bindingOf = (id: string, version: number): AesGcm.Binding => ({ row: id, context: [String(version)] })

const encode = (token: UserAccessToken.UserAccessToken): Effect.Effect<string, RowError> =>
  Either.match(encodeToken(token), {
    onLeft: () => Effect.fail(new RowError({ reason: "TokenNotEncodable" })),
    onRight: Effect.succeed
  })

// Fields this version does not know (written by a newer one) are ignored, and kept in the JSON
// that `reencrypt` seals again.
const decode = (json: string): Effect.Effect<UserAccessToken.UserAccessToken, RowError> =>
  Either.match(decodeToken(json), {
    onLeft: () => Effect.fail(new RowError({ reason: "TokenNotDecodable" })),
    onRight: Effect.succeed
  })

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
    const { codec, dialect, tableName } = yield* SqlStore.settings(sql, options)
    yield* Migration.run(sql, Migration.tokensTable(sql, tableName))
    const table = sql(tableName)

    // The columns are checked without a generator (every read and every refresh's lease runs it),
    // in this order: version, token, lease, mark; then the token is opened and decoded.
    const read = (id: string, row: TokenRows.Row): Effect.Effect<TokenStore.Versioned, RowError> => {
      const version = SqlStore.integerOf(row.version, 1, Number.MAX_SAFE_INTEGER - 1)
      if (version === undefined) return Effect.fail(new RowError({ reason: "VersionNotInteger" }))
      const stored = row.token
      if (typeof stored !== "string") return Effect.fail(new RowError({ reason: "ValueNotText" }))
      const lease = TokenRows.leaseIn(row)
      if (lease instanceof RowError) return Effect.fail(lease)
      const mark = TokenRows.reconnectIn(row)
      if (mark instanceof RowError) return Effect.fail(mark)
      return Effect.map(Effect.flatMap(codec.open(stored, bindingOf(id, version)), decode), (token) => {
        const versioned: TokenStore.Versioned = lease === undefined ? { token, version } : { token, version, lease }
        return mark?.version === version ? { ...versioned, reconnect: mark } : versioned
      })
    }

    const get = (key: TokenKey.TokenKey) => {
      const id = TokenKey.toId(key)
      return sql<TokenRows.Row>`
        SELECT version, token, lease_holder, lease_version, lease_until, reconnect_reason, reconnect_version,
          reconnect_at
        FROM ${table}
        WHERE id = ${id} AND token IS NOT NULL
      `.pipe(
        Effect.flatMap((rows) =>
          rows.length === 0 ? Effect.succeed(Option.none<TokenStore.Versioned>()) : Effect.asSome(read(id, rows[0]!))
        ),
        SqlStore.retryLostConnection,
        Effect.mapError(SqlStore.storeError("get", key)),
        SqlStore.withKeySpan("SqlTokenStore.get", key)
      )
    }

    // Every write of a token stores its expiries in clear, makes them its due times again and ends
    // the lease and the mark on the version it replaces.
    const written = (token: UserAccessToken.UserAccessToken) => {
      const { accessExpiresAt, refreshExpiresAt } = TokenStore.expiryFields(token)
      return sql`access_expires_at = ${accessExpiresAt}, refresh_expires_at = ${refreshExpiresAt},
        access_due_at = ${accessExpiresAt}, refresh_due_at = ${refreshExpiresAt},
        lease_holder = NULL, lease_version = NULL, lease_until = NULL,
        reconnect_reason = NULL, reconnect_version = NULL, reconnect_at = NULL`
    }

    // The version is read first, so that the token is sealed for the one it is written as; the
    // write is conditional on it, and tried again when another writer got there first.
    const writeNext = (key: TokenKey.TokenKey, id: string, json: string, token: UserAccessToken.UserAccessToken) =>
      Effect.gen(function*() {
        const found = yield* sql<{ readonly version: unknown }>`SELECT version FROM ${table} WHERE id = ${id}`
        if (found.length === 0) {
          const stored = yield* codec.seal(json, bindingOf(id, 1))
          const { accessExpiresAt, refreshExpiresAt } = TokenStore.expiryFields(token)
          const inserted = yield* sql`
            INSERT INTO ${table} (id, user_id, contract_id, version, token, updated_at, access_expires_at,
              refresh_expires_at, access_due_at, refresh_due_at)
            VALUES (${id}, ${key.userId}, ${key.contractId}, 1, ${stored}, CURRENT_TIMESTAMP, ${accessExpiresAt},
              ${refreshExpiresAt}, ${accessExpiresAt}, ${refreshExpiresAt})
            ON CONFLICT (id) DO NOTHING
            RETURNING version
          `
          return inserted.length > 0 ? Option.some(1) : Option.none()
        }
        const current = yield* SqlStore.toVersion(found[0]!.version)
        const version = current + 1
        const stored = yield* codec.seal(json, bindingOf(id, version))
        const updated = yield* sql`
          UPDATE ${table} SET version = ${version}, token = ${stored}, updated_at = CURRENT_TIMESTAMP, ${written(token)}
          WHERE id = ${id} AND version = ${current}
          RETURNING version
        `
        return updated.length > 0 ? Option.some(version) : Option.none()
      }).pipe(SqlStore.retryLostConnection)

    const set = (key: TokenKey.TokenKey, token: UserAccessToken.UserAccessToken) => {
      const id = TokenKey.toId(key)
      return Effect.gen(function*() {
        const json = yield* encode(token)
        for (let attempt = 0; attempt < setAttempts; attempt++) {
          const next = yield* writeNext(key, id, json, token)
          if (Option.isSome(next)) return { token, version: next.value } satisfies TokenStore.Versioned
        }
        return yield* new RowError({ reason: "Contended" })
      }).pipe(
        Effect.mapError(SqlStore.storeError("set", key)),
        SqlStore.withKeySpan("SqlTokenStore.set", key)
      )
    }

    const compareAndSet = (key: TokenKey.TokenKey, expectedVersion: number, token: UserAccessToken.UserAccessToken) => {
      const id = TokenKey.toId(key)
      const version = expectedVersion + 1
      if (!Number.isSafeInteger(version) || expectedVersion < 1) {
        return Effect.succeed(Option.none<TokenStore.Versioned>())
      }
      return encode(token).pipe(
        Effect.flatMap((json) => codec.seal(json, bindingOf(id, version))),
        Effect.flatMap((stored) =>
          sql`
            UPDATE ${table} SET version = ${version}, token = ${stored}, updated_at = CURRENT_TIMESTAMP,
              ${written(token)}
            WHERE id = ${id} AND version = ${expectedVersion} AND token IS NOT NULL
            RETURNING version
          `
        ),
        Effect.map((rows) =>
          rows.length === 0
            ? Option.none<TokenStore.Versioned>()
            : Option.some<TokenStore.Versioned>({ token, version })
        ),
        SqlStore.retryLostConnection,
        Effect.mapError(SqlStore.storeError("compareAndSet", key)),
        SqlStore.withKeySpan("SqlTokenStore.compareAndSet", key)
      )
    }

    // The row stays as a tombstone so that the key's next version is still greater.
    const remove = (key: TokenKey.TokenKey) =>
      sql`
        UPDATE ${table} SET version = version + 1, token = NULL, updated_at = CURRENT_TIMESTAMP,
          lease_holder = NULL, lease_version = NULL, lease_until = NULL,
          access_expires_at = NULL, refresh_expires_at = NULL, access_due_at = NULL, refresh_due_at = NULL,
          reconnect_reason = NULL, reconnect_version = NULL, reconnect_at = NULL
        WHERE id = ${TokenKey.toId(key)} AND token IS NOT NULL
      `.pipe(
        Effect.asVoid,
        SqlStore.retryLostConnection,
        Effect.mapError(SqlStore.storeError("delete", key)),
        SqlStore.withKeySpan("SqlTokenStore.delete", key)
      )

    // Only on the stored version, and only when no lease was taken on it since it was written (a
    // lease left on an older version, by a writer that does not know leases, does not count).
    // Leases never rewrite the token: its ciphertext stays bound to the version.
    const acquireLease = (key: TokenKey.TokenKey, lease: TokenStore.Lease) =>
      sql<{ readonly version: unknown }>`
        UPDATE ${table} SET lease_holder = ${lease.holder}, lease_version = ${lease.version},
          lease_until = ${lease.until}
        WHERE id = ${TokenKey.toId(key)} AND version = ${lease.version} AND token IS NOT NULL
          AND (lease_version IS NULL OR lease_version <> version)
        RETURNING version
      `.pipe(
        Effect.map((rows) => rows.length > 0),
        SqlStore.retryLostConnection,
        Effect.mapError(SqlStore.storeError("acquireLease", key)),
        SqlStore.withKeySpan("SqlTokenStore.acquireLease", key)
      )

    // `acquireLease` and `get` in one statement when the lease is taken: the conditional `UPDATE` of
    // `acquireLease` (refused on a version marked "needs reconnect" too) returns the row it leased.
    // A refused lease is followed by a read. (One statement for both outcomes, a data-modifying
    // `WITH` read again by a `UNION`, measured slower on PostgreSQL than the `UPDATE` alone.)
    const columns = sql.literal(
      "version, token, lease_holder, lease_version, lease_until, reconnect_reason, reconnect_version, reconnect_at"
    )
    const leaseAndRead = (id: string, lease: TokenStore.Lease) =>
      sql<{ readonly version: unknown; readonly token: unknown }>`
        UPDATE ${table} SET lease_holder = ${lease.holder}, lease_version = ${lease.version},
          lease_until = ${lease.until}
        WHERE id = ${id} AND version = ${lease.version} AND token IS NOT NULL
          AND (lease_version IS NULL OR lease_version <> version)
          AND (reconnect_version IS NULL OR reconnect_version <> version)
        RETURNING version, token
      `.pipe(
        // Taken, the row holds this lease, and no mark on its version (a mark on an older one is
        // not read): the version and the token are all the statement returns.
        Effect.flatMap((taken) =>
          taken.length > 0
            ? Effect.succeed({
              acquired: true,
              rows: taken.map((row): TokenRows.Row => ({
                version: row.version,
                token: row.token,
                lease_holder: lease.holder,
                lease_version: lease.version,
                lease_until: lease.until,
                reconnect_reason: null,
                reconnect_version: null,
                reconnect_at: null
              }))
            })
            : Effect.map(
              sql<TokenRows.Row>`SELECT ${columns} FROM ${table} WHERE id = ${id} AND token IS NOT NULL`,
              (rows) => ({ acquired: false, rows })
            )
        )
      )

    const acquireLeaseAndGet = (key: TokenKey.TokenKey, lease: TokenStore.Lease) => {
      const id = TokenKey.toId(key)
      return leaseAndRead(id, lease).pipe(
        Effect.flatMap(({ acquired, rows }): Effect.Effect<TokenStore.LeaseAndCurrent, SqlStore.Failure> => {
          const row = rows[0]
          if (row === undefined) return Effect.succeed({ acquired, current: Option.none() })
          return Effect.map(read(id, row), (versioned) => ({ acquired, current: Option.some(versioned) }))
        }),
        SqlStore.retryLostConnection,
        Effect.mapError(SqlStore.storeError("acquireLeaseAndGet", key)),
        SqlStore.withKeySpan("SqlTokenStore.acquireLeaseAndGet", key)
      )
    }

    const endLease = (key: TokenKey.TokenKey, lease: TokenStore.Lease, end: TokenStore.LeaseEnd) =>
      (end === "Released"
        ? sql`
          UPDATE ${table} SET lease_holder = NULL, lease_version = NULL, lease_until = NULL
          WHERE id = ${TokenKey.toId(key)} AND lease_holder = ${lease.holder} AND lease_version = ${lease.version}
            AND lease_until = ${lease.until}
        `
        : sql`
          UPDATE ${table} SET lease_until = 0
          WHERE id = ${TokenKey.toId(key)} AND lease_holder = ${lease.holder} AND lease_version = ${lease.version}
            AND lease_until = ${lease.until}
        `).pipe(
          Effect.asVoid,
          SqlStore.retryLostConnection,
          Effect.mapError(SqlStore.storeError("endLease", key)),
          SqlStore.withKeySpan("SqlTokenStore.endLease", key)
        )

    const listDue = (query: TokenStore.DueQuery) =>
      Effect.gen(function*() {
        const { expires } = yield* columnsOf("listDue", query.expiry)
        const before = yield* timeOf("listDue", "before", query.before)
        const after = query.after
        if (after !== undefined && !(Number.isSafeInteger(after?.at) && typeof after?.id === "string")) {
          return yield* invalid("listDue", "after must be the expiry (an integer) and the id of an entry")
        }
        const limit = yield* limitOf("listDue", query.limit)
        if (limit === 0) return []
        const column = sql(expires)
        // A row value, so that a page starts at its place in the index of (expiry, id).
        const cursor = after === undefined ? sql.literal("") : sql`AND (${column}, id) > (${after.at}, ${after.id})`
        return yield* sql<TokenRows.DueRow>`
          SELECT id, user_id, contract_id, version, access_expires_at, refresh_expires_at FROM ${table}
          WHERE token IS NOT NULL AND ${column} < ${before}
            AND (reconnect_version IS NULL OR reconnect_version <> version) ${cursor}
          ORDER BY ${column}, id LIMIT ${limit}
        `.pipe(
          Effect.flatMap((rows) => Effect.forEach(rows, TokenRows.dueOf)),
          SqlStore.retryLostConnection,
          Effect.mapError(SqlStore.storeError("listDue", undefined))
        )
      }).pipe(Effect.withSpan("SqlTokenStore.listDue"))

    // One statement: of several claimers, each row goes to one. On PostgreSQL the rows another
    // claim has locked are skipped rather than waited for, and the due time each row had is
    // returned with it, to put the claim in order (RETURNING has none). SQLite has one writer at a
    // time, and its RETURNING sees only the new row: a claim there is ordered by the expiry.
    const claim = (columns: Columns, before: number, until: number, limit: number) => {
      const due = sql(columns.due)
      const claimable = sql`${due} < ${before} AND token IS NOT NULL
        AND (reconnect_version IS NULL OR reconnect_version <> version)
        ORDER BY ${due}, id LIMIT ${limit}`
      const claimed = dialect === "pg"
        ? sql<TokenRows.ClaimedRow>`
          WITH claimed AS (SELECT id, ${due} AS due FROM ${table} WHERE ${claimable} FOR UPDATE SKIP LOCKED)
          UPDATE ${table} AS t SET ${due} = ${until} FROM claimed WHERE t.id = claimed.id
          RETURNING t.id, t.user_id, t.contract_id, t.version, t.access_expires_at, t.refresh_expires_at,
            claimed.due
        `
        : sql<TokenRows.ClaimedRow>`
          UPDATE ${table} SET ${due} = ${until} WHERE id IN (SELECT id FROM ${table} WHERE ${claimable})
          RETURNING id, user_id, contract_id, version, access_expires_at, refresh_expires_at,
            ${sql(columns.expires)} AS due
        `
      return claimed.pipe(
        // A row that cannot be read stays claimed until `until` (and is logged); the others are
        // handled: one bad row never holds up a whole batch.
        Effect.flatMap((rows) =>
          Effect.forEach(rows, (row) =>
            Effect.zip(TokenRows.dueOf(row), SqlStore.toInteger(row.due, "ExpiryInvalid")).pipe(
              Effect.asSome,
              Effect.catchAll((error) =>
                Effect.as(
                  Effect.logWarning(`A claimed row cannot be read (${error.reason}); it is left`),
                  Option.none()
                )
              )
            ))
        ),
        Effect.map((read) =>
          TokenRows.byDue(read.flatMap((entry) =>
            Option.isSome(entry) ? [entry.value] : []
          ))
        )
      )
    }

    const claimDue = (query: TokenStore.ClaimQuery) =>
      Effect.gen(function*() {
        const columns = yield* columnsOf("claimDue", query.expiry)
        const before = yield* timeOf("claimDue", "before", query.before)
        const until = yield* timeOf("claimDue", "until", query.until)
        const limit = yield* limitOf("claimDue", query.limit)
        if (limit === 0) {
          return []
        }
        return yield* claim(columns, before, until, limit).pipe(
          SqlStore.retryLostConnection,
          Effect.mapError(SqlStore.storeError("claimDue", undefined))
        )
      }).pipe(Effect.withSpan("SqlTokenStore.claimDue"))

    // Only on the stored version. A marked row has no due times: no claim finds it until a new
    // token is written.
    const markReconnect = (key: TokenKey.TokenKey, reconnect: TokenStore.Reconnect) =>
      Effect.gen(function*() {
        if (!TokenRows.isReconnectReason(reconnect.reason)) {
          return yield* invalid("markReconnect", "reason must be a ReconnectReason", key)
        }
        const at = yield* timeOf("markReconnect", "at", reconnect.at, key)
        const version = reconnect.version
        if (!Number.isSafeInteger(version) || version < 1) {
          return false
        }
        const marked = yield* sql`
          UPDATE ${table} SET reconnect_reason = ${reconnect.reason}, reconnect_version = ${version},
            reconnect_at = ${at}, access_due_at = NULL, refresh_due_at = NULL
          WHERE id = ${TokenKey.toId(key)} AND version = ${version} AND token IS NOT NULL
            AND (reconnect_version IS NULL OR reconnect_version <> version)
          RETURNING version
        `.pipe(SqlStore.retryLostConnection, Effect.mapError(SqlStore.storeError("markReconnect", key)))
        return marked.length > 0
      }).pipe(SqlStore.withKeySpan("SqlTokenStore.markReconnect", key))

    const listReconnect = (query: TokenStore.ReconnectQuery) =>
      Effect.gen(function*() {
        const after = query.after
        if (after !== undefined && typeof after !== "string") {
          return yield* invalid("listReconnect", "after must be the id of an entry")
        }
        const limit = yield* limitOf("listReconnect", query.limit)
        if (limit === 0) {
          return []
        }
        return yield* sql<TokenRows.MarkRow>`
          SELECT id, user_id, contract_id, reconnect_reason, reconnect_version, reconnect_at FROM ${table}
          WHERE reconnect_reason IS NOT NULL AND reconnect_version = version AND token IS NOT NULL
            AND id > ${after ?? ""}
          ORDER BY id LIMIT ${limit}
        `.pipe(
          Effect.flatMap((rows) => Effect.forEach(rows, TokenRows.needsReconnectOf)),
          SqlStore.retryLostConnection,
          Effect.mapError(SqlStore.storeError("listReconnect", undefined))
        )
      }).pipe(Effect.withSpan("SqlTokenStore.listReconnect"))

    return {
      get,
      set,
      compareAndSet,
      delete: remove,
      acquireLease,
      acquireLeaseAndGet,
      endLease,
      listDue,
      claimDue,
      markReconnect,
      listReconnect
    }
  })

interface Columns {
  readonly expires: string
  readonly due: string
}

// A listing's or a claim's input is checked before any statement: what is wrong with it fails the
// operation with a description, never a database error.
const invalid = (operation: string, description: string, key?: TokenKey.TokenKey) =>
  new TokenStoreError({ operation: `SqlTokenStore.${operation}`, ...(key === undefined ? {} : { key }), description })

const columnsOf = (operation: string, expiry: TokenStore.Expiry): Effect.Effect<Columns, TokenStoreError> =>
  expiry === "AccessToken"
    ? Effect.succeed({ expires: "access_expires_at", due: "access_due_at" })
    : expiry === "RefreshToken"
    ? Effect.succeed({ expires: "refresh_expires_at", due: "refresh_due_at" })
    : Effect.fail(invalid(operation, "expiry must be AccessToken or RefreshToken"))

const timeOf = (
  operation: string,
  field: string,
  value: number,
  key?: TokenKey.TokenKey
): Effect.Effect<number, TokenStoreError> =>
  Number.isSafeInteger(value)
    ? Effect.succeed(value)
    : Effect.fail(invalid(operation, `${field} must be an integer (epoch milliseconds)`, key))

// A limit of 0 or less asks for nothing: 0.
const limitOf = (operation: string, limit: number): Effect.Effect<number, TokenStoreError> =>
  limit <= 0
    ? Effect.succeed(0)
    : Number.isSafeInteger(limit)
    ? Effect.succeed(limit)
    : Effect.fail(invalid(operation, "limit must be an integer"))

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

/**
 * The options read from the environment, every one optional: `DIGIME_STORE_TABLE` (`tableName`),
 * `DIGIME_STORE_PENDING_TABLE` (`pendingTableName`), `DIGIME_STORE_ENCRYPTION_KEY` (the current key:
 * 32 bytes as base64), `DIGIME_STORE_ENCRYPTION_KEY_ID` (its id; without it the key is known by
 * its fingerprint, as `encryptionKey`), and `DIGIME_STORE_PREVIOUS_KEYS` (older keys that still
 * open: `id=base64` pairs separated by commas, with `DIGIME_STORE_ENCRYPTION_KEY_ID` set). Keys are
 * read as `Redacted`. Keys that are not 32 bytes fail when the layer is built (`InvalidConfig`).
 *
 * @example
 * import { SqlPendingAuthorizations, SqlTokenStore } from "@digime-effect/node"
 * import { PgClient } from "@effect/sql-pg"
 * import { Config, Layer } from "effect"
 *
 * const StoreLive = Layer.merge(SqlTokenStore.layerConfig(), SqlPendingAuthorizations.layerConfig()).pipe(
 *   Layer.provide(PgClient.layerConfig({ url: Config.redacted("DATABASE_URL") }))
 * )
 *
 * @since 0.3.0
 * @category layers
 */
export const optionsFromEnv: Config.Config<Options> = Config.all({
  tableName: Config.option(Config.string("DIGIME_STORE_TABLE")),
  pendingTableName: Config.option(Config.string("DIGIME_STORE_PENDING_TABLE")),
  key: Config.option(Config.redacted("DIGIME_STORE_ENCRYPTION_KEY")),
  keyId: Config.option(Config.string("DIGIME_STORE_ENCRYPTION_KEY_ID")),
  previous: Config.option(Config.redacted("DIGIME_STORE_PREVIOUS_KEYS"))
}).pipe(
  Config.mapOrFail(({ key, keyId, pendingTableName, previous, tableName }) => {
    const tables = {
      tableName: Option.getOrUndefined(tableName),
      pendingTableName: Option.getOrUndefined(pendingTableName)
    }
    if (Option.isNone(key)) {
      return Option.isSome(previous) || Option.isSome(keyId)
        ? Either.left(ConfigError.MissingData(["DIGIME_STORE_ENCRYPTION_KEY"], "needed with its id or previous keys"))
        : Either.right<Options>(tables)
    }
    if (Option.isNone(keyId)) {
      return Option.isSome(previous)
        ? Either.left(ConfigError.MissingData(["DIGIME_STORE_ENCRYPTION_KEY_ID"], "needed with previous keys"))
        : Either.right<Options>({ ...tables, encryptionKey: key.value })
    }
    const older: Array<EncryptionKey> = []
    if (Option.isSome(previous)) {
      for (const pair of Redacted.value(previous.value).split(",")) {
        const at = pair.indexOf("=")
        if (at < 1) {
          return Either.left(
            ConfigError.InvalidData(["DIGIME_STORE_PREVIOUS_KEYS"], "expected id=base64 pairs separated by commas")
          )
        }
        older.push({ id: pair.slice(0, at).trim(), key: Redacted.make(pair.slice(at + 1).trim()) })
      }
    }
    return Either.right<Options>({
      ...tables,
      encryption: { current: { id: keyId.value, key: key.value }, previous: older }
    })
  })
)

/**
 * The token store with its options from `config` (by default `optionsFromEnv`).
 *
 * @since 0.3.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<Options> = optionsFromEnv
): Layer.Layer<TokenStore.TokenStore, SqlError | InvalidConfig | ConfigError.ConfigError, SqlClient.SqlClient> =>
  Layer.unwrapEffect(Effect.map(config, layer))

// -------------------------------------------------------------------------------------------
// re-encryption
// -------------------------------------------------------------------------------------------

interface StoredRow {
  readonly id: unknown
  readonly version: unknown
  readonly token: unknown
}

// A row that changed while it was rewritten is read again this many times before it is skipped.
const rewriteAttempts = 3

/**
 * Seals every stored token that is not sealed with `encryption.current` (or `encryptionKey`) in
 * the current format again: values sealed with a key of `previous` or in the format of 0.1.0,
 * and, with `sealPlaintext`, values stored in clear. Each is rewritten as the same version, by a
 * write conditional on the version and the value it read, so that a token written meanwhile is
 * never overwritten: the new one is read and handled in turn. Leases, expiries, due times, marks
 * "needs reconnect" and the time of the last write are left as they are, and so are JSON fields
 * this version does not know (written by a newer one). Rows are read in batches of `batchSize`; it
 * may run while the store is in use, and again (it rewrites only what is left). Creates the table
 * if it does not exist.
 *
 * A key without `encryption` or `encryptionKey` fails with `InvalidConfig`, and so does a bad
 * option; a database error ends it with `TokenStoreError` (the rows rewritten so far stay).
 *
 * @example
 * import { SqlTokenStore } from "@digime-effect/node"
 * import { Config, Effect } from "effect"
 *
 * // Rotate from key "2024-01" to key "2025-06"; once nothing is left behind, drop "2024-01".
 * const rotate = Effect.gen(function*() {
 *   const previous = yield* Config.redacted("DIGIME_ENCRYPTION_KEY_2024_01")
 *   const current = yield* Config.redacted("DIGIME_ENCRYPTION_KEY_2025_06")
 *   const { failed, rewritten, skipped } = yield* SqlTokenStore.reencrypt({
 *     encryption: { current: { id: "2025-06", key: current }, previous: [{ id: "2024-01", key: previous }] }
 *   })
 *   yield* Effect.log(`rewritten: ${rewritten}, left behind: ${failed + skipped}`)
 * })
 *
 * @since 0.1.0
 * @category constructors
 */
export const reencrypt = (
  options: ReencryptOptions = {}
): Effect.Effect<Reencrypted, InvalidConfig | TokenStoreError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const { codec, tableName } = yield* SqlStore.settings(sql, options)
    const current = yield* SqlStore.currentOf(codec)
    const batchSize = yield* SqlStore.batchSizeOf(options.batchSize)
    const fail = SqlStore.storeError("reencrypt", undefined)
    yield* Effect.mapError(Migration.run(sql, Migration.tokensTable(sql, tableName)), fail)
    const table = sql(tableName)
    const open = options.sealPlaintext === true ? codec.openOrClear : codec.open
    const pending = SqlStore.notCurrent(sql, "token", current)

    // The sealed JSON is the stored one, not this version's encoding of it: unknown fields stay.
    const resealed = (row: StoredRow) =>
      Effect.gen(function*() {
        const id = yield* SqlStore.toText(row.id, "KeyInvalid")
        const version = yield* SqlStore.toVersion(row.version)
        const stored = yield* SqlStore.toText(row.token, "ValueNotText")
        const json = yield* open(stored, bindingOf(id, version))
        yield* decode(json)
        return { id, version, stored, sealed: yield* codec.seal(json, bindingOf(id, version)) }
      })

    const rewrite = (row: StoredRow, attempt: number): Effect.Effect<SqlStore.Rewrite, SqlError> =>
      Effect.gen(function*() {
        const next = yield* Effect.either(resealed(row))
        if (next._tag === "Left") return "Failed"
        const { id, sealed, stored, version } = next.right
        const updated = yield* sql`
          UPDATE ${table} SET token = ${sealed}
          WHERE id = ${id} AND version = ${version} AND token = ${stored}
          RETURNING version
        `.pipe(SqlStore.retryLostConnection)
        if (updated.length > 0) return "Rewritten"
        if (attempt >= rewriteAttempts) return "Skipped"
        const again = yield* sql<StoredRow>`
          SELECT id, version, token FROM ${table} WHERE id = ${id} AND token IS NOT NULL AND ${pending}
        `.pipe(SqlStore.retryLostConnection)
        return again.length === 0 ? "Current" : yield* rewrite(again[0]!, attempt + 1)
      })

    return yield* SqlStore.inBatches({
      batchSize,
      batch: (after) =>
        sql<StoredRow>`
          SELECT id, version, token FROM ${table}
          WHERE token IS NOT NULL AND ${pending} AND id > ${after ?? ""}
          ORDER BY id LIMIT ${batchSize}
        `.pipe(SqlStore.retryLostConnection),
      keyOf: (row) => row.id,
      rewrite: (row) => rewrite(row, 1)
    }).pipe(Effect.mapError(fail))
  }).pipe(Effect.withSpan("SqlTokenStore.reencrypt"))

// -------------------------------------------------------------------------------------------
// expiries of rows written before they were kept
// -------------------------------------------------------------------------------------------

/**
 * Writes the expiries and due times of every stored token that has none: rows written before this
 * version kept them (or by an instance of an earlier version since). Until then such a row is
 * neither listed by expiry nor claimed by `TokenUpkeep`, so an idle user's grant would not be kept
 * alive: run it once after upgrading, while the store is in use if need be. Each row is opened with
 * the store's keys (`options` as the store's) and written only if its version and value are still
 * those it read; a row that does not open or decode is counted `failed` and left as it is. Counts as
 * `reencrypt` does (`rewritten`: rows given their expiries).
 *
 * @since 0.3.0
 * @category constructors
 */
export const backfillExpiries = (
  options: Options & { readonly batchSize?: number | undefined } = {}
): Effect.Effect<Reencrypted, InvalidConfig | TokenStoreError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const { codec, tableName } = yield* SqlStore.settings(sql, options)
    const batchSize = yield* SqlStore.batchSizeOf(options.batchSize)
    const fail = SqlStore.storeError("backfillExpiries", undefined)
    yield* Effect.mapError(Migration.run(sql, Migration.tokensTable(sql, tableName)), fail)
    const table = sql(tableName)

    const expiriesOf = (row: StoredRow) =>
      Effect.gen(function*() {
        const id = yield* SqlStore.toText(row.id, "KeyInvalid")
        const version = yield* SqlStore.toVersion(row.version)
        const stored = yield* SqlStore.toText(row.token, "ValueNotText")
        const token = yield* Effect.flatMap(codec.open(stored, bindingOf(id, version)), decode)
        return { id, version, stored, ...TokenStore.expiryFields(token) }
      })

    const fill = (row: StoredRow): Effect.Effect<SqlStore.Rewrite, SqlError> =>
      Effect.gen(function*() {
        const next = yield* Effect.either(expiriesOf(row))
        if (next._tag === "Left") return "Failed"
        const { accessExpiresAt, id, refreshExpiresAt, stored, version } = next.right
        // A row marked "needs reconnect" keeps no due times.
        const updated = yield* sql`
          UPDATE ${table} SET access_expires_at = ${accessExpiresAt}, refresh_expires_at = ${refreshExpiresAt},
            access_due_at = CASE WHEN reconnect_version = version THEN NULL ELSE CAST(${accessExpiresAt} AS BIGINT) END,
            refresh_due_at = CASE WHEN reconnect_version = version THEN NULL ELSE CAST(${refreshExpiresAt} AS BIGINT) END
          WHERE id = ${id} AND version = ${version} AND token = ${stored} AND access_expires_at IS NULL
          RETURNING version
        `.pipe(SqlStore.retryLostConnection)
        return updated.length > 0 ? "Rewritten" : "Skipped"
      })

    return yield* SqlStore.inBatches({
      batchSize,
      batch: (after) =>
        sql<StoredRow>`
          SELECT id, version, token FROM ${table}
          WHERE token IS NOT NULL AND access_expires_at IS NULL AND id > ${after ?? ""}
          ORDER BY id LIMIT ${batchSize}
        `.pipe(SqlStore.retryLostConnection),
      keyOf: (row) => row.id,
      rewrite: fill
    }).pipe(Effect.mapError(fail))
  }).pipe(Effect.withSpan("SqlTokenStore.backfillExpiries"))
