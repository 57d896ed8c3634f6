import { Authorization, AutoRefresh, DigimeClient, TokenManager, TokenProtocol, TokenStore } from "@digime-effect/core"
import { DigimeSimulator } from "@digime-effect/core/testing"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Redacted, TestClock } from "effect"
import { callbackUrl, key, stack, stats, stored } from "./fixtures.js"

describe("the whole lifecycle", () => {
  it.effect(
    "authorize → consent → exchange → read → access expiry → auto refresh → refresh expiry → RefreshTokenExpired → reauthorize → exchange → read",
    () =>
      Effect.gen(function*() {
        const client = yield* DigimeClient.DigimeClient
        const simulator = yield* DigimeSimulator.DigimeSimulator
        const read = AutoRefresh.withAutoRefresh(key, client.readAccounts)

        // 1. authorize: the URL to send the user to, and what to keep until the callback
        const start = yield* client.getAuthorizeUrl({ contractId: key.contractId, callbackUrl })
        assert.isTrue(start.url.startsWith(`${simulator.onboardUrl}authorize?code=`))
        assert.include(start.url, "sourceType=pull")
        // 2. consent in the browser, 3. callback, 4. exchange
        const callback = yield* simulator.consent(start.url)
        assert.isTrue(callback.startsWith(callbackUrl))
        const result = yield* TokenProtocol.parseCallback(callback, start.state)
        assert.isString(result.accountReference)
        const token = yield* (yield* TokenManager.TokenManager).exchangeCodeForToken({
          key,
          code: result.code,
          codeVerifier: start.codeVerifier
        })
        assert.strictEqual(
          Redacted.value((yield* stored()).token.accessToken.value),
          Redacted.value(token.accessToken.value)
        )

        // 5. read: the account of the consent is there
        const accounts = yield* read
        assert.isTrue(accounts.some((account) => account.reference === result.accountReference))
        assert.strictEqual((yield* stats).refreshes, 0)

        // 6. the access token expires (1 hour): the next read refreshes first
        yield* TestClock.adjust("2 hours")
        yield* read
        assert.strictEqual((yield* stats).refreshes, 1)
        const session = yield* AutoRefresh.withAutoRefresh(key, client.readSession)
        assert.isString(session.key)

        // 7. the refresh token expires (30 days after the last refresh)
        yield* TestClock.adjust("31 days")
        const expired = yield* Effect.flip(read)
        assert.strictEqual(expired._tag, "RefreshTokenExpired")
        if (expired._tag !== "RefreshTokenExpired") return

        // 8. reauthorize with the stored (expired but genuine) access token
        const step = yield* AutoRefresh.nextStep(expired, { callbackUrl })
        assert.strictEqual(step.kind, "reauthorize")
        const reauthCallback = yield* simulator.consent(step.url)
        assert.notInclude(reauthCallback, "accountReference")
        const renewed = yield* Authorization.completeAuthorization(reauthCallback)
        assert.strictEqual(renewed.token.digimeUserId, token.digimeUserId)

        // 9. read again
        const again = yield* read
        assert.isAbove(again.length, 0)
        const s = yield* stats
        assert.strictEqual(s.exchanges, 2)
        assert.strictEqual(s.refreshes, 1)
        assert.strictEqual(s.replays, 0)
        assert.strictEqual(s.requests.reference, 1)
        // The signing keys were fetched once per keySetMaxAge (1 hour) in which tokens were verified:
        // at the start, after the access token's expiry, and at the reauthorization.
        assert.strictEqual(s.requests.jwks, 3)
      }).pipe(Effect.provide(stack()))
  )

  it.effect("works with the raw protocol calls alone (no store)", () =>
    Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const store = yield* TokenStore.TokenStore
      const start = yield* client.getAuthorizeUrl({ contractId: key.contractId, callbackUrl, state: "my-state" })
      assert.strictEqual(start.state, "my-state")
      const callback = yield* simulator.consent(start.url)
      const result = yield* TokenProtocol.parseCallback(callback, "my-state")
      const token = yield* client.exchangeCodeForToken({
        contractId: key.contractId,
        code: result.code,
        codeVerifier: start.codeVerifier
      })
      const refreshed = yield* client.refreshToken({
        contractId: key.contractId,
        refreshToken: token.refreshToken.value
      })
      assert.notStrictEqual(Redacted.value(refreshed.accessToken.value), Redacted.value(token.accessToken.value))
      const accounts = yield* client.readAccounts({
        contractId: key.contractId,
        accessToken: refreshed.accessToken.value
      })
      assert.isAbove(accounts.length, 0)
      yield* client.deleteUser({ contractId: key.contractId, accessToken: refreshed.accessToken.value })
      const after = yield* Effect.flip(
        client.readAccounts({ contractId: key.contractId, accessToken: refreshed.accessToken.value })
      )
      assert.strictEqual(after._tag, "AccessTokenRejected")
      // Nothing was stored: no key was given.
      assert.isTrue((yield* store.get(key))._tag === "None")
    }).pipe(Effect.provide(stack())))

  it.effect("refreshToken with a key refreshes now, even ahead of the lead time, and stores", () =>
    Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const start = yield* client.getAuthorizeUrl({ contractId: key.contractId, callbackUrl })
      const result = yield* TokenProtocol.parseCallback(yield* simulator.consent(start.url), start.state)
      const manager = yield* TokenManager.TokenManager
      yield* manager.exchangeCodeForToken({ key, code: result.code, codeVerifier: start.codeVerifier })
      const before = yield* stored()
      const refreshed = (yield* manager.refresh(key)).token
      const after = yield* stored()
      assert.isAbove(after.version, before.version)
      assert.strictEqual(Redacted.value(after.token.accessToken.value), Redacted.value(refreshed.accessToken.value))
      assert.strictEqual((yield* stats).refreshes, 1)
    }).pipe(Effect.provide(stack())))
})
