import { TokenKey } from "@digime-effect/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fc from "fast-check"

const part = fc.string({ minLength: 1, maxLength: 12 }).filter((s) => s.trim() === s && s.trim() !== "")

describe("TokenKey", () => {
  it("toId is injective: different keys never share a storage id", () => {
    fc.assert(
      fc.property(part, part, part, part, (u1, c1, u2, c2) => {
        const same = u1 === u2 && c1 === c2
        return same === (TokenKey.toId(TokenKey.make(u1, c1)) === TokenKey.toId(TokenKey.make(u2, c2)))
      }),
      { numRuns: 2000 }
    )
    // The classic ambiguity of a plain separator.
    assert.notStrictEqual(TokenKey.toId(TokenKey.make("a/b", "c")), TokenKey.toId(TokenKey.make("b", "c/a")))
  })

  it("hash is short and does not contain the user id", () => {
    const key = TokenKey.make("alice@example.com", "contract-1")
    assert.match(TokenKey.hash(key), /^[0-9a-f]{8}$/)
    assert.notInclude(TokenKey.hash(key), "alice")
  })

  it.effect("decode refuses empty or padded parts with InvalidOptions instead of throwing", () =>
    Effect.gen(function*() {
      const empty = yield* Effect.flip(TokenKey.decode("", "contract-1"))
      assert.strictEqual(empty._tag, "InvalidOptions")
      assert.strictEqual(empty.field, "userId")
      const padded = yield* Effect.flip(TokenKey.decode("alice", " contract-1"))
      assert.strictEqual(padded.field, "contractId")
      const key = yield* TokenKey.decode("alice", "contract-1")
      assert.strictEqual(key.userId, "alice")
    }))

  it("make throws on an empty part (a programming error)", () => {
    assert.throws(() => TokenKey.make("", "c"))
  })
})
