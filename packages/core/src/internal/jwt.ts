/**
 * The JWS checks of the tokens digi.me signs (PS512 compact JWS naming their key set by `jku` and
 * their key by `kid`), as pure steps: read the header, then check the signature and the time
 * claims with a key. Finding the key is `KeySet`'s business.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as jose from "jose"
import { VerificationError } from "../DigimeError.js"
import type * as Verifier from "../Verifier.js"
import { encodeUtf8, fromBase64url } from "./encoding.js"

/** Where the key of a token is: its key set's URL (already parsed) and the key's id. */
/** @internal */
export interface KeyRef {
  readonly jku: URL
  readonly kid: string
}

const fail = (operation: string, reason: VerificationError["reason"], description: string) =>
  new VerificationError({ operation, reason, description })

/** Reads the protected header: PS512 only, with a `jku` that is an absolute URL and a `kid`. */
/** @internal */
export const readHeader = (operation: string, token: string): Either.Either<KeyRef, VerificationError> => {
  if (typeof token !== "string" || token.split(".").length !== 3) {
    return Either.left(fail(operation, "Malformed", "the token is not a compact JWS"))
  }
  let header: jose.ProtectedHeaderParameters
  try {
    header = jose.decodeProtectedHeader(token)
  } catch {
    return Either.left(fail(operation, "Malformed", "the token header is not valid JSON"))
  }
  if (header.alg !== "PS512") {
    return Either.left(fail(operation, "UnsupportedAlgorithm", `alg ${String(header.alg)} is not PS512`))
  }
  // No extension is understood: a critical one, or an unencoded payload, is refused.
  if (header.crit !== undefined || (header.b64 !== undefined && header.b64 !== true)) {
    return Either.left(fail(operation, "Malformed", "the token header asks for an extension"))
  }
  if (typeof header.jku !== "string" || typeof header.kid !== "string") {
    return Either.left(fail(operation, "Malformed", "the token header has no jku or kid"))
  }
  try {
    return Either.right({ jku: new URL(header.jku), kid: header.kid })
  } catch {
    return Either.left(fail(operation, "UntrustedKeySet", "the jku is not an absolute URL"))
  }
}

/**
 * Checks the signature over the token's signing input with `key` (by `verifier`), then reads the
 * claims and checks `exp` and `nbf` against `now` (epoch milliseconds), allowing the clocks to
 * disagree by `toleranceSeconds`. The claims are read with jose once the signature holds; the time
 * checks are jose's own rules (`iat`, `nbf` and `exp` are numbers when present, `nbf` not after
 * now plus the tolerance, `exp` after now minus the tolerance), written here because the signature
 * is checked by the platform's verifier rather than by jose.
 */
/** @internal */
export const verifySignature = (
  operation: string,
  token: string,
  key: CryptoKey,
  now: number,
  toleranceSeconds: number,
  verifier: Verifier.Service
): Effect.Effect<Readonly<Record<string, unknown>>, VerificationError> => {
  const lastDot = token.lastIndexOf(".")
  const signature = fromBase64url(token.slice(lastDot + 1))
  if (signature === undefined || signature.length === 0) {
    return Effect.fail(fail(operation, "Malformed", "the token could not be decoded"))
  }
  return Effect.flatMap(
    verifier.verify(key, encodeUtf8(token.slice(0, lastDot)), new Uint8Array(signature)),
    (valid) => {
      if (!valid) return Effect.fail(fail(operation, "InvalidSignature", "the signature does not verify"))
      let claims: jose.JWTPayload
      try {
        claims = jose.decodeJwt(token)
      } catch {
        return Effect.fail(fail(operation, "Malformed", "the token could not be decoded"))
      }
      const seconds = Math.floor(now / 1000)
      for (const claim of ["iat", "nbf", "exp"] as const) {
        if (claims[claim] !== undefined && typeof claims[claim] !== "number") {
          return Effect.fail(fail(operation, "InvalidClaims", `claim ${claim} failed validation`))
        }
      }
      if (claims.nbf !== undefined && claims.nbf > seconds + toleranceSeconds) {
        return Effect.fail(fail(operation, "InvalidClaims", "claim nbf failed validation"))
      }
      if (claims.exp !== undefined && claims.exp <= seconds - toleranceSeconds) {
        return Effect.fail(fail(operation, "Expired", "the token has expired"))
      }
      return Effect.succeed(claims as Readonly<Record<string, unknown>>)
    }
  )
}
