/**
 * `withAutoRefresh` runs an effect with a valid access token of a stored user access token, and
 * `nextStep` turns the errors it can end with into the one thing left to do.
 *
 * | situation | outcome |
 * | --- | --- |
 * | no token stored | `ReauthRequired` (`Missing`), no request sent |
 * | access token expires within the lead time, refresh token expired by the Clock | `RefreshTokenExpired`, no request sent |
 * | access token expires within the lead time | refresh, store, then run with the new token |
 * | the effect fails with `AccessTokenRejected` | retry with a newer stored token, or refresh and retry once |
 * | rejected again after that | `InvalidAccessToken` |
 * | digi.me says the refresh token expired | `RefreshTokenExpired` |
 * | digi.me says the refresh token is invalid | `ReauthRequired` (`RefreshTokenInvalid`) |
 * | the refresh fails otherwise | that error; the stored token is unchanged |
 * | the effect fails with anything else | that error, unchanged |
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Authorization from "./Authorization.js"
import { DigimeClient } from "./DigimeClient.js"
import type { AutoRefreshError, PullOptions, TokenCallError } from "./DigimeClient.js"
import type * as DigimeClientModel from "./DigimeClient.js"
import type { AccessTokenRejected, InvalidAccessToken, ReauthRequired, RefreshTokenExpired } from "./DigimeError.js"
import type { TokenStoreError } from "./DigimeError.js"
import type { PendingAuthorizations } from "./PendingAuthorizations.js"
import type { TokenKey } from "./TokenKey.js"

/**
 * What the wrapped effect receives: the key, its contract id and the current access token.
 * Every data call of `DigimeClient` accepts it as it is.
 *
 * @since 0.1.0
 * @category models
 */
export type KeyedCredentials = DigimeClientModel.KeyedCredentials

/**
 * Runs `use` with a valid access token of the token stored under `key`.
 *
 * The stored token is refreshed when its access token expires within the lead time, or when
 * `use` fails with `AccessTokenRejected`; a refreshed token is stored (compare-and-set) before
 * anyone uses it, and concurrent callers share one refresh. A caller interrupted while waiting
 * does not cancel the refresh. The effect's own errors pass through unchanged, except
 * `AccessTokenRejected`, which never escapes.
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
export const withAutoRefresh: {
  (key: TokenKey): <A, E, R>(
    use: (credentials: KeyedCredentials) => Effect.Effect<A, E, R>
  ) => Effect.Effect<A, Exclude<E, AccessTokenRejected> | AutoRefreshError, R | DigimeClient>
  <A, E, R>(
    key: TokenKey,
    use: (credentials: KeyedCredentials) => Effect.Effect<A, E, R>
  ): Effect.Effect<A, Exclude<E, AccessTokenRejected> | AutoRefreshError, R | DigimeClient>
} = (<A, E, R>(key: TokenKey, use?: (credentials: KeyedCredentials) => Effect.Effect<A, E, R>) => {
  const run = <A2, E2, R2>(f: (credentials: KeyedCredentials) => Effect.Effect<A2, E2, R2>) =>
    Effect.flatMap(DigimeClient, (client) => client.withAutoRefresh(key, f))
  return use === undefined ? run : run(use)
}) as never

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
  DigimeClient | PendingAuthorizations
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
  const canReauthorize = error._tag === "RefreshTokenExpired" ||
    (error._tag === "ReauthRequired" && error.reason === "RefreshTokenInvalid")
  return (canReauthorize
    ? Authorization.startReauthorization({
      key,
      callbackUrl: options.callbackUrl,
      expiresIn: options.expiresIn,
      locale: options.locale,
      sessionOptions: options.sessionOptions
    }).pipe(Effect.catchTags({ InvalidAccessToken: () => authorize, ReauthRequired: () => authorize }))
    : authorize).pipe(
      Effect.withSpan("AutoRefresh.nextStep", {
        attributes: { "digime.contract_id": key.contractId, "digime.error": error._tag }
      })
    )
}
