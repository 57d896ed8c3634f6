/**
 * Encryption at rest and the rows the SQL stores read back (issue 12, findings 7 and 6b), on
 * PostgreSQL and SQLite: each attack is reproduced on the database and refused with a
 * `TokenStoreError`, leaving the row as it was; keys rotate without losing a row or a concurrent
 * write; fields of a newer version survive a re-encryption.
 *
 * The stored form (`aesgcm2.<key id>.<IV>.<ciphertext>`, additional data
 * `["aesgcm2", key id, row id, ...context]`) is spelled out here a second time, on purpose: to
 * write rows as a newer release of the library would, and to read what a re-encryption sealed.
 */
import type { PendingAuthorizations } from "@digime-effect/core"
import { TokenKey, UserAccessToken } from "@digime-effect/core"
import type { TokenStoreError } from "@digime-effect/core/DigimeError"
import { SqlPendingAuthorizations, SqlTokenStore } from "@digime-effect/node"
import { SqlClient, Statement } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Cause, DateTime, Effect, Either, Encoding, Exit, Layer, Option, Redacted, Schema } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { inject } from "vitest"

const PgLive = Layer.unwrapEffect(Effect.sync(() => PgClient.layer({ url: Redacted.make(inject("pgUrl")) })))
const dir = mkdtempSync(Path.join(tmpdir(), "digime-at-rest-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const SqliteLive = SqliteClient.layer({ filename: Path.join(dir, "at-rest.db") })

const randomKey = () => crypto.getRandomValues(new Uint8Array(32))
const bytesA = randomKey()
const bytesB = randomKey()
const keyA = { id: "key-a", key: Redacted.make<Uint8Array | string>(bytesA) }
const keyB = { id: "key_b", key: Redacted.make<Uint8Array | string>(Encoding.encodeBase64(bytesB)) }
const onlyA: SqlTokenStore.Encryption = { current: keyA }
const bWithA: SqlTokenStore.Encryption = { current: keyB, previous: [keyA] }
const onlyB: SqlTokenStore.Encryption = { current: keyB }

// Written by 0.1.0 (format `aesgcm1`, bound to the row id only) with this key, for the key
// `user-legacy` / `contract-1` and for the pending authorization of state `legacy-state`.
const legacy = {
  key: Redacted.make<Uint8Array | string>("QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8="),
  token: "aesgcm1.9nJvx62l.UHDa7VqWjd5-ogw1.jtVUEVXnur-0IuwvgeQ5pQlUIFzNYz8OL3blG7F0CF5rHsVHHaL5zMQsnB_hUiQ3vMvGPdNxh" +
    "xlN7Yr0b9nSo4PQF63aSY7Ra-N33QjSiEdUKCIzJF7AgDXKUlehZI19-gGQIaaQwOuHeiO7WO6V3JGi4oFKlnJ00JpJzq8wT45i48GnDJcDE0" +
    "0M2_bipTuy5nfBnl7ID-jYSkNsM0RslW-xadra61z_HcNPw_tCANXccUaO0HwypC-Us_r3AAKqPSSNk44gRWBNVUfl-hqPY8mvhfxNguEyY6m7",
  state: "legacy-state",
  verifier: "aesgcm1.9nJvx62l.sNUc39s-cQ7x3ynB.atdWnKEsDpDi4yguj0WNTpiDnmrIES0biZ3Gbss2Cg"
}
const legacyKey = TokenKey.make("user-legacy", "contract-1")

const token = (access: string, refresh: string): UserAccessToken.UserAccessToken =>
  new UserAccessToken.UserAccessToken({
    accessToken: new UserAccessToken.Token({
      value: Redacted.make(access),
      expiresAt: DateTime.unsafeMake(2_000_000_000_000)
    }),
    refreshToken: new UserAccessToken.Token({
      value: Redacted.make(refresh),
      expiresAt: DateTime.unsafeMake(2_000_086_400_000)
    }),
    digimeUserId: "digime-user",
    consentId: "consent-1"
  })
const accessOf = (versioned: Option.Option<{ readonly token: UserAccessToken.UserAccessToken }>) =>
  Redacted.value(Option.getOrThrow(versioned).token.accessToken.value)

const fresh = () => TokenKey.make(`user-${crypto.randomUUID()}`, "contract-1")

const rawRow = (table: string, key: TokenKey.TokenKey) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql<Record<string, unknown>>`SELECT * FROM ${sql(table)} WHERE id = ${TokenKey.toId(key)}`
  ).pipe(Effect.map((rows) => rows[0]!))

// Sets a column to an SQL expression, as someone with write access to the database would.
const tamper = (table: string, where: readonly [string, string], column: string, expression: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql`UPDATE ${sql(table)} SET ${sql(column)} = ${sql.literal(expression)} WHERE ${sql(where[0])} = ${where[1]}`
  )
const setToken = (table: string, key: TokenKey.TokenKey, value: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql`UPDATE ${sql(table)} SET token = ${value} WHERE id = ${TokenKey.toId(key)}`
  )

const stateHash = (state: string) =>
  Effect.promise(() => crypto.subtle.digest("SHA-256", new TextEncoder().encode(state))).pipe(
    Effect.map((digest) => Encoding.encodeBase64Url(new Uint8Array(digest)))
  )
const rawPending = (table: string, state: string) =>
  Effect.flatMap(
    stateHash(state),
    (hash) =>
      Effect.flatMap(
        SqlClient.SqlClient,
        (sql) => sql<Record<string, unknown>>`SELECT * FROM ${sql(table)} WHERE state_hash = ${hash}`
      )
  ).pipe(Effect.map((rows) => rows[0]))

const additionalData = (keyId: string, row: string, context: ReadonlyArray<string>) =>
  new TextEncoder().encode(JSON.stringify(["aesgcm2", keyId, row, ...context]))

/** Seals as a newer release of the library would. */
const sealAsNewer = (bytes: Uint8Array, keyId: string, row: string, version: number, plaintext: string) =>
  Effect.promise(async () => {
    const key = await crypto.subtle.importKey("raw", new Uint8Array(bytes), "AES-GCM", false, ["encrypt"])
    const iv = crypto.getRandomValues(new Uint8Array(12))
    const sealed = await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: additionalData(keyId, row, [String(version)]) },
      key,
      new TextEncoder().encode(plaintext)
    )
    return ["aesgcm2", keyId, Encoding.encodeBase64Url(iv), Encoding.encodeBase64Url(new Uint8Array(sealed))].join(".")
  })

/** Opens a stored token, to see what a re-encryption sealed. */
const openStored = (bytes: Uint8Array, row: string, version: number, stored: string) =>
  Effect.promise(async () => {
    const [format, keyId, iv, body] = stored.split(".")
    assert.strictEqual(format, "aesgcm2")
    const key = await crypto.subtle.importKey("raw", new Uint8Array(bytes), "AES-GCM", false, ["decrypt"])
    const plain = await crypto.subtle.decrypt(
      {
        name: "AES-GCM",
        iv: new Uint8Array(Either.getOrThrow(Encoding.decodeBase64Url(iv!))),
        additionalData: additionalData(keyId!, row, [String(version)])
      },
      key,
      new Uint8Array(Either.getOrThrow(Encoding.decodeBase64Url(body!)))
    )
    return new TextDecoder().decode(plain)
  })

/** The failure of `effect`, which must be a typed one: never a defect. */
const typedFailure = <A>(effect: Effect.Effect<A, TokenStoreError>) =>
  Effect.map(Effect.exit(effect), (exit) => {
    assert.isTrue(Exit.isFailure(exit), "expected a failure")
    const cause = (exit as Exit.Failure<A, TokenStoreError>).cause
    assert.isTrue(Option.isNone(Cause.dieOption(cause)), `a defect: ${Cause.pretty(cause)}`)
    const error = Option.getOrThrow(Cause.failureOption(cause))
    assert.strictEqual(error._tag, "TokenStoreError")
    return error
  })

const databases: ReadonlyArray<readonly [string, Layer.Layer<SqlClient.SqlClient, unknown>]> = [
  ["PostgreSQL", PgLive],
  ["SQLite", SqliteLive]
]

for (const [name, database] of databases) {
  const suffix = name === "PostgreSQL" ? "pg" : "sqlite"
  const isSqlite = name === "SQLite"

  describe(`encryption at rest on ${name}`, () => {
    it.layer(database, { timeout: 30_000 })((it) => {
      it.effect("an older ciphertext of the same row does not open (a restored backup's spent refresh token)", () =>
        Effect.gen(function*() {
          const tableName = `replay_${suffix}`
          const store = yield* SqlTokenStore.make({ tableName, encryption: onlyA })
          const key = fresh()
          const v1 = yield* store.set(key, token("a1", "r1"))
          const backup = (yield* rawRow(tableName, key)).token as string
          // Replaced by compare-and-set, by set, and across a delete: the backup never opens again.
          for (
            const write of [
              store.compareAndSet(key, v1.version, token("a2", "r2")),
              store.set(key, token("a3", "r3")),
              Effect.zipRight(store.delete(key), store.set(key, token("a4", "r4")))
            ]
          ) {
            yield* write
            const current = yield* rawRow(tableName, key)
            yield* setToken(tableName, key, backup)
            const restored = yield* rawRow(tableName, key)
            const error = yield* typedFailure(store.get(key))
            assert.strictEqual(error.operation, "SqlTokenStore.get")
            assert.strictEqual(error.key?.userId, key.userId)
            assert.include(error.description, "older than the row")
            assert.notInclude(error.message, backup)
            assert.deepStrictEqual(yield* rawRow(tableName, key), restored)
            yield* setToken(tableName, key, current.token as string)
            assert.isTrue(Option.isSome(yield* store.get(key)))
          }
          // Nor does a ciphertext whose version was moved instead.
          const version = Number((yield* rawRow(tableName, key)).version)
          yield* tamper(tableName, ["id", TokenKey.toId(key)], "version", String(version + 5))
          const error = yield* typedFailure(store.get(key))
          assert.include(error.description, "does not authenticate")
        }))

      it.effect("concurrent sets of one key each seal for the version they write", () =>
        Effect.gen(function*() {
          const tableName = `set_race_${suffix}`
          const store = yield* SqlTokenStore.make({ tableName, encryption: onlyA })
          const key = fresh()
          const written = yield* Effect.all(
            Array.from({ length: 8 }, (_, i) => store.set(key, token(`a${i}`, `r${i}`))),
            { concurrency: "unbounded" }
          )
          const versions = written.map((w) => w.version).sort((a, b) => a - b)
          assert.deepStrictEqual(versions, Array.from({ length: 8 }, (_, i) => i + 1))
          const last = written.find((w) => w.version === 8)!
          const stored = Option.getOrThrow(yield* store.get(key))
          assert.strictEqual(stored.version, 8)
          assert.strictEqual(
            Redacted.value(stored.token.accessToken.value),
            Redacted.value(last.token.accessToken.value)
          )
        }))

      it.effect("values of 0.1.0 open, as encryptionKey or as a previous key; reencrypt moves them to the current key", () =>
        Effect.gen(function*() {
          const tableName = `legacy_${suffix}`
          const pendingTableName = `legacy_pending_${suffix}`
          const sql = yield* SqlClient.SqlClient
          yield* SqlTokenStore.migrate({ tableName, pendingTableName })
          yield* sql`
            INSERT INTO ${sql(tableName)} (id, user_id, contract_id, version, token)
            VALUES (${TokenKey.toId(legacyKey)}, ${legacyKey.userId}, ${legacyKey.contractId}, 7, ${legacy.token})
          `
          const expiresAt = Date.now() + 600_000
          yield* sql`
            INSERT INTO ${sql(pendingTableName)}
              (state_hash, user_id, contract_id, kind, code_verifier, callback_url, expires_at, used)
            VALUES (${yield* stateHash(legacy.state)}, 'user-legacy', 'contract-1', 'authorize', ${legacy.verifier},
              'https://app.example/cb', ${expiresAt}, 0)
          `
          const single = yield* SqlTokenStore.make({ tableName, encryptionKey: legacy.key })
          const read = Option.getOrThrow(yield* single.get(legacyKey))
          assert.strictEqual(Redacted.value(read.token.accessToken.value), "a-legacy")
          assert.strictEqual(read.version, 7)
          const ring = {
            tableName,
            pendingTableName,
            encryption: { current: keyB, previous: [{ id: "old", key: legacy.key }] }
          }
          assert.strictEqual(accessOf(yield* (yield* SqlTokenStore.make(ring)).get(legacyKey)), "a-legacy")
          assert.deepStrictEqual(yield* SqlTokenStore.reencrypt(ring), { rewritten: 1, skipped: 0, failed: 0 })
          assert.deepStrictEqual(yield* SqlPendingAuthorizations.reencrypt(ring), {
            rewritten: 1,
            skipped: 0,
            failed: 0
          })
          const row = yield* rawRow(tableName, legacyKey)
          assert.isTrue((row.token as string).startsWith("aesgcm2.key_b."))
          assert.strictEqual(Number(row.version), 7)
          // The old key is dropped: everything still opens.
          const now = yield* SqlTokenStore.make({ tableName, encryption: onlyB })
          assert.strictEqual(accessOf(yield* now.get(legacyKey)), "a-legacy")
          const pending = yield* SqlPendingAuthorizations.make({ pendingTableName, encryption: onlyB })
          const found = yield* pending.consume(legacy.state, DateTime.unsafeMake(Date.now()))
          assert.strictEqual(found._tag, "Found")
          if (found._tag === "Found") assert.strictEqual(Redacted.value(found.pending.codeVerifier), "legacy-verifier")
        }))

      it.effect("rotation: rows of key A open with B current and A previous; reencrypt moves them all to B", () =>
        Effect.gen(function*() {
          const tableName = `rotate_${suffix}`
          const storeA = yield* SqlTokenStore.make({ tableName, encryption: onlyA })
          const keys = Array.from({ length: 5 }, fresh)
          const written = yield* Effect.forEach(keys, (key, i) => storeA.set(key, token(`a${i}`, `r${i}`)))
          const deleted = fresh()
          yield* storeA.set(deleted, token("gone", "gone"))
          yield* storeA.delete(deleted)
          const lease = { holder: "refresher", version: written[2]!.version, until: 1_900_000_000_000 }
          assert.isTrue(yield* storeA.acquireLease(keys[2]!, lease))

          const rotated = yield* SqlTokenStore.make({ tableName, encryption: bWithA })
          for (const [i, key] of keys.entries()) assert.strictEqual(accessOf(yield* rotated.get(key)), `a${i}`)
          // A write under the new ring seals with B at once.
          const moved = Option.getOrThrow(
            yield* rotated.compareAndSet(keys[0]!, written[0]!.version, token("b0", "b0"))
          )
          assert.isTrue(((yield* rawRow(tableName, keys[0]!)).token as string).startsWith("aesgcm2.key_b."))

          const before = yield* Effect.forEach(keys, (key) => rawRow(tableName, key))
          let batches = 0
          const counts = yield* SqlTokenStore.reencrypt({ tableName, encryption: bWithA, batchSize: 2 }).pipe(
            Statement.withTransformer((statement) => {
              if (statement.compile()[0].includes("ORDER BY id LIMIT")) batches++
              return Effect.succeed(statement)
            })
          )
          assert.deepStrictEqual(counts, { rewritten: 4, skipped: 0, failed: 0 })
          // Four rows to move, two a batch: two full batches and an empty one.
          assert.strictEqual(batches, 3)
          for (const [i, key] of keys.entries()) {
            const row = yield* rawRow(tableName, key)
            assert.isTrue((row.token as string).startsWith("aesgcm2.key_b."))
            // Same version, same lease, same time of last write: only the ciphertext changed.
            const { token: _after, ...rest } = row
            const { token: _before, ...restBefore } = before[i]!
            assert.deepStrictEqual(rest, restBefore)
          }
          assert.isNull((yield* rawRow(tableName, deleted)).token)

          // A dropped: everything opens with B alone, lease included; A alone opens nothing.
          const storeB = yield* SqlTokenStore.make({ tableName, encryption: onlyB })
          assert.strictEqual(accessOf(yield* storeB.get(keys[0]!)), "b0")
          assert.strictEqual(Option.getOrThrow(yield* storeB.get(keys[0]!)).version, moved.version)
          for (const [i, key] of keys.entries()) {
            if (i > 0) assert.strictEqual(accessOf(yield* storeB.get(key)), `a${i}`)
          }
          assert.deepStrictEqual(Option.getOrThrow(yield* storeB.get(keys[2]!)).lease, lease)
          const error = yield* typedFailure(storeA.get(keys[1]!))
          assert.include(error.description, "another encryption key")
          assert.deepStrictEqual(
            yield* SqlTokenStore.reencrypt({ tableName, encryption: bWithA }),
            { rewritten: 0, skipped: 0, failed: 0 }
          )
        }))

      it.effect("rows in clear are sealed by reencrypt with sealPlaintext, and only then", () =>
        Effect.gen(function*() {
          const tableName = `plain_${suffix}`
          const clear = yield* SqlTokenStore.make({ tableName })
          const keys = [fresh(), fresh()]
          yield* Effect.forEach(keys, (key, i) => clear.set(key, token(`plain-access-${i}`, `plain-refresh-${i}`)))
          const sealed = yield* SqlTokenStore.make({ tableName, encryption: onlyA })
          const refused = yield* typedFailure(sealed.get(keys[0]!))
          assert.include(refused.description, "not encrypted")
          const before = yield* rawRow(tableName, keys[0]!)
          assert.deepStrictEqual(
            yield* SqlTokenStore.reencrypt({ tableName, encryption: onlyA }),
            { rewritten: 0, skipped: 0, failed: 2 }
          )
          assert.deepStrictEqual(yield* rawRow(tableName, keys[0]!), before)
          assert.deepStrictEqual(
            yield* SqlTokenStore.reencrypt({ tableName, encryption: onlyA, sealPlaintext: true }),
            { rewritten: 2, skipped: 0, failed: 0 }
          )
          for (const [i, key] of keys.entries()) {
            const raw = (yield* rawRow(tableName, key)).token as string
            assert.isTrue(raw.startsWith("aesgcm2.key-a."))
            assert.notInclude(raw, "plain-")
            assert.strictEqual(accessOf(yield* sealed.get(key)), `plain-access-${i}`)
          }
          // Without a key there is nothing to seal with.
          const none = yield* Effect.flip(SqlTokenStore.reencrypt({ tableName }))
          assert.strictEqual(none._tag, "InvalidConfig")
        }))

      for (const [n, writer] of ["an old process (key A)", "a process with the new ring"].entries()) {
        it.effect(`a write by ${writer} while reencrypt rewrites the row is kept`, () =>
          Effect.gen(function*() {
            const tableName = `concurrent_${n}_${suffix}`
            const storeA = yield* SqlTokenStore.make({ tableName, encryption: onlyA })
            const other = n === 0 ? storeA : yield* SqlTokenStore.make({ tableName, encryption: bWithA })
            const key = fresh()
            const v1 = yield* storeA.set(key, token("a1", "r1"))
            let concurrent: Option.Option<{ readonly version: number }> = Option.none()
            // Just before reencrypt's conditional write, another process writes a new token.
            const counts = yield* SqlTokenStore.reencrypt({ tableName, encryption: bWithA }).pipe(
              Statement.withTransformer((statement) =>
                Option.isNone(concurrent) && statement.compile()[0].includes("SET token")
                  ? other.compareAndSet(key, v1.version, token("a-concurrent", "r-concurrent")).pipe(
                    Effect.tap((written) => (concurrent = written)),
                    Statement.withTransformerDisabled,
                    Effect.orDie,
                    Effect.as(statement)
                  )
                  : Effect.succeed(statement)
              )
            )
            const written = Option.getOrThrow(concurrent)
            // Sealed with A by the old process: read again and moved to B; with B already: left.
            assert.deepStrictEqual(counts, {
              rewritten: n === 0 ? 1 : 0,
              skipped: 0,
              failed: 0
            })
            const storeB = yield* SqlTokenStore.make({ tableName, encryption: onlyB })
            const stored = Option.getOrThrow(yield* storeB.get(key))
            assert.strictEqual(Redacted.value(stored.token.refreshToken.value), "r-concurrent")
            assert.strictEqual(stored.version, written.version)
            assert.strictEqual(stored.version, v1.version + 1)
          }))
      }

      it.effect("JSON fields of a newer version are read past, and kept by reencrypt", () =>
        Effect.gen(function*() {
          const tableName = `newer_${suffix}`
          const storeA = yield* SqlTokenStore.make({ tableName, encryption: onlyA })
          const key = fresh()
          const { version } = yield* storeA.set(key, token("a1", "r1"))
          const encoded = JSON.parse(yield* Schema.encode(UserAccessToken.UserAccessTokenFromJson)(token("a1", "r1")))
          const newer = {
            ...encoded,
            accessToken: { ...encoded.accessToken, tokenType: "Bearer" },
            scope: ["accounts", "files"],
            issuedBy: { region: "eu", at: 1_700_000_000 }
          }
          const id = TokenKey.toId(key)
          yield* setToken(tableName, key, yield* sealAsNewer(bytesA, keyA.id, id, version, JSON.stringify(newer)))
          const read = Option.getOrThrow(yield* storeA.get(key))
          assert.strictEqual(Redacted.value(read.token.accessToken.value), "a1")
          assert.strictEqual(read.token.consentId, "consent-1")
          assert.deepStrictEqual(
            yield* SqlTokenStore.reencrypt({ tableName, encryption: bWithA }),
            { rewritten: 1, skipped: 0, failed: 0 }
          )
          const stored = (yield* rawRow(tableName, key)).token as string
          assert.deepStrictEqual(JSON.parse(yield* openStored(bytesB, id, version, stored)), newer)
          // The same for a row in clear, sealed when encryption is turned on.
          const plainKey = fresh()
          const clear = yield* SqlTokenStore.make({ tableName })
          const plain = yield* clear.set(plainKey, token("p1", "p1"))
          yield* setToken(tableName, plainKey, JSON.stringify(newer))
          assert.strictEqual(accessOf(yield* clear.get(plainKey)), "a1")
          yield* SqlTokenStore.reencrypt({ tableName, encryption: onlyB, sealPlaintext: true })
          const sealed = (yield* rawRow(tableName, plainKey)).token as string
          assert.deepStrictEqual(
            JSON.parse(yield* openStored(bytesB, TokenKey.toId(plainKey), plain.version, sealed)),
            newer
          )
        }))

      it.effect("token rows holding what the store never writes fail with TokenStoreError, left as they were", () =>
        Effect.gen(function*() {
          const tableName = `bad_columns_${suffix}`
          const store = yield* SqlTokenStore.make({ tableName })
          const cases: ReadonlyArray<readonly [string, string, string]> = [
            ["version", "0", "version"],
            ["version", "-5", "version"],
            ["version", "9223372036854775807", "version"],
            ["version", "9007199254740992", "version"],
            ["lease_holder", "'holder'", "lease"],
            ["lease_version", "9223372036854775807", "lease"],
            ...(isSqlite
              ? [
                ["version", "'seven'", "version"],
                ["version", "1.5", "version"],
                ["version", "x'07'", "version"],
                ["token", "x'7b7d'", "not text"],
                ["lease_until", "'soon'", "lease"],
                ["lease_version", "2.5", "lease"]
              ] as const
              : [])
          ]
          for (const [column, expression, expected] of cases) {
            const key = fresh()
            yield* store.set(key, token("a1", "r1"))
            if (column !== "lease_holder") {
              yield* store.acquireLease(key, { holder: "h", version: 1, until: 1_900_000_000_000 })
            }
            yield* tamper(tableName, ["id", TokenKey.toId(key)], column, expression)
            const before = yield* rawRow(tableName, key)
            const error = yield* typedFailure(store.get(key))
            assert.include(error.description, expected, `${column} = ${expression}`)
            assert.strictEqual(error.key?.userId, key.userId)
            assert.deepStrictEqual(yield* rawRow(tableName, key), before)
          }
        }))

      describe("pending authorizations", () => {
        const now = DateTime.unsafeMake(1_700_000_000_000)
        const entry = (): PendingAuthorizations.Pending => ({
          key: fresh(),
          kind: "authorize",
          codeVerifier: Redacted.make("verifier-secret"),
          callbackUrl: "https://app.example/cb",
          expiresAt: DateTime.add(now, { minutes: 10 })
        })

        it.effect("a row holding what put never writes fails with TokenStoreError, not a defect, and stays", () =>
          Effect.gen(function*() {
            const pendingTableName = `pending_bad_${suffix}`
            const pending = yield* SqlPendingAuthorizations.make({ pendingTableName, encryption: onlyA })
            const expiry = String(DateTime.toEpochMillis(now) + 3_600_000)
            const cases: ReadonlyArray<readonly [string, string, string]> = [
              ["expires_at", "9000000000000000", "expiry"],
              ["expires_at", "-1", "expiry"],
              ["expires_at", "9223372036854775807", "expiry"],
              ["used", "2", "used"],
              ["kind", "'admin'", "kind"],
              ["user_id", "''", "key"],
              // Valid values, but not those the verifier was sealed with.
              ["expires_at", expiry, "does not authenticate"],
              ["user_id", "'someone-else'", "does not authenticate"],
              ["callback_url", "'https://evil.example/cb'", "does not authenticate"],
              ...(isSqlite
                ? [
                  ["expires_at", "'NaN'", "expiry"],
                  ["expires_at", "'soon'", "expiry"],
                  ["expires_at", "1.5", "expiry"],
                  ["expires_at", "1e300", "expiry"],
                  ["expires_at", "x'00'", "expiry"],
                  ["used", "'x'", "used"],
                  ["code_verifier", "x'00'", "not text"],
                  ["callback_url", "x'01'", "callback"],
                  ["user_id", "x'02'", "key"]
                ] as const
                : [])
            ]
            for (const [column, expression, expected] of cases) {
              const state = crypto.randomUUID()
              yield* pending.put(state, entry())
              yield* tamper(pendingTableName, ["state_hash", yield* stateHash(state)], column, expression)
              const before = yield* rawPending(pendingTableName, state)
              for (let attempt = 0; attempt < 2; attempt++) {
                const error = yield* typedFailure(pending.consume(state, now))
                assert.strictEqual(error.operation, "SqlTokenStore.consume")
                // The key is named once it is known (a broken key column is the one case it is not).
                if (column !== "user_id" || expected !== "key") assert.isDefined(error.key)
                assert.include(error.description, expected, `${column} = ${expression}`)
                assert.notInclude(error.message, "verifier-secret")
                assert.deepStrictEqual(yield* rawPending(pendingTableName, state), before)
              }
            }
            // An untouched entry is still found.
            const state = crypto.randomUUID()
            yield* pending.put(state, entry())
            assert.strictEqual((yield* pending.consume(state, now))._tag, "Found")
          }))

        it.effect("in clear, an expiry out of range is refused the same way", () =>
          Effect.gen(function*() {
            const pendingTableName = `pending_clear_${suffix}`
            const pending = yield* SqlPendingAuthorizations.make({ pendingTableName })
            const state = crypto.randomUUID()
            yield* pending.put(state, entry())
            yield* tamper(pendingTableName, ["state_hash", yield* stateHash(state)], "expires_at", "9000000000000000")
            const before = yield* rawPending(pendingTableName, state)
            const error = yield* typedFailure(pending.consume(state, now))
            assert.include(error.description, "expiry")
            assert.deepStrictEqual(yield* rawPending(pendingTableName, state), before)
          }))

        it.effect("rotation: reencrypt moves verifiers to the new key; a consumed entry still reads as used", () =>
          Effect.gen(function*() {
            const pendingTableName = `pending_rotate_${suffix}`
            const pendingA = yield* SqlPendingAuthorizations.make({ pendingTableName, encryption: onlyA })
            const states = Array.from({ length: 3 }, () => crypto.randomUUID())
            for (const state of states) yield* pendingA.put(state, entry())
            assert.strictEqual((yield* pendingA.consume(states[0]!, now))._tag, "Found")
            assert.deepStrictEqual(
              yield* SqlPendingAuthorizations.reencrypt({ pendingTableName, encryption: bWithA, batchSize: 1 }),
              { rewritten: 3, skipped: 0, failed: 0 }
            )
            const pendingB = yield* SqlPendingAuthorizations.make({ pendingTableName, encryption: onlyB })
            assert.strictEqual((yield* pendingB.consume(states[0]!, now))._tag, "AlreadyUsed")
            for (const state of states.slice(1)) {
              assert.isTrue(
                ((yield* rawPending(pendingTableName, state))!.code_verifier as string).startsWith("aesgcm2.key_b.")
              )
              const found = yield* pendingB.consume(state, now)
              assert.strictEqual(found._tag, "Found")
              if (found._tag === "Found") {
                assert.strictEqual(Redacted.value(found.pending.codeVerifier), "verifier-secret")
              }
            }
          }))
      })
    })
  })
}

describe("encryption options", () => {
  it.layer(SqliteLive)((it) => {
    it.effect("a bad key ring is refused with InvalidConfig naming the field, before any row is read", () =>
      Effect.gen(function*() {
        const refused = (options: SqlTokenStore.ReencryptOptions) =>
          Effect.flip(SqlTokenStore.make(options)).pipe(
            Effect.zip(Effect.flip(SqlPendingAuthorizations.make(options))),
            Effect.map(([a, b]) => {
              assert.strictEqual(a._tag, "InvalidConfig")
              assert.deepStrictEqual(a, b)
              return a as unknown as { readonly field: string; readonly message: string }
            })
          )
        const keyText = Encoding.encodeBase64Url(bytesA)
        const cases: ReadonlyArray<readonly [SqlTokenStore.ReencryptOptions, string]> = [
          [{ encryption: onlyA, encryptionKey: keyA.key }, "encryption"],
          [{ encryption: { current: keyA, previous: [{ ...keyB, id: keyA.id }] } }, "encryption.previous[0].id"],
          [{ encryption: { current: { ...keyA, id: "a.b" } } }, "encryption.current.id"],
          [{ encryption: { current: { ...keyA, id: "" } } }, "encryption.current.id"],
          [{ encryption: { current: { ...keyA, id: `k-${keyText}` } } }, "encryption.current.id"],
          [
            { encryption: { current: keyA, previous: [{ id: "short", key: Redacted.make(new Uint8Array(16)) }] } },
            "encryption.previous[0].key"
          ]
        ]
        for (const [options, field] of cases) {
          const error = yield* refused(options)
          assert.strictEqual(error.field, field)
          assert.notInclude(error.message, keyText)
        }
        const batch = yield* Effect.flip(SqlTokenStore.reencrypt({ encryption: onlyA, batchSize: 0 }))
        assert.strictEqual(batch._tag, "InvalidConfig")
      }))
  })
})
