import { TokenProtocol } from "@digime-effect/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"

const parse = TokenProtocol.parseCallback

describe("parseCallback", () => {
  it.effect("reads a successful first authorization from a full callback URL", () =>
    Effect.gen(function*() {
      const result = yield* parse(
        new URL("https://app.example/callback?success=true&state=s-1&code=c-123&accountReference=acc-9"),
        "s-1"
      )
      assert.strictEqual(Redacted.value(result.code), "c-123")
      assert.strictEqual(result.state, "s-1")
      assert.strictEqual(result.accountReference, "acc-9")
      assert.notInclude(String(result.code), "c-123")
    }))

  it.effect("accepts a query string, URLSearchParams or a record, and a reauth answer without accountReference", () =>
    Effect.gen(function*() {
      const fromString = yield* parse("?success=true&state=s&code=c", "s")
      const fromParams = yield* parse(new URLSearchParams({ success: "true", state: "s", code: "c" }), "s")
      const fromRecord = yield* parse({ success: "true", state: "s", code: "c", extra: undefined }, "s")
      for (const result of [fromString, fromParams, fromRecord]) {
        assert.strictEqual(Redacted.value(result.code), "c")
        assert.isUndefined(result.accountReference)
      }
    }))

  it.effect("a wrong state is a StateMismatch, whatever else the query says", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(parse("success=true&state=attacker&code=c", "s-1"))
      assert.strictEqual(error._tag, "CallbackError")
      assert.strictEqual(error._tag === "CallbackError" && error.reason, "StateMismatch")
      const denied = yield* Effect.flip(parse("success=false&state=attacker&errorCode=X", "s-1"))
      assert.strictEqual(denied._tag === "CallbackError" && denied.reason, "StateMismatch")
    }))

  it.effect("a missing state is MissingState", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(parse("success=true&code=c", "s-1"))
      assert.strictEqual(error._tag === "CallbackError" && error.reason, "MissingState")
    }))

  it.effect("success without a code is MissingCode", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(parse("success=true&state=s&code=", "s"))
      assert.strictEqual(error._tag === "CallbackError" && error.reason, "MissingCode")
    }))

  it.effect("success=false with an errorCode is Denied and keeps the code", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(parse("success=false&state=s&errorCode=UserCancelled", "s"))
      assert.strictEqual(error._tag, "CallbackError")
      if (error._tag !== "CallbackError") return
      assert.strictEqual(error.reason, "Denied")
      assert.strictEqual(error.errorCode, "UserCancelled")
      assert.include(error.message, "UserCancelled")
    }))

  it.effect("a query that is no digi.me answer is Malformed", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(parse("state=s&code=c", "s"))
      assert.strictEqual(error._tag === "CallbackError" && error.reason, "Malformed")
    }))

  it.effect("an empty expected state is refused as caller input", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(parse("success=true&state=&code=c", ""))
      assert.strictEqual(error._tag, "InvalidOptions")
    }))

  it.effect("the code never appears in an error message", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(parse("success=true&state=wrong&code=very-secret-code", "s"))
      assert.notInclude(error.message, "very-secret-code")
      assert.notInclude(JSON.stringify(error), "very-secret-code")
    }))
})
