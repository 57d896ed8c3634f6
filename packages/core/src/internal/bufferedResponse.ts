/**
 * An answer whose body has been read whole and is held as bytes: what the response processors
 * read. Reading it again costs nothing (no promise, no web stream), it holds no connection, and
 * its request is the method and URL only, so that the client assertion (in the request's
 * `authorization` header) never goes on to processors, spans or errors with it.
 */
import * as Cookies from "@effect/platform/Cookies"
import type * as Headers from "@effect/platform/Headers"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import * as UrlParams from "@effect/platform/UrlParams"
import * as Effect from "effect/Effect"
import * as Inspectable from "effect/Inspectable"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"

// As a web `Response` decodes text: malformed sequences become U+FFFD, a BOM is dropped.
const decoder = new TextDecoder()

class BufferedResponse extends Inspectable.Class implements HttpClientResponse.HttpClientResponse {
  readonly [HttpIncomingMessage.TypeId]: HttpIncomingMessage.TypeId = HttpIncomingMessage.TypeId
  readonly [HttpClientResponse.TypeId]: HttpClientResponse.TypeId = HttpClientResponse.TypeId
  readonly remoteAddress: Option.Option<string> = Option.none()
  private decoded: string | undefined
  private requestMade: HttpClientRequest.HttpClientRequest | undefined

  constructor(
    private readonly method: HttpClientRequest.HttpClientRequest["method"],
    private readonly url: string,
    private readonly urlParams: UrlParams.UrlParams,
    readonly status: number,
    readonly headers: Headers.Headers,
    private readonly body: Uint8Array<ArrayBuffer>
  ) {
    super()
  }

  // Made when asked for (an error, a log): most answers are read and dropped without it.
  get request(): HttpClientRequest.HttpClientRequest {
    return this.requestMade ??= HttpClientRequest.make(this.method)(this.url, {
      urlParams: this.urlParams,
      acceptJson: true
    })
  }

  private decodeError(cause: unknown) {
    return new HttpClientError.ResponseError({ request: this.request, response: this, reason: "Decode", cause })
  }

  private textSync(): string {
    return this.decoded ??= decoder.decode(this.body)
  }

  get cookies(): Cookies.Cookies {
    const header = this.headers["set-cookie"]
    return header === undefined ? Cookies.empty : Cookies.fromSetCookie(header.split(/,(?=\s*[^;,=\s]+=)/))
  }

  get stream(): Stream.Stream<Uint8Array, HttpClientError.ResponseError> {
    return this.body.length === 0 ? Stream.empty : Stream.succeed(this.body)
  }

  get text(): Effect.Effect<string, HttpClientError.ResponseError> {
    return Effect.sync(() => this.textSync())
  }

  get json(): Effect.Effect<unknown, HttpClientError.ResponseError> {
    return Effect.try({
      try: () => {
        const text = this.textSync()
        return text === "" ? null : JSON.parse(text) as unknown
      },
      catch: (cause) => this.decodeError(cause)
    })
  }

  get urlParamsBody(): Effect.Effect<UrlParams.UrlParams, HttpClientError.ResponseError> {
    return Effect.try({
      try: () => UrlParams.fromInput(new URLSearchParams(this.textSync())),
      catch: (cause) => this.decodeError(cause)
    })
  }

  get arrayBuffer(): Effect.Effect<ArrayBuffer, HttpClientError.ResponseError> {
    return Effect.sync(() => this.body.slice().buffer)
  }

  get formData(): Effect.Effect<FormData, HttpClientError.ResponseError> {
    return Effect.tryPromise({
      try: () => new Response(this.body, { headers: Object.entries(this.headers) }).formData(),
      catch: (cause) => this.decodeError(cause)
    })
  }

  // Never the body: a token answer holds secrets.
  toJSON(): unknown {
    return {
      _id: "@effect/platform/HttpClientResponse",
      request: this.request.toJSON(),
      status: this.status,
      headers: Inspectable.redact(this.headers)
    }
  }
}

/**
 * `response`'s status and headers with `body`, and a request that is `response`'s method and URL
 * (with its URL parameters) only.
 *
 * @internal
 */
export const make = (
  response: HttpClientResponse.HttpClientResponse,
  headers: Headers.Headers,
  body: Uint8Array<ArrayBuffer>
): HttpClientResponse.HttpClientResponse =>
  new BufferedResponse(
    response.request.method,
    response.request.url,
    response.request.urlParams,
    response.status,
    headers,
    body
  )
