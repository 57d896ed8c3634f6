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
import * as Redacted from "effect/Redacted"
import * as Crypto from "node:crypto"

const prepare = (contract: Contract): Effect.Effect<Signer.SignBytes, InvalidContractKey> =>
  Effect.gen(function*() {
    const fail = (reason: InvalidContractKey["reason"]) =>
      new InvalidContractKey({ contractId: contract.contractId, reason })
    const key = yield* Effect.try({
      try: () => Crypto.createPrivateKey({ key: Redacted.value(contract.privateKey), format: "pem" }),
      catch: () => fail("Unreadable")
    })
    if (key.asymmetricKeyType !== "rsa") return yield* fail("NotRsa")
    if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) return yield* fail("TooShort")
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

/**
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Signer.Service> = Signer.make(prepare)

/**
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Signer.Signer> = Layer.effect(Signer.Signer, make)
