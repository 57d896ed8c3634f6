/**
 * `TokenManager.delete`: a token the application deleted (the user disconnected) is not served
 * from memory any more, in this process at once, whatever was reading or refreshing it meanwhile.
 */
import { AutoRefresh, DigimeError, TokenManager, TokenStore } from "@digime-effect/core"
import { DigimeSimulator } from "@digime-effect/core/testing"
import { assert, describe, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Fiber, Layer, Option, TestClock } from "effect"
import { authorize, joinAdvancing, key, readAccounts, stack, stats, stored, totalRequests } from "./fixtures.js"

const manager = TokenManager.TokenManager

/** The next `withAutoRefresh` of the key fails with `ReauthRequired` (`Missing`), with no time passing. */
const missingAtOnce = Effect.gen(function*() {
  const before = yield* Clock.currentTimeMillis
  const requests = yield* totalRequests
  const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
  assert.strictEqual(error._tag, "ReauthRequired")
  assert.strictEqual(error._tag === "ReauthRequired" && error.reason, "Missing")
  assert.strictEqual(yield* Clock.currentTimeMillis, before)
  assert.strictEqual(yield* totalRequests, requests)
  assert.isTrue(Option.isNone(yield* Effect.flatMap(TokenStore.TokenStore, (store) => store.get(key))))
  assert.strictEqual(yield* (yield* manager).cacheSize, 0)
})

interface Gate {
  readonly operation: "get" | "compareAndSet"
  readonly reached: Deferred.Deferred<void>
  readonly release: Deferred.Deferred<void>
}

const gateOn = (operation: Gate["operation"]) =>
  Effect.map(Effect.all([Deferred.make<void>(), Deferred.make<void>()]), ([reached, release]) => ({
    operation,
    reached,
    release
  }))

/**
 * The memory store, where the first `get` (or `compareAndSet`) after a gate is set is done, then
 * reports it and waits to be released: its result is from before whatever happens meanwhile.
 */
const holdingStore = (gates: { next: Gate | undefined }) =>
  Layer.effect(
    TokenStore.TokenStore,
    Effect.map(TokenStore.makeMemory, (inner) => {
      const held = <A, E>(operation: Gate["operation"], effect: Effect.Effect<A, E>) =>
        Effect.suspend(() => {
          const gate = gates.next
          if (gate?.operation !== operation) return effect
          gates.next = undefined
          return Effect.zipLeft(
            effect,
            Effect.zipRight(Deferred.succeed(gate.reached, undefined), Deferred.await(gate.release))
          )
        })
      return {
        ...inner,
        get: (k) => held("get", inner.get(k)),
        compareAndSet: (k, expected, token) => held("compareAndSet", inner.compareAndSet(k, expected, token))
      } satisfies TokenStore.Service
    })
  )

describe("TokenManager.delete", () => {
  it.effect("the next call fails with ReauthRequired (Missing) at once, not after tokenCacheTtl", () =>
    Effect.gen(function*() {
      yield* authorize()
      assert.isAbove((yield* AutoRefresh.withAutoRefresh(key, readAccounts)).length, 0)
      assert.strictEqual(yield* (yield* manager).cacheSize, 1)
      yield* (yield* manager).delete(key)
      yield* missingAtOnce
    }).pipe(Effect.provide(stack())))

  it.effect("deleting a key with no token, or twice, is not an error", () =>
    Effect.gen(function*() {
      yield* (yield* manager).delete(key)
      yield* authorize()
      yield* (yield* manager).delete(key)
      yield* (yield* manager).delete(key)
      yield* missingAtOnce
    }).pipe(Effect.provide(stack())))

  it.effect("a copy read from the store before the delete is not cached after it", () => {
    const gates: { next: Gate | undefined } = { next: undefined }
    return Effect.gen(function*() {
      yield* authorize()
      yield* TestClock.adjust("31 seconds") // the authorization's copy is outdated: the next call reads
      const gate = gates.next = yield* gateOn("get")
      const reader = yield* Effect.fork(AutoRefresh.withAutoRefresh(key, readAccounts))
      yield* Deferred.await(gate.reached) // the reader has read the token, and waits
      yield* (yield* manager).delete(key)
      yield* Deferred.succeed(gate.release, undefined)
      // The reader asked before the delete: it may use what it read, once. Nothing is cached.
      assert.isAbove((yield* Fiber.join(reader)).length, 0)
      yield* missingAtOnce
    }).pipe(Effect.provide(stack({ store: holdingStore(gates) })))
  })

  it.effect("a refresh that stored its token just before the delete does not cache it after", () => {
    const gates: { next: Gate | undefined } = { next: undefined }
    return Effect.gen(function*() {
      yield* authorize()
      yield* TestClock.adjust("3595 seconds") // within the wait margin: the next call refreshes
      const gate = gates.next = yield* gateOn("compareAndSet")
      const caller = yield* Effect.fork(AutoRefresh.withAutoRefresh(key, readAccounts))
      yield* Deferred.await(gate.reached) // the refreshed token is stored, and its writer waits
      assert.strictEqual((yield* stats).refreshes, 1)
      assert.isTrue(Option.isSome(yield* Effect.flatMap(TokenStore.TokenStore, (store) => store.get(key))))
      yield* (yield* manager).delete(key)
      yield* Deferred.succeed(gate.release, undefined)
      assert.isAbove((yield* Fiber.join(caller)).length, 0)
      yield* missingAtOnce
    }).pipe(Effect.provide(stack({ store: holdingStore(gates) })))
  })

  it.effect("a refresh in flight during the delete cannot store its token: its callers get Missing", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      yield* TestClock.adjust("3595 seconds")
      yield* simulator.injectFault({ _tag: "Delay", endpoint: "token", delay: "20 seconds" })
      const caller = yield* Effect.fork(AutoRefresh.withAutoRefresh(key, readAccounts))
      yield* TestClock.adjust("1 second")
      assert.isDefined((yield* stored()).lease) // sent, under its lease
      yield* (yield* manager).delete(key)
      const error = yield* Effect.flip(joinAdvancing(caller, "30 seconds"))
      assert.instanceOf(error, DigimeError.ReauthRequired)
      assert.strictEqual(error._tag === "ReauthRequired" && error.reason, "Missing")
      assert.strictEqual((yield* stats).refreshes, 1)
      yield* missingAtOnce
    }).pipe(Effect.provide(stack())))

  it.effect("a store that fails to delete: TokenStoreError, and the cached copy is dropped anyway", () =>
    Effect.gen(function*() {
      yield* authorize()
      assert.strictEqual(yield* (yield* manager).cacheSize, 1)
      const fiber = yield* Effect.fork((yield* manager).delete(key))
      const error = yield* Effect.flip(joinAdvancing(fiber, "5 seconds"))
      assert.strictEqual(error._tag, "TokenStoreError")
      assert.strictEqual(yield* (yield* manager).cacheSize, 0)
      assert.isTrue(Option.isSome(yield* Effect.flatMap(TokenStore.TokenStore, (store) => store.get(key))))
    }).pipe(Effect.provide(stack({
      store: Layer.effect(
        TokenStore.TokenStore,
        Effect.map(TokenStore.makeMemory, (inner) => ({
          ...inner,
          delete: (k) =>
            Effect.fail(new DigimeError.TokenStoreError({ operation: "delete", key: k, description: "down" }))
        } satisfies TokenStore.Service))
      )
    }))))

  it.scoped("another process sharing the store: serves its copy for tokenCacheTtl at most, drops it when it deletes", () =>
    Effect.gen(function*() {
      yield* authorize()
      const other = yield* TokenManager.make
      const readAsOther = AutoRefresh.withAutoRefresh(key, readAccounts).pipe(
        Effect.provideService(TokenManager.TokenManager, other)
      )
      yield* readAsOther
      yield* (yield* manager).delete(key)
      yield* missingAtOnce
      // The other process still holds its copy (no message crosses processes) until its time to live.
      yield* TestClock.adjust("29 seconds")
      yield* readAsOther
      yield* TestClock.adjust("1 second")
      const error = yield* Effect.flip(readAsOther)
      assert.strictEqual(error._tag === "ReauthRequired" && error.reason, "Missing")
      // Deleting there too (a second delete is harmless) drops it at once.
      yield* authorize()
      yield* readAsOther
      yield* (yield* manager).delete(key)
      yield* other.delete(key)
      assert.strictEqual(yield* other.cacheSize, 0)
      assert.strictEqual((yield* Effect.flip(readAsOther))._tag, "ReauthRequired")
    }).pipe(Effect.provide(stack())))
})
