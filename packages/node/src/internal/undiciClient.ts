/**
 * An `HttpClient` on undici's `Dispatcher.request` for digi.me's requests, without what the
 * platform's undici client adds to every request and this library never uses: its span (the
 * library makes its own, without headers), an `AbortController` per request and a finalizer per
 * response that aborts it once garbage-collected, and headers converted on every read. Measured on
 * one data call against the simulator over loopback: about 0.3 to 0.45 ms less per request (see
 * BENCHMARKS.md, section 3).
 *
 * What it keeps: an interrupted request is aborted, a body is read at most once, a response whose
 * body is never read releases its connection when it is garbage-collected, transport failures are
 * `RequestError`s (`Transport`) holding undici's error (and so its `code`), and redirects are not
 * followed (undici's `request` never does). What it adds: the deadline core gives a request (its
 * `requestTimeout`) kept by one timer, from sending until the answer's body is read whole (or
 * handed over as a stream, whose parts must then keep arriving within the same time: undici's
 * `bodyTimeout`), where a platform client needs a timer fiber per request and one per body part;
 * and a connection opened ahead of the first request (`preconnectOf`, for the warm-up of
 * `NodeDigime.layer`; the connector is `aheadConnector.ts`), which the first request to that origin
 * takes over.
 */
import * as NodeStream from "@effect/platform-node/NodeStream"
import * as Undici from "@effect/platform-node/Undici"
import * as Cookies from "@effect/platform/Cookies"
import * as Headers from "@effect/platform/Headers"
import type * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import * as UrlParams from "@effect/platform/UrlParams"
import * as Effect from "effect/Effect"
import * as Inspectable from "effect/Inspectable"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { EventEmitter } from "node:events"
import { makeConnector } from "./aheadConnector.js"

type Body = Undici.Dispatcher.ResponseData["body"]

// A body nobody read is destroyed when its response is collected: its connection goes back to the
// pool (or is closed) instead of staying busy.
const unread = new FinalizationRegistry<Body>((body) => {
  if (!body.destroyed) body.destroy()
})

/** The cause of an error of a request whose deadline passed (waiting for the answer, or reading it). */
class DeadlineExceeded extends Error {
  constructor(readonly millis: number) {
    super(`no answer within ${millis} ms`)
    this.name = "DeadlineExceeded"
  }
}

// A request's deadline while it runs: its timer, and whether it went off.
interface Deadline {
  readonly millis: number
  timer: ReturnType<typeof setTimeout> | undefined
  passed: boolean
}

const clear = (deadline: Deadline) => {
  if (deadline.timer !== undefined) clearTimeout(deadline.timer)
  deadline.timer = undefined
}

class UndiciResponse extends Inspectable.Class implements HttpClientResponse.HttpClientResponse {
  readonly [HttpIncomingMessage.TypeId]: HttpIncomingMessage.TypeId = HttpIncomingMessage.TypeId
  readonly [HttpClientResponse.TypeId]: HttpClientResponse.TypeId = HttpClientResponse.TypeId
  readonly remoteAddress: Option.Option<string> = Option.none()
  readonly status: number
  private convertedHeaders: Headers.Headers | undefined
  // Made on the first read: most answers are read once, in one way.
  private reads: Map<string, Promise<unknown>> | undefined = undefined

  constructor(
    readonly request: HttpClientRequest.HttpClientRequest,
    private readonly source: Undici.Dispatcher.ResponseData,
    private readonly deadline: Deadline
  ) {
    super()
    this.status = source.statusCode
    // An error of a body nobody reads must not crash the process.
    source.body.on("error", ignore)
    unread.register(this, source.body, this)
  }

  get headers(): Headers.Headers {
    return this.convertedHeaders ??= Headers.fromInput(
      this.source.headers as Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
    )
  }

  get cookies(): Cookies.Cookies {
    const header = this.source.headers["set-cookie"]
    return header === undefined ? Cookies.empty : Cookies.fromSetCookie(Array.isArray(header) ? header : [header])
  }

  private decodeError(cause: unknown): HttpClientError.ResponseError {
    return new HttpClientError.ResponseError({ request: this.request, response: this, reason: "Decode", cause })
  }

  // The whole body, read once per kind: a second read of the same kind shares the first one's
  // outcome, a read of another kind fails as the body is spent. An interrupted read destroys the
  // body. The deadline goes on until the read ends.
  private whole<A>(kind: "arrayBuffer" | "text" | "formData", read: (body: Body) => Promise<A>) {
    return Effect.async<A, HttpClientError.ResponseError>((resume) => {
      const reads = this.reads ??= new Map()
      let reading = reads.get(kind) as Promise<A> | undefined
      if (reading === undefined) {
        unread.unregister(this)
        reading = read(this.source.body)
        reads.set(kind, reading)
      }
      reading.then(
        (value) => {
          clear(this.deadline)
          resume(Effect.succeed(value))
        },
        (cause) => {
          clear(this.deadline)
          resume(
            Effect.fail(this.decodeError(this.deadline.passed ? new DeadlineExceeded(this.deadline.millis) : cause))
          )
        }
      )
      return Effect.sync(() => this.source.body.destroy())
    })
  }

  get arrayBuffer(): Effect.Effect<ArrayBuffer, HttpClientError.ResponseError> {
    return this.whole("arrayBuffer", (body) => body.arrayBuffer())
  }

  get text(): Effect.Effect<string, HttpClientError.ResponseError> {
    return this.whole("text", (body) => body.text())
  }

  get json(): Effect.Effect<unknown, HttpClientError.ResponseError> {
    return Effect.flatMap(this.text, (text) =>
      Effect.try({
        try: () => text === "" ? null : JSON.parse(text) as unknown,
        catch: (cause) => this.decodeError(cause)
      }))
  }

  get urlParamsBody(): Effect.Effect<UrlParams.UrlParams, HttpClientError.ResponseError> {
    return Effect.flatMap(this.text, (text) =>
      Effect.try({
        try: () => UrlParams.fromInput(new URLSearchParams(text)),
        catch: (cause) => this.decodeError(cause)
      }))
  }

  get formData(): Effect.Effect<FormData, HttpClientError.ResponseError> {
    return this.whole("formData", (body) => body.formData() as Promise<FormData>)
  }

  // Read as a stream, the body stays under its deadline (a buffered read goes through here when
  // its length is not announced) until core's exchange hands the stream over (`Transport.streaming`).
  // A stream never run leaves the body to the finalizer, which destroys it once the response is
  // collected.
  get stream(): Stream.Stream<Uint8Array, HttpClientError.ResponseError> {
    return Stream.suspend(() => {
      unread.unregister(this)
      return NodeStream.fromReadable<HttpClientError.ResponseError, Uint8Array>(
        () => this.source.body,
        (cause) => this.decodeError(this.deadline.passed ? new DeadlineExceeded(this.deadline.millis) : cause)
      ).pipe(Stream.ensuring(Effect.sync(() => clear(this.deadline))))
    })
  }

  /** The body is handed over as a stream: the deadline ends, undici's idle limit goes on. */
  streaming(): void {
    clear(this.deadline)
  }

  toJSON(): unknown {
    return {
      _id: "@effect/platform/HttpClientResponse",
      request: this.request.toJSON(),
      status: this.status,
      headers: Inspectable.redact(this.headers)
    }
  }
}

const ignore = () => {}

const bodyOf = (
  body: HttpBody.HttpBody
): Effect.Effect<Undici.Dispatcher.DispatchOptions["body"]> => {
  switch (body._tag) {
    case "Empty":
      return Effect.succeed(null)
    case "Uint8Array":
      return Effect.succeed(body.body)
    case "Raw":
      return Effect.succeed(body.body as Uint8Array | string)
    case "FormData":
      return Effect.succeed(body.formData as Undici.FormData)
    case "Stream":
      return NodeStream.toReadable(body.stream)
  }
}

// The deadlines core's exchanges give their requests (`Transport.setDeadline`), in milliseconds.
const deadlines = new WeakMap<HttpClientRequest.HttpClientRequest, number>()

const maxTimerMillis = 2 ** 31 - 1

/**
 * A request's abort signal as undici takes it (an `EventEmitter` with `aborted` and `reason`):
 * an `AbortController` and its `AbortSignal`, an event target, cost about 10 µs per request to make
 * and listen to, and nothing of theirs is needed; an emitter costs about 0.2 µs.
 */
class Abort extends EventEmitter {
  aborted = false
  reason: unknown = undefined

  abort(reason?: unknown): void {
    if (this.aborted) return
    this.aborted = true
    this.reason = reason
    this.emit("abort")
  }
}

const send = (
  dispatcher: Undici.Dispatcher,
  request: HttpClientRequest.HttpClientRequest
): Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.RequestError> => {
  const url = UrlParams.makeUrl(request.url, request.urlParams, request.hash)
  if (url._tag === "Left") {
    return Effect.fail(new HttpClientError.RequestError({ request, reason: "InvalidUrl", cause: url.left }))
  }
  const { hash: _, origin, pathname, search } = url.right
  const millis = deadlines.get(request)
  // Node's timers take at most 2^31 - 1 ms (a longer one fires at once): beyond, no deadline, as
  // Effect's clock never fires such a timer either.
  const timed = millis !== undefined && millis <= maxTimerMillis
  return Effect.flatMap(
    bodyOf(request.body),
    (body) =>
      Effect.async<HttpClientResponse.HttpClientResponse, HttpClientError.RequestError>((resume) => {
        const controller = new Abort()
        const deadline: Deadline = { millis: millis ?? 0, timer: undefined, passed: false }
        if (timed) {
          deadline.timer = setTimeout(() => {
            deadline.passed = true
            controller.abort(new DeadlineExceeded(millis))
          }, millis)
          deadline.timer.unref()
        }
        dispatcher.request({
          method: request.method,
          origin,
          path: pathname + search,
          headers: request.headers,
          body: body ?? null,
          signal: controller,
          // The deadline's timer waits for the answer; once its body streams, undici's own idle
          // limit (which does not count while the reader holds back) keeps the same time.
          headersTimeout: 0,
          bodyTimeout: timed ? millis : 0
        }).then(
          (response) => resume(Effect.succeed(new UndiciResponse(request, response, deadline))),
          (cause) => {
            clear(deadline)
            resume(Effect.fail(
              new HttpClientError.RequestError({
                request,
                reason: "Transport",
                cause: deadline.passed ? new DeadlineExceeded(millis!) : cause
              })
            ))
          }
        )
        // Interrupted: the request is aborted, its deadline dropped.
        return Effect.sync(() => {
          clear(deadline)
          controller.abort()
        })
      })
  )
}

// What core's exchanges use of this client (core's `Transport`, under a `Symbol.for` key): it
// makes no span and follows no redirect, so it needs no hardening on every request, and it keeps
// each request's deadline with a timer, so an exchange needs no timer fiber.
const transport = {
  setDeadline: (request: HttpClientRequest.HttpClientRequest, millis: number) => void deadlines.set(request, millis),
  streaming: (response: HttpClientResponse.HttpClientResponse) => {
    if (response instanceof UndiciResponse) response.streaming()
  },
  isDeadline: (cause: unknown) =>
    cause instanceof DeadlineExceeded ||
    (typeof cause === "object" && cause !== null &&
      (cause as { readonly code?: unknown }).code === "UND_ERR_BODY_TIMEOUT")
}

/** @internal */
export const make = (dispatcher: Undici.Dispatcher): HttpClient.HttpClient =>
  Object.assign(
    HttpClient.makeWith(
      (request: Effect.Effect<HttpClientRequest.HttpClientRequest>) =>
        Effect.flatMap(request, (request) => send(dispatcher, request)),
      Effect.succeed
    ),
    { [Symbol.for("@digime-effect/core/HttpClient/transport")]: transport }
  )

// The clients of `scoped`, and how each opens a connection ahead.
const preconnects = new WeakMap<HttpClient.HttpClient, (url: URL) => Promise<void>>()

/**
 * How `client` opens a connection to an origin ahead of its first request there (resolved once it
 * is open, rejected with the connector's error), when it is a client of `scoped`.
 *
 * @internal
 */
export const preconnectOf = (client: HttpClient.HttpClient): ((url: URL) => Promise<void>) | undefined =>
  preconnects.get(client)

/** A client on an undici `Agent` of its own, destroyed when the scope closes. */
/** @internal */
export const scoped: Effect.Effect<HttpClient.HttpClient, never, Scope.Scope> = Effect.map(
  Effect.acquireRelease(
    Effect.sync(() => {
      const connector = makeConnector()
      return { connector, agent: new Undici.Agent({ connect: connector.connector }) }
    }),
    ({ agent, connector }) =>
      Effect.promise(() => {
        connector.close()
        return agent.destroy()
      })
  ),
  ({ agent, connector }) => {
    const client = make(agent)
    preconnects.set(client, connector.preconnect)
    return client
  }
)
