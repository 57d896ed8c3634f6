import { AutoRefresh, DigimeClient, TokenKey } from "@digime-effect/core"
import { DigimeSimulator, DigimeTest } from "@digime-effect/core/testing"
import { assert, describe, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"

// The application's code under test: the user's accounts, or where to send the user.
const callbackUrl = "https://app.example/digime/callback"
const accountsOrRedirect = (key: TokenKey.TokenKey) =>
  Effect.flatMap(DigimeClient.DigimeClient, (client) =>
    AutoRefresh.withAutoRefresh(key, client.readAccounts).pipe(
      Effect.map((accounts) => ({ accounts })),
      Effect.catchTags({
        RefreshTokenExpired: (error) => AutoRefresh.nextStep(error, { callbackUrl }),
        ReauthRequired: (error) => AutoRefresh.nextStep(error, { callbackUrl }),
        InvalidAccessToken: (error) => AutoRefresh.nextStep(error, { callbackUrl })
      })
    ))

describe("accountsOrRedirect", () => {
  const key = TokenKey.make("user-1", DigimeTest.contractId)

  it.effect("an expired access token is refreshed once, then the accounts are read", () =>
    Effect.gen(function*() {
      yield* DigimeTest.seedToken(key) // a token the simulator granted, stored under the key
      yield* TestClock.adjust("1 hour") // its access token (1 hour by default) expires
      const result = yield* accountsOrRedirect(key)
      assert.isTrue("accounts" in result && result.accounts.length > 0)
      const simulator = yield* DigimeSimulator.DigimeSimulator
      assert.strictEqual((yield* simulator.stats).refreshes, 1)
    }).pipe(Effect.provide(DigimeTest.layer())))

  it.effect("an expired refresh token sends the user to reauthorize, with no request to refresh", () =>
    Effect.gen(function*() {
      yield* DigimeTest.seedToken(key)
      yield* TestClock.adjust("31 days") // the refresh token (30 days by default) expires too
      const result = yield* accountsOrRedirect(key)
      assert.isTrue("kind" in result && result.kind === "reauthorize")
      assert.isTrue("url" in result && result.url.startsWith("https://api.digi.me/apps/saas/"))
      const simulator = yield* DigimeSimulator.DigimeSimulator
      assert.strictEqual((yield* simulator.stats).refreshes, 0)
    }).pipe(Effect.provide(DigimeTest.layer())))

  it.effect("a user who never connected is sent to authorize", () =>
    Effect.gen(function*() {
      const result = yield* accountsOrRedirect(TokenKey.make("user-2", DigimeTest.contractId))
      assert.isTrue("kind" in result && result.kind === "authorize")
    }).pipe(Effect.provide(DigimeTest.layer())))
})
