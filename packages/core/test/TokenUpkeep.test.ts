/**
 * TokenUpkeep on the memory store and the simulated digi.me, with the TestClock: refresh ahead,
 * idle grants kept alive, a race with a caller, refusals, and its options.
 */
import {
  AutoRefresh,
  DigimeError,
  TokenEvents,
  TokenKey,
  TokenManager,
  TokenStore,
  TokenUpkeep
} from "@digime-effect/core"
import { DigimeSimulator } from "@digime-effect/core/testing"
import { assert, describe, it } from "@effect/vitest"
import type { Duration } from "effect"
import { Chunk, Clock, Effect, Layer, Queue, Stream, TestClock } from "effect"
import {
  advanceUntil,
  authorize,
  joinAdvancing,
  key,
  noReplay,
  readAccounts,
  stack,
  stats,
  stored
} from "./fixtures.js"

const calls = { claims: 0 }

const upkeep = (options: TokenUpkeep.Options = {}) => TokenUpkeep.make(options)

const tags = (events: Chunk.Chunk<TokenEvents.TokenEvent>) => Chunk.toReadonlyArray(events).map((event) => event._tag)

describe("TokenUpkeep", () => {
  it.scoped("refreshes a token ahead of its lead time: the caller that comes next finds it fresh", () =>
    Effect.gen(function*() {
      yield* authorize()
      const before = yield* stored()
      const service = yield* upkeep()
      // Nothing due an hour ahead of expiry.
      assert.deepStrictEqual(yield* service.runOnce, { claimed: 0, refreshed: 0, failed: 0, reconnect: 0, expiring: 0 })
      // Within the lead time (60 s) plus the interval (30 s).
      yield* TestClock.adjust("3515 seconds")
      const round = yield* service.runOnce
      assert.deepStrictEqual(round, { claimed: 1, refreshed: 1, failed: 0, reconnect: 0, expiring: 0 })
      const after = yield* stored()
      assert.isAbove(after.version, before.version)
      // The caller gets the new token without a refresh of its own.
      yield* TestClock.adjust("60 seconds")
      yield* AutoRefresh.withAutoRefresh(key, readAccounts)
      assert.strictEqual((yield* stats).refreshes, 1)
      // The new token is not due: the next round claims nothing.
      assert.strictEqual((yield* service.runOnce).claimed, 0)
      assert.deepStrictEqual(yield* service.totals, { claimed: 1, refreshed: 1, failed: 0, reconnect: 0, expiring: 0 })
      yield* noReplay
    }).pipe(Effect.provide(stack())))

  it.scoped("the daemon of the layer runs rounds on its own, every interval", () =>
    Effect.gen(function*() {
      yield* authorize()
      const before = yield* stored()
      const service = yield* TokenUpkeep.TokenUpkeep
      // The token becomes due at 3510 s; rounds run every 30 s (±20%).
      const done = yield* advanceUntil(
        Effect.map(stored(), (now) => now.version > before.version),
        "3600 seconds",
        "10 seconds"
      )
      assert.isTrue(done)
      assert.strictEqual((yield* stats).refreshes, 1)
      assert.strictEqual((yield* service.totals).refreshed, 1)
    }).pipe(Effect.provide(Layer.provideMerge(TokenUpkeep.layer(), stack()))))

  it.scoped("a daemon and a caller racing on one key make one refresh", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const service = yield* upkeep()
      // Within the wait margin: the caller waits, the daemon claims it too.
      yield* TestClock.adjust("3595 seconds")
      yield* simulator.injectFault({ _tag: "Delay", endpoint: "token", delay: "2 seconds" })
      const caller = yield* Effect.fork(AutoRefresh.withAutoRefresh(key, readAccounts))
      const daemon = yield* Effect.fork(service.runOnce)
      assert.isAbove((yield* joinAdvancing(caller, "5 seconds")).length, 0)
      const round = yield* joinAdvancing(daemon, "5 seconds")
      assert.strictEqual(round.claimed, 1)
      assert.strictEqual(round.refreshed, 1) // refreshed: by the caller's flight, which it joined
      assert.strictEqual((yield* stats).refreshes, 1)
      yield* noReplay
    }).pipe(Effect.provide(stack())))

  it.scoped("a caller that refreshed first: the daemon's claim of the old version refreshes nothing", () =>
    Effect.gen(function*() {
      yield* authorize()
      const store = yield* TokenStore.TokenStore
      const manager = yield* TokenManager.TokenManager
      yield* TestClock.adjust("3595 seconds")
      // The daemon's claim, taken before the caller's refresh.
      const claimed = yield* store.claimDue({ expiry: "AccessToken", before: 4_000_000, until: 5_000_000, limit: 10 })
      assert.strictEqual(claimed.length, 1)
      yield* AutoRefresh.withAutoRefresh(key, readAccounts)
      const refreshed = yield* stored()
      assert.isAbove(refreshed.version, claimed[0]!.version)
      // The claim handled now finds the newer token and leaves it.
      const result = yield* manager.refreshVersion(key, claimed[0]!.version)
      assert.strictEqual(result.version, refreshed.version)
      assert.strictEqual((yield* stats).refreshes, 1)
      // And the new token is not due.
      assert.strictEqual((yield* (yield* upkeep()).runOnce).claimed, 0)
    }).pipe(Effect.provide(stack())))

  it.scoped("keeps an idle grant alive past its refresh token's original expiry", () =>
    Effect.gen(function*() {
      yield* authorize()
      const before = yield* stored()
      const service = yield* upkeep({ refreshAhead: false, keepAliveWithin: "1 day" })
      const originalExpiry = before.token.refreshToken.expiresAt.epochMillis
      // The user does not come back. Rounds run; nothing is due until a day before the expiry.
      for (let day = 1; day <= 28; day++) {
        yield* TestClock.adjust("1 day")
        assert.strictEqual((yield* service.runOnce).claimed, 0)
      }
      yield* TestClock.adjust("25 hours") // the refresh token now expires within a day
      const round = yield* service.runOnce
      assert.deepStrictEqual(round, { claimed: 1, refreshed: 1, failed: 0, reconnect: 0, expiring: 0 })
      // Past the original expiry, the user comes back: their data is read with no reauthorization.
      yield* TestClock.adjust("2 days")
      assert.isAbove(yield* Clock.currentTimeMillis, originalExpiry)
      assert.isAbove((yield* AutoRefresh.withAutoRefresh(key, readAccounts)).length, 0)
      assert.strictEqual((yield* stats).refreshes, 2)
      yield* noReplay
    }).pipe(Effect.provide(stack())))

  it.scoped("a refused refresh: ReauthorizationRequired, the key needs reconnect and is never claimed again", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const events = yield* TokenEvents.TokenEvents
      const queue = yield* events.subscribe
      const service = yield* upkeep()
      yield* TestClock.adjust("3515 seconds")
      yield* simulator.injectFault({
        _tag: "Status",
        endpoint: "token",
        status: 401,
        code: "InvalidToken",
        message: "The refresh token is invalid"
      })
      assert.deepStrictEqual(yield* service.runOnce, { claimed: 1, refreshed: 0, failed: 0, reconnect: 1, expiring: 0 })
      assert.deepStrictEqual(tags(yield* Queue.takeAll(queue)), ["ReauthorizationRequired"])
      const listed = yield* Stream.runCollect(TokenStore.streamReconnect())
      assert.deepStrictEqual(Chunk.toReadonlyArray(listed).map((entry) => entry.key.userId), [key.userId])
      assert.strictEqual(Chunk.toReadonlyArray(listed)[0]!.reconnect.reason, "RefreshTokenInvalid")
      // Never claimed again, whatever the time.
      yield* TestClock.adjust("1 hour")
      assert.strictEqual((yield* service.runOnce).claimed, 0)
      assert.strictEqual((yield* stats).requests.token, 2)
    }).pipe(Effect.provide(stack())))

  it.scoped("a refresh that fails and may pass: counted failed, tried again when its claim ends", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const events = yield* TokenEvents.TokenEvents
      const queue = yield* events.subscribe
      const service = yield* upkeep({ claimTime: "10 minutes" })
      yield* TestClock.adjust("3515 seconds")
      yield* simulator.injectFault({ _tag: "Status", endpoint: "token", status: 429 })
      assert.deepStrictEqual(yield* service.runOnce, { claimed: 1, refreshed: 0, failed: 1, reconnect: 0, expiring: 0 })
      assert.deepStrictEqual(tags(yield* Queue.takeAll(queue)), ["RefreshFailed"])
      // Claimed for 10 minutes: not before.
      yield* TestClock.adjust("5 minutes")
      assert.strictEqual((yield* service.runOnce).claimed, 0)
      yield* TestClock.adjust("5 minutes")
      yield* TestClock.adjust("1 second")
      // By now the access token has expired; the refresh token still works.
      assert.deepStrictEqual(yield* service.runOnce, { claimed: 1, refreshed: 1, failed: 0, reconnect: 0, expiring: 0 })
      assert.deepStrictEqual(tags(yield* Queue.takeAll(queue)), ["Refreshed"])
      yield* noReplay
    }).pipe(Effect.provide(stack())))

  it.scoped("keepAlive \"warn\": RefreshTokenExpiring once per window, nothing refreshed", () =>
    Effect.gen(function*() {
      yield* authorize()
      const before = yield* stored()
      const events = yield* TokenEvents.TokenEvents
      const queue = yield* events.subscribe
      const service = yield* upkeep({ refreshAhead: false, keepAlive: "warn", keepAliveWithin: "2 days" })
      yield* TestClock.adjust("28 days")
      yield* TestClock.adjust("1 hour")
      assert.deepStrictEqual(yield* service.runOnce, { claimed: 1, refreshed: 0, failed: 0, reconnect: 0, expiring: 1 })
      const warned = Chunk.toReadonlyArray(yield* Queue.takeAll(queue))
      assert.deepStrictEqual(warned.map((event) => event._tag), ["RefreshTokenExpiring"])
      const event = warned[0]!
      assert.strictEqual(
        event._tag === "RefreshTokenExpiring" && event.expiresAt,
        before.token.refreshToken.expiresAt.epochMillis
      )
      yield* TestClock.adjust("1 day")
      assert.strictEqual((yield* service.runOnce).claimed, 0)
      assert.strictEqual((yield* stats).refreshes, 0)
      // Once it has expired, the key is claimed again and found to need reconnecting, by the Clock.
      yield* TestClock.adjust("4 days")
      assert.deepStrictEqual(yield* service.runOnce, { claimed: 1, refreshed: 0, failed: 0, reconnect: 1, expiring: 0 })
      assert.deepStrictEqual(tags(yield* Queue.takeAll(queue)), ["ReauthorizationRequired"])
      assert.strictEqual((yield* stored()).reconnect?.reason, "RefreshTokenExpired")
      assert.strictEqual((yield* stats).requests.token, 1)
    }).pipe(Effect.provide(stack())))

  it.scoped("many keys, small batches, bounded concurrency: every due key refreshed once", () =>
    Effect.gen(function*() {
      const keys = Array.from({ length: 25 }, (_, i) => TokenKey.make(`user-${i}`, key.contractId))
      for (const each of keys) yield* authorize(each)
      const service = yield* upkeep({ batchSize: 4, concurrency: 2 })
      yield* TestClock.adjust("3515 seconds")
      let rounds = 0
      for (;;) {
        const round = yield* service.runOnce
        if (round.claimed === 0) break
        assert.isAtMost(round.claimed, 8)
        rounds++
      }
      assert.strictEqual(rounds, 7)
      assert.strictEqual((yield* service.totals).refreshed, 25)
      assert.strictEqual((yield* stats).refreshes, 25)
      yield* noReplay
    }).pipe(Effect.provide(stack())))

  it.scoped("keys whose refresh fails stay claimed: the next rounds do not hammer digi.me with them", () =>
    Effect.gen(function*() {
      const keys = Array.from({ length: 3 }, (_, i) => TokenKey.make(`user-${i}`, key.contractId))
      for (const each of keys) yield* authorize(each)
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const service = yield* upkeep({ batchSize: 2, refreshAhead: false, keepAliveWithin: "1 day" })
      yield* TestClock.adjust("29 days")
      yield* TestClock.adjust("1 hour")
      for (let i = 0; i < 10; i++) yield* simulator.injectFault({ _tag: "Status", endpoint: "token", status: 429 })
      const before = (yield* stats).requests.token
      const rounds = []
      for (let i = 0; i < 5; i++) rounds.push(yield* service.runOnce)
      // Each key once: 2, then 1, then nothing until the claims end.
      assert.deepStrictEqual(rounds.map((round) => round.claimed), [2, 1, 0, 0, 0])
      assert.strictEqual((yield* stats).requests.token - before, 3)
      assert.deepStrictEqual(rounds.map((round) => round.expiring), [2, 1, 0, 0, 0])
    }).pipe(Effect.provide(stack())))

  it.scoped("the daemon outlives a store that fails, or dies, on a round", () =>
    Effect.gen(function*() {
      yield* authorize()
      const before = yield* stored()
      const done = yield* advanceUntil(
        Effect.map(stored(), (now) => now.version > before.version),
        "3600 seconds",
        "10 seconds"
      )
      assert.isTrue(done)
      assert.isAtLeast(calls.claims, 3)
    }).pipe(
      Effect.provide(Layer.provideMerge(
        TokenUpkeep.layer(),
        stack({
          store: Layer.effect(
            TokenStore.TokenStore,
            Effect.map(TokenStore.makeMemory, (inner): TokenStore.Service => ({
              ...inner,
              claimDue: (query) =>
                Effect.suspend(() => {
                  calls.claims++
                  return calls.claims === 1
                    ? Effect.dieMessage("a bug in a store")
                    : calls.claims === 2
                    ? Effect.fail(new DigimeError.TokenStoreError({ operation: "claimDue", description: "down" }))
                    : inner.claimDue(query)
                })
            }))
          )
        })
      ))
    ))

  it.effect("bad options are InvalidConfig naming the field", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [TokenUpkeep.Options, string]> = [
        [{ batchSize: 0 }, "batchSize"],
        [{ batchSize: 1.5 }, "batchSize"],
        [{ concurrency: -1 }, "concurrency"],
        [{ interval: 0 }, "interval"],
        [{ interval: "forever" as Duration.DurationInput }, "interval"],
        [{ claimTime: "1 second" }, "claimTime"],
        [{ keepAliveWithin: -5 }, "keepAliveWithin"],
        [{ keepAlive: "sometimes" as "warn" }, "keepAlive"]
      ]
      for (const [options, field] of cases) {
        const error = yield* Effect.flip(upkeep(options))
        assert.strictEqual(error._tag, "InvalidConfig")
        assert.strictEqual(error.field, field)
      }
    }).pipe(Effect.provide(stack())))
})
