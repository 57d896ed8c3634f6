/**
 * The protocol checks of a request, in the order digi.me's answers suggest:
 *
 * 1. the client assertion (`406`): the `Authorization` header, a JWT whose header is exactly
 *    `{"alg":"PS512","typ":"JWT"}`, a PS512 signature with a 64-byte salt by a known contract's key
 *    (`401 InvalidClient` for an unknown `client_id`), a well-formed nonce never seen before and a
 *    timestamp (ms) within `assertionMaxAge` of now;
 * 2. the claim set of the step (`400 ValidationErrors`), decoded strictly with the shared schemas of
 *    `internal/protocol.ts`: an excess claim is refused like a missing or invalid one;
 * 3. the body (`400`), decoded strictly the same way; a problem in `agent` answers `SDKInvalid`.
 *
 * The recorded problem of 2 and 3 is derived from the `ParseError`'s issues, one per claim or field.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type { ParseOptions } from "effect/SchemaAST"
import { decodeUtf8, fromBase64url } from "../../../internal/encoding.js"
import { type AuthorizeBody, CommonClaims, type TriggerBody } from "../../../internal/protocol.js"
import type { SimRequest } from "../../DigimeSimulator.js"
import { isRecord, type Json, type Refusal, refuse, validation } from "./responses.js"
import { verifyPs512 } from "./signing.js"
import type { State } from "./state.js"

const strict: ParseOptions = { onExcessProperty: "error", errors: "all" }

const isNonce = Schema.is(CommonClaims.fields.nonce)
const isTimestamp = Schema.is(CommonClaims.fields.timestamp)

const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/**
 * The JSON of a JWT segment, if it is base64url of UTF-8 JSON.
 *
 * @internal
 */
export const decodeSegment = (segment: string): unknown => {
  const bytes = fromBase64url(segment)
  const text = bytes === undefined ? undefined : decodeUtf8(bytes)
  return text === undefined ? undefined : parseJson(text)
}

/** @internal */
export interface Verified {
  readonly claims: Json
  readonly clientId: string
}

/**
 * The verified assertion: its claims (not yet checked against the step's claim set) and client id.
 * `seen.claims` receives the claims as soon as they are decoded, for the record of a refused request.
 *
 * @internal
 */
export const verifyAssertion = (
  state: State,
  request: SimRequest,
  now: number,
  seen: { claims: Json | undefined }
): Effect.Effect<Verified, Refusal> =>
  Effect.gen(function*() {
    const rejected = (refusal: Refusal) => {
      state.counters.rejectedAssertions++
      return Effect.fail(refusal)
    }
    const match = /^Bearer ([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(
      request.headers["authorization"] ?? ""
    )
    if (match === null) return yield* rejected(validation(406, "assertion: missing or malformed Authorization header"))
    const [, encodedHeader, encodedPayload, encodedSignature] = match as unknown as [string, string, string, string]
    const header = decodeSegment(encodedHeader)
    if (!isRecord(header) || header.alg !== "PS512" || header.typ !== "JWT" || Object.keys(header).length !== 2) {
      return yield* rejected(
        validation(406, "assertion: the header is not exactly {\"alg\":\"PS512\",\"typ\":\"JWT\"}")
      )
    }
    const claims = decodeSegment(encodedPayload)
    if (!isRecord(claims)) return yield* rejected(validation(406, "assertion: the payload is not a JSON object"))
    seen.claims = claims
    const clientId = claims.client_id
    if (typeof clientId !== "string") return yield* rejected(validation(406, "assertion: no client_id"))
    const key = state.contracts.get(clientId)?.verifyKey
    if (key === undefined) {
      return yield* Effect.fail(
        refuse(401, "InvalidClient", `The client_id (${clientId}) is invalid`, "assertion: unknown client_id")
      )
    }
    const signature = fromBase64url(encodedSignature)
    const valid = signature !== undefined &&
      (yield* Effect.promise(() => verifyPs512(key, signature, `${encodedHeader}.${encodedPayload}`)))
    if (!valid) {
      return yield* rejected(validation(406, "assertion: the signature does not verify (PS512, 64-byte salt)"))
    }
    const { nonce, timestamp } = claims
    if (!isNonce(nonce)) return yield* rejected(validation(406, "assertion: nonce is not 32 characters of [A-Za-z0-9]"))
    if (!isTimestamp(timestamp)) return yield* rejected(validation(406, "assertion: timestamp is not an integer (ms)"))
    if (Math.abs(now - timestamp) > state.config.maxAge) {
      return yield* rejected(validation(406, "assertion: timestamp too far from now"))
    }
    if (state.nonces.has(nonce)) {
      return yield* rejected(refuse(
        406,
        "InvalidRequest",
        `The nonce provided in JWT payload (${nonce}) has already been used`,
        "assertion: nonce replay"
      ))
    }
    state.nonces.set(nonce, timestamp)
    if (state.nonces.size > 10_000) {
      for (const [seenNonce, seenAt] of state.nonces) {
        if (seenAt < now - state.config.maxAge) state.nonces.delete(seenNonce)
      }
    }
    return { claims, clientId }
  })

// --- claim sets and bodies, from the shared schemas ---------------------------------------------

type Issue = ParseResult.ArrayFormatterIssue

/** One problem per issue, in the issue's words: its kind (excess, missing, invalid) and its path. */
const problemsOf = (issues: ReadonlyArray<Issue>, describe: (issue: Issue, name: string) => string): string =>
  [...new Set(issues.map((issue) => describe(issue, issue.path.map(String).join("."))))].join("; ")

const claimProblem = (issue: Issue, name: string): string =>
  issue._tag === "Unexpected"
    ? `unexpected claim: ${name}`
    : issue._tag === "Missing"
    ? `missing claim: ${name}`
    : `invalid claim: ${name}`

const fieldProblem = (what: string) => (issue: Issue, name: string): string =>
  name === ""
    ? `${what}: not a JSON object`
    : issue._tag === "Unexpected"
    ? `${what}: unexpected field ${name}`
    : issue._tag === "Missing"
    ? `${what}: missing field ${name}`
    : `${what}: invalid field ${name}`

const bodyProblem = fieldProblem("body")

/**
 * A strict decoder of a JSON value that is not the body itself (e.g. the payload of a
 * `FileDescriptor`): every problem named after `what`, in a `400 ValidationErrors`.
 *
 * @internal
 */
export const valueDecoder = <A, I>(
  schema: Schema.Schema<A, I>,
  what: string
): (input: unknown) => Either.Either<A, Refusal> => {
  const decode = Schema.decodeUnknownEither(schema, strict)
  const describe = fieldProblem(what)
  return (input) =>
    Either.mapLeft(
      decode(input),
      (error) => validation(400, problemsOf(ParseResult.ArrayFormatter.formatErrorSync(error), describe))
    )
}

/**
 * A strict decoder of a step's claim set: every problem named (`"unexpected claim: iat"`,
 * `"missing claim: state"`, `"invalid claim: redirect_uri"`), in a `400 ValidationErrors`.
 *
 * @internal
 */
export const claimsDecoder = <A, I>(schema: Schema.Schema<A, I>): (claims: Json) => Either.Either<A, Refusal> => {
  const decode = Schema.decodeUnknownEither(schema, strict)
  return (claims) =>
    Either.mapLeft(
      decode(claims),
      (error) => validation(400, problemsOf(ParseResult.ArrayFormatter.formatErrorSync(error), claimProblem))
    )
}

/** The body field that names the SDK: a key of both JSON bodies' schemas. */
const sdkField: keyof typeof AuthorizeBody.fields & keyof typeof TriggerBody.fields = "agent"

/**
 * A strict decoder of a JSON body: `Content-Type: application/json`, then the schema. A problem in
 * `agent` alone answers `400 SDKInvalid`; any other problem `400 ValidationErrors` (it comes first,
 * as a body of the wrong shape says nothing about the SDK).
 *
 * @internal
 */
export const bodyDecoder = <A, I>(schema: Schema.Schema<A, I>): (request: SimRequest) => Either.Either<A, Refusal> => {
  const decode = Schema.decodeUnknownEither(Schema.parseJson(schema), strict)
  return (request) => {
    if (!/^application\/json\s*(;|$)/i.test(request.headers["content-type"] ?? "")) {
      return Either.left(validation(400, "body: content-type is not application/json"))
    }
    return Either.mapLeft(
      decode(request.body === undefined ? undefined : decodeUtf8(request.body)),
      (error): Refusal => {
        const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
        const sdkOnly = issues.every((issue) => issue.path[0] === sdkField)
        const problems = problemsOf(issues, bodyProblem)
        return sdkOnly ? refuse(400, "SDKInvalid", "The SDK is invalid", problems) : validation(400, problems)
      }
    )
  }
}

/**
 * Whether the request has no body (or an empty one, as a client that labels an empty body JSON sends).
 *
 * @internal
 */
export const hasNoBody = (request: SimRequest): boolean => request.body === undefined || request.body.length === 0

/** @internal */
export const noBody = (request: SimRequest): Either.Either<void, Refusal> =>
  request.body === undefined || request.body.length === 0
    ? Either.void
    : Either.left(validation(400, "body: this call takes no body"))

const secretClaims: ReadonlyArray<string> = ["access_token", "refresh_token", "code", "code_verifier"]

/**
 * The claims as recorded: the secret ones replaced by `"<redacted>"`.
 *
 * @internal
 */
export const redactClaims = (claims: Json): Json => {
  const copy: Json = { ...claims }
  for (const name of secretClaims) {
    if (Object.hasOwn(copy, name)) copy[name] = "<redacted>"
  }
  return copy
}
