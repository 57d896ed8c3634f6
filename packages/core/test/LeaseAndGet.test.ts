/**
 * The token manager on a store that takes a lease and reads the token in one step
 * (`acquireLeaseAndGet`, optional in `TokenStore`): a refresh whose version is known takes its
 * lease and re-reads the token in that one step, and every decision of the two-step path (a newer
 * token, another's lease, a mark, an expired refresh token, a lost answer) comes out the same. The
 * two-step path, on stores without the method, is what every other test of the manager runs.
 */
import { DigimeError, TokenManager, TokenStore } from "@digime-effect/core"
import { DigimeSimulator } from "@digime-effect/core/testing"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, TestClock } from "effect"
import { authorize, key, noReplay, otherProcess, readAs, stack, stats, stored } from "./fixtures.js"
import { layerMemoryWithLeaseAndGet, withLeaseAndGet, zeroCounts } from "./leaseAndGet.js"

describe("refresh leases taken with the re-read in one step", () => {
  it.scoped("a due refresh and a forced one: one step to lease and read, no separate read or lease", () => {
    const counts = zeroCounts()
    return Effect.gen(function*() {
      yield* authorize()
      const manager = yield* TokenManager.TokenManager
      const before = yield* stored()
      yield* TestClock.adjust("1 hour")
      // The store operations `effect` asked for: [acquireLeaseAndGet, get, acquireLease].
      const asked = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        Effect.suspend(() => {
          const start = { ...counts }
          return Effect.map(effect, (value) => ({
            value,
            operations: [
              counts.leaseAndGet - start.leaseAndGet,
              counts.get - start.get,
              counts.acquireLease - start.acquireLease
            ]
          }))
        })
      const due = yield* asked(manager.refreshVersion(key, before.version))
      assert.isAbove(due.value.version, before.version)
      assert.deepStrictEqual(due.operations, [1, 0, 0])
      const refreshed = yield* stored()
      assert.strictEqual(refreshed.version, due.value.version)
      assert.isUndefined(refreshed.lease)
      // Forced, with the version this process cached when it stored the token.
      const forced = yield* asked(manager.refresh(key))
      assert.isAbove(forced.value.version, refreshed.version)
      assert.deepStrictEqual(forced.operations, [1, 0, 0])
      assert.isUndefined((yield* stored()).lease)
      assert.strictEqual((yield* stats).refreshes, 2)
      yield* noReplay
    }).pipe(Effect.provide(stack({ store: layerMemoryWithLeaseAndGet(counts) })))
  })

  it.scoped("the version moved on (another process refreshed): the token read in the same step is used", () => {
    const counts = zeroCounts()
    return Effect.gen(function*() {
      yield* authorize()
      const manager = yield* TokenManager.TokenManager
      const store = yield* TokenStore.TokenStore
      const b = yield* otherProcess(store)
      const before = yield* stored()
      yield* TestClock.adjust("1 hour")
      assert.isAbove((yield* readAs(b)).length, 0)
      // This process asks for the version it found due: the step refuses the lease and answers
      // the newer token, which needs no refresh.
      const start = { ...counts }
      const found = yield* manager.refreshVersion(key, before.version)
      assert.deepStrictEqual([counts.leaseAndGet - start.leaseAndGet, counts.get - start.get], [1, 0])
      assert.strictEqual(found.version, (yield* stored()).version)
      assert.isAbove(found.version, before.version)
      assert.strictEqual((yield* stats).refreshes, 1)
      yield* noReplay
    }).pipe(Effect.provide(stack({ store: layerMemoryWithLeaseAndGet(counts) })))
  })

  it.scoped("another holder's lease: its valid token is served, and once it is outlived nothing is sent", () => {
    const counts = zeroCounts()
    return Effect.gen(function*() {
      yield* authorize()
      const manager = yield* TokenManager.TokenManager
      const store = yield* TokenStore.TokenStore
      const current = yield* stored()
      const now = 3570 * 1000
      yield* TestClock.setTime(now)
      assert.isTrue(
        yield* store.acquireLease(key, { holder: "dead-process", version: current.version, until: now + 150_000 })
      )
      // Due, still valid: served under the other's lease, as the step read it.
      const start = { ...counts }
      assert.strictEqual((yield* manager.refreshVersion(key, current.version)).version, current.version)
      assert.deepStrictEqual([counts.leaseAndGet - start.leaseAndGet, counts.get - start.get], [1, 0])
      // Expired and the lease outlived: never refreshed by this process.
      yield* TestClock.adjust("200 seconds")
      const error = yield* Effect.flip(manager.refreshVersion(key, current.version))
      assert.strictEqual(error._tag === "ReauthRequired" && error.reason, "RefreshOutcomeUnknown")
      assert.strictEqual((yield* stats).requests.token, 1) // the exchange only
      yield* noReplay
    }).pipe(Effect.provide(stack({ store: layerMemoryWithLeaseAndGet(counts) })))
  })

  it.scoped("a version marked \"needs reconnect\" is not leased, and its refresh token is not sent", () => {
    const counts = zeroCounts()
    return Effect.gen(function*() {
      yield* authorize()
      const manager = yield* TokenManager.TokenManager
      const store = yield* TokenStore.TokenStore
      const current = yield* stored()
      assert.isTrue(
        yield* store.markReconnect(key, { reason: "RefreshTokenInvalid", version: current.version, at: 0 })
      )
      yield* TestClock.adjust("1 hour")
      const error = yield* Effect.flip(manager.refreshVersion(key, current.version))
      assert.strictEqual(error._tag === "ReauthRequired" && error.reason, "RefreshTokenInvalid")
      assert.strictEqual(counts.leaseAndGet, 1)
      assert.isUndefined((yield* stored()).lease)
      assert.strictEqual((yield* stats).requests.token, 1)
      yield* noReplay
    }).pipe(Effect.provide(stack({ store: layerMemoryWithLeaseAndGet(counts) })))
  })

  it.scoped("a refresh token expired by the clock, found under the lease: released, nothing sent, marked", () => {
    const counts = zeroCounts()
    return Effect.gen(function*() {
      yield* authorize()
      const manager = yield* TokenManager.TokenManager
      const current = yield* stored()
      yield* TestClock.adjust("3 hours")
      const error = yield* Effect.flip(manager.refreshVersion(key, current.version))
      assert.strictEqual(error._tag === "RefreshTokenExpired" && error.detectedBy, "Clock")
      assert.deepStrictEqual([counts.leaseAndGet, counts.acquireLease], [1, 0])
      const after = yield* stored()
      assert.isUndefined(after.lease)
      assert.strictEqual(after.reconnect?.reason, "RefreshTokenExpired")
      assert.strictEqual((yield* stats).requests.token, 1)
      yield* noReplay
    }).pipe(
      Effect.provide(
        stack({ simulator: { refreshTokenLifetime: "2 hours" }, store: layerMemoryWithLeaseAndGet(counts) })
      )
    )
  })

  it.scoped("the answer to the step is lost: nothing was sent, the lease is released, the next call refreshes", () =>
    Effect.gen(function*() {
      yield* authorize()
      const store = yield* TokenStore.TokenStore
      let lose = true
      // The lease is written, then the connection drops before the answer arrives.
      const lossy: TokenStore.Service = {
        ...store,
        acquireLeaseAndGet: (k, lease) =>
          Effect.flatMap(store.acquireLeaseAndGet!(k, lease), (answer) =>
            lose
              ? Effect.fail(
                new DigimeError.TokenStoreError({ operation: "acquireLeaseAndGet", key: k, description: "lost" })
              )
              : Effect.succeed(answer))
      }
      const a = yield* otherProcess(lossy)
      const current = yield* stored()
      yield* TestClock.adjust("1 hour")
      const error = yield* Effect.flip(a.refreshVersion(key, current.version))
      assert.strictEqual(error._tag === "TokenStoreError" && error.operation, "acquireLeaseAndGet")
      assert.strictEqual((yield* stats).requests.token, 1) // nothing sent
      lose = false
      // Released in the background, known unsent: the next call (of any process) refreshes.
      yield* TestClock.adjust("1 second")
      assert.isUndefined((yield* stored()).lease)
      assert.isAbove((yield* readAs(a)).length, 0)
      assert.strictEqual((yield* stats).refreshes, 1)
      yield* noReplay
    }).pipe(Effect.provide(stack({ store: layerMemoryWithLeaseAndGet() }))))

  it.scoped("the step repeated after its answer was lost finds this very lease: the refresh goes on under it", () =>
    Effect.gen(function*() {
      yield* authorize()
      const store = yield* TokenStore.TokenStore
      let repeated = 0
      // The first run takes the lease; its answer is lost and the step runs again, which finds the
      // version leased (by this very step) and says it did not take it.
      const replaying: TokenStore.Service = {
        ...store,
        acquireLeaseAndGet: (k, lease) =>
          Effect.flatMap(store.acquireLeaseAndGet!(k, lease), (first) => {
            if (!first.acquired) return Effect.succeed(first)
            repeated++
            return store.acquireLeaseAndGet!(k, lease)
          })
      }
      const a = yield* otherProcess(replaying)
      const before = yield* stored()
      yield* TestClock.adjust("1 hour")
      const refreshed = yield* a.refreshVersion(key, before.version)
      assert.strictEqual(repeated, 1)
      assert.isAbove(refreshed.version, before.version)
      assert.isUndefined((yield* stored()).lease)
      assert.strictEqual((yield* stats).refreshes, 1)
      yield* noReplay
    }).pipe(Effect.provide(stack({ store: layerMemoryWithLeaseAndGet() }))))

  it.scoped("a lease of this process left in the store: the two-step path handles it (never sent again)", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const store = yield* TokenStore.TokenStore
      const counts = zeroCounts()
      let endable = false
      // The answer is lost and the lease's end cannot be written: the process holds a lease of its
      // own whose refresh token may be spent.
      const flaky: TokenStore.Service = {
        ...withLeaseAndGet(store, counts),
        endLease: (k, lease, end) =>
          endable
            ? store.endLease(k, lease, end)
            : Effect.fail(new DigimeError.TokenStoreError({ operation: "endLease", key: k, description: "down" }))
      }
      const a = yield* otherProcess(flaky)
      yield* TestClock.adjust("1 hour")
      yield* simulator.injectFault({ _tag: "DropResponse", endpoint: "token", grant: "refresh_token" })
      const lost = yield* Effect.flip(readAs(a))
      assert.strictEqual(lost._tag === "RequestError" && lost.reason, "Transport")
      assert.strictEqual(counts.leaseAndGet, 1)
      endable = true
      const next = yield* Effect.flip(readAs(a))
      assert.strictEqual(next._tag === "ReauthRequired" && next.reason, "RefreshOutcomeUnknown")
      // The second call did not try the one-step lease: its own lease was still known.
      assert.strictEqual(counts.leaseAndGet, 1)
      assert.strictEqual((yield* stats).refreshes, 1)
      yield* noReplay
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual((yield* stored()).lease?.until, 0)
    }).pipe(Effect.provide(stack({ store: layerMemoryWithLeaseAndGet() }))))

  it.scoped("nothing stored: ReauthRequired (Missing), no lease", () =>
    Effect.gen(function*() {
      const manager = yield* TokenManager.TokenManager
      const error = yield* Effect.flip(manager.refreshVersion(key, 1))
      assert.strictEqual(error._tag === "ReauthRequired" && error.reason, "Missing")
      const store = yield* TokenStore.TokenStore
      assert.isTrue(Option.isNone(yield* store.get(key)))
    }).pipe(Effect.provide(stack({ store: layerMemoryWithLeaseAndGet() }))))
})
