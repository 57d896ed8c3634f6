/**
 * The request handler: routes a request to its endpoint (and its path parameters), applies the
 * faults, runs the checks and the endpoint's handler, signs the token answers, records the request
 * (and logs it, with the `log` option) and waits the latency. `HEAD` answers keep their status and
 * headers and lose their body. What it counted and recorded is read back by `stats` and `requests`.
 *
 * With the `autoConsent` option, a `GET` of a consent page is answered here too (endpoint
 * `consent`): `302` to the callback, as Allow on the page would. It is recorded and logged, and
 * neither counted in `stats` nor subject to faults.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type { Endpoint, RecordedRequest, SimRequest, SimResponse, Stats } from "../../DigimeSimulator.js"
import { noBody, redactClaims, verifyAssertion } from "./checks.js"
import { answerConsent, isConsentPage } from "./consent.js"
import { failEveryRefusal, statusRefusal, takeGrantDrop, takeRequestFault, takeTamper } from "./faults.js"
import { processRequest, type RouteParams } from "./handlers.js"
import { type Json, jsonResponse, type Refusal, refuse } from "./responses.js"
import { signToken } from "./signing.js"
import type { State } from "./state.js"

interface Route {
  readonly endpoint: Endpoint
  readonly method: "GET" | "HEAD" | "POST" | "DELETE"
  /** Matches the path relative to the base URL (still percent-encoded); its groups are the parameters. */
  readonly pattern: RegExp
}

const fileUrl = /^permission-access\/query\/([^/]+)\/([^/]+)$/

/** Where each endpoint lives, relative to the base URL. */
const routes: ReadonlyArray<Route> = [
  { endpoint: "authorize", method: "POST", pattern: /^oauth\/authorize$/ },
  { endpoint: "token", method: "POST", pattern: /^oauth\/token$/ },
  { endpoint: "reference", method: "POST", pattern: /^oauth\/token\/reference$/ },
  { endpoint: "trigger", method: "POST", pattern: /^permission-access\/trigger$/ },
  { endpoint: "accounts", method: "GET", pattern: /^permission-access\/accounts$/ },
  { endpoint: "deleteUser", method: "DELETE", pattern: /^user$/ },
  { endpoint: "jwks", method: "GET", pattern: /^jwks\/oauth$/ },
  { endpoint: "fileList", method: "GET", pattern: /^permission-access\/query\/([^/]+)$/ },
  { endpoint: "file", method: "GET", pattern: fileUrl },
  { endpoint: "fileMetadata", method: "HEAD", pattern: fileUrl },
  { endpoint: "push", method: "POST", pattern: /^permission-access\/import$/ },
  { endpoint: "pushProvider", method: "POST", pattern: /^permission-access\/import\/h:accountId\/([^/]+)\/([^/]+)$/ },
  { endpoint: "accountReference", method: "POST", pattern: /^reference$/ },
  { endpoint: "revokeAccount", method: "GET", pattern: /^permission-access\/revoke\/h:accountId$/ },
  { endpoint: "deleteAccount", method: "DELETE", pattern: /^permission-access\/service\/h:accountId$/ },
  { endpoint: "discovery", method: "POST", pattern: /^discovery\/(sources|countries|platforms|categories)$/ },
  { endpoint: "sampleDatasets", method: "GET", pattern: /^permission-access\/sample\/datasets\/([^/]+)$/ },
  { endpoint: "contract", method: "GET", pattern: /^permission-access\/contract$/ },
  { endpoint: "report", method: "GET", pattern: /^export\/([^/]+)\/report$/ }
]

const decodeSegment = (segment: string): string => {
  try {
    return decodeURIComponent(segment)
  } catch {
    return segment
  }
}

type Routed =
  | {
    readonly endpoint: Endpoint
    readonly path: string
    readonly refusal: Refusal | undefined
    readonly params: RouteParams
  }
  | { readonly endpoint: "consent"; readonly path: string; readonly refusal: Refusal | undefined; readonly url: URL }
  | { readonly endpoint: "unknown"; readonly path: string; readonly refusal: Refusal }

const route = (state: State, request: SimRequest): Routed => {
  const { baseOrigin, baseUrl } = state.config
  let url: URL
  try {
    url = new URL(request.url)
  } catch {
    return { endpoint: "unknown", path: request.url, refusal: refuse(404, "NotFound", "Not found", "not a URL") }
  }
  if (state.config.autoConsent && isConsentPage(state, url)) {
    return {
      endpoint: "consent",
      path: url.pathname,
      url,
      refusal: request.method.toUpperCase() === "GET"
        ? undefined
        : refuse(405, "MethodNotAllowed", `Method ${request.method} is not allowed`, "expected GET")
    }
  }
  const address = `${url.origin}${url.pathname}`
  const relative = url.origin === baseOrigin && address.startsWith(baseUrl) ? address.slice(baseUrl.length) : undefined
  const matching = relative === undefined
    ? []
    : routes.flatMap((candidate) => {
      const match = candidate.pattern.exec(relative)
      return match === null ? [] : [{ route: candidate, segments: match.slice(1).map(decodeSegment) }]
    })
  if (matching.length === 0) {
    return {
      endpoint: "unknown",
      path: url.pathname,
      refusal: refuse(404, "NotFound", `No resource at ${url.pathname}`, "unknown path")
    }
  }
  const method = request.method.toUpperCase()
  const found = matching.find((candidate) => candidate.route.method === method)
  const chosen = found ?? matching[0]!
  const refusal = found !== undefined
    ? undefined
    : refuse(
      405,
      "MethodNotAllowed",
      `Method ${request.method} is not allowed`,
      `expected ${matching.map((candidate) => candidate.route.method).join(" or ")}`
    )
  return {
    endpoint: chosen.route.endpoint,
    path: url.pathname,
    refusal,
    params: { segments: chosen.segments, query: url.searchParams }
  }
}

interface Answer {
  readonly response: SimResponse
  readonly claims: Json | undefined
  readonly problem: string | undefined
  readonly delay: Duration.Duration | undefined
}

const refused = (refusal: Refusal): Answer => ({
  response: refusal.response,
  claims: undefined,
  problem: refusal.problem,
  delay: undefined
})

/** The answer of an API call with a verified assertion: processed, and signed when it carries a token. */
const respond = (
  state: State,
  request: SimRequest,
  endpoint: Exclude<Endpoint, "jwks">,
  params: RouteParams,
  now: number,
  seen: { claims: Json | undefined }
): Effect.Effect<SimResponse, Refusal> =>
  Effect.gen(function*() {
    const { claims, clientId } = yield* verifyAssertion(state, request, now, seen)
    const outcome = yield* processRequest(state, endpoint, request, params, claims, clientId, now)
    if (outcome._tag === "Response") return outcome.response
    const token = yield* signToken(state, outcome.payload, outcome.mainFields, takeTamper(state), now)
    return jsonResponse(outcome.status, outcome.session ? { token, session: outcome.session } : { token })
  })

const answer = (
  state: State,
  request: SimRequest,
  endpoint: Endpoint,
  params: RouteParams,
  now: number
): Effect.Effect<Answer> =>
  Effect.gen(function*() {
    const fault = takeRequestFault(state, endpoint)
    if (fault?._tag === "Status") return refused(statusRefusal(fault))
    const delay = fault?._tag === "Delay" ? Duration.decode(fault.delay) : undefined
    const drop = fault?._tag === "DropResponse"
    const done = (response: SimResponse, claims: Json | undefined, problem: string | undefined): Answer => ({
      response: drop ? { ...response, dropConnection: true } : response,
      claims,
      problem,
      delay
    })

    if (endpoint === "jwks") {
      const body = noBody(request)
      return Either.isLeft(body)
        ? done(body.left.response, undefined, body.left.problem)
        : done(jsonResponse(200, { keys: [{ kid: state.signing.kid, pem: state.signing.pem }] }), undefined, undefined)
    }

    const seen: { claims: Json | undefined } = { claims: undefined }
    const outcome = yield* Effect.either(respond(state, request, endpoint, params, now, seen))
    if (outcome._tag === "Left") return done(outcome.left.response, seen.claims, outcome.left.problem)
    const answered = done(outcome.right, seen.claims, undefined)
    // A DropResponse fault with a grant waits for a successful answer of that grant.
    return endpoint === "token" && takeGrantDrop(state, seen.claims?.grant_type)
      ? { ...answered, response: { ...answered.response, dropConnection: true } }
      : answered
  })

/** A consent page opened with `autoConsent`: the redirect Allow makes, or why the URL cannot be used. */
const consentAnswer = (state: State, url: URL, now: number): Answer => {
  const callback = answerConsent(state, url.href, { allow: true }, now)
  return Either.isRight(callback)
    ? {
      response: { status: 302, headers: { location: callback.right, "cache-control": "no-store" }, body: "" },
      claims: undefined,
      problem: undefined,
      delay: undefined
    }
    : refused(refuse(
      400,
      "InvalidConsentRequest",
      `This consent link cannot be used: ${callback.left}`,
      `consent: ${callback.left}`
    ))
}

/**
 * The log line of a request: method, path (a session key cut to its first characters; never the
 * query, whose values may be codes), status, and for a refusal digi.me's error code and the cause.
 * `problem` never quotes a secret (see `responses.ts`).
 */
const logRequest = (recorded: RecordedRequest, response: SimResponse): Effect.Effect<void> => {
  const path = recorded.path.replace(/[?#].*$/s, "").replace(
    /(\/permission-access\/query\/)([^/]{6})[^/]+/,
    (_match, prefix: string, start: string) => `${prefix}${start}…`
  )
  const code = response.headers["x-error-code"]
  const cause = recorded.problem === undefined ? "" : `${code === undefined ? "" : ` ${code}`}: ${recorded.problem}`
  const cut = response.dropConnection === true
    ? " (connection cut before the answer)"
    : response.dropBodyAfter !== undefined
    ? ` (connection cut after ${response.dropBodyAfter} bytes of the body)`
    : ""
  return Effect.logInfo(`${recorded.method} ${path} ${recorded.status}${cause}${cut}`).pipe(
    Effect.annotateLogs({
      "simulator.endpoint": recorded.endpoint,
      "simulator.status": recorded.status,
      ...(recorded.problem === undefined ? {} : { "simulator.problem": recorded.problem })
    })
  )
}

/**
 * Answers one request; never fails. Reads the `Clock` for `now`, and sleeps on it for the latency
 * and `Delay` faults.
 *
 * @internal
 */
export const handle = (state: State, request: SimRequest): Effect.Effect<SimResponse> =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const routed = route(state, request)
    let result: Answer
    if (routed.endpoint === "unknown") {
      result = refused(routed.refusal)
    } else if (routed.endpoint === "consent") {
      result = routed.refusal !== undefined ? refused(routed.refusal) : consentAnswer(state, routed.url, now)
    } else {
      state.requestCounts[routed.endpoint]++
      state.apiRequests++
      const refusal = failEveryRefusal(state) ?? routed.refusal
      result = refusal !== undefined
        ? refused(refusal)
        : yield* answer(state, request, routed.endpoint, routed.params, now)
    }
    const recorded: RecordedRequest = {
      endpoint: routed.endpoint,
      method: request.method.toUpperCase(),
      path: routed.path,
      claims: result.claims === undefined ? undefined : redactClaims(result.claims),
      status: result.response.status,
      ...(result.problem === undefined ? {} : { problem: result.problem })
    }
    state.recorded.push(recorded)
    if (state.config.log) yield* logRequest(recorded, result.response)
    if (state.config.latency !== undefined) yield* Effect.sleep(state.config.latency)
    if (result.delay !== undefined) yield* Effect.sleep(result.delay)
    if (request.method.toUpperCase() === "HEAD") {
      const { dropBodyAfter: _dropBodyAfter, ...headers } = result.response
      return { ...headers, body: "" }
    }
    return result.response
  })

/**
 * `Service.stats`: the counters, as they are when it runs.
 *
 * @internal
 */
export const stats = (state: State): Effect.Effect<Stats> =>
  Effect.sync((): Stats => ({ requests: { ...state.requestCounts }, ...state.counters }))

/**
 * `Service.requests`: the requests recorded so far, oldest first.
 *
 * @internal
 */
export const requests = (state: State): Effect.Effect<ReadonlyArray<RecordedRequest>> =>
  Effect.sync(() => state.recorded.slice())
