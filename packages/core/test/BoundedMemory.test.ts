/**
 * What this process keeps in memory is bounded in size and in time: the token cache of
 * `TokenManager` (`tokenCacheCapacity`, `tokenCacheTtl`) and the in-memory `PendingAuthorizations`
 * (`capacity`, `maxPerKey`, an hour of memory of ended authorizations). Sizes are counted, never
 * timed; time is the TestClock's.
 */
import { DigimeConfig, PendingAuthorizations, TokenKey, TokenManager, TokenStore } from "@digime-effect/core"
import { assert, describe, it } from "@effect/vitest"
import { DateTime, Effect, Redacted, TestClock } from "effect"
import { authorize, contractId, countingStore, key, stack, stored } from "./fixtures.js"

// Never `key` (user-1), the key the fixtures authorize.
const userKey = (i: number) => TokenKey.make(`reader-${i}`, contractId)

/** Stores the token of `key` under `n` more keys, straight in the store (no digi.me request). */
const seedUsers = (n: number) =>
  Effect.gen(function*() {
    yield* authorize()
    const token = (yield* stored()).token
    const store = yield* TokenStore.TokenStore
    const keys = Array.from({ length: n }, (_, i) => userKey(i))
    for (const k of keys) yield* store.set(k, token)
    return keys
  })

describe("the token cache", () => {
  it.effect("100,000 users read once: the default capacity of 10,000 tokens stays in memory, the latest", () => {
    const counter = { gets: 0 }
    return Effect.gen(function*() {
      const keys = yield* seedUsers(100_000)
      const manager = yield* TokenManager.TokenManager
      for (const k of keys) yield* manager.get(k)
      assert.strictEqual(DigimeConfig.defaultTokenCacheCapacity, 10_000)
      assert.strictEqual(yield* manager.cacheSize, 10_000)
      // The 10,000 read last are served from memory; the others were evicted and need a store read.
      counter.gets = 0
      for (const k of keys.slice(-10_000)) yield* manager.get(k)
      assert.strictEqual(counter.gets, 0)
      yield* manager.get(keys[0]!)
      assert.strictEqual(counter.gets, 1)
      assert.strictEqual(yield* manager.cacheSize, 10_000)
    }).pipe(Effect.provide(stack({ store: countingStore(counter) })))
  }, 120_000)

  it.effect("a capacity of its own: reading twice as many users keeps it", () =>
    Effect.gen(function*() {
      const keys = yield* seedUsers(2_000)
      const manager = yield* TokenManager.TokenManager
      for (const k of keys) yield* manager.get(k)
      assert.strictEqual(yield* manager.cacheSize, 1_000)
    }).pipe(Effect.provide(stack({ config: { tokenCacheCapacity: 1_000 } }))))

  it.effect("tokens older than tokenCacheTtl leave memory, by the next read and in an idle process", () =>
    Effect.gen(function*() {
      const keys = yield* seedUsers(1_000)
      const manager = yield* TokenManager.TokenManager
      for (const k of keys.slice(0, 500)) yield* manager.get(k)
      yield* TestClock.adjust("20 seconds")
      for (const k of keys.slice(500)) yield* manager.get(k)
      assert.strictEqual(yield* manager.cacheSize, 1_001) // with the token stored by the authorization
      // 30 seconds after the first reads: those (and the authorization's) are gone, the later ones stay.
      yield* TestClock.adjust("10 seconds")
      assert.strictEqual(yield* manager.cacheSize, 500)
      // Nobody reads: the rest leave as well.
      yield* TestClock.adjust("30 seconds")
      assert.strictEqual(yield* manager.cacheSize, 0)
    }).pipe(Effect.provide(stack())))

  it.effect("a capacity of 0 keeps no token in memory: every call reads the store", () => {
    const counter = { gets: 0 }
    return Effect.gen(function*() {
      yield* authorize()
      const manager = yield* TokenManager.TokenManager
      counter.gets = 0
      for (let i = 0; i < 5; i++) yield* manager.get(key)
      assert.strictEqual(counter.gets, 5)
      assert.strictEqual(yield* manager.cacheSize, 0)
    }).pipe(Effect.provide(stack({ store: countingStore(counter), config: { tokenCacheCapacity: 0 } })))
  })

  it.effect("tokenCacheCapacity must be a non-negative integer", () =>
    Effect.gen(function*() {
      const contract = { contractId, privateKey: Redacted.make("key") }
      for (const tokenCacheCapacity of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
        const error = yield* Effect.flip(
          DigimeConfig.make({ applicationId: "app", contracts: [contract], tokenCacheCapacity })
        )
        assert.strictEqual(error.field, "tokenCacheCapacity")
      }
      const config = yield* DigimeConfig.make({ applicationId: "app", contracts: [contract] })
      assert.strictEqual(config.tokenCacheCapacity, 10_000)
    }))
})

const t0 = DateTime.unsafeMake(0)

/** A pending authorization of `forKey` that expires `minutes` after the epoch. */
const pendingOf = (forKey: TokenKey.TokenKey, minutes = 10): PendingAuthorizations.Pending => ({
  key: forKey,
  kind: "authorize",
  codeVerifier: Redacted.make("verifier"),
  callbackUrl: "https://app.example/digime/callback",
  expiresAt: DateTime.add(t0, { minutes })
})

/** A pending authorization that counts the reads of its fields. */
const countedPending = (forKey: TokenKey.TokenKey, reads: { count: number }): PendingAuthorizations.Pending => {
  const inner = pendingOf(forKey)
  return {
    get key() {
      reads.count++
      return inner.key
    },
    get kind() {
      reads.count++
      return inner.kind
    },
    get codeVerifier() {
      reads.count++
      return inner.codeVerifier
    },
    get callbackUrl() {
      reads.count++
      return inner.callbackUrl
    },
    get expiresAt() {
      reads.count++
      return inner.expiresAt
    }
  }
}

const at = (millis: number) => DateTime.unsafeMake(millis)

describe("PendingAuthorizations in memory", () => {
  it.effect(
    "200,000 authorizations started: 10,000 in progress at most, 10,000 ended remembered",
    () =>
      Effect.gen(function*() {
        const store = yield* PendingAuthorizations.makeMemory
        const users = Array.from({ length: 100_000 }, (_, i) => userKey(i))
        // Lifetimes of 1 to 7 minutes, in no particular order.
        const pendings = users.map((k, i) => pendingOf(k, 1 + (i * 3) % 7))
        for (let i = 0; i < 200_000; i++) yield* store.put(`state-${i}`, pendings[i % pendings.length]!)
        assert.deepStrictEqual(yield* store.size, { inProgress: 10_000, ended: 10_000 })
        // The latest is in progress; the first, dropped long ago, is forgotten.
        assert.strictEqual((yield* store.consume("state-199999", t0))._tag, "Found")
        assert.strictEqual((yield* store.consume("state-0", t0))._tag, "Unknown")
        assert.deepStrictEqual(yield* store.size, { inProgress: 9_999, ended: 10_000 })
      }),
    120_000
  )

  it.effect("a full store drops the authorization closest to its expiry, never the new one", () =>
    Effect.gen(function*() {
      const store = yield* PendingAuthorizations.makeMemoryWith({ capacity: 3 })
      yield* store.put("a", pendingOf(userKey(1), 10))
      yield* store.put("b", pendingOf(userKey(2), 2))
      yield* store.put("c", pendingOf(userKey(3), 5))
      yield* store.put("d", pendingOf(userKey(4), 1))
      assert.deepStrictEqual(yield* store.size, { inProgress: 3, ended: 1 })
      assert.strictEqual((yield* store.consume("b", t0))._tag, "Expired")
      for (const state of ["a", "c", "d"]) assert.strictEqual((yield* store.consume(state, t0))._tag, "Found")
    }))

  it.effect("a key's sixth authorization in progress drops its oldest", () =>
    Effect.gen(function*() {
      const store = yield* PendingAuthorizations.makeMemory
      for (let i = 0; i < 6; i++) yield* store.put(`s${i}`, pendingOf(key, 10 + i))
      yield* store.put("other", pendingOf(userKey(1)))
      assert.deepStrictEqual(yield* store.size, { inProgress: 6, ended: 1 })
      assert.strictEqual((yield* store.consume("s0", t0))._tag, "Expired")
      for (let i = 1; i < 6; i++) assert.strictEqual((yield* store.consume(`s${i}`, t0))._tag, "Found")
      assert.strictEqual((yield* store.consume("other", t0))._tag, "Found")
    }))

  it.effect("entries expire in the order of their expiry, not of their start, and are remembered an hour", () =>
    Effect.gen(function*() {
      const store = yield* PendingAuthorizations.makeMemory
      yield* store.put("long", pendingOf(userKey(1), 30))
      yield* store.put("short", pendingOf(userKey(2), 1))
      yield* store.put("used", pendingOf(userKey(3), 30))
      assert.strictEqual((yield* store.consume("used", at(0)))._tag, "Found")
      // Two minutes later: the short one has expired and left the entries in progress.
      assert.strictEqual((yield* store.consume("short", at(120_000)))._tag, "Expired")
      assert.strictEqual((yield* store.consume("used", at(120_000)))._tag, "AlreadyUsed")
      assert.deepStrictEqual(yield* store.size, { inProgress: 1, ended: 2 })
      // An hour and more after they ended, both are forgotten: an unknown state.
      const later = 120_000 + 60 * 60 * 1000
      assert.strictEqual((yield* store.consume("short", at(later)))._tag, "Unknown")
      assert.strictEqual((yield* store.consume("used", at(later)))._tag, "Unknown")
      // The long one expired on the way, and is remembered as such.
      assert.strictEqual((yield* store.consume("long", at(later)))._tag, "Expired")
      assert.deepStrictEqual(yield* store.size, { inProgress: 0, ended: 1 })
    }))

  it.effect("a consume reads no other entry: no scan, however many are in progress", () =>
    Effect.gen(function*() {
      const store = yield* PendingAuthorizations.makeMemory
      const reads = { count: 0 }
      for (let i = 0; i < 10_000; i++) yield* store.put(`state-${i}`, countedPending(userKey(i), reads))
      assert.deepStrictEqual(yield* store.size, { inProgress: 10_000, ended: 0 })
      reads.count = 0
      assert.strictEqual((yield* store.consume("state-5000", t0))._tag, "Found")
      assert.strictEqual((yield* store.consume("state-5000", t0))._tag, "AlreadyUsed")
      assert.strictEqual((yield* store.consume("unknown", t0))._tag, "Unknown")
      // Nine minutes later, nothing has expired yet: still no entry read.
      assert.strictEqual((yield* store.consume("state-1", at(9 * 60_000)))._tag, "Found")
      assert.strictEqual(reads.count, 0)
    }))

  it.effect("makeMemoryWith refuses bounds that are not positive integers", () =>
    Effect.gen(function*() {
      for (const options of [{ capacity: 0 }, { capacity: 1.5 }, { maxPerKey: 0 }, { maxPerKey: -1 }]) {
        const error = yield* Effect.flip(PendingAuthorizations.makeMemoryWith(options))
        assert.strictEqual(error._tag, "InvalidConfig")
        assert.strictEqual(error.field, `PendingAuthorizations.${Object.keys(options)[0]}`)
      }
    }))
})
