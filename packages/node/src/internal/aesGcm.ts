/**
 * AES-256-GCM (Web Crypto) for values stored in a row: a random 96-bit IV per write, stored with
 * the ciphertext and the id of the key, and the row bound as additional authenticated data: its
 * id, and what else of it must not change under the value (a token's version, a pending
 * authorization's columns). A ciphertext copied to another row, or an older ciphertext of the same
 * row, does not open. Without a key, values are stored in clear and a sealed value is refused.
 * Failures are `RowError`s that name what is wrong with the stored value, never the value.
 *
 * Stored forms, each part in base64url (a key id is letters, digits, `-` and `_`):
 * - `aesgcm2.<key id>.<IV>.<ciphertext>`, written now. The additional data is the JSON array
 *   `["aesgcm2", key id, row, ...context]`.
 * - `aesgcm1.<key fingerprint>.<IV>.<ciphertext>`, written by 0.1.0: bound to the row id only
 *   (`aesgcm1 NUL fingerprint NUL row`). Still opened; re-encryption rewrites it in the new form.
 *
 * A key is found by its id, or by its fingerprint (the id of a key given alone as `encryptionKey`,
 * and of every value in the first form), so that moving from one key to a key ring loses nothing.
 *
 * @since 0.1.0
 */
import { InvalidConfig } from "@digime-effect/core/DigimeError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Encoding from "effect/Encoding"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type { Options } from "../SqlTokenStore.js"
import { RowError } from "./rowError.js"

/**
 * What a value is sealed for: the row, and what else of the row it is bound to (in order).
 *
 * @since 0.1.0
 * @category models
 */
export interface Binding {
  readonly row: string
  readonly context: ReadonlyArray<string>
}

/**
 * Seals a value for a row, and opens what was sealed for it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Codec {
  /** How every value sealed now starts (format and current key id); `undefined` without a key. */
  readonly current: string | undefined
  readonly seal: (plaintext: string, binding: Binding) => Effect.Effect<string, RowError>
  readonly open: (stored: string, binding: Binding) => Effect.Effect<string, RowError>
  /**
   * As `open`, but a value in clear is returned as it is: for re-encrypting the rows written
   * before a key was configured, never for reading.
   */
  readonly openOrClear: (stored: string, binding: Binding) => Effect.Effect<string, RowError>
}

const legacyFormat = "aesgcm1"
const format = "aesgcm2"
const sealedForm = /^aesgcm([0-9]+)\./
const keyIdForm = /^[A-Za-z0-9_-]{1,64}$/
const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder("utf-8", { fatal: true })

const isSealed = (stored: string): boolean => sealedForm.test(stored)

const clear: Codec = {
  current: undefined,
  seal: (plaintext) => Effect.succeed(plaintext),
  open: (stored) =>
    isSealed(stored) ? Effect.fail(new RowError({ reason: "NoKeyConfigured" })) : Effect.succeed(stored),
  openOrClear: (stored) =>
    isSealed(stored) ? Effect.fail(new RowError({ reason: "NoKeyConfigured" })) : Effect.succeed(stored)
}

interface Key {
  readonly id: string
  readonly fingerprint: string
  readonly crypto: CryptoKey
}

const aad = (formatOf: string, keyId: string, binding: Binding): Uint8Array<ArrayBuffer> =>
  textEncoder.encode(
    formatOf === legacyFormat
      ? `${legacyFormat}\0${keyId}\0${binding.row}`
      : JSON.stringify([format, keyId, binding.row, ...binding.context])
  )

const sealed = (current: Key, keys: ReadonlyArray<Key>): Codec => {
  const byId = new Map(keys.map((key) => [key.id, key]))
  const byFingerprint = new Map(keys.map((key) => [key.fingerprint, key]))

  const seal: Codec["seal"] = (plaintext, binding) =>
    Effect.tryPromise({
      try: async () => {
        const iv = globalThis.crypto.getRandomValues(new Uint8Array(12))
        const ciphertext = await globalThis.crypto.subtle.encrypt(
          { name: "AES-GCM", iv, additionalData: aad(format, current.id, binding) },
          current.crypto,
          textEncoder.encode(plaintext)
        )
        return [format, current.id, Encoding.encodeBase64Url(iv), Encoding.encodeBase64Url(new Uint8Array(ciphertext))]
          .join(".")
      },
      catch: () => new RowError({ reason: "EncryptionFailed" })
    })

  const openSealed = (stored: string, binding: Binding): Effect.Effect<string, RowError> => {
    const parts = stored.split(".")
    if (parts[0] !== legacyFormat && parts[0] !== format) return Effect.fail(new RowError({ reason: "UnknownFormat" }))
    if (parts.length !== 4) return Effect.fail(new RowError({ reason: "Malformed" }))
    const keyId = parts[1]!
    const key = parts[0] === legacyFormat ? byFingerprint.get(keyId) : byId.get(keyId) ?? byFingerprint.get(keyId)
    if (key === undefined) return Effect.fail(new RowError({ reason: "OtherKey" }))
    const iv = Encoding.decodeBase64Url(parts[2]!)
    const ciphertext = Encoding.decodeBase64Url(parts[3]!)
    if (Either.isLeft(iv) || Either.isLeft(ciphertext) || iv.right.length !== 12) {
      return Effect.fail(new RowError({ reason: "Malformed" }))
    }
    return Effect.tryPromise({
      try: async () =>
        textDecoder.decode(
          await globalThis.crypto.subtle.decrypt(
            { name: "AES-GCM", iv: new Uint8Array(iv.right), additionalData: aad(parts[0]!, keyId, binding) },
            key.crypto,
            new Uint8Array(ciphertext.right)
          )
        ),
      catch: () => new RowError({ reason: "Unauthenticated" })
    })
  }

  return {
    current: `${format}.${current.id}.`,
    seal,
    open: (stored, binding) =>
      isSealed(stored) ? openSealed(stored, binding) : Effect.fail(new RowError({ reason: "NotEncrypted" })),
    openOrClear: (stored, binding) => isSealed(stored) ? openSealed(stored, binding) : Effect.succeed(stored)
  }
}

const keyBytes = (key: Uint8Array | string): Option.Option<Uint8Array<ArrayBuffer>> => {
  if (typeof key !== "string") return key.length === 32 ? Option.some(new Uint8Array(key)) : Option.none()
  const trimmed = key.trim()
  const decoded = Either.orElse(Encoding.decodeBase64(trimmed), () => Encoding.decodeBase64Url(trimmed))
  return Either.isRight(decoded) && decoded.right.length === 32
    ? Option.some(new Uint8Array(decoded.right))
    : Option.none()
}

interface Given {
  /** Where the key is in the options, for `InvalidConfig`. */
  readonly field: string
  /** The id given with the key; a key given alone is known by its fingerprint. */
  readonly id: string | undefined
  readonly key: Redacted.Redacted<Uint8Array | string>
}

const importKey = (given: Given): Effect.Effect<Key, InvalidConfig> => {
  const invalid = (field: string, reason: string) => new InvalidConfig({ field, reason })
  const badKey = invalid(
    given.id === undefined ? given.field : `${given.field}.key`,
    "must be 32 bytes: a Uint8Array or its base64 encoding"
  )
  return Effect.gen(function*() {
    const bytes = yield* Option.match(keyBytes(Redacted.value(given.key)), {
      onNone: () => Effect.fail(badKey),
      onSome: Effect.succeed
    })
    if (given.id !== undefined) {
      if (!keyIdForm.test(given.id)) {
        return yield* invalid(`${given.field}.id`, "must be 1 to 64 letters, digits, - or _")
      }
      const spelled = [Encoding.encodeBase64(bytes), Encoding.encodeBase64Url(bytes)].map((text) =>
        text.replace(/=+$/, "")
      )
      if (spelled.some((text) => given.id!.includes(text))) {
        return yield* invalid(`${given.field}.id`, "must not contain the key: a key id is stored in clear")
      }
    }
    const crypto = yield* Effect.tryPromise({
      try: () => globalThis.crypto.subtle.importKey("raw", bytes, "AES-GCM", false, ["encrypt", "decrypt"]),
      catch: () => badKey
    })
    // A fingerprint that tells keys apart without revealing anything about them. Its label is
    // part of the key id of every value sealed by 0.1.0: it never changes.
    const digest = yield* Effect.tryPromise({
      try: () =>
        globalThis.crypto.subtle.digest(
          "SHA-256",
          new Uint8Array([...textEncoder.encode("@digime-effect/node/SqlTokenStore key id\0"), ...bytes])
        ),
      catch: () => badKey
    })
    const fingerprint = Encoding.encodeBase64Url(new Uint8Array(digest).subarray(0, 6))
    return { id: given.id ?? fingerprint, fingerprint, crypto }
  })
}

/**
 * The codec of the options' keys: `encryption` (a current key and the previous ones still
 * opened) or `encryptionKey` (one key, known by its fingerprint), or the clear codec without a
 * key. A key that is not 32 bytes, an id that is not 1 to 64 letters, digits, `-` or `_`, that
 * contains the key or that two keys share, and both options at once, fail with `InvalidConfig`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Pick<Options, "encryptionKey" | "encryption">): Effect.Effect<Codec, InvalidConfig> => {
  const { encryption, encryptionKey } = options
  if (encryption !== undefined && encryptionKey !== undefined) {
    return Effect.fail(new InvalidConfig({ field: "encryption", reason: "cannot be given with encryptionKey" }))
  }
  const given: ReadonlyArray<Given> = encryption !== undefined
    ? [
      { field: "encryption.current", ...encryption.current },
      ...(encryption.previous ?? []).map((key, i) => ({ field: `encryption.previous[${i}]`, ...key }))
    ]
    : encryptionKey !== undefined
    ? [{ field: "encryptionKey", id: undefined, key: encryptionKey }]
    : []
  if (given.length === 0) return Effect.succeed(clear)
  return Effect.gen(function*() {
    const keys = yield* Effect.forEach(given, importKey)
    for (const [i, key] of keys.entries()) {
      const field = `${given[i]!.field}.id`
      if (keys.some((other, j) => j < i && other.id === key.id)) {
        return yield* new InvalidConfig({ field, reason: "is given to two keys" })
      }
      if (keys.some((other) => other.fingerprint === key.id && other.fingerprint !== key.fingerprint)) {
        return yield* new InvalidConfig({ field, reason: "is the fingerprint of another key" })
      }
    }
    return sealed(keys[0]!, keys)
  })
}
