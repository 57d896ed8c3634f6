/**
 * Refresh leases: a spent refresh token is never sent twice. Each test runs several token managers
 * (one per simulated process, each with its own holder id, cache and flights) on one store and one
 * simulated digi.me with strict rotation, and ends by checking that digi.me counted no replay and
 * revoked nothing.
 */
import { AutoRefresh, DigimeClient, DigimeError, TokenStore } from "@digime-effect/core"
import { DigimeSimulator } from "@digime-effect/core/testing"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option, Scope, TestClock } from "effect"
import {
  authorize,
  joinAdvancing,
  key,
  noReplay,
  otherProcess,
  readAccounts,
  readAs,
  stack,
  stats,
  stored
} from "./fixtures.js"

describe("refresh leases", () => {
  it.scoped("a refresh in flight elsewhere: its token is served while valid, waited for once expired", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const b = yield* otherProcess()
      // Due (within the 60 s lead time) but still valid.
      yield* TestClock.adjust("3570 seconds")
      yield* simulator.injectFault({ _tag: "Delay", endpoint: "token", delay: "20 seconds" })
      const first = yield* Effect.fork(AutoRefresh.withAutoRefresh(key, readAccounts))
      yield* TestClock.adjust("1 second")
      // B finds A's lease: the stored token is still valid, so B uses it without waiting.
      const before = yield* stored()
      assert.strictEqual(before.lease?.version, before.version)
      assert.isAbove((yield* readAs(b)).length, 0)
      assert.strictEqual((yield* stats).requests.token, 2) // the exchange and A's refresh
      // Once the access token has expired, B waits for A's outcome instead of refreshing.
      yield* TestClock.adjust("40 seconds")
      const waiting = yield* Effect.fork(readAs(b))
      assert.isAbove((yield* joinAdvancing(first, "30 seconds")).length, 0)
      assert.isAbove((yield* joinAdvancing(waiting, "10 seconds")).length, 0)
      const s = yield* stats
      assert.strictEqual(s.refreshes, 1)
      assert.strictEqual(s.requests.token, 2)
      assert.isUndefined((yield* stored()).lease)
      yield* noReplay
    }).pipe(Effect.provide(stack())))

  it.scoped("a holder that died mid-refresh: its lease is honoured, then the key needs a reauthorization", () =>
    Effect.gen(function*() {
      yield* authorize()
      const store = yield* TokenStore.TokenStore
      const current = yield* stored()
      // A process took the lease, then died (before or after sending: nobody can know).
      const now = 3570 * 1000
      yield* TestClock.setTime(now)
      assert.isTrue(
        yield* store.acquireLease(key, { holder: "dead-process", version: current.version, until: now + 150_000 })
      )
      // Still valid: served as it is.
      assert.isAbove((yield* AutoRefresh.withAutoRefresh(key, readAccounts)).length, 0)
      // Expired, the lease live: wait for it, and once it is outlived, never refresh.
      yield* TestClock.adjust("60 seconds")
      const waiting = yield* Effect.fork(Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts)))
      const error = yield* joinAdvancing(waiting, "150 seconds")
      assert.strictEqual(error._tag, "ReauthRequired")
      assert.strictEqual(error._tag === "ReauthRequired" && error.reason, "RefreshOutcomeUnknown")
      assert.strictEqual((yield* stats).requests.token, 1) // the exchange only
      yield* noReplay
    }).pipe(Effect.provide(stack())))

  it.scoped("a refresh answer lost after rotation: no other process sends that refresh token again", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const b = yield* otherProcess()
      // Within the 10 s wait margin: the caller waits for the refresh.
      yield* TestClock.adjust("3595 seconds")
      yield* simulator.injectFault({ _tag: "DropResponse", endpoint: "token", grant: "refresh_token" })
      const lost = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
      assert.strictEqual(lost._tag === "RequestError" && lost.reason, "Transport")
      assert.strictEqual((yield* stored()).lease?.until, 0) // abandoned
      // B: the stored access token still works for 5 s; after that, a reauthorization.
      assert.isAbove((yield* readAs(b)).length, 0)
      yield* TestClock.adjust("6 seconds")
      const expired = yield* Effect.flip(readAs(b))
      assert.strictEqual(expired._tag === "ReauthRequired" && expired.reason, "RefreshOutcomeUnknown")
      const s = yield* stats
      assert.strictEqual(s.refreshes, 1)
      assert.strictEqual(s.requests.token, 2)
      yield* noReplay
    }).pipe(Effect.provide(stack())))

  it.scoped("a refresh refused with a client error (429) spent nothing: the lease is released, the next call refreshes", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const b = yield* otherProcess()
      yield* TestClock.adjust("1 hour")
      yield* simulator.injectFault({ _tag: "Status", endpoint: "token", status: 429 })
      const refused = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
      assert.strictEqual(refused._tag === "ApiError" && refused.status, 429)
      assert.isUndefined((yield* stored()).lease)
      assert.isAbove((yield* readAs(b)).length, 0)
      assert.strictEqual((yield* stats).refreshes, 1)
      yield* noReplay
    }).pipe(Effect.provide(stack())))

  it.scoped("a server error (503, even with digi.me's error body) may come after the rotation: the lease is abandoned", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const b = yield* otherProcess()
      yield* TestClock.adjust("1 hour")
      yield* simulator.injectFault({ _tag: "Status", endpoint: "token", status: 503 })
      const failed = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
      assert.strictEqual(failed._tag === "ApiError" && failed.status, 503)
      assert.strictEqual((yield* stored()).lease?.until, 0)
      const next = yield* Effect.flip(readAs(b))
      assert.strictEqual(next._tag === "ReauthRequired" && next.reason, "RefreshOutcomeUnknown")
      assert.strictEqual((yield* stats).requests.token, 2) // the exchange and the one refresh
      yield* noReplay
    }).pipe(Effect.provide(stack())))

  it.scoped("no connection to digi.me (nothing sent) releases the lease", () =>
    Effect.gen(function*() {
      yield* authorize()
      const client = yield* DigimeClient.DigimeClient
      // A client whose refresh never connects: the request is not sent.
      const unreachable: DigimeClient.Service = {
        ...client,
        requestRefresh: () =>
          Effect.fail(
            new DigimeError.RequestError({ operation: "refreshToken", reason: "Connect", description: "ECONNREFUSED" })
          )
      }
      const a = yield* otherProcess().pipe(Effect.provideService(DigimeClient.DigimeClient, unreachable))
      yield* TestClock.adjust("1 hour")
      const error = yield* Effect.flip(readAs(a))
      assert.strictEqual(error._tag === "RequestError" && error.reason, "Connect")
      assert.isUndefined((yield* stored()).lease)
      // Once digi.me is reachable, another process refreshes normally.
      assert.isAbove((yield* AutoRefresh.withAutoRefresh(key, readAccounts)).length, 0)
      assert.strictEqual((yield* stats).refreshes, 1)
      yield* noReplay
    }).pipe(Effect.provide(stack())))

  it.scoped("the answer to taking a lease is lost: nothing was sent, so it is released and the next call refreshes", () =>
    Effect.gen(function*() {
      yield* authorize()
      const store = yield* TokenStore.TokenStore
      let lose = true
      // The lease is written, then the connection drops before the answer arrives.
      const lossy: TokenStore.Service = {
        ...store,
        acquireLease: (k, lease) =>
          Effect.flatMap(store.acquireLease(k, lease), (taken) =>
            lose
              ? Effect.fail(
                new DigimeError.TokenStoreError({ operation: "acquireLease", key: k, description: "connection lost" })
              )
              : Effect.succeed(taken))
      }
      const a = yield* otherProcess(lossy)
      yield* TestClock.adjust("1 hour")
      const error = yield* Effect.flip(readAs(a))
      assert.strictEqual(error._tag, "TokenStoreError")
      assert.strictEqual((yield* stats).requests.token, 1) // nothing sent
      lose = false
      // Released in the background, known unsent: the next call (of any process) refreshes.
      yield* TestClock.adjust("1 second")
      assert.isUndefined((yield* stored()).lease)
      assert.isAbove((yield* readAs(a)).length, 0)
      assert.strictEqual((yield* stats).refreshes, 1)
      yield* noReplay
    }).pipe(Effect.provide(stack())))

  it.scoped("the store write fails after rotation: the holder keeps the token and stores it later; nobody replays", () =>
    Effect.gen(function*() {
      yield* authorize()
      const store = yield* TokenStore.TokenStore
      let down = true
      // Process A's connection to the store drops just after its lease is taken.
      const flaky: TokenStore.Service = {
        ...store,
        compareAndSet: (k, version, token) =>
          down
            ? Effect.fail(new DigimeError.TokenStoreError({ operation: "compareAndSet", key: k, description: "down" }))
            : store.compareAndSet(k, version, token)
      }
      const a = yield* otherProcess(flaky)
      const b = yield* otherProcess()
      yield* TestClock.adjust("1 hour")
      const failing = yield* Effect.fork(Effect.flip(readAs(a)))
      assert.strictEqual((yield* joinAdvancing(failing, "5 seconds"))._tag, "TokenStoreError")
      assert.strictEqual((yield* stats).refreshes, 1)
      // B: the access token has expired and A's lease is live: B waits, and never refreshes itself.
      const waiting = yield* Effect.fork(readAs(b))
      yield* TestClock.adjust("10 seconds")
      assert.isNull(waiting.unsafePoll())
      // The store comes back: A's background writer stores the kept token; B gets it.
      down = false
      assert.isAbove((yield* joinAdvancing(waiting, "2 minutes")).length, 0)
      const s = yield* stats
      assert.strictEqual(s.refreshes, 1)
      assert.strictEqual(s.requests.token, 2)
      yield* noReplay
    }).pipe(Effect.provide(stack())))

  it.scoped("the key set is down when the answer arrives: the answer is kept, verified and stored once it is back", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const b = yield* otherProcess()
      const before = yield* stored()
      yield* TestClock.adjust("1 hour")
      // A new signing key: the answer names a key this process has not downloaded, and the key
      // set answers 503 to the download and its two retries, twice: during the refresh, and to the
      // first attempt of the kept answer's verification, right after.
      yield* simulator.rotateSigningKey
      for (let i = 0; i < 6; i++) yield* simulator.injectFault({ _tag: "Status", endpoint: "jwks", status: 503 })
      const fiber = yield* Effect.fork(Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts)))
      const error = yield* joinAdvancing(fiber, "10 seconds")
      assert.strictEqual(error._tag === "VerificationError" && error.reason, "KeySetUnavailable")
      assert.strictEqual((yield* stored()).version, before.version)
      assert.strictEqual((yield* stats).refreshes, 1)
      // The key set is back: the kept answer is verified and stored in the background; B uses it.
      const waiting = yield* Effect.fork(readAs(b))
      assert.isAbove((yield* joinAdvancing(waiting, "2 minutes")).length, 0)
      assert.isAbove((yield* stored()).version, before.version)
      const s = yield* stats
      assert.strictEqual(s.refreshes, 1)
      assert.strictEqual(s.requests.token, 2)
      yield* noReplay
    }).pipe(Effect.provide(stack())))

  it.effect("shutdown at any point of a refresh: before the lease nothing is sent; after it the rotated token is stored", () =>
    Effect.gen(function*() {
      const outcomes = { sent: 0, unsent: 0 }
      for (let run = 0; run < 26; run++) {
        yield* Effect.gen(function*() {
          const simulator = yield* DigimeSimulator.DigimeSimulator
          const store = yield* TokenStore.TokenStore
          yield* authorize()
          const before = yield* stored()
          yield* TestClock.adjust("1 hour")
          yield* simulator.injectFault({ _tag: "Delay", endpoint: "token", delay: "2 seconds" })
          // The store's reads take 300 ms: the first runs shut down before the lease is taken.
          const slow: TokenStore.Service = {
            ...store,
            get: (k) => Effect.zipRight(Effect.sleep("300 millis"), store.get(k))
          }
          // A manager of its own scope: its layer shuts down at `run` steps of 100 ms into the refresh.
          const scope = yield* Scope.make()
          const manager = yield* Scope.extend(otherProcess(slow), scope)
          const caller = yield* Effect.fork(Effect.exit(readAs(manager)))
          for (let i = 0; i < run; i++) yield* TestClock.adjust("100 millis")
          const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
          yield* joinAdvancing(closing, "3 minutes")
          yield* Fiber.interrupt(caller)
          const s = yield* simulator.stats
          const after = Option.getOrThrow(yield* store.get(key))
          if (s.requests.token === 2) {
            // Sent: digi.me rotated, and the new token is in the store, its lease ended by the write.
            outcomes.sent++
            assert.strictEqual(s.refreshes, 1, `run ${run}`)
            assert.isAbove(after.version, before.version, `run ${run}`)
          } else {
            // Not sent: no lease taken, the token as it was, refreshable by the next process.
            outcomes.unsent++
            assert.strictEqual(s.requests.token, 1, `run ${run}`)
            assert.strictEqual(after.version, before.version, `run ${run}`)
          }
          assert.isUndefined(after.lease, `run ${run}`)
          assert.strictEqual(s.replays, 0, `run ${run}`)
        }).pipe(Effect.provide(stack()))
      }
      // Both sides of the lease were reached.
      assert.isAbove(outcomes.sent, 0)
      assert.isAbove(outcomes.unsent, 0)
    }))
})
