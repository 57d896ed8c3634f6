/**
 * The `Verifier` on `node:crypto`: digi.me's signatures checked synchronously, with each key of
 * the key set turned into a `KeyObject` once (`KeyObject.from`). On Node this is faster than Web
 * Crypto's `verify`, which hops to the thread pool and back for every signature (see
 * BENCHMARKS.md, section 3).
 *
 * @since 0.2.0
 */
import * as Verifier from "@digime-effect/core/Verifier"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Crypto from "node:crypto"

/**
 * @since 0.2.0
 * @category constructors
 */
export const make = (): Verifier.Service => {
  const keyObjects = new WeakMap<CryptoKey, Crypto.KeyObject>()
  const keyObjectOf = (key: CryptoKey): Crypto.KeyObject => {
    let keyObject = keyObjects.get(key)
    if (keyObject === undefined) {
      keyObject = Crypto.KeyObject.from(key)
      keyObjects.set(key, keyObject)
    }
    return keyObject
  }
  return {
    verify: (key, input, signature) =>
      Effect.sync(() => {
        // As Web Crypto does: a key imported for another algorithm, hash or use verifies nothing.
        const algorithm = key.algorithm as RsaHashedKeyAlgorithm
        if (algorithm.name !== "RSA-PSS" || algorithm.hash?.name !== "SHA-512" || !key.usages.includes("verify")) {
          return false
        }
        try {
          return Crypto.verify("sha512", input, {
            key: keyObjectOf(key),
            padding: Crypto.constants.RSA_PKCS1_PSS_PADDING,
            saltLength: 64
          }, signature)
        } catch {
          // A key that is not an RSA public key, a signature of another size: not a valid signature.
          return false
        }
      })
  }
}

/**
 * @since 0.2.0
 * @category layers
 */
export const layer: Layer.Layer<Verifier.Verifier> = Layer.sync(Verifier.Verifier, make)
