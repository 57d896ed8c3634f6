/**
 * `Authorization.startAddingContract`: a second contract for a user who already has a token under
 * one, through the simulated digi.me. The consent lands in the same digi.me library; the existing
 * token reaches digi.me through the token manager, never the caller.
 */
import { Authorization, TokenKey, TokenManager, TokenStore } from "@digime-effect/core"
import { DigimeSimulator, DigimeTest, TestContract } from "@digime-effect/core/testing"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, TestClock } from "effect"

const writeContract = await Effect.runPromise(TestContract.make("contract-write"))
const readContract = await Effect.runPromise(DigimeTest.defaultContract)

const readKey = TokenKey.make("user-1", readContract.contract.contractId)
const writeKey = TokenKey.make("user-1", writeContract.contract.contractId)

const layer = () => DigimeTest.layer({ contracts: [readContract, writeContract] })

const requestCount = Effect.flatMap(
  DigimeSimulator.DigimeSimulator,
  (simulator) => Effect.map(simulator.requests, (requests) => requests.length)
)

describe("Authorization.startAddingContract", () => {
  it.effect("the consent of the second contract lands in the same library; the new token is stored under its key", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const existing = yield* DigimeTest.seedToken(readKey)
      const started = yield* Authorization.startAddingContract({
        key: writeKey,
        existing: readKey,
        callbackUrl: DigimeTest.callbackUrl
      })
      const [authorize] = yield* simulator.requests
      assert.strictEqual(authorize?.endpoint, "authorize")
      // The existing access token went to digi.me (redacted in the record), as the contract's claim.
      assert.strictEqual(authorize?.claims?.["access_token"], "<redacted>")
      const completed = yield* Authorization.completeAuthorization(yield* simulator.consent(started.url), {
        expectedKey: writeKey
      })
      assert.deepStrictEqual(completed.key, writeKey)
      assert.strictEqual(completed.token.digimeUserId, existing.digimeUserId)
      const stored = yield* (yield* TokenManager.TokenManager).get(writeKey)
      assert.strictEqual(stored.token.digimeUserId, existing.digimeUserId)
      // The same library: no new account, and the consent names the one the user has.
      const accounts = yield* simulator.accountsOf(existing.digimeUserId!)
      assert.strictEqual(accounts.length, 1)
      assert.strictEqual(completed.accountReference, accounts[0]!.reference)
    }).pipe(Effect.provide(layer())))

  it.effect("a due existing token is refreshed first, through the token manager", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      yield* DigimeTest.seedToken(readKey)
      yield* TestClock.adjust("1 hour")
      yield* Authorization.startAddingContract({
        key: writeKey,
        existing: readKey,
        callbackUrl: DigimeTest.callbackUrl
      })
      assert.strictEqual((yield* simulator.stats).refreshes, 1)
    }).pipe(Effect.provide(layer())))

  it.effect("another user's key, or the same contract: InvalidOptions naming `existing`, no request sent", () =>
    Effect.gen(function*() {
      yield* DigimeTest.seedToken(readKey)
      const cases = [
        { key: writeKey, existing: TokenKey.make("user-2", readContract.contract.contractId) },
        { key: readKey, existing: readKey }
      ]
      for (const { existing, key } of cases) {
        const error = yield* Effect.flip(
          Authorization.startAddingContract({ key, existing, callbackUrl: DigimeTest.callbackUrl })
        )
        assert.strictEqual(error._tag, "InvalidOptions")
        assert.strictEqual(error._tag === "InvalidOptions" ? error.field : undefined, "existing")
      }
      assert.strictEqual(yield* requestCount, 0)
    }).pipe(Effect.provide(layer())))

  it.effect("no token stored under `existing`: ReauthRequired (Missing), no request sent, nothing stored", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Authorization.startAddingContract({ key: writeKey, existing: readKey, callbackUrl: DigimeTest.callbackUrl })
      )
      assert.strictEqual(error._tag, "ReauthRequired")
      assert.strictEqual(error._tag === "ReauthRequired" ? error.reason : undefined, "Missing")
      assert.strictEqual(yield* requestCount, 0)
      const store = yield* TokenStore.TokenStore
      assert.isTrue(Option.isNone(yield* store.get(writeKey)))
    }).pipe(Effect.provide(layer())))
})
