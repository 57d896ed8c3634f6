/**
 * The JWS checks of the tokens digi.me signs (PS512 compact JWS naming their key set by `jku` and
 * their key by `kid`), as pure steps: read the header, then check the signature and the time
 * claims with a key. Finding the key is `KeySet`'s business.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as jose from "jose"
import { VerificationError } from "../DigimeError.js"

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
 * Checks the signature with `key`, and `exp`/`nbf` against `now` (epoch milliseconds), allowing
 * the clocks to disagree by `toleranceSeconds`.
 */
/** @internal */
export const verifySignature = (
  operation: string,
  token: string,
  key: CryptoKey,
  now: number,
  toleranceSeconds: number
): Effect.Effect<Readonly<Record<string, unknown>>, VerificationError> =>
  Effect.tryPromise({
    try: () =>
      jose.jwtVerify(token, key, {
        algorithms: ["PS512"],
        currentDate: new Date(now),
        clockTolerance: toleranceSeconds
      }),
    catch: (error) =>
      error instanceof jose.errors.JWTExpired
        ? fail(operation, "Expired", "the token has expired")
        : error instanceof jose.errors.JWTClaimValidationFailed
        ? fail(operation, "InvalidClaims", `claim ${error.claim} failed validation`)
        : error instanceof jose.errors.JWSSignatureVerificationFailed
        ? fail(operation, "InvalidSignature", "the signature does not verify")
        : fail(operation, "Malformed", "the token could not be decoded")
  }).pipe(Effect.map((result) => result.payload as Readonly<Record<string, unknown>>))
