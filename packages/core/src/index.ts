/**
 * Authorization in two calls: start (URL to redirect to), complete (from the callback).
 *
 * @since 0.1.0
 */
export * as Authorization from "./Authorization.js"

/**
 * `withAutoRefresh` and the typed error channel it adds.
 *
 * @since 0.1.0
 */
export * as AutoRefresh from "./AutoRefresh.js"

/**
 * A digi.me contract: its id and private key.
 *
 * @since 0.1.0
 */
export * as Contract from "./Contract.js"

/**
 * The digi.me calls and the token manager.
 *
 * @since 0.1.0
 */
export * as DigimeClient from "./DigimeClient.js"

/**
 * Application id, contracts, URLs, lead time, timeout, trusted JWKS origins.
 *
 * @since 0.1.0
 */
export * as DigimeConfig from "./DigimeConfig.js"

/**
 * Metrics: refreshes, their latency, coalesced waiters, store reads, verification failures.
 *
 * @since 0.1.0
 */
export * as DigimeMetrics from "./DigimeMetrics.js"

/**
 * The error family.
 *
 * @since 0.1.0
 */
export * as DigimeError from "./DigimeError.js"

/**
 * Authorizations in progress, by state.
 *
 * @since 0.1.0
 */
export * as PendingAuthorizations from "./PendingAuthorizations.js"

/**
 * PS512 client assertions.
 *
 * @since 0.1.0
 */
export * as Signer from "./Signer.js"

/**
 * Identifies a stored token: user id and contract id.
 *
 * @since 0.1.0
 */
export * as TokenKey from "./TokenKey.js"

/**
 * Versioned, compare-and-set token storage.
 *
 * @since 0.1.0
 */
export * as TokenStore from "./TokenStore.js"

/**
 * The user access token model.
 *
 * @since 0.1.0
 */
export * as UserAccessToken from "./UserAccessToken.js"
