import { DigimeClient, TokenManager } from "@digime-effect/core"
import { DigimeSimulator, DigimeTest } from "@digime-effect/core/testing"
import { HttpClient, HttpClientError, HttpClientResponse } from "@effect/platform"
import type { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Encoding, Fiber, Layer, Redacted, TestClock } from "effect"
import {
  applicationId,
  callbackUrl,
  contractId,
  joinAdvancing,
  key,
  recordingTracer,
  stack,
  testContract
} from "./fixtures.js"

interface Recorded {
  readonly method: string
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly claims: Record<string, unknown>
  readonly body: unknown
}

type Reply =
  | { readonly status: number; readonly body?: unknown; readonly text?: string }
  | "transport"
  | "hang"

const decodeClaims = (authorization: string | undefined): Record<string, unknown> => {
  const jwt = authorization?.replace(/^Bearer /, "") ?? ""
  const payload = jwt.split(".")[1] ?? ""
  return JSON.parse(Either.getOrThrow(Encoding.decodeBase64UrlString(payload)))
}

const decodeBody = (request: HttpClientRequest.HttpClientRequest): unknown =>
  request.body._tag === "Uint8Array" ? JSON.parse(new TextDecoder().decode(request.body.body)) : undefined

/** A client whose HTTP answers come from `replies`, one per request, recording every request. */
const mocked = (replies: Array<Reply>) => {
  const recorded: Array<Recorded> = []
  const http = HttpClient.make((request) =>
    Effect.suspend(() => {
      recorded.push({
        method: request.method,
        url: request.url,
        headers: request.headers,
        claims: decodeClaims(request.headers.authorization),
        body: decodeBody(request)
      })
      const reply = replies.shift() ?? { status: 599 }
      if (reply === "transport") {
        return Effect.fail(
          new HttpClientError.RequestError({ request, reason: "Transport", cause: new Error("ECONNRESET") })
        )
      }
      if (reply === "hang") return Effect.never
      const text = reply.text ?? (reply.body === undefined ? "" : JSON.stringify(reply.body))
      return Effect.succeed(HttpClientResponse.fromWeb(
        request,
        new Response(text === "" ? null : text, {
          status: reply.status,
          headers: { "content-type": "application/json" }
        })
      ))
    })
  )
  const layer = DigimeTest.layerWithHttpClient(http, { applicationId }).pipe(Layer.orDie)
  return { recorded, layer }
}

const credentials = { contractId, accessToken: Redacted.make("access-token-value") }
const errorBody = (code: string, message: string) => ({ error: { code, message, reference: "ref-1" } })

describe("DigimeClient: requests", () => {
  it.effect("a data call sends exactly client_id, nonce, timestamp and access_token, and no body", () => {
    const { layer, recorded } = mocked([{ status: 202, body: [] }])
    return Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      yield* TestClock.setTime(1_700_000_000_123)
      const accounts = yield* client.readAccounts(credentials)
      assert.deepStrictEqual(accounts, [])
      assert.strictEqual(recorded.length, 1)
      const [request] = recorded
      assert.strictEqual(request!.method, "GET")
      assert.strictEqual(request!.url, "https://api.digi.me/v1.7/permission-access/accounts")
      assert.isUndefined(request!.body)
      assert.deepStrictEqual(Object.keys(request!.claims).sort(), ["access_token", "client_id", "nonce", "timestamp"])
      assert.strictEqual(request!.claims.client_id, `${applicationId}_${contractId}`)
      assert.strictEqual(request!.claims.access_token, "access-token-value")
      assert.strictEqual(request!.claims.timestamp, 1_700_000_000_123)
      assert.match(String(request!.claims.nonce), /^[A-Za-z0-9]{32}$/)
    }).pipe(Effect.provide(layer))
  })

  it.effect("readSession sends the pull options at the top level next to agent", () => {
    const { layer, recorded } = mocked([{ status: 202, body: { session: { expiry: 1, key: "s" } } }])
    return Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const session = yield* client.readSession({ ...credentials, scope: { timeRanges: [] }, sourceFetch: true })
      assert.strictEqual(session.key, "s")
      assert.strictEqual(recorded[0]!.method, "POST")
      assert.isTrue(recorded[0]!.url.endsWith("/permission-access/trigger"))
      assert.deepStrictEqual(recorded[0]!.body, {
        scope: { timeRanges: [] },
        sourceFetch: true,
        agent: { sdk: { name: "nodejs", version: "16.1.5" } }
      })
    }).pipe(Effect.provide(layer))
  })

  it.effect("a manual refresh sends grant_type and refresh_token, JSON content type, no body", () => {
    const { layer, recorded } = mocked([{ status: 500, body: errorBody("InternalError", "x") }])
    return Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      yield* Effect.flip(client.refreshToken({ contractId, refreshToken: Redacted.make("refresh-value") }))
      const [request] = recorded
      assert.strictEqual(request!.method, "POST")
      assert.isTrue(request!.url.endsWith("/oauth/token"))
      assert.strictEqual(request!.headers["content-type"], "application/json")
      assert.isUndefined(request!.body)
      assert.deepStrictEqual(Object.keys(request!.claims).sort(), [
        "client_id",
        "grant_type",
        "nonce",
        "refresh_token",
        "timestamp"
      ])
      assert.strictEqual(request!.claims.grant_type, "refresh_token")
      assert.strictEqual(request!.claims.refresh_token, "refresh-value")
    }).pipe(Effect.provide(layer))
  })

  it.effect("the onboarding URL carries the optional parameters in digi.me's order", () =>
    Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const start = yield* client.getAuthorizeUrl({
        contractId,
        callbackUrl,
        sourceType: "push",
        serviceId: 16,
        sampleDataSetId: "set-1",
        sampleDataAutoOnboard: true,
        locale: "fr",
        includeSampleDataOnlySources: false,
        storageRef: "st-1",
        triggerQuery: true,
        sourcesScope: { a: 1 }
      })
      const url = new URL(start.url)
      assert.strictEqual(`${url.origin}${url.pathname}`, `${simulator.onboardUrl}authorize`)
      assert.deepStrictEqual([...url.searchParams.keys()], [
        "code",
        "sourceType",
        "service",
        "sampleDataSet",
        "sampleDataAutoOnboard",
        "lng",
        "includeSampleDataOnlySources",
        "storageRef",
        "triggerQuery",
        "sourcesScope"
      ])
      assert.strictEqual(url.searchParams.get("sourceType"), "push")
      // Percent-encoded twice on the wire, as digi.me reads it.
      assert.include(start.url, "sourcesScope=%257B%2522a%2522%253A1%257D")
      assert.match(Redacted.value(start.codeVerifier), /^[A-Za-z0-9_-]{43}$/)
      assert.isAtLeast(start.state.length, 22)
      const requests = yield* simulator.requests
      const authorize = requests.find((request) => request.endpoint === "authorize")!
      assert.deepStrictEqual(Object.keys(authorize.claims ?? {}).sort(), [
        "client_id",
        "code_challenge",
        "code_challenge_method",
        "nonce",
        "redirect_uri",
        "response_mode",
        "response_type",
        "state",
        "timestamp"
      ])
    }).pipe(Effect.provide(stack())))

  it.effect("every attempt is signed anew: retried requests carry new nonces", () => {
    const { layer, recorded } = mocked([{ status: 503 }, { status: 502, text: "<html>" }, { status: 202, body: [] }])
    return Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const fiber = yield* Effect.fork(client.readAccounts(credentials))
      assert.deepStrictEqual(yield* joinAdvancing(fiber, "10 seconds"), [])
      assert.strictEqual(recorded.length, 3)
      assert.strictEqual(new Set(recorded.map((request) => request.claims.nonce)).size, 3)
    }).pipe(Effect.provide(layer))
  })
})

describe("DigimeClient: errors", () => {
  it.effect("401 InvalidToken on a data call is AccessTokenRejected, keeping code, status and reference", () => {
    const { layer } = mocked([{ status: 401, body: errorBody("InvalidToken", "The token (access_token) is invalid") }])
    return Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const error = yield* Effect.flip(client.readAccounts(credentials))
      assert.strictEqual(error._tag, "AccessTokenRejected")
      if (error._tag !== "AccessTokenRejected") return
      assert.strictEqual(error.status, 401)
      assert.strictEqual(error.code, "InvalidToken")
      assert.strictEqual(error.reference, "ref-1")
      assert.strictEqual(error.contractId, contractId)
    }).pipe(Effect.provide(layer))
  })

  it.effect("other error bodies are ApiError with code, message, reference and status", () => {
    const { layer } = mocked([
      { status: 403, body: errorBody("InsufficientScope", "The request requires higher privileges") },
      { status: 400, body: { error: "SDKInvalid", message: "The SDK is invalid" } }
    ])
    return Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const first = yield* Effect.flip(client.readSession(credentials))
      assert.strictEqual(first._tag, "ApiError")
      if (first._tag !== "ApiError") return
      assert.strictEqual(first.status, 403)
      assert.strictEqual(first.code, "InsufficientScope")
      assert.strictEqual(first.description, "The request requires higher privileges")
      assert.strictEqual(first.reference, "ref-1")
      assert.strictEqual(first.operation, "readSession")
      const second = yield* Effect.flip(client.readSession(credentials))
      assert.strictEqual(second._tag === "ApiError" && second.code, "SDKInvalid")
    }).pipe(Effect.provide(layer))
  })

  it.effect("a storage-style error body without a message is still a typed error", () => {
    const { layer } = mocked([
      { status: 401, body: { error: "InvalidToken" } },
      { status: 400, body: { error: "SDKVersionInvalid" } }
    ])
    return Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const rejected = yield* Effect.flip(client.readSession(credentials))
      assert.strictEqual(rejected._tag, "AccessTokenRejected")
      const other = yield* Effect.flip(client.readSession(credentials))
      assert.strictEqual(other._tag, "ApiError")
      assert.strictEqual(other._tag === "ApiError" && other.code, "SDKVersionInvalid")
      assert.strictEqual(other._tag === "ApiError" && other.description, "")
    }).pipe(Effect.provide(layer))
  })

  it.effect("a 401 without a digi.me body is an ApiError (Unknown), not a rejection of the token", () => {
    const { layer } = mocked([{ status: 401, text: "" }])
    return Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const error = yield* Effect.flip(client.readSession(credentials))
      assert.strictEqual(error._tag, "ApiError")
      assert.strictEqual(error._tag === "ApiError" && error.code, "Unknown")
    }).pipe(Effect.provide(layer))
  })

  it.effect("the raw refresh and reauthorize calls report digi.me's refusal as ApiError", () => {
    const refused = { status: 401, body: errorBody("InvalidToken", "The token (refresh_token) is invalid") }
    const { layer, recorded } = mocked([refused, refused])
    return Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const refresh = yield* Effect.flip(client.refreshToken({ contractId, refreshToken: Redacted.make("r") }))
      assert.strictEqual(refresh._tag === "ApiError" && refresh.code, "InvalidToken")
      const reauth = yield* Effect.flip(
        client.getReauthorizeUrl({ contractId, callbackUrl, accessToken: Redacted.make("a") })
      )
      assert.strictEqual(reauth._tag === "ApiError" && reauth.status, 401)
      assert.strictEqual(recorded.length, 2)
      // An empty refresh token is refused before any request.
      const empty = yield* Effect.flip(client.refreshToken({ contractId, refreshToken: Redacted.make("") }))
      assert.strictEqual(empty._tag, "InvalidOptions")
      assert.strictEqual(recorded.length, 2)
    }).pipe(Effect.provide(layer))
  })

  it.effect("options that cannot be encoded as JSON are InvalidOptions, before any request", () => {
    const { layer, recorded } = mocked([])
    return Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const cyclic: Record<string, unknown> = {}
      cyclic.self = cyclic
      const errors = yield* Effect.all([
        Effect.flip(client.readSession({ ...credentials, limits: { n: 1n } })),
        Effect.flip(client.getAuthorizeUrl({ contractId, callbackUrl, sourcesScope: cyclic })),
        Effect.flip(client.getAuthorizeUrl({ contractId, callbackUrl, sessionOptions: { scope: cyclic } }))
      ])
      for (const error of errors) assert.strictEqual(error._tag, "InvalidOptions")
      assert.strictEqual(recorded.length, 0)
    }).pipe(Effect.provide(layer))
  })

  it.effect("an answer longer than maxResponseBytes is ResponseError: announced, or streamed and read no further", () => {
    let pulled = 0
    const endless = (headers: Record<string, string>) =>
      new Response(
        new ReadableStream<Uint8Array>({
          pull: (controller) => {
            pulled++
            controller.enqueue(new Uint8Array(1024).fill(32))
          }
        }),
        { status: 200, headers }
      )
    const replies: Array<() => Response> = [
      () => new Response("{}", { status: 200, headers: { "content-length": String(4096 + 1) } }),
      () => endless({}),
      // A length that understates the body (a client that undid a content coding and hid it, as a
      // browser's fetch does across origins): counted as it streams all the same.
      () => endless({ "content-length": "2" })
    ]
    const http = HttpClient.make((request) =>
      Effect.sync(() => HttpClientResponse.fromWeb(request, replies.shift()?.() ?? new Response(null, { status: 599 })))
    )
    const layer = DigimeTest.layerWithHttpClient(http, { applicationId, config: { maxResponseBytes: 4096 } }).pipe(
      Layer.orDie
    )
    return Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      for (let i = 0; i < 3; i++) {
        const error = yield* Effect.flip(client.deleteUser(credentials))
        assert.strictEqual(error._tag, "ResponseError")
        assert.include(error._tag === "ResponseError" ? error.description : "", "longer than 4096 bytes")
      }
      assert.isAtMost(pulled, 2 * (4096 / 1024 + 2))
    }).pipe(Effect.provide(layer))
  })

  it.effect("every request is sent without the platform's HTTP span, in a span of ours without headers", () => {
    const { layer } = mocked([{ status: 200, body: [] }])
    const names: Array<string> = []
    const attributes: Array<string> = []
    const tracer = recordingTracer(names, attributes)
    return Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      yield* client.readAccounts(credentials)
      assert.include(names, "DigimeClient.send")
      assert.isFalse(names.some((name) => name.startsWith("http.client")))
      assert.isFalse(attributes.some((name) => name.startsWith("http.request.header")))
      assert.includeMembers(attributes, ["digime.operation", "http.request.method", "http.response.status_code"])
    }).pipe(Effect.provide(layer), Effect.withTracer(tracer))
  })

  it.effect("a POST is not repeated on a transient failure", () => {
    const { layer, recorded } = mocked([{ status: 503 }])
    return Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const error = yield* Effect.flip(client.readSession(credentials))
      assert.strictEqual(error._tag === "ApiError" && error.status, 503)
      assert.strictEqual(error._tag === "ApiError" && error.code, "Unknown")
      assert.strictEqual(recorded.length, 1)
    }).pipe(Effect.provide(layer))
  })

  it.effect("a transport failure is RequestError (Transport); GETs are retried twice", () => {
    const { layer, recorded } = mocked(["transport", "transport", "transport"])
    return Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const fiber = yield* Effect.fork(Effect.flip(client.readAccounts(credentials)))
      const error = yield* joinAdvancing(fiber, "10 seconds")
      assert.strictEqual(error._tag, "RequestError")
      assert.strictEqual(error._tag === "RequestError" && error.reason, "Transport")
      assert.strictEqual(recorded.length, 3)
    }).pipe(Effect.provide(layer))
  })

  it.effect("no answer within the request timeout is RequestError (Timeout)", () => {
    const { layer } = mocked(["hang"])
    return Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const fiber = yield* Effect.fork(Effect.flip(client.readSession(credentials)))
      yield* TestClock.adjust("30 seconds")
      const error = yield* Fiber.join(fiber)
      assert.strictEqual(error._tag === "RequestError" && error.reason, "Timeout")
    }).pipe(Effect.provide(layer))
  })

  it.effect("a success body that does not match the protocol is ResponseError naming the field, not its value", () => {
    const { layer } = mocked([{ status: 202, body: { session: { expiry: "soon", key: "secret-session-key" } } }])
    return Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const error = yield* Effect.flip(client.readSession(credentials))
      assert.strictEqual(error._tag, "ResponseError")
      assert.strictEqual(error._tag === "ResponseError" && error.status, 202)
      assert.include(error.message, "session.expiry")
      assert.notInclude(error.message, "soon")
      assert.notInclude(error.message, "secret-session-key")
    }).pipe(Effect.provide(layer))
  })

  it.effect("invalid options fail with InvalidOptions before any request", () => {
    const { layer, recorded } = mocked([])
    return Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const failures = yield* Effect.all([
        Effect.flip(client.getAuthorizeUrl({ contractId: "", callbackUrl })),
        Effect.flip(client.getAuthorizeUrl({ contractId, callbackUrl: "not-a-url" })),
        Effect.flip(client.getAuthorizeUrl({ contractId, callbackUrl: "javascript:alert(1)" })),
        Effect.flip(client.getAuthorizeUrl({ contractId, callbackUrl, state: " " })),
        Effect.flip(client.exchangeCodeForToken({ contractId, code: "", codeVerifier: Redacted.make("v") })),
        Effect.flip(client.exchangeCodeForToken({ contractId, code: "c", codeVerifier: Redacted.make("") })),
        Effect.flip(client.getReauthorizeUrl({ contractId, callbackUrl, accessToken: Redacted.make("") })),
        Effect.flip(client.readAccounts({ contractId, accessToken: Redacted.make("") }))
      ])
      for (const failure of failures) assert.strictEqual(failure._tag, "InvalidOptions")
      assert.deepStrictEqual(
        failures.map((failure) => failure._tag === "InvalidOptions" && failure.field),
        ["contractId", "callbackUrl", "callbackUrl", "state", "code", "codeVerifier", "accessToken", "accessToken"]
      )
      assert.strictEqual(recorded.length, 0)
    }).pipe(Effect.provide(layer))
  })

  it.effect("an unknown contract fails with UnknownContract before any request", () => {
    const { layer, recorded } = mocked([])
    return Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const error = yield* Effect.flip(client.readAccounts({ contractId: "other", accessToken: Redacted.make("a") }))
      assert.strictEqual(error._tag, "UnknownContract")
      const missing = yield* Effect.flip(
        Effect.flatMap(TokenManager.TokenManager, (manager) => manager.getReauthorizeUrl({ key, callbackUrl }))
      )
      assert.strictEqual(missing._tag, "ReauthRequired")
      assert.strictEqual(recorded.length, 0)
    }).pipe(Effect.provide(layer))
  })
})

describe("DigimeClient: layer construction", () => {
  it.effect("an unusable contract key fails the layer with InvalidContractKey naming the contract, not the key", () =>
    Effect.gen(function*() {
      const bad = { contractId: "contract-bad", privateKey: Redacted.make("-----BEGIN PRIVATE KEY-----\nnot-a-key\n") }
      const layer = DigimeTest.layerWithHttpClient(HttpClient.make(() => Effect.die("no request expected")), {
        applicationId,
        contracts: [testContract.contract, bad]
      })
      const error = yield* Effect.flip(Effect.scoped(Layer.build(layer)))
      assert.strictEqual(error._tag, "InvalidContractKey")
      assert.strictEqual(error._tag === "InvalidContractKey" && error.contractId, "contract-bad")
      assert.notInclude(error.message, "not-a-key")
    }))
})
