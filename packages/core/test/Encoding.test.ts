import { assert, describe, it } from "@effect/vitest"
import { Encoding } from "effect"
import * as fc from "fast-check"
import { base64url, fromBase64url } from "../src/internal/encoding.js"

describe("base64url", () => {
  it("is Effect's base64url encoding, without padding, for any bytes and any text", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      assert.strictEqual(base64url(bytes), Encoding.encodeBase64Url(bytes))
      assert.deepStrictEqual(fromBase64url(base64url(bytes)), bytes)
    }))
    fc.assert(fc.property(fc.string({ unit: "grapheme", maxLength: 200 }), (text) => {
      assert.strictEqual(base64url(text), Encoding.encodeBase64Url(text))
    }))
  })

  it("encodes inputs longer than one chunk of the platform encoder", () => {
    const bytes = new Uint8Array(100_000).map((_, i) => (i * 131) & 255)
    assert.strictEqual(base64url(bytes), Encoding.encodeBase64Url(bytes))
  })
})
