/**
 * The callback of a consent (WP §4.2): its query, read whatever form the application has it in,
 * and checked against the state issued with the onboarding URL.
 */
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { CallbackError } from "../DigimeError.js"
import type { InvalidOptions } from "../DigimeError.js"
import { nonEmpty } from "./calls.js"

/** @internal */
export const toSearchParams = (
  query: string | URL | URLSearchParams | Readonly<Record<string, string | undefined>>
): URLSearchParams => {
  if (query instanceof URL) return query.searchParams
  if (query instanceof URLSearchParams) return query
  if (typeof query === "string") {
    const questionMark = query.indexOf("?")
    return new URLSearchParams(questionMark >= 0 ? query.slice(questionMark + 1) : query)
  }
  const params = new URLSearchParams()
  for (const [name, value] of Object.entries(query)) if (typeof value === "string") params.set(name, value)
  return params
}

const constantTimeEquals = (a: string, b: string): boolean => {
  let diff = a.length ^ b.length
  for (let i = 0; i < Math.max(a.length, b.length); i++) diff |= (a.charCodeAt(i) | 0) ^ (b.charCodeAt(i) | 0)
  return diff === 0
}

/** A refusal (`success=false`), with digi.me's `errorCode` when there is one. */
/** @internal */
export const denied = (params: URLSearchParams): CallbackError => {
  const errorCode = params.get("errorCode")
  return new CallbackError(
    errorCode === null || errorCode === "" ? { reason: "Denied" } : { reason: "Denied", errorCode }
  )
}

/**
 * A callback without a state: a refusal still says so (and keeps its code, though nothing binds it
 * to an authorization in progress, so it completes nothing); anything else is `MissingState`.
 */
/** @internal */
export const missingState = (params: URLSearchParams): CallbackError =>
  params.get("success") === "false" ? denied(params) : new CallbackError({ reason: "MissingState" })

/** See `TokenProtocol.parseCallback`. */
/** @internal */
export const parse = (
  query: string | URL | URLSearchParams | Readonly<Record<string, string | undefined>>,
  expectedState: string
): Effect.Effect<
  { readonly code: Redacted.Redacted<string>; readonly state: string; readonly accountReference?: string | undefined },
  CallbackError | InvalidOptions
> =>
  Effect.gen(function*() {
    yield* nonEmpty("parseCallback", "expectedState", expectedState)
    const params = toSearchParams(query)
    const state = params.get("state")
    if (state === null || state === "") return yield* missingState(params)
    if (!constantTimeEquals(state, expectedState)) return yield* new CallbackError({ reason: "StateMismatch" })
    const success = params.get("success")
    if (success === "false") return yield* denied(params)
    if (success !== "true") return yield* new CallbackError({ reason: "Malformed" })
    const code = params.get("code")
    if (code === null || code === "") return yield* new CallbackError({ reason: "MissingCode" })
    const accountReference = params.get("accountReference")
    return {
      code: Redacted.make(code),
      state,
      ...(accountReference === null || accountReference === "" ? {} : { accountReference })
    }
  })
