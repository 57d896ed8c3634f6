/**
 * The request builders and response processors of `TokenProtocol` and `DataProtocol`, without
 * HTTP: builders are checked on what they would send, processors on answers built in memory.
 */
import { DataProtocol, DigimeConfig, KeySet, TokenProtocol } from "@digime-effect/core"
import { HttpClient } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { answerTo, jsonBodyOf } from "./fixtures.js"

const agent = { name: "nodejs", version: "16.1.5" }
const credentials = { contractId: "contract-1", accessToken: Redacted.make("access-value") }

/** A key set that must never be asked: the processors below fail before verification. */
const NoKeys = Layer.succeed(KeySet.KeySet, { verify: () => Effect.die("no token to verify") })

describe("request builders", () => {
  it.effect("refreshTokenRequest: the step's claims encoded (the secret in clear), no body, not repeatable", () =>
    Effect.gen(function*() {
      const request = yield* TokenProtocol.refreshTokenRequest({
        contractId: "contract-1",
        refreshToken: Redacted.make("refresh-value")
      })
      assert.deepStrictEqual(request.claims, { grant_type: "refresh_token", refresh_token: "refresh-value" })
      assert.strictEqual(request.request.method, "POST")
      assert.strictEqual(request.request.url, "oauth/token")
      assert.strictEqual(request.request.headers["content-type"], "application/json")
      assert.strictEqual(request.request.body._tag, "Empty")
      assert.isFalse(request.idempotent)
      assert.strictEqual(request.operation, "refreshToken")
    }))

  it.effect("authorizeRequest: PKCE claims and the {agent, actions} body; undefined options are left out", () =>
    Effect.gen(function*() {
      const request = yield* TokenProtocol.authorizeRequest({
        contractId: "contract-1",
        callbackUrl: "https://app.example/cb",
        state: "state-1",
        codeChallenge: "c".repeat(43),
        sessionOptions: { sourceFetch: false, scope: undefined },
        agent
      })
      assert.deepStrictEqual(request.claims, {
        code_challenge: "c".repeat(43),
        code_challenge_method: "S256",
        redirect_uri: "https://app.example/cb",
        state: "state-1",
        response_mode: "query",
        response_type: "code"
      })
      assert.deepStrictEqual(jsonBodyOf(request), { agent: { sdk: agent }, actions: { pull: { sourceFetch: false } } })
      assert.isTrue(request.idempotent)
    }))

  it.effect("triggerRequest: the pull options at the top level; not repeatable", () =>
    Effect.gen(function*() {
      const request = yield* DataProtocol.triggerRequest({ ...credentials, limits: { duration: 1 } }, agent)
      assert.deepStrictEqual(request.claims, { access_token: "access-value" })
      assert.deepStrictEqual(jsonBodyOf(request), { limits: { duration: 1 }, agent: { sdk: agent } })
      assert.isFalse(request.idempotent)
    }))

  it.effect("a builder refuses bad options with InvalidOptions naming the field", () =>
    Effect.gen(function*() {
      const errors = yield* Effect.all([
        Effect.flip(
          TokenProtocol.exchangeCodeRequest({ contractId: "c", code: " ", codeVerifier: Redacted.make("v") })
        ),
        Effect.flip(DataProtocol.accountsRequest({ contractId: "c", accessToken: Redacted.make("") })),
        Effect.flip(TokenProtocol.authorizeRequest({
          contractId: "c",
          callbackUrl: "ftp://x",
          state: "s",
          codeChallenge: "c".repeat(43),
          agent
        }))
      ])
      assert.deepStrictEqual(errors.map((error) => [error._tag, error.field]), [
        ["InvalidOptions", "code"],
        ["InvalidOptions", "accessToken"],
        ["InvalidOptions", "callbackUrl"]
      ])
    }))
})

describe("response processors", () => {
  it.effect("processAccountsResponse: a 2xx array of accounts, decoded", () =>
    Effect.gen(function*() {
      const request = yield* DataProtocol.accountsRequest(credentials)
      const accounts = yield* DataProtocol.processAccountsResponse(answerTo(undefined, 202, []), request)
      assert.deepStrictEqual(accounts, [])
    }))

  it.effect("a 401 InvalidToken on a data call is AccessTokenRejected; on a token call an ApiError", () =>
    Effect.gen(function*() {
      const refused = { error: { code: "InvalidToken", message: "The token is invalid", reference: "r-1" } }
      const data = yield* DataProtocol.accountsRequest(credentials)
      const rejected = yield* Effect.flip(DataProtocol.processAccountsResponse(answerTo(undefined, 401, refused), data))
      assert.strictEqual(rejected._tag, "AccessTokenRejected")
      assert.strictEqual(rejected._tag === "AccessTokenRejected" && rejected.contractId, "contract-1")
      const token = yield* TokenProtocol.refreshTokenRequest({ contractId: "c", refreshToken: Redacted.make("r") })
      const error = yield* Effect.flip(TokenProtocol.processTokenResponse(answerTo(undefined, 401, refused), token))
      assert.strictEqual(error._tag, "ApiError")
      assert.strictEqual(error._tag === "ApiError" && error.reference, "r-1")
    }).pipe(Effect.provide(NoKeys)))

  it.effect("a success body that does not match is ResponseError naming the field, never its value", () =>
    Effect.gen(function*() {
      const request = yield* DataProtocol.triggerRequest(credentials, agent)
      const error = yield* Effect.flip(
        DataProtocol.processTriggerResponse(answerTo(undefined, 202, { session: { expiry: 1, key: 42 } }), request)
      )
      assert.strictEqual(error._tag, "ResponseError")
      assert.include(error.message, "session.key")
      const notJson = yield* Effect.flip(
        DataProtocol.processTriggerResponse(answerTo(undefined, 202, "<html>"), request)
      )
      assert.strictEqual(notJson._tag === "ResponseError" && notJson.description, "the body is not JSON")
    }))

  it.effect("processTokenResponse: a token that is not a JWS never reaches the store: VerificationError", () =>
    Effect.gen(function*() {
      const request = yield* TokenProtocol.refreshTokenRequest({ contractId: "c", refreshToken: Redacted.make("r") })
      const error = yield* Effect.flip(
        TokenProtocol.processTokenResponse(answerTo(undefined, 201, { token: "garbage" }), request)
      )
      assert.strictEqual(error._tag, "VerificationError")
      assert.strictEqual(error._tag === "VerificationError" && error.reason, "Malformed")
    }).pipe(Effect.provide(KeySet.layer.pipe(
      Layer.provide(DigimeConfig.layer({
        applicationId: "app",
        contracts: [{ contractId: "c", privateKey: Redacted.make("unused") }]
      })),
      Layer.provide(
        Layer.succeed(HttpClient.HttpClient, HttpClient.make(() => Effect.die("no key set download expected")))
      ),
      Layer.orDie
    ))))

  it.effect("processDeleteUserResponse: any 2xx, whatever the body", () =>
    Effect.gen(function*() {
      const request = yield* DataProtocol.deleteUserRequest(credentials)
      yield* DataProtocol.processDeleteUserResponse(answerTo(undefined, 204, ""), request)
      const error = yield* Effect.flip(DataProtocol.processDeleteUserResponse(answerTo(undefined, 500, ""), request))
      assert.strictEqual(error._tag === "ApiError" && error.code, "Unknown")
    }))
})
