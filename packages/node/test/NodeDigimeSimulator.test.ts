import { AutoRefresh, DigimeClient, Signer, TokenKey, TokenManager, TokenProtocol } from "@digime-effect/core"
import { DigimeSimulator, TestContract } from "@digime-effect/core/testing"
import { NodeSigner } from "@digime-effect/node"
import { NodeDigimeSimulator, NodeDigimeTest } from "@digime-effect/node/testing"
import { assert, describe, it } from "@effect/vitest"
import {
  DateTime,
  Duration,
  Effect,
  Either,
  Encoding,
  HashMap,
  Inspectable,
  Layer,
  Logger,
  LogLevel,
  Redacted,
  Schedule,
  TestClock
} from "effect"
import { execFile, spawn } from "node:child_process"
import { constants, createDecipheriv, createPrivateKey, privateDecrypt } from "node:crypto"
import { accessSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as NodeHttp from "node:http"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { brotliCompressSync, brotliDecompressSync, gunzipSync } from "node:zlib"

const applicationId = "app-http"
const contractId = "contract-http"
const clientId = `${applicationId}_${contractId}`
const callbackUrl = "https://app.example/digime/callback"
const agent = { sdk: { name: "nodejs", version: "16.1.5" } }

const contract = await Effect.runPromise(TestContract.make(contractId))
// Same client id, another key: its signatures do not verify.
const impostor = await Effect.runPromise(TestContract.make(contractId))
const late = await Effect.runPromise(TestContract.make("contract-late"))

const serverOptions: NodeDigimeSimulator.Options = {
  applicationId,
  appName: "Acme <Budget> & \"Co\"",
  contracts: [{ contractId, publicKeyPem: contract.publicKeyPem }]
}

const ServerLayer = (options: Partial<NodeDigimeSimulator.Options> = {}) =>
  Layer.merge(NodeDigimeSimulator.layer({ ...serverOptions, ...options }), NodeSigner.layer)

/** The client library, over undici, pointed at the server. */
const ClientLayer = (options: Partial<NodeDigimeSimulator.Options> = {}) =>
  NodeDigimeTest.layer({
    applicationId,
    contracts: [contract],
    config: { requestTimeout: "5 seconds" },
    server: { appName: serverOptions.appName, ...options }
  }).pipe(Layer.orDie)

// --- helpers ---------------------------------------------------------------------------------

interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly text: string
  readonly json: any
}

/** One real HTTP request (no redirect following), bounded by a timeout. */
const http = (method: string, url: string, init: { headers?: Record<string, string>; body?: BodyInit } = {}) =>
  Effect.tryPromise(async (): Promise<Answer> => {
    const response = await fetch(url, {
      method,
      redirect: "manual",
      signal: AbortSignal.timeout(5_000),
      ...(init.headers === undefined ? {} : { headers: init.headers }),
      ...(init.body === undefined ? {} : { body: init.body })
    })
    const text = await response.text()
    let json: unknown = undefined
    try {
      json = JSON.parse(text)
    } catch {
      // not JSON
    }
    return { status: response.status, headers: response.headers, text, json }
  })

/** A control request with a JSON body, as a tool or a test would send it. */
const postJson = (url: string, body: unknown) =>
  http("POST", url, { headers: { "content-type": "application/json" }, body: JSON.stringify(body) })

/**
 * One request through node:http, which (unlike fetch) sends the `Host` header it is given, as a
 * browser does after DNS rebinding.
 */
const raw = (method: string, url: string, headers: Record<string, string>, body?: string) =>
  Effect.async<Answer, Error>((resume) => {
    const request = NodeHttp.request(url, { method, headers, timeout: 5_000 }, (response) => {
      let text = ""
      response.setEncoding("utf8")
      response.on("data", (chunk) => (text += chunk))
      response.on("end", () => {
        let json: unknown = undefined
        try {
          json = JSON.parse(text)
        } catch {
          // not JSON
        }
        const answerHeaders = new Headers()
        for (const [name, value] of Object.entries(response.headers)) {
          if (typeof value === "string") answerHeaders.set(name, value)
        }
        resume(Effect.succeed({ status: response.statusCode!, headers: answerHeaders, text, json }))
      })
    })
    request.on("error", (error) => resume(Effect.fail(error)))
    request.on("timeout", () => request.destroy(new Error("timed out")))
    request.end(body)
    return Effect.sync(() => request.destroy())
  })

const assertRefused = (answer: Answer, status: number, code: string) => {
  assert.strictEqual(answer.status, status, answer.text)
  assert.strictEqual(answer.json.error.code, code)
  assert.isString(answer.json.error.message)
}

const server = NodeDigimeSimulator.NodeDigimeSimulator

const alphanumeric = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
const makeNonce = () => Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => alphanumeric[b % 62]).join("")
const decodePayload = (jwt: string): any =>
  JSON.parse(new TextDecoder().decode(Either.getOrThrow(Encoding.decodeBase64Url(jwt.split(".")[1]!))))

/** A signed API call; `signWith` defaults to the server's contract. */
const call = (
  method: string,
  path: string,
  claims: Record<string, unknown>,
  options: { body?: unknown; signWith?: TestContract.TestContract; clientId?: string } = {}
) =>
  Effect.gen(function*() {
    const { baseUrl } = yield* server
    const signer = yield* Signer.Signer
    const jwt = yield* signer.sign((options.signWith ?? contract).contract, {
      client_id: options.clientId ?? clientId,
      nonce: makeNonce(),
      timestamp: Date.now(),
      ...claims
    })
    return yield* http(method, `${baseUrl}${path}`, {
      headers: {
        authorization: `Bearer ${Redacted.value(jwt)}`,
        ...(options.body === undefined ? {} : { "content-type": "application/json" })
      },
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) })
    })
  })

const assertError = (answer: Answer, status: number, code: string) => {
  assert.strictEqual(answer.status, status)
  assert.strictEqual(answer.json.error.code, code)
  assert.isString(answer.json.error.message)
  assert.isString(answer.json.error.reference)
  assert.strictEqual(answer.headers.get("x-error-code"), code)
}

const pkce = Effect.promise(async () => {
  const verifier = Encoding.encodeBase64Url(makeNonce())
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)))
  return { verifier, challenge: Encoding.encodeBase64Url(digest) }
})

const authorizeClaims = (challenge: string) => ({
  code_challenge: challenge,
  code_challenge_method: "S256",
  redirect_uri: callbackUrl,
  state: "state-1",
  response_mode: "query",
  response_type: "code"
})

/** POST oauth/authorize: the onboarding URL and the verifier. */
const preAuthorize = Effect.gen(function*() {
  const { onboardUrl } = yield* server
  const { challenge, verifier } = yield* pkce
  const answer = yield* call("POST", "oauth/authorize", authorizeClaims(challenge), { body: { agent } })
  assert.strictEqual(answer.status, 201)
  assert.isString(answer.json.session.key)
  const code = decodePayload(answer.json.token).preauthorization_code
  return { url: `${onboardUrl}authorize?code=${code}&sourceType=pull`, verifier }
})

/** Clicks a button of the consent page: the 303's Location. */
const choose = (onboardingUrl: string, choice: "allow" | "deny") =>
  Effect.gen(function*() {
    const { onboardUrl } = yield* server
    const answer = yield* http("POST", `${onboardUrl}consent`, {
      body: new URLSearchParams({ url: onboardingUrl, choice })
    })
    assert.strictEqual(answer.status, 303, answer.text)
    return new URL(answer.headers.get("location")!)
  })

const exchange = (code: string, verifier: string) =>
  call("POST", "oauth/token", { grant_type: "authorization_code", code, code_verifier: verifier })

// --- tests -----------------------------------------------------------------------------------

describe("NodeDigimeSimulator: the API over HTTP", () => {
  it.live("serves digi.me's paths on 127.0.0.1 with an ephemeral port, JWKS included", () =>
    Effect.gen(function*() {
      const { baseUrl, jwksUrl, onboardUrl, origin, simulator } = yield* server
      assert.match(origin, /^http:\/\/127\.0\.0\.1:\d+$/)
      assert.notStrictEqual(new URL(origin).port, "0")
      assert.strictEqual(baseUrl, `${origin}/v1.7/`)
      assert.strictEqual(onboardUrl, `${origin}/apps/saas/`)
      assert.strictEqual(jwksUrl, `${origin}/v1.7/jwks/oauth`)
      assert.strictEqual(simulator.baseUrl, baseUrl)

      const jwks = yield* http("GET", jwksUrl)
      assert.strictEqual(jwks.status, 200)
      assert.strictEqual(jwks.headers.get("content-type"), "application/json")
      assert.isString(jwks.json.keys[0].kid)
      assert.include(jwks.json.keys[0].pem, "BEGIN RSA PUBLIC KEY")

      assertError(yield* http("GET", `${baseUrl}nowhere`), 404, "NotFound")
      assertError(yield* http("GET", `${origin}/elsewhere`), 404, "NotFound")
      assertError(yield* http("GET", `${baseUrl}oauth/token`), 405, "MethodNotAllowed")
    }).pipe(Effect.provide(ServerLayer())))

  it.live("client assertions: missing or not verifying → 406 ValidationErrors; unknown client → 401", () =>
    Effect.gen(function*() {
      const { baseUrl } = yield* server
      assertError(yield* http("GET", `${baseUrl}permission-access/accounts`), 406, "ValidationErrors")
      const forged = yield* call("GET", "permission-access/accounts", { access_token: "x" }, { signWith: impostor })
      assertError(forged, 406, "ValidationErrors")
      assert.strictEqual(forged.json.error.message, "Parameter validation errors")
      const unknown = yield* call("GET", "permission-access/accounts", { access_token: "x" }, {
        clientId: `${applicationId}_nobody`
      })
      assertError(unknown, 401, "InvalidClient")
      // A verified assertion with an unknown access token: 401 InvalidToken.
      assertError(yield* call("GET", "permission-access/accounts", { access_token: "x" }), 401, "InvalidToken")
    }).pipe(Effect.provide(ServerLayer())))

  it.live("authorize → consent page → Allow → 303 → exchange; bad PKCE and a reused code → 400", () =>
    Effect.gen(function*() {
      const { url, verifier } = yield* preAuthorize
      const consentPage = yield* http("GET", url)
      assert.strictEqual(consentPage.status, 200)
      assert.include(consentPage.headers.get("content-type")!, "text/html")
      assert.include(consentPage.text, "Acme &lt;Budget&gt; &amp; &quot;Co&quot; asks to read your data")
      assert.notInclude(consentPage.text, "<Budget>")
      assert.include(consentPage.text, `id="allow"`)
      assert.include(consentPage.text, `id="deny"`)
      assert.include(consentPage.text, ">Allow</button>")
      assert.include(consentPage.text, ">Deny</button>")
      assert.notInclude(consentPage.text, "<script")

      const callback = yield* choose(url, "allow")
      assert.strictEqual(`${callback.origin}${callback.pathname}`, callbackUrl)
      assert.strictEqual(callback.searchParams.get("success"), "true")
      assert.strictEqual(callback.searchParams.get("state"), "state-1")
      assert.isString(callback.searchParams.get("accountReference"))
      const code = callback.searchParams.get("code")!

      // The onboarding code is spent: the page and the form now say so.
      const used = yield* http("GET", url)
      assert.strictEqual(used.status, 400)
      assert.include(used.text, "already used")
      const usedPost = yield* http("POST", `${(yield* server).onboardUrl}consent`, {
        body: new URLSearchParams({ url, choice: "allow" })
      })
      assert.strictEqual(usedPost.status, 400)
      assert.strictEqual((yield* http("GET", `${(yield* server).onboardUrl}authorize?code=nope`)).status, 400)

      const wrongVerifier = (yield* pkce).verifier
      assertError(yield* exchange(code, wrongVerifier), 400, "InvalidGrant")
      // The failed attempt spent the code.
      assertError(yield* exchange(code, verifier), 400, "InvalidGrant")

      const second = yield* preAuthorize
      const secondCode = (yield* choose(second.url, "allow")).searchParams.get("code")!
      const token = yield* exchange(secondCode, second.verifier)
      assert.strictEqual(token.status, 201)
      const payload = decodePayload(token.json.token)
      const lifetime = payload.access_token.expires_on - Date.now() / 1000
      assert.isTrue(lifetime > 85 && lifetime <= 90, `access token lifetime ${lifetime}`)
      assertError(yield* exchange(secondCode, second.verifier), 400, "InvalidGrant")

      const accounts = yield* call("GET", "permission-access/accounts", { access_token: payload.access_token.value })
      assert.strictEqual(accounts.status, 202)
      assert.isArray(accounts.json)
    }).pipe(Effect.provide(ServerLayer({ accessTokenLifetime: "90 seconds" }))))

  it.live("Deny → 303 to the callback with success=false and errorCode", () =>
    Effect.gen(function*() {
      const { url } = yield* preAuthorize
      const callback = yield* choose(url, "deny")
      assert.strictEqual(callback.searchParams.get("success"), "false")
      assert.strictEqual(callback.searchParams.get("errorCode"), "AccessDenied")
      assert.strictEqual(callback.searchParams.get("state"), "state-1")
      assert.isNull(callback.searchParams.get("code"))
      const { onboardUrl } = yield* server
      const malformed = yield* http("POST", `${onboardUrl}consent`, { body: new URLSearchParams({ url }) })
      assert.strictEqual(malformed.status, 400)
    }).pipe(Effect.provide(ServerLayer())))
})

describe("NodeDigimeSimulator: the client library over HTTP", () => {
  it.live("authorize → consent → exchange → withAutoRefresh(readAccounts) → refresh → reauthorize", () =>
    Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const manager = yield* TokenManager.TokenManager
      const { controlUrl } = yield* server
      const key = TokenKey.make("user-1", contractId)

      const start = yield* client.getAuthorizeUrl({ contractId, callbackUrl })
      assert.strictEqual((yield* http("GET", start.url)).status, 200)
      const callback = yield* choose(start.url, "allow")
      const result = yield* TokenProtocol.parseCallback(callback, start.state)
      yield* manager.exchangeCodeForToken({ key, code: result.code, codeVerifier: start.codeVerifier })

      const accounts = yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
      assert.strictEqual(accounts.length, 1)
      assert.strictEqual(accounts[0]!.reference, result.accountReference)
      yield* manager.refresh(key)
      yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)

      const reauth = yield* manager.getReauthorizeUrl({ key, callbackUrl })
      assert.include(reauth.url, "/apps/saas/user-reauth?code=")
      const reauthPage = yield* http("GET", reauth.url)
      assert.include(reauthPage.text, "renew")
      const reauthResult = yield* TokenProtocol.parseCallback(yield* choose(reauth.url, "allow"), reauth.state)
      yield* manager.exchangeCodeForToken({ key, code: reauthResult.code, codeVerifier: reauth.codeVerifier })
      yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)

      const stats = (yield* http("GET", `${controlUrl}stats`)).json as DigimeSimulator.Stats
      assert.strictEqual(stats.exchanges, 2)
      assert.strictEqual(stats.refreshes, 1)
      assert.strictEqual(stats.rejectedAssertions, 0)
      assert.strictEqual(stats.requests.authorize, 1)
      assert.strictEqual(stats.requests.reference, 1)
      assert.strictEqual(stats.requests.accounts, 3)
      assert.isAbove(stats.requests.jwks, 0)
    }).pipe(Effect.provide(ClientLayer())))

  it.effect("built under TestClock, the server keeps the test's time: expiry over HTTP without waiting", () =>
    Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const manager = yield* TokenManager.TokenManager
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const key = TokenKey.make("user-3", contractId)
      const start = yield* client.getAuthorizeUrl({ contractId, callbackUrl })
      const result = yield* TokenProtocol.parseCallback(yield* choose(start.url, "allow"), start.state)
      const token = yield* manager.exchangeCodeForToken({ key, code: result.code, codeVerifier: start.codeVerifier })
      assert.strictEqual(DateTime.toEpochMillis(token.accessToken.expiresAt), 3_600_000)
      yield* TestClock.adjust("2 hours")
      yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
      assert.strictEqual((yield* simulator.stats).refreshes, 1)
    }).pipe(Effect.provide(ClientLayer())))

  it.live("dropRefreshAnswers: the refresh rotates, the connection is cut, the client sees a Transport error", () =>
    Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const manager = yield* TokenManager.TokenManager
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const key = TokenKey.make("user-2", contractId)
      const start = yield* client.getAuthorizeUrl({ contractId, callbackUrl })
      const result = yield* TokenProtocol.parseCallback(yield* choose(start.url, "allow"), start.state)
      yield* manager.exchangeCodeForToken({ key, code: result.code, codeVerifier: start.codeVerifier })

      const error = yield* Effect.flip(manager.refresh(key))
      assert.strictEqual(error._tag, "RequestError")
      assert.strictEqual(error._tag === "RequestError" && error.reason, "Transport")
      assert.strictEqual((yield* simulator.stats).refreshes, 1)

      // The stored refresh token may be spent: it is never presented again (no replay).
      const next = yield* Effect.flip(manager.refresh(key))
      assert.strictEqual(next._tag === "ReauthRequired" && next.reason, "RefreshOutcomeUnknown")
      assert.strictEqual((yield* simulator.stats).replays, 0)
      assert.strictEqual((yield* simulator.stats).refreshes, 1)
      // The server still serves.
      assert.strictEqual((yield* http("GET", simulator.jwksUrl)).status, 200)
    }).pipe(Effect.provide(ClientLayer({ dropRefreshAnswers: 1 }))))

  it.live("failEvery: every Nth API request gets the 5xx; the client's retried reads get through", () =>
    Effect.gen(function*() {
      const { jwksUrl, simulator } = yield* server
      const statuses: Array<number> = []
      for (let i = 0; i < 5; i++) {
        const answer = yield* http("GET", jwksUrl)
        statuses.push(answer.status)
        if (answer.status !== 200) assertError(answer, 503, "SimulatedFault")
      }
      assert.deepStrictEqual(statuses, [200, 200, 503, 200, 200])
      // Request 6 is the next failure: the read fails once, then its retry succeeds.
      const client = yield* DigimeClient.DigimeClient
      const accounts = yield* Effect.either(client.readAccounts({ contractId, accessToken: Redacted.make("x") }))
      assert.isTrue(Either.isLeft(accounts) && accounts.left._tag === "AccessTokenRejected")
      const recorded = yield* simulator.requests
      assert.deepStrictEqual(recorded.slice(5).map((request) => request.status), [503, 401])
    }).pipe(Effect.provide(ClientLayer({ failEvery: { nth: 3, status: 503 } }))))
})

// --- autoConsent and the request log over HTTP -----------------------------------------------

/** Runs the effect (the server built inside it) with a logger that keeps the simulator's lines. */
const withRecordedLog = <A, E, R>(effect: (lines: ReadonlyArray<string>) => Effect.Effect<A, E, R>) => {
  const lines: Array<string> = []
  const recorder = Logger.make(({ annotations, message }) => {
    if (!HashMap.has(annotations, "simulator.endpoint")) return
    const parts = Array.isArray(message) ? message : [message]
    const notes: Array<string> = []
    HashMap.forEach(annotations, (value, name) => notes.push(`${name}=${Inspectable.toStringUnknown(value)}`))
    lines.push([parts.map((part) => Inspectable.toStringUnknown(part)).join(" "), ...notes.sort()].join(" | "))
  })
  return effect(lines).pipe(
    Effect.provide(Logger.replace(Logger.defaultLogger, recorder)),
    Logger.withMinimumLogLevel(LogLevel.All)
  )
}

describe("NodeDigimeSimulator: autoConsent and log over HTTP", () => {
  it.live("autoConsent: the library authorizes and reauthorizes by reading the page's 302, without a browser", () =>
    Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const manager = yield* TokenManager.TokenManager
      const key = TokenKey.make("user-auto", contractId)
      /** A client without a browser opens the page: the redirect's target, no HTML read. */
      const open = (url: string) =>
        Effect.gen(function*() {
          const answer = yield* http("GET", url)
          assert.strictEqual(answer.status, 302, answer.text)
          assert.strictEqual(answer.text, "")
          return answer.headers.get("location")!
        })

      const start = yield* client.getAuthorizeUrl({ contractId, callbackUrl })
      const callback = yield* open(start.url)
      assert.isTrue(callback.startsWith(`${callbackUrl}?`))
      const result = yield* TokenProtocol.parseCallback(callback, start.state)
      yield* manager.exchangeCodeForToken({ key, code: result.code, codeVerifier: start.codeVerifier })
      assert.lengthOf(yield* AutoRefresh.withAutoRefresh(key, client.readAccounts), 1)

      const reauth = yield* manager.getReauthorizeUrl({ key, callbackUrl })
      const reauthResult = yield* TokenProtocol.parseCallback(yield* open(reauth.url), reauth.state)
      yield* manager.exchangeCodeForToken({ key, code: reauthResult.code, codeVerifier: reauth.codeVerifier })
      yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)

      // The page cannot be opened twice; only GET opens it.
      const used = yield* http("GET", start.url)
      assert.strictEqual(used.status, 400)
      assert.strictEqual(used.json.error.code, "InvalidConsentRequest")
      assert.strictEqual((yield* http("POST", start.url)).status, 405)
      const { controlUrl } = yield* server
      const stats = (yield* http("GET", `${controlUrl}stats`)).json as DigimeSimulator.Stats
      assert.strictEqual(stats.exchanges, 2)
      const requests = (yield* http("GET", `${controlUrl}requests`)).json as ReadonlyArray<
        DigimeSimulator.RecordedRequest
      >
      assert.deepStrictEqual(
        requests.filter((request) => request.endpoint === "consent").map((request) => [request.path, request.status]),
        [["/apps/saas/authorize", 302], ["/apps/saas/user-reauth", 302], ["/apps/saas/authorize", 400], [
          "/apps/saas/authorize",
          405
        ]]
      )
    }).pipe(Effect.provide(ClientLayer({ autoConsent: true }))))

  it.live("log: one line per request, API, consent pages and control, with the cause of each refusal; no secret", () =>
    withRecordedLog((lines) =>
      Effect.gen(function*() {
        const { controlUrl } = yield* server
        const forged = yield* call("GET", "permission-access/accounts", { access_token: "x" }, { signWith: impostor })
        // digi.me's words in the answer, the cause in the log.
        assert.strictEqual(forged.json.error.message, "Parameter validation errors")
        const { url, verifier } = yield* preAuthorize
        assert.strictEqual((yield* http("GET", url)).status, 200)
        const callback = yield* choose(url, "allow")
        assert.strictEqual((yield* http("GET", url)).status, 400)
        const code = callback.searchParams.get("code")!
        const token = decodePayload((yield* exchange(code, verifier)).json.token)
        assert.strictEqual(
          (yield* postJson(`${controlUrl}contracts`, { contractId: "bad", publicKeyPem: "nope" })).status,
          400
        )
        assert.strictEqual((yield* http("GET", `${controlUrl}stats`)).status, 200)

        assert.deepStrictEqual(lines.map((line) => line.split(" | ")[0]), [
          "GET /v1.7/permission-access/accounts 406 ValidationErrors: assertion: the signature does not verify (PS512, 64-byte salt)",
          "POST /v1.7/oauth/authorize 201",
          "GET /apps/saas/authorize 200",
          "POST /apps/saas/consent 303",
          "GET /apps/saas/authorize 400: the onboarding URL's code was already used",
          "POST /v1.7/oauth/token 201",
          "POST /_simulator/contracts 400 InvalidRequest: the public key of contract bad is not an RSA public PEM",
          "GET /_simulator/stats 200"
        ])
        assert.include(lines[0]!, "simulator.endpoint=accounts")
        assert.include(lines[0]!, "simulator.problem=assertion: the signature does not verify")
        assert.include(lines[2]!, "simulator.endpoint=consentPage")
        assert.include(lines[6]!, "simulator.endpoint=control")
        const secrets = [
          code,
          verifier,
          new URL(url).searchParams.get("code")!,
          token.access_token.value,
          token.refresh_token.value
        ]
        for (const line of lines) {
          assert.notInclude(line, "eyJ")
          for (const secret of secrets) assert.notInclude(line, secret)
        }
      }).pipe(Effect.provide(ServerLayer({ log: true })))
    ))
})

describe("NodeDigimeSimulator: control endpoints", () => {
  it.live("stats, requests, contracts and faults", () =>
    Effect.gen(function*() {
      const { baseUrl, controlUrl, jwksUrl } = yield* server

      const index = yield* http("GET", controlUrl)
      assert.strictEqual(index.json.baseUrl, baseUrl)

      // A contract registered at run time.
      const { challenge } = yield* pkce
      const asLate = () =>
        call("POST", "oauth/authorize", authorizeClaims(challenge), {
          body: { agent },
          signWith: late,
          clientId: `${applicationId}_contract-late`
        })
      assertError(yield* asLate(), 401, "InvalidClient")
      const registered = yield* postJson(`${controlUrl}contracts`, {
        contractId: "contract-late",
        publicKeyPem: late.publicKeyPem
      })
      assert.strictEqual(registered.status, 201)
      assert.strictEqual((yield* asLate()).status, 201)
      const badContract = yield* postJson(`${controlUrl}contracts`, { contractId: "x", publicKeyPem: "not a key" })
      assert.strictEqual(badContract.status, 400)
      assert.strictEqual(badContract.json.error.code, "InvalidRequest")
      const truncated = yield* http("POST", `${controlUrl}contracts`, {
        headers: { "content-type": "application/json" },
        body: "{"
      })
      assert.strictEqual(truncated.status, 400)

      // Faults.
      const status = yield* postJson(`${controlUrl}faults`, {
        _tag: "Status",
        endpoint: "jwks",
        status: 502,
        code: "BadGateway"
      })
      assert.strictEqual(status.status, 204)
      assertError(yield* http("GET", jwksUrl), 502, "BadGateway")
      assert.strictEqual((yield* http("GET", jwksUrl)).status, 200)

      yield* postJson(`${controlUrl}faults`, { _tag: "Delay", endpoint: "jwks", delay: "300 millis" })
      const started = Date.now()
      assert.strictEqual((yield* http("GET", jwksUrl)).status, 200)
      assert.isAtLeast(Date.now() - started, 290)

      yield* postJson(`${controlUrl}faults`, { _tag: "DropResponse", endpoint: "jwks" })
      const dropped = yield* Effect.either(http("GET", jwksUrl))
      assert.isTrue(Either.isLeft(dropped))
      assert.strictEqual((yield* http("GET", jwksUrl)).status, 200)

      const badFaults = [
        { _tag: "Nope" },
        { _tag: "Status", endpoint: "jwks", status: 200 },
        { _tag: "Delay", endpoint: "jwks", delay: "soon" }
      ]
      for (const bad of badFaults) {
        const answer = yield* postJson(`${controlUrl}faults`, bad)
        assert.strictEqual(answer.status, 400, JSON.stringify(bad))
      }
      assert.strictEqual((yield* http("GET", `${controlUrl}nothing`)).status, 404)

      // Stats and requests; the recorded claims carry no secret.
      const stats = (yield* http("GET", `${controlUrl}stats`)).json as DigimeSimulator.Stats
      assert.strictEqual(stats.requests.authorize, 2)
      assert.strictEqual(stats.requests.jwks, 5)
      const requests = (yield* http("GET", `${controlUrl}requests`)).json as ReadonlyArray<
        DigimeSimulator.RecordedRequest
      >
      assert.deepStrictEqual(requests.map((request) => request.status), [401, 201, 502, 200, 200, 200, 200])
      assert.strictEqual(requests[1]!.path, "/v1.7/oauth/authorize")
      assert.strictEqual(requests[1]!.claims?.client_id, `${applicationId}_contract-late`)
    }).pipe(Effect.provide(ServerLayer())))

  it.live("a POST that is not application/json (a cross-site form or text/plain) → 415, nothing changed", () =>
    Effect.gen(function*() {
      const { controlUrl, jwksUrl, simulator } = yield* server
      const fault = JSON.stringify({ _tag: "Status", endpoint: "jwks", status: 502, code: "BadGateway" })
      const contract = JSON.stringify({ contractId: "contract-late", publicKeyPem: late.publicKeyPem })
      // fetch labels a string body text/plain;charset=UTF-8, as a page's no-cors fetch or a form would.
      assertRefused(yield* http("POST", `${controlUrl}faults`, { body: fault }), 415, "UnsupportedMediaType")
      for (const contentType of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x"]) {
        const answer = yield* http("POST", `${controlUrl}contracts`, {
          headers: { "content-type": contentType },
          body: contract
        })
        assertRefused(answer, 415, "UnsupportedMediaType")
      }
      assertRefused(yield* raw("POST", `${controlUrl}faults`, {}, fault), 415, "UnsupportedMediaType")

      // Nothing was injected nor registered.
      assert.strictEqual((yield* http("GET", jwksUrl)).status, 200)
      const { challenge } = yield* pkce
      const asLate = call("POST", "oauth/authorize", authorizeClaims(challenge), {
        body: { agent },
        signWith: late,
        clientId: `${applicationId}_contract-late`
      })
      assertError(yield* asLate, 401, "InvalidClient")
      assert.strictEqual((yield* simulator.stats).requests.jwks, 1)

      // JSON with a charset parameter is JSON.
      const accepted = yield* http("POST", `${controlUrl}faults`, {
        headers: { "content-type": "Application/JSON; charset=utf-8" },
        body: fault
      })
      assert.strictEqual(accepted.status, 204)
      assertError(yield* http("GET", jwksUrl), 502, "BadGateway")
    }).pipe(Effect.provide(ServerLayer())))

  it.live("an Origin other than the simulator's own → 403 OriginNotAllowed, on GETs too", () =>
    Effect.gen(function*() {
      const { controlUrl, jwksUrl, origin } = yield* server
      const port = new URL(origin).port
      const fault = { _tag: "Status", endpoint: "jwks", status: 502, code: "BadGateway" }
      const foreign = [
        "http://evil.example",
        "null",
        `https://127.0.0.1:${port}`,
        `http://127.0.0.1:${Number(port) === 65535 ? 1 : Number(port) + 1}`,
        `http://127.0.0.1:${port}/path`
      ]
      for (const from of foreign) {
        const post = yield* http("POST", `${controlUrl}faults`, {
          headers: { "content-type": "application/json", origin: from },
          body: JSON.stringify(fault)
        })
        assertRefused(post, 403, "OriginNotAllowed")
        assertRefused(yield* http("GET", `${controlUrl}stats`, { headers: { origin: from } }), 403, "OriginNotAllowed")
      }
      assert.strictEqual((yield* http("GET", jwksUrl)).status, 200)

      // Its own origin, in each loopback form of its port, is accepted.
      for (const own of [origin, `http://localhost:${port}`, `http://[::1]:${port}`]) {
        assert.strictEqual((yield* http("GET", `${controlUrl}stats`, { headers: { origin: own } })).status, 200)
      }
      const ownPost = yield* http("POST", `${controlUrl}faults`, {
        headers: { "content-type": "application/json", origin },
        body: JSON.stringify(fault)
      })
      assert.strictEqual(ownPost.status, 204)
      assertError(yield* http("GET", jwksUrl), 502, "BadGateway")
    }).pipe(Effect.provide(ServerLayer())))

  it.live("a Host that is not the simulator's (DNS rebinding) → 403 HostNotAllowed; the API answers any Host", () =>
    Effect.gen(function*() {
      const { baseUrl, controlUrl, jwksUrl, onboardUrl, origin } = yield* server
      const port = new URL(origin).port
      const json = { "content-type": "application/json" }
      const fault = JSON.stringify({ _tag: "Status", endpoint: "jwks", status: 502, code: "BadGateway" })
      const foreign = [
        `rebind.evil.example:${port}`,
        "rebind.evil.example",
        `127.0.0.1:${Number(port) === 65535 ? 1 : Number(port) + 1}`,
        "127.0.0.1",
        `127.0.0.1:${port}@rebind.evil.example`,
        `localhost.evil.example:${port}`
      ]
      for (const host of foreign) {
        for (const route of ["", "stats", "requests", "nothing"]) {
          assertRefused(yield* raw("GET", `${controlUrl}${route}`, { host }), 403, "HostNotAllowed")
        }
        assertRefused(yield* raw("POST", `${controlUrl}faults`, { host, ...json }, fault), 403, "HostNotAllowed")
      }
      assert.strictEqual((yield* http("GET", jwksUrl)).status, 200)

      // Listening on loopback: each loopback name of its port is its own host.
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LocalHost:${port}`, `[::1]:${port}`]) {
        assert.strictEqual((yield* raw("GET", `${controlUrl}stats`, { host })).status, 200, host)
      }
      assert.strictEqual(
        (yield* raw("POST", `${controlUrl}faults`, { host: `localhost:${port}`, ...json }, fault)).status,
        204
      )
      assertError(yield* http("GET", jwksUrl), 502, "BadGateway")

      // The digi.me API and the consent pages are not control endpoints: any Host, as digi.me.
      const api = yield* raw("GET", `${baseUrl}jwks/oauth`, { host: "rebind.evil.example" })
      assert.strictEqual(api.status, 200)
      assert.isString(api.json.keys[0].kid)
      const consent = yield* raw("GET", `${onboardUrl}authorize?code=nope`, { host: "rebind.evil.example" })
      assert.strictEqual(consent.status, 400)
      assert.include(consent.text, "This consent link cannot be used")
    }).pipe(Effect.provide(ServerLayer())))

  it.live("allowedHosts: another name for the control endpoints, with its exact port", () =>
    Effect.gen(function*() {
      const { controlUrl, origin } = yield* server
      assert.strictEqual((yield* raw("GET", `${controlUrl}stats`, { host: "digime-sim:8080" })).status, 200)
      assert.strictEqual((yield* raw("GET", `${controlUrl}stats`, { host: "sim.test" })).status, 200)
      const crossOrigin = yield* raw("GET", `${controlUrl}stats`, { host: "sim.test", origin: "http://sim.test" })
      assert.strictEqual(crossOrigin.status, 200)
      assertRefused(yield* raw("GET", `${controlUrl}stats`, { host: "digime-sim" }), 403, "HostNotAllowed")
      const otherPort = yield* raw("GET", `${controlUrl}stats`, { host: `sim.test:${new URL(origin).port}` })
      assertRefused(otherPort, 403, "HostNotAllowed")
    }).pipe(Effect.provide(ServerLayer({ allowedHosts: ["digime-sim:8080", "sim.test:80"] }))))

  it.live("latency delays every answer; strictRotation off accepts a rotated refresh token again", () =>
    Effect.gen(function*() {
      const { jwksUrl } = yield* server
      const started = Date.now()
      yield* http("GET", jwksUrl)
      assert.isAtLeast(Date.now() - started, 140)

      const { url, verifier } = yield* preAuthorize
      const code = (yield* choose(url, "allow")).searchParams.get("code")!
      const token = decodePayload((yield* exchange(code, verifier)).json.token)
      const refresh = () =>
        call("POST", "oauth/token", { grant_type: "refresh_token", refresh_token: token.refresh_token.value })
      assert.strictEqual((yield* refresh()).status, 201)
      assert.strictEqual((yield* refresh()).status, 201)
    }).pipe(Effect.provide(ServerLayer({ latency: Duration.millis(150), strictRotation: false }))))
})

// --- the CLI as a real process ---------------------------------------------------------------

interface Process {
  readonly output: () => string
  readonly exited: Promise<number | null>
  readonly kill: () => void
}

const packageDir = join(import.meta.dirname, "..")

/**
 * Runs the command line: `bin/simulator.ts` as `pnpm simulator` does, or another script (the built
 * `dist/bin/simulator.js`). tsx loads the TypeScript sources the repository's `exports` point at.
 */
const startCli = (args: ReadonlyArray<string>, script = "bin/simulator.ts") =>
  Effect.acquireRelease(
    Effect.sync((): Process => {
      const child = spawn(process.execPath, ["--import", "tsx", script, ...args], {
        cwd: packageDir,
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      child.stdout.on("data", (chunk) => (output += chunk))
      child.stderr.on("data", (chunk) => (output += chunk))
      const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
      return { output: () => output, exited, kill: () => child.kill("SIGTERM") }
    }),
    (cli) => Effect.sync(cli.kill)
  )

/** Polls `poll` every 50 ms until it finds something, for at most 20 seconds. */
const waitFor = <A>(what: string, poll: () => A | undefined, cli: Process) =>
  Effect.suspend(() => {
    const found = poll()
    return found === undefined ? Effect.fail("not yet") : Effect.succeed(found)
  }).pipe(
    Effect.retry(Schedule.spaced("50 millis")),
    Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error(`${what}; output:\n${cli.output()}`) })
  )

// --- data calls over HTTP --------------------------------------------------------------------

const writer = await Effect.runPromise(TestContract.make("contract-write"))

/** A signed API call with raw headers and body; `signWith` defaults to the read contract. */
const send = (
  method: string,
  path: string,
  claims: Record<string, unknown>,
  init: { headers?: Record<string, string>; body?: BodyInit; signWith?: TestContract.TestContract } = {}
) =>
  Effect.gen(function*() {
    const { baseUrl } = yield* server
    const signWith = init.signWith ?? contract
    const jwt = yield* (yield* Signer.Signer).sign(signWith.contract, {
      client_id: `${applicationId}_${signWith.contract.contractId}`,
      nonce: makeNonce(),
      timestamp: Date.now(),
      ...claims
    })
    return yield* Effect.tryPromise(() =>
      fetch(`${baseUrl}${path}`, {
        method,
        redirect: "manual",
        signal: AbortSignal.timeout(5_000),
        headers: { authorization: `Bearer ${Redacted.value(jwt)}`, ...init.headers },
        ...(init.body === undefined ? {} : { body: init.body })
      })
    )
  })

const jsonOf = (response: Response) => Effect.promise(async (): Promise<any> => JSON.parse(await response.text()))
const bytesOf = (response: Response) => Effect.promise(async () => new Uint8Array(await response.arrayBuffer()))

/** Opens an envelope with node:crypto, as digi.me's SDK does: OAEP (SHA-1) with the PKCS#1 key, then AES-256-CBC. */
const open = (envelope: Uint8Array, privateKeyPem: string) => {
  const key = createPrivateKey(privateKeyPem)
  const dataKey = privateDecrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING }, envelope.subarray(0, 256))
  const decipher = createDecipheriv("aes-256-cbc", dataKey, envelope.subarray(256, 272))
  return Buffer.concat([decipher.update(envelope.subarray(272)), decipher.final()])
}

const xMetadataOf = (response: Response): any =>
  JSON.parse(Buffer.from(response.headers.get("x-metadata")!, "base64url").toString("utf8"))

/** A user of the read contract with files added through the control API, and a completed session. */
const userWithFiles = (files: ReadonlyArray<Record<string, unknown>>) =>
  Effect.gen(function*() {
    const { controlUrl, simulator } = yield* server
    const token = yield* simulator.grant({ contractId })
    const digimeUserId = token.digimeUserId!
    const accessToken = Redacted.value(token.accessToken.value)
    const added = yield* postJson(`${controlUrl}files`, { digimeUserId, files })
    assert.strictEqual(added.status, 204, added.text)
    const trigger = yield* send("POST", "permission-access/trigger", { access_token: accessToken }, {
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ agent })
    })
    assert.strictEqual(trigger.status, 202)
    const sessionKey: string = (yield* jsonOf(trigger)).session.key
    return { accessToken, digimeUserId, sessionKey }
  })

describe("NodeDigimeSimulator: data calls over HTTP", () => {
  it.live("files: the envelope opens with node:crypto; gzip and brotli; HEAD answers headers only", () =>
    Effect.gen(function*() {
      const text = JSON.stringify({ "test-content": "api.digi.me-file1.json", padding: "p".repeat(300) })
      const { accessToken, sessionKey } = yield* userWithFiles([
        { name: "plain.json", content: text },
        { name: "gzip.json", content: text, compression: "gzip" },
        { name: "brotli.json", compressedBase64: brotliCompressSync(text).toString("base64"), compression: "brotli" },
        { name: "bytes.bin", contentBase64: Buffer.from([0, 1, 2, 255]).toString("base64") }
      ])
      const list = yield* send("GET", `permission-access/query/${sessionKey}`, { access_token: accessToken })
      assert.strictEqual(list.status, 200)
      const listed = yield* jsonOf(list)
      assert.strictEqual(listed.status.state, "completed")
      assert.deepStrictEqual(
        listed.fileList.map((file: any) => file.name),
        ["plain.json", "gzip.json", "brotli.json", "bytes.bin"]
      )
      const privateKey = Redacted.value(contract.contract.privateKey)
      const get = (name: string, method = "GET") =>
        send(method, `permission-access/query/${sessionKey}/${name}`, { access_token: accessToken }, {
          headers: { accept: "application/octet-stream" }
        })

      const plain = yield* get("plain.json")
      assert.strictEqual(plain.status, 200)
      assert.strictEqual(plain.headers.get("content-type"), "application/octet-stream")
      assert.isNotNull(plain.headers.get("last-modified"))
      assert.deepStrictEqual(xMetadataOf(plain).metadata.schema, { standard: "digime", version: "1.0.0" })
      const envelope = yield* bytesOf(plain)
      assert.strictEqual(envelope.length % 16, 0)
      assert.strictEqual(open(envelope, privateKey).toString("utf8"), text)

      const gzip = yield* get("gzip.json")
      assert.strictEqual(xMetadataOf(gzip).compression, "gzip")
      const gzipped = open(yield* bytesOf(gzip), privateKey)
      assert.strictEqual(gunzipSync(gzipped).toString("utf8"), text)

      const brotli = yield* get("brotli.json")
      assert.strictEqual(xMetadataOf(brotli).compression, "brotli")
      const compressed = open(yield* bytesOf(brotli), privateKey)
      assert.strictEqual(brotliDecompressSync(compressed).toString("utf8"), text)

      const bytes = open(yield* bytesOf(yield* get("bytes.bin")), privateKey)
      assert.deepStrictEqual([...bytes], [0, 1, 2, 255])

      const head = yield* get("plain.json", "HEAD")
      assert.strictEqual(head.status, 200)
      assert.strictEqual(head.headers.get("x-metadata"), plain.headers.get("x-metadata"))
      assert.strictEqual((yield* Effect.promise(() => head.arrayBuffer())).byteLength, 0)
      const missing = yield* get("missing.json", "HEAD")
      assert.strictEqual(missing.status, 404)
      assert.strictEqual(missing.headers.get("x-error-code"), "FileNotFound")
      const missingGet = yield* get("missing.json")
      assert.strictEqual((yield* jsonOf(missingGet)).error.code, "FileNotFound")
    }).pipe(Effect.provide(ServerLayer({ syncPolls: 0 }))))

  it.live("DropBody: the head and the first bytes arrive, then the socket is cut; the next download is whole", () =>
    Effect.gen(function*() {
      const { controlUrl } = yield* server
      const { accessToken, sessionKey } = yield* userWithFiles([{ name: "a.json", content: "a".repeat(1000) }])
      yield* send("GET", `permission-access/query/${sessionKey}`, { access_token: accessToken })
      const get = send("GET", `permission-access/query/${sessionKey}/a.json`, { access_token: accessToken })
      assert.strictEqual((yield* postJson(`${controlUrl}faults`, { _tag: "DropBody", after: 100 })).status, 204)
      const cut = yield* get
      assert.strictEqual(cut.status, 200)
      assert.strictEqual(cut.headers.get("content-length"), String(256 + 16 + 1008))
      const failed = yield* Effect.either(Effect.tryPromise(() => cut.arrayBuffer()))
      assert.isTrue(Either.isLeft(failed))

      const whole = yield* get
      const envelope = yield* bytesOf(whole)
      assert.strictEqual(
        open(envelope, Redacted.value(contract.contract.privateKey)).toString("utf8"),
        "a".repeat(1000)
      )

      yield* postJson(`${controlUrl}faults`, { _tag: "DropResponse", endpoint: "file" })
      assert.isTrue(Either.isLeft(yield* Effect.either(get)))
      yield* postJson(`${controlUrl}faults`, { _tag: "WrongKeyEnvelope", fileName: "a.json" })
      const wrongKey = yield* bytesOf(yield* get)
      assert.throws(() => open(wrongKey, Redacted.value(contract.contract.privateKey)))
    }).pipe(Effect.provide(ServerLayer({ syncPolls: 0 }))))

  it.live("push from a write contract, read back by the read contract; control routes for pushed data and accounts", () =>
    Effect.gen(function*() {
      const { controlUrl, simulator } = yield* server
      const registered = yield* postJson(`${controlUrl}contracts`, {
        contractId: "contract-write",
        publicKeyPem: writer.publicKeyPem,
        accessType: "w"
      })
      assert.strictEqual(registered.status, 201)
      const { accessToken, digimeUserId } = yield* userWithFiles([])
      const writeToken = Redacted.value(
        (yield* simulator.grant({ contractId: "contract-write", digimeUserId })).accessToken.value
      )
      const accounts = (yield* http("GET", `${controlUrl}accounts?digimeUserId=${digimeUserId}`)).json
      assert.lengthOf(accounts, 1)
      const accountId: string = accounts[0].id
      const descriptor = yield* (yield* Signer.Signer).sign(writer.contract, {
        metadata: { mimeType: "application/octet-stream", accounts: [{ accountId }], tags: ["x"] }
      })
      const body = Uint8Array.from([7, 8, 9])
      const pushed = yield* send("POST", "permission-access/import", { access_token: writeToken }, {
        signWith: writer,
        headers: { "content-type": "application/octet-stream", filedescriptor: Redacted.value(descriptor) },
        body
      })
      assert.strictEqual(pushed.status, 201)
      assert.deepStrictEqual(yield* jsonOf(pushed), { status: "delivered" })

      const record = (yield* http("GET", `${controlUrl}pushed`)).json
      assert.lengthOf(record.library, 1)
      assert.strictEqual(record.library[0].contractId, "contract-write")
      assert.strictEqual(record.library[0].digimeUserId, digimeUserId)
      assert.deepStrictEqual([...Buffer.from(record.library[0].bodyBase64, "base64")], [7, 8, 9])
      assert.deepStrictEqual(record.provider, [])

      // A second account needing reauthorization: the read contract's sync ends partial, with the push listed.
      const second = yield* postJson(`${controlUrl}accounts`, { digimeUserId })
      assert.strictEqual(second.status, 201)
      const marked = yield* postJson(`${controlUrl}reauth`, { digimeUserId, accountId: second.json.id })
      assert.strictEqual(marked.status, 204)
      const trigger = yield* send("POST", "permission-access/trigger", { access_token: accessToken }, {
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ agent })
      })
      const sessionKey = (yield* jsonOf(trigger)).session.key
      const list = yield* jsonOf(
        yield* send("GET", `permission-access/query/${sessionKey}`, { access_token: accessToken })
      )
      assert.strictEqual(list.status.state, "partial")
      assert.strictEqual(list.status.details[second.json.id].error.code, "ServiceAuthorizationError")
      const name = record.library[0].fileName
      assert.deepStrictEqual(list.fileList.map((file: any) => file.name), [name])
      const file = yield* send("GET", `permission-access/query/${sessionKey}/${name}`, { access_token: accessToken })
      assert.deepStrictEqual(xMetadataOf(file).metadata.accounts, [{ accountid: accountId }])
      const envelope = yield* bytesOf(file)
      assert.deepStrictEqual([...open(envelope, Redacted.value(contract.contract.privateKey))], [7, 8, 9])

      // Malformed control requests.
      const bad = [
        ["files", { digimeUserId, files: [{ name: "a" }] }],
        ["files", { digimeUserId, files: [{ name: "a", content: "x", contentBase64: "eA==" }] }],
        ["files", { digimeUserId, files: [{ name: "a", content: "x", compression: "brotli" }] }],
        ["files", { digimeUserId: "nobody", files: [{ name: "a", content: "x" }] }],
        ["files", { digimeUserId, files: [{ name: "a", contentBase64: "not base64!" }] }],
        ["accounts", { digimeUserId: "nobody" }],
        ["reauth", { digimeUserId, accountId: "nope" }],
        ["contracts", { contractId: "c", publicKeyPem: writer.publicKeyPem, accessType: "rw" }]
      ] as const
      for (const [route, payload] of bad) {
        assertRefused(yield* postJson(`${controlUrl}${route}`, payload), 400, "InvalidRequest")
      }
      assertRefused(yield* http("GET", `${controlUrl}accounts?digimeUserId=nobody`), 404, "NotFound")
      // The control checks apply to the new routes too.
      assertRefused(
        yield* http("GET", `${controlUrl}pushed`, { headers: { origin: "http://evil.example" } }),
        403,
        "OriginNotAllowed"
      )
    }).pipe(Effect.provide(ServerLayer({ syncPolls: 0 }))))

  it.live("onboard, reauthorize and revoke pages: consent over HTTP", () =>
    Effect.gen(function*() {
      const { onboardUrl, simulator } = yield* server
      const token = yield* simulator.grant({ contractId })
      const accessToken = Redacted.value(token.accessToken.value)
      const digimeUserId = token.digimeUserId!
      const reference = (claims: Record<string, unknown> = {}) =>
        Effect.gen(function*() {
          const answer = yield* send("POST", "oauth/token/reference", {
            access_token: accessToken,
            redirect_uri: callbackUrl,
            ...claims
          }, { headers: { "content-type": "application/json" }, body: JSON.stringify({ agent }) })
          assert.strictEqual(answer.status, 201)
          return decodePayload((yield* jsonOf(answer)).token).reference_code as string
        })

      const onboard = `${onboardUrl}onboard?code=${yield* reference({ state: "st" })}&sourceType=pull`
      const page = yield* http("GET", onboard)
      assert.strictEqual(page.status, 200)
      assert.include(page.text, "add a service")
      const added = yield* choose(onboard, "allow")
      assert.strictEqual(added.searchParams.get("success"), "true")
      assert.strictEqual(added.searchParams.get("state"), "st")
      const accounts = yield* simulator.accountsOf(digimeUserId)
      assert.lengthOf(accounts, 2)

      yield* simulator.requireReauth(digimeUserId, accounts[1]!.id)
      const ref = yield* send("POST", "reference", {}, {
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ type: "accountId", value: accounts[1]!.id })
      })
      assert.strictEqual(ref.status, 201)
      const reauthorize = `${onboardUrl}reauthorize?code=${yield* reference()}&accountRef=${(yield* jsonOf(ref)).id}`
      assert.include((yield* http("GET", reauthorize)).text, "reconnect")
      assert.strictEqual((yield* choose(reauthorize, "allow")).searchParams.get("success"), "true")
      assert.isFalse((yield* simulator.accountsOf(digimeUserId))[1]!.reauthRequired)

      const revoke = yield* send("GET", "permission-access/revoke/h:accountId", { access_token: accessToken }, {
        headers: { accountId: accounts[1]!.id, redirectUri: "https://app.example/revoked" }
      })
      assert.strictEqual(revoke.status, 200)
      const { location } = yield* jsonOf(revoke)
      assert.include((yield* http("GET", location)).text, "withdraw")
      const revoked = yield* choose(location, "allow")
      assert.strictEqual(`${revoked.origin}${revoked.pathname}`, "https://app.example/revoked")
      assert.strictEqual(revoked.searchParams.get("result"), "success")
      assert.isTrue((yield* simulator.accountsOf(digimeUserId))[1]!.reauthRequired)

      const deleted = yield* send("DELETE", "permission-access/service/h:accountId", { access_token: accessToken }, {
        headers: { accountId: accounts[1]!.id, "content-type": "application/json" }
      })
      assert.strictEqual(deleted.status, 201)
      assert.lengthOf(yield* simulator.accountsOf(digimeUserId), 1)
      const stats = yield* simulator.stats
      assert.strictEqual(stats.requests.reference, 2)
      assert.strictEqual(stats.requests.accountReference, 1)
      assert.strictEqual(stats.requests.revokeAccount, 1)
      assert.strictEqual(stats.requests.deleteAccount, 1)
    }).pipe(Effect.provide(ServerLayer())))
})

describe("NodeDigimeSimulator: the CLI", () => {
  it.live(
    "pnpm simulator: prints its URLs, serves the JWKS and the consent pages, stops on SIGTERM",
    () =>
      Effect.gen(function*() {
        const dir = mkdtempSync(join(tmpdir(), "simulator-cli-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
        const pemPath = join(dir, "contract.pem")
        writeFileSync(pemPath, contract.publicKeyPem)
        const cli = yield* startCli([
          "--port",
          "0",
          "--application-id",
          "cli-app",
          "--contract",
          `cli=${pemPath}`,
          "--write-contract",
          `cli-write=${pemPath}`,
          "--sync-polls",
          "1"
        ])
        const baseUrl = yield* waitFor("the base URL", () => /base URL\s+(\S+)/.exec(cli.output())?.[1], cli)
        assert.match(baseUrl, /^http:\/\/127\.0\.0\.1:\d+\/v1\.7\/$/)
        assert.include(cli.output(), "/apps/saas/")
        assert.include(cli.output(), "/_simulator/stats")
        assert.include(cli.output(), "contract ids  cli, cli-write (write)")
        assert.include(cli.output(), "/_simulator/files")
        assert.notInclude(cli.output(), "PRIVATE KEY")

        const jwks = yield* http("GET", `${baseUrl}jwks/oauth`)
        assert.strictEqual(jwks.status, 200)
        assert.isString(jwks.json.keys[0].pem)
        assert.strictEqual((yield* http("GET", `${new URL(baseUrl).origin}/apps/saas/authorize?code=x`)).status, 400)

        cli.kill()
        const code = yield* Effect.promise(() => cli.exited).pipe(Effect.timeout("10 seconds"))
        assert.strictEqual(code, 0)
      }).pipe(Effect.scoped),
    40_000
  )

  it.live("bad flags: a message, the usage and exit code 2", () =>
    Effect.gen(function*() {
      const cli = yield* startCli(["--fail-every", "nope"])
      const code = yield* Effect.promise(() => cli.exited).pipe(Effect.timeout("20 seconds"))
      assert.strictEqual(code, 2)
      assert.include(cli.output(), "--fail-every needs N:STATUS")
      assert.include(cli.output(), "Usage: digime-simulator")
    }).pipe(Effect.scoped), 40_000)

  it.live("--help lists --auto-consent and --log; an unknown flag is a usage error", () =>
    Effect.gen(function*() {
      const help = yield* startCli(["--help"])
      assert.strictEqual(yield* Effect.promise(() => help.exited).pipe(Effect.timeout("20 seconds")), 0)
      assert.match(help.output(), /^Usage: digime-simulator \[options\]/)
      assert.include(help.output(), "--auto-consent")
      assert.include(help.output(), "--log")
      const bad = yield* startCli(["--auto-consent=yes"])
      assert.strictEqual(yield* Effect.promise(() => bad.exited).pipe(Effect.timeout("20 seconds")), 2)
      assert.include(bad.output(), "digime-simulator: ")
    }).pipe(Effect.scoped), 40_000)

  it.live(
    "--auto-consent --log: a whole authorization with no page read; each request logged with its cause",
    () =>
      Effect.gen(function*() {
        const dir = mkdtempSync(join(tmpdir(), "simulator-cli-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
        const pemPath = join(dir, "contract.pem")
        writeFileSync(pemPath, contract.publicKeyPem)
        const cli = yield* startCli([
          "--application-id",
          "cli-app",
          "--contract",
          `${contractId}=${pemPath}`,
          "--auto-consent",
          "--log"
        ])
        const baseUrl = yield* waitFor("the base URL", () => /base URL\s+(\S+)/.exec(cli.output())?.[1], cli)
        assert.include(cli.output(), "consent       automatic")
        assert.include(cli.output(), "log           one line per request")
        const signer = yield* Signer.Signer
        const signed = (method: string, path: string, claims: Record<string, unknown>, body?: unknown) =>
          Effect.gen(function*() {
            const jwt = yield* signer.sign(contract.contract, {
              client_id: `cli-app_${contractId}`,
              nonce: makeNonce(),
              timestamp: Date.now(),
              ...claims
            })
            return yield* http(method, `${baseUrl}${path}`, {
              headers: {
                authorization: `Bearer ${Redacted.value(jwt)}`,
                ...(body === undefined ? {} : { "content-type": "application/json" })
              },
              ...(body === undefined ? {} : { body: JSON.stringify(body) })
            })
          })

        const { challenge, verifier } = yield* pkce
        const authorized = yield* signed("POST", "oauth/authorize", authorizeClaims(challenge), { agent })
        assert.strictEqual(authorized.status, 201)
        const onboarding = `${new URL(baseUrl).origin}/apps/saas/authorize?code=${
          decodePayload(authorized.json.token).preauthorization_code
        }`
        const page = yield* http("GET", onboarding)
        assert.strictEqual(page.status, 302)
        const callback = new URL(page.headers.get("location")!)
        assert.strictEqual(callback.searchParams.get("state"), "state-1")
        const code = callback.searchParams.get("code")!
        const token = yield* signed("POST", "oauth/token", {
          grant_type: "authorization_code",
          code,
          code_verifier: verifier
        })
        assert.strictEqual(token.status, 201)
        const unsigned = yield* http("GET", `${baseUrl}permission-access/accounts`)
        assert.strictEqual(unsigned.json.error.message, "Parameter validation errors")

        yield* waitFor("the log lines", () =>
          cli.output().includes("GET /v1.7/permission-access/accounts 406") || undefined, cli)
        const logged = cli.output().split("\n").filter((line) =>
          /^\d{4}-\d\d-\d\dT/.test(line)
        )
        assert.deepStrictEqual(logged.map((line) => line.replace(/^\S+ /, "")), [
          "POST /v1.7/oauth/authorize 201",
          "GET /apps/saas/authorize 302",
          "POST /v1.7/oauth/token 201",
          "GET /v1.7/permission-access/accounts 406 ValidationErrors: assertion: missing or malformed Authorization header"
        ])
        const payload = decodePayload(token.json.token)
        for (const secret of [code, verifier, payload.access_token.value, payload.refresh_token.value]) {
          assert.notInclude(cli.output(), secret)
        }
        cli.kill()
        assert.strictEqual(yield* Effect.promise(() => cli.exited).pipe(Effect.timeout("10 seconds")), 0)
      }).pipe(Effect.scoped, Effect.provide(NodeSigner.layer)),
    40_000
  )

  it.live(
    "the package's bin: dist/bin/simulator.js, built by the build, starts with a shebang and serves",
    () =>
      Effect.gen(function*() {
        const manifest = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8"))
        assert.deepStrictEqual(manifest.bin, { "digime-simulator": "./dist/bin/simulator.js" })
        assert.include(manifest.scripts.prepack, "tsc -b tsconfig.src.json bin")
        // The build of the bin (incremental: quick when `tsc -b` has run).
        yield* Effect.async<void, Error>((resume) => {
          const tsc = execFile(
            process.execPath,
            [createRequire(import.meta.url).resolve("typescript/bin/tsc"), "-b", "bin"],
            { cwd: packageDir },
            (error, stdout) =>
              resume(error === null ? Effect.void : Effect.fail(new Error(`${error.message}\n${stdout}`)))
          )
          return Effect.sync(() => tsc.kill())
        })
        const built = join(packageDir, "dist/bin/simulator.js")
        accessSync(built)
        assert.isTrue(readFileSync(built, "utf8").startsWith("#!/usr/bin/env node\n"))

        const cli = yield* startCli(["--auto-consent", "--log"], "dist/bin/simulator.js")
        const baseUrl = yield* waitFor("the base URL", () => /base URL\s+(\S+)/.exec(cli.output())?.[1], cli)
        assert.strictEqual((yield* http("GET", `${baseUrl}jwks/oauth`)).status, 200)
        yield* waitFor("the log line", () => cli.output().includes("GET /v1.7/jwks/oauth 200") || undefined, cli)
        cli.kill()
        assert.strictEqual(yield* Effect.promise(() => cli.exited).pipe(Effect.timeout("10 seconds")), 0)
      }).pipe(Effect.scoped),
    120_000
  )
})
