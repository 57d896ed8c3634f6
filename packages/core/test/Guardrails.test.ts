/**
 * The guardrails of a new user's first hour: a base URL without the API's version path, a PEM with
 * escaped line breaks (as `.env` files hold it), a lead time that makes every call refresh, and a
 * callback whose authorization was started with another store.
 */
import { AutoRefresh, Contract, DigimeConfig, DigimeError, Signer } from "@digime-effect/core"
import { DigimeTest } from "@digime-effect/core/testing"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Logger, Redacted } from "effect"
import { key, readAccounts, stack, testContract } from "./fixtures.js"

const base = { applicationId: "app", contracts: [testContract.contract] }

// The log lines written while `self` runs.
const logged = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const logger = Logger.make(({ logLevel, message }) => {
      lines.push(`${logLevel.label} ${Array.isArray(message) ? message.join(" ") : String(message)}`)
    })
    const result = yield* self.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
    return { result, lines }
  })

describe("guardrails", () => {
  it.effect("a base URL without the API's version path is InvalidConfig that says what is expected", () =>
    Effect.gen(function*() {
      for (const baseUrl of ["https://api.digi.me/", "https://api.digi.me", "https://api.digi.me/v1.7/oauth/"]) {
        const error = yield* Effect.flip(DigimeConfig.make({ ...base, baseUrl }))
        assert.strictEqual(error.field, "baseUrl")
        assert.include(error.message, "https://api.digi.me/v1.7/")
      }
      for (const baseUrl of ["https://api.digi.me/v1.7/", "https://api.digi.me/v1.7", "http://127.0.0.1:9/x/v2/"]) {
        assert.isTrue((yield* DigimeConfig.make({ ...base, baseUrl })).baseUrl.endsWith("/"))
      }
    }))

  it.effect("a PEM with escaped line breaks signs like the PEM itself", () =>
    Effect.gen(function*() {
      const pem = Redacted.value(testContract.contract.privateKey)
      const escaped = pem.trim().split("\n").join("\\n")
      assert.notInclude(escaped, "\n")
      const config = yield* DigimeConfig.make({
        ...base,
        contracts: [{ contractId: testContract.contract.contractId, privateKey: Redacted.make(escaped) }]
      })
      const contract = yield* config.contract(testContract.contract.contractId)
      const signer = yield* Signer.Signer
      const jwt = yield* signer.sign(contract, { iss: "app" })
      assert.strictEqual(Redacted.value(jwt).split(".").length, 3)
      // Contract.make does the same; a PEM with real line breaks is left as it is.
      assert.strictEqual(
        Redacted.value(Contract.make({ contractId: "c", privateKey: Redacted.make(escaped) }).privateKey).trim(),
        pem.trim()
      )
      assert.strictEqual(Contract.unescapePem(testContract.contract.privateKey), testContract.contract.privateKey)
    }).pipe(Effect.provide(Signer.layerWebCrypto)))

  it.effect("a PEM that is not one still fails with InvalidContractKey (Unreadable)", () =>
    Effect.gen(function*() {
      const signer = yield* Signer.Signer
      const error = yield* Effect.flip(signer.sign({ contractId: "c", privateKey: Redacted.make("not\\na\\npem") }, {}))
      assert.instanceOf(error, DigimeError.InvalidContractKey)
      assert.strictEqual(error.reason, "Unreadable")
    }).pipe(Effect.provide(Signer.layerWebCrypto)))

  it.scoped("an access token that lives no longer than the lead time: one warning, naming both times", () =>
    Effect.gen(function*() {
      const { lines } = yield* logged(Effect.gen(function*() {
        yield* DigimeTest.authorize(key)
        yield* AutoRefresh.withAutoRefresh(key, readAccounts)
        yield* AutoRefresh.withAutoRefresh(key, readAccounts)
      }))
      const warnings = lines.filter((line) => line.startsWith("WARN") && line.includes("refreshLeadTime"))
      assert.strictEqual(warnings.length, 1)
      assert.include(warnings[0], "lives 30 s")
      assert.include(warnings[0], "(60 s)")
    }).pipe(Effect.provide(stack({ simulator: { accessTokenLifetime: "30 seconds" } }))))

  it.scoped("with a lead time shorter than the lifetime, no warning", () =>
    Effect.gen(function*() {
      const { lines } = yield* logged(DigimeTest.authorize(key))
      assert.isFalse(lines.some((line) => line.includes("refreshLeadTime")))
    }).pipe(Effect.provide(stack())))

  it("UnknownState names the likely cause: another PendingAuthorizations store", () => {
    const error = new DigimeError.CallbackError({ reason: "UnknownState" })
    assert.include(error.message, "PendingAuthorizations")
    assert.include(error.message, "provide the layer once")
  })
})
