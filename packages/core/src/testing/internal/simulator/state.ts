/**
 * The simulated digi.me's memory: the options resolved once, the contracts' keys, users and their
 * accounts, token families, access and refresh tokens, pre-authorizations and codes, nonces seen,
 * pending faults, recorded requests and counters. The functions here change it synchronously and
 * never read the clock: the caller passes `now`, in milliseconds since the epoch.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { Endpoint, Fault, Options, RecordedRequest, Stats } from "../../DigimeSimulator.js"
import { type Json, randomId, randomToken } from "./responses.js"

/** @internal */
export const codeLifetimeMillis = 10 * 60 * 1000

const sessionLifetimeMillis = 30 * 60 * 1000

/** @internal */
export const seconds = (millis: number): number => Math.floor(millis / 1000)

/** @internal */
export interface SigningKey {
  readonly kid: string
  readonly privateKey: CryptoKey
  readonly pem: string
}

/** @internal */
export interface PreAuthorization {
  readonly kind: "authorize" | "reauth"
  readonly clientId: string
  readonly challenge: string
  readonly redirectUri: string
  readonly state: string | undefined
  readonly userId: string
  readonly expiresAt: number
  used: boolean
}

/** @internal */
export interface AuthorizationCode {
  readonly kind: "authorize" | "reauth"
  readonly clientId: string
  readonly challenge: string
  readonly userId: string
  readonly expiresAt: number
  used: boolean
}

/** @internal */
export interface Family {
  readonly id: string
  readonly userId: string
  readonly clientId: string
  readonly consentId: string
  readonly refreshExpiresAt: number
  revoked: boolean
}

/** @internal */
export interface AccessToken {
  readonly family: Family
  readonly expiresAt: number
  revoked: boolean
}

/** @internal */
export interface RefreshToken {
  readonly family: Family
  readonly expiresAt: number
  rotated: boolean
}

/** @internal */
export interface Account {
  readonly id: string
  readonly reference: string
  readonly createdDate: number
  readonly serviceNumber: number
}

/** @internal */
export interface User {
  readonly accounts: Array<Account>
  readonly families: Set<Family>
}

/**
 * The options, resolved and checked once. Durations in milliseconds.
 *
 * @internal
 */
export interface Config {
  readonly applicationId: string
  readonly baseUrl: string
  readonly baseOrigin: string
  readonly onboardUrl: string
  readonly jwksUrl: string
  readonly accessLifetime: number
  readonly refreshLifetime: number
  readonly maxAge: number
  readonly latency: Duration.Duration | undefined
  readonly slidingExpiry: boolean
  readonly strictRotation: boolean
  readonly failEvery: Options["failEvery"]
}

/** @internal */
export interface State {
  readonly config: Config
  /** Verifying keys by client id (`{applicationId}_{contractId}`). */
  readonly verifyKeys: Map<string, CryptoKey>
  signing: SigningKey
  /** The key of `UnknownKid` tokens, made on first use. */
  strayKey: Promise<SigningKey> | undefined
  /** Nonce → its assertion's timestamp. */
  readonly nonces: Map<string, number>
  readonly preAuthorizations: Map<string, PreAuthorization>
  readonly codes: Map<string, AuthorizationCode>
  readonly accessTokens: Map<string, AccessToken>
  readonly refreshTokens: Map<string, RefreshToken>
  readonly users: Map<string, User>
  readonly faults: Array<Fault>
  readonly recorded: Array<RecordedRequest>
  readonly requestCounts: Record<Endpoint, number>
  readonly counters: { -readonly [K in Exclude<keyof Stats, "requests">]: number }
  /** Requests to known endpoints so far, for `failEvery`. */
  apiRequests: number
}

const withSlash = (url: string): string => url.endsWith("/") ? url : `${url}/`

const millisOf = (input: Duration.DurationInput): number => Duration.toMillis(Duration.decode(input))

/**
 * Resolves the options; dies on a `baseUrl` that is not a URL or a malformed `failEvery`.
 *
 * @internal
 */
export const makeConfig = (options: Options): Effect.Effect<Config> =>
  Effect.gen(function*() {
    const baseUrl = withSlash(options.baseUrl ?? "https://api.digi.me/v1.7/")
    const baseOrigin = yield* Effect.try({
      try: () => new URL(baseUrl).origin,
      catch: () => new Error(`DigimeSimulator: baseUrl ${baseUrl} is not a URL`)
    }).pipe(Effect.orDie)
    const failEvery = options.failEvery
    if (
      failEvery !== undefined &&
      (!Number.isSafeInteger(failEvery.nth) || failEvery.nth < 1 || !Number.isInteger(failEvery.status) ||
        failEvery.status < 500 || failEvery.status > 599)
    ) {
      return yield* Effect.dieMessage("DigimeSimulator: failEvery needs a positive integer nth and a 5xx status")
    }
    return {
      applicationId: options.applicationId,
      baseUrl,
      baseOrigin,
      onboardUrl: withSlash(options.onboardUrl ?? "https://api.digi.me/apps/saas/"),
      jwksUrl: `${baseUrl}jwks/oauth`,
      accessLifetime: millisOf(options.accessTokenLifetime ?? "1 hour"),
      refreshLifetime: millisOf(options.refreshTokenLifetime ?? "30 days"),
      maxAge: millisOf(options.assertionMaxAge ?? "5 minutes"),
      latency: options.latency === undefined ? undefined : Duration.decode(options.latency),
      slidingExpiry: (options.refreshTokenExpiry ?? "sliding") === "sliding",
      strictRotation: options.strictRotation ?? true,
      failEvery
    }
  })

/** @internal */
export const makeState = (config: Config, options: {
  readonly verifyKeys: Map<string, CryptoKey>
  readonly signing: SigningKey
  readonly endpoints: ReadonlyArray<Endpoint>
}): State => ({
  config,
  verifyKeys: options.verifyKeys,
  signing: options.signing,
  strayKey: undefined,
  nonces: new Map(),
  preAuthorizations: new Map(),
  codes: new Map(),
  accessTokens: new Map(),
  refreshTokens: new Map(),
  users: new Map(),
  faults: [],
  recorded: [],
  requestCounts: Object.fromEntries(options.endpoints.map((endpoint) => [endpoint, 0])) as Record<Endpoint, number>,
  counters: { exchanges: 0, refreshes: 0, replays: 0, revocations: 0, rejectedAssertions: 0 },
  apiRequests: 0
})

/** @internal */
export const clientIdOf = (config: Config, contractId: string): string => `${config.applicationId}_${contractId}`

/** @internal */
export const userOf = (state: State, userId: string): User => {
  let user = state.users.get(userId)
  if (user === undefined) {
    user = { accounts: [], families: new Set() }
    state.users.set(userId, user)
  }
  return user
}

/**
 * One more account for the user, as a consent to a new source makes.
 *
 * @internal
 */
export const addAccount = (state: State, userId: string, now: number): Account => {
  const user = userOf(state, userId)
  const account: Account = {
    id: randomId(),
    reference: randomId(),
    createdDate: now,
    serviceNumber: 1 + user.accounts.length
  }
  user.accounts.push(account)
  return account
}

/** @internal */
export const revokeFamily = (state: State, family: Family): void => {
  if (family.revoked) return
  family.revoked = true
  state.counters.revocations++
}

/** @internal */
export const newFamily = (state: State, userId: string, clientId: string, now: number): Family => {
  const family: Family = {
    id: randomId(),
    userId,
    clientId,
    consentId: randomId(),
    refreshExpiresAt: seconds(now + state.config.refreshLifetime) * 1000,
    revoked: false
  }
  userOf(state, userId).families.add(family)
  return family
}

/**
 * A new access and refresh token of the family: the payload of an `oauth/token` answer.
 *
 * @internal
 */
export const issueTokens = (state: State, family: Family, now: number): Json => {
  const access = randomToken()
  const refresh = randomToken()
  const accessExpiresAt = seconds(now + state.config.accessLifetime) * 1000
  const refreshExpiresAt = state.config.slidingExpiry
    ? seconds(now + state.config.refreshLifetime) * 1000
    : family.refreshExpiresAt
  state.accessTokens.set(access, { family, expiresAt: accessExpiresAt, revoked: false })
  state.refreshTokens.set(refresh, { family, expiresAt: refreshExpiresAt, rotated: false })
  return {
    access_token: { value: access, expires_on: seconds(accessExpiresAt) },
    refresh_token: { value: refresh, expires_on: seconds(refreshExpiresAt) },
    sub: family.userId,
    consentid: family.consentId,
    identifier: { id: family.userId },
    token_type: "Bearer"
  }
}

/**
 * The access token if it is usable for a data call of `clientId` (any client when `undefined`) at `now`.
 *
 * @internal
 */
export const usableAccessToken = (
  state: State,
  value: string | undefined,
  now: number,
  clientId: string | undefined
): AccessToken | undefined => {
  const token = value === undefined ? undefined : state.accessTokens.get(value)
  if (token === undefined || token.revoked || token.family.revoked || now >= token.expiresAt) return undefined
  if (clientId !== undefined && token.family.clientId !== clientId) return undefined
  return token
}

/** @internal */
export const session = (now: number): Json => ({ expiry: now + sessionLifetimeMillis, key: randomToken() })
