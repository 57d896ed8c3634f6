/**
 * Checks the signatures of the tokens digi.me signs (PS512: RSASSA-PSS, SHA-512, MGF1-SHA-512,
 * 64-byte salt) with a key of digi.me's key set. `KeySet` finds the key, parses the token and
 * checks its time claims; this service only answers whether the signature is the key's over the
 * signing input.
 *
 * Core's default, used when none is provided, is Web Crypto (`crypto.subtle.verify`), which runs on
 * any platform. `@digime-effect/node` provides one on `node:crypto` (`NodeVerifier`), faster on Node.
 *
 * @since 0.2.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/**
 * @since 0.2.0
 * @category models
 */
export interface Service {
  /**
   * Whether `signature` is a PS512 signature of `input` by `key` (a public RSA-PSS key imported
   * for `verify`). A signature that cannot be checked (malformed, of another size) is `false`.
   */
  readonly verify: (
    key: CryptoKey,
    input: Uint8Array<ArrayBuffer>,
    signature: Uint8Array<ArrayBuffer>
  ) => Effect.Effect<boolean>
}

/**
 * The verifier on Web Crypto (`globalThis.crypto.subtle`).
 *
 * @since 0.2.0
 * @category constructors
 */
export const webCrypto: Service = {
  verify: (key, input, signature) =>
    Effect.promise(() =>
      globalThis.crypto.subtle.verify({ name: "RSA-PSS", saltLength: 64 }, key, signature, input).catch(() => false)
    )
}

/**
 * @since 0.2.0
 * @category services
 */
export class Verifier extends Context.Reference<Verifier>()("@digime-effect/core/Verifier", {
  defaultValue: (): Service => webCrypto
}) {}

/**
 * @since 0.2.0
 * @category layers
 */
export const layerWebCrypto: Layer.Layer<Verifier> = Layer.succeed(Verifier, webCrypto)
