/**
 * `NodeVerifier` answers as `Verifier.webCrypto` does, signature by signature: a valid PS512
 * signature, one over other bytes, one cut short, one made with another salt length or another
 * key, and a key imported for another algorithm.
 */
import { Verifier } from "@digime-effect/core"
import { NodeVerifier } from "@digime-effect/node"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Crypto from "node:crypto"

const pairOf = () => Crypto.generateKeyPairSync("rsa", { modulusLength: 2048 })
const signing = pairOf()
const other = pairOf()

const importPublic = (key: Crypto.KeyObject, algorithm: RsaHashedImportParams) =>
  Effect.promise(() =>
    globalThis.crypto.subtle.importKey(
      "spki",
      key.export({ type: "spki", format: "der" }),
      algorithm,
      false,
      ["verify"]
    )
  )

const sign = (key: Crypto.KeyObject, input: Uint8Array, saltLength = 64) =>
  new Uint8Array(Crypto.sign("sha512", input, { key, padding: Crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength }))

describe("NodeVerifier", () => {
  it.effect("agrees with Web Crypto on every signature", () =>
    Effect.gen(function*() {
      const key = yield* importPublic(signing.publicKey, { name: "RSA-PSS", hash: "SHA-512" })
      const input = new TextEncoder().encode("header.payload")
      const valid = sign(signing.privateKey, input)
      const cases: ReadonlyArray<readonly [string, Uint8Array<ArrayBuffer>, Uint8Array<ArrayBuffer>, boolean]> = [
        ["a valid signature", input, valid, true],
        ["over other bytes", new TextEncoder().encode("header.payloaD"), valid, false],
        ["cut short", input, valid.slice(0, 255), false],
        ["empty", input, new Uint8Array(0), false],
        ["another salt length", input, sign(signing.privateKey, input, 32), false],
        ["another key's", input, sign(other.privateKey, input), false]
      ]
      const node = NodeVerifier.make()
      for (const [name, bytes, signature, expected] of cases) {
        assert.strictEqual(yield* node.verify(key, bytes, signature), expected, `NodeVerifier: ${name}`)
        assert.strictEqual(yield* Verifier.webCrypto.verify(key, bytes, signature), expected, `Web Crypto: ${name}`)
      }
      // The same key object twice: still right (its KeyObject is kept).
      assert.isTrue(yield* node.verify(key, input, valid))
    }))

  it.effect("a key imported for another algorithm verifies nothing, and does not throw", () =>
    Effect.gen(function*() {
      const key = yield* importPublic(signing.publicKey, { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" })
      const input = new TextEncoder().encode("header.payload")
      const pkcs1 = new Uint8Array(Crypto.sign("sha256", input, signing.privateKey))
      const node = NodeVerifier.make()
      assert.isFalse(yield* node.verify(key, input, sign(signing.privateKey, input)))
      assert.isFalse(yield* node.verify(key, input, pkcs1))
    }))
})
