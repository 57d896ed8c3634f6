/**
 * A digi.me contract made up for tests: a fresh RSA key pair, the private key as digi.me hands it
 * out (a PKCS#1 PEM by default) and the public key to give the simulated digi.me.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type { Contract } from "../Contract.js"
import { pkcs1PrivateToPkcs8, pkcs1PublicToSpki, toPem } from "../internal/der.js"
import { pkcs8ToPkcs1Private, spkiToPkcs1Public } from "./internal/derReader.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface TestContract {
  /** The contract to configure the client with; its `privateKey` is a PEM. */
  readonly contract: Contract
  /** The matching public key, an SPKI ("BEGIN PUBLIC KEY") PEM, for `DigimeSimulator.Options`. */
  readonly publicKeyPem: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** `"pkcs1"` ("BEGIN RSA PRIVATE KEY", as digi.me hands keys out; the default) or `"pkcs8"` ("BEGIN PRIVATE KEY"). */
  readonly format?: "pkcs1" | "pkcs8" | undefined
  /** Key size in bits, 2048 by default. */
  readonly modulusLength?: number | undefined
}

/**
 * Generates an RSA key pair (public exponent 65537) with Web Crypto. Slow (tens to hundreds of
 * milliseconds): make one per test file, not one per test.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (contractId: string, options?: Options) => Effect.Effect<TestContract> = Effect.fn(
  "TestContract.make"
)(function*(contractId: string, options?: Options) {
  const pair = yield* Effect.promise(() =>
    globalThis.crypto.subtle.generateKey(
      {
        name: "RSA-PSS",
        hash: "SHA-512",
        modulusLength: options?.modulusLength ?? 2048,
        publicExponent: Uint8Array.of(1, 0, 1)
      },
      true,
      ["sign", "verify"]
    )
  )
  const exportKey = (format: "pkcs8" | "spki", key: CryptoKey) =>
    Effect.promise(async () => new Uint8Array(await globalThis.crypto.subtle.exportKey(format, key)))
  const pkcs8 = yield* exportKey("pkcs8", pair.privateKey)
  const spki = yield* exportKey("spki", pair.publicKey)
  const pkcs1Private = pkcs8ToPkcs1Private(pkcs8)
  const pkcs1Public = spkiToPkcs1Public(spki)
  if (pkcs1Private === undefined || pkcs1Public === undefined) {
    return yield* Effect.dieMessage("TestContract.make: Web Crypto exported a key this module cannot read")
  }
  // Both PEMs are rebuilt from the PKCS#1 keys so that they carry the plain rsaEncryption
  // identifier, as keys made with OpenSSL do, whatever identifier the platform exported.
  const privateKeyPem = (options?.format ?? "pkcs1") === "pkcs1"
    ? toPem("RSA PRIVATE KEY", pkcs1Private)
    : toPem("PRIVATE KEY", pkcs1PrivateToPkcs8(pkcs1Private))
  return {
    contract: { contractId, privateKey: Redacted.make(privateKeyPem) },
    publicKeyPem: toPem("PUBLIC KEY", pkcs1PublicToSpki(pkcs1Public))
  }
})
