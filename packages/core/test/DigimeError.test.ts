/**
 * Messages of the error family: what an attacker controls (digi.me's codes and descriptions, a
 * callback's `errorCode`, a token's `kid`) is escaped, and no message names a user.
 */
import { DigimeError, TokenKey, TokenProtocol } from "@digime-effect/core"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"

describe("DigimeError messages", () => {
  it.effect("a callback's errorCode with CR/LF cannot forge a log line: escaped in the message, kept in the field", () =>
    Effect.gen(function*() {
      const errorCode = "Denied\r\n2026-12-02 level=INFO msg=\"user admin logged in\""
      const error = yield* Effect.flip(
        TokenProtocol.parseCallback(`success=false&errorCode=${encodeURIComponent(errorCode)}&state=s`, "s")
      )
      assert.strictEqual(error._tag === "CallbackError" && error.errorCode, errorCode)
      assert.notMatch(error.message, /[\r\n]/)
      assert.include(error.message, "Denied\\u000d\\u000a2026-12-02")
      const pretty = Cause.pretty(Cause.fail(error))
      assert.notInclude(pretty, "\r\n2026")
    }))

  it("codes, descriptions and URLs from outside are escaped: controls, separators, bidi overrides, lone surrogates", () => {
    const api = new DigimeError.ApiError({
      operation: "readAccounts",
      status: 400,
      code: "Bad\nCode",
      description: "line\u2028separator \u202egnp.exe\u202c \ud800",
      reference: "ref\u0000"
    })
    // eslint-disable-next-line no-control-regex -- looking for control characters is the point
    assert.notMatch(api.message, /[\u0000-\u001f\u2028\u202e\ud800]/)
    assert.include(api.message, "Bad\\u000aCode")
    assert.include(api.message, "\\u2028")
    assert.include(api.message, "\\u202e")
    assert.include(api.message, "\\ud800")
    const verification = new DigimeError.VerificationError({
      operation: "refreshToken",
      reason: "UnknownKey",
      description: "the key set names no key k\r\n1"
    })
    assert.notMatch(verification.message, /[\r\n]/)
  })

  it("a very long outside string is cut in the message", () => {
    const error = new DigimeError.ResponseError({ operation: "x", status: 500, description: "y".repeat(100_000) })
    assert.isBelow(error.message.length, 700)
  })

  it("the token-state errors name the contract, never the user, in their message", () => {
    const key = TokenKey.make("alice@example.com", "contract-1")
    const errors = [
      new DigimeError.InvalidAccessToken({ key }),
      new DigimeError.RefreshTokenExpired({ key, detectedBy: "Server" }),
      new DigimeError.ReauthRequired({ key, reason: "Missing" }),
      new DigimeError.ReauthRequired({ key, reason: "RefreshTokenInvalid" }),
      new DigimeError.ReauthRequired({ key, reason: "RefreshOutcomeUnknown" }),
      new DigimeError.TokenStoreError({ operation: "get", key, description: "down" })
    ]
    for (const error of errors) {
      assert.include(error.message, "contract-1")
      assert.notInclude(error.message, "alice")
      const exit = Exit.fail(error)
      assert.notInclude(Cause.pretty(Exit.isFailure(exit) ? exit.cause : Cause.empty), "alice")
    }
  })
})
