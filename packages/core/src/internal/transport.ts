/**
 * What every exchange with digi.me shares: which failures are worth another attempt, the
 * schedule of those attempts, the time limit of one attempt, and the conversion of the
 * platform's errors into ours (a description that names the method and URL, never a header).
 */
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { RequestError } from "../DigimeError.js"

/** Statuses that say "try again later" (as digi.me's own SDK retries them). */
/** @internal */
export const transientStatuses: ReadonlySet<number> = new Set([408, 429, 500, 502, 503, 504, 521, 522, 524])

/** Two more attempts, after about 0.5 s and 1 s, jittered. */
/** @internal */
export const retrySchedule: Schedule.Schedule<unknown> = Schedule.exponential("500 millis", 2).pipe(
  Schedule.jittered,
  Schedule.intersect(Schedule.recurs(2))
)

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
export const fromHttpClientError = (operation: string, error: HttpClientError.HttpClientError): RequestError => {
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

/** Fails with `RequestError` (`Timeout`) when `effect` takes longer than `duration`. */
/** @internal */
export const timeout =
  (operation: string, duration: Duration.Duration) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | RequestError, R> =>
    Effect.timeoutFail(effect, {
      duration,
      onTimeout: () =>
        new RequestError({ operation, reason: "Timeout", description: `no answer within ${Duration.format(duration)}` })
    })
