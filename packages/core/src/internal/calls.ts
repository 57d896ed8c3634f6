/**
 * What the request builders and response processors of `DigimeProtocol` share: checks of the
 * caller's options (typed `InvalidOptions`, before any request), JSON bodies encoded with their
 * wire schema, and the reading of digi.me's answers (success bodies decoded with their schema,
 * error bodies turned into `ApiError` or `AccessTokenRejected`).
 */
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { AccessTokenRejected, ApiError, InvalidOptions, ResponseError } from "../DigimeError.js"
import type { Request as DigimeRequest } from "../DigimeRequest.js"
import { DataClaims, describeParseError, ErrorBody } from "./protocol.js"

/** What the processors need of a `DigimeRequest.Request`: which call, under which contract. */
/** @internal */
export interface Request {
  readonly operation: string
  readonly contractId: string
}

/** @internal */
export const nonEmpty = (
  operation: string,
  field: string,
  value: string | Redacted.Redacted<string> | undefined
): Effect.Effect<void, InvalidOptions> =>
  value === undefined || (Redacted.isRedacted(value) ? Redacted.value(value) : value).trim() === ""
    ? Effect.fail(new InvalidOptions({ operation, field, reason: "must not be empty" }))
    : Effect.void

/** @internal */
export const httpUrl = (operation: string, field: string, value: string): Effect.Effect<void, InvalidOptions> => {
  try {
    const url = new URL(value)
    if (url.protocol === "https:" || url.protocol === "http:") return Effect.void
  } catch {
    // refused below
  }
  return Effect.fail(new InvalidOptions({ operation, field, reason: "must be an absolute http(s) URL" }))
}

/**
 * Caller-supplied JSON (session options, sources scope) that cannot be encoded (a cycle, a
 * BigInt) is refused as input before any request, instead of throwing.
 */
/** @internal */
export const encodeJson = (operation: string, field: string, value: unknown): Effect.Effect<string, InvalidOptions> =>
  Effect.try({
    try: () => JSON.stringify(value),
    catch: () => new InvalidOptions({ operation, field, reason: "cannot be encoded as JSON" })
  })

/** The step's own claims, encoded with their wire schema; a value it refuses names its claim. */
/** @internal */
export const encodeClaims = <A, I extends Readonly<Record<string, unknown>>>(
  operation: string,
  schema: Schema.Schema<A, I>,
  claims: NoInfer<A>
): Effect.Effect<I, InvalidOptions> =>
  Either.match(encoderOf(schema)(claims), {
    onLeft: (error) =>
      Effect.fail(new InvalidOptions({ operation, field: "claims", reason: describeParseError(error) })),
    onRight: Effect.succeed
  })

// Each claims schema's encoder, made once (the claims schemas encode synchronously).
const encoders = new WeakMap<Schema.Schema.Any, (input: unknown) => Either.Either<unknown, ParseResult.ParseError>>()
const encoderOf = <A, I>(schema: Schema.Schema<A, I>): (input: A) => Either.Either<I, ParseResult.ParseError> => {
  let encoder = encoders.get(schema)
  if (encoder === undefined) {
    encoder = Schema.encodeEither(schema) as (input: unknown) => Either.Either<unknown, ParseResult.ParseError>
    encoders.set(schema, encoder)
  }
  return encoder as (input: A) => Either.Either<I, ParseResult.ParseError>
}

/** A request with a JSON body encoded with its wire schema. */
/** @internal */
export const withJsonBody = <A, I>(
  operation: string,
  field: string,
  request: HttpClientRequest.HttpClientRequest,
  schema: Schema.Schema<A, I>,
  body: A
): Effect.Effect<HttpClientRequest.HttpClientRequest, InvalidOptions> =>
  Effect.mapError(
    HttpClientRequest.schemaBodyJson(schema)(request, body),
    () => new InvalidOptions({ operation, field, reason: "cannot be encoded as JSON" })
  )

/** A record without its `undefined` entries (digi.me's SDK leaves them out of the JSON). */
/** @internal */
export const withoutUndefined = <A extends Readonly<Record<string, unknown>>>(record: A): A => {
  const out: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(record)) if (value !== undefined) out[name] = value
  return out as A
}

const parseJson = (text: string): unknown => {
  if (text.trim() === "") return undefined
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

const bodyOf = (response: HttpClientResponse.HttpClientResponse): Effect.Effect<unknown> =>
  Effect.map(Effect.orElseSucceed(response.text, () => ""), parseJson)

/**
 * An error answer: `ApiError` with digi.me's code, message and reference (or code `Unknown` when
 * the body is not a digi.me error body). With `rejectsToken`, a `401 InvalidToken` is
 * `AccessTokenRejected` instead: only that answer means the access token itself was refused (so
 * does a 401 without a digi.me body whose `WWW-Authenticate` says `error="invalid_token"`).
 */
/** @internal */
export function failure(
  request: Request,
  response: HttpClientResponse.HttpClientResponse,
  rejectsToken: true
): Effect.Effect<never, ApiError | AccessTokenRejected>
/** @internal */
export function failure(
  request: Request,
  response: HttpClientResponse.HttpClientResponse,
  rejectsToken: false
): Effect.Effect<never, ApiError>
/** @internal */
export function failure(
  request: Request,
  response: HttpClientResponse.HttpClientResponse,
  rejectsToken: boolean
): Effect.Effect<never, ApiError | AccessTokenRejected> {
  return Effect.flatMap(bodyOf(response), (json): Effect.Effect<never, ApiError | AccessTokenRejected> => {
    const detail = Option.match(Schema.decodeUnknownOption(ErrorBody)(json), {
      onNone: () => ({
        code: "Unknown",
        description: `HTTP ${response.status} without a digi.me error body`,
        reference: undefined
      }),
      onSome: (body) =>
        typeof body.error === "string"
          ? { code: body.error, description: "message" in body ? body.message ?? "" : "", reference: undefined }
          : { code: body.error.code, description: body.error.message ?? "", reference: body.error.reference }
    })
    const reference = detail.reference === undefined ? {} : { reference: detail.reference }
    // Without a digi.me error body (a HEAD answer has none), RFC 6750's `WWW-Authenticate` error
    // says the same: `invalid_token`.
    const invalidToken = detail.code === "InvalidToken" ||
      (detail.code === "Unknown" && /error="?invalid_token"?/i.test(response.headers["www-authenticate"] ?? ""))
    return rejectsToken && response.status === 401 && invalidToken
      ? Effect.fail(
        new AccessTokenRejected({
          operation: request.operation,
          contractId: request.contractId,
          status: response.status,
          code: detail.code,
          ...reference
        })
      )
      : Effect.fail(
        new ApiError({
          operation: request.operation,
          status: response.status,
          code: detail.code,
          description: detail.description,
          ...reference
        })
      )
  })
}

/**
 * A success answer (2xx) decoded with `schema`; anything else is `failure`. A body that is not
 * JSON or does not match is `ResponseError` naming the fields, never their values.
 */
/** @internal */
export function decodeSuccess<A, I>(
  request: Request,
  response: HttpClientResponse.HttpClientResponse,
  schema: Schema.Schema<A, I>,
  rejectsToken: true
): Effect.Effect<A, ApiError | AccessTokenRejected | ResponseError>
/** @internal */
export function decodeSuccess<A, I>(
  request: Request,
  response: HttpClientResponse.HttpClientResponse,
  schema: Schema.Schema<A, I>,
  rejectsToken: false
): Effect.Effect<A, ApiError | ResponseError>
/** @internal */
export function decodeSuccess<A, I>(
  request: Request,
  response: HttpClientResponse.HttpClientResponse,
  schema: Schema.Schema<A, I>,
  rejectsToken: boolean
): Effect.Effect<A, ApiError | AccessTokenRejected | ResponseError> {
  if (response.status < 200 || response.status > 299) return failure(request, response, rejectsToken as true)
  const invalid = (description: string) =>
    Effect.fail(new ResponseError({ operation: request.operation, status: response.status, description }))
  const decode = decoderOf(schema)
  return Effect.matchEffect(response.json, {
    onFailure: () => invalid("the body is not JSON"),
    onSuccess: (json) =>
      Either.match(decode(json), { onLeft: (error) => invalid(describeParseError(error)), onRight: Effect.succeed })
  })
}

// Each schema's decoder, made once (the wire schemas decode synchronously).
const decoders = new WeakMap<Schema.Schema.Any, (input: unknown) => Either.Either<unknown, ParseResult.ParseError>>()
/** @internal */
export const decoderOf = <A, I>(
  schema: Schema.Schema<A, I>
): (input: unknown) => Either.Either<A, ParseResult.ParseError> => {
  let decoder = decoders.get(schema)
  if (decoder === undefined) {
    decoder = Schema.decodeUnknownEither(schema)
    decoders.set(schema, decoder)
  }
  return decoder as (input: unknown) => Either.Either<A, ParseResult.ParseError>
}

// Characters a header value or a path segment must not hold: controls (CR and LF above all).
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const controls = /[\u0000-\u001f\u007f]/

// A header value: visible ASCII with inner spaces only. Other characters may be refused by the
// platform or altered on the way, surrounding spaces trimmed, and a CR or LF would forge a header.
const printableAscii = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/

/** A caller's value sent in a header (`accountId`, `redirectUri`): not empty, printable ASCII. */
/** @internal */
export const headerValue = (operation: string, field: string, value: string): Effect.Effect<void, InvalidOptions> =>
  Effect.zipRight(
    nonEmpty(operation, field, value),
    printableAscii.test(value)
      ? Effect.void
      : Effect.fail(
        new InvalidOptions({ operation, field, reason: "must be printable ASCII without surrounding spaces" })
      )
  )

/** A call made with the user's access token (claim set A). Written without a generator: every data call runs it. */
/** @internal */
export const userRequest = (
  operation: string,
  credentials: { readonly contractId: string; readonly accessToken: Redacted.Redacted<string> },
  request: HttpClientRequest.HttpClientRequest,
  idempotent: boolean
): Effect.Effect<DigimeRequest, InvalidOptions> =>
  Effect.zipRight(
    Effect.zipRight(
      nonEmpty(operation, "contractId", credentials.contractId),
      nonEmpty(operation, "accessToken", credentials.accessToken)
    ),
    Either.match(encodeDataClaims({ access_token: credentials.accessToken }), {
      onLeft: (error) =>
        Effect.fail(new InvalidOptions({ operation, field: "claims", reason: describeParseError(error) })),
      onRight: (claims): Effect.Effect<DigimeRequest> =>
        Effect.succeed({ operation, contractId: credentials.contractId, request, claims, idempotent })
    })
  )

const encodeDataClaims = Schema.encodeEither(DataClaims)

/**
 * A caller's (or digi.me's) value inserted into the URL's path: not empty, not `.` or `..` (which
 * URL resolution would remove), no control character; percent-encoded.
 */
/** @internal */
export const pathSegment = (
  operation: string,
  field: string,
  value: string
): Effect.Effect<string, InvalidOptions> =>
  value === "" || value === "." || value === ".." || controls.test(value)
    ? Effect.fail(
      new InvalidOptions({ operation, field, reason: "must be a non-empty path segment without control characters" })
    )
    : Effect.succeed(encodeURIComponent(value))
