/**
 * Signs the client assertion that every digi.me call carries: a compact JWS with header
 * `{"alg":"PS512","typ":"JWT"}` (RSASSA-PSS, SHA-512, MGF1-SHA-512, 64-byte salt) signed with the
 * contract's private key.
 *
 * Core declares the service and a Web Crypto implementation that runs on any platform;
 * `@digime-effect/node` provides a faster one on `node:crypto`.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type { Contract } from "./Contract.js"
import { InvalidContractKey } from "./DigimeError.js"
import { importWebKey, preparedPerContract } from "./internal/contractKey.js"
import { base64url, encodeUtf8, jsonSegment } from "./internal/encoding.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * Signs `claims` as a PS512 JWT with the contract's key. The claims are sent as given: the
   * caller adds `client_id`, `nonce` and `timestamp`.
   */
  readonly sign: (
    contract: Contract,
    claims: Readonly<Record<string, unknown>>
  ) => Effect.Effect<Redacted.Redacted<string>, InvalidContractKey>
  /** Parses the contract's key now (it is kept), so that an unusable key fails early. */
  readonly prepare: (contract: Contract) => Effect.Effect<void, InvalidContractKey>
}

/**
 * @since 0.1.0
 * @category services
 */
export class Signer extends Context.Tag("@digime-effect/core/Signer")<Signer, Service>() {}

/**
 * A signing function for one prepared key: takes the JWS signing input, returns the signature.
 *
 * @since 0.1.0
 * @category models
 */
export type SignBytes = (input: Uint8Array<ArrayBuffer>) => Effect.Effect<Uint8Array, InvalidContractKey>

/**
 * The protected header of every client assertion, already encoded.
 *
 * @since 0.1.0
 * @category models
 */
export const encodedHeader: string = jsonSegment({ alg: "PS512", typ: "JWT" })

/**
 * Base64url without padding, as a signer encodes each assertion's claims (their JSON, in UTF-8)
 * and its signature. Core's runs on every platform (the Web API's `btoa`); a platform may have a
 * faster one: `NodeSigner` uses Node's `Buffer`, which saves about 10 µs per request.
 *
 * @since 0.4.0
 * @category models
 */
export interface Base64url {
  readonly encodeText: (text: string) => string
  readonly encodeBytes: (bytes: Uint8Array) => string
}

const platformBase64url: Base64url = { encodeText: base64url, encodeBytes: base64url }

/**
 * Builds a signer from a way to prepare a key, and optionally a faster `Base64url` than core's.
 * Each contract's key is prepared once (on first use) and kept for as long as the contract's
 * `privateKey` is the same value; a key that cannot be prepared fails every time with
 * `InvalidContractKey`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  prepare: (contract: Contract) => Effect.Effect<SignBytes, InvalidContractKey>,
  encoding: Base64url = platformBase64url
): Effect.Effect<Service> =>
  Effect.sync(() => {
    const signBytesFor = preparedPerContract(prepare)
    return {
      prepare: (contract) => Effect.asVoid(signBytesFor(contract)),
      sign: (contract, claims) =>
        Effect.flatMap(signBytesFor(contract), (signBytes) => {
          const input = `${encodedHeader}.${encoding.encodeText(JSON.stringify(claims))}`
          return Effect.map(
            signBytes(encodeUtf8(input)),
            (signature) => Redacted.make(`${input}.${encoding.encodeBytes(signature)}`)
          )
        })
    }
  })

const webCryptoPrepare = (contract: Contract): Effect.Effect<SignBytes, InvalidContractKey> =>
  Effect.gen(function*() {
    const fail = (reason: InvalidContractKey["reason"]) =>
      new InvalidContractKey({ contractId: contract.contractId, reason })
    const key = yield* importWebKey(contract, { name: "RSA-PSS", hash: "SHA-512" }, ["sign"])
    return (input: Uint8Array<ArrayBuffer>) =>
      Effect.tryPromise({
        try: async () =>
          new Uint8Array(await globalThis.crypto.subtle.sign({ name: "RSA-PSS", saltLength: 64 }, key, input)),
        catch: () => fail("SigningFailed")
      })
  })

/**
 * A signer on Web Crypto (`globalThis.crypto.subtle`): runs on Node, Deno, Bun, workers and
 * browsers. On Node, `NodeSigner.layer` from `@digime-effect/node` is faster.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWebCrypto: Layer.Layer<Signer> = Layer.effect(Signer, make(webCryptoPrepare))
