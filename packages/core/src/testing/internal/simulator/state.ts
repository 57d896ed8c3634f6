/**
 * The simulated digi.me's memory: the options resolved once (by `setup.ts`), the contracts (keys, access type),
 * users with their accounts and library files, token families, access and refresh tokens,
 * pre-authorizations and codes, sessions, account references, pushed data, nonces seen, pending
 * faults, recorded requests and counters. The functions here change it synchronously and never
 * read the clock: the caller passes `now`, in milliseconds since the epoch.
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type {
  AccessType,
  Endpoint,
  Fault,
  Options,
  ProviderPush,
  PushedFile,
  RecordedRequest,
  Stats
} from "../../DigimeSimulator.js"
import { type Json, randomId, randomToken } from "./responses.js"

/** @internal */
export const codeLifetimeMillis = 10 * 60 * 1000

/** @internal */
export const seconds = (millis: number): number => Math.floor(millis / 1000)

/** @internal */
export interface SigningKey {
  readonly kid: string
  readonly privateKey: CryptoKey
  readonly pem: string
}

/**
 * What a consent page is for: `authorize` (`{onboard}authorize`), `reauth` (`{onboard}user-reauth`),
 * `onboard` (an `oauth/token/reference` call without a code challenge: `{onboard}onboard` or
 * `{onboard}reauthorize`), `revoke` (the `location` of `permission-access/revoke/h:accountId`).
 *
 * @internal
 */
export type ConsentKind = "authorize" | "reauth" | "onboard" | "revoke"

/** @internal */
export interface PreAuthorization {
  readonly kind: ConsentKind
  readonly clientId: string
  /** The S256 challenge; none for `onboard` and `revoke`. */
  readonly challenge: string | undefined
  readonly redirectUri: string
  readonly state: string | undefined
  readonly userId: string
  readonly expiresAt: number
  /** The session answered with the call, started by the consent. */
  readonly sessionKey: string | undefined
  /** The account a `revoke` is about. */
  readonly accountId: string | undefined
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
  /** The source needs the user's re-consent: its syncs end `partial` with `ServiceAuthorizationError`. */
  reauthRequired: boolean
}

/**
 * A file of a user's library, as served: `bytes` are the content already compressed when
 * `compression` says so; the envelope is made at answer time.
 *
 * @internal
 */
export interface StoredFile {
  readonly name: string
  readonly accountId: string
  readonly metadata: Json
  readonly compression: "gzip" | "brotli" | undefined
  readonly bytes: Uint8Array
  readonly updatedDate: number
  /** `"raw"` for pushed data (raw metadata); `"mapped"` otherwise. */
  readonly kind: "mapped" | "raw"
}

/** @internal */
export interface User {
  readonly accounts: Array<Account>
  readonly families: Set<Family>
  /** The library, by file name, in the order the files were first added. */
  readonly files: Map<string, StoredFile>
}

/** @internal */
export interface Contract {
  readonly contractId: string
  readonly verifyKey: CryptoKey
  /** RSA-OAEP (SHA-1) of the same public key: file envelopes are wrapped to it. */
  readonly encryptKey: CryptoKey
  readonly accessType: AccessType
  /** When digi.me learnt of it: `expirationDate` of the contract details is one year later. */
  readonly registeredAt: number
}

/**
 * A session key, bound to the user and the contract that asked for it. A session of a
 * pre-authorization is `pending` until the user consents; a trigger session starts at once. Its
 * sync progresses with each file-list answer (`polls`).
 *
 * @internal
 */
export interface SyncSession {
  readonly key: string
  readonly clientId: string
  readonly userId: string
  readonly expiresAt: number
  readonly sourceFetch: boolean
  /** `sourceFetchFilter.account.id`: only these accounts are synced. */
  readonly accountIds: ReadonlyArray<string> | undefined
  started: boolean
  polls: number
}

/** @internal */
export interface AccountReference {
  readonly type: "accountId" | "cloudId"
  readonly value: string
  readonly clientId: string
  readonly expiresAt: number
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
  readonly sessionLifetime: number
  readonly syncPolls: number
  readonly latency: Duration.Duration | undefined
  readonly slidingExpiry: boolean
  readonly strictRotation: boolean
  readonly failEvery: Options["failEvery"]
  /** Opening a consent page through `handle` answers as Allow would. */
  readonly autoConsent: boolean
  /** Each request handled is logged (`Effect.logInfo`). */
  readonly log: boolean
}

/** @internal */
export interface State {
  readonly config: Config
  /** The contracts by client id (`{applicationId}_{contractId}`). */
  readonly contracts: Map<string, Contract>
  signing: SigningKey
  /** The key of `UnknownKid` tokens, made on first use. */
  strayKey: Promise<SigningKey> | undefined
  /** The RSA-OAEP key `WrongKeyEnvelope` wraps to, made on first use. */
  strayEncryptKey: Promise<CryptoKey> | undefined
  /** Nonce → its assertion's timestamp. */
  readonly nonces: Map<string, number>
  readonly preAuthorizations: Map<string, PreAuthorization>
  readonly codes: Map<string, AuthorizationCode>
  readonly accessTokens: Map<string, AccessToken>
  readonly refreshTokens: Map<string, RefreshToken>
  readonly users: Map<string, User>
  readonly sessions: Map<string, SyncSession>
  readonly references: Map<string, AccountReference>
  readonly pushed: Array<PushedFile>
  readonly providerPushes: Array<ProviderPush>
  readonly faults: Array<Fault>
  readonly recorded: Array<RecordedRequest>
  readonly requestCounts: Record<Endpoint, number>
  readonly counters: { -readonly [K in Exclude<keyof Stats, "requests">]: number }
  /** Requests to known endpoints so far, for `failEvery`. */
  apiRequests: number
}

/** @internal */
export const makeState = (config: Config, options: {
  readonly contracts: Map<string, Contract>
  readonly signing: SigningKey
  readonly endpoints: ReadonlyArray<Endpoint>
}): State => ({
  config,
  contracts: options.contracts,
  signing: options.signing,
  strayKey: undefined,
  strayEncryptKey: undefined,
  nonces: new Map(),
  preAuthorizations: new Map(),
  codes: new Map(),
  accessTokens: new Map(),
  refreshTokens: new Map(),
  users: new Map(),
  sessions: new Map(),
  references: new Map(),
  pushed: [],
  providerPushes: [],
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
    user = { accounts: [], families: new Set(), files: new Map() }
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
    serviceNumber: 1 + user.accounts.length,
    reauthRequired: false
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

/**
 * `Service.revokeAccessToken`: that access token is refused from now on.
 *
 * @internal
 */
export const revokeAccessToken = (state: State, value: string): Effect.Effect<void> =>
  Effect.sync(() => {
    const token = state.accessTokens.get(value)
    if (token !== undefined) token.revoked = true
  })

/**
 * `Service.revokeUser`: every token family of the user is revoked.
 *
 * @internal
 */
export const revokeUser = (state: State, userId: string): Effect.Effect<void> =>
  Effect.sync(() => {
    for (const family of state.users.get(userId)?.families ?? []) revokeFamily(state, family)
  })

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

/**
 * A new session of the user for the client: its answer `{expiry, key}`, `expiry` in milliseconds
 * since the epoch.
 *
 * @internal
 */
export const newSession = (
  state: State,
  options: {
    readonly clientId: string
    readonly userId: string
    readonly started: boolean
    readonly sourceFetch: boolean | undefined
    readonly accountIds: ReadonlyArray<string> | undefined
  },
  now: number
): { readonly expiry: number; readonly key: string } => {
  const key = randomToken()
  const expiresAt = now + state.config.sessionLifetime
  state.sessions.set(key, {
    key,
    clientId: options.clientId,
    userId: options.userId,
    expiresAt,
    sourceFetch: options.sourceFetch ?? true,
    accountIds: options.accountIds,
    started: options.started,
    polls: 0
  })
  return { expiry: expiresAt, key }
}

/** @internal */
export const contractIdOf = (state: State, clientId: string): string =>
  state.contracts.get(clientId)?.contractId ?? clientId.slice(state.config.applicationId.length + 1)

/** The user's account with that id, if any. @internal */
export const accountOf = (state: State, userId: string, accountId: string): Account | undefined =>
  state.users.get(userId)?.accounts.find((account) => account.id === accountId)
