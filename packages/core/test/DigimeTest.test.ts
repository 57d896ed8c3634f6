/**
 * The public test kit: `DigimeTest.layer` (the library on the simulated digi.me), `seedToken`,
 * `authorize` and `layerWithHttpClient`, as an application's own tests would use them.
 */
import { AutoRefresh, DigimeClient, TokenKey, TokenManager, TokenStore } from "@digime-effect/core"
import { DigimeSimulator, DigimeTest } from "@digime-effect/core/testing"
import { HttpClient, HttpClientResponse } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option, Redacted, TestClock } from "effect"

const key = TokenKey.make("user-1", DigimeTest.contractId)

describe("DigimeTest", () => {
  it.effect("seedToken stores a token the simulator accepts, without any request", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const client = yield* DigimeClient.DigimeClient
      const token = yield* DigimeTest.seedToken(key)
      const stored = Option.getOrThrow(yield* (yield* TokenStore.TokenStore).get(key))
      assert.strictEqual(Redacted.value(stored.token.accessToken.value), Redacted.value(token.accessToken.value))
      assert.strictEqual((yield* simulator.requests).length, 0)
      const accounts = yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
      assert.strictEqual(accounts.length, 1)
      const stats = yield* simulator.stats
      assert.strictEqual(stats.exchanges, 0)
      assert.strictEqual(stats.refreshes, 0)
    }).pipe(Effect.provide(DigimeTest.layer())))

  it.effect("the TestClock drives both sides: an hour later the next call refreshes the seeded token once", () =>
    Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const seeded = yield* DigimeTest.seedToken(key)
      yield* TestClock.adjust("1 hour")
      yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
      yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
      assert.strictEqual((yield* (yield* DigimeSimulator.DigimeSimulator).stats).refreshes, 1)
      const current = yield* (yield* TokenManager.TokenManager).get(key)
      assert.notStrictEqual(
        Redacted.value(current.token.accessToken.value),
        Redacted.value(seeded.accessToken.value)
      )
    }).pipe(Effect.provide(DigimeTest.layer())))

  it.effect("seedToken for a contract the simulator does not know fails with SimulatorError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(DigimeTest.seedToken(TokenKey.make("user-1", "contract-unknown")))
      assert.strictEqual(error._tag, "SimulatorError")
    }).pipe(Effect.provide(DigimeTest.layer())))

  it.effect("authorize goes through consent and the code exchange, and stores the token", () =>
    Effect.gen(function*() {
      const token = yield* DigimeTest.authorize(key)
      const stored = Option.getOrThrow(yield* (yield* TokenStore.TokenStore).get(key))
      assert.strictEqual(Redacted.value(stored.token.refreshToken.value), Redacted.value(token.refreshToken.value))
      assert.strictEqual((yield* (yield* DigimeSimulator.DigimeSimulator).stats).exchanges, 1)
    }).pipe(Effect.provide(DigimeTest.layer())))

  it.effect("options reach the simulator and the client: a 10-minute access token with a 1-minute lead time", () =>
    Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      yield* DigimeTest.seedToken(key)
      yield* TestClock.adjust("8 minutes")
      yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
      assert.strictEqual((yield* (yield* DigimeSimulator.DigimeSimulator).stats).refreshes, 0)
      // Past the 10-second wait margin: the caller waits for the refresh.
      yield* TestClock.adjust("115 seconds")
      yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
      assert.strictEqual((yield* (yield* DigimeSimulator.DigimeSimulator).stats).refreshes, 1)
    }).pipe(Effect.provide(DigimeTest.layer({
      simulator: { accessTokenLifetime: "10 minutes" },
      config: { refreshLeadTime: "1 minute", tokenCacheTtl: 0 }
    }))))

  it.effect("layerWithHttpClient sends every call to the HttpClient given", () => {
    const urls: Array<string> = []
    const http = HttpClient.make((request) =>
      Effect.sync(() => {
        urls.push(request.url)
        return HttpClientResponse.fromWeb(request, new Response("[]", { status: 202 }))
      })
    )
    return Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const accounts = yield* client.readAccounts({
        contractId: DigimeTest.contractId,
        accessToken: Redacted.make("a")
      })
      assert.deepStrictEqual(accounts, [])
      assert.deepStrictEqual(urls, ["https://api.digi.me/v1.7/permission-access/accounts"])
    }).pipe(Effect.provide(DigimeTest.layerWithHttpClient(http).pipe(Layer.orDie)))
  })
})
