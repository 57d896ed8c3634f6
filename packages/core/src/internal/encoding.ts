import * as Either from "effect/Either"
import * as Encoding from "effect/Encoding"

const utf8 = new TextEncoder()
const utf8Decoder = new TextDecoder("utf-8", { fatal: true })

/** @internal */
export const encodeUtf8 = (input: string): Uint8Array<ArrayBuffer> => utf8.encode(input)

/** @internal */
export const decodeUtf8 = (input: Uint8Array): string | undefined => {
  try {
    return utf8Decoder.decode(input)
  } catch {
    return undefined
  }
}

// Bytes a `String.fromCharCode` call takes at once (well under any engine's argument limit).
const chunk = 0x8000

/**
 * Base64url without padding, encoded by the platform's `btoa` (Web API, on every runtime the
 * library runs on): about twice as fast as a JavaScript encoder, and every request encodes its
 * claims and its signature.
 *
 * @internal
 */
export const base64url = (input: Uint8Array | string): string => {
  const bytes = typeof input === "string" ? encodeUtf8(input) : input
  let binary = ""
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk) as unknown as Array<number>)
  }
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")
}

/** @internal */
export const fromBase64url = (input: string): Uint8Array | undefined =>
  /^[A-Za-z0-9_-]*$/.test(input) ? Either.getOrUndefined(Encoding.decodeBase64Url(input)) : undefined

/** @internal */
export const jsonSegment = (value: unknown): string => base64url(JSON.stringify(value))

/** 128 bits or more from the platform's CSPRNG (Web Crypto). */
/** @internal */
export const randomBytes = (size: number): Uint8Array<ArrayBuffer> => {
  const bytes = new Uint8Array(size)
  globalThis.crypto.getRandomValues(bytes)
  return bytes
}

const alphanumeric = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// Bytes drawn from the CSPRNG a block at a time, each used once: a call into the platform's crypto
// costs about 8 µs on Node, and every client assertion needs a nonce.
const pool = new Uint8Array(1024)
let pooled = 0

const randomByte = (): number => {
  if (pooled === 0) {
    globalThis.crypto.getRandomValues(pool)
    pooled = pool.length
  }
  return pool[--pooled]!
}

/** Uniform over [A-Za-z0-9] by rejection sampling (248 = 62 * 4). */
/** @internal */
export const randomAlphanumeric = (length: number): string => {
  let out = ""
  while (out.length < length) {
    const byte = randomByte()
    if (byte < 248) out += alphanumeric[byte % 62]
  }
  return out
}

/** @internal */
export const sha256 = async (input: string): Promise<Uint8Array> =>
  new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", encodeUtf8(input)))
