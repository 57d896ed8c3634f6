import { Authorization, AutoRefresh, DigimeClient, TokenKey, TokenStore } from "@digime-effect/core"
import { DigimeSimulator } from "@digime-effect/core/testing"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Redacted, TestClock } from "effect"
import { authorize, callbackUrl, key, stack, stats, stored } from "./fixtures.js"

const start = (forKey: TokenKey.TokenKey = key) => Authorization.startAuthorization({ key: forKey, callbackUrl })

/** The stored token of `key`, as a comparable snapshot (or "none"). */
const snapshot = Effect.flatMap(TokenStore.TokenStore, (store) => store.get(key)).pipe(
  Effect.map(Option.match({
    onNone: () => "none",
    onSome: (v) => `${v.version}:${Redacted.value(v.token.accessToken.value)}`
  }))
)

describe("Authorization", () => {
  it.effect("start → consent → complete stores the token under the key of the start", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const started = yield* start()
      assert.strictEqual(started.kind, "authorize")
      assert.isTrue(started.url.startsWith(`${simulator.onboardUrl}authorize?code=`))
      // 256 bits of state, base64url.
      assert.match(started.state, /^[A-Za-z0-9_-]{43}$/)
      const callback = yield* simulator.consent(started.url)
      assert.include(callback, `state=${started.state}`)
      const completed = yield* Authorization.completeAuthorization(callback)
      assert.strictEqual(completed.key, key)
      assert.isString(completed.accountReference)
      const saved = yield* stored()
      assert.strictEqual(
        Redacted.value(saved.token.accessToken.value),
        Redacted.value(completed.token.accessToken.value)
      )
      const client = yield* DigimeClient.DigimeClient
      assert.isAbove((yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)).length, 0)
    }).pipe(Effect.provide(stack())))

  it.effect("two starts never share a state", () =>
    Effect.gen(function*() {
      const a = yield* start()
      const b = yield* start()
      assert.notStrictEqual(a.state, b.state)
    }).pipe(Effect.provide(stack())))

  it.effect("the callback completes the right user's authorization when several are in progress", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const other = TokenKey.make("user-2", key.contractId)
      const first = yield* start(key)
      const second = yield* start(other)
      const completed = yield* Authorization.completeAuthorization(yield* simulator.consent(second.url))
      assert.strictEqual(completed.key, other)
      assert.strictEqual(yield* snapshot, "none")
      yield* Authorization.completeAuthorization(yield* simulator.consent(first.url))
      assert.notStrictEqual(yield* snapshot, "none")
    }).pipe(Effect.provide(stack())))

  it.effect("a replayed callback is ReusedState and changes nothing", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const callback = yield* simulator.consent((yield* start()).url)
      yield* Authorization.completeAuthorization(callback)
      const before = yield* snapshot
      const exchanges = (yield* stats).exchanges
      const error = yield* Effect.flip(Authorization.completeAuthorization(callback))
      assert.strictEqual(error._tag, "CallbackError")
      assert.strictEqual(error._tag === "CallbackError" && error.reason, "ReusedState")
      assert.strictEqual(yield* snapshot, before)
      assert.strictEqual((yield* stats).exchanges, exchanges)
    }).pipe(Effect.provide(stack())))

  it.effect("concurrent deliveries of one callback: exactly one completes", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const callback = yield* simulator.consent((yield* start()).url)
      const results = yield* Effect.all(
        Array.from({ length: 5 }, () => Effect.either(Authorization.completeAuthorization(callback))),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(results.filter((r) => r._tag === "Right").length, 1)
      assert.strictEqual((yield* stats).exchanges, 1)
    }).pipe(Effect.provide(stack())))

  it.effect("an unknown state is UnknownState, with no request and nothing stored", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Authorization.completeAuthorization("https://app.example/cb?success=true&state=forged&code=c")
      )
      assert.strictEqual(error._tag === "CallbackError" && error.reason, "UnknownState")
      assert.strictEqual((yield* stats).requests.token, 0)
      assert.strictEqual(yield* snapshot, "none")
    }).pipe(Effect.provide(stack())))

  it.effect("a callback after the default 10 minutes is ExpiredState", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const started = yield* start()
      const callback = yield* simulator.consent(started.url)
      yield* TestClock.adjust("10 minutes")
      const error = yield* Effect.flip(Authorization.completeAuthorization(callback))
      assert.strictEqual(error._tag === "CallbackError" && error.reason, "ExpiredState")
      assert.strictEqual(yield* snapshot, "none")
      assert.strictEqual((yield* stats).exchanges, 0)
    }).pipe(Effect.provide(stack())))

  it.effect("a shorter expiresIn is honoured, and just before it the callback works", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const started = yield* Authorization.startAuthorization({ key, callbackUrl, expiresIn: "2 minutes" })
      const callback = yield* simulator.consent(started.url)
      yield* TestClock.adjust("119 seconds")
      yield* Authorization.completeAuthorization(callback)
      assert.notStrictEqual(yield* snapshot, "none")
    }).pipe(Effect.provide(stack())))

  it.effect("a bad expiresIn is InvalidOptions before any request", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Authorization.startAuthorization({ key, callbackUrl, expiresIn: 0 }))
      assert.strictEqual(error._tag, "InvalidOptions")
      assert.strictEqual((yield* stats).requests.authorize, 0)
    }).pipe(Effect.provide(stack())))

  it.effect("Deny on the consent page is CallbackError (Denied) with digi.me's errorCode; the state is spent", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const started = yield* start()
      const callback = yield* simulator.consent(started.url, { allow: false, errorCode: "UserCancelled" })
      const error = yield* Effect.flip(Authorization.completeAuthorization(callback))
      assert.strictEqual(error._tag, "CallbackError")
      if (error._tag !== "CallbackError") return
      assert.strictEqual(error.reason, "Denied")
      assert.strictEqual(error.errorCode, "UserCancelled")
      assert.strictEqual(yield* snapshot, "none")
      const again = yield* Effect.flip(Authorization.completeAuthorization(callback))
      assert.strictEqual(again._tag === "CallbackError" && again.reason, "ReusedState")
    }).pipe(Effect.provide(stack())))

  it.effect("a callback without state is MissingState; one without code is MissingCode", () =>
    Effect.gen(function*() {
      const noState = yield* Effect.flip(Authorization.completeAuthorization("success=true&code=c"))
      assert.strictEqual(noState._tag === "CallbackError" && noState.reason, "MissingState")
      const started = yield* start()
      const noCode = yield* Effect.flip(
        Authorization.completeAuthorization({ success: "true", state: started.state })
      )
      assert.strictEqual(noCode._tag === "CallbackError" && noCode.reason, "MissingCode")
      assert.strictEqual(yield* snapshot, "none")
    }).pipe(Effect.provide(stack())))

  it.effect("a forwarded onboarding URL: the callback under another user's session is UnexpectedKey, nothing exchanged or stored", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const victim = TokenKey.make("user-2", key.contractId)
      // `key` starts Connect and sends the URL to `victim`, whose browser comes back with the callback.
      const callback = yield* simulator.consent((yield* start(key)).url)
      const before = (yield* stats).requests.token
      const error = yield* Effect.flip(Authorization.completeAuthorization(callback, { expectedKey: victim }))
      assert.strictEqual(error._tag === "CallbackError" && error.reason, "UnexpectedKey")
      assert.strictEqual((yield* stats).requests.token, before)
      assert.strictEqual(yield* snapshot, "none")
      const store = yield* TokenStore.TokenStore
      assert.isTrue(Option.isNone(yield* store.get(victim)))
      // The state is spent: the same callback cannot be completed under the right key either.
      const again = yield* Effect.flip(Authorization.completeAuthorization(callback, { expectedKey: key }))
      assert.strictEqual(again._tag === "CallbackError" && again.reason, "ReusedState")
    }).pipe(Effect.provide(stack())))

  it.effect("the callback under the session of the user who started completes with expectedKey", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const callback = yield* simulator.consent((yield* start(key)).url)
      const completed = yield* Authorization.completeAuthorization(callback, {
        expectedKey: TokenKey.make(key.userId, key.contractId)
      })
      assert.strictEqual(completed.key, key)
      assert.notStrictEqual(yield* snapshot, "none")
    }).pipe(Effect.provide(stack())))

  it.effect("a denial without a state is Denied with digi.me's errorCode, and completes nothing", () =>
    Effect.gen(function*() {
      yield* start()
      const error = yield* Effect.flip(Authorization.completeAuthorization("?success=false&errorCode=ConsentDenied"))
      assert.strictEqual(error._tag === "CallbackError" && error.reason, "Denied")
      assert.strictEqual(error._tag === "CallbackError" && error.errorCode, "ConsentDenied")
      assert.strictEqual((yield* stats).requests.token, 0)
      assert.strictEqual(yield* snapshot, "none")
    }).pipe(Effect.provide(stack())))

  it.effect("a failed exchange leaves the stored token as it was", () =>
    Effect.gen(function*() {
      yield* authorize()
      const before = yield* snapshot
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const callback = yield* simulator.consent((yield* start()).url)
      yield* simulator.injectFault({ _tag: "Status", endpoint: "token", status: 500 })
      const error = yield* Effect.flip(Authorization.completeAuthorization(callback))
      assert.strictEqual(error._tag, "ApiError")
      assert.strictEqual(yield* snapshot, before)
    }).pipe(Effect.provide(stack())))

  it.effect("startReauthorization without a stored token is ReauthRequired (Missing)", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Authorization.startReauthorization({ key, callbackUrl }))
      assert.strictEqual(error._tag, "ReauthRequired")
      assert.strictEqual((yield* stats).requests.reference, 0)
    }).pipe(Effect.provide(stack())))

  it.effect("startReauthorization with a refused access token is InvalidAccessToken", () =>
    Effect.gen(function*() {
      const token = yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      yield* simulator.revokeUser(token.digimeUserId!)
      const error = yield* Effect.flip(Authorization.startReauthorization({ key, callbackUrl }))
      assert.strictEqual(error._tag, "InvalidAccessToken")
    }).pipe(Effect.provide(stack())))
})
