/**
 * The HTTP client of `NodeDigime.layerPlatform` (undici's `request`, without the platform client's
 * span and per-request abort machinery), over real HTTP on loopback: what a request sends, what an
 * answer gives, a stream both ways, an interrupted request aborted, a refused connection and a
 * body that is cut, each a typed error holding what the library needs of it.
 */
import { NodeDigime } from "@digime-effect/node"
import { HttpClient, HttpClientRequest, type HttpClientResponse } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Option, type Scope, Stream } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"

interface Seen {
  readonly method: string
  readonly url: string
  readonly headers: Http.IncomingHttpHeaders
  readonly body: string
}

/** A loopback server answering with `answer`; what it received, and how many answers were cut. */
const serve = (answer: (request: Http.IncomingMessage, response: Http.ServerResponse, body: string) => void) =>
  Effect.acquireRelease(
    Effect.async<
      {
        readonly origin: string
        readonly seen: Array<Seen>
        readonly aborted: () => number
        readonly server: Http.Server
      }
    >((resume) => {
      const seen: Array<Seen> = []
      let aborted = 0
      const server = Http.createServer((request, response) => {
        const chunks: Array<Buffer> = []
        request.on("data", (chunk: Buffer) => chunks.push(chunk))
        request.on("end", () => {
          const body = Buffer.concat(chunks).toString("utf8")
          seen.push({ method: request.method!, url: request.url!, headers: request.headers, body })
          answer(request, response, body)
        })
        response.on("close", () => {
          if (!response.writableFinished) aborted++
        })
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({
          origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
          seen,
          aborted: () => aborted,
          server
        })))
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )

// Each test on a layer of its own: its undici agent is destroyed when the test ends.
const test = <A, E>(name: string, body: () => Effect.Effect<A, E, HttpClient.HttpClient | Scope.Scope>) =>
  it.scopedLive(name, () => Effect.provide(body(), NodeDigime.layerPlatform))

describe("NodeDigime.layerPlatform's HTTP client", () => {
  test("sends the method, path, query and headers, and gives the status, headers and JSON body", () =>
    Effect.gen(function*() {
      const server = yield* serve((_request, response) => {
        response.writeHead(201, { "content-type": "application/json", "x-answer": "yes" })
        response.end(JSON.stringify({ ok: true }))
      })
      const http = yield* HttpClient.HttpClient
      const response = yield* http.execute(
        HttpClientRequest.get(`${server.origin}/v1.7/things`).pipe(
          HttpClientRequest.setUrlParam("a", "1 2"),
          HttpClientRequest.setHeader("x-asked", "please")
        )
      )
      assert.strictEqual(response.status, 201)
      assert.strictEqual(response.headers["x-answer"], "yes")
      assert.deepStrictEqual(yield* response.json, { ok: true })
      // Read again: the same outcome, not a spent body.
      assert.deepStrictEqual(yield* response.json, { ok: true })
      assert.strictEqual(server.seen[0]!.method, "GET")
      assert.strictEqual(server.seen[0]!.url, "/v1.7/things?a=1+2")
      assert.strictEqual(server.seen[0]!.headers["x-asked"], "please")
    }))

  test("does not follow a redirect: the 302 is the answer", () =>
    Effect.gen(function*() {
      const server = yield* serve((_request, response) => {
        response.writeHead(302, { location: "/elsewhere" })
        response.end()
      })
      const http = yield* HttpClient.HttpClient
      const response = yield* http.execute(HttpClientRequest.get(`${server.origin}/start`))
      assert.strictEqual(response.status, 302)
      assert.strictEqual(response.headers["location"], "/elsewhere")
      assert.deepStrictEqual(server.seen.map((seen) => seen.url), ["/start"])
    }))

  test("sends a streamed body whole, and streams an answer's body", () =>
    Effect.gen(function*() {
      const server = yield* serve((_request, response, body) => {
        response.writeHead(200, { "content-type": "application/octet-stream" })
        response.write(body.toUpperCase())
        response.end("!")
      })
      const http = yield* HttpClient.HttpClient
      const response = yield* http.execute(
        HttpClientRequest.post(`${server.origin}/push`).pipe(
          HttpClientRequest.bodyStream(Stream.make("abc", "def").pipe(Stream.encodeText))
        )
      )
      const chunks = yield* Stream.runCollect(Stream.decodeText(response.stream))
      assert.strictEqual(Chunk.join(chunks, ""), "ABCDEF!")
      assert.strictEqual(server.seen[0]!.body, "abcdef")
    }))

  test("an interrupted request is aborted: the server sees its connection closed", () =>
    Effect.gen(function*() {
      const server = yield* serve(() => {
        // never answers
      })
      const http = yield* HttpClient.HttpClient
      const fiber = yield* Effect.fork(http.execute(HttpClientRequest.get(`${server.origin}/slow`)))
      while (server.seen.length === 0) yield* Effect.sleep("5 millis")
      yield* Fiber.interrupt(fiber)
      while (server.aborted() === 0) yield* Effect.sleep("5 millis")
      assert.strictEqual(server.aborted(), 1)
    }))

  test("a refused connection is a RequestError (Transport) holding undici's error and its code", () =>
    Effect.gen(function*() {
      // A port nobody listens on: a server's, once closed.
      const closed = yield* Effect.async<string>((resume) => {
        const other = Http.createServer()
        other.listen(0, "127.0.0.1", () => {
          const { port } = other.address() as AddressInfo
          other.close(() => resume(Effect.succeed(`http://127.0.0.1:${port}`)))
        })
      })
      const http = yield* HttpClient.HttpClient
      const error = yield* Effect.flip(http.execute(HttpClientRequest.get(`${closed}/x`)))
      assert.strictEqual(error._tag, "RequestError")
      assert.strictEqual(error.reason, "Transport")
      assert.strictEqual((error.cause as { readonly code?: string }).code, "ECONNREFUSED")
    }))

  test("a body cut before its end is a ResponseError (Decode)", () =>
    Effect.gen(function*() {
      const server = yield* serve((_request, response) => {
        response.writeHead(200, { "content-type": "application/json", "content-length": "100" })
        response.write("{\"partial\":")
        setTimeout(() => response.destroy(), 10)
      })
      const http = yield* HttpClient.HttpClient
      const response = yield* http.execute(HttpClientRequest.get(`${server.origin}/cut`))
      const error = yield* Effect.flip(response.text)
      assert.strictEqual(error._tag, "ResponseError")
      assert.strictEqual(error.reason, "Decode")
      assert.isTrue(Option.isNone(response.remoteAddress))
    }))

  // What core's exchanges use of this client: a deadline per request, kept by the client.
  interface Transport {
    readonly setDeadline: (request: HttpClientRequest.HttpClientRequest, millis: number) => void
    readonly isDeadline: (cause: unknown) => boolean
    readonly streaming: (response: HttpClientResponse.HttpClientResponse) => void
  }
  const transportOf = (client: HttpClient.HttpClient) =>
    (client as unknown as Record<symbol, Transport>)[Symbol.for("@digime-effect/core/HttpClient/transport")]!

  test("a deadline: no answer in time is a RequestError whose cause is the deadline, and the request is aborted", () =>
    Effect.gen(function*() {
      const server = yield* serve(() => {
        // never answers
      })
      const http = yield* HttpClient.HttpClient
      const transport = transportOf(http)
      const request = HttpClientRequest.get(`${server.origin}/slow`)
      transport.setDeadline(request, 100)
      const error = yield* Effect.flip(http.execute(request))
      assert.strictEqual(error._tag, "RequestError")
      assert.isTrue(transport.isDeadline(error.cause))
      while (server.aborted() === 0) yield* Effect.sleep("5 millis")
      // Another cause is not a deadline.
      assert.isFalse(transport.isDeadline(new Error("no answer within 100 ms")))
    }))

  test("a deadline covers reading the body whole; a body handed over as a stream must only keep arriving within it", () =>
    Effect.gen(function*() {
      const server = yield* serve((request, response) => {
        response.writeHead(200, { "content-type": "application/octet-stream" })
        if (request.url === "/trickle") {
          // Five parts, 40 ms apart: 200 ms in all, no gap over 100 ms.
          let sent = 0
          const timer = setInterval(() => {
            sent++
            if (sent < 5) response.write(`${sent} `)
            else {
              clearInterval(timer)
              response.end("5")
            }
          }, 40)
        } else {
          response.write("first ")
          const timer = setTimeout(() => response.end("last"), 2_000)
          response.on("close", () => clearTimeout(timer))
        }
      })
      const http = yield* HttpClient.HttpClient
      const transport = transportOf(http)
      const get = (path: string) => {
        const request = HttpClientRequest.get(`${server.origin}${path}`)
        transport.setDeadline(request, 100)
        return http.execute(request)
      }
      // Read whole: the body's end comes 2 s after its start, past the deadline.
      const whole = yield* Effect.flip(Effect.flatMap(get("/stall"), (response) => response.arrayBuffer))
      assert.strictEqual(whole._tag, "ResponseError")
      assert.isTrue(transport.isDeadline(whole.cause))
      // Streamed: 200 ms in all, each part within 100 ms of the one before: read whole.
      const trickle = yield* get("/trickle")
      transport.streaming(trickle)
      const text = Chunk.join(yield* Stream.runCollect(Stream.decodeText(trickle.stream)), "")
      assert.strictEqual(text, "1 2 3 4 5")
      // Streamed, with a 2 s gap: the idle limit ends it (undici checks it on a timer of about
      // half a second, so it is not exact to the millisecond).
      const stalled = yield* get("/stall")
      transport.streaming(stalled)
      const cut = yield* Effect.flip(Stream.runDrain(stalled.stream))
      assert.strictEqual(cut._tag, "ResponseError")
      assert.isTrue(transport.isDeadline(cut.cause))
    }))

  test("a body without an announced length, read as a stream, stays under the deadline until handed over", () =>
    Effect.gen(function*() {
      const server = yield* serve((_request, response) => {
        // Chunked, a part every 20 ms, never ending: no idle limit would ever stop it.
        response.writeHead(200, { "content-type": "application/json" })
        const timer = setInterval(() => response.write(" "), 20)
        response.on("close", () => clearInterval(timer))
      })
      const http = yield* HttpClient.HttpClient
      const transport = transportOf(http)
      const request = HttpClientRequest.get(`${server.origin}/endless`)
      transport.setDeadline(request, 150)
      const response = yield* http.execute(request)
      const error = yield* Effect.flip(Stream.runDrain(response.stream))
      assert.strictEqual(error._tag, "ResponseError")
      assert.isTrue(transport.isDeadline(error.cause))
    }))

  test("a deadline beyond what a Node timer can hold is no deadline (not one that fires at once)", () =>
    Effect.gen(function*() {
      const server = yield* serve((_request, response) => {
        setTimeout(() => {
          response.writeHead(200, { "content-type": "application/json" })
          response.end("[]")
        }, 50)
      })
      const http = yield* HttpClient.HttpClient
      const request = HttpClientRequest.get(`${server.origin}/slowish`)
      transportOf(http).setDeadline(request, 30 * 24 * 3_600_000)
      const response = yield* http.execute(request)
      assert.deepStrictEqual(yield* response.json, [])
    }))
})
