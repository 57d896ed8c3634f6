import { Contract, DigimeError, Signer } from "@digime-effect/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Encoding, Redacted } from "effect"

describe("Signer.make", () => {
  it.effect("prepares each contract's key once, however many assertions and however concurrent", () =>
    Effect.gen(function*() {
      let prepared = 0
      const signer = yield* Signer.make((_contract) =>
        Effect.sync(() => {
          prepared++
          return (input: Uint8Array<ArrayBuffer>) => Effect.succeed(input.slice(0, 4))
        })
      )
      const a = Contract.make({ contractId: "a", privateKey: Redacted.make("key-a") })
      const b = Contract.make({ contractId: "b", privateKey: Redacted.make("key-b") })
      yield* Effect.all(Array.from({ length: 50 }, (_, i) => signer.sign(i % 2 === 0 ? a : b, { i })), {
        concurrency: "unbounded"
      })
      assert.strictEqual(prepared, 2)
      // A contract whose key changed is prepared again.
      yield* signer.sign(Contract.make({ contractId: "a", privateKey: Redacted.make("key-a2") }), {})
      assert.strictEqual(prepared, 3)
    }))

  it.effect("the assertion is a compact JWS of the PS512 header and the claims as given", () =>
    Effect.gen(function*() {
      const signer = yield* Signer.make(() => Effect.succeed((_input) => Effect.succeed(Uint8Array.of(1, 2, 3))))
      const jwt = Redacted.value(
        yield* signer.sign(Contract.make({ contractId: "a", privateKey: Redacted.make("k") }), { nonce: "n" })
      )
      const [header, payload, signature] = jwt.split(".")
      assert.deepStrictEqual(JSON.parse(Either.getOrThrow(Encoding.decodeBase64UrlString(header!))), {
        alg: "PS512",
        typ: "JWT"
      })
      assert.deepStrictEqual(JSON.parse(Either.getOrThrow(Encoding.decodeBase64UrlString(payload!))), { nonce: "n" })
      assert.strictEqual(signature, "AQID")
    }))

  it.effect("prepare fails with the preparer's InvalidContractKey", () =>
    Effect.gen(function*() {
      const signer = yield* Signer.make((contract) =>
        Effect.fail(new DigimeError.InvalidContractKey({ contractId: contract.contractId, reason: "TooShort" }))
      )
      const error = yield* Effect.flip(
        signer.prepare(Contract.make({ contractId: "x", privateKey: Redacted.make("k") }))
      )
      assert.strictEqual(error.reason, "TooShort")
      assert.strictEqual(error.contractId, "x")
    }))
})
