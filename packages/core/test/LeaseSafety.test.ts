/**
 * What the independent review of refresh leases found, each now a test: this process never sends a
 * refresh token of its own lease again unless it knows nothing was sent under it (or digi.me
 * refused it), a store that refuses leases or their end cannot make a refresh spin, and shutdown is
 * bounded and takes no new lease.
 */
import { DigimeClient, DigimeError, TokenManager, TokenStore } from "@digime-effect/core"
import { DigimeSimulator } from "@digime-effect/core/testing"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope, TestClock } from "effect"
import { authorize, joinAdvancing, key, noReplay, readAs, stack, stats, stored } from "./fixtures.js"

const storeDown = (operation: string, key: DigimeError.TokenStoreError["key"]) =>
  new DigimeError.TokenStoreError({ operation, key, description: "the store is down" })

describe("refresh leases: no replay from this process", () => {
  it.scoped("the answer is lost and the end of the lease cannot be written: the next call does not send again", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const store = yield* TokenStore.TokenStore
      let storeUp = false
      const flaky: TokenStore.Service = {
        ...store,
        endLease: (k, lease, end) => storeUp ? store.endLease(k, lease, end) : Effect.fail(storeDown("endLease", k))
      }
      const manager = yield* TokenManager.make.pipe(Effect.provideService(TokenStore.TokenStore, flaky))
      yield* TestClock.adjust("1 hour")
      yield* simulator.injectFault({ _tag: "DropResponse", endpoint: "token", grant: "refresh_token" })
      const lost = yield* Effect.flip(readAs(manager))
      assert.strictEqual(lost._tag === "RequestError" && lost.reason, "Transport")
      // The lease is still live in the store (its end was not written) and the access token expired.
      assert.isAbove((yield* stored()).lease?.until ?? 0, 0)
      storeUp = true
      const next = yield* Effect.flip(readAs(manager))
      assert.strictEqual(next._tag === "ReauthRequired" && next.reason, "RefreshOutcomeUnknown")
      assert.strictEqual((yield* stats).refreshes, 1)
      yield* noReplay
      // The abandonment is written in the background once the store is back.
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual((yield* stored()).lease?.until, 0)
    }).pipe(Effect.provide(stack())))

  it.scoped("a kept answer that later fails verification is abandoned, and the flight does not release and resend", () =>
    Effect.gen(function*() {
      yield* authorize()
      const client = yield* DigimeClient.DigimeClient
      let verification: "down" | "expired" = "down"
      const wrapped: DigimeClient.Service = {
        ...client,
        verifyTokenAnswer: (operation) =>
          Effect.fail(
            new DigimeError.VerificationError({
              operation,
              reason: verification === "down" ? "KeySetUnavailable" : "Expired",
              description: verification
            })
          )
      }
      const manager = yield* TokenManager.make.pipe(Effect.provideService(DigimeClient.DigimeClient, wrapped))
      yield* TestClock.adjust("1 hour")
      const first = yield* Effect.flip(readAs(manager))
      assert.strictEqual(first._tag === "VerificationError" && first.reason, "KeySetUnavailable")
      verification = "expired"
      const second = yield* Effect.flip(readAs(manager))
      assert.strictEqual(second._tag === "ReauthRequired" && second.reason, "RefreshOutcomeUnknown")
      assert.strictEqual((yield* stats).refreshes, 1)
      assert.strictEqual((yield* stored()).lease?.until, 0)
      yield* noReplay
    }).pipe(Effect.provide(stack())))

  it.scoped("a defect after the send abandons the lease: the next call does not send again", () =>
    Effect.gen(function*() {
      yield* authorize()
      const client = yield* DigimeClient.DigimeClient
      let bug = true
      const wrapped: DigimeClient.Service = {
        ...client,
        verifyTokenAnswer: (operation, answer) =>
          bug ? Effect.die(new Error("a bug in a verifier")) : client.verifyTokenAnswer(operation, answer)
      }
      const manager = yield* TokenManager.make.pipe(Effect.provideService(DigimeClient.DigimeClient, wrapped))
      yield* TestClock.adjust("1 hour")
      const first = yield* Effect.exit(readAs(manager))
      assert.isTrue(Exit.isFailure(first))
      assert.strictEqual((yield* stored()).lease?.until, 0)
      bug = false
      const second = yield* Effect.flip(readAs(manager))
      assert.strictEqual(second._tag === "ReauthRequired" && second.reason, "RefreshOutcomeUnknown")
      assert.strictEqual((yield* stats).refreshes, 1)
      yield* noReplay
    }).pipe(Effect.provide(stack())))

  it.scoped("Released never reopens an abandoned lease (a stale release of the same holder is ignored)", () =>
    Effect.gen(function*() {
      const token = yield* authorize()
      const store = yield* TokenStore.TokenStore
      const versioned = yield* stored()
      const lease = { holder: "p1", version: versioned.version, until: 2_000_000_000_000 }
      assert.isTrue(yield* store.acquireLease(key, lease))
      yield* store.endLease(key, lease, "Abandoned")
      yield* store.endLease(key, lease, "Released")
      assert.strictEqual((yield* stored()).lease?.until, 0)
      assert.isFalse(yield* store.acquireLease(key, { ...lease, holder: "p2" }))
      assert.strictEqual(token.accessToken.value, (yield* stored()).token.accessToken.value)
    }).pipe(Effect.provide(stack())))
})

describe("refresh leases: no spin", () => {
  it.scoped("a store that refuses the lease without showing one: backs off and fails typed after the lease time", () =>
    Effect.gen(function*() {
      yield* authorize()
      const store = yield* TokenStore.TokenStore
      let gets = 0
      const refusing: TokenStore.Service = {
        ...store,
        get: (k) => Effect.zipRight(Effect.sync(() => gets++), store.get(k)),
        acquireLease: () => Effect.succeed(false)
      }
      const manager = yield* TokenManager.make.pipe(Effect.provideService(TokenStore.TokenStore, refusing))
      yield* TestClock.adjust("1 hour")
      const fiber = yield* Effect.fork(Effect.flip(readAs(manager)))
      const error = yield* joinAdvancing(fiber, "10 minutes", 600)
      assert.strictEqual(error._tag === "TokenStoreError" && error.operation, "acquireLease")
      // One read per attempt, the attempts a second apart at most: a few hundred over the lease time.
      assert.isBelow(gets, 400)
      assert.strictEqual((yield* stats).refreshes, 0)
    }).pipe(Effect.provide(stack())))

  it.scoped("a lost answer to taking the lease, and a store that refuses every write: no busy loop", () =>
    Effect.gen(function*() {
      yield* authorize()
      const store = yield* TokenStore.TokenStore
      let gets = 0
      const broken: TokenStore.Service = {
        ...store,
        get: (k) => Effect.zipRight(Effect.sync(() => gets++), store.get(k)),
        acquireLease: (k, lease) =>
          Effect.zipRight(store.acquireLease(k, lease), Effect.fail(storeDown("acquireLease", k))),
        endLease: (k) => Effect.fail(storeDown("endLease", k))
      }
      const manager = yield* TokenManager.make.pipe(Effect.provideService(TokenStore.TokenStore, broken))
      yield* TestClock.adjust("1 hour")
      assert.strictEqual((yield* Effect.flip(readAs(manager)))._tag, "TokenStoreError")
      gets = 0
      const again = yield* Effect.flip(readAs(manager))
      assert.strictEqual(again._tag, "TokenStoreError")
      assert.isBelow(gets, 5)
      assert.strictEqual((yield* stats).refreshes, 0)
    }).pipe(Effect.provide(stack())))
})

describe("refresh leases: shutdown", () => {
  it.scoped("shutdown waits for a refresh being sent at most refreshLeaseTime, even when the store hangs", () =>
    Effect.gen(function*() {
      yield* authorize()
      const store = yield* TokenStore.TokenStore
      const hanging: TokenStore.Service = { ...store, compareAndSet: () => Effect.never }
      yield* TestClock.adjust("1 hour")
      const scope = yield* Scope.make()
      const manager = yield* Scope.extend(
        TokenManager.make.pipe(Effect.provideService(TokenStore.TokenStore, hanging)),
        scope
      )
      const caller = yield* Effect.fork(readAs(manager))
      // Until the answer is in (its verification runs in Web Crypto, outside the TestClock).
      for (let i = 0; i < 200 && (yield* stats).refreshes === 0; i++) yield* TestClock.adjust("10 millis")
      assert.strictEqual((yield* stats).refreshes, 1)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      // The lease is 4 × 30 s + 30 s = 150 s, the last write attempt gets the request timeout.
      yield* TestClock.adjust("149 seconds")
      assert.isNull(closing.unsafePoll())
      yield* TestClock.adjust("40 seconds")
      assert.isNotNull(closing.unsafePoll())
      yield* Fiber.interrupt(caller)
    }).pipe(Effect.provide(stack())))

  it.scoped("once shutdown has begun, no lease is taken: a refresh asked for then sends nothing", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      yield* TestClock.adjust("1 hour")
      yield* simulator.injectFault({ _tag: "Delay", endpoint: "token", delay: "20 seconds" })
      const scope = yield* Scope.make()
      const manager = yield* Scope.extend(TokenManager.make, scope)
      const first = yield* Effect.fork(Effect.exit(readAs(manager)))
      yield* TestClock.adjust("1 second")
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust("1 second")
      // Another refresh of the key is asked for while the first is still being sent.
      const late = yield* Effect.fork(Effect.exit(manager.refresh(key)))
      yield* joinAdvancing(closing, "1 minute")
      yield* Fiber.join(first)
      assert.isTrue(Exit.isFailure(yield* Fiber.join(late)))
      assert.strictEqual((yield* stats).refreshes, 1)
      const after = yield* stored()
      assert.isUndefined(after.lease)
      yield* noReplay
    }).pipe(Effect.provide(stack())))
})
