/**
 * The `Signer` on `node:crypto`: each contract's key is parsed once into a `KeyObject`, then every
 * client assertion costs one RSASSA-PSS signature (SHA-512, 64-byte salt as RFC 7518 requires).
 *
 * @since 0.1.0
 */
import type { Contract } from "@digime-effect/core/Contract"
import { InvalidContractKey } from "@digime-effect/core/DigimeError"
import * as Signer from "@digime-effect/core/Signer"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Crypto from "node:crypto"
import { rsaPrivateKey } from "./internal/contractKey.js"

const prepare = (contract: Contract): Effect.Effect<Signer.SignBytes, InvalidContractKey> =>
  Effect.gen(function*() {
    const fail = (reason: InvalidContractKey["reason"]) =>
      new InvalidContractKey({ contractId: contract.contractId, reason })
    const { key } = yield* rsaPrivateKey(contract)
    const options: Crypto.SignKeyObjectInput = {
      key,
      padding: Crypto.constants.RSA_PKCS1_PSS_PADDING,
      saltLength: Crypto.constants.RSA_PSS_SALTLEN_DIGEST
    }
    return (input: Uint8Array<ArrayBuffer>) =>
      Effect.try({
        try: () => new Uint8Array(Crypto.sign("sha512", input, options)),
        catch: () => fail("SigningFailed")
      })
  })

// Node's own base64url: several times faster than core's, which every runtime has.
const base64url: Signer.Base64url = {
  encodeText: (text) => Buffer.from(text, "utf8").toString("base64url"),
  encodeBytes: (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64url")
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Signer.Service> = Signer.make(prepare, base64url)

/**
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Signer.Signer> = Layer.effect(Signer.Signer, make)
