import type { PendingAuthorizations, UserAccessToken } from "@digime-effect/core"
import { AutoRefresh, DigimeClient, TokenKey, TokenManager, TokenStore } from "@digime-effect/core"
import type { TokenStoreError } from "@digime-effect/core/DigimeError"
import { DigimeSimulator, DigimeTest, TestContract } from "@digime-effect/core/testing"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Context, DateTime, Effect, Fiber, Layer, Option, Redacted, Schedule, TestClock } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { inject } from "vitest"
import * as SqlPendingAuthorizations from "../src/SqlPendingAuthorizations.js"
import * as SqlTokenStore from "../src/SqlTokenStore.js"

// The contract suite lives in the core package's tests, outside this TypeScript project (whose
// `include` is this package's own folders): it is loaded by path, with its signature restated.
interface SuiteModule {
  readonly suite: <E>(name: string, layer: Layer.Layer<TokenStore.TokenStore, E>) => void
  readonly dueSuite: <E>(name: string, layer: Layer.Layer<TokenStore.TokenStore, E>) => void
  readonly markOnceSuite: <E>(name: string, layer: Layer.Layer<TokenStore.TokenStore, E>) => void
  readonly token: (access: string, refresh: string, expiresAtSeconds?: number) => UserAccessToken.UserAccessToken
}
const suitePath = "../../core/test/TokenStoreSuite.js"
const { dueSuite, markOnceSuite, suite, token }: SuiteModule = await import(suitePath)

const PgLive = Layer.unwrapEffect(Effect.sync(() => PgClient.layer({ url: Redacted.make(inject("pgUrl")) })))

const dir = mkdtempSync(Path.join(tmpdir(), "digime-sqlite-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const sqliteFile = Path.join(dir, "tokens.db")
const SqliteLive = SqliteClient.layer({ filename: sqliteFile })

const encryptionKey = Redacted.make<Uint8Array | string>(crypto.getRandomValues(new Uint8Array(32)))
const otherKey = Redacted.make<Uint8Array | string>(
  Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64")
)

type Database = Layer.Layer<SqlClient.SqlClient, unknown>

const databases: ReadonlyArray<readonly [string, Database]> = [
  ["PostgreSQL", PgLive],
  ["SQLite", SqliteLive]
]

const contractId = "contract-1"
const testContract = await Effect.runPromise(TestContract.make(contractId))

// The library on the simulated digi.me, storing in `store`.
const clientOn = (store: TokenStore.Service) =>
  DigimeTest.layer({ contracts: [testContract], store: Layer.succeed(TokenStore.TokenStore, store) }).pipe(Layer.orDie)

const authorize = DigimeTest.authorize

const fresh = () => TokenKey.make(`user-${crypto.randomUUID()}`, "contract-1")

const readRow = (table: string, key: TokenKey.TokenKey) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql<{ readonly token: string | null }>`SELECT token FROM ${sql(table)} WHERE id = ${TokenKey.toId(key)}`
  ).pipe(Effect.map((rows) => rows[0]?.token ?? null))

const writeRow = (table: string, key: TokenKey.TokenKey, value: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql`UPDATE ${sql(table)} SET token = ${value} WHERE id = ${TokenKey.toId(key)}`
  )

const suiteLayer = (database: Database, options: SqlTokenStore.Options) =>
  SqlTokenStore.layer(options).pipe(Layer.provide(database), Layer.orDie)

for (const [name, database] of databases) {
  const suffix = name === "PostgreSQL" ? "pg" : "sqlite"
  suite(`SQL on ${name}`, suiteLayer(database, { tableName: "suite_plain" }))
  suite(`SQL on ${name}, encrypted`, suiteLayer(database, { tableName: "suite_sealed", encryptionKey }))
  suite(
    `SQL on ${name}, encrypted with a key ring`,
    suiteLayer(database, {
      tableName: "suite_ring",
      encryption: { current: { id: "2025-06", key: otherKey }, previous: [{ id: "2024-01", key: encryptionKey }] }
    })
  )
  dueSuite(`SQL on ${name}`, suiteLayer(database, { tableName: "suite_plain" }))
  dueSuite(`SQL on ${name}, encrypted`, suiteLayer(database, { tableName: "suite_sealed", encryptionKey }))
  markOnceSuite(`SQL on ${name}`, suiteLayer(database, { tableName: "suite_plain" }))

  describe(`SqlTokenStore on ${name}`, () => {
    it.layer(database, { timeout: 30_000 })((it) => {
      it.effect("the migration runs twice, and concurrently, without error", () =>
        Effect.gen(function*() {
          const options = { tableName: `migrated_${suffix}`, pendingTableName: `migrated_pending_${suffix}` }
          yield* SqlTokenStore.migrate(options)
          yield* SqlTokenStore.migrate(options)
          yield* Effect.all([SqlTokenStore.make(options), SqlPendingAuthorizations.make(options)], {
            concurrency: "unbounded"
          })
        }))

      it.effect("a table of the release before leases gets the lease columns, and keeps its tokens", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const table = `before_leases_${suffix}_${Date.now()}`
          // The layout 0.1.0 created, with one token written by it (in clear).
          const plain = yield* SqlTokenStore.make({ tableName: `${table}_source` })
          const key = fresh()
          yield* plain.set(key, token("a-old", "r-old"))
          const [row] = yield* sql<{ readonly token: string }>`
            SELECT token FROM ${sql(`${table}_source`)} WHERE id = ${TokenKey.toId(key)}`
          yield* sql`CREATE TABLE ${sql(table)} (
            id TEXT PRIMARY KEY, user_id TEXT NOT NULL, contract_id TEXT NOT NULL, version BIGINT NOT NULL,
            token TEXT NULL, updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)`
          yield* sql`INSERT INTO ${sql(table)} (id, user_id, contract_id, version, token)
            VALUES (${TokenKey.toId(key)}, ${key.userId}, ${key.contractId}, 7, ${row!.token})`
          const store = yield* SqlTokenStore.make({ tableName: table })
          const found = Option.getOrThrow(yield* store.get(key))
          assert.strictEqual(found.version, 7)
          assert.strictEqual(Redacted.value(found.token.accessToken.value), "a-old")
          assert.isTrue(yield* store.acquireLease(key, { holder: "p1", version: 7, until: 2_000_000_000_000 }))
          // And a second start changes nothing.
          yield* SqlTokenStore.make({ tableName: table })
          assert.strictEqual(Option.getOrThrow(yield* store.get(key)).lease?.holder, "p1")
        }))

      it.effect("a table of the release before upkeep gets its columns and indexes; its rows are due from their next write", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const table = `before_upkeep_${suffix}_${Date.now()}`
          const plain = yield* SqlTokenStore.make({ tableName: `${table}_source` })
          const key = fresh()
          yield* plain.set(key, token("a-old", "r-old"))
          const [row] = yield* sql<{ readonly token: string }>`
            SELECT token FROM ${sql(`${table}_source`)} WHERE id = ${TokenKey.toId(key)}`
          // The table the release before upkeep created, with a token and a lease written by it.
          yield* sql.onDialectOrElse({
            pg: () =>
              sql`CREATE TABLE ${sql(table)} (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL,
                contract_id TEXT NOT NULL,
                version BIGINT NOT NULL,
                token TEXT NULL,
                updated_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
                lease_holder TEXT NULL,
                lease_version BIGINT NULL,
                lease_until BIGINT NULL
              )`,
            orElse: () =>
              sql`CREATE TABLE ${sql(table)} (
                id TEXT PRIMARY KEY NOT NULL,
                user_id TEXT NOT NULL,
                contract_id TEXT NOT NULL,
                version INTEGER NOT NULL,
                token TEXT NULL,
                updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
                lease_holder TEXT NULL,
                lease_version INTEGER NULL,
                lease_until INTEGER NULL
              )`
          })
          const lease = { holder: "p1", version: 7, until: 1_900_000_000_000 }
          yield* sql`INSERT INTO ${sql(table)} (id, user_id, contract_id, version, token, lease_holder, lease_version,
            lease_until)
            VALUES (${TokenKey.toId(key)}, ${key.userId}, ${key.contractId}, 7, ${row!.token}, ${lease.holder},
              ${lease.version}, ${lease.until})`
          const store = yield* SqlTokenStore.make({ tableName: table })
          const columns = yield* sql.onDialectOrElse({
            pg: () =>
              sql<{ readonly name: string }>`
                SELECT column_name AS name FROM information_schema.columns WHERE table_name = ${table}`,
            orElse: () => sql<{ readonly name: string }>`SELECT name FROM pragma_table_info(${table})`
          })
          const added = [
            "access_expires_at",
            "refresh_expires_at",
            "access_due_at",
            "refresh_due_at",
            "reconnect_reason",
            "reconnect_version",
            "reconnect_at"
          ]
          assert.includeMembers(columns.map((column) => column.name), added)
          const indexes = yield* sql.onDialectOrElse({
            pg: () =>
              sql<{ readonly name: string; readonly definition: string }>`
                SELECT indexname AS name, indexdef AS definition FROM pg_indexes WHERE tablename = ${table}`,
            orElse: () =>
              sql<{ readonly name: string; readonly definition: string }>`
                SELECT name, sql AS definition FROM sqlite_master
                WHERE type = 'index' AND tbl_name = ${table} AND sql IS NOT NULL`
          })
          assert.includeMembers(
            indexes.map((index) => index.name),
            ["access_due_at", "refresh_due_at", "access_expires_at", "refresh_expires_at", "reconnect"].map((name) =>
              `${table}_${name}`
            )
          )
          assert.match(
            indexes.find((index) => index.name === `${table}_reconnect`)!.definition,
            /WHERE \(?reconnect_reason IS NOT NULL\)?/
          )
          // The row keeps its token and lease, and has no expiries until its next write.
          const found = Option.getOrThrow(yield* store.get(key))
          assert.strictEqual(found.version, 7)
          assert.deepStrictEqual(found.lease, lease)
          assert.deepStrictEqual(
            yield* store.listDue({ expiry: "AccessToken", before: 4_000_000_000_000, limit: 10 }),
            []
          )
          assert.deepStrictEqual(
            yield* store.claimDue({ expiry: "RefreshToken", before: 4_000_000_000_000, until: 1, limit: 10 }),
            []
          )
          // backfillExpiries gives it its expiries (read from the token) without another write of it;
          // a second run finds nothing left.
          assert.deepStrictEqual(
            yield* SqlTokenStore.backfillExpiries({ tableName: table }),
            { rewritten: 1, skipped: 0, failed: 0 }
          )
          assert.deepStrictEqual(
            yield* SqlTokenStore.backfillExpiries({ tableName: table }),
            { rewritten: 0, skipped: 0, failed: 0 }
          )
          const backfilled = yield* store.listDue({ expiry: "AccessToken", before: 4_000_000_000_000, limit: 10 })
          assert.deepStrictEqual(backfilled.map((entry) => [entry.version, entry.accessExpiresAt]), [[
            7,
            2_000_000_000_000
          ]])
          assert.deepStrictEqual(Option.getOrThrow(yield* store.get(key)).lease, lease)
          const written = Option.getOrThrow(yield* store.compareAndSet(key, 7, token("a-new", "r-new", 1_000)))
          const due = { key, id: TokenKey.toId(key), version: written.version, accessExpiresAt: 1_000_000 }
          const listed = yield* store.listDue({ expiry: "AccessToken", before: 4_000_000_000_000, limit: 10 })
          assert.deepStrictEqual(listed, [{ ...due, refreshExpiresAt: 87_400_000 }])
          const claimed = yield* store.claimDue({
            expiry: "AccessToken",
            before: 2_000_000,
            until: 5_000_000,
            limit: 10
          })
          assert.deepStrictEqual(claimed.map((entry) => entry.id), [due.id])
          // A second start changes nothing: the claim stays.
          const again = yield* SqlTokenStore.make({ tableName: table })
          assert.deepStrictEqual(
            yield* again.claimDue({ expiry: "AccessToken", before: 2_000_000, until: 5_000_000, limit: 10 }),
            []
          )
          assert.isTrue(Option.isSome(yield* again.get(key)))
        }))

      it.effect("the five indexes of a table with a name of 63 characters have five names", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const table = `long_${suffix}_${Date.now()}_`.padEnd(63, "x")
          yield* SqlTokenStore.make({ tableName: table })
          const indexes = yield* sql.onDialectOrElse({
            pg: () =>
              sql<{ readonly name: string }>`SELECT indexname AS name FROM pg_indexes WHERE tablename = ${table}`,
            orElse: () =>
              sql<{ readonly name: string }>`
                SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ${table} AND sql IS NOT NULL`
          })
          const names = indexes.map((index) => index.name).filter((name) => !name.endsWith("_pkey"))
          assert.strictEqual(new Set(names).size, 5)
          assert.isTrue(names.every((name) => name.length <= 63))
        }))

      it.effect("listings, claims and marks: a limit of 0 or less is empty, other bad input is a TokenStoreError", () =>
        Effect.gen(function*() {
          const store = yield* SqlTokenStore.make({ tableName: `upkeep_input_${suffix}` })
          const key = fresh()
          const v1 = yield* store.set(key, token("a1", "r1", 1_000))
          assert.deepStrictEqual(yield* store.listDue({ expiry: "AccessToken", before: 2_000_000, limit: 0 }), [])
          assert.deepStrictEqual(
            yield* store.claimDue({ expiry: "AccessToken", before: 2_000_000, until: 3_000_000, limit: -1 }),
            []
          )
          assert.deepStrictEqual(yield* store.listReconnect({ limit: 0 }), [])
          const bad: ReadonlyArray<readonly [string, Effect.Effect<unknown, TokenStoreError>]> = [
            ["listDue", store.listDue({ expiry: "AccessToken", before: Number.NaN, limit: 10 })],
            ["listDue", store.listDue({ expiry: "Other" as TokenStore.Expiry, before: 2_000_000, limit: 10 })],
            [
              "listDue",
              store.listDue({ expiry: "AccessToken", before: 2_000_000, after: { at: 1.5, id: "x" }, limit: 10 })
            ],
            ["listDue", store.listDue({ expiry: "AccessToken", before: 2_000_000, limit: 2.5 })],
            ["claimDue", store.claimDue({ expiry: "RefreshToken", before: 2_000_000, until: Infinity, limit: 10 })],
            ["claimDue", store.claimDue({ expiry: "RefreshToken", before: 1e300, until: 3_000_000, limit: 10 })],
            [
              "claimDue",
              store.claimDue({ expiry: "RefreshToken", before: 2_000_000, until: 3_000_000, limit: Infinity })
            ],
            [
              "markReconnect",
              store.markReconnect(key, { reason: "Nope" as TokenStore.ReconnectReason, version: v1.version, at: 1 })
            ],
            [
              "markReconnect",
              store.markReconnect(key, { reason: "RefreshTokenExpired", version: v1.version, at: 0.5 })
            ],
            ["listReconnect", store.listReconnect({ after: 5 as unknown as string, limit: 10 })],
            ["listReconnect", store.listReconnect({ limit: Number.NaN })]
          ]
          for (const [operation, effect] of bad) {
            const error = yield* Effect.flip(effect)
            assert.strictEqual(error._tag, "TokenStoreError")
            assert.strictEqual(error.operation, `SqlTokenStore.${operation}`)
          }
          assert.isFalse(yield* store.markReconnect(key, { reason: "RefreshTokenExpired", version: 1.5, at: 1 }))
          // None of them changed the row.
          assert.isUndefined(Option.getOrThrow(yield* store.get(key)).reconnect)
          const claimed = yield* store.claimDue({ expiry: "RefreshToken", before: 90_000_000, until: 1, limit: 10 })
          assert.deepStrictEqual(claimed.map((entry) => entry.id), [TokenKey.toId(key)])
          yield* store.delete(key)
        }))

      it.effect("a mark \"needs reconnect\" that is not the store's fails for its key; one on an older version does not count", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const table = `marks_${suffix}`
          const store = yield* SqlTokenStore.make({ tableName: table })
          const key = fresh()
          const v1 = yield* store.set(key, token("a1", "r1", 1_000))
          const mark = { reason: "InvalidAccessToken", version: v1.version, at: 1_700_000_000_000 } as const
          assert.isTrue(yield* store.markReconnect(key, mark))
          assert.deepStrictEqual(Option.getOrThrow(yield* store.get(key)).reconnect, mark)
          yield* sql`UPDATE ${sql(table)} SET reconnect_reason = 'Bogus' WHERE id = ${TokenKey.toId(key)}`
          const error = yield* Effect.flip(store.get(key))
          assert.strictEqual(error.key?.userId, key.userId)
          assert.include(error.description, "needs reconnect")
          assert.strictEqual((yield* Effect.flip(store.listReconnect({ limit: 10_000 })))._tag, "TokenStoreError")
          // A writer that does not know marks writes a new version over it.
          yield* sql`
            UPDATE ${sql(table)} SET reconnect_reason = 'InvalidAccessToken', version = version + 1
            WHERE id = ${TokenKey.toId(key)}`
          assert.isUndefined(Option.getOrThrow(yield* store.get(key)).reconnect)
          assert.isFalse(
            (yield* store.listReconnect({ limit: 10_000 })).some((entry) => entry.key.userId === key.userId)
          )
          const listed = yield* store.listDue({ expiry: "AccessToken", before: 1_000_001, limit: 10_000 })
          assert.isTrue(listed.some((entry) => entry.key.userId === key.userId))
          yield* store.delete(key)
        }))

      it.effect("reencrypt leaves expiries, claims and marks as they are", () =>
        Effect.gen(function*() {
          const table = `reencrypt_upkeep_${suffix}_${Date.now()}`
          const before = yield* SqlTokenStore.make({ tableName: table, encryptionKey })
          const [a, b] = [fresh(), fresh()]
          yield* before.set(a, token("a1", "r1", 1_000))
          const vb = yield* before.set(b, token("b1", "r1", 2_000))
          const claimed = yield* before.claimDue({ expiry: "AccessToken", before: 1_500_000, until: 5e12, limit: 10 })
          assert.deepStrictEqual(claimed.map((entry) => entry.id), [TokenKey.toId(a)])
          const mark = { reason: "RefreshTokenExpired", version: vb.version, at: 123 } as const
          assert.isTrue(yield* before.markReconnect(b, mark))
          const encryption = {
            current: { id: "2025-06", key: otherKey },
            previous: [{ id: "2024-01", key: encryptionKey }]
          }
          const result = yield* SqlTokenStore.reencrypt({ tableName: table, encryption })
          assert.strictEqual(result.rewritten, 2)
          const after = yield* SqlTokenStore.make({ tableName: table, encryption })
          assert.deepStrictEqual(Option.getOrThrow(yield* after.get(b)).reconnect, mark)
          assert.deepStrictEqual(
            yield* after.claimDue({ expiry: "AccessToken", before: 3_000_000, until: 5e12, limit: 10 }),
            []
          )
          const listed = yield* after.listDue({ expiry: "AccessToken", before: 3_000_000, limit: 10 })
          assert.deepStrictEqual(listed.map((entry) => [entry.id, entry.accessExpiresAt, entry.refreshExpiresAt]), [[
            TokenKey.toId(a),
            1_000_000,
            87_400_000
          ]])
          assert.deepStrictEqual((yield* after.listReconnect({ limit: 10 })).map((entry) => entry.reconnect), [mark])
        }))

      it.effect("a lease left on an older version (by a writer that does not know leases) does not block", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const table = `stale_lease_${suffix}`
          const store = yield* SqlTokenStore.make({ tableName: table })
          const key = fresh()
          const v1 = yield* store.set(key, token("a1", "r1"))
          assert.isTrue(yield* store.acquireLease(key, { holder: "p1", version: v1.version, until: 2_000_000_000_000 }))
          // An older release rewrites the token and its version, leaving the lease columns.
          yield* sql`UPDATE ${sql(table)} SET version = version + 1 WHERE id = ${TokenKey.toId(key)}`
          const lease = { holder: "p2", version: v1.version + 1, until: 2_000_000_000_000 }
          assert.isTrue(yield* store.acquireLease(key, lease))
          assert.deepStrictEqual(Option.getOrThrow(yield* store.get(key)).lease, lease)
        }))

      it.effect("a corrupted row fails with TokenStoreError for its key only", () =>
        Effect.gen(function*() {
          const table = `corrupt_${suffix}`
          const store = yield* SqlTokenStore.make({ tableName: table })
          const bad = fresh()
          const good = fresh()
          yield* store.set(bad, token("a-bad", "r-bad"))
          yield* store.set(good, token("a-good", "r-good"))
          yield* writeRow(table, bad, "{\"accessToken\": garbage")
          const error = yield* Effect.flip(store.get(bad))
          assert.strictEqual(error._tag, "TokenStoreError")
          assert.strictEqual(error.operation, "SqlTokenStore.get")
          assert.strictEqual(error.key?.userId, bad.userId)
          assert.notInclude(error.message, "garbage")
          assert.strictEqual(Option.isSome(yield* store.get(good)), true)
          // The key is usable again once written.
          yield* store.set(bad, token("a2", "r2"))
          assert.strictEqual(Option.isSome(yield* store.get(bad)), true)
        }))

      it.effect("acquireLeaseAndGet: one statement takes the lease, a corrupted row fails with its TokenStoreError", () =>
        Effect.gen(function*() {
          const table = `lease_and_get_${suffix}`
          const store = yield* SqlTokenStore.make({ tableName: table })
          const acquireLeaseAndGet = store.acquireLeaseAndGet!
          const key = fresh()
          const v1 = yield* store.set(key, token("a1", "r1"))
          const lease = { holder: "p1", version: v1.version, until: 2_000_000_000_000 }
          const taken = yield* acquireLeaseAndGet(key, lease)
          assert.isTrue(taken.acquired)
          assert.deepStrictEqual(Option.getOrThrow(taken.current).lease, lease)
          assert.strictEqual(Redacted.value(Option.getOrThrow(taken.current).token.refreshToken.value), "r1")
          yield* store.endLease(key, lease, "Released")
          // A row that does not decode: the operation's own error, naming the key and no value.
          yield* writeRow(table, key, "{\"accessToken\": garbage")
          const error = yield* Effect.flip(acquireLeaseAndGet(key, { ...lease, holder: "p2" }))
          assert.strictEqual(error._tag, "TokenStoreError")
          assert.strictEqual(error.operation, "SqlTokenStore.acquireLeaseAndGet")
          assert.strictEqual(error.key?.userId, key.userId)
          assert.notInclude(error.message, "garbage")
          // Refused on a missing key: no row, no lease.
          const missing = yield* acquireLeaseAndGet(fresh(), lease)
          assert.isFalse(missing.acquired)
          assert.isTrue(Option.isNone(missing.current))
        }))

      it.effect("encrypted: no token value in clear in the database", () =>
        Effect.gen(function*() {
          const table = `sealed_${suffix}`
          const store = yield* SqlTokenStore.make({ tableName: table, encryptionKey })
          const key = fresh()
          yield* store.set(key, token("access-secret-value", "refresh-secret-value"))
          const raw = yield* readRow(table, key)
          assert.isNotNull(raw)
          assert.notInclude(raw!, "access-secret-value")
          assert.notInclude(raw!, "refresh-secret-value")
          assert.notInclude(raw!, "digime-user")
          assert.isTrue(raw!.startsWith("aesgcm2."))
          // Two writes of the same token differ (fresh IV).
          yield* store.set(key, token("access-secret-value", "refresh-secret-value"))
          assert.notStrictEqual(yield* readRow(table, key), raw)
        }))

      it.effect("encrypted: a tampered or moved ciphertext fails for that key only", () =>
        Effect.gen(function*() {
          const table = `tamper_${suffix}`
          const store = yield* SqlTokenStore.make({ tableName: table, encryptionKey })
          const a = fresh()
          const b = fresh()
          const c = fresh()
          yield* store.set(a, token("a1", "r1"))
          yield* store.set(b, token("b1", "r1"))
          yield* store.set(c, token("c1", "r1"))
          const rawA = (yield* readRow(table, a))!
          const last = rawA.at(-1) === "A" ? "B" : "A"
          yield* writeRow(table, a, rawA.slice(0, -1) + last)
          // A ciphertext copied from another row does not open under this row's key.
          yield* writeRow(table, b, (yield* readRow(table, c))!)
          const errorA = yield* Effect.flip(store.get(a))
          assert.strictEqual(errorA._tag, "TokenStoreError")
          assert.strictEqual(errorA.key?.userId, a.userId)
          const errorB = yield* Effect.flip(store.get(b))
          assert.strictEqual(errorB.key?.userId, b.userId)
          assert.include(errorB.description, "does not authenticate")
          assert.strictEqual(Option.isSome(yield* store.get(c)), true)
        }))

      it.effect("a wrong key, a missing key or an unexpected clear row fails with TokenStoreError", () =>
        Effect.gen(function*() {
          const table = `keys_${suffix}`
          const sealed = yield* SqlTokenStore.make({ tableName: table, encryptionKey })
          const other = yield* SqlTokenStore.make({ tableName: table, encryptionKey: otherKey })
          const clear = yield* SqlTokenStore.make({ tableName: table })
          const key = fresh()
          yield* sealed.set(key, token("a1", "r1"))
          const wrong = yield* Effect.flip(other.get(key))
          assert.strictEqual(wrong._tag, "TokenStoreError")
          assert.include(wrong.description, "another encryption key")
          const missing = yield* Effect.flip(clear.get(key))
          assert.include(missing.description, "no encryptionKey")
          const plain = fresh()
          yield* clear.set(plain, token("a1", "r1"))
          const unexpected = yield* Effect.flip(sealed.get(plain))
          assert.include(unexpected.description, "not encrypted")
          // The wrong key cannot be used to compare-and-set either: nothing is overwritten blindly.
          const before = Option.getOrThrow(yield* sealed.get(key))
          assert.isTrue(Option.isNone(yield* other.compareAndSet(key, before.version - 1, token("x", "y"))))
        }))

      it.effect("an encryption key of the wrong size is refused when the store is made", () =>
        Effect.gen(function*() {
          const error = yield* Effect.flip(
            SqlTokenStore.make({ encryptionKey: Redacted.make<Uint8Array | string>(new Uint8Array(16)) })
          )
          assert.strictEqual(error._tag, "InvalidConfig")
          const name = yield* Effect.flip(SqlTokenStore.make({ tableName: "tokens; DROP TABLE x" }))
          assert.strictEqual(name._tag, "InvalidConfig")
        }))

      it.effect("pending authorizations: found once, then already used; unknown and expired apart", () =>
        Effect.gen(function*() {
          const pending = yield* SqlPendingAuthorizations.make({
            pendingTableName: `pending_${suffix}`,
            encryptionKey
          })
          const now = DateTime.unsafeMake(1_700_000_000_000)
          const entry: PendingAuthorizations.Pending = {
            key: fresh(),
            kind: "authorize",
            codeVerifier: Redacted.make("verifier-secret"),
            callbackUrl: "https://app.example/cb",
            expiresAt: DateTime.add(now, { minutes: 10 })
          }
          const state = crypto.randomUUID()
          yield* pending.put(state, entry)
          const found = yield* pending.consume(state, now)
          assert.strictEqual(found._tag, "Found")
          if (found._tag !== "Found") return
          assert.strictEqual(found.pending.key.userId, entry.key.userId)
          assert.strictEqual(found.pending.kind, "authorize")
          assert.strictEqual(Redacted.value(found.pending.codeVerifier), "verifier-secret")
          assert.strictEqual(found.pending.callbackUrl, "https://app.example/cb")
          assert.strictEqual(DateTime.toEpochMillis(found.pending.expiresAt), DateTime.toEpochMillis(entry.expiresAt))
          assert.strictEqual((yield* pending.consume(state, now))._tag, "AlreadyUsed")
          assert.strictEqual((yield* pending.consume(crypto.randomUUID(), now))._tag, "Unknown")
          const late = crypto.randomUUID()
          yield* pending.put(late, entry)
          assert.strictEqual((yield* pending.consume(late, DateTime.add(now, { minutes: 11 })))._tag, "Expired")
          // Purged an hour after expiry.
          assert.strictEqual((yield* pending.consume(late, DateTime.add(now, { hours: 2 })))._tag, "Unknown")
          // Of two concurrent callbacks with the same state, one finds it.
          const raced = crypto.randomUUID()
          yield* pending.put(raced, entry)
          const results = yield* Effect.all([pending.consume(raced, now), pending.consume(raced, now)], {
            concurrency: "unbounded"
          })
          assert.deepStrictEqual(results.map((r) => r._tag).sort(), ["AlreadyUsed", "Found"])
          // Neither the state nor the verifier is stored in clear.
          const sql = yield* SqlClient.SqlClient
          const rows = yield* sql<Record<string, unknown>>`SELECT * FROM ${sql(`pending_${suffix}`)}`
          const dump = JSON.stringify(rows)
          assert.notInclude(dump, "verifier-secret")
          assert.notInclude(dump, state)
        }))

      it.effect("the DigimeClient refreshes once on expiry and stores before use", () =>
        Effect.gen(function*() {
          const sqlStore = yield* SqlTokenStore.make({ tableName: `flow_${suffix}`, encryptionKey })
          const key = TokenKey.make(`user-${crypto.randomUUID()}`, contractId)
          yield* Effect.gen(function*() {
            const store = yield* TokenStore.TokenStore
            const simulator = yield* DigimeSimulator.DigimeSimulator
            yield* authorize(key)
            const before = Option.getOrThrow(yield* store.get(key))
            // 1 hour lifetime, 10 s wait margin: at 59 min 55 s callers wait for the refresh.
            yield* TestClock.adjust("3595 seconds")
            const use = AutoRefresh.withAutoRefresh(key, (credentials) =>
              Effect.gen(function*() {
                // Stored before use: what we are given is already the stored token.
                const now = Option.getOrThrow(yield* store.get(key))
                assert.isAbove(now.version, before.version)
                assert.strictEqual(Redacted.value(credentials.accessToken), Redacted.value(now.token.accessToken.value))
                yield* Effect.flatMap(DigimeClient.DigimeClient, (client) => client.readAccounts(credentials))
                return Redacted.value(credentials.accessToken)
              }))
            const seen = yield* Effect.all([use, use, use], { concurrency: "unbounded" })
            assert.strictEqual(new Set(seen).size, 1)
            assert.notStrictEqual(seen[0], Redacted.value(before.token.accessToken.value))
            assert.strictEqual((yield* simulator.stats).refreshes, 1)
          }).pipe(Effect.provide(clientOn(sqlStore)))
        }))
    })
  })
}

describe("SqlTokenStore migration on PostgreSQL", () => {
  it.live(
    "an up-to-date table is not locked: a start during a long transaction does not queue its readers",
    () =>
      Effect.gen(function*() {
        const table = `no_lock_${Date.now()}`
        yield* SqlTokenStore.migrate({ tableName: table, pendingTableName: `${table}_pending` })
        const sql = yield* SqlClient.SqlClient
        // Another session reads the table in a transaction that stays open (as a pg_dump does).
        const reading = yield* Effect.fork(
          sql.withTransaction(
            Effect.zipRight(sql`SELECT count(*) FROM ${sql(table)}`, Effect.never)
          ).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(inject("pgUrl")), applicationName: "reader" })))
        )
        // Until its lock on the table is held.
        yield* sql<{ readonly n: number }>`
        SELECT count(*)::int AS n FROM pg_locks WHERE relation = to_regclass(${table}) AND granted`.pipe(
          Effect.filterOrFail((rows) => (rows[0]?.n ?? 0) > 0),
          Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.intersect(Schedule.recurs(250))))
        )
        // A new instance starts: its migration must not wait for that transaction.
        const started = yield* SqlTokenStore.migrate({ tableName: table, pendingTableName: `${table}_pending` }).pipe(
          Effect.timeout("10 seconds"),
          Effect.either
        )
        yield* Fiber.interrupt(reading)
        assert.isTrue(started._tag === "Right", "the migration waited for the reading transaction")
      }).pipe(Effect.provide(PgLive)),
    30_000
  )

  it.live(
    "an up-to-date table is not locked against writers: a start during a long write does not wait for it",
    () =>
      Effect.gen(function*() {
        const table = `no_write_lock_${Date.now()}`
        yield* SqlTokenStore.make({ tableName: table })
        const sql = yield* SqlClient.SqlClient
        // Another session writes to the table in a transaction that stays open.
        const writing = yield* Effect.fork(
          sql.withTransaction(
            Effect.zipRight(sql`UPDATE ${sql(table)} SET token = token WHERE id = 'none'`, Effect.never)
          ).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(inject("pgUrl")), applicationName: "writer" })))
        )
        yield* sql<{ readonly n: number }>`
        SELECT count(*)::int AS n FROM pg_locks WHERE relation = to_regclass(${table}) AND granted`.pipe(
          Effect.filterOrFail((rows) => (rows[0]?.n ?? 0) > 0),
          Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.intersect(Schedule.recurs(250))))
        )
        // Its indexes are there: a new instance's migration must not wait for the writer's lock.
        const started = yield* SqlTokenStore.make({ tableName: table }).pipe(Effect.timeout("5 seconds"), Effect.either)
        yield* Fiber.interrupt(writing)
        assert.isTrue(started._tag === "Right", "the migration waited for the writing transaction")
      }).pipe(Effect.provide(PgLive)),
    30_000
  )
})

describe("SqlTokenStore claims on PostgreSQL", () => {
  const storeOn = (options: SqlTokenStore.Options) =>
    Effect.flatMap(
      Layer.build(PgLive),
      (context) =>
        SqlTokenStore.make(options).pipe(
          Effect.provideService(SqlClient.SqlClient, Context.get(context, SqlClient.SqlClient))
        )
    )

  it.live(
    "of four instances claiming at once, each on its own pool, every due key goes to exactly one",
    () =>
      Effect.gen(function*() {
        const options = { tableName: `claims_pg_${Date.now()}` }
        const stores = yield* Effect.all(Array.from({ length: 4 }, () => storeOn(options)))
        const keys = Array.from({ length: 200 }, fresh)
        yield* Effect.forEach(keys, (key, i) => stores[0]!.set(key, token("a", "r", 1_000 + i)), { concurrency: 10 })
        const claimAll = (store: TokenStore.Service) =>
          Effect.gen(function*() {
            const mine: Array<string> = []
            while (true) {
              const batch = yield* store.claimDue({ expiry: "AccessToken", before: 2_000_000, until: 5e12, limit: 10 })
              if (batch.length === 0) return mine
              for (const entry of batch) mine.push(entry.id)
            }
          })
        const claimed = yield* Effect.all(stores.map(claimAll), { concurrency: "unbounded" })
        const ids = claimed.flat()
        assert.strictEqual(ids.length, 200)
        assert.deepStrictEqual([...ids].sort(), keys.map(TokenKey.toId).sort())
        assert.isAbove(claimed.filter((mine) => mine.length > 0).length, 1, "the claims did not run at once")
      }).pipe(Effect.scoped),
    30_000
  )

  it.live("a claim is ordered by the due time each key had: a claim that ended counts from its end", () =>
    Effect.gen(function*() {
      const store = yield* storeOn({ tableName: `claim_order_pg_${Date.now()}` })
      const [a, b] = [fresh(), fresh()]
      yield* store.set(a, token("a", "r", 10))
      yield* store.set(b, token("b", "r", 150))
      const first = yield* store.claimDue({ expiry: "AccessToken", before: 100_000, until: 200_000, limit: 10 })
      assert.deepStrictEqual(first.map((entry) => entry.id), [TokenKey.toId(a)])
      const second = yield* store.claimDue({ expiry: "AccessToken", before: 300_000, until: 400_000, limit: 10 })
      assert.deepStrictEqual(second.map((entry) => entry.id), [TokenKey.toId(b), TokenKey.toId(a)])
    }).pipe(Effect.scoped))
})

describe("SqlTokenStore leases across processes", () => {
  // Each layer is a separate client (its own pool or file handle): two "processes".
  const twoClients = (client: Database) =>
    Effect.all([Layer.build(client), Layer.build(client)]).pipe(
      Effect.map(([a, b]) => [Context.get(a, SqlClient.SqlClient), Context.get(b, SqlClient.SqlClient)] as const)
    )
  const storeWith = (sql: SqlClient.SqlClient, options: SqlTokenStore.Options) =>
    SqlTokenStore.make(options).pipe(Effect.provideService(SqlClient.SqlClient, sql))
  const leaseOf = (holder: string, version: number) => ({ holder, version, until: Date.now() + 60_000 })

  for (const [name, database] of databases) {
    it.live(`${name}: of two processes racing for a version's lease, one takes it`, () =>
      Effect.gen(function*() {
        const [one, two] = yield* twoClients(database)
        const options = { tableName: `leases_${name === "PostgreSQL" ? "pg" : "sqlite"}` }
        const first = yield* storeWith(one, options)
        const second = yield* storeWith(two, options)
        const key = fresh()
        const v1 = yield* first.set(key, token("a1", "r1"))
        const won = yield* Effect.all(
          Array.from({ length: 8 }, (_, i) =>
            (i % 2 === 0 ? first : second).acquireLease(key, leaseOf(`process-${i}`, v1.version))),
          { concurrency: "unbounded" }
        )
        assert.strictEqual(
          won.filter((taken) =>
            taken
          ).length,
          1
        )
        const seen = [Option.getOrThrow(yield* first.get(key)), Option.getOrThrow(yield* second.get(key))]
        assert.strictEqual(seen[0]!.lease?.holder, `process-${won.indexOf(true)}`)
        assert.deepStrictEqual(seen[0]!.lease, seen[1]!.lease)
      }).pipe(Effect.scoped))
  }

  it.live("PostgreSQL: a lease outlives its holder's session; the holder writes its token over a new one", () =>
    Effect.gen(function*() {
      const holderPool = PgClient.layer({ url: Redacted.make(inject("pgUrl")), applicationName: "lease-holder" })
      const one = Context.get(yield* Layer.build(holderPool), SqlClient.SqlClient)
      const two = Context.get(yield* Layer.build(PgLive), SqlClient.SqlClient)
      const options = { tableName: "leases_pg" }
      const first = yield* storeWith(one, options)
      const second = yield* storeWith(two, options)
      const key = fresh()
      const v1 = yield* first.set(key, token("a1", "r1"))
      assert.isTrue(yield* first.acquireLease(key, leaseOf("holder", v1.version)))
      // Every session of the holder's pool dies (pg_terminate_backend, an idle timeout, a dropped
      // connection): the lease is a row, not a session, so it stays.
      const killed = yield* two<{ readonly killed: boolean }>`
        SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE application_name = 'lease-holder'
      `
      assert.isAtLeast(killed.filter((row) => row.killed).length, 1)
      assert.strictEqual(Option.getOrThrow(yield* second.get(key)).lease?.holder, "holder")
      assert.isFalse(yield* second.acquireLease(key, leaseOf("other", v1.version)))
      // The holder's pool reconnects: its compare-and-set ends the lease.
      const written = yield* first.compareAndSet(key, v1.version, token("a2", "r2")).pipe(
        Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo("10 seconds")))
      )
      assert.isTrue(Option.isSome(written))
      assert.isUndefined(Option.getOrThrow(yield* second.get(key)).lease)
    }).pipe(Effect.scoped))
})

describe("SqlTokenStore: refreshes hold no connection", () => {
  const SmallPool = Layer.unwrapEffect(
    Effect.sync(() => PgClient.layer({ url: Redacted.make(inject("pgUrl")), maxConnections: 2 }))
  )

  it.live("ten slow refreshes in flight on a pool of two: another key's reads go through meanwhile", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const store = yield* TokenStore.TokenStore
      const keys = Array.from({ length: 10 }, () => fresh())
      const other = fresh()
      for (const key of [...keys, other]) yield* authorize(key)
      // Each refresh is processed, then answered after 10 minutes (never, for this test).
      for (const _ of keys) yield* simulator.injectFault({ _tag: "Delay", endpoint: "token", delay: "10 minutes" })
      const callers = yield* Effect.forEach(
        keys,
        (key) => Effect.fork(Effect.flatMap(TokenManager.TokenManager, (manager) => manager.refresh(key)))
      )
      // Wait (real time) until every refresh has reached digi.me: each one holds its lease.
      yield* Effect.flatMap(
        simulator.stats,
        (stats) => stats.requests.token >= 11 + 10 ? Effect.void : Effect.fail("wait")
      )
        .pipe(Effect.retry(Schedule.spaced("20 millis")), Effect.timeout("20 seconds"))
      // A read of another key, and of a refreshing one, while all ten wait for their answers.
      assert.isTrue(Option.isSome(yield* store.get(other)))
      assert.strictEqual(Option.getOrThrow(yield* store.get(keys[0]!)).lease?.version !== undefined, true)
      assert.isTrue(callers.every((caller) => caller.unsafePoll() === null))
      yield* Effect.forEach(callers, Fiber.interrupt)
    }).pipe(Effect.provide(
      DigimeTest.layer({
        contracts: [testContract],
        // The refreshes time out, so that the layer's shutdown (which waits for them) ends.
        config: { requestTimeout: "15 seconds" },
        store: SqlTokenStore.layer({ tableName: "pool_pg" }).pipe(Layer.provide(SmallPool), Layer.orDie)
      }).pipe(Layer.orDie)
    )))
})

describe("SqlTokenStore: rows that cannot be read", () => {
  for (const [name, database] of databases) {
    it.effect(`${name}: a claim leaves a bad row claimed and hands out the others; a listing fails with TokenStoreError`, () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const table = `bad_rows_${name === "PostgreSQL" ? "pg" : "sqlite"}_${Date.now()}`
        const store = yield* SqlTokenStore.make({ tableName: table })
        const [good, bad] = [fresh(), fresh()]
        yield* store.set(good, token("a1", "r1", 1_000))
        yield* store.set(bad, token("a2", "r2", 1_000))
        // A padded user id, written behind the store's back: not a key TokenKey accepts.
        yield* sql`UPDATE ${sql(table)} SET user_id = ${" padded "} WHERE id = ${TokenKey.toId(bad)}`
        const claimed = yield* store.claimDue({ expiry: "AccessToken", before: 2_000_000, until: 5_000_000, limit: 10 })
        assert.deepStrictEqual(claimed.map((entry) => entry.id), [TokenKey.toId(good)])
        // The bad row was claimed all the same: not handed out again before its claim ends.
        assert.deepStrictEqual(
          yield* store.claimDue({ expiry: "AccessToken", before: 2_000_000, until: 5_000_000, limit: 10 }),
          []
        )
        const error = yield* Effect.flip(store.listDue({ expiry: "AccessToken", before: 2_000_000, limit: 10 }))
        assert.strictEqual(error._tag, "TokenStoreError")
        assert.include(error.message, "SqlTokenStore.listDue")
      }).pipe(Effect.provide(database), Effect.orDie))
  }
})
