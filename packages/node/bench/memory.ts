/**
 * 6. Memory: V8 heap per key with 100,000 keys, after a full garbage collection, against the least
 * a process can keep per token: one `Map` entry of plain strings and numbers (the two token values,
 * their expiries, the digi.me user and consent ids, a version) under the key's id.
 *
 * - stored: `TokenStore.layerMemory` holding the tokens (`UserAccessToken` with `Redacted` values
 *   and `DateTime` expiries);
 * - cached: the client's token cache in front of a durable store (SQLite), after one `TokenManager.get` per
 *   key, with room for every key; the rows themselves live in SQLite (here in memory), outside the V8 heap.
 *
 * Then what the bounds keep, in bytes for the whole structure: the same reads with the default
 * `tokenCacheCapacity` (10,000), and ten times as many authorizations started as keys in
 * `PendingAuthorizations.makeMemory` (default capacity 10,000).
 *
 * Token values are 43 characters (32 random bytes in base64url), as the simulator's; each value is
 * a string of its own, as a token read from the wire or a database would be.
 */
import { PendingAuthorizations, TokenKey, TokenManager, TokenStore, UserAccessToken } from "@digime-effect/core"
import { DateTime, Effect, Redacted } from "effect"
import * as Crypto from "node:crypto"
import { clientLayer, contractId, type SectionOptions, startSimulator, storeLayer } from "./support.js"

const section = "6 memory"

const heapUsed = () => {
  // Twice: the first collection can leave finalizable garbage for the second.
  globalThis.gc!()
  globalThis.gc!()
  return process.memoryUsage().heapUsed
}

const random = (bytes: number) => Crypto.randomBytes(bytes).toString("base64url")
const userId = (i: number) => `user-${String(i).padStart(6, "0")}`

interface Plain {
  readonly accessToken: string
  readonly accessExpiresAt: number
  readonly refreshToken: string
  readonly refreshExpiresAt: number
  readonly digimeUserId: string
  readonly consentId: string
  readonly version: number
}

// Valid for the whole run, whenever it runs: `getToken` must serve each token without a refresh.
const accessExpiresAt = (i: number) => Date.now() + 24 * 3_600_000 + i * 1_000
const refreshExpiresAt = (i: number) => Date.now() + 3_650 * 24 * 3_600_000 + i * 1_000

const plainToken = (version: number): Plain => ({
  accessToken: random(32),
  accessExpiresAt: accessExpiresAt(version),
  refreshToken: random(32),
  refreshExpiresAt: refreshExpiresAt(version),
  digimeUserId: random(12),
  consentId: random(12),
  version
})

const libraryToken = (i: number) =>
  new UserAccessToken.UserAccessToken({
    accessToken: new UserAccessToken.Token({
      value: Redacted.make(random(32)),
      expiresAt: DateTime.unsafeMake(accessExpiresAt(i))
    }),
    refreshToken: new UserAccessToken.Token({
      value: Redacted.make(random(32)),
      expiresAt: DateTime.unsafeMake(refreshExpiresAt(i))
    }),
    digimeUserId: random(12),
    consentId: random(12)
  })

/** Heap growth per key while `build` holds `n` keys. */
const perKey = <A>(n: number, build: () => A) => {
  const before = heapUsed()
  const held = build()
  const after = heapUsed()
  return { bytes: (after - before) / n, held }
}

export const run = (options: Omit<SectionOptions, "pgUrl">) =>
  Effect.gen(function*() {
    const n = options.quick ? 10_000 : 100_000

    const floor = perKey(n, () => {
      const map = new Map<string, Plain>()
      for (let i = 0; i < n; i++) map.set(`${contractId}/${userId(i)}`, plainToken(i))
      return map
    })

    const store = yield* TokenStore.makeMemory
    const storedBefore = heapUsed()
    for (let i = 0; i < n; i++) yield* store.set(TokenKey.make(userId(i), contractId), libraryToken(i))
    const stored = (heapUsed() - storedBefore) / n
    const record = (name: string, bytes: number) =>
      options.report.record({
        section,
        name: `${name}, ${n.toLocaleString("en")} keys`,
        value: bytes,
        unit: "bytes",
        floor: floor.bytes,
        floorName: "bytes plain Map entry",
        ratio: bytes / floor.bytes,
        details: { keys: n, floorBytesPerKey: floor.bytes }
      })
    record("heap per stored key (TokenStore.layerMemory)", stored)

    // The cache: n tokens in an SQLite store, read once each through the client.
    const server = yield* startSimulator({ accessTokenLifetime: "1 hour" })
    const cacheGrowth = (tokenCacheCapacity: number | undefined, tableName: string) =>
      Effect.gen(function*() {
        const sqlite = yield* TokenStore.TokenStore
        const manager = yield* TokenManager.TokenManager
        yield* sqlite.set(TokenKey.make(userId(0), contractId), libraryToken(0)) // creates the statements
        yield* Effect.forEach(
          Array.from({ length: n - 1 }, (_, i) => i + 1),
          (i) => sqlite.set(TokenKey.make(userId(i), contractId), libraryToken(i)),
          { discard: true }
        )
        const before = heapUsed()
        for (let i = 0; i < n; i++) yield* manager.get(TokenKey.make(userId(i), contractId))
        return heapUsed() - before
      }).pipe(
        Effect.orDie,
        Effect.provide(clientLayer(
          server,
          // In memory: the rows are written faster, and SQLite's memory is not V8's heap either way.
          storeLayer("sqlite", { pgUrl: "", tableName, inMemory: true }),
          { tokenCacheTtl: "1 hour", tokenCacheCapacity }
        ))
      )
    record("heap per cached key (client cache over SQLite)", (yield* cacheGrowth(n, "bench_memory")) / n)

    const bounded = (name: string, bytes: number, details: Readonly<Record<string, unknown>>) =>
      options.report.record({ section, name, value: bytes, unit: "bytes", details })
    bounded(
      `token cache after ${n.toLocaleString("en")} keys read, default capacity`,
      yield* cacheGrowth(undefined, "bench_memory_bounded"),
      { keys: n, capacity: 10_000 }
    )
    const pending = yield* PendingAuthorizations.makeMemory
    const started = n * 10
    const pendingBefore = heapUsed()
    for (let i = 0; i < started; i++) {
      yield* pending.put(random(32), {
        key: TokenKey.make(userId(i % n), contractId),
        kind: "authorize",
        codeVerifier: Redacted.make(random(32)),
        callbackUrl: "https://app.example/digime/callback",
        expiresAt: DateTime.unsafeMake(Date.now() + 600_000)
      })
    }
    bounded(
      `PendingAuthorizations.makeMemory after ${started.toLocaleString("en")} started, default capacity`,
      heapUsed() - pendingBefore,
      { started, ...(yield* pending.size) }
    )
    // Held until now, so that the floor's map is not collected while the others are measured.
    if (floor.held.size !== n) yield* Effect.dieMessage("memory: the floor map lost entries")
  }).pipe(Effect.scoped)
