/**
 * Verification of the tokens digi.me signs (PS512 JWTs naming their JWKS by `jku` and their key
 * by `kid`). Unlike a client that trusts whatever `jku` a token names, only origins on the
 * allow-list are fetched, keys are cached by `jku` and `kid`, and an unknown `kid` causes at most
 * one refetch (key rotation).
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as jose from "jose"
import { VerificationError } from "../DigimeError.js"
import { publicPemToSpki } from "./der.js"
import { JwksKey } from "./protocol.js"

/** @internal */
export interface Verifier {
  readonly verify: (
    operation: string,
    token: string
  ) => Effect.Effect<Readonly<Record<string, unknown>>, VerificationError>
}

/** @internal */
export type FetchJwks = (url: string) => Effect.Effect<unknown, string>

const importKey = (entry: typeof JwksKey.Type): Effect.Effect<Option.Option<CryptoKey>> => {
  const algorithm = { name: "RSA-PSS", hash: "SHA-512" }
  if (entry.pem !== undefined) {
    const spki = publicPemToSpki(entry.pem)
    if (spki === undefined) return Effect.succeedNone
    return Effect.tryPromise(() => globalThis.crypto.subtle.importKey("spki", spki, algorithm, false, ["verify"])).pipe(
      Effect.option
    )
  }
  if (entry.kty === "RSA" && entry.n !== undefined && entry.e !== undefined) {
    const jwk = { kty: "RSA", n: entry.n, e: entry.e }
    return Effect.tryPromise(() => globalThis.crypto.subtle.importKey("jwk", jwk, algorithm, false, ["verify"])).pipe(
      Effect.option
    )
  }
  return Effect.succeedNone
}

const decodeKeys = (document: unknown): Effect.Effect<Map<string, CryptoKey>, string> =>
  Effect.gen(function*() {
    if (typeof document !== "object" || document === null || !Array.isArray((document as { keys?: unknown }).keys)) {
      return yield* Effect.fail("the key set has no keys array")
    }
    const keys = new Map<string, CryptoKey>()
    for (const raw of (document as { keys: ReadonlyArray<unknown> }).keys) {
      const entry = Schema.decodeUnknownOption(JwksKey)(raw)
      if (Option.isNone(entry)) continue
      const key = yield* importKey(entry.value)
      // Web Crypto imports an RSA key of any size: keys under 2048 bits are not trusted.
      if (Option.isSome(key) && (key.value.algorithm as RsaHashedKeyAlgorithm).modulusLength >= 2048) {
        keys.set(entry.value.kid, key.value)
      }
    }
    return keys
  })

/** @internal */
export const makeVerifier = (options: {
  readonly jwksOrigins: ReadonlySet<string>
  readonly fetchJwks: FetchJwks
}): Effect.Effect<Verifier> =>
  Effect.gen(function*() {
    const cache = new Map<string, Map<string, CryptoKey>>()
    const lock = yield* Effect.makeSemaphore(1)

    const fail = (operation: string, reason: VerificationError["reason"], description: string) =>
      new VerificationError({ operation, reason, description })

    const refresh = (operation: string, jku: string, kid: string, force: boolean) =>
      lock.withPermits(1)(Effect.gen(function*() {
        const cached = cache.get(jku)
        if (cached !== undefined && (cached.has(kid) || !force)) return cached
        const document = yield* options.fetchJwks(jku).pipe(
          Effect.mapError((description) => fail(operation, "KeySetUnavailable", description))
        )
        const keys = yield* decodeKeys(document).pipe(
          Effect.mapError((description) => fail(operation, "KeySetUnavailable", description))
        )
        cache.set(jku, keys)
        return keys
      }))

    const keyFor = (operation: string, jku: string, kid: string) =>
      Effect.gen(function*() {
        const cached = cache.get(jku)?.get(kid)
        if (cached !== undefined) return cached
        // Unknown kid: fetch the key set (again, if it was cached), once.
        const keys = yield* refresh(operation, jku, kid, true)
        const key = keys.get(kid)
        if (key === undefined) return yield* fail(operation, "UnknownKey", `the key set names no key ${kid}`)
        return key
      })

    const verify = (operation: string, token: string) =>
      Effect.gen(function*() {
        if (typeof token !== "string" || token.split(".").length !== 3) {
          return yield* fail(operation, "Malformed", "the token is not a compact JWS")
        }
        let header: jose.ProtectedHeaderParameters
        try {
          header = jose.decodeProtectedHeader(token)
        } catch {
          return yield* fail(operation, "Malformed", "the token header is not valid JSON")
        }
        if (header.alg !== "PS512") {
          return yield* fail(operation, "UnsupportedAlgorithm", `alg ${String(header.alg)} is not PS512`)
        }
        if (typeof header.jku !== "string" || typeof header.kid !== "string") {
          return yield* fail(operation, "Malformed", "the token header has no jku or kid")
        }
        let jku: URL
        try {
          jku = new URL(header.jku)
        } catch {
          return yield* fail(operation, "UntrustedKeySet", "the jku is not an absolute URL")
        }
        if (!options.jwksOrigins.has(jku.origin) || jku.username !== "" || jku.password !== "") {
          return yield* fail(operation, "UntrustedKeySet", `the jku origin ${jku.origin} is not on the allow-list`)
        }
        const key = yield* keyFor(operation, jku.href, header.kid)
        const now = yield* Clock.currentTimeMillis
        const result = yield* Effect.tryPromise({
          try: () => jose.jwtVerify(token, key, { algorithms: ["PS512"], currentDate: new Date(now) }),
          catch: (error) =>
            error instanceof jose.errors.JWTExpired
              ? fail(operation, "Expired", "the token has expired")
              : error instanceof jose.errors.JWTClaimValidationFailed
              ? fail(operation, "InvalidClaims", `claim ${error.claim} failed validation`)
              : error instanceof jose.errors.JWSSignatureVerificationFailed
              ? fail(operation, "InvalidSignature", "the signature does not verify")
              : fail(operation, "Malformed", "the token could not be decoded")
        })
        return result.payload as Readonly<Record<string, unknown>>
      })

    return { verify }
  })
