/**
 * The simulator served as an in-memory `HttpClient`: the request's body is collected, the handler
 * runs in the caller's fiber, and its answer becomes a platform response (or, for a dropped
 * connection, a `Transport` error). Bodies are served as they are, text or bytes; a `HEAD` answer
 * has none; a body cut by `DropBody` is a stream that fails after its first bytes.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { concat } from "../../../internal/der.js"
import { encodeUtf8 } from "../../../internal/encoding.js"
import type { SimRequest, SimResponse } from "../../DigimeSimulator.js"

const collectBody = (
  request: HttpClientRequest.HttpClientRequest
): Effect.Effect<Uint8Array | undefined, HttpClientError.RequestError> => {
  const body = request.body
  switch (body._tag) {
    case "Empty":
      return Effect.succeed(undefined)
    case "Uint8Array":
      return Effect.succeed(body.body)
    case "Raw":
      if (typeof body.body === "string") return Effect.succeed(encodeUtf8(body.body))
      if (body.body instanceof Uint8Array) return Effect.succeed(body.body)
      return Effect.fail(
        new HttpClientError.RequestError({ request, reason: "Encode", description: "unsupported raw body" })
      )
    case "FormData":
      return Effect.fail(
        new HttpClientError.RequestError({ request, reason: "Encode", description: "digi.me takes no form data" })
      )
    case "Stream":
      return Stream.runCollect(body.stream).pipe(
        Effect.map((chunks) => concat(...Chunk.toReadonlyArray(chunks))),
        Effect.mapError((cause) => new HttpClientError.RequestError({ request, reason: "Encode", cause }))
      )
  }
}

const nullBodyStatuses: ReadonlyArray<number> = [101, 204, 205, 304]

const bodyOf = (request: HttpClientRequest.HttpClientRequest, response: SimResponse): BodyInit | null => {
  if (request.method === "HEAD" || nullBodyStatuses.includes(response.status)) return null
  const after = response.dropBodyAfter
  if (after === undefined) return typeof response.body === "string" ? response.body : new Uint8Array(response.body)
  const bytes = typeof response.body === "string" ? encodeUtf8(response.body) : new Uint8Array(response.body)
  let sent = after === 0
  // The error comes on the pull after the first bytes: erroring a stream discards what is queued.
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (!sent) {
        sent = true
        controller.enqueue(bytes.slice(0, after))
      } else {
        controller.error(new Error("the simulated connection was dropped in the middle of the body"))
      }
    }
  })
}

/** @internal */
export const make = (handle: (request: SimRequest) => Effect.Effect<SimResponse>): HttpClient.HttpClient =>
  HttpClient.make((request, url) =>
    Effect.gen(function*() {
      const body = yield* collectBody(request)
      const response = yield* handle({
        method: request.method,
        url: url.toString(),
        headers: { ...request.headers },
        body
      })
      if (response.dropConnection === true) {
        return yield* Effect.fail(
          new HttpClientError.RequestError({
            request,
            reason: "Transport",
            description: "the simulated connection was dropped before the answer arrived"
          })
        )
      }
      return yield* Effect.try({
        try: () =>
          HttpClientResponse.fromWeb(
            request,
            new Response(bodyOf(request, response), {
              status: response.status,
              headers: response.headers
            })
          ),
        catch: (cause) =>
          new HttpClientError.RequestError({
            request,
            reason: "Transport",
            cause,
            description: `the simulator's answer (status ${response.status}) is not a valid HTTP response`
          })
      })
    })
  )
