import { Contract, Signer } from "@digime-effect/core"
import { NodeSigner } from "@digime-effect/node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import * as fc from "fast-check"
import * as Crypto from "node:crypto"

const rsa = (modulusLength: number) =>
  Crypto.generateKeyPairSync("rsa", {
    modulusLength,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs1", format: "pem" }
  })

const rsa2048 = rsa(2048)
const contract = Contract.make({ contractId: "contract-1", privateKey: Redacted.make(rsa2048.privateKey) })

const decodeSegment = (segment: string): unknown => JSON.parse(Buffer.from(segment, "base64url").toString("utf8"))

const verifyPs512 = (jwt: string, publicKey: string, saltLength: number): boolean => {
  const [header, payload, signature] = jwt.split(".")
  return Crypto.verify("sha512", Buffer.from(`${header}.${payload}`), {
    key: publicKey,
    padding: Crypto.constants.RSA_PKCS1_PSS_PADDING,
    saltLength
  }, Buffer.from(signature!, "base64url"))
}

const signers = [
  ["NodeSigner", NodeSigner.layer],
  ["Signer.layerWebCrypto", Signer.layerWebCrypto]
] as const

for (const [name, layer] of signers) {
  describe(name, () => {
    it.effect("signs a PS512 JWT with a 64-byte salt, header without kid, claims as given", () =>
      Effect.gen(function*() {
        const signer = yield* Signer.Signer
        const claims = { client_id: "app_contract-1", nonce: "n".repeat(32), timestamp: 1_700_000_000_000 }
        const jwt = Redacted.value(yield* signer.sign(contract, claims))
        const [header, payload] = jwt.split(".")
        assert.deepStrictEqual(decodeSegment(header!), { alg: "PS512", typ: "JWT" })
        assert.deepStrictEqual(decodeSegment(payload!), claims)
        assert.isTrue(verifyPs512(jwt, rsa2048.publicKey, 64))
        // A verifier insisting on another salt length refuses it: the salt really is 64 bytes.
        assert.isFalse(verifyPs512(jwt, rsa2048.publicKey, 190))
      }).pipe(Effect.provide(layer)))

    it.effect("accepts PKCS#8 keys as well as PKCS#1", () =>
      Effect.gen(function*() {
        const signer = yield* Signer.Signer
        const pkcs8 = Crypto.createPrivateKey(rsa2048.privateKey).export({ type: "pkcs8", format: "pem" }).toString()
        const other = Contract.make({ contractId: "contract-8", privateKey: Redacted.make(pkcs8) })
        const jwt = Redacted.value(yield* signer.sign(other, { a: 1 }))
        assert.isTrue(verifyPs512(jwt, rsa2048.publicKey, 64))
      }).pipe(Effect.provide(layer)))

    it.effect("the result is Redacted", () =>
      Effect.gen(function*() {
        const signer = yield* Signer.Signer
        const jwt = yield* signer.sign(contract, { a: 1 })
        assert.isTrue(Redacted.isRedacted(jwt))
        assert.notInclude(String(jwt), "eyJ")
      }).pipe(Effect.provide(layer)))

    const badKeys: ReadonlyArray<readonly [string, string, string]> = [
      ["garbage", "not a pem at all", "Unreadable"],
      ["a 1024-bit RSA key", rsa(1024).privateKey, "TooShort"],
      [
        "an EC key",
        Crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" })
          .toString(),
        "NotRsa"
      ]
    ]
    for (const [what, pem, reason] of badKeys) {
      it.effect(`${what} fails with InvalidContractKey (${reason}) naming the contract, never the key`, () =>
        Effect.gen(function*() {
          const signer = yield* Signer.Signer
          const bad = Contract.make({ contractId: "contract-bad", privateKey: Redacted.make(pem) })
          const error = yield* Effect.flip(signer.sign(bad, { a: 1 }))
          assert.strictEqual(error._tag, "InvalidContractKey")
          assert.strictEqual(error.contractId, "contract-bad")
          assert.strictEqual(error.reason, reason)
          assert.include(error.message, "contract-bad")
          const pemBody = pem.split("\n")[1] ?? pem
          assert.notInclude(error.message, pemBody)
          assert.notInclude(JSON.stringify(error), pemBody)
          // The failure is stable: the second call fails the same way.
          assert.strictEqual((yield* Effect.flip(signer.sign(bad, { a: 2 }))).reason, reason)
        }).pipe(Effect.provide(layer)))
    }
  })
}

describe("NodeSigner's base64url", () => {
  // Node's `Buffer` encodes where core uses `btoa`: both must give the same segments for any claims,
  // non-ASCII text included. (Lone surrogates never reach either encoder: JSON escapes them.)
  it.effect("gives the claims segment core's signer gives, for any claims", () =>
    Effect.gen(function*() {
      const node = yield* Effect.provide(Signer.Signer, NodeSigner.layer)
      const web = yield* Effect.provide(Signer.Signer, Signer.layerWebCrypto)
      const claims = fc.dictionary(
        fc.string({ unit: "binary" }),
        fc.oneof(fc.string({ unit: "binary" }), fc.integer(), fc.boolean(), fc.constant(null))
      )
      const samples = fc.sample(claims, { numRuns: 200, seed: 424242 })
      samples.push({ text: "é€😀", lone: "\ud800", mixed: "a\udfffb" })
      for (const sample of samples) {
        const jwt = Redacted.value(yield* node.sign(contract, sample))
        const [nodeHeader, nodePayload, nodeSignature] = jwt.split(".")
        const [webHeader, webPayload] = Redacted.value(yield* web.sign(contract, sample)).split(".")
        assert.strictEqual(nodeHeader, webHeader)
        assert.strictEqual(nodePayload, webPayload)
        assert.notInclude(nodePayload!, "=")
        // 256 bytes (a 2048-bit key), unpadded, and the signature of that header and payload.
        assert.match(nodeSignature!, /^[A-Za-z0-9_-]{342}$/)
        assert.isTrue(verifyPs512(jwt, rsa2048.publicKey, 64))
        assert.deepStrictEqual(decodeSegment(nodePayload!), JSON.parse(JSON.stringify(sample)))
      }
    }))
})
