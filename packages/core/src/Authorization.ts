/**
 * Authorization in two calls. `startAuthorization` (or `startReauthorization`) makes the PKCE
 * verifier and an unguessable single-use state, keeps them server-side in `PendingAuthorizations`
 * bound to the key, and returns the URL to send the user to. `completeAuthorization` takes the
 * callback as it arrived, refuses unknown, expired and replayed states and callbacks meant for
 * another user, exchanges the code with the kept verifier and stores the token under the key.
 *
 * @example
 * import { Authorization, TokenKey } from "@digime-effect/core"
 * import { Effect } from "effect"
 *
 * // `userId` is the user signed in to the application, in both routes.
 * const connect = (userId: string) =>
 *   Authorization.startAuthorization({
 *     key: TokenKey.make(userId, "contract-1"),
 *     callbackUrl: "https://app.example/digime/callback"
 *   }).pipe(Effect.map((started) => started.url)) // redirect the browser there
 *
 * const callback = (requestUrl: string, userId: string) =>
 *   Authorization.completeAuthorization(requestUrl, { expectedKey: TokenKey.make(userId, "contract-1") })
 *
 * @since 0.1.0
 */
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { PullOptions, Session } from "./DataProtocol.js"
import { DigimeClient } from "./DigimeClient.js"
import type { AuthorizeOptions, AuthorizeUrl, TokenCallError } from "./DigimeClient.js"
import { CallbackError, InvalidOptions } from "./DigimeError.js"
import type { InvalidAccessToken, ReauthRequired, TokenStoreError } from "./DigimeError.js"
import { missingState, toSearchParams } from "./internal/callback.js"
import { base64url, randomBytes } from "./internal/encoding.js"
import * as Tracing from "./internal/tracing.js"
import { PendingAuthorizations } from "./PendingAuthorizations.js"
import type { Pending } from "./PendingAuthorizations.js"
import type { TokenKey } from "./TokenKey.js"
import { TokenManager } from "./TokenManager.js"
import type { AutoRefreshError } from "./TokenManager.js"
import * as TokenProtocol from "./TokenProtocol.js"
import type { CallbackQuery } from "./TokenProtocol.js"
import type { UserAccessToken } from "./UserAccessToken.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface StartOptions extends Omit<AuthorizeOptions, "contractId" | "callbackUrl" | "state"> {
  /** Whose token this authorization is for; the contract comes from the key. */
  readonly key: TokenKey
  readonly callbackUrl: string
  /** How long the user has to come back; default 10 minutes. */
  readonly expiresIn?: Duration.DurationInput | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ReauthorizeStartOptions {
  readonly key: TokenKey
  readonly callbackUrl: string
  readonly locale?: string | undefined
  readonly triggerQuery?: boolean | undefined
  readonly sessionOptions?: PullOptions | undefined
  /** How long the user has to come back; default 10 minutes. */
  readonly expiresIn?: Duration.DurationInput | undefined
}

/**
 * An authorization in progress: send the user's browser to `url`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Started {
  readonly kind: "authorize" | "reauthorize"
  readonly key: TokenKey
  readonly url: string
  /**
   * The state digi.me will echo, already kept server-side. Whoever holds it (with the code of a
   * consent) can complete the authorization: treat it as a secret, never log it.
   */
  readonly state: string
  readonly expiresAt: DateTime.Utc
  readonly session: Session
}

/**
 * A completed authorization: the token is stored under `key`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Completed {
  readonly kind: "authorize" | "reauthorize"
  readonly key: TokenKey
  readonly token: UserAccessToken
  /** Present after a first authorization; matches `reference` in `readAccounts`. */
  readonly accountReference?: string | undefined
}

const defaultExpiry = Duration.minutes(10)

const expiryOf = (operation: string, input: Duration.DurationInput | undefined) => {
  if (input === undefined) return Effect.succeed(defaultExpiry)
  const duration = Duration.decodeUnknown(input)
  return duration._tag === "Some" && Duration.greaterThan(duration.value, Duration.zero) &&
      Duration.isFinite(duration.value)
    ? Effect.succeed(duration.value)
    : Effect.fail(new InvalidOptions({ operation, field: "expiresIn", reason: "must be a positive, finite duration" }))
}

// 256 bits from the platform's CSPRNG.
const newState = (): string => base64url(randomBytes(32))

const remember = <E>(
  kind: Pending["kind"],
  options: {
    readonly key: TokenKey
    readonly callbackUrl: string
    readonly expiresIn?: Duration.DurationInput | undefined
  },
  begin: (state: string) => Effect.Effect<AuthorizeUrl, E>
): Effect.Effect<Started, E | InvalidOptions | TokenStoreError, PendingAuthorizations> =>
  Effect.gen(function*() {
    const operation = kind === "authorize" ? "startAuthorization" : "startReauthorization"
    const lifetime = yield* expiryOf(operation, options.expiresIn)
    const pendingAuthorizations = yield* PendingAuthorizations
    const state = newState()
    const started = yield* begin(state)
    const expiresAt = DateTime.addDuration(yield* DateTime.now, lifetime)
    yield* pendingAuthorizations.put(state, {
      key: options.key,
      kind,
      codeVerifier: started.codeVerifier,
      callbackUrl: options.callbackUrl,
      expiresAt
    })
    return { kind, key: options.key, url: started.url, state, expiresAt, session: started.session } satisfies Started
  })

/**
 * Starts a first authorization (or the addition of a contract to a user's library, given
 * `accessToken`). Next: redirect to `url`; digi.me calls back; `completeAuthorization`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const startAuthorization = (
  options: StartOptions
): Effect.Effect<Started, TokenCallError | TokenStoreError, DigimeClient | PendingAuthorizations> =>
  Effect.flatMap(DigimeClient, (client) => {
    const { callbackUrl, expiresIn: _expiresIn, key, ...rest } = options
    return remember(
      "authorize",
      options,
      (state) => client.getAuthorizeUrl({ ...rest, contractId: key.contractId, callbackUrl, state })
    )
  }).pipe(Tracing.withSpan("Authorization.startAuthorization", {
    attributes: { "digime.contract_id": options.key.contractId }
  }))

/**
 * @since 0.2.0
 * @category models
 */
export interface AddContractOptions extends Omit<StartOptions, "accessToken"> {
  /**
   * The same user's key under a contract it already has a token for: its access token (valid,
   * refreshed first if due, through the `TokenManager`) tells digi.me which library to add the
   * contract of `key` to. Same user id as `key`, another contract.
   */
  readonly existing: TokenKey
}

/**
 * Starts the authorization of another contract for a user who already has a token under one
 * (digi.me needs a token per contract: a read contract and a write contract, for instance). The
 * consent lands in the same digi.me library; `completeAuthorization` stores the new token under
 * `key`. The existing token never leaves the library.
 *
 * @example
 * import { Authorization, TokenKey } from "@digime-effect/core"
 *
 * const addWriteContract = (userId: string) =>
 *   Authorization.startAddingContract({
 *     key: TokenKey.make(userId, "write-contract"),
 *     existing: TokenKey.make(userId, "read-contract"),
 *     callbackUrl: "https://app.example/digime/callback"
 *   })
 *
 * @since 0.2.0
 * @category constructors
 */
export const startAddingContract = (
  options: AddContractOptions
): Effect.Effect<
  Started,
  TokenCallError | TokenStoreError | AutoRefreshError,
  DigimeClient | PendingAuthorizations | TokenManager
> =>
  Effect.gen(function*() {
    const { existing, key } = options
    if (existing.userId !== key.userId || existing.contractId === key.contractId) {
      return yield* new InvalidOptions({
        operation: "startAddingContract",
        field: "existing",
        reason: "must be the same user's key under another contract"
      })
    }
    const manager = yield* TokenManager
    const current = yield* manager.get(existing)
    const { existing: _existing, ...rest } = options
    return yield* startAuthorization({ ...rest, accessToken: current.token.accessToken.value })
  }).pipe(Tracing.withSpan("Authorization.startAddingContract", {
    attributes: { "digime.contract_id": options.key.contractId }
  }))

/**
 * Starts a reauthorization with the stored access token (needed when the refresh token expired or
 * was refused). Fails with `InvalidAccessToken` when digi.me refuses that access token: only
 * `startAuthorization` helps then (`AutoRefresh.nextStep` does that fall-back for you).
 *
 * @since 0.1.0
 * @category constructors
 */
export const startReauthorization = (
  options: ReauthorizeStartOptions
): Effect.Effect<
  Started,
  TokenCallError | TokenStoreError | InvalidAccessToken | ReauthRequired,
  TokenManager | PendingAuthorizations
> =>
  Effect.flatMap(TokenManager, (manager) =>
    remember("reauthorize", options, (state) =>
      manager.getReauthorizeUrl({
        key: options.key,
        callbackUrl: options.callbackUrl,
        state,
        locale: options.locale,
        triggerQuery: options.triggerQuery,
        sessionOptions: options.sessionOptions
      }))).pipe(Tracing.withSpan("Authorization.startReauthorization", {
        attributes: { "digime.contract_id": options.key.contractId }
      }))

/**
 * @since 0.1.0
 * @category models
 */
export interface CompleteOptions {
  /**
   * The key the callback must complete: the user the browser that arrives with the callback is
   * signed in as. A callback whose authorization was started for another key fails with
   * `CallbackError` (`UnexpectedKey`) before its code is exchanged, and its state is spent. Without
   * it, the grant is stored under whatever key the authorization was started for, whoever consents.
   */
  readonly expectedKey?: TokenKey | undefined
}

const sameKey = (a: TokenKey, b: TokenKey): boolean => a.userId === b.userId && a.contractId === b.contractId

/**
 * Finishes an authorization from its callback (the request URL, its query, or the parameters).
 * Refuses a callback whose state is missing, unknown, expired or already used, one started for
 * another key than `expectedKey`, and a refusal (`success=false`, with digi.me's `errorCode` even
 * when the state is missing), each with a `CallbackError`; the pending entry is consumed by the
 * first callback that names it, so a replay changes nothing. Then exchanges the code with the kept
 * verifier and stores the token under the pending entry's key.
 *
 * The state proves only that the callback answers an authorization this application started, not
 * who consented: an onboarding URL forwarded to someone else comes back with a valid state. Bind
 * the authorization to the browser that started it (keep the key in its session, or in a cookie
 * set with the redirect) and pass that key as `expectedKey`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const completeAuthorization = (
  callback: CallbackQuery,
  options?: CompleteOptions
): Effect.Effect<
  Completed,
  CallbackError | InvalidOptions | TokenCallError | TokenStoreError,
  TokenManager | PendingAuthorizations
> =>
  Effect.gen(function*() {
    const params = toSearchParams(callback)
    const state = params.get("state")
    if (state === null || state === "") return yield* missingState(params)
    const pendingAuthorizations = yield* PendingAuthorizations
    const consumed = yield* pendingAuthorizations.consume(state, yield* DateTime.now)
    switch (consumed._tag) {
      case "Unknown":
        return yield* new CallbackError({ reason: "UnknownState" })
      case "Expired":
        return yield* new CallbackError({ reason: "ExpiredState" })
      case "AlreadyUsed":
        return yield* new CallbackError({ reason: "ReusedState" })
    }
    const { pending } = consumed
    const expectedKey = options?.expectedKey
    if (expectedKey !== undefined && !sameKey(expectedKey, pending.key)) {
      return yield* new CallbackError({ reason: "UnexpectedKey" })
    }
    const result = yield* TokenProtocol.parseCallback(params, state)
    const manager = yield* TokenManager
    const token = yield* manager.exchangeCodeForToken({
      key: pending.key,
      code: result.code,
      codeVerifier: pending.codeVerifier
    })
    return {
      kind: pending.kind,
      key: pending.key,
      token,
      ...(result.accountReference === undefined ? {} : { accountReference: result.accountReference })
    } satisfies Completed
  }).pipe(Tracing.withSpan("Authorization.completeAuthorization"))
