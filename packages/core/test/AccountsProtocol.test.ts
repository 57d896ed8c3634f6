/**
 * `AccountsProtocol` without HTTP: the builders checked on what they would send, the processors on
 * answers built in memory, the reference codes signed here and verified by a real `KeySet` that
 * downloads its key set from an in-memory `HttpClient`.
 */
import { DigimeConfig, type DigimeError, type DigimeRequest, KeySet } from "@digime-effect/core"
import * as AccountsProtocol from "@digime-effect/core/AccountsProtocol"
import { HttpClient, HttpClientResponse } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Encoding, Layer, Redacted } from "effect"
import { answerTo, jsonBodyOf, signingPair, signingPublicPem } from "./fixtures.js"

const contractId = "contract-1"
const agent = { name: "nodejs", version: "16.1.5" }
const credentials = { contractId, accessToken: Redacted.make("access-value") }
const callbackUrl = "https://app.example/digime/onboarded"
const onboardBase = "https://api.digi.me/apps/saas/"

const invalidToken = {
  error: { code: "InvalidToken", message: "The token (access_token) is invalid", reference: "r-1" }
}
const invalidRedirect = { error: { code: "InvalidRedirectUri", message: "The redirect_uri is invalid" } }

// ---------------------------------------------------------------------------------------------
// A key set and the tokens digi.me would sign with it
// ---------------------------------------------------------------------------------------------

const jwksUrl = "https://api.digi.me/v1.7/jwks/oauth"
const pair = signingPair
const publicPem = signingPublicPem

/** A PS512 token naming the key set above, its claims as given (the TestClock starts at 0). */
const signed = (claims: Record<string, unknown>) =>
  Effect.promise(async () => {
    const input = [
      Encoding.encodeBase64Url(JSON.stringify({ alg: "PS512", typ: "JWT", jku: jwksUrl, kid: "k-1" })),
      Encoding.encodeBase64Url(JSON.stringify({ exp: 3600, ...claims }))
    ].join(".")
    const signature = await globalThis.crypto.subtle.sign(
      { name: "RSA-PSS", saltLength: 64 },
      pair.privateKey,
      new TextEncoder().encode(input)
    )
    return `${input}.${Encoding.encodeBase64Url(new Uint8Array(signature))}`
  })

const Keys = KeySet.layer.pipe(
  Layer.provide(Layer.succeed(
    HttpClient.HttpClient,
    HttpClient.make((request) =>
      Effect.succeed(HttpClientResponse.fromWeb(
        request,
        new Response(JSON.stringify({ keys: [{ kid: "k-1", pem: publicPem }] }), { status: 200 })
      ))
    )
  )),
  Layer.provide(DigimeConfig.layer({
    applicationId: "app-1",
    contracts: [{ contractId, privateKey: Redacted.make("unused") }]
  })),
  Layer.orDie
)

// ---------------------------------------------------------------------------------------------
// Onboard an additional service (§6.1)
// ---------------------------------------------------------------------------------------------

describe("AccountsProtocol.onboardRequest", () => {
  it.effect("POST oauth/token/reference: the access token, redirect_uri and state, no code challenge", () =>
    Effect.gen(function*() {
      const request = yield* AccountsProtocol.onboardRequest({
        ...credentials,
        callbackUrl,
        state: "state-1",
        sessionOptions: { sourceFetch: true, scope: undefined }
      }, agent)
      assert.strictEqual(request.operation, "getOnboardServiceUrl")
      assert.strictEqual(request.contractId, contractId)
      assert.strictEqual(request.request.method, "POST")
      assert.strictEqual(request.request.url, "oauth/token/reference")
      assert.strictEqual(request.request.headers["content-type"], "application/json")
      assert.deepStrictEqual(request.claims, {
        access_token: "access-value",
        redirect_uri: callbackUrl,
        state: "state-1"
      })
      assert.deepStrictEqual(jsonBodyOf(request), { agent: { sdk: agent }, actions: { pull: { sourceFetch: true } } })
      assert.isTrue(request.idempotent)
    }))

  it.effect("without state or session options, neither is sent", () =>
    Effect.gen(function*() {
      const request = yield* AccountsProtocol.onboardRequest({ ...credentials, callbackUrl }, agent)
      assert.deepStrictEqual(request.claims, { access_token: "access-value", redirect_uri: callbackUrl })
      assert.deepStrictEqual(jsonBodyOf(request), { agent: { sdk: agent } })
    }))

  it.effect("bad options are InvalidOptions naming the field, before any request", () =>
    Effect.gen(function*() {
      const errors = yield* Effect.all([
        Effect.flip(AccountsProtocol.onboardRequest({ ...credentials, contractId: "", callbackUrl }, agent)),
        Effect.flip(
          AccountsProtocol.onboardRequest({ ...credentials, accessToken: Redacted.make(" "), callbackUrl }, agent)
        ),
        Effect.flip(AccountsProtocol.onboardRequest({ ...credentials, callbackUrl: "ftp://app.example/" }, agent)),
        Effect.flip(AccountsProtocol.onboardRequest({ ...credentials, callbackUrl: "/relative" }, agent)),
        Effect.flip(AccountsProtocol.onboardRequest({ ...credentials, callbackUrl, state: "" }, agent))
      ])
      assert.deepStrictEqual(errors.map((error) => [error._tag, error.operation, error.field]), [
        ["InvalidOptions", "getOnboardServiceUrl", "contractId"],
        ["InvalidOptions", "getOnboardServiceUrl", "accessToken"],
        ["InvalidOptions", "getOnboardServiceUrl", "callbackUrl"],
        ["InvalidOptions", "getOnboardServiceUrl", "callbackUrl"],
        ["InvalidOptions", "getOnboardServiceUrl", "state"]
      ])
    }))
})

describe("AccountsProtocol.processOnboardResponse", () => {
  it.effect("the token verified with the KeySet: its reference_code, and the session", () =>
    Effect.gen(function*() {
      const request = yield* AccountsProtocol.onboardRequest({ ...credentials, callbackUrl }, agent)
      const token = yield* signed({ reference_code: "ref-code-1" })
      const result = yield* AccountsProtocol.processOnboardResponse(
        answerTo(request, 201, { token, session: { expiry: 1_700_000_000_000, key: "session-1" } }),
        request
      )
      assert.instanceOf(result, AccountsProtocol.ReferenceCode)
      assert.strictEqual(result.code, "ref-code-1")
      assert.deepStrictEqual(result.session, { expiry: 1_700_000_000_000, key: "session-1" })
      // digi.me's SDK does not require the session: neither does this processor.
      const withoutSession = yield* AccountsProtocol.processOnboardResponse(answerTo(request, 200, { token }), request)
      assert.strictEqual(withoutSession.code, "ref-code-1")
      assert.isUndefined(withoutSession.session)
    }).pipe(Effect.provide(Keys)))

  it.effect("a token without a reference_code, or not signed by digi.me's key, is VerificationError", () =>
    Effect.gen(function*() {
      const request = yield* AccountsProtocol.onboardRequest({ ...credentials, callbackUrl }, agent)
      const noCode = yield* Effect.flip(AccountsProtocol.processOnboardResponse(
        answerTo(request, 201, { token: yield* signed({ preauthorization_code: "p" }) }),
        request
      ))
      assert.strictEqual(noCode._tag, "VerificationError")
      assert.strictEqual(noCode._tag === "VerificationError" && noCode.reason, "InvalidClaims")
      assert.include(noCode.message, "reference_code")
      // The header and payload of one token with the signature of another.
      const [header, payload] = (yield* signed({ reference_code: "forged" })).split(".")
      const [, , signature] = (yield* signed({ reference_code: "genuine" })).split(".")
      const forged = yield* Effect.flip(AccountsProtocol.processOnboardResponse(
        answerTo(request, 201, { token: `${header}.${payload}.${signature}` }),
        request
      ))
      assert.strictEqual(forged._tag === "VerificationError" && forged.reason, "InvalidSignature")
      assert.strictEqual(forged._tag === "VerificationError" && forged.operation, "getOnboardServiceUrl")
      const garbage = yield* Effect.flip(
        AccountsProtocol.processOnboardResponse(answerTo(request, 201, { token: "garbage" }), request)
      )
      assert.strictEqual(garbage._tag === "VerificationError" && garbage.reason, "Malformed")
    }).pipe(Effect.provide(Keys)))

  it.effect("401 InvalidToken is AccessTokenRejected; another code, or a 401 with another code, is ApiError", () =>
    Effect.gen(function*() {
      const request = yield* AccountsProtocol.onboardRequest({ ...credentials, callbackUrl }, agent)
      const rejected = yield* Effect.flip(
        AccountsProtocol.processOnboardResponse(answerTo(request, 401, invalidToken), request)
      )
      assert.strictEqual(rejected._tag, "AccessTokenRejected")
      assert.strictEqual(rejected._tag === "AccessTokenRejected" && rejected.contractId, contractId)
      assert.strictEqual(rejected._tag === "AccessTokenRejected" && rejected.reference, "r-1")
      const redirect = yield* Effect.flip(
        AccountsProtocol.processOnboardResponse(answerTo(request, 404, invalidRedirect), request)
      )
      assert.strictEqual(redirect._tag, "ApiError")
      assert.strictEqual(redirect._tag === "ApiError" && redirect.code, "InvalidRedirectUri")
      const other401 = yield* Effect.flip(
        AccountsProtocol.processOnboardResponse(answerTo(request, 401, invalidRedirect), request)
      )
      assert.strictEqual(other401._tag === "ApiError" && other401.status, 401)
    }).pipe(Effect.provide(Keys)))

  it.effect("a malformed answer is ResponseError naming the field; nothing is verified", () =>
    Effect.gen(function*() {
      const request = yield* AccountsProtocol.reauthorizeAccountRequest({ ...credentials, callbackUrl }, agent)
      const noToken = yield* Effect.flip(AccountsProtocol.processReauthorizeAccountResponse(
        answerTo(request, 201, { session: { expiry: 1, key: "k" } }),
        request
      ))
      assert.strictEqual(noToken._tag, "ResponseError")
      assert.include(noToken.message, "token")
      assert.strictEqual(noToken._tag === "ResponseError" && noToken.operation, "getReauthorizeAccountUrl")
      const token = yield* signed({ reference_code: "ref-code-1" })
      const badSession = yield* Effect.flip(AccountsProtocol.processReauthorizeAccountResponse(
        answerTo(request, 201, { token, session: { expiry: 1, key: 42 } }),
        request
      ))
      assert.strictEqual(badSession._tag, "ResponseError")
      assert.include(badSession.message, "session.key")
      assert.notInclude(badSession.message, token)
      const notJson = yield* Effect.flip(
        AccountsProtocol.processReauthorizeAccountResponse(answerTo(request, 201, "<html>"), request)
      )
      assert.strictEqual(notJson._tag === "ResponseError" && notJson.description, "the body is not JSON")
    }).pipe(Effect.provide(Layer.succeed(KeySet.KeySet, { verify: () => Effect.die("no token to verify") }))))
})

describe("AccountsProtocol.onboardUrl", () => {
  it("every parameter, in digi.me's order; sourcesScope percent-encoded twice", () => {
    assert.strictEqual(
      AccountsProtocol.onboardUrl(onboardBase, "ref-code-1", {
        sourcesScope: JSON.stringify({ dataType: ["vaccinations"] }),
        triggerQuery: true,
        includeSampleDataOnlySources: false,
        locale: "nl",
        sampleDataAutoOnboard: true,
        sampleDataSetId: "default",
        serviceId: 12,
        sourceType: "push"
      }),
      "https://api.digi.me/apps/saas/onboard?code=ref-code-1&sourceType=push&service=12&sampleDataSet=default" +
        "&sampleDataAutoOnboard=true&lng=nl&includeSampleDataOnlySources=false&triggerQuery=true" +
        "&sourcesScope=%257B%2522dataType%2522%253A%255B%2522vaccinations%2522%255D%257D"
    )
  })

  it("only the code and the pull source type by default; service 0 and sampleDataAutoOnboard false left out", () => {
    assert.strictEqual(
      AccountsProtocol.onboardUrl(onboardBase, "ref-code-1"),
      "https://api.digi.me/apps/saas/onboard?code=ref-code-1&sourceType=pull"
    )
    assert.strictEqual(
      AccountsProtocol.onboardUrl("https://api.digi.me/apps/saas", "a&b", {
        serviceId: 0,
        sampleDataAutoOnboard: false
      }),
      "https://api.digi.me/apps/saas/onboard?code=a%26b&sourceType=pull"
    )
  })
})

// ---------------------------------------------------------------------------------------------
// Reauthorize one account (§6.2)
// ---------------------------------------------------------------------------------------------

describe("AccountsProtocol: reauthorize one account", () => {
  it.effect("step 1: the reference request without state, code challenge or actions", () =>
    Effect.gen(function*() {
      const request = yield* AccountsProtocol.reauthorizeAccountRequest({ ...credentials, callbackUrl }, agent)
      assert.strictEqual(request.operation, "getReauthorizeAccountUrl")
      assert.strictEqual(request.request.method, "POST")
      assert.strictEqual(request.request.url, "oauth/token/reference")
      assert.deepStrictEqual(request.claims, { access_token: "access-value", redirect_uri: callbackUrl })
      assert.deepStrictEqual(jsonBodyOf(request), { agent: { sdk: agent } })
      assert.isTrue(request.idempotent)
      const error = yield* Effect.flip(
        AccountsProtocol.reauthorizeAccountRequest({ ...credentials, callbackUrl: "not a url" }, agent)
      )
      assert.strictEqual(error.field, "callbackUrl")
    }))

  it.effect("step 2: POST reference with the account id, no user in the claims", () =>
    Effect.gen(function*() {
      const request = yield* AccountsProtocol.accountReferenceRequest({ contractId, accountId: "account-1" })
      assert.strictEqual(request.operation, "getAccountReference")
      assert.strictEqual(request.contractId, contractId)
      assert.strictEqual(request.request.method, "POST")
      assert.strictEqual(request.request.url, "reference")
      assert.deepStrictEqual(request.claims, {})
      assert.deepStrictEqual(jsonBodyOf(request), { type: "accountId", value: "account-1" })
      assert.isTrue(request.idempotent)
      const errors = yield* Effect.all([
        Effect.flip(AccountsProtocol.accountReferenceRequest({ contractId, accountId: " " })),
        Effect.flip(AccountsProtocol.accountReferenceRequest({ contractId: "", accountId: "account-1" }))
      ])
      assert.deepStrictEqual(errors.map((error) => [error._tag, error.field]), [
        ["InvalidOptions", "accountId"],
        ["InvalidOptions", "contractId"]
      ])
    }))

  it.effect("processAccountReferenceResponse: the id; a missing or malformed id is ResponseError", () =>
    Effect.gen(function*() {
      const request = yield* AccountsProtocol.accountReferenceRequest({ contractId, accountId: "account-1" })
      assert.strictEqual(
        yield* AccountsProtocol.processAccountReferenceResponse(answerTo(request, 201, { id: "ref-9" }), request),
        "ref-9"
      )
      for (const body of [{}, { id: {} }, { id: "" }]) {
        const error = yield* Effect.flip(
          AccountsProtocol.processAccountReferenceResponse(answerTo(request, 201, body), request)
        )
        assert.strictEqual(error._tag, "ResponseError")
        assert.include(error.message, "id")
        assert.notInclude(error.message, "[object Object]")
      }
      const notJson = yield* Effect.flip(
        AccountsProtocol.processAccountReferenceResponse(answerTo(request, 201, "ref-9"), request)
      )
      assert.strictEqual(notJson._tag === "ResponseError" && notJson.description, "the body is not JSON")
    }))

  it.effect("processAccountReferenceResponse: an error body is ApiError, a 401 InvalidToken too (claims B)", () =>
    Effect.gen(function*() {
      const request = yield* AccountsProtocol.accountReferenceRequest({ contractId, accountId: "account-1" })
      const error = yield* Effect.flip(
        AccountsProtocol.processAccountReferenceResponse(answerTo(request, 404, invalidRedirect), request)
      )
      assert.strictEqual(error._tag === "ApiError" && error.code, "InvalidRedirectUri")
      const unauthorized = yield* Effect.flip(
        AccountsProtocol.processAccountReferenceResponse(answerTo(request, 401, invalidToken), request)
      )
      assert.strictEqual(unauthorized._tag, "ApiError")
      assert.strictEqual(unauthorized._tag === "ApiError" && unauthorized.code, "InvalidToken")
    }))

  it("reauthorizeAccountUrl: code, accountRef, then lng when given", () => {
    assert.strictEqual(
      AccountsProtocol.reauthorizeAccountUrl(onboardBase, "ref-code-1", "ref-9"),
      "https://api.digi.me/apps/saas/reauthorize?code=ref-code-1&accountRef=ref-9"
    )
    assert.strictEqual(
      AccountsProtocol.reauthorizeAccountUrl(onboardBase, "ref-code-1", "ref/9", "en"),
      "https://api.digi.me/apps/saas/reauthorize?code=ref-code-1&accountRef=ref%2F9&lng=en"
    )
  })
})

// ---------------------------------------------------------------------------------------------
// Revoke an account's permission (§6.3), delete an account (§6.4)
// ---------------------------------------------------------------------------------------------

describe("AccountsProtocol.revokeAccountPermissionRequest", () => {
  const redirectUri = "https://app.example/revoked"

  it.effect("GET permission-access/revoke/h:accountId, the account and redirect URI as headers, claims A", () =>
    Effect.gen(function*() {
      const request = yield* AccountsProtocol.revokeAccountPermissionRequest({
        ...credentials,
        accountId: "account-1",
        redirectUri
      })
      assert.strictEqual(request.operation, "getRevokeAccountPermissionUrl")
      assert.strictEqual(request.contractId, contractId)
      assert.strictEqual(request.request.method, "GET")
      assert.strictEqual(request.request.url, "permission-access/revoke/h:accountId")
      assert.deepStrictEqual({ ...request.request.headers }, { accountid: "account-1", redirecturi: redirectUri })
      assert.strictEqual(request.request.body._tag, "Empty")
      assert.deepStrictEqual(request.claims, { access_token: "access-value" })
      assert.isTrue(request.idempotent)
    }))

  it.effect("header values are checked before any request: InvalidOptions naming the field", () =>
    Effect.gen(function*() {
      const revoke = (accountId: string, uri: string, accessToken = credentials.accessToken) =>
        Effect.flip(AccountsProtocol.revokeAccountPermissionRequest({
          contractId,
          accessToken,
          accountId,
          redirectUri: uri
        }))
      const cases: ReadonlyArray<readonly [Effect.Effect<DigimeError.InvalidOptions, DigimeRequest.Request>, string]> =
        [
          [revoke("", redirectUri), "accountId"],
          [revoke("account-1\r\nX-Injected: 1", redirectUri), "accountId"],
          [revoke("account\u00001", redirectUri), "accountId"],
          [revoke(" account-1", redirectUri), "accountId"],
          [revoke("accöunt-1", redirectUri), "accountId"],
          [revoke("account-1", ""), "redirectUri"],
          // The URL parser drops CR and LF; the header would not.
          [revoke("account-1", "https://app.example/\r\nX-Injected: 1"), "redirectUri"],
          [revoke("account-1", "ftp://app.example/revoked"), "redirectUri"],
          [revoke("account-1", "/revoked"), "redirectUri"],
          [revoke("account-1", redirectUri, Redacted.make("")), "accessToken"]
        ]
      for (const [effect, field] of cases) {
        const error = yield* effect
        assert.strictEqual(error.field, field)
      }
      const error = yield* revoke("account-1\r\nX-Injected: 1", redirectUri)
      assert.strictEqual(error._tag, "InvalidOptions")
      assert.strictEqual(error.operation, "getRevokeAccountPermissionUrl")
      assert.notInclude(error.message, "X-Injected")
    }))

  it.effect("processRevokeAccountPermissionResponse: {location}, an absolute http(s) URL", () =>
    Effect.gen(function*() {
      const request = yield* AccountsProtocol.revokeAccountPermissionRequest({
        ...credentials,
        accountId: "account-1",
        redirectUri
      })
      const location = "https://medmij.example/revoke?session=1"
      assert.strictEqual(
        yield* AccountsProtocol.processRevokeAccountPermissionResponse(answerTo(request, 201, { location }), request),
        location
      )
      for (const body of [{}, { location: "/relative" }, { location: "javascript:alert(1)" }, { location: 7 }]) {
        const error = yield* Effect.flip(
          AccountsProtocol.processRevokeAccountPermissionResponse(answerTo(request, 201, body), request)
        )
        assert.strictEqual(error._tag, "ResponseError")
        assert.include(error.message, "location")
        assert.notInclude(error.message, "javascript")
      }
      const notJson = yield* Effect.flip(
        AccountsProtocol.processRevokeAccountPermissionResponse(answerTo(request, 200, "<html>"), request)
      )
      assert.strictEqual(notJson._tag === "ResponseError" && notJson.description, "the body is not JSON")
    }))

  it.effect("processRevokeAccountPermissionResponse: 401 InvalidToken is AccessTokenRejected, other errors ApiError", () =>
    Effect.gen(function*() {
      const request = yield* AccountsProtocol.revokeAccountPermissionRequest({
        ...credentials,
        accountId: "account-1",
        redirectUri
      })
      const rejected = yield* Effect.flip(
        AccountsProtocol.processRevokeAccountPermissionResponse(answerTo(request, 401, invalidToken), request)
      )
      assert.strictEqual(rejected._tag, "AccessTokenRejected")
      assert.strictEqual(rejected._tag === "AccessTokenRejected" && rejected.operation, "getRevokeAccountPermissionUrl")
      const other401 = yield* Effect.flip(AccountsProtocol.processRevokeAccountPermissionResponse(
        answerTo(request, 401, { error: { code: "InsufficientScope", message: "higher privileges" } }),
        request
      ))
      assert.strictEqual(other401._tag, "ApiError")
      assert.strictEqual(other401._tag === "ApiError" && other401.code, "InsufficientScope")
      const unknown = yield* Effect.flip(
        AccountsProtocol.processRevokeAccountPermissionResponse(answerTo(request, 502, "Bad gateway"), request)
      )
      assert.strictEqual(unknown._tag === "ApiError" && unknown.code, "Unknown")
    }))
})

describe("AccountsProtocol.deleteAccountRequest", () => {
  it.effect("DELETE permission-access/service/h:accountId, the account as a header, claims A, no body", () =>
    Effect.gen(function*() {
      const request = yield* AccountsProtocol.deleteAccountRequest({ ...credentials, accountId: "account-1" })
      assert.strictEqual(request.operation, "deleteAccount")
      assert.strictEqual(request.contractId, contractId)
      assert.strictEqual(request.request.method, "DELETE")
      assert.strictEqual(request.request.url, "permission-access/service/h:accountId")
      assert.deepStrictEqual({ ...request.request.headers }, {
        "content-type": "application/json",
        accountid: "account-1"
      })
      assert.strictEqual(request.request.body._tag, "Empty")
      assert.deepStrictEqual(request.claims, { access_token: "access-value" })
      assert.isTrue(request.idempotent)
    }))

  it.effect("bad options are InvalidOptions naming the field", () =>
    Effect.gen(function*() {
      const errors = yield* Effect.all([
        Effect.flip(AccountsProtocol.deleteAccountRequest({ ...credentials, accountId: "" })),
        Effect.flip(AccountsProtocol.deleteAccountRequest({ ...credentials, accountId: "a\nb" })),
        Effect.flip(AccountsProtocol.deleteAccountRequest({ ...credentials, contractId: "", accountId: "a" })),
        Effect.flip(
          AccountsProtocol.deleteAccountRequest({ contractId, accessToken: Redacted.make(""), accountId: "a" })
        )
      ])
      assert.deepStrictEqual(errors.map((error) => [error._tag, error.operation, error.field]), [
        ["InvalidOptions", "deleteAccount", "accountId"],
        ["InvalidOptions", "deleteAccount", "accountId"],
        ["InvalidOptions", "deleteAccount", "contractId"],
        ["InvalidOptions", "deleteAccount", "accessToken"]
      ])
    }))

  it.effect("processDeleteAccountResponse: any 2xx whatever its body; 401 InvalidToken is AccessTokenRejected", () =>
    Effect.gen(function*() {
      const request = yield* AccountsProtocol.deleteAccountRequest({ ...credentials, accountId: "account-1" })
      yield* AccountsProtocol.processDeleteAccountResponse(
        answerTo(request, 201, { deleted: true, response: {} }),
        request
      )
      yield* AccountsProtocol.processDeleteAccountResponse(answerTo(request, 204, ""), request)
      yield* AccountsProtocol.processDeleteAccountResponse(answerTo(request, 200, "not json"), request)
      const rejected = yield* Effect.flip(
        AccountsProtocol.processDeleteAccountResponse(answerTo(request, 401, invalidToken), request)
      )
      assert.strictEqual(rejected._tag, "AccessTokenRejected")
      assert.strictEqual(rejected._tag === "AccessTokenRejected" && rejected.operation, "deleteAccount")
      const other401 = yield* Effect.flip(
        AccountsProtocol.processDeleteAccountResponse(answerTo(request, 401, invalidRedirect), request)
      )
      assert.strictEqual(other401._tag, "ApiError")
      const notFound = yield* Effect.flip(AccountsProtocol.processDeleteAccountResponse(
        answerTo(request, 404, { error: { code: "AccountNotFound", message: "no such account", reference: "r-2" } }),
        request
      ))
      assert.strictEqual(notFound._tag === "ApiError" && notFound.code, "AccountNotFound")
      assert.strictEqual(notFound._tag === "ApiError" && notFound.reference, "r-2")
      const unknown = yield* Effect.flip(
        AccountsProtocol.processDeleteAccountResponse(answerTo(request, 500, ""), request)
      )
      assert.strictEqual(unknown._tag === "ApiError" && unknown.code, "Unknown")
    }))
})
