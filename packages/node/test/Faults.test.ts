/**
 * The faults of the hardening issue, against the simulated digi.me over real HTTP (undici,
 * loopback): each test names the fault, and asserts what the library does and what the caller
 * sees. Real time, with a short request timeout so the slow cases stay fast.
 */
import { AutoRefresh, DigimeClient, TokenKey, TokenManager, TokenProtocol, TokenStore } from "@digime-effect/core"
import { DigimeTest, TestContract } from "@digime-effect/core/testing"
import { NodeDigimeSimulator, NodeDigimeTest } from "@digime-effect/node/testing"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option, Redacted } from "effect"

const applicationId = "app-faults"
const contractId = "contract-faults"
const contract = await Effect.runPromise(TestContract.make(contractId))

/** Server, and a client over undici with a 300 ms request timeout and 2 s access tokens. */
const Stack = NodeDigimeTest.layer({
  applicationId,
  contracts: [contract],
  config: { requestTimeout: "300 millis", refreshLeadTime: "500 millis" },
  server: { accessTokenLifetime: "2 seconds", strictRotation: true }
}).pipe(Layer.orDie)

let n = 0
const freshKey = () => TokenKey.make(`user-${++n}`, contractId)

/** Authorizes a user through the server (consent as a function call), stores the token. */
const authorized = Effect.gen(function*() {
  const key = freshKey()
  yield* DigimeTest.authorize(key)
  return key
})

const stored = (key: TokenKey.TokenKey) =>
  Effect.flatMap(TokenStore.TokenStore, (store) => store.get(key)).pipe(Effect.map(Option.getOrThrow))

/** Waits (real time) until the stored access token is due. */
const untilDue = (key: TokenKey.TokenKey) =>
  Effect.flatMap(
    stored(key),
    (versioned) => Effect.sleep(Math.max(0, versioned.token.accessToken.expiresAt.epochMillis - Date.now() - 400))
  )

const read = (key: TokenKey.TokenKey) =>
  Effect.flatMap(DigimeClient.DigimeClient, (client) => AutoRefresh.withAutoRefresh(key, client.readAccounts))

const stats = Effect.flatMap(NodeDigimeSimulator.NodeDigimeSimulator, (server) => server.simulator.stats)
const inject = (fault: Parameters<NodeDigimeSimulator.Server["simulator"]["injectFault"]>[0]) =>
  Effect.flatMap(NodeDigimeSimulator.NodeDigimeSimulator, (server) => server.simulator.injectFault(fault))

describe("faults over real HTTP", () => {
  it.live(
    "429 on the token endpoint: ApiError, one attempt, stored token unchanged; the next call refreshes",
    () =>
      Effect.gen(function*() {
        const key = yield* authorized
        const before = yield* stored(key)
        yield* untilDue(key)
        yield* inject({ _tag: "Status", endpoint: "token", status: 429 })
        const tokenRequests = (yield* stats).requests.token
        const error = yield* Effect.flip(read(key))
        assert.strictEqual(error._tag === "ApiError" && error.status, 429)
        assert.strictEqual((yield* stats).requests.token - tokenRequests, 1)
        assert.strictEqual((yield* stored(key)).version, before.version)
        yield* read(key)
        assert.isAbove((yield* stored(key)).version, before.version)
      }).pipe(Effect.provide(Stack)),
    20_000
  )

  it.live(
    "502 on the token endpoint: ApiError, one attempt; the lease is abandoned and the valid token served, never resent",
    () =>
      Effect.gen(function*() {
        const key = yield* authorized
        const before = yield* stored(key)
        yield* untilDue(key)
        yield* inject({ _tag: "Status", endpoint: "token", status: 502 })
        const tokenRequests = (yield* stats).requests.token
        const error = yield* Effect.flip(read(key))
        assert.strictEqual(error._tag === "ApiError" && error.status, 502)
        const after = yield* stored(key)
        assert.strictEqual(after.version, before.version)
        assert.strictEqual(after.lease?.until, 0)
        // The access token is still valid: served, without a second refresh.
        yield* read(key)
        assert.strictEqual((yield* stats).requests.token - tokenRequests, 1)
        assert.strictEqual((yield* stats).replays, 0)
      }).pipe(Effect.provide(Stack)),
    20_000
  )

  it.live(
    "a refresh that does not answer in time: RequestError (Timeout), stored token unchanged",
    () =>
      Effect.gen(function*() {
        const key = yield* authorized
        const before = yield* stored(key)
        yield* untilDue(key)
        yield* inject({ _tag: "Delay", endpoint: "token", delay: "2 seconds" })
        const error = yield* Effect.flip(read(key))
        assert.strictEqual(error._tag === "RequestError" && error.reason, "Timeout")
        assert.strictEqual((yield* stored(key)).version, before.version)
        // The server did rotate (it answers late): the stored refresh token may be spent, so it is
        // never sent again. Once the access token has expired, the user must reauthorize.
        yield* Effect.sleep("2 seconds")
        const next = yield* Effect.flip(read(key))
        assert.strictEqual(next._tag === "ReauthRequired" && next.reason, "RefreshOutcomeUnknown")
        assert.strictEqual((yield* stats).replays, 0)
        assert.strictEqual((yield* stats).revocations, 0)
      }).pipe(Effect.provide(Stack)),
    20_000
  )

  it.live(
    "the connection dropped after the server rotated the refresh token: RequestError, the valid token served, then ReauthRequired (RefreshOutcomeUnknown), no replay",
    () =>
      Effect.gen(function*() {
        const key = yield* authorized
        yield* untilDue(key)
        yield* inject({ _tag: "DropResponse", endpoint: "token" })
        const error = yield* Effect.flip(read(key))
        assert.strictEqual(error._tag === "RequestError" && error.reason, "Transport")
        // The stored access token is still valid for a moment: served as it is.
        const refreshes = (yield* stats).refreshes
        assert.isAbove((yield* read(key)).length, 0)
        // Once it has expired, the refresh token is never sent again: the user must reauthorize.
        yield* Effect.flatMap(stored(key), (versioned) =>
          Effect.sleep(Math.max(0, versioned.token.accessToken.expiresAt.epochMillis - Date.now() + 50)))
        const next = yield* Effect.flip(read(key))
        assert.strictEqual(next._tag === "ReauthRequired" && next.reason, "RefreshOutcomeUnknown")
        const after = yield* stats
        assert.strictEqual(after.refreshes, refreshes)
        assert.strictEqual(after.replays, 0)
        assert.strictEqual(after.revocations, 0)
      }).pipe(Effect.provide(Stack)),
    20_000
  )

  it.live(
    "a slow key set: retried, then VerificationError (KeySetUnavailable); nothing stored",
    () =>
      Effect.gen(function*() {
        const client = yield* DigimeClient.DigimeClient
        const manager = yield* TokenManager.TokenManager
        const server = yield* NodeDigimeSimulator.NodeDigimeSimulator
        const start = yield* client.getAuthorizeUrl({ contractId, callbackUrl: DigimeTest.callbackUrl })
        const result = yield* TokenProtocol.parseCallback(yield* server.simulator.consent(start.url), start.state)
        // A new signing key forces a new download of the key set, which is slow every time.
        yield* server.simulator.rotateSigningKey
        for (let i = 0; i < 3; i++) yield* inject({ _tag: "Delay", endpoint: "jwks", delay: "2 seconds" })
        const jwksBefore = (yield* stats).requests.jwks
        const key = freshKey()
        const error = yield* Effect.flip(
          manager.exchangeCodeForToken({ key, code: result.code, codeVerifier: start.codeVerifier })
        )
        assert.strictEqual(error._tag === "VerificationError" && error.reason, "KeySetUnavailable")
        assert.strictEqual((yield* stats).requests.jwks - jwksBefore, 3)
        const store = yield* TokenStore.TokenStore
        assert.isTrue(Option.isNone(yield* store.get(key)))
      }).pipe(Effect.provide(Stack)),
    20_000
  )

  it.live("a rotated signing key: one new download of the key set, the refresh succeeds", () =>
    Effect.gen(function*() {
      const key = yield* authorized
      const server = yield* NodeDigimeSimulator.NodeDigimeSimulator
      yield* server.simulator.rotateSigningKey
      yield* untilDue(key)
      const jwksBefore = (yield* stats).requests.jwks
      const accounts = yield* read(key)
      assert.isAbove(accounts.length, 0)
      assert.strictEqual((yield* stats).requests.jwks - jwksBefore, 1)
      assert.notStrictEqual(Redacted.value((yield* stored(key)).token.accessToken.value), "")
    }).pipe(Effect.provide(Stack)), 20_000)
})
