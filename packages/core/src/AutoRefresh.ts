/**
 * `withAutoRefresh` runs an effect with a valid access token of a stored user access token, and
 * `nextStep` turns the errors it can end with into the one thing left to do.
 *
 * | situation | outcome |
 * | --- | --- |
 * | no token stored | `ReauthRequired` (`Missing`), no request sent |
 * | access token expires within the lead time, refresh token expired by the Clock | `RefreshTokenExpired`, no request sent |
 * | access token expires within the lead time, not within the wait margin | run at once with it; one refresh starts in the background |
 * | access token expires within the wait margin, or has expired | refresh, store, then run with the new token |
 * | the effect fails with `AccessTokenRejected` | retry with a newer stored token, or refresh and retry once |
 * | rejected again, the new token still valid when the refusal arrived | `InvalidAccessToken` |
 * | rejected again, the new token expired by then (a call slower than a token lives) | renew and retry, up to 3 tokens, then `RequestError` (`Timeout`) |
 * | digi.me says the refresh token expired | `RefreshTokenExpired` |
 * | digi.me says the refresh token is invalid | `ReauthRequired` (`RefreshTokenInvalid`) |
 * | another process is refreshing the token | its access token while valid, else wait for that refresh |
 * | a refresh's outcome is unknown (answer lost, holder dead) | its access token while valid, then `ReauthRequired` (`RefreshOutcomeUnknown`); never a replay |
 * | the refresh fails otherwise | that error; the stored token is unchanged |
 * | the effect fails with anything else | that error, unchanged |
 *
 * @since 0.1.0
 */
import * as DateTime from "effect/DateTime"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Authorization from "./Authorization.js"
import type { Credentials, PullOptions } from "./DataProtocol.js"
import type { DigimeClient, TokenCallError } from "./DigimeClient.js"
import { InvalidAccessToken, RequestError } from "./DigimeError.js"
import type { AccessTokenRejected, ReauthRequired, RefreshTokenExpired, TokenStoreError } from "./DigimeError.js"
import * as Tracing from "./internal/tracing.js"
import type { PendingAuthorizations } from "./PendingAuthorizations.js"
import * as TokenKey from "./TokenKey.js"
import { TokenManager } from "./TokenManager.js"
import type * as Manager from "./TokenManager.js"
import type { Versioned } from "./TokenStore.js"

/**
 * What the wrapped effect receives: the key, its contract id and the current access token.
 * Every data call of `DigimeClient` accepts it as it is.
 *
 * @since 0.1.0
 * @category models
 */
export interface KeyedCredentials extends Credentials {
  readonly key: TokenKey.TokenKey
}

/**
 * The errors `withAutoRefresh` adds to those of the effect it wraps: the three token-state errors
 * and the failures of a refresh.
 *
 * @since 0.1.0
 * @category errors
 */
export type AutoRefreshError = Manager.AutoRefreshError

// Any failure tagged AccessTokenRejected, the library's own or an application's.
const isAccessTokenRejected = (error: unknown): error is AccessTokenRejected =>
  typeof error === "object" && error !== null && (error as { readonly _tag?: unknown })._tag === "AccessTokenRejected"

type Use<A, E, R> = (credentials: KeyedCredentials) => Effect.Effect<A, E, R>

type Wrapped<A, E, R> = Effect.Effect<A, Exclude<E, AccessTokenRejected> | AutoRefreshError, R | TokenManager>

// What one `withAutoRefresh` call works with.
interface Call<A, E, R> {
  readonly manager: Manager.Service
  readonly key: TokenKey.TokenKey
  readonly use: Use<A, E, R>
}

// How many access tokens in a row may expire while the call is in flight before it gives up.
const maxOutlived = 3

// One run of `use` with the token `versioned`. `renewed`: the token was just renewed for this
// call; `outlived`: how many tokens in a row expired before digi.me's refusal of them arrived.
const attempt = <A, E, R>(
  call: Call<A, E, R>,
  versioned: Versioned,
  renewed: boolean,
  outlived: number
): Effect.Effect<A, Exclude<E, AccessTokenRejected> | AutoRefreshError, R> =>
  Effect.catchIf(
    call.use({ key: call.key, contractId: call.key.contractId, accessToken: versioned.token.accessToken.value }),
    isAccessTokenRejected,
    () => rejected(call, versioned, renewed, outlived)
  ) as Effect.Effect<A, Exclude<E, AccessTokenRejected> | AutoRefreshError, R>

const rejected = <A, E, R>(
  call: Call<A, E, R>,
  versioned: Versioned,
  renewed: boolean,
  outlived: number
): Effect.Effect<A, Exclude<E, AccessTokenRejected> | AutoRefreshError, R> => {
  const { key, manager } = call
  const renew = (outlivedNow: number) =>
    Effect.flatMap(manager.renew(key, versioned.version), (fresh) => attempt(call, fresh, true, outlivedNow))
  return Effect.gen(function*() {
    if (!renewed) {
      yield* Effect.logDebug("The access token was rejected: re-reading the store")
      return yield* renew(0)
    }
    // A token renewed for this call and refused. digi.me judged it somewhere between the send and
    // the refusal's arrival (now): if it had expired (or was due) by now, the call outlived it and
    // the refusal says nothing about the grant. Only a token valid all along was refused for good.
    if (!manager.usable(versioned, DateTime.toEpochMillis(yield* DateTime.now))) {
      if (outlived + 1 < maxOutlived) {
        yield* Effect.logDebug("The renewed access token expired in flight: renewing once more")
        return yield* renew(outlived + 1)
      }
      yield* Effect.logWarning("Each renewed access token expired before digi.me answered the call")
      return yield* new RequestError({
        operation: "withAutoRefresh",
        reason: "Timeout",
        description:
          `digi.me refused ${maxOutlived} access tokens in a row, each expired before its refusal arrived: the call takes longer than an access token lives`
      })
    }
    yield* Effect.logWarning("The access token was rejected right after a refresh")
    yield* manager.reportInvalidAccessToken(key, versioned.version)
    return yield* new InvalidAccessToken({ key })
  }).pipe((self) =>
    Effect.flatMap(
      TokenKey.tag(key),
      (tag) => Effect.annotateLogs(self, { "digime.contract_id": key.contractId, "digime.key": tag })
    )
  )
}

const run = <A, E, R>(key: TokenKey.TokenKey, use: Use<A, E, R>): Wrapped<A, E, R> =>
  Effect.flatMap(TokenManager, (manager) =>
    Effect.clockWith((clock) => {
      // The hot path: a token in memory that needs no refresh, no store read, no generator.
      const call: Call<A, E, R> = { manager, key, use }
      const hit = manager.cached(key, clock.unsafeCurrentTimeMillis())
      return hit !== undefined
        ? attempt(call, hit, false, 0)
        : Effect.flatMap(manager.current(key), (found) => attempt(call, found.versioned, found.renewed, 0))
    }))

/**
 * Runs `use` with a valid access token of the token stored under `key`.
 *
 * The stored token is refreshed when its access token expires within the wait margin (within the
 * lead time, the call goes on with the valid token while one refresh runs in the background), or
 * when `use` fails with `AccessTokenRejected`; a refreshed token is stored (compare-and-set) before
 * anyone uses it, and concurrent callers share one refresh (`TokenManager`). A caller interrupted
 * while waiting does not cancel the refresh. The effect's own errors pass through unchanged,
 * except `AccessTokenRejected`, which never escapes. Pipeable: `pipe(use, withAutoRefresh(key))`.
 *
 * @example
 * import { AutoRefresh, DigimeClient, TokenKey } from "@digime-effect/core"
 * import { Effect } from "effect"
 *
 * const accounts = Effect.gen(function*() {
 *   const client = yield* DigimeClient.DigimeClient
 *   const key = TokenKey.make("user-42", "contract-1")
 *   return yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
 * })
 *
 * @since 0.1.0
 * @category combinators
 */
export function withAutoRefresh(key: TokenKey.TokenKey): <A, E, R>(use: Use<A, E, R>) => Wrapped<A, E, R>
/**
 * @since 0.1.0
 * @category combinators
 */
export function withAutoRefresh<A, E, R>(key: TokenKey.TokenKey, use: Use<A, E, R>): Wrapped<A, E, R>
/**
 * @since 0.1.0
 * @category combinators
 */
export function withAutoRefresh<A, E, R>(
  key: TokenKey.TokenKey,
  use?: Use<A, E, R>
): Wrapped<A, E, R> | (<A2, E2, R2>(use: Use<A2, E2, R2>) => Wrapped<A2, E2, R2>) {
  return use === undefined ? (later) => run(key, later) : run(key, use)
}

/**
 * The errors `nextStep` handles.
 *
 * @since 0.1.0
 * @category models
 */
export type TokenStateError = InvalidAccessToken | RefreshTokenExpired | ReauthRequired

/**
 * @since 0.1.0
 * @category models
 */
export interface NextStepOptions {
  readonly callbackUrl: string
  /** How long the user has to come back; default 10 minutes. */
  readonly expiresIn?: Duration.DurationInput | undefined
  readonly locale?: string | undefined
  readonly sessionOptions?: PullOptions | undefined
  /** Extra options of a fresh authorization (when reauthorization is impossible). */
  readonly authorize?: Omit<Authorization.StartOptions, "key" | "callbackUrl" | "expiresIn"> | undefined
}

/**
 * Turns `RefreshTokenExpired`, `ReauthRequired` or `InvalidAccessToken` into the right next step,
 * already started: a reauthorization when digi.me accepts the stored access token for it,
 * otherwise (nothing stored, or the access token refused) a fresh authorization. Send the user to
 * the `url` of the result; `Authorization.completeAuthorization` finishes either kind.
 *
 * @example
 * import { AutoRefresh, DigimeClient, TokenKey } from "@digime-effect/core"
 * import { Effect } from "effect"
 *
 * const key = TokenKey.make("user-42", "contract-1")
 * const callbackUrl = "https://app.example/digime/callback"
 * const accountsOrRedirect = Effect.flatMap(DigimeClient.DigimeClient, (client) =>
 *   AutoRefresh.withAutoRefresh(key, client.readAccounts).pipe(
 *     Effect.catchTags({
 *       RefreshTokenExpired: (error) => AutoRefresh.nextStep(error, { callbackUrl }),
 *       ReauthRequired: (error) => AutoRefresh.nextStep(error, { callbackUrl }),
 *       InvalidAccessToken: (error) => AutoRefresh.nextStep(error, { callbackUrl })
 *     })
 *   ))
 *
 * @since 0.1.0
 * @category combinators
 */
export const nextStep = (
  error: TokenStateError,
  options: NextStepOptions
): Effect.Effect<
  Authorization.Started,
  TokenCallError | TokenStoreError,
  DigimeClient | TokenManager | PendingAuthorizations
> => {
  const key = error.key
  const authorize = Authorization.startAuthorization({
    ...options.authorize,
    key,
    callbackUrl: options.callbackUrl,
    expiresIn: options.expiresIn,
    locale: options.locale ?? options.authorize?.locale,
    sessionOptions: options.sessionOptions ?? options.authorize?.sessionOptions
  })
  // Reauthorization needs a genuine access token: a stored one whose refresh token expired, was
  // refused, or may have been spent by a refresh whose answer never arrived.
  const canReauthorize = error._tag === "RefreshTokenExpired" ||
    (error._tag === "ReauthRequired" && error.reason !== "Missing")
  return (canReauthorize
    ? Authorization.startReauthorization({
      key,
      callbackUrl: options.callbackUrl,
      expiresIn: options.expiresIn,
      locale: options.locale,
      sessionOptions: options.sessionOptions
    }).pipe(Effect.catchTags({ InvalidAccessToken: () => authorize, ReauthRequired: () => authorize }))
    : authorize).pipe(
      Tracing.withSpan("AutoRefresh.nextStep", {
        attributes: { "digime.contract_id": key.contractId, "digime.error": error._tag }
      })
    )
}
