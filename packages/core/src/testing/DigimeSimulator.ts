/**
 * A simulated digi.me API for tests: pre-authorization with PKCE, consent, code exchange, refresh
 * with rotation and replay detection, reauthorization, the three data calls and the JWKS, all held
 * in memory and timed by the caller's `Clock` (so `TestClock` drives every expiry).
 *
 * It is strict on purpose: the client assertion must be a PS512 JWT with a 64-byte salt and exactly
 * the claims digi.me's own SDK sends, each body must have the SDK's shape. A client that digi.me
 * would refuse is refused here first.
 *
 * The simulator is a pure request handler (`Service.handle`) plus an adapter (`httpClient`) that
 * serves it as an in-memory `HttpClient`.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { concat, publicPemToSpki, toPem } from "../internal/der.js"
import { base64url, decodeUtf8, encodeUtf8, fromBase64url, jsonSegment, randomBytes } from "../internal/encoding.js"
import { spkiToPkcs1Public } from "./internal/derReader.js"

/**
 * The calls the simulator answers.
 *
 * @since 0.1.0
 * @category models
 */
export type Endpoint = "authorize" | "token" | "reference" | "trigger" | "accounts" | "deleteUser" | "jwks"

/**
 * An HTTP request as the handler sees it. Header names are lower case.
 *
 * @since 0.1.0
 * @category models
 */
export interface SimRequest {
  readonly method: string
  /** The absolute URL, query string included. */
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: Uint8Array | undefined
}

/**
 * An HTTP answer of the handler.
 *
 * @since 0.1.0
 * @category models
 */
export interface SimResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
  /**
   * Set by a `DropResponse` fault: the request was processed, but the connection is cut before
   * the answer arrives. `httpClient` turns it into a transport error; a server would close the socket.
   */
  readonly dropConnection?: boolean | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly applicationId: string
  /** The contracts digi.me knows, each with the public key that verifies its client assertions. */
  readonly contracts: ReadonlyArray<{ readonly contractId: string; readonly publicKeyPem: string }>
  /** Default `"https://api.digi.me/v1.7/"`; a trailing slash is added if missing. */
  readonly baseUrl?: string | undefined
  /** Default `"https://api.digi.me/apps/saas/"`; a trailing slash is added if missing. */
  readonly onboardUrl?: string | undefined
  /** Default 1 hour. */
  readonly accessTokenLifetime?: Duration.DurationInput | undefined
  /** Default 30 days. */
  readonly refreshTokenLifetime?: Duration.DurationInput | undefined
  /**
   * `"sliding"` (the default): each refresh token lives `refreshTokenLifetime` from its issue.
   * `"fixed"`: every refresh token of a family expires when the family's first one does.
   */
  readonly refreshTokenExpiry?: "sliding" | "fixed" | undefined
  /**
   * Default `true`: presenting a refresh token that was already rotated away is a replay, and
   * revokes the whole token family. With `false` the old refresh token is accepted again.
   */
  readonly strictRotation?: boolean | undefined
  /** How far the assertion's `timestamp` may be from now, either way. Default 5 minutes. */
  readonly assertionMaxAge?: Duration.DurationInput | undefined
  /** Waits this long (on the caller's `Clock`) before answering each request. */
  readonly latency?: Duration.DurationInput | undefined
  /**
   * Answers every `nth` API request (the `nth`, `2 × nth`, …; counted over the known endpoints, JWKS
   * included, whatever their answer) with `status` and a `SimulatedFault` error body, without
   * processing it. `nth` is a positive integer, `status` 500 to 599.
   */
  readonly failEvery?: { readonly nth: number; readonly status: number } | undefined
}

/**
 * Counters since the simulator was made.
 *
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  /** Requests received per endpoint, whatever the answer. */
  readonly requests: Readonly<Record<Endpoint, number>>
  /** Authorization codes exchanged for tokens. */
  readonly exchanges: number
  /** Successful refresh grants. */
  readonly refreshes: number
  /** Refresh tokens presented again after their rotation. */
  readonly replays: number
  /** Token families revoked (replay, reauthorization, user deletion, `revokeUser`). */
  readonly revocations: number
  /** Requests refused because of their client assertion (406 answers). */
  readonly rejectedAssertions: number
}

/**
 * One request as the simulator saw it.
 *
 * @since 0.1.0
 * @category models
 */
export interface RecordedRequest {
  readonly endpoint: Endpoint | "unknown"
  readonly method: string
  /** The URL's path, e.g. `/v1.7/oauth/token`. */
  readonly path: string
  /**
   * The decoded claims of the client assertion, when it could be decoded; the values of
   * `access_token`, `refresh_token`, `code` and `code_verifier` are replaced by `"<redacted>"`.
   */
  readonly claims: Readonly<Record<string, unknown>> | undefined
  readonly status: number
  /** Why the request was refused, when it was (e.g. `"unexpected claim: iat"`). */
  readonly problem?: string | undefined
}

/**
 * One-shot faults, each applied to the next request it matches.
 *
 * - `Status`: answer with this status and an error body, without processing the request.
 * - `DropResponse`: process the request fully (a refresh rotates the token), then fail the HTTP
 *   call with a transport error. With `grant` (endpoint `token` only), the fault waits for the next
 *   *successful* token answer of that grant: `grant: "refresh_token"` drops the answer of a refresh
 *   that has rotated the refresh token.
 * - `Delay`: process the request, then hold the answer back (on the caller's `Clock`).
 * - `TamperToken`: the request is processed, but the next answer that carries a token
 *   (authorize, token, reference) carries a bad one.
 *
 * @since 0.1.0
 * @category models
 */
export type Fault =
  | {
    readonly _tag: "Status"
    readonly endpoint: Endpoint
    readonly status: number
    readonly code?: string | undefined
    readonly message?: string | undefined
  }
  | {
    readonly _tag: "DropResponse"
    readonly endpoint: Endpoint
    readonly grant?: "authorization_code" | "refresh_token" | undefined
  }
  | { readonly _tag: "Delay"; readonly endpoint: Endpoint; readonly delay: Duration.DurationInput }
  | {
    readonly _tag: "TamperToken"
    readonly tamper:
      | "BadSignature"
      | "AlgNone"
      | "AlgRS256"
      | "UnknownKid"
      | "ForeignJku"
      | "MissingJku"
      | "Garbage"
      | "Expired"
      | "MissingFields"
  }

/**
 * A misuse of the simulator by the test itself (e.g. consenting to an unknown or used code).
 *
 * @since 0.1.0
 * @category errors
 */
export class SimulatorError extends Schema.TaggedError<SimulatorError>("@digime-effect/core/testing/SimulatorError")(
  "SimulatorError",
  { reason: Schema.String }
) {
  override get message(): string {
    return `Simulated digi.me: ${this.reason}`
  }
}

/**
 * What an onboarding URL asks for, as `describeConsent` reads it.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConsentRequest {
  /** `"authorize"` for `{onboardUrl}authorize?code=…`, `"reauth"` for `{onboardUrl}user-reauth?code=…`. */
  readonly kind: "authorize" | "reauth"
  readonly applicationId: string
  readonly contractId: string
  /** The callback URL the browser is sent back to. */
  readonly redirectUri: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** The API base URL, with a trailing slash. */
  readonly baseUrl: string
  /** The onboard (browser) URL, with a trailing slash. */
  readonly onboardUrl: string
  /** Where the signing keys are published; every token names it in `jku`. */
  readonly jwksUrl: string
  readonly applicationId: string
  /** The request handler. Reads the `Clock`; never fails. */
  readonly handle: (request: SimRequest) => Effect.Effect<SimResponse>
  /**
   * The user opens an onboard URL (`{onboardUrl}authorize?code=…` or `{onboardUrl}user-reauth?code=…`)
   * and clicks Allow (or Deny with `allow: false`). Returns the callback URL digi.me redirects to.
   */
  readonly consent: (
    onboardingUrl: string,
    options?: { readonly allow?: boolean | undefined; readonly errorCode?: string | undefined }
  ) => Effect.Effect<string, SimulatorError>
  /**
   * Reads an onboarding URL without using its code: what it asks for, or why `consent` would
   * refuse it (unknown, used or expired code).
   */
  readonly describeConsent: (onboardingUrl: string) => Effect.Effect<ConsentRequest, SimulatorError>
  /**
   * Makes a contract known from now on (or replaces its key): client assertions of
   * `{applicationId}_{contractId}` are verified with this public key (SPKI or PKCS#1 PEM).
   */
  readonly registerContract: (contractId: string, publicKeyPem: string) => Effect.Effect<void, SimulatorError>
  readonly stats: Effect.Effect<Stats>
  readonly requests: Effect.Effect<ReadonlyArray<RecordedRequest>>
  /** That access token is refused from now on (401 `InvalidToken`). */
  readonly revokeAccessToken: (accessToken: string) => Effect.Effect<void>
  /** Revokes every token family of the user. */
  readonly revokeUser: (digimeUserId: string) => Effect.Effect<void>
  /** A new signing key with a new `kid`; the JWKS then lists only the new key. */
  readonly rotateSigningKey: Effect.Effect<void>
  readonly injectFault: (fault: Fault) => Effect.Effect<void>
}

/**
 * @since 0.1.0
 * @category services
 */
export class DigimeSimulator extends Context.Tag("@digime-effect/core/testing/DigimeSimulator")<
  DigimeSimulator,
  Service
>() {}

// ---------------------------------------------------------------------------------------------
// internals

const endpoints: ReadonlyArray<Endpoint> = [
  "authorize",
  "token",
  "reference",
  "trigger",
  "accounts",
  "deleteUser",
  "jwks"
]

const routes: Readonly<Record<string, { readonly endpoint: Endpoint; readonly method: string }>> = {
  "oauth/authorize": { endpoint: "authorize", method: "POST" },
  "oauth/token": { endpoint: "token", method: "POST" },
  "oauth/token/reference": { endpoint: "reference", method: "POST" },
  "permission-access/trigger": { endpoint: "trigger", method: "POST" },
  "permission-access/accounts": { endpoint: "accounts", method: "GET" },
  "user": { endpoint: "deleteUser", method: "DELETE" },
  "jwks/oauth": { endpoint: "jwks", method: "GET" }
}

const codeLifetimeMillis = 10 * 60 * 1000
const sessionLifetimeMillis = 30 * 60 * 1000
const redacted = "<redacted>"
const secretClaims: ReadonlyArray<string> = ["access_token", "refresh_token", "code", "code_verifier"]

const withSlash = (url: string): string => url.endsWith("/") ? url : `${url}/`
const randomToken = (): string => base64url(randomBytes(32))
const randomId = (): string => base64url(randomBytes(12))
const seconds = (millis: number): number => Math.floor(millis / 1000)

type Json = Record<string, unknown>

const isRecord = (value: unknown): value is Json =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

const decodeSegment = (segment: string): unknown => {
  const bytes = fromBase64url(segment)
  const text = bytes === undefined ? undefined : decodeUtf8(bytes)
  return text === undefined ? undefined : parseJson(text)
}

// Header values must be printable ASCII; claims quoted in messages may hold anything.
const headerSafe = (value: string): string => value.replace(/[^\x20-\x7e]/g, "?")

const jsonResponse = (status: number, body: unknown): SimResponse => ({
  status,
  headers: { "content-type": "application/json" },
  body: JSON.stringify(body)
})

const errorResponse = (status: number, code: string, message: string): SimResponse => {
  const reference = randomId()
  return {
    status,
    headers: {
      "content-type": "application/json",
      "x-error-code": headerSafe(code),
      "x-error-message": headerSafe(message),
      "x-error-reference": reference
    },
    body: JSON.stringify({ error: { code, message, reference } })
  }
}

/** A refusal: the answer to send, and why (for `RecordedRequest.problem`). */
interface Refusal {
  readonly response: SimResponse
  readonly problem: string
}

const refuse = (status: number, code: string, message: string, problem: string): Refusal => ({
  response: errorResponse(status, code, message),
  problem
})

const validation = (status: 400 | 406, problem: string): Refusal =>
  refuse(status, "ValidationErrors", "Parameter validation errors", problem)

const invalidToken = (kind: "access_token" | "refresh_token", problem: string): Refusal =>
  refuse(401, "InvalidToken", `The token (${kind}) is invalid`, problem)

const invalidGrant = (message: string): Refusal => refuse(400, "InvalidGrant", message, message)

// --- claims -----------------------------------------------------------------------------------

type Check = (value: unknown) => boolean

const nonEmptyString: Check = (value) => typeof value === "string" && value.length > 0
const literal = (expected: string): Check => (value) => value === expected
const isNonce: Check = (value) => typeof value === "string" && /^[A-Za-z0-9]{32}$/.test(value)
const isTimestamp: Check = (value) => typeof value === "number" && Number.isSafeInteger(value) && value >= 0
const isChallenge: Check = (value) => typeof value === "string" && /^[A-Za-z0-9_-]{43}$/.test(value)
const isVerifier: Check = (value) => typeof value === "string" && /^[A-Za-z0-9._~-]{43,128}$/.test(value)
const isRedirectUri: Check = (value) => {
  if (typeof value !== "string") return false
  try {
    const url = new URL(value)
    return url.protocol === "https:" || url.protocol === "http:"
  } catch {
    return false
  }
}

interface ClaimSpec {
  readonly required: Readonly<Record<string, Check>>
  readonly optional: Readonly<Record<string, Check>>
}

const common: Readonly<Record<string, Check>> = { client_id: nonEmptyString, nonce: isNonce, timestamp: isTimestamp }

const claimSpecs = {
  authorize: {
    required: {
      ...common,
      code_challenge: isChallenge,
      code_challenge_method: literal("S256"),
      redirect_uri: isRedirectUri,
      state: nonEmptyString,
      response_mode: literal("query"),
      response_type: literal("code")
    },
    optional: { access_token: nonEmptyString }
  },
  exchange: {
    required: { ...common, grant_type: literal("authorization_code"), code: nonEmptyString, code_verifier: isVerifier },
    optional: {}
  },
  refresh: {
    required: { ...common, grant_type: literal("refresh_token"), refresh_token: nonEmptyString },
    optional: {}
  },
  reference: {
    required: {
      ...common,
      access_token: nonEmptyString,
      code_challenge: isChallenge,
      code_challenge_method: literal("S256"),
      redirect_uri: isRedirectUri
    },
    optional: { state: nonEmptyString }
  },
  data: { required: { ...common, access_token: nonEmptyString }, optional: {} }
} satisfies Record<string, ClaimSpec>

/** The first problem with the claims, if any. */
const checkClaims = (claims: Json, spec: ClaimSpec): string | undefined => {
  for (const [name, check] of Object.entries(spec.required)) {
    if (!Object.hasOwn(claims, name)) return `missing claim: ${name}`
    if (!check(claims[name])) return `invalid claim: ${name}`
  }
  for (const [name, value] of Object.entries(claims)) {
    if (Object.hasOwn(spec.required, name)) continue
    const check = Object.hasOwn(spec.optional, name) ? spec.optional[name] : undefined
    if (check === undefined) return `unexpected claim: ${name}`
    if (!check(value)) return `invalid claim: ${name}`
  }
  return undefined
}

const redactClaims = (claims: Json): Json => {
  const copy: Json = { ...claims }
  for (const name of secretClaims) {
    if (Object.hasOwn(copy, name)) copy[name] = redacted
  }
  return copy
}

// --- bodies -----------------------------------------------------------------------------------

const isSdkAgent = (agent: unknown): boolean =>
  isRecord(agent) && isRecord(agent.sdk) && nonEmptyString(agent.sdk.name) && nonEmptyString(agent.sdk.version) &&
  (agent.sdk.meta === undefined || isRecord(agent.sdk.meta))

const sdkInvalid = (): Refusal => refuse(400, "SDKInvalid", "The SDK is invalid", "missing or invalid agent.sdk")

const isEmptyBody = (request: SimRequest): boolean => request.body === undefined || request.body.length === 0

/** Checks a JSON body: its content type, its keys, and `agent.sdk`. */
const checkJsonBody = (
  request: SimRequest,
  allowed: ReadonlyArray<string>,
  checks: Readonly<Record<string, Check>>
): Refusal | undefined => {
  const contentType = request.headers["content-type"] ?? ""
  if (!/^application\/json\s*(;|$)/i.test(contentType)) {
    return validation(400, "body: content-type is not application/json")
  }
  const text = request.body === undefined ? undefined : decodeUtf8(request.body)
  const body = text === undefined ? undefined : parseJson(text)
  if (!isRecord(body)) return validation(400, "body: not a JSON object")
  for (const [name, value] of Object.entries(body)) {
    if (!allowed.includes(name)) return validation(400, `body: unexpected field ${name}`)
    const check = checks[name]
    if (check !== undefined && !check(value)) return validation(400, `body: invalid field ${name}`)
  }
  if (!isSdkAgent(body.agent)) return sdkInvalid()
  return undefined
}

const checkBody = (endpoint: Endpoint, request: SimRequest): Refusal | undefined => {
  switch (endpoint) {
    case "authorize":
    case "reference":
      return checkJsonBody(request, ["agent", "actions"], { actions: isRecord })
    case "trigger":
      return checkJsonBody(request, ["agent", "limits", "scope", "sourceFetch", "sourceFetchFilter"], {})
    default:
      return isEmptyBody(request) ? undefined : validation(400, "body: this call takes no body")
  }
}

// --- state ------------------------------------------------------------------------------------

interface SigningKey {
  readonly kid: string
  readonly privateKey: CryptoKey
  readonly pem: string
}

interface PreAuthorization {
  readonly kind: "authorize" | "reauth"
  readonly clientId: string
  readonly challenge: string
  readonly redirectUri: string
  readonly state: string | undefined
  readonly userId: string
  readonly expiresAt: number
  used: boolean
}

interface AuthorizationCode {
  readonly kind: "authorize" | "reauth"
  readonly clientId: string
  readonly challenge: string
  readonly userId: string
  readonly expiresAt: number
  used: boolean
}

interface Family {
  readonly id: string
  readonly userId: string
  readonly clientId: string
  readonly consentId: string
  readonly refreshExpiresAt: number
  revoked: boolean
}

interface AccessToken {
  readonly family: Family
  readonly expiresAt: number
  revoked: boolean
}

interface RefreshToken {
  readonly family: Family
  readonly expiresAt: number
  rotated: boolean
}

interface Account {
  readonly id: string
  readonly reference: string
  readonly createdDate: number
  readonly serviceNumber: number
}

interface User {
  readonly accounts: Array<Account>
  readonly families: Set<Family>
}

/** What a processed request yields before its answer is put together. */
type Outcome =
  | { readonly _tag: "Response"; readonly response: SimResponse }
  | {
    readonly _tag: "Token"
    readonly status: number
    readonly payload: Json
    readonly mainFields: ReadonlyArray<string>
    readonly session: boolean
  }

type Tamper = Extract<Fault, { readonly _tag: "TamperToken" }>["tamper"]

const importVerifyKey = (contractId: string, pem: string): Promise<CryptoKey> => {
  const spki = publicPemToSpki(pem)
  if (spki === undefined) {
    return Promise.reject(
      new Error(`DigimeSimulator: the public key of contract ${contractId} is not an RSA public PEM`)
    )
  }
  return globalThis.crypto.subtle.importKey("spki", spki, { name: "RSA-PSS", hash: "SHA-512" }, false, ["verify"])
}

const generateSigningKey = async (): Promise<SigningKey> => {
  const pair = await globalThis.crypto.subtle.generateKey(
    { name: "RSA-PSS", hash: "SHA-512", modulusLength: 2048, publicExponent: Uint8Array.of(1, 0, 1) },
    true,
    ["sign", "verify"]
  )
  const spki = new Uint8Array(await globalThis.crypto.subtle.exportKey("spki", pair.publicKey))
  const pkcs1 = spkiToPkcs1Public(spki)
  if (pkcs1 === undefined) throw new Error("DigimeSimulator: cannot read the exported signing key")
  return { kid: randomId(), privateKey: pair.privateKey, pem: toPem("RSA PUBLIC KEY", pkcs1) }
}

const signJwt = async (key: CryptoKey, header: Json, payload: Json): Promise<string> => {
  const input = `${jsonSegment(header)}.${jsonSegment(payload)}`
  const signature = await globalThis.crypto.subtle.sign({ name: "RSA-PSS", saltLength: 64 }, key, encodeUtf8(input))
  return `${input}.${base64url(new Uint8Array(signature))}`
}

const splitSigned = (jwt: string): [string, Uint8Array] => {
  const cut = jwt.lastIndexOf(".")
  return [jwt.slice(0, cut), new Uint8Array(fromBase64url(jwt.slice(cut + 1)) ?? [])]
}

const sha256Base64url = async (input: string): Promise<string> =>
  base64url(new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", encodeUtf8(input))))

/**
 * Makes a simulator with its own signing key and empty state.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service> =>
  Effect.gen(function*() {
    const baseUrl = withSlash(options.baseUrl ?? "https://api.digi.me/v1.7/")
    const onboardUrl = withSlash(options.onboardUrl ?? "https://api.digi.me/apps/saas/")
    const jwksUrl = `${baseUrl}jwks/oauth`
    const baseOrigin = yield* Effect.try({
      try: () => new URL(baseUrl).origin,
      catch: () => new Error(`DigimeSimulator: baseUrl ${baseUrl} is not a URL`)
    }).pipe(Effect.orDie)
    const accessLifetime = Duration.toMillis(Duration.decode(options.accessTokenLifetime ?? "1 hour"))
    const refreshLifetime = Duration.toMillis(Duration.decode(options.refreshTokenLifetime ?? "30 days"))
    const maxAge = Duration.toMillis(Duration.decode(options.assertionMaxAge ?? "5 minutes"))
    const latency = options.latency === undefined ? undefined : Duration.decode(options.latency)
    const slidingExpiry = (options.refreshTokenExpiry ?? "sliding") === "sliding"
    const strictRotation = options.strictRotation ?? true
    const failEvery = options.failEvery
    if (
      failEvery !== undefined &&
      (!Number.isSafeInteger(failEvery.nth) || failEvery.nth < 1 || !Number.isInteger(failEvery.status) ||
        failEvery.status < 500 || failEvery.status > 599)
    ) {
      return yield* Effect.dieMessage("DigimeSimulator: failEvery needs a positive integer nth and a 5xx status")
    }
    let apiRequests = 0

    const verifyKeys = new Map<string, CryptoKey>()
    for (const contract of options.contracts) {
      const key = yield* Effect.promise(() => importVerifyKey(contract.contractId, contract.publicKeyPem))
      verifyKeys.set(`${options.applicationId}_${contract.contractId}`, key)
    }

    let signing = yield* Effect.promise(generateSigningKey)
    let strayKey: Promise<SigningKey> | undefined

    const nonces = new Map<string, number>()
    const preAuthorizations = new Map<string, PreAuthorization>()
    const codes = new Map<string, AuthorizationCode>()
    const accessTokens = new Map<string, AccessToken>()
    const refreshTokens = new Map<string, RefreshToken>()
    const users = new Map<string, User>()
    const faults: Array<Fault> = []
    const recorded: Array<RecordedRequest> = []
    const requestCounts = Object.fromEntries(endpoints.map((endpoint) => [endpoint, 0])) as Record<Endpoint, number>
    const counters = { exchanges: 0, refreshes: 0, replays: 0, revocations: 0, rejectedAssertions: 0 }

    const userOf = (userId: string): User => {
      let user = users.get(userId)
      if (user === undefined) {
        user = { accounts: [], families: new Set() }
        users.set(userId, user)
      }
      return user
    }

    const revokeFamily = (family: Family): void => {
      if (family.revoked) return
      family.revoked = true
      counters.revocations++
    }

    const takeFault = <T extends Fault["_tag"]>(
      predicate: (fault: Fault) => fault is Extract<Fault, { readonly _tag: T }>
    ): Extract<Fault, { readonly _tag: T }> | undefined => {
      const index = faults.findIndex(predicate)
      if (index < 0) return undefined
      return faults.splice(index, 1)[0] as Extract<Fault, { readonly _tag: T }>
    }

    /** The access token if it is usable for a data call of `clientId` at `now`. */
    const usableAccessToken = (value: unknown, now: number, clientId: string | undefined): AccessToken | undefined => {
      const token = typeof value === "string" ? accessTokens.get(value) : undefined
      if (token === undefined || token.revoked || token.family.revoked || now >= token.expiresAt) return undefined
      if (clientId !== undefined && token.family.clientId !== clientId) return undefined
      return token
    }

    const issueTokens = (family: Family, now: number): Json => {
      const access = randomToken()
      const refresh = randomToken()
      const accessExpiresAt = seconds(now + accessLifetime) * 1000
      const refreshExpiresAt = slidingExpiry ? seconds(now + refreshLifetime) * 1000 : family.refreshExpiresAt
      accessTokens.set(access, { family, expiresAt: accessExpiresAt, revoked: false })
      refreshTokens.set(refresh, { family, expiresAt: refreshExpiresAt, rotated: false })
      return {
        access_token: { value: access, expires_on: seconds(accessExpiresAt) },
        refresh_token: { value: refresh, expires_on: seconds(refreshExpiresAt) },
        sub: family.userId,
        consentid: family.consentId,
        identifier: { id: family.userId },
        token_type: "Bearer"
      }
    }

    const newFamily = (userId: string, clientId: string, now: number): Family => {
      const family: Family = {
        id: randomId(),
        userId,
        clientId,
        consentId: randomId(),
        refreshExpiresAt: seconds(now + refreshLifetime) * 1000,
        revoked: false
      }
      userOf(userId).families.add(family)
      return family
    }

    const session = (now: number): Json => ({ expiry: now + sessionLifetimeMillis, key: randomToken() })

    const accountJson = (account: Account, now: number): Json => ({
      id: account.id,
      reference: account.reference,
      type: "USER",
      createdDate: account.createdDate,
      updatedDate: now,
      serviceGroupId: 1,
      serviceGroupName: "Social",
      serviceTypeId: account.serviceNumber,
      serviceTypeName: "Simulated Service",
      serviceTypeReference: "simulated",
      sourceId: account.serviceNumber,
      accessTokenStatus: { authorized: true },
      serviceProviderName: "Simulated Provider",
      username: "simulated-user",
      sample: true
    })

    // The verified assertion: the claims, or why they are refused.
    const verifyAssertion = (
      request: SimRequest,
      now: number,
      seen: { claims: Json | undefined }
    ): Effect.Effect<{ readonly claims: Json; readonly clientId: string }, Refusal> =>
      Effect.gen(function*() {
        const rejected = (problem: string) => {
          counters.rejectedAssertions++
          return Effect.fail(validation(406, problem))
        }
        const match = /^Bearer ([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(
          request.headers["authorization"] ?? ""
        )
        if (match === null) return yield* rejected("assertion: missing or malformed Authorization header")
        const [, encodedHeader, encodedPayload, encodedSignature] = match as unknown as [string, string, string, string]
        const header = decodeSegment(encodedHeader)
        if (
          !isRecord(header) || header.alg !== "PS512" || header.typ !== "JWT" || Object.keys(header).length !== 2
        ) return yield* rejected("assertion: the header is not exactly {\"alg\":\"PS512\",\"typ\":\"JWT\"}")
        const claims = decodeSegment(encodedPayload)
        if (!isRecord(claims)) return yield* rejected("assertion: the payload is not a JSON object")
        seen.claims = claims
        const clientId = claims.client_id
        if (typeof clientId !== "string") return yield* rejected("assertion: no client_id")
        const key = verifyKeys.get(clientId)
        if (key === undefined) {
          return yield* Effect.fail(
            refuse(401, "InvalidClient", `The client_id (${clientId}) is invalid`, "assertion: unknown client_id")
          )
        }
        const signature = fromBase64url(encodedSignature)
        const valid = signature === undefined ? false : yield* Effect.promise(() =>
          globalThis.crypto.subtle.verify(
            { name: "RSA-PSS", saltLength: 64 },
            key,
            new Uint8Array(signature),
            encodeUtf8(`${encodedHeader}.${encodedPayload}`)
          ).catch(() => false)
        )
        if (!valid) return yield* rejected("assertion: the signature does not verify (PS512, 64-byte salt)")
        if (!isNonce(claims.nonce)) return yield* rejected("assertion: nonce is not 32 characters of [A-Za-z0-9]")
        if (!isTimestamp(claims.timestamp)) return yield* rejected("assertion: timestamp is not an integer (ms)")
        if (Math.abs(now - (claims.timestamp as number)) > maxAge) {
          return yield* rejected("assertion: timestamp too far from now")
        }
        const nonce = claims.nonce as string
        if (nonces.has(nonce)) {
          counters.rejectedAssertions++
          return yield* Effect.fail(
            refuse(
              406,
              "InvalidRequest",
              `The nonce provided in JWT payload (${nonce}) has already been used`,
              "assertion: nonce replay"
            )
          )
        }
        nonces.set(nonce, claims.timestamp as number)
        if (nonces.size > 10_000) {
          for (const [seenNonce, timestamp] of nonces) if (timestamp < now - maxAge) nonces.delete(seenNonce)
        }
        return { claims, clientId }
      })

    // The state changes of one verified request. Synchronous, so concurrent requests interleave
    // only between requests, never inside one.
    const apply = (
      endpoint: Exclude<Endpoint, "jwks">,
      claims: Json,
      clientId: string,
      now: number,
      verifierChallenge: string | undefined
    ): Outcome | Refusal => {
      switch (endpoint) {
        case "authorize": {
          const owner = usableAccessToken(claims.access_token, now, undefined)
          const code = randomToken()
          preAuthorizations.set(code, {
            kind: "authorize",
            clientId,
            challenge: claims.code_challenge as string,
            redirectUri: claims.redirect_uri as string,
            state: claims.state as string,
            userId: owner?.family.userId ?? randomId(),
            expiresAt: now + codeLifetimeMillis,
            used: false
          })
          return {
            _tag: "Token",
            status: 201,
            payload: { preauthorization_code: code },
            mainFields: ["preauthorization_code"],
            session: true
          }
        }
        case "reference": {
          const token = typeof claims.access_token === "string" ? accessTokens.get(claims.access_token) : undefined
          // Expired is fine here: reauthorization exists for users whose refresh token expired.
          if (token === undefined || token.revoked || token.family.revoked || token.family.clientId !== clientId) {
            return invalidToken("access_token", "reference: access token unknown, revoked or of another client")
          }
          const code = randomToken()
          preAuthorizations.set(code, {
            kind: "reauth",
            clientId,
            challenge: claims.code_challenge as string,
            redirectUri: claims.redirect_uri as string,
            state: claims.state as string | undefined,
            userId: token.family.userId,
            expiresAt: now + codeLifetimeMillis,
            used: false
          })
          return {
            _tag: "Token",
            status: 201,
            payload: { reference_code: code },
            mainFields: ["reference_code"],
            session: true
          }
        }
        case "token": {
          if (claims.grant_type === "authorization_code") {
            const code = codes.get(claims.code as string)
            if (code === undefined) return invalidGrant("The authorization code is invalid")
            if (code.used) return invalidGrant("The authorization code has already been used")
            code.used = true
            if (now >= code.expiresAt) return invalidGrant("The authorization code is expired")
            if (code.clientId !== clientId) return invalidGrant("The authorization code was issued to another client")
            if (verifierChallenge !== code.challenge) {
              return invalidGrant("The code_verifier does not match the code_challenge")
            }
            if (code.kind === "reauth") {
              for (const family of userOf(code.userId).families) {
                if (family.clientId === clientId) revokeFamily(family)
              }
            }
            counters.exchanges++
            const family = newFamily(code.userId, clientId, now)
            return tokenOutcome(issueTokens(family, now))
          }
          const refresh = refreshTokens.get(claims.refresh_token as string)
          if (refresh === undefined || refresh.family.clientId !== clientId) {
            return invalidToken("refresh_token", "refresh: unknown refresh token")
          }
          if (refresh.family.revoked) return invalidToken("refresh_token", "refresh: the token family is revoked")
          if (now >= refresh.expiresAt) {
            return refuse(401, "InvalidToken", "The token (refresh_token) is expired", "refresh: expired")
          }
          if (refresh.rotated && strictRotation) {
            counters.replays++
            revokeFamily(refresh.family)
            return invalidToken("refresh_token", "refresh: replay of a rotated refresh token; family revoked")
          }
          refresh.rotated = true
          counters.refreshes++
          return tokenOutcome(issueTokens(refresh.family, now))
        }
        case "trigger":
        case "accounts":
        case "deleteUser": {
          const token = usableAccessToken(claims.access_token, now, clientId)
          if (token === undefined) {
            return invalidToken("access_token", `${endpoint}: access token unknown, expired, revoked or of another app`)
          }
          if (endpoint === "trigger") {
            return { _tag: "Response", response: jsonResponse(202, { session: session(now) }) }
          }
          const user = userOf(token.family.userId)
          if (endpoint === "accounts") {
            return {
              _tag: "Response",
              response: jsonResponse(202, user.accounts.map((account) => accountJson(account, now)))
            }
          }
          for (const family of user.families) revokeFamily(family)
          return { _tag: "Response", response: jsonResponse(201, {}) }
        }
      }
    }

    const tokenOutcome = (payload: Json): Outcome => ({
      _tag: "Token",
      status: 201,
      payload,
      mainFields: ["access_token"],
      session: false
    })

    const signToken = (payload: Json, mainFields: ReadonlyArray<string>, tamper: Tamper | undefined, now: number) =>
      Effect.promise(async (): Promise<string> => {
        const key = signing
        const header: Json = { alg: "PS512", typ: "JWT", jku: jwksUrl, kid: key.kid }
        switch (tamper) {
          case undefined:
            return signJwt(key.privateKey, header, payload)
          case "BadSignature": {
            const [input, signature] = splitSigned(await signJwt(key.privateKey, header, payload))
            signature[0] = signature[0]! ^ 0xff
            signature[signature.length - 1] = signature[signature.length - 1]! ^ 0x01
            return `${input}.${base64url(signature)}`
          }
          case "AlgNone":
            return `${jsonSegment({ ...header, alg: "none" })}.${jsonSegment(payload)}.`
          case "AlgRS256":
            return signJwt(key.privateKey, { ...header, alg: "RS256" }, payload)
          case "UnknownKid": {
            strayKey ??= generateSigningKey()
            const stray = await strayKey
            return signJwt(stray.privateKey, { ...header, kid: stray.kid }, payload)
          }
          case "ForeignJku":
            return signJwt(key.privateKey, { ...header, jku: "https://evil.example/jwks/oauth" }, payload)
          case "MissingJku": {
            const rest: Json = { ...header }
            delete rest.jku
            return signJwt(key.privateKey, rest, payload)
          }
          case "Garbage":
            return `not-a-jwt-${randomToken()}`
          case "Expired":
            return signJwt(key.privateKey, header, { ...payload, exp: seconds(now) - 3600 })
          case "MissingFields": {
            const rest: Json = { ...payload }
            for (const field of mainFields) delete rest[field]
            return signJwt(key.privateKey, header, rest)
          }
        }
      })

    const route = (request: SimRequest): {
      readonly endpoint: Endpoint | "unknown"
      readonly path: string
      readonly refusal?: Refusal
    } => {
      let url: URL
      try {
        url = new URL(request.url)
      } catch {
        return { endpoint: "unknown", path: request.url, refusal: refuse(404, "NotFound", "Not found", "not a URL") }
      }
      const address = `${url.origin}${url.pathname}`
      const relative = url.origin === baseOrigin && address.startsWith(baseUrl)
        ? address.slice(baseUrl.length)
        : undefined
      const found = relative === undefined ? undefined : routes[relative]
      if (found === undefined) {
        return {
          endpoint: "unknown",
          path: url.pathname,
          refusal: refuse(404, "NotFound", `No resource at ${url.pathname}`, "unknown path")
        }
      }
      if (request.method.toUpperCase() !== found.method) {
        return {
          endpoint: found.endpoint,
          path: url.pathname,
          refusal: refuse(
            405,
            "MethodNotAllowed",
            `Method ${request.method} is not allowed`,
            `expected ${found.method}`
          )
        }
      }
      return { endpoint: found.endpoint, path: url.pathname }
    }

    interface Answer {
      readonly response: SimResponse
      readonly claims: Json | undefined
      readonly problem: string | undefined
      readonly delay: Duration.Duration | undefined
    }

    const answer = (request: SimRequest, endpoint: Endpoint, now: number): Effect.Effect<Answer> =>
      Effect.gen(function*() {
        const fault = takeFault((fault): fault is Exclude<Fault, { readonly _tag: "TamperToken" }> =>
          fault._tag !== "TamperToken" && fault.endpoint === endpoint &&
          !(fault._tag === "DropResponse" && fault.grant !== undefined)
        )
        if (fault?._tag === "Status") {
          const code = fault.code ?? "SimulatedFault"
          const message = fault.message ?? `Simulated ${fault.status} answer`
          return {
            response: errorResponse(fault.status, code, message),
            claims: undefined,
            problem: "injected Status fault",
            delay: undefined
          }
        }
        const delay = fault?._tag === "Delay" ? Duration.decode(fault.delay) : undefined
        const drop = fault?._tag === "DropResponse"
        const done = (response: SimResponse, claims: Json | undefined, problem: string | undefined): Answer => ({
          response: drop ? { ...response, dropConnection: true } : response,
          claims,
          problem,
          delay
        })

        if (endpoint === "jwks") {
          if (!isEmptyBody(request)) {
            const refusal = validation(400, "body: this call takes no body")
            return done(refusal.response, undefined, refusal.problem)
          }
          return done(jsonResponse(200, { keys: [{ kid: signing.kid, pem: signing.pem }] }), undefined, undefined)
        }

        const seen: { claims: Json | undefined } = { claims: undefined }
        const outcome = yield* Effect.gen(function*() {
          const { claims, clientId } = yield* verifyAssertion(request, now, seen)
          const spec = endpoint === "authorize"
            ? claimSpecs.authorize
            : endpoint === "reference"
            ? claimSpecs.reference
            : endpoint === "token"
            ? (claims.grant_type === "refresh_token" ? claimSpecs.refresh : claimSpecs.exchange)
            : claimSpecs.data
          const claimProblem = checkClaims(claims, spec)
          if (claimProblem !== undefined) return yield* Effect.fail(validation(400, claimProblem))
          const bodyProblem = checkBody(endpoint, request)
          if (bodyProblem !== undefined) return yield* Effect.fail(bodyProblem)
          const verifierChallenge = typeof claims.code_verifier === "string"
            ? yield* Effect.promise(() => sha256Base64url(claims.code_verifier as string))
            : undefined
          const result = apply(endpoint, claims, clientId, now, verifierChallenge)
          if ("problem" in result) return yield* Effect.fail(result)
          if (result._tag === "Response") return result.response
          const tamper = takeFault((fault): fault is Extract<Fault, { readonly _tag: "TamperToken" }> =>
            fault._tag === "TamperToken"
          )?.tamper
          const token = yield* signToken(result.payload, result.mainFields, tamper, now)
          return jsonResponse(result.status, result.session ? { token, session: session(now) } : { token })
        }).pipe(Effect.either)
        if (outcome._tag === "Left") return done(outcome.left.response, seen.claims, outcome.left.problem)
        // A DropResponse fault with a grant waits for a successful answer of that grant.
        const grant = endpoint === "token" ? seen.claims?.grant_type : undefined
        const isGrantDrop = (fault: Fault): fault is Extract<Fault, { readonly _tag: "DropResponse" }> =>
          fault._tag === "DropResponse" && fault.endpoint === "token" && fault.grant !== undefined &&
          fault.grant === grant
        const answered = done(outcome.right, seen.claims, undefined)
        return grant !== undefined && takeFault(isGrantDrop) !== undefined
          ? { ...answered, response: { ...answered.response, dropConnection: true } }
          : answered
      })

    const handle = (request: SimRequest): Effect.Effect<SimResponse> =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const routed = route(request)
        if (routed.endpoint !== "unknown") {
          requestCounts[routed.endpoint]++
          apiRequests++
        }
        const failed = failEvery !== undefined && routed.endpoint !== "unknown" && apiRequests % failEvery.nth === 0
        const result: Answer = failed
          ? {
            response: errorResponse(failEvery.status, "SimulatedFault", `Simulated ${failEvery.status} answer`),
            claims: undefined,
            problem: `failEvery: request ${apiRequests}`,
            delay: undefined
          }
          : routed.refusal !== undefined || routed.endpoint === "unknown"
          ? {
            response: routed.refusal!.response,
            claims: undefined,
            problem: routed.refusal!.problem,
            delay: undefined
          }
          : yield* answer(request, routed.endpoint, now)
        recorded.push({
          endpoint: routed.endpoint,
          method: request.method.toUpperCase(),
          path: routed.path,
          claims: result.claims === undefined ? undefined : redactClaims(result.claims),
          status: result.response.status,
          ...(result.problem === undefined ? {} : { problem: result.problem })
        })
        if (latency !== undefined) yield* Effect.sleep(latency)
        if (result.delay !== undefined) yield* Effect.sleep(result.delay)
        return result.response
      })

    // The pending pre-authorization an onboarding URL names, if `consent` may use it at `now`.
    const pendingConsent = (onboardingUrl: string, now: number): Effect.Effect<PreAuthorization, SimulatorError> =>
      Effect.gen(function*() {
        const fail = (reason: string) => Effect.fail(new SimulatorError({ reason }))
        let url: URL
        try {
          url = new URL(onboardingUrl)
        } catch {
          return yield* fail("the onboarding URL is not a URL")
        }
        const address = `${url.origin}${url.pathname}`
        const kind = address === `${onboardUrl}authorize`
          ? "authorize"
          : address === `${onboardUrl}user-reauth`
          ? "reauth"
          : undefined
        if (kind === undefined) {
          return yield* fail(`the onboarding URL is neither ${onboardUrl}authorize nor ${onboardUrl}user-reauth`)
        }
        const code = url.searchParams.get("code")
        const preAuthorization = code === null ? undefined : preAuthorizations.get(code)
        if (preAuthorization === undefined || preAuthorization.kind !== kind) {
          return yield* fail("the onboarding URL carries an unknown code")
        }
        if (preAuthorization.used) return yield* fail("the onboarding URL's code was already used")
        if (now >= preAuthorization.expiresAt) return yield* fail("the onboarding URL's code is expired")
        return preAuthorization
      })

    const describeConsent = (onboardingUrl: string): Effect.Effect<ConsentRequest, SimulatorError> =>
      Effect.gen(function*() {
        const preAuthorization = yield* pendingConsent(onboardingUrl, yield* Clock.currentTimeMillis)
        return {
          kind: preAuthorization.kind,
          applicationId: options.applicationId,
          contractId: preAuthorization.clientId.slice(options.applicationId.length + 1),
          redirectUri: preAuthorization.redirectUri
        }
      })

    const consent = (
      onboardingUrl: string,
      consentOptions?: { readonly allow?: boolean | undefined; readonly errorCode?: string | undefined }
    ): Effect.Effect<string, SimulatorError> =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const preAuthorization = yield* pendingConsent(onboardingUrl, now)
        const kind = preAuthorization.kind
        preAuthorization.used = true

        const callback = new URL(preAuthorization.redirectUri)
        if (consentOptions?.allow === false) {
          callback.searchParams.append("success", "false")
          callback.searchParams.append("errorCode", consentOptions.errorCode ?? "AccessDenied")
          if (preAuthorization.state !== undefined) callback.searchParams.append("state", preAuthorization.state)
          return callback.toString()
        }
        const authorizationCode = randomToken()
        codes.set(authorizationCode, {
          kind,
          clientId: preAuthorization.clientId,
          challenge: preAuthorization.challenge,
          userId: preAuthorization.userId,
          expiresAt: now + codeLifetimeMillis,
          used: false
        })
        callback.searchParams.append("success", "true")
        if (preAuthorization.state !== undefined) callback.searchParams.append("state", preAuthorization.state)
        callback.searchParams.append("code", authorizationCode)
        if (kind === "authorize") {
          const user = userOf(preAuthorization.userId)
          const account: Account = {
            id: randomId(),
            reference: randomId(),
            createdDate: now,
            serviceNumber: 1 + user.accounts.length
          }
          user.accounts.push(account)
          callback.searchParams.append("accountReference", account.reference)
        }
        return callback.toString()
      })

    return {
      baseUrl,
      onboardUrl,
      jwksUrl,
      applicationId: options.applicationId,
      handle,
      consent,
      describeConsent,
      registerContract: (contractId, publicKeyPem) =>
        Effect.gen(function*() {
          if (contractId.trim() === "" || contractId !== contractId.trim()) {
            return yield* new SimulatorError({ reason: "a contract id must not be empty or padded" })
          }
          const key = yield* Effect.tryPromise({
            try: () => importVerifyKey(contractId, publicKeyPem),
            catch: () =>
              new SimulatorError({ reason: `the public key of contract ${contractId} is not an RSA public PEM` })
          })
          verifyKeys.set(`${options.applicationId}_${contractId}`, key)
        }),
      stats: Effect.sync((): Stats => ({ requests: { ...requestCounts }, ...counters })),
      requests: Effect.sync((): ReadonlyArray<RecordedRequest> => recorded.slice()),
      revokeAccessToken: (accessToken) =>
        Effect.sync(() => {
          const token = accessTokens.get(accessToken)
          if (token !== undefined) token.revoked = true
        }),
      revokeUser: (digimeUserId) =>
        Effect.sync(() => {
          for (const family of users.get(digimeUserId)?.families ?? []) revokeFamily(family)
        }),
      rotateSigningKey: Effect.promise(generateSigningKey).pipe(
        Effect.map((key) => {
          signing = key
        })
      ),
      injectFault: (fault) =>
        Effect.sync(() => {
          faults.push(fault)
        })
    } satisfies Service
  })

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

/**
 * Serves a simulator as an in-memory `HttpClient`: no sockets, the handler runs in the caller's
 * fiber (so its `Clock` and `TestClock` apply).
 *
 * @since 0.1.0
 * @category constructors
 */
export const httpClient = (simulator: Service): HttpClient.HttpClient =>
  HttpClient.make((request, url) =>
    Effect.gen(function*() {
      const body = yield* collectBody(request)
      const response = yield* simulator.handle({
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
            new Response(nullBodyStatuses.includes(response.status) ? null : response.body, {
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

/**
 * The simulator and an `HttpClient` that talks to it.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<DigimeSimulator | HttpClient.HttpClient> =>
  Layer.effectContext(
    Effect.map(
      make(options),
      (simulator) =>
        Context.make(DigimeSimulator, simulator).pipe(Context.add(HttpClient.HttpClient, httpClient(simulator)))
    )
  )
