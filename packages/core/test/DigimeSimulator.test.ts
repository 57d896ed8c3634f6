import {
  AutoRefresh,
  DigimeClient,
  Signer,
  TokenKey,
  TokenManager,
  TokenProtocol,
  TokenStore,
  type UserAccessToken
} from "@digime-effect/core"
import { DigimeSimulator, DigimeTest, TestContract } from "@digime-effect/core/testing"
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import {
  Clock,
  DateTime,
  Effect,
  Either,
  Encoding,
  Fiber,
  HashMap,
  Inspectable,
  Layer,
  Logger,
  LogLevel,
  Option,
  Redacted,
  TestClock
} from "effect"

const applicationId = "app-1"
const contractId = "contract-1"
const clientId = `${applicationId}_${contractId}`
const baseUrl = "https://api.digi.me/v1.7/"
const callbackUrl = "https://app.example/digime/callback"
const agent = { sdk: { name: "simulator-test", version: "1.0.0", meta: { runtime: "vitest" } } }

const testContract = await Effect.runPromise(TestContract.make(contractId))
const pkcs8Contract = await Effect.runPromise(TestContract.make("contract-2", { format: "pkcs8" }))

const simulatorOptions: DigimeSimulator.Options = {
  applicationId,
  contracts: [
    { contractId, publicKeyPem: testContract.publicKeyPem },
    { contractId: "contract-2", publicKeyPem: pkcs8Contract.publicKeyPem }
  ]
}

const TestLayer = (options: Partial<DigimeSimulator.Options> = {}) =>
  Layer.merge(DigimeSimulator.layer({ ...simulatorOptions, ...options }), Signer.layerWebCrypto)

// --- helpers ---------------------------------------------------------------------------------

const alphanumeric = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
const makeNonce = () => Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => alphanumeric[b % 62]).join("")
const utf8 = new TextEncoder()
const segment = (value: unknown) => Encoding.encodeBase64Url(JSON.stringify(value))
const decodeSegment = (value: string): any =>
  JSON.parse(new TextDecoder().decode(Either.getOrThrow(Encoding.decodeBase64Url(value))))
/** A body of the handler as text (JSON answers are strings; files are bytes). */
const textOf = (body: string | Uint8Array): string => typeof body === "string" ? body : new TextDecoder().decode(body)
const decodeJwt = (jwt: string) => {
  const [header, payload, signature] = jwt.split(".")
  return { header: decodeSegment(header!), payload: decodeSegment(payload!), signature: signature! }
}

/** The claims every call carries, for the default contract, read from the Clock. */
const baseClaims = Effect.map(Clock.currentTimeMillis, (now) => ({
  client_id: clientId,
  nonce: makeNonce(),
  timestamp: now
}))

const sign = (claims: Record<string, unknown>, contract = testContract.contract) =>
  Effect.flatMap(Signer.Signer, (signer) => signer.sign(contract, claims)).pipe(Effect.map(Redacted.value))

interface Answer {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly json: any
}

/** Sends one request to the handler, with an assertion (as given) and an optional JSON body. */
const send = (
  method: string,
  path: string,
  jwt: string | undefined,
  body?: unknown,
  url = `${baseUrl}${path}`
) =>
  Effect.gen(function*() {
    const simulator = yield* DigimeSimulator.DigimeSimulator
    const response = yield* simulator.handle({
      method,
      url,
      headers: {
        ...(jwt === undefined ? {} : { authorization: `Bearer ${jwt}` }),
        ...(body === undefined ? {} : { "content-type": "application/json" })
      },
      body: body === undefined ? undefined : utf8.encode(JSON.stringify(body))
    })
    return {
      status: response.status,
      headers: response.headers,
      json: response.body.length === 0 ? undefined : JSON.parse(textOf(response.body))
    } satisfies Answer
  })

/** A correctly signed call: the common claims plus `claims`. */
const call = (method: string, path: string, claims: Record<string, unknown>, body?: unknown) =>
  Effect.gen(function*() {
    const jwt = yield* sign({ ...(yield* baseClaims), ...claims })
    return yield* send(method, path, jwt, body)
  })

const refreshExpired = "The token (refresh_token) is expired"
const refreshInvalid = "The token (refresh_token) is invalid"

const assertError = (answer: Answer, status: number, code: string, message?: string) => {
  assert.strictEqual(answer.status, status)
  assert.strictEqual(answer.json.error.code, code)
  if (message !== undefined) assert.strictEqual(answer.json.error.message, message)
  assert.isString(answer.json.error.reference)
  assert.strictEqual(answer.headers["x-error-code"], code)
  assert.strictEqual(answer.headers["x-error-reference"], answer.json.error.reference)
}

const pkce = Effect.promise(async () => {
  const verifier = Encoding.encodeBase64Url(makeNonce())
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", utf8.encode(verifier)))
  return { verifier, challenge: Encoding.encodeBase64Url(digest) }
})

const authorizeClaims = (challenge: string, extra: Record<string, unknown> = {}) => ({
  code_challenge: challenge,
  code_challenge_method: "S256",
  redirect_uri: callbackUrl,
  state: "state-1",
  response_mode: "query",
  response_type: "code",
  ...extra
})

/** authorize → consent: the callback's parameters and the verifier. */
const consented = (extra: Record<string, unknown> = {}) =>
  Effect.gen(function*() {
    const simulator = yield* DigimeSimulator.DigimeSimulator
    const { challenge, verifier } = yield* pkce
    const answer = yield* call("POST", "oauth/authorize", authorizeClaims(challenge, extra), { agent })
    assert.strictEqual(answer.status, 201)
    const code = decodeJwt(answer.json.token).payload.preauthorization_code
    const callback = new URL(yield* simulator.consent(`${simulator.onboardUrl}authorize?code=${code}&sourceType=pull`))
    return { callback, verifier, code: callback.searchParams.get("code")! }
  })

const exchange = (code: string, verifier: string) =>
  call("POST", "oauth/token", { grant_type: "authorization_code", code, code_verifier: verifier })

const refresh = (refreshToken: string) =>
  call("POST", "oauth/token", { grant_type: "refresh_token", refresh_token: refreshToken })

/** authorize → consent → exchange: the token payload. */
const authorized = Effect.gen(function*() {
  const { code, verifier, callback } = yield* consented()
  const answer = yield* exchange(code, verifier)
  assert.strictEqual(answer.status, 201)
  return {
    token: decodeJwt(answer.json.token).payload,
    accountReference: callback.searchParams.get("accountReference")
  }
})

const accounts = (accessToken: string) => call("GET", "permission-access/accounts", { access_token: accessToken })

// PKCS#1 RSAPublicKey → SPKI, to check the JWKS key with Web Crypto.
const derLength = (n: number) => n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff]
const tlv = (tag: number, content: Uint8Array) => Uint8Array.from([tag, ...derLength(content.length), ...content])
// AlgorithmIdentifier { rsaEncryption, NULL }
const rsaAlgorithm = Uint8Array.from([
  ...[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86],
  ...[0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00]
])
const pemBody = (pem: string) =>
  new Uint8Array(Either.getOrThrow(Encoding.decodeBase64(pem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, ""))))

const verifyWithJwks = (jwt: string, pem: string) =>
  Effect.promise(async () => {
    const pkcs1 = pemBody(pem)
    const spki = tlv(0x30, Uint8Array.from([...rsaAlgorithm, ...tlv(0x03, Uint8Array.from([0, ...pkcs1]))]))
    const key = await crypto.subtle.importKey("spki", spki, { name: "RSA-PSS", hash: "SHA-512" }, false, ["verify"])
    const cut = jwt.lastIndexOf(".")
    const signature = new Uint8Array(Either.getOrThrow(Encoding.decodeBase64Url(jwt.slice(cut + 1))))
    return crypto.subtle.verify({ name: "RSA-PSS", saltLength: 64 }, key, signature, utf8.encode(jwt.slice(0, cut)))
  })

// --- tests -----------------------------------------------------------------------------------

describe("TestContract", () => {
  it("makes PKCS#1 private keys by default, PKCS#8 on request, SPKI public keys", () => {
    assert.match(Redacted.value(testContract.contract.privateKey), /^-----BEGIN RSA PRIVATE KEY-----\n/)
    assert.match(Redacted.value(pkcs8Contract.contract.privateKey), /^-----BEGIN PRIVATE KEY-----\n/)
    assert.match(testContract.publicKeyPem, /^-----BEGIN PUBLIC KEY-----\n/)
    assert.strictEqual(testContract.contract.contractId, contractId)
    assert.notInclude(String(testContract.contract.privateKey), "BEGIN")
  })
})

describe("DigimeSimulator: JWKS and signed answers", () => {
  it.effect("serves one PKCS#1 key; answers are PS512 tokens with jku and kid that verify against it", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      assert.strictEqual(simulator.jwksUrl, `${baseUrl}jwks/oauth`)
      const jwks = yield* send("GET", "", undefined, undefined, simulator.jwksUrl)
      assert.strictEqual(jwks.status, 200)
      assert.lengthOf(jwks.json.keys, 1)
      const [key] = jwks.json.keys
      assert.deepStrictEqual(Object.keys(key).sort(), ["kid", "pem"])
      assert.match(key.pem, /^-----BEGIN RSA PUBLIC KEY-----\n[\s\S]+-----END RSA PUBLIC KEY-----\n$/)

      const { challenge } = yield* pkce
      const answer = yield* call("POST", "oauth/authorize", authorizeClaims(challenge), { agent })
      assert.strictEqual(answer.status, 201)
      assert.isNumber(answer.json.session.expiry)
      assert.isString(answer.json.session.key)
      const { header, payload } = decodeJwt(answer.json.token)
      assert.deepStrictEqual(header, { alg: "PS512", typ: "JWT", jku: simulator.jwksUrl, kid: key.kid })
      assert.deepStrictEqual(Object.keys(payload), ["preauthorization_code"])
      assert.isTrue(yield* verifyWithJwks(answer.json.token, key.pem))

      yield* simulator.rotateSigningKey
      const rotated = yield* send("GET", "", undefined, undefined, simulator.jwksUrl)
      assert.lengthOf(rotated.json.keys, 1)
      assert.notStrictEqual(rotated.json.keys[0].kid, key.kid)
      assert.strictEqual((yield* simulator.stats).requests.jwks, 2)
    }).pipe(Effect.provide(TestLayer())))

  it.effect("unknown paths are 404, a wrong method is 405", () =>
    Effect.gen(function*() {
      assertError(yield* call("POST", "oauth/nothing", {}), 404, "NotFound")
      assertError(yield* call("GET", "oauth/token", {}), 405, "MethodNotAllowed")
      assertError(yield* send("GET", "", undefined, undefined, "https://evil.example/v1.7/jwks/oauth"), 404, "NotFound")
      const recorded = yield* Effect.flatMap(DigimeSimulator.DigimeSimulator, (s) => s.requests)
      assert.deepStrictEqual(recorded.map((r) => [r.endpoint, r.status]), [["unknown", 404], ["token", 405], [
        "unknown",
        404
      ]])
    }).pipe(Effect.provide(TestLayer())))
})

describe("DigimeSimulator: the token lifecycle through handle", () => {
  it.effect("authorize → consent → exchange → accounts → refresh → trigger → delete", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { callback, code, verifier } = yield* consented()
      assert.strictEqual(`${callback.origin}${callback.pathname}`, callbackUrl)
      assert.deepStrictEqual([...callback.searchParams.keys()], ["success", "state", "code", "accountReference"])
      assert.strictEqual(callback.searchParams.get("success"), "true")
      assert.strictEqual(callback.searchParams.get("state"), "state-1")

      const exchanged = yield* exchange(code, verifier)
      assert.strictEqual(exchanged.status, 201)
      assert.deepStrictEqual(Object.keys(exchanged.json), ["token"])
      const token = decodeJwt(exchanged.json.token).payload
      assert.match(token.access_token.value, /^[A-Za-z0-9_-]{32,}$/)
      assert.match(token.refresh_token.value, /^[A-Za-z0-9_-]{32,}$/)
      // Seconds since the epoch: the TestClock starts at 0.
      assert.strictEqual(token.access_token.expires_on, 3600)
      assert.strictEqual(token.refresh_token.expires_on, 30 * 24 * 3600)
      assert.isString(token.sub)
      assert.isString(token.consentid)
      assert.deepStrictEqual(token.identifier, { id: token.sub })
      assert.strictEqual(token.token_type, "Bearer")
      assert.isUndefined(token.iat)
      assert.isUndefined(token.exp)

      const listed = yield* accounts(token.access_token.value)
      assert.strictEqual(listed.status, 202)
      assert.isArray(listed.json)
      assert.strictEqual(listed.json[0].reference, callback.searchParams.get("accountReference"))
      const fields = ["id", "type", "createdDate", "updatedDate", "serviceGroupId", "serviceTypeName", "sourceId"]
      for (const field of fields) {
        assert.property(listed.json[0], field)
      }

      yield* TestClock.adjust("10 minutes")
      const refreshed = yield* refresh(token.refresh_token.value)
      assert.strictEqual(refreshed.status, 201)
      const next = decodeJwt(refreshed.json.token).payload
      assert.notStrictEqual(next.access_token.value, token.access_token.value)
      assert.notStrictEqual(next.refresh_token.value, token.refresh_token.value)
      assert.strictEqual(next.access_token.expires_on, 600 + 3600)
      assert.strictEqual(next.sub, token.sub)
      // The old access token stays valid until it expires.
      assert.strictEqual((yield* accounts(token.access_token.value)).status, 202)

      const trigger = yield* call("POST", "permission-access/trigger", { access_token: next.access_token.value }, {
        agent,
        limits: { duration: { sourceFetch: 60 } }
      })
      assert.strictEqual(trigger.status, 202)
      assert.isString(trigger.json.session.key)

      const deleted = yield* call("DELETE", "user", { access_token: next.access_token.value })
      assert.strictEqual(deleted.status, 201)
      assert.deepStrictEqual(deleted.json, {})
      assertError(yield* accounts(next.access_token.value), 401, "InvalidToken", "The token (access_token) is invalid")
      assertError(yield* refresh(next.refresh_token.value), 401, "InvalidToken", "The token (refresh_token) is invalid")

      const stats = yield* simulator.stats
      assert.deepStrictEqual(stats.requests, {
        authorize: 1,
        token: 3,
        reference: 0,
        trigger: 1,
        accounts: 3,
        deleteUser: 1,
        jwks: 0,
        fileList: 0,
        file: 0,
        fileMetadata: 0,
        push: 0,
        pushProvider: 0,
        accountReference: 0,
        revokeAccount: 0,
        deleteAccount: 0,
        discovery: 0,
        sampleDatasets: 0,
        contract: 0,
        report: 0
      })
      assert.strictEqual(stats.exchanges, 1)
      assert.strictEqual(stats.refreshes, 1)
      assert.strictEqual(stats.revocations, 1)
      assert.strictEqual(stats.rejectedAssertions, 0)
    }).pipe(Effect.provide(TestLayer())))

  it.effect("access expiry, refresh expiry by the Clock, then reauthorization with the expired access token", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { token } = yield* authorized
      yield* TestClock.adjust("1 hour")
      assertError(yield* accounts(token.access_token.value), 401, "InvalidToken", "The token (access_token) is invalid")
      yield* TestClock.adjust("30 days")
      assertError(yield* refresh(token.refresh_token.value), 401, "InvalidToken", refreshExpired)
      // The family is kept: the expired token is still "expired", not "invalid".
      assertError(yield* refresh(token.refresh_token.value), 401, "InvalidToken", refreshExpired)

      const { challenge, verifier } = yield* pkce
      const reference = yield* call("POST", "oauth/token/reference", {
        access_token: token.access_token.value,
        code_challenge: challenge,
        code_challenge_method: "S256",
        redirect_uri: callbackUrl
      }, { agent })
      assert.strictEqual(reference.status, 201)
      const referenceCode = decodeJwt(reference.json.token).payload.reference_code
      const callback = new URL(yield* simulator.consent(`${simulator.onboardUrl}user-reauth?code=${referenceCode}`))
      assert.deepStrictEqual([...callback.searchParams.keys()], ["success", "code"])
      const renewed = yield* exchange(callback.searchParams.get("code")!, verifier)
      assert.strictEqual(renewed.status, 201)
      const next = decodeJwt(renewed.json.token).payload
      assert.strictEqual(next.sub, token.sub)
      assert.strictEqual((yield* accounts(next.access_token.value)).status, 202)
      // The previous family was revoked by the reauthorization.
      assertError(yield* refresh(token.refresh_token.value), 401, "InvalidToken", refreshInvalid)
      assert.strictEqual((yield* simulator.stats).exchanges, 2)
    }).pipe(Effect.provide(TestLayer())))

  it.effect("fixed refresh expiry: a refreshed refresh token inherits the family's expiry", () =>
    Effect.gen(function*() {
      const { token } = yield* authorized
      yield* TestClock.adjust("1 day")
      const next = decodeJwt((yield* refresh(token.refresh_token.value)).json.token).payload
      assert.strictEqual(next.refresh_token.expires_on, token.refresh_token.expires_on)
    }).pipe(Effect.provide(TestLayer({ refreshTokenExpiry: "fixed" }))))

  it.effect("strict rotation: a rotated refresh token presented again revokes the whole family", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { token } = yield* authorized
      const next = decodeJwt((yield* refresh(token.refresh_token.value)).json.token).payload
      assertError(yield* refresh(token.refresh_token.value), 401, "InvalidToken", refreshInvalid)
      assertError(yield* refresh(next.refresh_token.value), 401, "InvalidToken", "The token (refresh_token) is invalid")
      assertError(yield* accounts(next.access_token.value), 401, "InvalidToken")
      const stats = yield* simulator.stats
      assert.strictEqual(stats.refreshes, 1)
      assert.strictEqual(stats.replays, 1)
      assert.strictEqual(stats.revocations, 1)
    }).pipe(Effect.provide(TestLayer())))

  it.effect("without strict rotation a rotated refresh token is accepted again", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { token } = yield* authorized
      assert.strictEqual((yield* refresh(token.refresh_token.value)).status, 201)
      assert.strictEqual((yield* refresh(token.refresh_token.value)).status, 201)
      const stats = yield* simulator.stats
      assert.strictEqual(stats.refreshes, 2)
      assert.strictEqual(stats.replays, 0)
    }).pipe(Effect.provide(TestLayer({ strictRotation: false }))))

  it.effect("authorization codes are single use, expire, and need the matching verifier", () =>
    Effect.gen(function*() {
      const first = yield* consented()
      assert.strictEqual((yield* exchange(first.code, first.verifier)).status, 201)
      assertError(yield* exchange(first.code, first.verifier), 400, "InvalidGrant")

      const second = yield* consented()
      const { verifier: otherVerifier } = yield* pkce
      const mismatch = yield* exchange(second.code, otherVerifier)
      assertError(mismatch, 400, "InvalidGrant", "The code_verifier does not match the code_challenge")

      const third = yield* consented()
      yield* TestClock.adjust("11 minutes")
      assertError(yield* exchange(third.code, third.verifier), 400, "InvalidGrant", "The authorization code is expired")
      assertError(yield* exchange("no-such-code", third.verifier), 400, "InvalidGrant")
      assert.strictEqual((yield* Effect.flatMap(DigimeSimulator.DigimeSimulator, (s) => s.stats)).exchanges, 1)
    }).pipe(Effect.provide(TestLayer())))

  it.effect("an access token passed to authorize links the new authorization to its user", () =>
    Effect.gen(function*() {
      const { token } = yield* authorized
      const { code, verifier } = yield* consented({ access_token: token.access_token.value })
      const linked = decodeJwt((yield* exchange(code, verifier)).json.token).payload
      assert.strictEqual(linked.sub, token.sub)
    }).pipe(Effect.provide(TestLayer())))

  it.effect("consent: Deny, unknown and used codes", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { challenge } = yield* pkce
      const answer = yield* call("POST", "oauth/authorize", authorizeClaims(challenge), { agent })
      const url = `${simulator.onboardUrl}authorize?code=${decodeJwt(answer.json.token).payload.preauthorization_code}`
      const denied = new URL(yield* simulator.consent(url, { allow: false }))
      assert.strictEqual(denied.searchParams.get("success"), "false")
      assert.strictEqual(denied.searchParams.get("errorCode"), "AccessDenied")
      assert.strictEqual(denied.searchParams.get("state"), "state-1")
      assert.isNull(denied.searchParams.get("code"))
      const used = yield* Effect.flip(simulator.consent(url))
      assert.strictEqual(used._tag, "SimulatorError")
      const unknown = yield* Effect.flip(simulator.consent(`${simulator.onboardUrl}authorize?code=nope`))
      assert.strictEqual(unknown._tag, "SimulatorError")
    }).pipe(Effect.provide(TestLayer())))

  it.effect("records requests with secret claims redacted", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { token } = yield* authorized
      yield* refresh(token.refresh_token.value)
      const recorded = yield* simulator.requests
      assert.deepStrictEqual(recorded.map((r) => [r.endpoint, r.method, r.path, r.status]), [
        ["authorize", "POST", "/v1.7/oauth/authorize", 201],
        ["token", "POST", "/v1.7/oauth/token", 201],
        ["token", "POST", "/v1.7/oauth/token", 201]
      ])
      assert.strictEqual(recorded[1]!.claims!.code, "<redacted>")
      assert.strictEqual(recorded[1]!.claims!.code_verifier, "<redacted>")
      assert.strictEqual(recorded[2]!.claims!.refresh_token, "<redacted>")
      assert.strictEqual(recorded[2]!.claims!.grant_type, "refresh_token")
      assert.notInclude(JSON.stringify(recorded), token.refresh_token.value)
    }).pipe(Effect.provide(TestLayer())))
})

describe("DigimeSimulator: client assertions", () => {
  it.effect("a signature that does not verify: 406 ValidationErrors", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const jwt = yield* sign({ ...(yield* baseClaims), access_token: "x" })
      const [header, payload, signature] = jwt.split(".")
      const flipped = `${signature!.slice(0, 10)}${signature![10] === "A" ? "B" : "A"}${signature!.slice(11)}`
      assertError(
        yield* send("GET", "permission-access/accounts", `${header}.${payload}.${flipped}`),
        406,
        "ValidationErrors",
        "Parameter validation errors"
      )
      // Signed by another contract's key.
      const foreign = yield* sign({ ...(yield* baseClaims), access_token: "x" }, pkcs8Contract.contract)
      assertError(yield* send("GET", "permission-access/accounts", foreign), 406, "ValidationErrors")
      assertError(yield* send("GET", "permission-access/accounts", undefined), 406, "ValidationErrors")
      assertError(yield* send("GET", "permission-access/accounts", "not.a-jwt"), 406, "ValidationErrors")
      assert.strictEqual((yield* simulator.stats).rejectedAssertions, 4)
    }).pipe(Effect.provide(TestLayer())))

  it.effect("the salt must be 64 bytes: a Web Crypto signature with salt 190 is refused, salt 64 accepted", () =>
    Effect.gen(function*() {
      const key = yield* Effect.promise(() =>
        crypto.subtle.importKey(
          "pkcs8",
          pemBody(Redacted.value(pkcs8Contract.contract.privateKey)),
          { name: "RSA-PSS", hash: "SHA-512" },
          false,
          ["sign"]
        )
      )
      const signWithSalt = (saltLength: number) =>
        Effect.gen(function*() {
          const claims = { ...(yield* baseClaims), client_id: `${applicationId}_contract-2`, access_token: "x" }
          const input = `${segment({ alg: "PS512", typ: "JWT" })}.${segment(claims)}`
          const signature = yield* Effect.promise(() =>
            crypto.subtle.sign({ name: "RSA-PSS", saltLength }, key, utf8.encode(input))
          )
          return `${input}.${Encoding.encodeBase64Url(new Uint8Array(signature))}`
        })
      assertError(yield* send("GET", "permission-access/accounts", yield* signWithSalt(190)), 406, "ValidationErrors")
      // Salt 64 passes the assertion check and reaches the token check.
      assertError(yield* send("GET", "permission-access/accounts", yield* signWithSalt(64)), 401, "InvalidToken")
    }).pipe(Effect.provide(TestLayer())))

  it.effect("the header must be exactly {alg: PS512, typ: JWT}", () =>
    Effect.gen(function*() {
      const claims = { ...(yield* baseClaims), access_token: "x" }
      const valid = yield* sign(claims)
      const [, payload, signature] = valid.split(".")
      for (const header of [{ alg: "RS256", typ: "JWT" }, { alg: "PS512", typ: "JWT", kid: "k" }, { alg: "none" }]) {
        assertError(
          yield* send("GET", "permission-access/accounts", `${segment(header)}.${payload}.${signature}`),
          406,
          "ValidationErrors"
        )
      }
    }).pipe(Effect.provide(TestLayer())))

  it.effect("unknown client_id: 401 InvalidClient", () =>
    Effect.gen(function*() {
      const jwt = yield* sign({ ...(yield* baseClaims), client_id: "app-1_contract-9", access_token: "x" })
      assertError(
        yield* send("GET", "permission-access/accounts", jwt),
        401,
        "InvalidClient",
        "The client_id (app-1_contract-9) is invalid"
      )
    }).pipe(Effect.provide(TestLayer())))

  it.effect("a nonce used twice: 406 InvalidRequest", () =>
    Effect.gen(function*() {
      const claims = { ...(yield* baseClaims), access_token: "x" }
      assertError(yield* send("GET", "permission-access/accounts", yield* sign(claims)), 401, "InvalidToken")
      assertError(
        yield* send("GET", "permission-access/accounts", yield* sign(claims)),
        406,
        "InvalidRequest",
        `The nonce provided in JWT payload (${claims.nonce}) has already been used`
      )
      assertError(yield* call("GET", "permission-access/accounts", { nonce: "short" }), 406, "ValidationErrors")
    }).pipe(Effect.provide(TestLayer())))

  it.effect("timestamp outside the allowed age: 406 ValidationErrors", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust("1 hour")
      const now = yield* Clock.currentTimeMillis
      const stale = yield* call("GET", "permission-access/accounts", { access_token: "x", timestamp: now - 6 * 60_000 })
      assertError(stale, 406, "ValidationErrors")
      const future = yield* call("GET", "permission-access/accounts", {
        access_token: "x",
        timestamp: now + 6 * 60_000
      })
      assertError(future, 406, "ValidationErrors")
      const seconds = yield* call("GET", "permission-access/accounts", {
        access_token: "x",
        timestamp: now / 1000 + 0.5
      })
      assertError(seconds, 406, "ValidationErrors")
      assertError(yield* call("GET", "permission-access/accounts", { access_token: "x" }), 401, "InvalidToken")
    }).pipe(Effect.provide(TestLayer())))

  it.effect("an unknown claim or a missing one: 400 ValidationErrors", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { challenge } = yield* pkce
      const extra = yield* call("POST", "oauth/authorize", authorizeClaims(challenge, { iat: 1 }), { agent })
      assertError(extra, 400, "ValidationErrors", "Parameter validation errors")
      const { state: _state, ...withoutState } = authorizeClaims(challenge)
      assertError(yield* call("POST", "oauth/authorize", withoutState, { agent }), 400, "ValidationErrors")
      const badMethod = authorizeClaims(challenge, { code_challenge_method: "plain" })
      assertError(yield* call("POST", "oauth/authorize", badMethod, { agent }), 400, "ValidationErrors")
      const relative = authorizeClaims(challenge, { redirect_uri: "/callback" })
      assertError(yield* call("POST", "oauth/authorize", relative, { agent }), 400, "ValidationErrors")
      // response_mode belongs to authorize only.
      const dataWithExtra = yield* call("GET", "permission-access/accounts", {
        access_token: "x",
        response_mode: "query"
      })
      assertError(dataWithExtra, 400, "ValidationErrors")
      assertError(yield* call("POST", "oauth/token", { grant_type: "refresh_token" }), 400, "ValidationErrors")
      const password = yield* call("POST", "oauth/token", { grant_type: "password", refresh_token: "x" })
      assertError(password, 400, "ValidationErrors")
      const recorded = yield* simulator.requests
      assert.deepStrictEqual(recorded.slice(0, 2).map((r) => r.problem), [
        "unexpected claim: iat",
        "missing claim: state"
      ])
    }).pipe(Effect.provide(TestLayer())))

  it.effect("bodies: agent.sdk required, token calls take none, trigger options at the top level", () =>
    Effect.gen(function*() {
      const { challenge } = yield* pkce
      const claims = authorizeClaims(challenge)
      assertError(yield* call("POST", "oauth/authorize", claims, {}), 400, "SDKInvalid", "The SDK is invalid")
      assertError(yield* call("POST", "oauth/authorize", claims, { agent: { sdk: { name: "x" } } }), 400, "SDKInvalid")
      assertError(yield* call("POST", "oauth/authorize", claims), 400, "ValidationErrors")
      assertError(yield* call("POST", "oauth/authorize", claims, { agent, extra: 1 }), 400, "ValidationErrors")
      const withActions = yield* call("POST", "oauth/authorize", claims, { agent, actions: { pull: { limits: {} } } })
      assert.strictEqual(withActions.status, 201)

      const { token } = yield* authorized
      const refreshWithBody = yield* call("POST", "oauth/token", {
        grant_type: "refresh_token",
        refresh_token: token.refresh_token.value
      }, {})
      assertError(refreshWithBody, 400, "ValidationErrors")
      const wrapped = yield* call("POST", "permission-access/trigger", { access_token: token.access_token.value }, {
        agent,
        actions: { pull: {} }
      })
      assertError(wrapped, 400, "ValidationErrors")
      const noAgent = yield* call("POST", "permission-access/trigger", { access_token: token.access_token.value }, {
        limits: {}
      })
      assertError(noAgent, 400, "SDKInvalid")
    }).pipe(Effect.provide(TestLayer())))
})

describe("DigimeSimulator: faults and the HttpClient adapter", () => {
  it.effect("TamperToken: the answer carries a bad token, the request is processed", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const pem = (yield* send("GET", "", undefined, undefined, simulator.jwksUrl)).json.keys[0].pem
      const { code, verifier } = yield* consented()

      yield* simulator.injectFault({ _tag: "TamperToken", tamper: "BadSignature" })
      const bad = yield* exchange(code, verifier)
      assert.strictEqual(bad.status, 201)
      assert.isFalse(yield* verifyWithJwks(bad.json.token, pem))
      // Processed: the code is spent and the exchange counted.
      assert.strictEqual((yield* simulator.stats).exchanges, 1)
      assertError(yield* exchange(code, verifier), 400, "InvalidGrant")

      const tokenOf = (tamper: Extract<DigimeSimulator.Fault, { readonly _tag: "TamperToken" }>) =>
        Effect.gen(function*() {
          yield* simulator.injectFault(tamper)
          const { challenge } = yield* pkce
          return (yield* call("POST", "oauth/authorize", authorizeClaims(challenge), { agent })).json.token as string
        })
      assert.strictEqual(decodeJwt(yield* tokenOf({ _tag: "TamperToken", tamper: "AlgNone" })).header.alg, "none")
      assert.strictEqual(decodeJwt(yield* tokenOf({ _tag: "TamperToken", tamper: "AlgRS256" })).header.alg, "RS256")
      assert.strictEqual(
        new URL(decodeJwt(yield* tokenOf({ _tag: "TamperToken", tamper: "ForeignJku" })).header.jku).origin,
        "https://evil.example"
      )
      assert.notProperty(decodeJwt(yield* tokenOf({ _tag: "TamperToken", tamper: "MissingJku" })).header, "jku")
      assert.isNumber(decodeJwt(yield* tokenOf({ _tag: "TamperToken", tamper: "Expired" })).payload.exp)
      assert.deepStrictEqual(decodeJwt(yield* tokenOf({ _tag: "TamperToken", tamper: "MissingFields" })).payload, {})
      assert.notInclude(yield* tokenOf({ _tag: "TamperToken", tamper: "Garbage" }), ".")
      const unknownKid = yield* tokenOf({ _tag: "TamperToken", tamper: "UnknownKid" })
      assert.notStrictEqual(decodeJwt(unknownKid).header.kid, decodeJwt(bad.json.token).header.kid)
      assert.isFalse(yield* verifyWithJwks(unknownKid, pem))
      // One-shot: the next token is sound again.
      const { challenge } = yield* pkce
      const sound = (yield* call("POST", "oauth/authorize", authorizeClaims(challenge), { agent })).json.token
      assert.isTrue(yield* verifyWithJwks(sound, pem))
    }).pipe(Effect.provide(TestLayer())))

  it.effect("through HttpClient: Status answers without processing, DropResponse processes then fails", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const client = yield* HttpClient.HttpClient
      const { token } = yield* authorized
      const refreshRequest = Effect.gen(function*() {
        const jwt = yield* sign({
          ...(yield* baseClaims),
          grant_type: "refresh_token",
          refresh_token: token.refresh_token.value
        })
        return HttpClientRequest.post(`${baseUrl}oauth/token`).pipe(HttpClientRequest.bearerToken(jwt))
      })

      yield* simulator.injectFault({ _tag: "Status", endpoint: "token", status: 503 })
      const unavailable = yield* client.execute(yield* refreshRequest)
      assert.strictEqual(unavailable.status, 503)
      assert.strictEqual(((yield* unavailable.json) as any).error.code, "SimulatedFault")
      assert.strictEqual((yield* simulator.stats).refreshes, 0)

      yield* simulator.injectFault({ _tag: "DropResponse", endpoint: "token" })
      const dropped = yield* Effect.flip(client.execute(yield* refreshRequest))
      assert.strictEqual(dropped._tag, "RequestError")
      assert.strictEqual(dropped._tag === "RequestError" && dropped.reason, "Transport")
      assert.strictEqual((yield* simulator.stats).refreshes, 1)

      // The token was rotated: presenting it again is a replay.
      const replay = yield* client.execute(yield* refreshRequest)
      assert.strictEqual(replay.status, 401)
      assert.strictEqual(replay.headers["x-error-code"], "InvalidToken")
      assert.strictEqual((yield* simulator.stats).replays, 1)

      // A JSON body built by the platform arrives with its content type.
      const { challenge } = yield* pkce
      const jwt = yield* sign({ ...(yield* baseClaims), ...authorizeClaims(challenge) })
      const authorize = yield* HttpClientRequest.post(`${baseUrl}oauth/authorize`).pipe(
        HttpClientRequest.bearerToken(jwt),
        HttpClientRequest.bodyJson({ agent }),
        Effect.flatMap(client.execute)
      )
      assert.strictEqual(authorize.status, 201)
    }).pipe(Effect.provide(TestLayer())))

  it.effect("latency and Delay faults run on the caller's Clock", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      yield* simulator.injectFault({ _tag: "Delay", endpoint: "jwks", delay: "5 seconds" })
      const fiber = yield* Effect.fork(send("GET", "", undefined, undefined, simulator.jwksUrl))
      yield* TestClock.adjust("6 seconds")
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* Fiber.join(fiber)).status, 200)
    }).pipe(Effect.provide(TestLayer({ latency: "2 seconds" }))))
})

describe("DigimeSimulator: run-time contracts, consent descriptions, failEvery, grant drops", () => {
  it.effect("failEvery answers every nth API request with the status, without processing it", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const statuses: Array<number> = []
      for (let i = 0; i < 6; i++) {
        const answer = yield* send("GET", "", undefined, undefined, simulator.jwksUrl)
        statuses.push(answer.status)
        if (answer.status === 503) assertError(answer, 503, "SimulatedFault")
      }
      // Unknown paths are not API requests: they neither count nor fail.
      assert.strictEqual((yield* send("GET", "nowhere", undefined)).status, 404)
      statuses.push((yield* send("GET", "", undefined, undefined, simulator.jwksUrl)).status)
      assert.deepStrictEqual(statuses, [200, 200, 503, 200, 200, 503, 200])
      const recorded = yield* simulator.requests
      assert.strictEqual(recorded.filter((request) => request.problem?.startsWith("failEvery") === true).length, 2)
    }).pipe(Effect.provide(TestLayer({ failEvery: { nth: 3, status: 503 } }))))

  it.effect("failEvery must name a positive nth and a 5xx status", () =>
    Effect.gen(function*() {
      for (const failEvery of [{ nth: 0, status: 503 }, { nth: 2, status: 404 }]) {
        const exit = yield* Effect.exit(DigimeSimulator.make({ ...simulatorOptions, failEvery }))
        assert.isTrue(exit._tag === "Failure")
      }
    }))

  it.effect("DropResponse with a grant waits for the next successful answer of that grant", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const handleRaw = (claims: Record<string, unknown>) =>
        Effect.gen(function*() {
          const jwt = yield* sign({ ...(yield* baseClaims), ...claims })
          return yield* simulator.handle({
            method: "POST",
            url: `${baseUrl}oauth/token`,
            headers: { authorization: `Bearer ${jwt}` },
            body: undefined
          })
        })
      yield* simulator.injectFault({ _tag: "DropResponse", endpoint: "token", grant: "refresh_token" })
      // An exchange and a failed refresh leave the fault in place.
      const { code, verifier } = yield* consented()
      const exchanged = yield* handleRaw({ grant_type: "authorization_code", code, code_verifier: verifier })
      assert.strictEqual(exchanged.status, 201)
      assert.isUndefined(exchanged.dropConnection)
      const token = decodeJwt(JSON.parse(textOf(exchanged.body)).token).payload
      const unknown = yield* handleRaw({ grant_type: "refresh_token", refresh_token: "unknown" })
      assert.strictEqual(unknown.status, 401)
      assert.isUndefined(unknown.dropConnection)
      // The successful refresh is processed (rotated), then its answer dropped.
      const dropped = yield* handleRaw({ grant_type: "refresh_token", refresh_token: token.refresh_token.value })
      assert.strictEqual(dropped.status, 201)
      assert.isTrue(dropped.dropConnection)
      assert.strictEqual((yield* simulator.stats).refreshes, 1)
      // One-shot.
      const next = decodeJwt(JSON.parse(textOf(dropped.body)).token).payload
      const again = yield* handleRaw({ grant_type: "refresh_token", refresh_token: next.refresh_token.value })
      assert.strictEqual(again.status, 201)
      assert.isUndefined(again.dropConnection)
    }).pipe(Effect.provide(TestLayer())))

  it.effect("registerContract makes a contract known at run time; bad keys and ids are refused", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const late = yield* TestContract.make("contract-late")
      const claims = Effect.map(baseClaims, (claims) => ({ ...claims, client_id: `${applicationId}_contract-late` }))
      const jwks = (yield* send("GET", "", undefined, undefined, simulator.jwksUrl)).status
      assert.strictEqual(jwks, 200)
      const { challenge } = yield* pkce
      const before = yield* send(
        "POST",
        "oauth/authorize",
        yield* sign({ ...(yield* claims), ...authorizeClaims(challenge) }, late.contract),
        { agent }
      )
      assertError(before, 401, "InvalidClient")
      yield* simulator.registerContract("contract-late", late.publicKeyPem)
      const after = yield* send(
        "POST",
        "oauth/authorize",
        yield* sign({ ...(yield* claims), ...authorizeClaims(challenge) }, late.contract),
        { agent }
      )
      assert.strictEqual(after.status, 201)
      const bad = yield* Effect.flip(simulator.registerContract("contract-bad", "not a pem"))
      assert.strictEqual(bad._tag, "SimulatorError")
      const empty = yield* Effect.flip(simulator.registerContract(" ", late.publicKeyPem))
      assert.strictEqual(empty._tag, "SimulatorError")
    }).pipe(Effect.provide(TestLayer())))

  it.effect("describeConsent reads an onboarding URL without using its code", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { challenge } = yield* pkce
      const answer = yield* call("POST", "oauth/authorize", authorizeClaims(challenge), { agent })
      const code = decodeJwt(answer.json.token).payload.preauthorization_code
      const url = `${simulator.onboardUrl}authorize?code=${code}&sourceType=pull`
      const described = yield* simulator.describeConsent(url)
      assert.deepStrictEqual(described, { kind: "authorize", applicationId, contractId, redirectUri: callbackUrl })
      assert.strictEqual(yield* simulator.describeConsent(url).pipe(Effect.map((d) => d.kind)), "authorize")
      yield* simulator.consent(url)
      assert.include((yield* Effect.flip(simulator.describeConsent(url))).reason, "already used")
      const unknown = yield* Effect.flip(simulator.describeConsent(`${simulator.onboardUrl}authorize?code=x`))
      assert.include(unknown.reason, "unknown")
      // A reauthorization's URL.
      const { token } = yield* authorized
      const reference = yield* call("POST", "oauth/token/reference", {
        access_token: token.access_token.value,
        code_challenge: challenge,
        code_challenge_method: "S256",
        redirect_uri: callbackUrl
      }, { agent })
      const referenceCode = decodeJwt(reference.json.token).payload.reference_code
      const reauthUrl = `${simulator.onboardUrl}user-reauth?code=${referenceCode}`
      const reauth = yield* simulator.describeConsent(reauthUrl)
      assert.strictEqual(reauth.kind, "reauth")
      assert.strictEqual(reauth.contractId, contractId)
      // Expired after 10 minutes.
      yield* TestClock.adjust("11 minutes")
      const expired = yield* Effect.flip(simulator.describeConsent(reauthUrl))
      assert.include(expired.reason, "expired")
    }).pipe(Effect.provide(TestLayer())))
})

describe("DigimeSimulator: grant", () => {
  it.effect("grants a token to a new user of the contract without a request; it reads accounts and refreshes", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      yield* TestClock.adjust("1 hour")
      const token = yield* simulator.grant({ contractId })
      // The configured lifetimes (1 hour, 30 days), from the Clock.
      assert.strictEqual(DateTime.toEpochMillis(token.accessToken.expiresAt), 2 * 3600 * 1000)
      assert.strictEqual(DateTime.toEpochMillis(token.refreshToken.expiresAt), 3600 * 1000 + 30 * 24 * 3600 * 1000)
      assert.isString(token.digimeUserId)
      assert.isString(token.consentId)
      // No request, no exchange.
      assert.lengthOf(yield* simulator.requests, 0)
      assert.strictEqual((yield* simulator.stats).exchanges, 0)

      const listed = yield* accounts(Redacted.value(token.accessToken.value))
      assert.strictEqual(listed.status, 202)
      assert.lengthOf(listed.json, 1)

      const refreshed = yield* refresh(Redacted.value(token.refreshToken.value))
      assert.strictEqual(refreshed.status, 201)
      const next = decodeJwt(refreshed.json.token).payload
      assert.strictEqual(next.sub, token.digimeUserId)
      assert.strictEqual((yield* accounts(next.access_token.value)).status, 202)
      assert.strictEqual((yield* simulator.stats).refreshes, 1)

      // Each grant is a new user.
      const other = yield* simulator.grant({ contractId: "contract-2" })
      assert.notStrictEqual(other.digimeUserId, token.digimeUserId)
    }).pipe(Effect.provide(TestLayer())))

  it.effect("an unknown contract fails with SimulatorError", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const error = yield* Effect.flip(simulator.grant({ contractId: "contract-9" }))
      assert.strictEqual(error._tag, "SimulatorError")
      assert.include(error.reason, "contract-9")
      assert.strictEqual((yield* simulator.stats).exchanges, 0)
    }).pipe(Effect.provide(TestLayer())))
})

describe("DigimeSimulator: refusals name the claim or the field", () => {
  it.effect("records one problem per issue of the claim set or the body", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const { challenge } = yield* pkce
      const claims = authorizeClaims(challenge)
      const token = yield* simulator.grant({ contractId })
      const accessToken = Redacted.value(token.accessToken.value)
      assertError(
        yield* call("POST", "oauth/authorize", { ...claims, code_challenge_method: "plain" }, { agent }),
        400,
        "ValidationErrors"
      )
      assertError(yield* exchange("some-code", "too-short"), 400, "ValidationErrors")
      assertError(yield* call("POST", "oauth/authorize", claims, { agent, extra: 1 }), 400, "ValidationErrors")
      assertError(yield* call("POST", "oauth/authorize", claims, {}), 400, "SDKInvalid")
      assertError(yield* call("POST", "oauth/authorize", claims, [agent]), 400, "ValidationErrors")
      assertError(yield* call("POST", "oauth/authorize", claims), 400, "ValidationErrors")
      const wrapped = { agent, actions: { pull: {} } }
      const trigger = yield* call("POST", "permission-access/trigger", { access_token: accessToken }, wrapped)
      assertError(trigger, 400, "ValidationErrors")
      assert.deepStrictEqual((yield* simulator.requests).map((r) => r.problem), [
        "invalid claim: code_challenge_method",
        "invalid claim: code_verifier",
        "body: unexpected field extra",
        "body: missing field agent",
        "body: not a JSON object",
        "body: content-type is not application/json",
        "body: unexpected field actions"
      ])
    }).pipe(Effect.provide(TestLayer())))
})

// --- autoConsent and the request log ---------------------------------------------------------

interface LogLine {
  readonly message: string
  readonly level: LogLevel.LogLevel
  readonly annotations: Readonly<Record<string, string>>
}

/** Runs the effect with a logger that keeps every line (all levels), with its annotations as text. */
const recordingLogs = <A, E, R>(effect: (lines: ReadonlyArray<LogLine>) => Effect.Effect<A, E, R>) => {
  const lines: Array<LogLine> = []
  const recorder = Logger.make(({ annotations, logLevel, message }) => {
    const texts: Record<string, string> = {}
    HashMap.forEach(annotations, (value, name) => (texts[name] = Inspectable.toStringUnknown(value)))
    const parts = Array.isArray(message) ? message : [message]
    lines.push({
      message: parts.map((part) => Inspectable.toStringUnknown(part)).join(" "),
      level: logLevel,
      annotations: texts
    })
  })
  return effect(lines).pipe(
    Effect.provide(Logger.replace(Logger.defaultLogger, recorder)),
    Logger.withMinimumLogLevel(LogLevel.All)
  )
}

/** The simulator's lines among the recorded ones. */
const simulatorLines = (lines: ReadonlyArray<LogLine>) =>
  lines.filter((line) => line.annotations["simulator.endpoint"] !== undefined)

describe("DigimeSimulator: autoConsent", () => {
  it.effect("the library authorizes and reauthorizes by following the consent page's redirect: no consent call", () =>
    Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const manager = yield* TokenManager.TokenManager
      const http = yield* HttpClient.HttpClient
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const key = TokenKey.make("user-auto", DigimeTest.contractId)
      /** Opens the consent page as a browser would: the redirect's target. */
      const open = (url: string) =>
        Effect.gen(function*() {
          const answer = yield* http.get(url)
          assert.strictEqual(answer.status, 302)
          assert.strictEqual(answer.headers["cache-control"], "no-store")
          return answer.headers["location"]!
        })

      const start = yield* client.getAuthorizeUrl({ contractId: key.contractId, callbackUrl: DigimeTest.callbackUrl })
      const callback = yield* open(start.url)
      assert.isTrue(callback.startsWith(`${DigimeTest.callbackUrl}?`))
      const result = yield* TokenProtocol.parseCallback(callback, start.state)
      const first = yield* manager.exchangeCodeForToken({ key, code: result.code, codeVerifier: start.codeVerifier })
      assert.lengthOf(yield* AutoRefresh.withAutoRefresh(key, client.readAccounts), 1)

      const again = yield* manager.getReauthorizeUrl({ key, callbackUrl: DigimeTest.callbackUrl })
      assert.include(again.url, "/user-reauth?")
      const reauthorized = yield* TokenProtocol.parseCallback(yield* open(again.url), again.state)
      const second = yield* manager.exchangeCodeForToken({
        key,
        code: reauthorized.code,
        codeVerifier: again.codeVerifier
      })
      assert.strictEqual(second.digimeUserId, first.digimeUserId)
      assert.strictEqual((yield* simulator.stats).exchanges, 2)

      // The page is opened once: its code is used.
      const used = yield* http.get(start.url)
      assert.strictEqual(used.status, 400)
      assert.strictEqual(((yield* used.json) as any).error.code, "InvalidConsentRequest")
      const recorded = (yield* simulator.requests).filter((request) => request.endpoint === "consent")
      assert.deepStrictEqual(recorded.map((request) => [request.method, request.path, request.status]), [
        ["GET", "/apps/saas/authorize", 302],
        ["GET", "/apps/saas/user-reauth", 302],
        ["GET", "/apps/saas/authorize", 400]
      ])
      assert.strictEqual(recorded[2]!.problem, "consent: the onboarding URL's code was already used")
    }).pipe(Effect.provide(DigimeTest.layer({ simulator: { autoConsent: true } }))))

  it.effect("only GET; not counted in stats, no fault applies; without autoConsent the page is not handled", () =>
    Effect.gen(function*() {
      const simulator = yield* DigimeSimulator.DigimeSimulator
      yield* simulator.injectFault({ _tag: "Status", endpoint: "authorize", status: 500 })
      const { challenge } = yield* pkce
      const unlucky = yield* call("POST", "oauth/authorize", authorizeClaims(challenge), { agent })
      assert.strictEqual(unlucky.status, 500)
      const answer = yield* call("POST", "oauth/authorize", authorizeClaims(challenge), { agent })
      const url = `${simulator.onboardUrl}authorize?code=${decodeJwt(answer.json.token).payload.preauthorization_code}`
      assertError(yield* send("POST", "", undefined, undefined, url), 405, "MethodNotAllowed")
      const opened = yield* send("GET", "", undefined, undefined, url)
      assert.strictEqual(opened.status, 302)
      const callback = new URL(opened.headers["location"]!)
      assert.strictEqual(callback.searchParams.get("success"), "true")
      assert.strictEqual(callback.searchParams.get("state"), "state-1")
      assert.isString(callback.searchParams.get("accountReference"))
      assert.strictEqual((yield* exchange(callback.searchParams.get("code")!, (yield* pkce).verifier)).status, 400)
      const stats = yield* simulator.stats
      assert.strictEqual(stats.requests.authorize, 2)
      assert.strictEqual(Object.values(stats.requests).reduce((n, count) => n + count, 0), 3)
    }).pipe(
      Effect.provide(TestLayer({ autoConsent: true })),
      Effect.zipRight(
        Effect.gen(function*() {
          // Without the option, the consent page is no path of the API.
          const simulator = yield* DigimeSimulator.DigimeSimulator
          const answer = yield* send("GET", "", undefined, undefined, `${simulator.onboardUrl}authorize?code=x`)
          assertError(answer, 404, "NotFound")
          assert.strictEqual((yield* simulator.requests)[0]!.endpoint, "unknown")
        }).pipe(Effect.provide(TestLayer()))
      )
    ))
})

describe("DigimeSimulator: log", () => {
  it.effect("one info line per request: method, path, status, and for a refusal its code and cause", () =>
    recordingLogs((lines) =>
      Effect.gen(function*() {
        const jwt = yield* sign({ ...(yield* baseClaims), access_token: "x" })
        const [header, payload, signature] = jwt.split(".")
        const flipped = `${signature!.slice(0, 10)}${signature![10] === "A" ? "B" : "A"}${signature!.slice(11)}`
        // digi.me's answer does not say why...
        assertError(
          yield* send("GET", "permission-access/accounts", `${header}.${payload}.${flipped}`),
          406,
          "ValidationErrors",
          "Parameter validation errors"
        )
        yield* send("GET", "jwks/oauth", undefined)
        yield* call("POST", "oauth/token", { grant_type: "refresh_token", refresh_token: "nope", iat: 1 })
        yield* send("GET", "nowhere?code=secret-code", undefined)

        const logged = simulatorLines(lines)
        // ...the log does.
        assert.deepStrictEqual(logged.map((line) => line.message), [
          "GET /v1.7/permission-access/accounts 406 ValidationErrors: assertion: the signature does not verify (PS512, 64-byte salt)",
          "GET /v1.7/jwks/oauth 200",
          "POST /v1.7/oauth/token 400 ValidationErrors: unexpected claim: iat",
          "GET /v1.7/nowhere 404 NotFound: unknown path"
        ])
        assert.isTrue(logged.every((line) => line.level === LogLevel.Info))
        assert.deepStrictEqual(logged[0]!.annotations, {
          "simulator.endpoint": "accounts",
          "simulator.status": "406",
          "simulator.problem": "assertion: the signature does not verify (PS512, 64-byte salt)"
        })
        assert.deepStrictEqual(logged[1]!.annotations, { "simulator.endpoint": "jwks", "simulator.status": "200" })
        assert.strictEqual(logged[3]!.annotations["simulator.endpoint"], "unknown")
        for (const line of lines) assert.notInclude(line.message, "secret-code")
      }).pipe(Effect.provide(TestLayer({ log: true })))
    ))

  it.effect("off by default: nothing logged", () =>
    recordingLogs((lines) =>
      Effect.gen(function*() {
        yield* authorized
        yield* send("GET", "jwks/oauth", undefined)
        assert.deepStrictEqual(simulatorLines(lines), [])
      }).pipe(Effect.provide(TestLayer()))
    ))

  it.effect("a whole journey with autoConsent: every request logged, no code, verifier, token, key or assertion", () =>
    recordingLogs((lines) =>
      Effect.gen(function*() {
        const client = yield* DigimeClient.DigimeClient
        const manager = yield* TokenManager.TokenManager
        const http = yield* HttpClient.HttpClient
        const key = TokenKey.make("user-log", DigimeTest.contractId)
        const secrets: Array<string> = []
        const keep = (token: UserAccessToken.UserAccessToken) =>
          secrets.push(Redacted.value(token.accessToken.value), Redacted.value(token.refreshToken.value))

        const start = yield* client.getAuthorizeUrl({ contractId: key.contractId, callbackUrl: DigimeTest.callbackUrl })
        secrets.push(Redacted.value(start.codeVerifier), new URL(start.url).searchParams.get("code")!)
        const callback = (yield* http.get(start.url)).headers["location"]!
        const result = yield* TokenProtocol.parseCallback(callback, start.state)
        secrets.push(Redacted.value(result.code))
        keep(yield* manager.exchangeCodeForToken({ key, code: result.code, codeVerifier: start.codeVerifier }))
        yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
        yield* TestClock.adjust("2 hours")
        yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
        keep(Option.getOrThrow(yield* (yield* TokenStore.TokenStore).get(key)).token)
        const session = yield* AutoRefresh.withAutoRefresh(key, client.readSession)
        secrets.push(session.key)
        yield* AutoRefresh.withAutoRefresh(key, (credentials) =>
          client.readFileList({ ...credentials, sessionKey: session.key }))
        const simulator = yield* DigimeSimulator.DigimeSimulator
        const stored = yield* simulator.requests

        const logged = simulatorLines(lines)
        assert.strictEqual(logged.length, stored.length)
        assert.deepStrictEqual(
          logged.map((line) =>
            line.message.replace(/query\/\S+/, "query/…")
          ),
          [
            "POST /v1.7/oauth/authorize 201",
            "GET /v1.7/jwks/oauth 200",
            "GET /apps/saas/authorize 302",
            "POST /v1.7/oauth/token 201",
            "GET /v1.7/permission-access/accounts 202",
            "POST /v1.7/oauth/token 201",
            "GET /v1.7/jwks/oauth 200",
            "GET /v1.7/permission-access/accounts 202",
            "POST /v1.7/permission-access/trigger 202",
            "GET /v1.7/permission-access/query/… 200"
          ]
        )
        // The session key is cut to its first characters.
        assert.include(logged[9]!.message, `/query/${session.key.slice(0, 6)}… 200`)
        assert.isAtLeast(secrets.length, 8)
        for (const line of lines) {
          const texts = [line.message, ...Object.values(line.annotations)]
          for (const text of texts) {
            assert.notInclude(text, "Bearer")
            assert.notInclude(text, "eyJ")
            for (const secret of secrets) assert.notInclude(text, secret)
          }
        }
      }).pipe(Effect.provide(DigimeTest.layer({ simulator: { autoConsent: true, log: true } })))
    ))
})
