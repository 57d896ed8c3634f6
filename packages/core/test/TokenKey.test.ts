import { TokenKey } from "@digime-effect/core"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Hash, Redacted } from "effect"
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

  it.effect("tag is 64 bits of hex, the same for one secret, unrelated for another", () =>
    Effect.gen(function*() {
      const key = TokenKey.make("alice@example.com", "contract-1")
      const a = yield* TokenKey.makeTagger(Redacted.make("a deployment secret, 32 bytes.."))
      const a2 = yield* TokenKey.makeTagger(Redacted.make("a deployment secret, 32 bytes.."))
      const b = yield* TokenKey.makeTagger(Redacted.make("another deployment secret......"))
      assert.match(a.tag(key), /^[0-9a-f]{16}$/)
      assert.strictEqual(a.tag(key), a2.tag(key))
      assert.notStrictEqual(a.tag(key), b.tag(key))
      assert.notStrictEqual(a.tag(key), a.tag(TokenKey.make("alice@example.com", "contract-2")))
    }))

  it.effect("a tagger keeps its tags: the same tag before and after more keys than it keeps, as a new tagger's", () =>
    Effect.gen(function*() {
      const secret = Redacted.make("a deployment secret, 32 bytes..")
      const tagger = yield* TokenKey.makeTagger(secret)
      const first = TokenKey.make("user-0", "contract-1")
      const tag = tagger.tag(first)
      assert.strictEqual(tagger.tag(first), tag)
      for (let id = 1; id <= 10_001; id++) tagger.tag(TokenKey.make(`user-${id}`, "contract-1"))
      assert.strictEqual(tagger.tag(first), tag)
      const fresh = yield* TokenKey.makeTagger(secret)
      assert.strictEqual(fresh.tag(first), tag)
      assert.strictEqual(
        tagger.tag(TokenKey.make("user-10001", "contract-1")),
        fresh.tag(TokenKey.make("user-10001", "contract-1"))
      )
    }))

  it.effect("enumerable ids cannot be recovered from tags without the secret", () =>
    Effect.gen(function*() {
      // The attack on the old unkeyed hash: hash every id of a small range, look the tag up.
      const victim = yield* TokenKey.makeTagger(Redacted.make("the deployment's own secret...."))
      const guess = yield* TokenKey.makeTagger(Redacted.make("the attacker's guessed secret.."))
      const target = victim.tag(TokenKey.make("4242", "contract-1"))
      const guessed = new Set<string>()
      for (let id = 0; id < 10_000; id++) guessed.add(guess.tag(TokenKey.make(String(id), "contract-1")))
      assert.isFalse(guessed.has(target))
      // The unkeyed 32-bit hash `digime.key` used to be is reversed by the same search.
      const unkeyed = (key: TokenKey.TokenKey) => (Hash.string(TokenKey.toId(key)) >>> 0).toString(16)
      const hashes = new Map<string, string>()
      for (let id = 0; id < 10_000; id++) hashes.set(unkeyed(TokenKey.make(String(id), "contract-1")), String(id))
      assert.strictEqual(hashes.get(unkeyed(TokenKey.make("4242", "contract-1"))), "4242")
    }))

  it.effect("a tag secret shorter than 16 bytes is InvalidConfig", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(TokenKey.makeTagger(Redacted.make("short")))
      assert.strictEqual(error._tag, "InvalidConfig")
      assert.strictEqual(error.field, "keyTagSecret")
      assert.notInclude(error.message, "short")
    }))

  it.effect("without a configured secret, tags come from one random secret per process", () =>
    Effect.gen(function*() {
      const key = TokenKey.make("alice", "contract-1")
      const first = yield* TokenKey.tag(key)
      assert.strictEqual(yield* TokenKey.tag(key), first)
      const configured = yield* TokenKey.makeTagger(Redacted.make("a deployment secret, 32 bytes.."))
      assert.notStrictEqual(first, configured.tag(key))
    }))

  it.effect("layerTaggerConfig reads DIGIME_KEY_TAG_SECRET; the tag then is the configured secret's", () =>
    Effect.gen(function*() {
      const key = TokenKey.make("alice", "contract-1")
      const expected = (yield* TokenKey.makeTagger(Redacted.make("a deployment secret, 32 bytes.."))).tag(key)
      const tag = yield* TokenKey.tag(key).pipe(
        Effect.provide(TokenKey.layerTaggerConfig()),
        Effect.withConfigProvider(
          ConfigProvider.fromMap(new Map([["DIGIME_KEY_TAG_SECRET", "a deployment secret, 32 bytes.."]]))
        )
      )
      assert.strictEqual(tag, expected)
    }))

  it.effect("decode refuses a lone UTF-16 surrogate (toId could not encode it) with InvalidOptions", () =>
    Effect.gen(function*() {
      for (const userId of ["\ud800", "alice\udfff", "\udc00\ud800"]) {
        const error = yield* Effect.flip(TokenKey.decode(userId, "contract-1"))
        assert.strictEqual(error._tag, "InvalidOptions")
        assert.strictEqual(error.field, "userId")
        assert.include(error.reason, "lone surrogate")
        assert.throws(() => TokenKey.make(userId, "contract-1"))
      }
      const contract = yield* Effect.flip(TokenKey.decode("alice", "c\ud83d"))
      assert.strictEqual(contract.field, "contractId")
      // A well-formed pair is fine.
      const emoji = yield* TokenKey.decode("alice \ud83d\ude00", "contract-1")
      assert.strictEqual(TokenKey.toId(emoji), "contract-1/alice%20%F0%9F%98%80")
    }))

  it.effect("decode refuses ids over 1024 characters", () =>
    Effect.gen(function*() {
      yield* TokenKey.decode("x".repeat(1024), "contract-1")
      const error = yield* Effect.flip(TokenKey.decode("x".repeat(1025), "contract-1"))
      assert.strictEqual(error.field, "userId")
      assert.include(error.reason, "1024")
    }))

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
