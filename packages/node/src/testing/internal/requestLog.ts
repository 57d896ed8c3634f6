/**
 * The log lines of the requests the server answers itself (the consent pages without
 * `autoConsent`, the control API, an API request whose body could not be read), in the format of the simulator's
 * own (see `DigimeSimulator.Options.log`): method, path (never the query), status, and for a
 * refusal its code and cause. The cause of a refusal travels with its response, noted by
 * `withProblem` where the refusal is made.
 */
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"

interface Problem {
  readonly code: string | undefined
  readonly problem: string
}

const problems = new WeakMap<HttpServerResponse.HttpServerResponse, Problem>()

/**
 * Notes why this response refuses its request, for the log; returns it.
 *
 * @internal
 */
export const withProblem = (
  response: HttpServerResponse.HttpServerResponse,
  problem: string,
  code?: string
): HttpServerResponse.HttpServerResponse => {
  problems.set(response, { code, problem })
  return response
}

/**
 * Logs a request the server answered itself, at info level, with the annotations of the
 * simulator's lines (`simulator.endpoint` is `consentPage`, `control`, or `api` for an API request
 * whose body could not be read).
 *
 * @internal
 */
export const logServed = (
  endpoint: "consentPage" | "control" | "api",
  method: string,
  url: URL,
  response: HttpServerResponse.HttpServerResponse
): Effect.Effect<void> => {
  const noted = problems.get(response)
  const cause = noted === undefined ? "" : `${noted.code === undefined ? "" : ` ${noted.code}`}: ${noted.problem}`
  return Effect.logInfo(`${method.toUpperCase()} ${url.pathname} ${response.status}${cause}`).pipe(
    Effect.annotateLogs({
      "simulator.endpoint": endpoint,
      "simulator.status": response.status,
      ...(noted === undefined ? {} : { "simulator.problem": noted.problem })
    })
  )
}
