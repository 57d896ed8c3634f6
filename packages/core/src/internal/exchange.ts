/**
 * How `DigimeClient` sends a request: through one `HttpClient` configured once (base URL, JSON
 * accept unless the call asks otherwise), hardened (no platform span, no redirect); each attempt
 * signed anew (a fresh nonce and timestamp) within the request timeout; repeated on transient
 * failures only when the call is idempotent; the answer's body read within `maxResponseBytes`
 * and kept without the request's headers, or, for a streamed call's success, handed over unread.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import type { Contract } from "../Contract.js"
import type * as DigimeConfig from "../DigimeConfig.js"
import { RequestError, ResponseError, UnknownContract } from "../DigimeError.js"
import type { InvalidContractKey } from "../DigimeError.js"
import type { Request, StreamedResponse } from "../DigimeRequest.js"
import type * as Signer from "../Signer.js"
import { randomAlphanumeric } from "./encoding.js"
import * as Tracing from "./tracing.js"
import {
  buffered,
  fromHttpClientError,
  harden,
  isTransientRequestError,
  readCapped,
  retryAfterFailure,
  retrySchedule,
  timedOut,
  timeout,
  transientStatuses,
  transportOf
} from "./transport.js"

// On the idempotent path only: a transient status becomes a failure to repeat, and the last
// answer is handed to the processor when the attempts run out.
class TransientStatus extends Data.TaggedError("TransientStatus")<{ readonly answer: Answer }> {}

/**
 * What an exchange ends with: an answer read whole, or (streamed calls only) a success whose
 * body is still to come.
 *
 * @internal
 */
export type Answer =
  | { readonly _tag: "Buffered"; readonly response: HttpClientResponse.HttpClientResponse }
  | { readonly _tag: "Streamed"; readonly response: StreamedResponse }

/** @internal */
export const make = (
  config: DigimeConfig.Service,
  signer: Signer.Service,
  client: HttpClient.HttpClient
): (
  request: Request,
  streamed: boolean
) => Effect.Effect<Answer, RequestError | ResponseError | InvalidContractKey | UnknownContract> => {
  const httpClient = harden(client)
  const serverAddress = new URL(config.baseUrl).host
  // A client that keeps each request's deadline itself (the Node adapter's): an attempt needs no
  // timer fiber of its own.
  const transport = transportOf(client)
  const deadline = transport === undefined ? undefined : { transport, duration: config.requestTimeout }
  const deadlineMillis = Duration.toMillis(config.requestTimeout)

  // The request as sent: under the base URL, JSON accepted unless the call asks otherwise, with
  // its client assertion.
  const prepare = (request: HttpClientRequest.HttpClientRequest, assertion: Redacted.Redacted<string>) => {
    const under = HttpClientRequest.prependUrl(request, config.baseUrl)
    const prepared = HttpClientRequest.bearerToken(
      under.headers["accept"] === undefined ? HttpClientRequest.acceptJson(under) : under,
      assertion
    )
    transport?.setDeadline(prepared, deadlineMillis)
    return prepared
  }

  // The answer's body read (within `maxResponseBytes`) and held, without the request's headers.
  const readBody = (request: Request, response: HttpClientResponse.HttpClientResponse) =>
    buffered(response, config.maxResponseBytes, transport !== undefined).pipe(
      Effect.catchTags({
        BodyTooLarge: ({ limit }) =>
          Effect.fail(
            new ResponseError({
              operation: request.operation,
              status: response.status,
              description: `the answer is longer than ${limit} bytes`
            })
          ),
        BodyUnreadable: ({ cause, description }) =>
          Effect.fail(
            deadline !== undefined && deadline.transport.isDeadline(cause)
              ? timedOut(request.operation, deadline.duration)
              : new RequestError({
                operation: request.operation,
                reason: "Transport",
                description: `the answer could not be read (${description})`
              })
          )
      })
    )

  // A success answer whose body is handed over unread: parts of it must keep arriving within
  // the request timeout (kept by the transport when it keeps deadlines), and a cut is a
  // `RequestError`.
  const streamedOf = (request: Request, response: HttpClientResponse.HttpClientResponse): StreamedResponse => {
    const idle = () =>
      new RequestError({
        operation: request.operation,
        reason: "Timeout",
        description: `no part of the answer's body within ${Duration.format(config.requestTimeout)}`
      })
    deadline?.transport.streaming(response)
    const body = response.stream.pipe(
      Stream.catchAll((error) =>
        error.reason === "EmptyBody"
          ? Stream.empty
          : Stream.fail(
            deadline !== undefined && deadline.transport.isDeadline(error.cause) ? idle() : new RequestError({
              operation: request.operation,
              reason: "Transport",
              description: "the answer's body was cut before its end"
            })
          )
      )
    )
    const headers = response.headers
    const whole = (limit: number): Effect.Effect<Option.Option<Uint8Array>, RequestError> => {
      const declared = Number(headers["content-length"] ?? Number.NaN)
      const coding = headers["content-encoding"]
      if (
        !Number.isSafeInteger(declared) || declared < 0 || declared > limit ||
        (coding !== undefined && coding !== "identity")
      ) return Effect.succeedNone
      return readCapped(response, limit, { headers, inOneGo: true }).pipe(
        Effect.mapError((error) =>
          error._tag === "BodyUnreadable" && deadline !== undefined && deadline.transport.isDeadline(error.cause)
            ? idle()
            : new RequestError({
              operation: request.operation,
              reason: "Transport",
              description: "the answer's body was cut before its end"
            })
        ),
        Effect.map(Option.some)
      )
    }
    return {
      status: response.status,
      headers,
      body: deadline === undefined ? Stream.timeoutFail(body, idle, config.requestTimeout) : body,
      // Only a client that reports what it received on the wire (a `Transport`): HTTP's framing
      // then stops the read at the announced length.
      ...(deadline === undefined ? {} : { whole })
    }
  }

  // The exchange in a span of ours: the platform's would hold the request's headers, and so the
  // client assertion with every secret it carries.
  const send = (request: Request, assertion: Redacted.Redacted<string>, streamed: boolean) =>
    Tracing.useSpan("DigimeClient.send", () => ({
      kind: "client",
      attributes: {
        "digime.operation": request.operation,
        "digime.contract_id": request.contractId,
        "http.request.method": request.request.method,
        "server.address": serverAddress
      }
    }), (span) =>
      httpClient.execute(prepare(request.request, assertion)).pipe(
        Effect.mapError((error) => fromHttpClientError(request.operation, error, deadline)),
        Effect.flatMap((response): Effect.Effect<Answer, RequestError | ResponseError> => {
          span?.attribute("http.response.status_code", response.status)
          return streamed && response.status >= 200 && response.status < 300
            ? Effect.succeed({ _tag: "Streamed", response: streamedOf(request, response) })
            : Effect.map(readBody(request, response), (body) => ({ _tag: "Buffered", response: body }))
        })
      ))

  // One signed attempt, within the time limit (up to the answer's headers when streamed): a new
  // nonce and timestamp each time. The limit is the transport's deadline when it keeps one.
  const withinLimit = <A, E, R>(operation: string, effect: Effect.Effect<A, E, R>) =>
    deadline === undefined ? timeout(operation, config.requestTimeout)(effect) : effect
  const attempt = (request: Request, contract: Contract, streamed: boolean) =>
    withinLimit(
      request.operation,
      Effect.clockWith((clock) =>
        signer.sign(contract, {
          client_id: `${config.applicationId}_${contract.contractId}`,
          nonce: randomAlphanumeric(32),
          // Whole milliseconds: a TestClock moved by a jittered sleep can stand between two.
          timestamp: Math.floor(clock.unsafeCurrentTimeMillis()),
          ...request.claims
        })
      ).pipe(Effect.flatMap((assertion) => send(request, assertion, streamed)))
    )

  // The request with its signed headers (signed once: they carry no nonce of their own).
  const signHeaders = (request: Request, contract: Contract) =>
    request.signedHeaders === undefined
      ? Effect.succeed(request)
      : Effect.map(
        Effect.reduce(
          Object.entries(request.signedHeaders),
          request.request,
          (built, [name, payload]) =>
            Effect.map(signer.sign(contract, payload), (jwt) =>
              HttpClientRequest.setHeader(built, name, Redacted.value(jwt)))
        ),
        (built): Request => ({ ...request, request: built })
      )

  // A transient status is a failure to repeat (`TransientStatus`), and the last answer is kept
  // when the attempts run out. The schedule is set up only after a first transient failure.
  const repeated = (once: Effect.Effect<Answer, RequestError | ResponseError | InvalidContractKey>) =>
    retryAfterFailure(
      Effect.filterOrFail(
        once,
        (answer) => !transientStatuses.has(answer.response.status),
        (answer) => new TransientStatus({ answer })
      ),
      {
        schedule: retrySchedule,
        while: (error) => error._tag === "TransientStatus" || isTransientRequestError(error)
      }
    ).pipe(Effect.catchTag("TransientStatus", (error) => Effect.succeed(error.answer)))

  // Every attempt of a call: repeated on transient failures when the call is idempotent.
  const exchange = (request: Request, streamed: boolean) => {
    const contract = config.contracts.get(request.contractId)
    if (contract === undefined) return Effect.fail(new UnknownContract({ contractId: request.contractId }))
    const run = (signed: Request) => {
      const once = attempt(signed, contract, streamed)
      return signed.idempotent ? repeated(once) : once
    }
    // Most requests have no signed headers: no step for them.
    return request.signedHeaders === undefined ? run(request) : Effect.flatMap(signHeaders(request, contract), run)
  }

  return exchange
}
