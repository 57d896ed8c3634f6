import {
  AutoRefresh,
  DigimeClient,
  type DigimeError,
  TokenManager,
  TokenProtocol,
  TokenStore
} from "@digime-effect/core"
import { DigimeSimulator } from "@digime-effect/core/testing"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, TestClock } from "effect"
import { authorize, callbackUrl, joinAdvancing, key, stack, stats, stored } from "./fixtures.js"

type Tamper = Extract<DigimeSimulator.Fault, { readonly _tag: "TamperToken" }>["tamper"]

const cases: ReadonlyArray<readonly [Tamper, DigimeError.VerificationError["reason"]]> = [
  ["BadSignature", "InvalidSignature"],
  ["AlgNone", "UnsupportedAlgorithm"],
  ["AlgRS256", "UnsupportedAlgorithm"],
  ["UnknownKid", "UnknownKey"],
  ["ForeignJku", "UntrustedKeySet"],
  ["MissingJku", "Malformed"],
  ["Garbage", "Malformed"],
  ["Expired", "Expired"],
  ["MissingFields", "InvalidClaims"]
]

/** Starts an authorization and consents, returning what the exchange needs. */
const consented = Effect.gen(function*() {
  const client = yield* DigimeClient.DigimeClient
  const simulator = yield* DigimeSimulator.DigimeSimulator
  const start = yield* client.getAuthorizeUrl({ contractId: key.contractId, callbackUrl })
  const result = yield* TokenProtocol.parseCallback(yield* simulator.consent(start.url), start.state)
  return { code: result.code, codeVerifier: start.codeVerifier }
})

describe("verification of the tokens digi.me signs", () => {
  for (const [tamper, reason] of cases) {
    it.effect(`exchange: ${tamper} → VerificationError (${reason}), nothing stored`, () =>
      Effect.gen(function*() {
        const manager = yield* TokenManager.TokenManager
        const simulator = yield* DigimeSimulator.DigimeSimulator
        const input = yield* consented
        yield* simulator.injectFault({ _tag: "TamperToken", tamper })
        const error = yield* Effect.flip(manager.exchangeCodeForToken({ key, ...input }))
        assert.strictEqual(error._tag, "VerificationError")
        assert.strictEqual(error._tag === "VerificationError" && error.reason, reason)
        assert.strictEqual(error._tag === "VerificationError" && error.operation, "exchangeCodeForToken")
        const store = yield* TokenStore.TokenStore
        assert.isTrue(Option.isNone(yield* store.get(key)))
        // The key set was never fetched from anywhere but the allowed origin.
        const requests = yield* simulator.requests
        assert.isTrue(requests.every((request) => request.endpoint !== "unknown"))
      }).pipe(Effect.provide(stack())))

    it.effect(`refresh: ${tamper} → VerificationError (${reason}), stored token unchanged`, () =>
      Effect.gen(function*() {
        yield* authorize()
        const simulator = yield* DigimeSimulator.DigimeSimulator
        const before = yield* stored()
        yield* simulator.injectFault({ _tag: "TamperToken", tamper })
        yield* TestClock.adjust("1 hour")
        const client = yield* DigimeClient.DigimeClient
        const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, client.readAccounts))
        assert.strictEqual(error._tag, "VerificationError")
        assert.strictEqual(error._tag === "VerificationError" && error.reason, reason)
        assert.strictEqual((yield* stored()).version, before.version)
      }).pipe(Effect.provide(stack())))
  }

  it.effect("pre-authorization: a bad token is refused before any URL is built", () =>
    Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const simulator = yield* DigimeSimulator.DigimeSimulator
      yield* simulator.injectFault({ _tag: "TamperToken", tamper: "BadSignature" })
      const error = yield* Effect.flip(client.getAuthorizeUrl({ contractId: key.contractId, callbackUrl }))
      assert.strictEqual(error._tag, "VerificationError")
    }).pipe(Effect.provide(stack())))

  it.effect("keys are cached (within keySetMaxAge): one JWKS download for many verified tokens", () =>
    Effect.gen(function*() {
      yield* authorize()
      const client = yield* DigimeClient.DigimeClient
      for (let i = 0; i < 3; i++) {
        yield* TestClock.adjust("1 hour")
        yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
      }
      const s = yield* stats
      assert.strictEqual(s.refreshes, 3)
      assert.strictEqual(s.requests.jwks, 1)
    }).pipe(Effect.provide(stack({ config: { keySetMaxAge: "1 day" } }))))

  it.effect("key rotation: an unknown kid makes the client fetch the key set again, once", () =>
    Effect.gen(function*() {
      yield* authorize()
      const client = yield* DigimeClient.DigimeClient
      const simulator = yield* DigimeSimulator.DigimeSimulator
      yield* simulator.rotateSigningKey
      yield* TestClock.adjust("1 hour")
      yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
      yield* TestClock.adjust("1 hour")
      yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
      const s = yield* stats
      assert.strictEqual(s.refreshes, 2)
      assert.strictEqual(s.requests.jwks, 2)
    }).pipe(Effect.provide(stack({ config: { keySetMaxAge: "1 day" } }))))

  it.effect("a key set that cannot be fetched: VerificationError (KeySetUnavailable)", () =>
    Effect.gen(function*() {
      const manager = yield* TokenManager.TokenManager
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const input = yield* consented
      // The JWKS was fetched while pre-authorizing; a new signing key forces a new download.
      yield* simulator.rotateSigningKey
      yield* simulator.injectFault({ _tag: "Status", endpoint: "jwks", status: 404 })
      const error = yield* Effect.flip(manager.exchangeCodeForToken({ key, ...input }))
      assert.strictEqual(error._tag, "VerificationError")
      assert.strictEqual(error._tag === "VerificationError" && error.reason, "KeySetUnavailable")
    }).pipe(Effect.provide(stack())))

  it.effect("a key set that does not answer in time: VerificationError (KeySetUnavailable) after its retries", () =>
    Effect.gen(function*() {
      const manager = yield* TokenManager.TokenManager
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const input = yield* consented
      yield* simulator.rotateSigningKey
      for (let i = 0; i < 3; i++) yield* simulator.injectFault({ _tag: "Delay", endpoint: "jwks", delay: "1 minute" })
      const fiber = yield* Effect.fork(Effect.flip(manager.exchangeCodeForToken({ key, ...input })))
      const error = yield* joinAdvancing(fiber, "200 seconds")
      assert.strictEqual(error._tag === "VerificationError" && error.reason, "KeySetUnavailable")
      assert.strictEqual((yield* stats).requests.jwks, 4) // the first download, then 1 + 2 retries
    }).pipe(Effect.provide(stack())))

  it.effect("an allow-list that does not include digi.me's origin refuses every token", () =>
    Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const error = yield* Effect.flip(client.getAuthorizeUrl({ contractId: key.contractId, callbackUrl }))
      assert.strictEqual(error._tag, "VerificationError")
      assert.strictEqual(error._tag === "VerificationError" && error.reason, "UntrustedKeySet")
      assert.strictEqual((yield* stats).requests.jwks, 0)
    }).pipe(Effect.provide(stack({ config: { jwksOrigins: ["https://keys.example"] } }))))
})
