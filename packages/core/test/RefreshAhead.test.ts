/**
 * Refresh ahead: within the lead time a caller gets the still valid token at once and one refresh
 * runs in the background; within the wait margin (or after expiry) callers wait. A background
 * refresh's failure reaches the events and the store's "needs reconnect" mark, never a caller
 * holding a valid token.
 */
import { AutoRefresh, DigimeConfig, TokenEvents, TokenKey, TokenManager, TokenStore } from "@digime-effect/core"
import type { DigimeError } from "@digime-effect/core"
import { DigimeSimulator } from "@digime-effect/core/testing"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, ConfigProvider, Duration, Effect, Fiber, Layer, Queue, Redacted, Stream, TestClock } from "effect"
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

// The events published while `body` runs, collected from a subscription made before it.
const collecting = <A, E, R>(body: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const events = yield* TokenEvents.TokenEvents
    const queue = yield* events.subscribe
    const result = yield* body
    return { result, events: Chunk.toReadonlyArray(yield* Queue.takeAll(queue)) }
  })

const tags = (events: ReadonlyArray<TokenEvents.TokenEvent>) => events.map((event) => event._tag)

// The access token of the seeded token lives 1 hour; the lead time is 60 s, the wait margin 10 s.
describe("refresh ahead", () => {
  it.scoped("within the lead time: every caller gets the valid token at once, one refresh runs behind them", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const before = yield* stored()
      yield* TestClock.adjust("3570 seconds")
      // The refresh takes 20 s of the simulated clock: no caller may wait for it.
      yield* simulator.injectFault({ _tag: "Delay", endpoint: "token", delay: "20 seconds" })
      const seen: Array<string> = []
      const { events } = yield* collecting(Effect.gen(function*() {
        yield* Effect.all(
          Array.from({ length: 50 }, () =>
            AutoRefresh.withAutoRefresh(key, (credentials) =>
              Effect.zipRight(
                Effect.sync(() => seen.push(Redacted.value(credentials.accessToken))),
                readAccounts(credentials)
              ))),
          { concurrency: "unbounded" }
        )
        // All 50 answered without the clock moving: none waited for the refresh.
        assert.strictEqual(seen.length, 50)
        assert.deepStrictEqual(new Set(seen), new Set([Redacted.value(before.token.accessToken.value)]))
        assert.strictEqual((yield* stats).requests.token, 2) // the exchange and one refresh, in flight
        yield* advanceUntil(Effect.map(stored(), (now) => now.version > before.version), "25 seconds")
      }))
      const after = yield* stored()
      assert.isAbove(after.version, before.version)
      assert.strictEqual((yield* stats).refreshes, 1)
      assert.deepStrictEqual(tags(events), ["Refreshed"])
      const refreshed = events[0]!
      assert.strictEqual(refreshed._tag === "Refreshed" && refreshed.version, after.version)
      // The next caller gets the new token.
      yield* AutoRefresh.withAutoRefresh(
        key,
        (credentials) =>
          Effect.sync(() =>
            assert.strictEqual(Redacted.value(credentials.accessToken), Redacted.value(after.token.accessToken.value))
          )
      )
      yield* noReplay
    }).pipe(Effect.provide(stack())))

  it.scoped("within the wait margin: callers wait for the one refresh", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const before = yield* stored()
      yield* TestClock.adjust("3595 seconds")
      yield* simulator.injectFault({ _tag: "Delay", endpoint: "token", delay: "2 seconds" })
      const callers = yield* Effect.fork(Effect.all(
        Array.from({ length: 10 }, () =>
          AutoRefresh.withAutoRefresh(key, (credentials) => Effect.succeed(Redacted.value(credentials.accessToken)))),
        { concurrency: "unbounded" }
      ))
      const tokens = yield* joinAdvancing(callers, "3 seconds")
      const after = yield* stored()
      assert.isAbove(after.version, before.version)
      assert.deepStrictEqual(new Set(tokens), new Set([Redacted.value(after.token.accessToken.value)]))
      assert.strictEqual((yield* stats).refreshes, 1)
    }).pipe(Effect.provide(stack())))

  it.scoped("a background refresh that fails: the caller is served, RefreshFailed is published, no retry for 5 s", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const before = yield* stored()
      yield* TestClock.adjust("3570 seconds")
      // A client error spends nothing: the lease is released, a later refresh may succeed.
      yield* simulator.injectFault({ _tag: "Status", endpoint: "token", status: 429 })
      const { events } = yield* collecting(Effect.gen(function*() {
        assert.isAbove((yield* AutoRefresh.withAutoRefresh(key, readAccounts)).length, 0)
        yield* TestClock.adjust("1 second")
        // Within 5 s of the failure, callers do not start another refresh.
        assert.isAbove((yield* AutoRefresh.withAutoRefresh(key, readAccounts)).length, 0)
        yield* TestClock.adjust("1 second")
        assert.strictEqual((yield* stats).requests.token, 2)
      }))
      assert.deepStrictEqual(tags(events), ["RefreshFailed"])
      const failed = events[0]!
      assert.strictEqual(failed._tag === "RefreshFailed" && failed.error._tag, "ApiError")
      assert.strictEqual((yield* stored()).version, before.version)
      // After it, the next caller starts one again, which succeeds.
      yield* TestClock.adjust("5 seconds")
      yield* AutoRefresh.withAutoRefresh(key, readAccounts)
      yield* TestClock.adjust("1 second")
      assert.isAbove((yield* stored()).version, before.version)
      assert.strictEqual((yield* stats).refreshes, 1)
      yield* noReplay
    }).pipe(Effect.provide(stack())))

  it.scoped("a background refresh refused: ReauthorizationRequired, the key needs reconnect, callers served until expiry, then ReauthRequired without another request", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const before = yield* stored()
      yield* TestClock.adjust("3570 seconds")
      yield* simulator.injectFault({
        _tag: "Status",
        endpoint: "token",
        status: 401,
        code: "InvalidToken",
        message: "The refresh token is invalid"
      })
      const { events } = yield* collecting(Effect.gen(function*() {
        assert.isAbove((yield* AutoRefresh.withAutoRefresh(key, readAccounts)).length, 0)
        yield* TestClock.adjust("1 second")
      }))
      assert.deepStrictEqual(tags(events), ["ReauthorizationRequired"])
      const required = events[0]!
      assert.strictEqual(required._tag === "ReauthorizationRequired" && required.reason, "RefreshTokenInvalid")
      assert.strictEqual(required.key.userId, key.userId)
      // Marked in the store, and listed for the application.
      const marked = yield* stored()
      assert.deepStrictEqual(marked.reconnect?.reason, "RefreshTokenInvalid")
      assert.strictEqual(marked.reconnect?.version, before.version)
      const reconnect = yield* Stream.runCollect(TokenStore.streamReconnect())
      assert.deepStrictEqual(Chunk.toReadonlyArray(reconnect).map((entry) => entry.id), [TokenKey.toId(key)])
      // Still valid: served, with no other refresh attempt, and no second event.
      const more = yield* collecting(Effect.gen(function*() {
        yield* TestClock.adjust("10 seconds")
        assert.isAbove((yield* AutoRefresh.withAutoRefresh(key, readAccounts)).length, 0)
        yield* TestClock.adjust("20 seconds")
        // Expired: the mark answers at once.
        const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
        assert.strictEqual(error._tag === "ReauthRequired" && error.reason, "RefreshTokenInvalid")
      }))
      assert.deepStrictEqual(tags(more.events), [])
      assert.strictEqual((yield* stats).requests.token, 2)
      // The user connects again: the mark ends.
      yield* authorize()
      assert.isUndefined((yield* stored()).reconnect)
      assert.strictEqual(Chunk.size(yield* Stream.runCollect(TokenStore.streamReconnect())), 0)
    }).pipe(Effect.provide(stack())))

  it.scoped("a refresh token expired by the Clock is reported once", () =>
    Effect.gen(function*() {
      yield* authorize()
      yield* TestClock.adjust("31 days")
      const { events } = yield* collecting(Effect.gen(function*() {
        for (let i = 0; i < 3; i++) {
          const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
          assert.strictEqual(error._tag === "RefreshTokenExpired" && error.detectedBy, "Clock")
        }
      }))
      assert.deepStrictEqual(tags(events), ["ReauthorizationRequired"])
      assert.strictEqual((yield* stored()).reconnect?.reason, "RefreshTokenExpired")
    }).pipe(Effect.provide(stack())))
})

describe("TokenEvents", () => {
  it.scoped("an authorization publishes Stored, a delete Deleted; a transient refresh failure RefreshFailed", () =>
    Effect.gen(function*() {
      const { events } = yield* collecting(Effect.gen(function*() {
        yield* authorize()
        const version = (yield* stored()).version
        yield* Effect.flatMap(TokenManager.TokenManager, (manager) => manager.delete(key))
        return version
      }))
      assert.deepStrictEqual(tags(events), ["Stored", "Deleted"])
      const storedEvent = events[0]!
      assert.strictEqual(storedEvent._tag === "Stored" && storedEvent.key.userId, key.userId)
      // Every event carries the time it happened, by the Clock.
      for (const event of events) assert.isNumber(event.at)
    }).pipe(Effect.provide(stack())))

  it.scoped("a refresh whose answer was lost: ReauthorizationRequired (RefreshOutcomeUnknown) at once, not RefreshFailed", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      yield* TestClock.adjust("3595 seconds")
      yield* simulator.injectFault({ _tag: "DropResponse", endpoint: "token", grant: "refresh_token" })
      const { events } = yield* collecting(Effect.gen(function*() {
        const lost = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
        assert.strictEqual(lost._tag === "RequestError" && lost.reason, "Transport")
      }))
      assert.deepStrictEqual(tags(events), ["ReauthorizationRequired"])
      const event = events[0]!
      assert.strictEqual(event._tag === "ReauthorizationRequired" && event.reason, "RefreshOutcomeUnknown")
      assert.strictEqual((yield* stored()).reconnect?.reason, "RefreshOutcomeUnknown")
      // Served while valid, then the reauthorization; the spent refresh token is never sent again.
      assert.isAbove((yield* AutoRefresh.withAutoRefresh(key, readAccounts)).length, 0)
      yield* TestClock.adjust("6 seconds")
      const expired = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
      assert.strictEqual(expired._tag === "ReauthRequired" && expired.reason, "RefreshOutcomeUnknown")
      assert.strictEqual((yield* stats).requests.token, 2)
      yield* noReplay
    }).pipe(Effect.provide(stack())))

  it.scoped("layerCallback hands every event over in order, and a failing callback does not stop it", () =>
    Effect.gen(function*() {
      const received: Array<string> = []
      const callback = TokenEvents.layerCallback((event) =>
        Effect.suspend(() => {
          received.push(event._tag)
          return received.length === 1 ? Effect.fail("the webhook is down") : Effect.void
        })
      )
      yield* Effect.gen(function*() {
        yield* authorize()
        yield* Effect.flatMap(TokenManager.TokenManager, (manager) => manager.delete(key))
        yield* authorize()
        // The callback runs in its own fiber: let it catch up.
        yield* Effect.yieldNow().pipe(Effect.repeatN(20))
      }).pipe(Effect.provide(Layer.provideMerge(callback, stack())))
      assert.deepStrictEqual(received, ["Stored", "Deleted", "Stored"])
    }))

  it.scoped("the stream gets the events published while it runs", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.fork(Stream.runCollect(Stream.take(TokenEvents.stream, 2)))
      yield* Effect.yieldNow().pipe(Effect.repeatN(5))
      yield* authorize()
      yield* Effect.flatMap(TokenManager.TokenManager, (manager) => manager.delete(key))
      assert.deepStrictEqual(tags(Chunk.toReadonlyArray(yield* Fiber.join(fiber))), ["Stored", "Deleted"])
    }).pipe(Effect.provide(stack())))

  it.scoped("a capacity that is not a positive integer is InvalidOptions", () =>
    Effect.gen(function*() {
      for (const capacity of [0, -1, 1.5, Number.NaN]) {
        const error = yield* Effect.flip(TokenEvents.make({ capacity }))
        assert.strictEqual(error._tag, "InvalidOptions")
        assert.strictEqual(error.field, "capacity")
      }
    }))

  it.effect("without TokenEvents.layer, events go nowhere and nothing fails", () =>
    Effect.gen(function*() {
      const events = yield* TokenEvents.TokenEvents
      yield* events.publish(TokenEvents.TokenEvent.Deleted({ key, at: 0 }))
    }))
})

describe("DigimeConfig.refreshWaitMargin", () => {
  const base = { applicationId: "app", contracts: [] as ReadonlyArray<never> }
  it.effect("defaults to 10 s, or the lead time when that is shorter; longer than the lead time is InvalidConfig", () =>
    Effect.gen(function*() {
      const contract = { contractId: "c", privateKey: Redacted.make("pem") }
      const make = (options: Partial<DigimeConfig.Options>) =>
        DigimeConfig.make({ ...base, contracts: [contract], ...options })
      assert.strictEqual(Duration.toMillis((yield* make({})).refreshWaitMargin), 10_000)
      assert.strictEqual(Duration.toMillis((yield* make({ refreshLeadTime: "5 seconds" })).refreshWaitMargin), 5_000)
      const error: DigimeError.InvalidConfig = yield* Effect.flip(
        make({ refreshLeadTime: "30 seconds", refreshWaitMargin: "31 seconds" })
      )
      assert.strictEqual(error.field, "refreshWaitMargin")
      const fromEnv = yield* DigimeConfig.fromEnv.pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(
          new Map([
            ["DIGIME_APPLICATION_ID", "app"],
            ["DIGIME_CONTRACT_ID", "c"],
            ["DIGIME_PRIVATE_KEY", "pem"],
            ["DIGIME_REFRESH_WAIT_MARGIN", "20 seconds"]
          ])
        ))
      )
      assert.strictEqual(Duration.toMillis(Duration.decode(fromEnv.refreshWaitMargin!)), 20_000)
    }))
})
