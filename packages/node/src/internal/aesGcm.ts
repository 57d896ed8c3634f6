/**
 * AES-256-GCM (Web Crypto) for values stored in a row: a random 96-bit IV per write, stored with
 * the ciphertext and a fingerprint of the key, and the row bound as additional authenticated data,
 * so that a ciphertext copied to another row does not open. Without a key, values are stored in
 * clear and a sealed value is refused. Failures are `RowError`s that name what is wrong with the
 * stored value, never the value.
 *
 * Stored form: `aesgcm1.<key fingerprint>.<IV>.<ciphertext>`, each part in base64url.
 *
 * @since 0.1.0
 */
import { InvalidConfig } from "@digime-effect/core/DigimeError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Encoding from "effect/Encoding"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { RowError } from "./rowError.js"

/**
 * Seals a value for the row `boundTo`, and opens what was sealed for that row.
 *
 * @since 0.1.0
 * @category models
 */
export interface Codec {
  readonly seal: (plaintext: string, boundTo: string) => Effect.Effect<string, RowError>
  readonly open: (stored: string, boundTo: string) => Effect.Effect<string, RowError>
}

const sealedPrefix = "aesgcm1"
const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder("utf-8", { fatal: true })

const clear: Codec = {
  seal: (plaintext) => Effect.succeed(plaintext),
  open: (stored) =>
    stored.startsWith(`${sealedPrefix}.`)
      ? Effect.fail(new RowError({ reason: "NoKeyConfigured" }))
      : Effect.succeed(stored)
}

const keyBytes = (key: Uint8Array | string): Option.Option<Uint8Array<ArrayBuffer>> => {
  if (typeof key !== "string") return key.length === 32 ? Option.some(new Uint8Array(key)) : Option.none()
  const trimmed = key.trim()
  const decoded = Either.orElse(Encoding.decodeBase64(trimmed), () => Encoding.decodeBase64Url(trimmed))
  return Either.isRight(decoded) && decoded.right.length === 32
    ? Option.some(new Uint8Array(decoded.right))
    : Option.none()
}

const sealed = (key: CryptoKey, keyId: string): Codec => {
  const aad = (boundTo: string) => textEncoder.encode(`${sealedPrefix}\0${keyId}\0${boundTo}`)
  return {
    seal: (plaintext, boundTo) =>
      Effect.tryPromise({
        try: async () => {
          const iv = globalThis.crypto.getRandomValues(new Uint8Array(12))
          const ciphertext = await globalThis.crypto.subtle.encrypt(
            { name: "AES-GCM", iv, additionalData: aad(boundTo) },
            key,
            textEncoder.encode(plaintext)
          )
          const body = Encoding.encodeBase64Url(new Uint8Array(ciphertext))
          return [sealedPrefix, keyId, Encoding.encodeBase64Url(iv), body].join(".")
        },
        catch: () => new RowError({ reason: "EncryptionFailed" })
      }),
    open: (stored, boundTo) => {
      const parts = stored.split(".")
      if (parts[0] !== sealedPrefix) return Effect.fail(new RowError({ reason: "NotEncrypted" }))
      if (parts.length !== 4) return Effect.fail(new RowError({ reason: "Malformed" }))
      if (parts[1] !== keyId) return Effect.fail(new RowError({ reason: "OtherKey" }))
      const iv = Encoding.decodeBase64Url(parts[2]!)
      const ciphertext = Encoding.decodeBase64Url(parts[3]!)
      if (Either.isLeft(iv) || Either.isLeft(ciphertext) || iv.right.length !== 12) {
        return Effect.fail(new RowError({ reason: "Malformed" }))
      }
      return Effect.tryPromise({
        try: async () =>
          textDecoder.decode(
            await globalThis.crypto.subtle.decrypt(
              { name: "AES-GCM", iv: new Uint8Array(iv.right), additionalData: aad(boundTo) },
              key,
              new Uint8Array(ciphertext.right)
            )
          ),
        catch: () => new RowError({ reason: "Unauthenticated" })
      })
    }
  }
}

/**
 * The codec of an `encryptionKey` (32 bytes: a `Uint8Array` or its base64 text), or the clear one
 * without a key. A key of another size fails with `InvalidConfig`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  encryptionKey: Redacted.Redacted<Uint8Array | string> | undefined
): Effect.Effect<Codec, InvalidConfig> => {
  if (encryptionKey === undefined) return Effect.succeed(clear)
  const invalid = new InvalidConfig({
    field: "encryptionKey",
    reason: "must be 32 bytes: a Uint8Array or its base64 encoding"
  })
  return Effect.gen(function*() {
    const bytes = yield* Option.match(keyBytes(Redacted.value(encryptionKey)), {
      onNone: () => Effect.fail(invalid),
      onSome: Effect.succeed
    })
    const key = yield* Effect.tryPromise({
      try: () => globalThis.crypto.subtle.importKey("raw", bytes, "AES-GCM", false, ["encrypt", "decrypt"]),
      catch: () => invalid
    })
    // A fingerprint that tells keys apart without revealing anything about them. Its label is
    // part of every stored ciphertext's key id: it never changes.
    const fingerprint = yield* Effect.tryPromise({
      try: () =>
        globalThis.crypto.subtle.digest(
          "SHA-256",
          new Uint8Array([...textEncoder.encode("@digime-effect/node/SqlTokenStore key id\0"), ...bytes])
        ),
      catch: () => invalid
    })
    return sealed(key, Encoding.encodeBase64Url(new Uint8Array(fingerprint).subarray(0, 6)))
  })
}
