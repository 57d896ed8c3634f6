/**
 * What every exchange with digi.me shares: which failures are worth another attempt, the
 * schedule of those attempts, the time limit of one attempt, the conversion of the platform's
 * errors into ours (a description that names the method and URL, never a header), and the
 * hardening of the platform's client: no redirect followed, no body read past a limit, no
 * platform span (its attributes and error would carry the request's headers).
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import type * as Headers from "@effect/platform/Headers"
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { constTrue } from "effect/Function"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { RequestError } from "../DigimeError.js"
import * as BufferedResponse from "./bufferedResponse.js"

/** Statuses that say "try again later" (as digi.me's own SDK retries them). */
/** @internal */
export const transientStatuses: ReadonlySet<number> = new Set([408, 429, 500, 502, 503, 504, 521, 522, 524])

/** Two more attempts, after about 0.5 s and 1 s, jittered. */
/** @internal */
export const retrySchedule: Schedule.Schedule<unknown> = Schedule.exponential("500 millis", 2).pipe(
  Schedule.jittered,
  Schedule.intersect(Schedule.recurs(2))
)

/**
 * `effect`, and when it fails with an error that `while` accepts, the further attempts `schedule`
 * allows: the schedule runs from that first failure, as if it had driven the first attempt too.
 * Only an effect that failed pays for the schedule (setting one up costs every attempt otherwise).
 *
 * @internal
 */
export const retryAfterFailure = <A, E, R, R2>(
  effect: Effect.Effect<A, E, R>,
  options: { readonly schedule: Schedule.Schedule<unknown, E, R2>; readonly while: (error: E) => boolean }
): Effect.Effect<A, E, R | R2> =>
  Effect.catchAll(effect, (first) => {
    if (!options.while(first)) return Effect.fail(first)
    let replayed = false
    return Effect.retry(
      Effect.suspend(() => {
        if (replayed) return effect
        replayed = true
        return Effect.fail(first)
      }),
      options
    )
  })

/** A request error worth another attempt: anything but a request that could not be encoded. */
/** @internal */
export const isTransientRequestError = (error: { readonly _tag: string }): boolean =>
  error._tag === "RequestError" && (error as RequestError).reason !== "Encode"

// Errors of the network stack that mean no connection was made: nothing of the request was sent.
const connectCodes: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "UND_ERR_CONNECT_TIMEOUT"
])

const codeOf = (cause: unknown, depth = 0): string | undefined => {
  if (typeof cause !== "object" || cause === null || depth > 3) return undefined
  const code = (cause as { readonly code?: unknown }).code
  return typeof code === "string" ? code : codeOf((cause as { readonly cause?: unknown }).cause, depth + 1)
}

/** @internal */
export const fromHttpClientError = (
  operation: string,
  error: HttpClientError.HttpClientError,
  deadline?: { readonly transport: Transport; readonly duration: Duration.Duration }
): RequestError => {
  if (deadline !== undefined && deadline.transport.isDeadline(error.cause)) {
    return timedOut(operation, deadline.duration)
  }
  const code = error._tag === "RequestError" && error.reason === "Transport" ? codeOf(error.cause) : undefined
  return new RequestError({
    operation,
    reason: error._tag === "RequestError" && error.reason !== "Transport"
      ? "Encode"
      : code !== undefined && connectCodes.has(code)
      ? "Connect"
      : "Transport",
    description: `${error.reason} error${
      code === undefined ? "" : ` ${code}`
    } (${error.request.method} ${error.request.url})`
  })
}

/** The error of an exchange that had no (whole) answer within `duration`. */
/** @internal */
export const timedOut = (operation: string, duration: Duration.Duration): RequestError =>
  new RequestError({ operation, reason: "Timeout", description: `no answer within ${Duration.format(duration)}` })

/** Fails with `RequestError` (`Timeout`) when `effect` takes longer than `duration`. */
/** @internal */
export const timeout =
  (operation: string, duration: Duration.Duration) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | RequestError, R> =>
    Effect.timeoutFail(effect, { duration, onTimeout: () => timedOut(operation, duration) })

/**
 * The `Fetch` of `FetchHttpClient` for digi.me's requests: the one of the calling fiber (or the
 * global `fetch`), asked never to follow a redirect. Fetch follows redirects by default, so a
 * key set URL on the allow-list could send it to any origin; with `"manual"` the redirect itself
 * is the answer, refused by its status. Other clients ignore it (none of @effect/platform's
 * follows a redirect unless asked to).
 */
const manualRedirects = (fetch: Option.Option<typeof globalThis.fetch>): typeof globalThis.fetch => (input, init) =>
  Option.getOrElse(fetch, () => globalThis.fetch)(input, { ...init, redirect: "manual" })

/**
 * What a client made for digi.me's requests (the Node adapter's) offers, under the property
 * `transportKey`: it makes no span and follows no redirect, so that `harden` has nothing to add,
 * and it keeps a deadline per request itself, so that an exchange needs no timer fiber of its own.
 * Registered with `Symbol.for`: the adapter declares it without importing this module.
 *
 * @internal
 */
export interface Transport {
  /**
   * Aborts `request`, once sent, after `millis`: waiting for its answer, and reading the answer's
   * body, whole or as a stream, until `streaming` hands the body over.
   */
  readonly setDeadline: (request: HttpClientRequest.HttpClientRequest, millis: number) => void
  /**
   * `response`'s body is handed over as a stream, read at its reader's pace: the deadline ends, and
   * the body fails instead when no part of it arrives within the same time (counted while the
   * client's buffer has room: a reader that holds back long enough to fill it stops the count).
   */
  readonly streaming: (response: HttpClientResponse.HttpClientResponse) => void
  /** Whether `cause`, of a `RequestError` or `ResponseError` of this client, is a deadline that passed. */
  readonly isDeadline: (cause: unknown) => boolean
}

/** @internal */
export const transportKey: unique symbol = Symbol.for("@digime-effect/core/HttpClient/transport") as never

/** @internal */
export const transportOf = (client: HttpClient.HttpClient): Transport | undefined =>
  (client as { readonly [transportKey]?: Transport })[transportKey]

/**
 * The platform's client hardened for digi.me: no platform span (ours are made by the callers,
 * with attributes that hold no header) and no redirect followed. One transformation does both:
 * each costs Effect operations on every request.
 */
/** @internal */
export const harden = (client: HttpClient.HttpClient): HttpClient.HttpClient =>
  transportOf(client) !== undefined ?
    client :
    HttpClient.transformResponse(client, (response) =>
      Effect.contextWithEffect((context) =>
        Effect.locally(
          Effect.provideService(
            response,
            FetchHttpClient.Fetch,
            manualRedirects(Context.getOption(context, FetchHttpClient.Fetch))
          ),
          HttpClient.currentTracerDisabledWhen,
          constTrue
        )
      ))

/** The body is longer than the limit: reading stopped there. */
/** @internal */
export class BodyTooLarge extends Data.TaggedError("BodyTooLarge")<{ readonly limit: number }> {}

/** The body could not be read to its end. */
/** @internal */
export class BodyUnreadable extends Data.TaggedError("BodyUnreadable")<{
  readonly description: string
  readonly cause?: unknown
}> {}

/**
 * Reads the whole body, failing as soon as it (or its announced length) is over `limit` bytes:
 * never more than `limit` bytes are held. With `inOneGo` (a client declared as a `Transport`, which
 * never undoes a content coding), an answer that announces its length without a content coding is
 * read in one go (HTTP's framing stops it at that length); any other answer, and every answer of
 * another client (which may decode a body and hide its coding, as a browser's fetch does across
 * origins), is read as a stream and counted on the way.
 */
/** @internal */
export const readCapped = (
  response: HttpClientResponse.HttpClientResponse,
  limit: number,
  options: { readonly headers?: Headers.Headers | undefined; readonly inOneGo?: boolean | undefined } = {}
): Effect.Effect<Uint8Array<ArrayBuffer>, BodyTooLarge | BodyUnreadable> =>
  Effect.suspend(() => {
    const headers = options.headers ?? response.headers
    const length = headers["content-length"]
    const declared = length === undefined ? Number.NaN : Number(length)
    if (declared > limit) return Effect.fail(new BodyTooLarge({ limit }))
    const coding = headers["content-encoding"]
    if (
      options.inOneGo === true && Number.isSafeInteger(declared) && declared >= 0 &&
      (coding === undefined || coding === "identity")
    ) {
      return response.arrayBuffer.pipe(
        Effect.mapError((error) => new BodyUnreadable({ description: `${error.reason} error`, cause: error.cause })),
        Effect.flatMap((body) =>
          body.byteLength > limit ? Effect.fail(new BodyTooLarge({ limit })) : Effect.succeed(new Uint8Array(body))
        )
      )
    }
    return collectCapped(
      response.stream.pipe(
        // No body at all (a web Response without one) reads as an empty body.
        Stream.catchAll((error) =>
          error.reason === "EmptyBody"
            ? Stream.empty
            : Stream.fail(new BodyUnreadable({ description: `${error.reason} error`, cause: error.cause }))
        )
      ),
      limit
    )
  })

/**
 * Every byte of `stream` in one array, failing with `BodyTooLarge` as soon as there are more than
 * `limit`: never more than `limit` bytes are held.
 */
/** @internal */
export const collectCapped = <E, R>(
  stream: Stream.Stream<Uint8Array, E, R>,
  limit: number
): Effect.Effect<Uint8Array<ArrayBuffer>, E | BodyTooLarge, R> =>
  Effect.suspend(() => {
    const chunks: Array<Uint8Array> = []
    let size = 0
    return stream.pipe(
      Stream.runForEach((chunk): Effect.Effect<void, BodyTooLarge> => {
        size += chunk.length
        if (size > limit) return Effect.fail(new BodyTooLarge({ limit }))
        chunks.push(chunk)
        return Effect.void
      }),
      Effect.map(() => {
        const body = new Uint8Array(size)
        let offset = 0
        for (const chunk of chunks) {
          body.set(chunk, offset)
          offset += chunk.length
        }
        return body
      })
    )
  })

/**
 * The answer with its body read (at most `limit` bytes) and held in memory, so that its
 * processor reads it as often as it likes and the connection is free again. Its request is the
 * method and URL only: the answer goes on to processors, spans and errors, the client assertion
 * (in the `authorization` header) must not.
 */
/** @internal */
export const buffered = (
  response: HttpClientResponse.HttpClientResponse,
  limit: number,
  inOneGo: boolean
): Effect.Effect<HttpClientResponse.HttpClientResponse, BodyTooLarge | BodyUnreadable> => {
  // Read once: a platform's response may build its headers anew on every read.
  const headers = response.headers
  return Effect.map(
    readCapped(response, limit, { headers, inOneGo }),
    (body) => BufferedResponse.make(response, headers, body)
  )
}
