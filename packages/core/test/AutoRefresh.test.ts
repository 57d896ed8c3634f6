import type { DataProtocol } from "@digime-effect/core"
import { Authorization, AutoRefresh, DigimeClient, DigimeError, TokenKey, TokenStore } from "@digime-effect/core"
import { DigimeSimulator, TestContract } from "@digime-effect/core/testing"
import { assert, describe, it } from "@effect/vitest"
import { Data, Effect, Fiber, Layer, Option, pipe, Redacted, TestClock } from "effect"
import {
  authorize,
  callbackUrl,
  contractId,
  countingStore,
  joinAdvancing,
  key,
  readAccounts,
  stack,
  stats,
  stored,
  testContract,
  totalRequests
} from "./fixtures.js"

const otherContract = await Effect.runPromise(TestContract.make("contract-2"))

class Boom extends Data.TaggedError("Boom")<{ readonly n: number }> {}

/** An effect that digi.me always refuses, counting its attempts. */
const alwaysRejected = (attempts: { count: number }) => (credentials: DataProtocol.Credentials) =>
  Effect.suspend(() => {
    attempts.count++
    return Effect.fail(
      new DigimeError.AccessTokenRejected({
        operation: "custom",
        contractId: credentials.contractId,
        status: 401,
        code: "InvalidToken"
      })
    )
  })

/** A store that fails `compareAndSet` `failures` times (Infinity: always), then works. */
const flakyStore = (failures: number) =>
  Layer.effect(
    TokenStore.TokenStore,
    Effect.gen(function*() {
      const inner = yield* TokenStore.makeMemory
      let left = failures
      return {
        ...inner,
        compareAndSet: (k, expected, token) =>
          Effect.suspend(() =>
            left-- > 0
              ? Effect.fail(
                new DigimeError.TokenStoreError({ operation: "compareAndSet", key: k, description: "down" })
              )
              : inner.compareAndSet(k, expected, token)
          )
      } satisfies TokenStore.Service
    })
  )

describe("withAutoRefresh", () => {
  it.effect("no token stored: ReauthRequired (Missing), no request sent", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
      assert.strictEqual(error._tag, "ReauthRequired")
      if (error._tag !== "ReauthRequired") return
      assert.strictEqual(error.reason, "Missing")
      assert.instanceOf(error.key, TokenKey.TokenKey)
      assert.strictEqual(error.key.userId, "user-1")
      assert.strictEqual(yield* totalRequests, 0)
    }).pipe(Effect.provide(stack())))

  it.effect("a valid token is used as it is: one data request, no refresh", () =>
    Effect.gen(function*() {
      yield* authorize()
      const before = yield* stored()
      let seen: Redacted.Redacted<string> | undefined
      const accounts = yield* AutoRefresh.withAutoRefresh(key, (credentials) => {
        seen = credentials.accessToken
        return readAccounts(credentials)
      })
      assert.isAbove(accounts.length, 0)
      assert.strictEqual(Redacted.value(seen!), Redacted.value(before.token.accessToken.value))
      const s = yield* stats
      assert.strictEqual(s.refreshes, 0)
      assert.strictEqual(s.requests.accounts, 1)
      assert.strictEqual((yield* stored()).version, before.version)
    }).pipe(Effect.provide(stack())))

  it.effect("the pipeable form works the same", () =>
    Effect.gen(function*() {
      yield* authorize()
      const accounts = yield* pipe(readAccounts, AutoRefresh.withAutoRefresh(key))
      assert.isAbove(accounts.length, 0)
    }).pipe(Effect.provide(stack())))

  it.effect("access token within the wait margin: refreshes first, stores, then runs with the new token", () =>
    Effect.gen(function*() {
      yield* authorize()
      const before = yield* stored()
      // 1 hour lifetime, 10 s wait margin: at 59 min 55 s callers wait for the refresh.
      yield* TestClock.adjust("3595 seconds")
      const store = yield* TokenStore.TokenStore
      const accounts = yield* AutoRefresh.withAutoRefresh(key, (credentials) =>
        Effect.gen(function*() {
          // Write before use: what we are given is already the stored token.
          const now = Option.getOrThrow(yield* store.get(key))
          assert.isAbove(now.version, before.version)
          assert.strictEqual(Redacted.value(credentials.accessToken), Redacted.value(now.token.accessToken.value))
          assert.notStrictEqual(
            Redacted.value(credentials.accessToken),
            Redacted.value(before.token.accessToken.value)
          )
          return yield* readAccounts(credentials)
        }))
      assert.isAbove(accounts.length, 0)
      const s = yield* stats
      assert.strictEqual(s.refreshes, 1)
      assert.strictEqual(s.requests.token, 2) // exchange + refresh
    }).pipe(Effect.provide(stack())))

  it.effect("not yet within the lead time: no refresh", () =>
    Effect.gen(function*() {
      yield* authorize()
      yield* TestClock.adjust("3539 seconds")
      yield* AutoRefresh.withAutoRefresh(key, readAccounts)
      assert.strictEqual((yield* stats).refreshes, 0)
    }).pipe(Effect.provide(stack())))

  it.effect("refresh token expired by the Clock: RefreshTokenExpired, no request, stored token kept", () =>
    Effect.gen(function*() {
      yield* authorize()
      const before = yield* stored()
      const requests = yield* totalRequests
      yield* TestClock.adjust("31 days")
      const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
      assert.strictEqual(error._tag, "RefreshTokenExpired")
      if (error._tag !== "RefreshTokenExpired") return
      assert.strictEqual(error.detectedBy, "Clock")
      assert.strictEqual(error.key.userId, key.userId)
      assert.strictEqual(yield* totalRequests, requests)
      assert.strictEqual((yield* stored()).version, before.version)
    }).pipe(Effect.provide(stack())))

  it.effect("rejected, and the store already holds a newer token: retries with it, no refresh", () =>
    Effect.gen(function*() {
      yield* authorize()
      const client = yield* DigimeClient.DigimeClient
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const store = yield* TokenStore.TokenStore
      const first = yield* stored()
      // Another process refreshed meanwhile: a newer token exists, the old access token is revoked.
      const newer = yield* client.refreshToken({
        contractId: key.contractId,
        refreshToken: first.token.refreshToken.value
      })
      yield* simulator.revokeAccessToken(Redacted.value(first.token.accessToken.value))
      const refreshesBefore = (yield* stats).refreshes
      const used: Array<string> = []
      let calls = 0
      yield* AutoRefresh.withAutoRefresh(key, (credentials) =>
        Effect.gen(function*() {
          if (calls++ === 0) yield* store.set(key, newer) // lands while the first attempt runs
          used.push(Redacted.value(credentials.accessToken))
          return yield* readAccounts(credentials)
        }))
      assert.deepStrictEqual(used, [
        Redacted.value(first.token.accessToken.value),
        Redacted.value(newer.accessToken.value)
      ])
      assert.strictEqual((yield* stats).refreshes, refreshesBefore)
    }).pipe(Effect.provide(stack())))

  it.effect("rejected, nothing newer stored: refreshes and retries once", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const first = yield* stored()
      yield* simulator.revokeAccessToken(Redacted.value(first.token.accessToken.value))
      const accounts = yield* AutoRefresh.withAutoRefresh(key, readAccounts)
      assert.isAbove(accounts.length, 0)
      const s = yield* stats
      assert.strictEqual(s.refreshes, 1)
      assert.strictEqual(s.requests.accounts, 2)
      assert.isAbove((yield* stored()).version, first.version)
    }).pipe(Effect.provide(stack())))

  it.effect("rejected again right after a refresh: InvalidAccessToken", () =>
    Effect.gen(function*() {
      yield* authorize()
      const attempts = { count: 0 }
      const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, alwaysRejected(attempts)))
      assert.strictEqual(error._tag, "InvalidAccessToken")
      assert.strictEqual(attempts.count, 2)
      assert.strictEqual((yield* stats).refreshes, 1)
      assert.strictEqual(error._tag === "InvalidAccessToken" && error.key, key)
      assert.include(error.message, key.contractId)
      assert.notInclude(error.message, key.userId)
      // Only a new authorization helps: the key is marked so, and the next call says so at once.
      const marked = yield* stored()
      assert.strictEqual(marked.reconnect?.reason, "InvalidAccessToken")
      assert.strictEqual(marked.reconnect?.version, marked.version)
      yield* TestClock.adjust("1 hour")
      const again = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
      assert.strictEqual(again._tag, "InvalidAccessToken")
      assert.strictEqual((yield* stats).refreshes, 1)
    }).pipe(Effect.provide(stack())))

  it.effect("a token refreshed ahead of expiry and then rejected is InvalidAccessToken, without a second refresh", () =>
    Effect.gen(function*() {
      yield* authorize()
      yield* TestClock.adjust("1 hour")
      const attempts = { count: 0 }
      const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, alwaysRejected(attempts)))
      assert.strictEqual(error._tag, "InvalidAccessToken")
      assert.strictEqual(attempts.count, 1)
      assert.strictEqual((yield* stats).refreshes, 1)
    }).pipe(Effect.provide(stack())))

  it.effect("refresh answered 'refresh token expired': RefreshTokenExpired (Server), stored token unchanged", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const before = yield* stored()
      yield* simulator.injectFault({
        _tag: "Status",
        endpoint: "token",
        status: 401,
        code: "InvalidToken",
        message: "The token (refresh_token) is expired"
      })
      yield* TestClock.adjust("1 hour")
      const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
      assert.strictEqual(error._tag, "RefreshTokenExpired")
      assert.strictEqual(error._tag === "RefreshTokenExpired" && error.detectedBy, "Server")
      assert.strictEqual((yield* stored()).version, before.version)
    }).pipe(Effect.provide(stack())))

  it.effect("refresh answered 'refresh token invalid': ReauthRequired (RefreshTokenInvalid), stored token unchanged", () =>
    Effect.gen(function*() {
      const token = yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const before = yield* stored()
      yield* simulator.revokeUser(token.digimeUserId!)
      yield* TestClock.adjust("1 hour")
      const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
      assert.strictEqual(error._tag, "ReauthRequired")
      assert.strictEqual(error._tag === "ReauthRequired" && error.reason, "RefreshTokenInvalid")
      assert.strictEqual((yield* stored()).version, before.version)
    }).pipe(Effect.provide(stack())))

  it.effect("refresh fails with a server error: that ApiError, one attempt only, stored token unchanged", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const before = yield* stored()
      yield* simulator.injectFault({ _tag: "Status", endpoint: "token", status: 503 })
      yield* TestClock.adjust("1 hour")
      const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
      assert.strictEqual(error._tag, "ApiError")
      assert.strictEqual(error._tag === "ApiError" && error.status, 503)
      assert.strictEqual((yield* stats).requests.token, 2) // exchange + the one refresh attempt
      assert.strictEqual((yield* stored()).version, before.version)
      // digi.me may have rotated before failing: the refresh token is never sent again.
      const next = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
      assert.strictEqual(next._tag === "ReauthRequired" && next.reason, "RefreshOutcomeUnknown")
      assert.strictEqual((yield* stats).requests.token, 2)
    }).pipe(Effect.provide(stack())))

  it.effect("refresh rate limited (429): that ApiError, stored token unchanged, and the next call refreshes", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const before = yield* stored()
      yield* simulator.injectFault({ _tag: "Status", endpoint: "token", status: 429 })
      yield* TestClock.adjust("1 hour")
      const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
      assert.strictEqual(error._tag === "ApiError" && error.status, 429)
      assert.strictEqual((yield* stored()).version, before.version)
      yield* AutoRefresh.withAutoRefresh(key, readAccounts)
      assert.strictEqual((yield* stats).refreshes, 1)
    }).pipe(Effect.provide(stack())))

  it.effect("refresh times out: RequestError (Timeout), stored token unchanged", () =>
    Effect.gen(function*() {
      yield* authorize()
      const before = yield* stored()
      yield* TestClock.adjust("1 hour")
      const simulator = yield* DigimeSimulator.DigimeSimulator
      yield* simulator.injectFault({ _tag: "Delay", endpoint: "token", delay: "1 minute" })
      const fiber = yield* Effect.fork(Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts)))
      yield* TestClock.adjust("30 seconds")
      const error = yield* Fiber.join(fiber)
      assert.strictEqual(error._tag, "RequestError")
      assert.strictEqual(error._tag === "RequestError" && error.reason, "Timeout")
      assert.strictEqual((yield* stored()).version, before.version)
    }).pipe(Effect.provide(stack())))

  it.effect("a lost refresh answer is a RequestError and is not repeated blindly (it would be a replay)", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const before = yield* stored()
      yield* simulator.injectFault({ _tag: "DropResponse", endpoint: "token" })
      yield* TestClock.adjust("1 hour")
      const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
      assert.strictEqual(error._tag, "RequestError")
      assert.strictEqual(error._tag === "RequestError" && error.reason, "Transport")
      assert.strictEqual((yield* stored()).version, before.version)
      const s = yield* stats
      assert.strictEqual(s.requests.token, 2)
      assert.strictEqual(s.replays, 0)
      // digi.me rotated the token though: the stored refresh token may be spent, so it is never
      // sent again (a replay would revoke the grant). The access token has expired: reauthorize.
      const next = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
      assert.strictEqual(next._tag, "ReauthRequired")
      assert.strictEqual(next._tag === "ReauthRequired" && next.reason, "RefreshOutcomeUnknown")
      const after = yield* stats
      assert.strictEqual(after.requests.token, 2)
      assert.strictEqual(after.replays, 0)
      assert.strictEqual(after.revocations, 0)
      // nextStep turns it into a reauthorization, which restores access.
      if (next._tag !== "ReauthRequired") return
      const step = yield* AutoRefresh.nextStep(next, { callbackUrl })
      assert.strictEqual(step.kind, "reauthorize")
      const simulatorAgain = yield* DigimeSimulator.DigimeSimulator
      yield* Authorization.completeAuthorization(yield* simulatorAgain.consent(step.url))
      assert.isAbove((yield* AutoRefresh.withAutoRefresh(key, readAccounts)).length, 0)
      assert.strictEqual((yield* stats).replays, 0)
    }).pipe(Effect.provide(stack())))

  it.effect("the effect's own errors pass through unchanged", () =>
    Effect.gen(function*() {
      yield* authorize()
      const boom = new Boom({ n: 7 })
      const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, () => Effect.fail(boom)))
      assert.strictEqual(error, boom)
      assert.strictEqual((yield* stats).refreshes, 0)
    }).pipe(Effect.provide(stack())))

  it.effect("other digi.me errors of the effect pass through unchanged (no refresh)", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      yield* simulator.injectFault({ _tag: "Status", endpoint: "trigger", status: 403, code: "InsufficientScope" })
      const client = yield* DigimeClient.DigimeClient
      const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, client.readSession))
      assert.strictEqual(error._tag, "ApiError")
      assert.strictEqual(error._tag === "ApiError" && error.code, "InsufficientScope")
      assert.strictEqual((yield* stats).refreshes, 0)
    }).pipe(Effect.provide(stack())))
})

describe("withAutoRefresh: single flight", () => {
  it.effect(
    "1,000 concurrent calls on a stale token with strict rotation: one refresh, 1,000 successes, no replay",
    () =>
      Effect.gen(function*() {
        yield* authorize()
        yield* TestClock.adjust("1 hour")
        const results = yield* Effect.all(
          Array.from({ length: 1000 }, () => AutoRefresh.withAutoRefresh(key, readAccounts)),
          { concurrency: "unbounded" }
        )
        assert.strictEqual(results.length, 1000)
        assert.isTrue(results.every((accounts) => accounts.length > 0))
        const s = yield* stats
        assert.strictEqual(s.refreshes, 1)
        assert.strictEqual(s.requests.token, 2)
        assert.strictEqual(s.replays, 0)
        assert.strictEqual(s.revocations, 0)
        assert.strictEqual(s.requests.accounts, 1000)
      }).pipe(Effect.provide(stack({ simulator: { strictRotation: true } }))),
    { timeout: 120_000 }
  )

  it.effect("concurrent callers share the failure of the one refresh", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      yield* simulator.injectFault({ _tag: "Status", endpoint: "token", status: 500 })
      yield* TestClock.adjust("1 hour")
      const errors = yield* Effect.all(
        Array.from({ length: 50 }, () => Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))),
        { concurrency: "unbounded" }
      )
      assert.isTrue(errors.every((error) => error._tag === "ApiError" && error.status === 500))
      assert.strictEqual((yield* stats).requests.token, 2)
    }).pipe(Effect.provide(stack())))

  it.effect("concurrent rejections of one access token cause one refresh", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const first = yield* stored()
      yield* simulator.revokeAccessToken(Redacted.value(first.token.accessToken.value))
      yield* Effect.all(
        Array.from({ length: 100 }, () => AutoRefresh.withAutoRefresh(key, readAccounts)),
        { concurrency: "unbounded" }
      )
      const s = yield* stats
      assert.strictEqual(s.refreshes, 1)
      assert.strictEqual(s.replays, 0)
    }).pipe(Effect.provide(stack())))

  it.effect("different keys refresh independently", () =>
    Effect.gen(function*() {
      const other = TokenKey.make("user-2", key.contractId)
      yield* authorize(key)
      yield* authorize(other)
      yield* TestClock.adjust("1 hour")
      yield* Effect.all([
        AutoRefresh.withAutoRefresh(key, readAccounts),
        AutoRefresh.withAutoRefresh(other, readAccounts)
      ], { concurrency: "unbounded" })
      assert.strictEqual((yield* stats).refreshes, 2)
    }).pipe(Effect.provide(stack())))
})

describe("withAutoRefresh: storing the refreshed token", () => {
  it.effect("a store write that fails is retried; the token is stored before use", () =>
    Effect.gen(function*() {
      yield* authorize()
      const before = yield* stored()
      yield* TestClock.adjust("1 hour")
      const fiber = yield* Effect.fork(AutoRefresh.withAutoRefresh(key, readAccounts))
      const accounts = yield* joinAdvancing(fiber, "10 seconds")
      assert.isAbove(accounts.length, 0)
      assert.isAbove((yield* stored()).version, before.version)
      assert.strictEqual((yield* stats).refreshes, 1)
    }).pipe(Effect.provide(stack({ store: flakyStore(2) }))))

  it.effect("a store that keeps failing: TokenStoreError, the effect never runs, and the rotated token is not lost", () =>
    Effect.gen(function*() {
      yield* authorize()
      const before = yield* stored()
      yield* TestClock.adjust("1 hour")
      let ran = false
      const fiber = yield* Effect.fork(Effect.flip(AutoRefresh.withAutoRefresh(key, (credentials) => {
        ran = true
        return readAccounts(credentials)
      })))
      const error = yield* joinAdvancing(fiber, "10 seconds")
      assert.strictEqual(error._tag, "TokenStoreError")
      assert.isFalse(ran)
      assert.strictEqual((yield* stored()).version, before.version)
      assert.strictEqual((yield* stats).refreshes, 1)
    }).pipe(Effect.provide(stack({ store: flakyStore(Infinity) }))))

  it.effect("once the store recovers, the kept token is stored without spending the refresh token again", () =>
    Effect.gen(function*() {
      yield* authorize()
      const before = yield* stored()
      yield* TestClock.adjust("1 hour")
      // 5 failures: the first refresh's write attempts (1 + 4 retries) all fail.
      const fiber = yield* Effect.fork(Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts)))
      assert.strictEqual((yield* joinAdvancing(fiber, "10 seconds"))._tag, "TokenStoreError")
      const accounts = yield* AutoRefresh.withAutoRefresh(key, readAccounts)
      assert.isAbove(accounts.length, 0)
      const s = yield* stats
      assert.strictEqual(s.refreshes, 1)
      assert.strictEqual(s.replays, 0)
      assert.isAbove((yield* stored()).version, before.version)
    }).pipe(Effect.provide(stack({ store: flakyStore(5) }))))

  it.effect("a kept token that has expired by the time the store recovers is stored, then refreshed", () =>
    Effect.gen(function*() {
      yield* authorize()
      yield* TestClock.adjust("1 hour")
      const fiber = yield* Effect.fork(Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts)))
      assert.strictEqual((yield* joinAdvancing(fiber, "10 seconds"))._tag, "TokenStoreError")
      // The kept token's access token expires before the next call.
      yield* TestClock.adjust("2 hours")
      const accounts = yield* AutoRefresh.withAutoRefresh(key, readAccounts)
      assert.isAbove(accounts.length, 0)
      const s = yield* stats
      assert.strictEqual(s.refreshes, 2) // the kept token's refresh token was spent once, not replayed
      assert.strictEqual(s.replays, 0)
      // The expired kept token was never sent to digi.me: it was refreshed first.
      assert.strictEqual(s.requests.accounts, 1)
    }).pipe(Effect.provide(stack({ store: flakyStore(5) }))))

  it.effect("a renewed token that expires while the call is in flight is renewed once more, not InvalidAccessToken", () =>
    Effect.gen(function*() {
      yield* authorize()
      yield* TestClock.adjust("1 hour")
      let attempts = 0
      const accounts = yield* AutoRefresh.withAutoRefresh(key, (credentials) =>
        Effect.gen(function*() {
          // The first attempt is slow: the token just refreshed expires before digi.me sees it.
          if (attempts++ === 0) yield* TestClock.adjust("2 hours")
          return yield* readAccounts(credentials)
        }))
      assert.isAbove(accounts.length, 0)
      assert.strictEqual(attempts, 2)
      assert.strictEqual((yield* stats).refreshes, 2)
    }).pipe(Effect.provide(stack())))

  it.effect("a call slower than every token it gets: 3 tokens, then RequestError (Timeout), never InvalidAccessToken", () =>
    Effect.gen(function*() {
      yield* authorize()
      yield* TestClock.adjust("1 hour")
      let attempts = 0
      const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, (credentials) =>
        Effect.gen(function*() {
          attempts++
          yield* TestClock.adjust("2 hours") // each token has expired before digi.me sees it
          return yield* readAccounts(credentials)
        })))
      assert.strictEqual(error._tag === "RequestError" && error.reason, "Timeout")
      assert.strictEqual(attempts, 3)
      assert.strictEqual((yield* stats).refreshes, 3)
      // The grant is fine: the next call that is fast enough succeeds.
      assert.isAbove((yield* AutoRefresh.withAutoRefresh(key, readAccounts)).length, 0)
    }).pipe(Effect.provide(stack())))

  it.effect("250 concurrent calls, many slower than the 3 s tokens: no InvalidAccessToken, the grant is kept", () =>
    Effect.gen(function*() {
      yield* authorize()
      // Calls of 0 to 4 s against tokens of 3 s (2 to 3 s once their expiry is cut to whole seconds):
      // the calls of 1 s outlive some tokens, those of 3 and 4 s outlive every token.
      const call = (i: number) =>
        AutoRefresh.withAutoRefresh(
          key,
          (credentials) => Effect.sleep(`${(i % 5) * 1000} millis`).pipe(Effect.zipRight(readAccounts(credentials)))
        )
      const fiber = yield* Effect.fork(
        Effect.all(Array.from({ length: 250 }, (_, i) => Effect.either(call(i))), { concurrency: "unbounded" })
      )
      const results = yield* joinAdvancing(fiber, "60 seconds", 1200)
      const failures = results.flatMap((result) => result._tag === "Left" ? [result.left] : [])
      // Not one call is reported as a lost grant: a failure is a call slower than any token.
      for (const failure of failures) assert.strictEqual(failure._tag === "RequestError" && failure.reason, "Timeout")
      const succeeded = (delay: number) => results.filter((result, i) => i % 5 === delay && result._tag === "Right")
      assert.strictEqual(succeeded(0).length + succeeded(1).length, 100)
      assert.strictEqual(succeeded(4).length, 0)
      // The grant is intact: a fast call succeeds, without a new authorization.
      assert.isAbove((yield* AutoRefresh.withAutoRefresh(key, readAccounts)).length, 0)
    }).pipe(Effect.provide(stack({
      simulator: { accessTokenLifetime: "3 seconds" },
      config: { refreshLeadTime: "200 millis" }
    }))))

  it.effect("a caller interrupted during the refresh does not cancel it: the new token is stored", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const before = yield* stored()
      yield* TestClock.adjust("1 hour")
      yield* simulator.injectFault({ _tag: "Delay", endpoint: "token", delay: "5 seconds" })
      const caller = yield* Effect.fork(AutoRefresh.withAutoRefresh(key, readAccounts))
      yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(caller)
      assert.strictEqual((yield* stored()).version, before.version)
      yield* TestClock.adjust("5 seconds")
      const after = yield* stored()
      assert.isAbove(after.version, before.version)
      assert.strictEqual((yield* stats).refreshes, 1)
      // And the stored token is the one digi.me now accepts.
      const accounts = yield* AutoRefresh.withAutoRefresh(key, readAccounts)
      assert.isAbove(accounts.length, 0)
      assert.strictEqual((yield* stats).refreshes, 1)
    }).pipe(Effect.provide(stack())))
})

describe("withAutoRefresh: the hot path", () => {
  it.effect("a valid token is served from memory: no store read per call", () => {
    const counter = { gets: 0 }
    return Effect.gen(function*() {
      yield* authorize()
      counter.gets = 0
      for (let i = 0; i < 10; i++) yield* AutoRefresh.withAutoRefresh(key, readAccounts)
      assert.strictEqual(counter.gets, 0)
      // After the cache's time to live, the store is read again, once.
      yield* TestClock.adjust("31 seconds")
      for (let i = 0; i < 10; i++) yield* AutoRefresh.withAutoRefresh(key, readAccounts)
      assert.strictEqual(counter.gets, 1)
    }).pipe(Effect.provide(stack({ store: countingStore(counter) })))
  })

  it.effect("each key has a cache entry of its own: one user on two contracts, two users on one contract", () =>
    Effect.gen(function*() {
      const keys = [
        key,
        TokenKey.make(key.userId, otherContract.contract.contractId),
        TokenKey.make("user-2", contractId)
      ]
      for (const k of keys) yield* authorize(k)
      const expected = yield* Effect.forEach(
        keys,
        (k) => Effect.map(stored(k), (versioned) => Redacted.value(versioned.token.accessToken.value))
      )
      assert.strictEqual(new Set(expected).size, keys.length)
      // Twice: the second round is served from the cache that the first one (and the exchanges) filled.
      for (let round = 0; round < 2; round++) {
        const used = yield* Effect.forEach(
          keys,
          (k) =>
            AutoRefresh.withAutoRefresh(k, (credentials) => Effect.succeed(Redacted.value(credentials.accessToken)))
        )
        assert.deepStrictEqual(used, expected)
      }
    }).pipe(Effect.provide(stack({
      simulator: {
        contracts: [testContract, otherContract].map((c) => ({
          contractId: c.contract.contractId,
          publicKeyPem: c.publicKeyPem
        }))
      },
      config: { contracts: [testContract.contract, otherContract.contract] }
    }))))

  it.effect("tokenCacheTtl 0 reads the store on every call", () => {
    const counter = { gets: 0 }
    return Effect.gen(function*() {
      yield* authorize()
      counter.gets = 0
      for (let i = 0; i < 10; i++) yield* AutoRefresh.withAutoRefresh(key, readAccounts)
      assert.strictEqual(counter.gets, 10)
    }).pipe(Effect.provide(stack({ store: countingStore(counter), config: { tokenCacheTtl: 0 } })))
  })

  it.effect("a rejection of the cached token re-reads the store and finds another process's newer token", () =>
    Effect.gen(function*() {
      yield* authorize()
      const client = yield* DigimeClient.DigimeClient
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const store = yield* TokenStore.TokenStore
      const first = yield* stored()
      yield* AutoRefresh.withAutoRefresh(key, readAccounts) // cached now
      // Another process refreshes and stores; this process's cache still holds the old token,
      // which digi.me no longer accepts.
      const newer = yield* client.refreshToken({
        contractId: key.contractId,
        refreshToken: first.token.refreshToken.value
      })
      yield* store.compareAndSet(key, first.version, newer)
      yield* simulator.revokeAccessToken(Redacted.value(first.token.accessToken.value))
      const refreshes = (yield* stats).refreshes
      const used: Array<string> = []
      yield* AutoRefresh.withAutoRefresh(key, (credentials) => {
        used.push(Redacted.value(credentials.accessToken))
        return readAccounts(credentials)
      })
      assert.deepStrictEqual(used, [
        Redacted.value(first.token.accessToken.value),
        Redacted.value(newer.accessToken.value)
      ])
      assert.strictEqual((yield* stats).refreshes, refreshes)
    }).pipe(Effect.provide(stack())))
})

describe("withAutoRefresh: interruption", () => {
  it.effect("callers interrupted at any point never leave the key stuck", () =>
    Effect.gen(function*() {
      yield* authorize()
      yield* TestClock.adjust("1 hour")
      // Interrupt callers after 0, 1, 2, ... scheduler turns: some before the flight is
      // registered, some between registration and start, some while it runs.
      for (let turns = 0; turns < 30; turns++) {
        const caller = yield* Effect.fork(AutoRefresh.withAutoRefresh(key, readAccounts))
        for (let i = 0; i < turns; i++) yield* Effect.yieldNow()
        yield* Fiber.interrupt(caller)
      }
      const done = yield* Effect.fork(AutoRefresh.withAutoRefresh(key, readAccounts))
      const accounts = yield* joinAdvancing(done, "5 seconds")
      assert.isAbove(accounts.length, 0)
      assert.strictEqual((yield* stats).replays, 0)
    }).pipe(Effect.provide(stack())))
})

describe("exchangeCodeForToken with a key: storing", () => {
  /** A store whose `set` fails `failures` times, then works. */
  const failingSet = (failures: number) =>
    Layer.effect(
      TokenStore.TokenStore,
      Effect.gen(function*() {
        const inner = yield* TokenStore.makeMemory
        let left = failures
        return {
          ...inner,
          set: (k, token) =>
            Effect.suspend(() =>
              left-- > 0
                ? Effect.fail(new DigimeError.TokenStoreError({ operation: "set", key: k, description: "down" }))
                : inner.set(k, token)
            )
        } satisfies TokenStore.Service
      })
    )

  it.effect("a failed write is retried", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.fork(authorize())
      yield* joinAdvancing(fiber, "5 seconds")
      assert.isAbove((yield* stored()).version, 0)
    }).pipe(Effect.provide(stack({ store: failingSet(3) }))))

  it.effect("a store that stays down: TokenStoreError", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.fork(Effect.flip(authorize()))
      const error = yield* joinAdvancing(fiber, "5 seconds")
      assert.strictEqual(error._tag, "TokenStoreError")
    }).pipe(Effect.provide(stack({ store: failingSet(Infinity) }))))
})

describe("nextStep", () => {
  it.effect("RefreshTokenExpired becomes a reauthorization; completing it restores access", () =>
    Effect.gen(function*() {
      yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      yield* TestClock.adjust("31 days")
      const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
      assert.strictEqual(error._tag, "RefreshTokenExpired")
      if (error._tag !== "RefreshTokenExpired") return
      const step = yield* AutoRefresh.nextStep(error, { callbackUrl })
      assert.strictEqual(step.kind, "reauthorize")
      assert.include(step.url, "/user-reauth?code=")
      const completed = yield* Authorization.completeAuthorization(yield* simulator.consent(step.url))
      assert.strictEqual(completed.kind, "reauthorize")
      assert.strictEqual(completed.key, key)
      const accounts = yield* AutoRefresh.withAutoRefresh(key, readAccounts)
      assert.isAbove(accounts.length, 0)
    }).pipe(Effect.provide(stack())))

  it.effect("when digi.me refuses the stored access token for reauthorization, falls back to authorize", () =>
    Effect.gen(function*() {
      const token = yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      yield* simulator.revokeUser(token.digimeUserId!)
      yield* TestClock.adjust("1 hour")
      const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
      assert.strictEqual(error._tag, "ReauthRequired")
      if (error._tag !== "ReauthRequired") return
      const step = yield* AutoRefresh.nextStep(error, { callbackUrl })
      assert.strictEqual(step.kind, "authorize")
      assert.include(step.url, "/authorize?code=")
      assert.strictEqual((yield* stats).requests.reference, 1) // it did ask
      yield* Authorization.completeAuthorization(yield* simulator.consent(step.url))
      assert.isAbove((yield* AutoRefresh.withAutoRefresh(key, readAccounts)).length, 0)
    }).pipe(Effect.provide(stack())))

  it.effect("ReauthRequired (Missing) and InvalidAccessToken become an authorization without asking for reauth", () =>
    Effect.gen(function*() {
      const missing = yield* AutoRefresh.nextStep(new DigimeError.ReauthRequired({ key, reason: "Missing" }), {
        callbackUrl
      })
      assert.strictEqual(missing.kind, "authorize")
      const invalid = yield* AutoRefresh.nextStep(new DigimeError.InvalidAccessToken({ key }), { callbackUrl })
      assert.strictEqual(invalid.kind, "authorize")
      assert.strictEqual((yield* stats).requests.reference, 0)
    }).pipe(Effect.provide(stack())))
})
