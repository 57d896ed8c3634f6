/**
 * Keys and JWTs: the contracts' keys (verifying PS512, wrapping file keys with RSA-OAEP SHA-1),
 * digi.me's signing key (published in the JWKS as a PKCS#1 PEM), the signed token answers and their
 * tampered variants (`TamperToken` faults).
 */
import * as Effect from "effect/Effect"
import { publicPemToSpki, toPem } from "../../../internal/der.js"
import { base64url, encodeUtf8, fromBase64url, jsonSegment, sha256 } from "../../../internal/encoding.js"
import type { Fault } from "../../DigimeSimulator.js"
import { spkiToPkcs1Public } from "../derReader.js"
import { type Json, randomId, randomToken } from "./responses.js"
import { seconds, type SigningKey, type State } from "./state.js"

/** @internal */
export type Tamper = Extract<Fault, { readonly _tag: "TamperToken" }>["tamper"]

const importVerifyKey = (contractId: string, pem: string): Promise<CryptoKey> => {
  const spki = publicPemToSpki(pem)
  if (spki === undefined) {
    return Promise.reject(
      new Error(`DigimeSimulator: the public key of contract ${contractId} is not an RSA public PEM`)
    )
  }
  return globalThis.crypto.subtle.importKey("spki", spki, { name: "RSA-PSS", hash: "SHA-512" }, false, ["verify"])
}

/**
 * Both keys of a contract's public key: PS512 verification and RSA-OAEP (SHA-1) encryption.
 *
 * @internal
 */
export const importContractKeys = async (
  contractId: string,
  pem: string
): Promise<{ readonly verifyKey: CryptoKey; readonly encryptKey: CryptoKey }> => {
  const verifyKey = await importVerifyKey(contractId, pem)
  const spki = publicPemToSpki(pem)!
  const encryptKey = await globalThis.crypto.subtle.importKey(
    "spki",
    spki,
    { name: "RSA-OAEP", hash: "SHA-1" },
    false,
    ["encrypt"]
  ).catch(() => {
    throw new Error(`DigimeSimulator: the public key of contract ${contractId} cannot encrypt with RSA-OAEP`)
  })
  return { verifyKey, encryptKey }
}

/**
 * An RSA-OAEP (SHA-1) public key of no contract, for `WrongKeyEnvelope` faults.
 *
 * @internal
 */
export const generateStrayEncryptKey = async (): Promise<CryptoKey> => {
  const pair = await globalThis.crypto.subtle.generateKey(
    { name: "RSA-OAEP", hash: "SHA-1", modulusLength: 2048, publicExponent: Uint8Array.of(1, 0, 1) },
    false,
    ["encrypt", "decrypt"]
  )
  return pair.publicKey
}

/** @internal */
export const generateSigningKey = async (): Promise<SigningKey> => {
  const pair = await globalThis.crypto.subtle.generateKey(
    { name: "RSA-PSS", hash: "SHA-512", modulusLength: 2048, publicExponent: Uint8Array.of(1, 0, 1) },
    true,
    ["sign", "verify"]
  )
  const spki = new Uint8Array(await globalThis.crypto.subtle.exportKey("spki", pair.publicKey))
  const pkcs1 = spkiToPkcs1Public(spki)
  if (pkcs1 === undefined) throw new Error("DigimeSimulator: cannot read the exported signing key")
  return { kid: randomId(), privateKey: pair.privateKey, pem: toPem("RSA PUBLIC KEY", pkcs1) }
}

/**
 * `Service.rotateSigningKey`: a new signing key with a new `kid`; the JWKS then lists only the new key.
 *
 * @internal
 */
export const rotateSigningKey = (state: State): Effect.Effect<void> =>
  Effect.promise(generateSigningKey).pipe(
    Effect.map((key) => {
      state.signing = key
    })
  )

/**
 * Whether `signature` is a PS512 signature of `input` with a 64-byte salt, as RFC 7518 requires.
 *
 * @internal
 */
export const verifyPs512 = (key: CryptoKey, signature: Uint8Array, input: string): Promise<boolean> =>
  globalThis.crypto.subtle.verify(
    { name: "RSA-PSS", saltLength: 64 },
    key,
    new Uint8Array(signature),
    encodeUtf8(input)
  ).catch(() => false)

/** @internal */
export const sha256Base64url = async (input: string): Promise<string> => base64url(await sha256(input))

const signJwt = async (key: CryptoKey, header: Json, payload: Json): Promise<string> => {
  const input = `${jsonSegment(header)}.${jsonSegment(payload)}`
  const signature = await globalThis.crypto.subtle.sign({ name: "RSA-PSS", saltLength: 64 }, key, encodeUtf8(input))
  return `${input}.${base64url(new Uint8Array(signature))}`
}

const splitSigned = (jwt: string): [string, Uint8Array] => {
  const cut = jwt.lastIndexOf(".")
  return [jwt.slice(0, cut), new Uint8Array(fromBase64url(jwt.slice(cut + 1)) ?? [])]
}

/**
 * The token of an answer, signed with the current key and naming the JWKS in `jku`; with a
 * `tamper`, the bad token that fault asks for (`mainFields` are the fields `MissingFields` leaves out).
 *
 * @internal
 */
export const signToken = (
  state: State,
  payload: Json,
  mainFields: ReadonlyArray<string>,
  tamper: Tamper | undefined,
  now: number
): Effect.Effect<string> =>
  Effect.promise(async (): Promise<string> => {
    const key = state.signing
    const header: Json = { alg: "PS512", typ: "JWT", jku: state.config.jwksUrl, kid: key.kid }
    switch (tamper) {
      case undefined:
        return signJwt(key.privateKey, header, payload)
      case "BadSignature": {
        const [input, signature] = splitSigned(await signJwt(key.privateKey, header, payload))
        signature[0] = signature[0]! ^ 0xff
        signature[signature.length - 1] = signature[signature.length - 1]! ^ 0x01
        return `${input}.${base64url(signature)}`
      }
      case "AlgNone":
        return `${jsonSegment({ ...header, alg: "none" })}.${jsonSegment(payload)}.`
      case "AlgRS256":
        return signJwt(key.privateKey, { ...header, alg: "RS256" }, payload)
      case "UnknownKid": {
        state.strayKey ??= generateSigningKey()
        const stray = await state.strayKey
        return signJwt(stray.privateKey, { ...header, kid: stray.kid }, payload)
      }
      case "ForeignJku":
        return signJwt(key.privateKey, { ...header, jku: "https://evil.example/jwks/oauth" }, payload)
      case "MissingJku": {
        const rest: Json = { ...header }
        delete rest.jku
        return signJwt(key.privateKey, rest, payload)
      }
      case "Garbage":
        return `not-a-jwt-${randomToken()}`
      case "Expired":
        return signJwt(key.privateKey, header, { ...payload, exp: seconds(now) - 3600 })
      case "MissingFields": {
        const rest: Json = { ...payload }
        for (const field of mainFields) delete rest[field]
        return signJwt(key.privateKey, header, rest)
      }
    }
  })
