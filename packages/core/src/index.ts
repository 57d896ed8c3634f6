/**
 * Authorization in two calls: start (URL to redirect to), complete (from the callback).
 *
 * @since 0.1.0
 */
export * as Authorization from "./Authorization.js"

/**
 * The user's accounts (sources): onboard another, reauthorize one, revoke, delete.
 *
 * @since 0.2.0
 */
export * as AccountsProtocol from "./AccountsProtocol.js"

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
 * digi.me's data calls as request builders and response processors, and their models.
 *
 * @since 0.1.0
 */
export * as DataProtocol from "./DataProtocol.js"

/**
 * The library as one layer: configuration, client and token manager.
 *
 * @since 0.1.0
 */
export * as Digime from "./Digime.js"

/**
 * digi.me's catalogue: sources, countries, platforms, categories, sample data, the contract.
 *
 * @since 0.2.0
 */
export * as DiscoveryProtocol from "./DiscoveryProtocol.js"

/**
 * The digi.me API as a service: signed requests, time limits, safe retries, processed answers.
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
 * A digi.me call before it is signed.
 *
 * @since 0.1.0
 */
export * as DigimeRequest from "./DigimeRequest.js"

/**
 * The error family.
 *
 * @since 0.1.0
 */
export * as DigimeError from "./DigimeError.js"

/**
 * digi.me's signing keys, fetched from allow-listed origins only, and token verification.
 *
 * @since 0.1.0
 */
export * as KeySet from "./KeySet.js"

/**
 * digi.me's encrypted files, decrypted as they stream.
 *
 * @since 0.2.0
 */
export * as FileCipher from "./FileCipher.js"

/**
 * A read session's file list, files and file metadata, as request builders and response processors.
 *
 * @since 0.2.0
 */
export * as FileProtocol from "./FileProtocol.js"

/**
 * The user's files as a Stream: polled, downloaded, decrypted, under withAutoRefresh.
 *
 * @since 0.2.0
 */
export * as Files from "./Files.js"

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
 * Pushes into the user's library and to a provider, as request builders and response processors.
 *
 * @since 0.2.0
 */
export * as PushProtocol from "./PushProtocol.js"

/**
 * Identifies a stored token: user id and contract id.
 *
 * @since 0.1.0
 */
export * as TokenKey from "./TokenKey.js"

/**
 * What happens to stored tokens, as a stream of events.
 *
 * @since 0.3.0
 */
export * as TokenEvents from "./TokenEvents.js"

/**
 * Stored tokens: loaded, refreshed once per token, stored before use.
 *
 * @since 0.1.0
 */
export * as TokenManager from "./TokenManager.js"

/**
 * Keeps stored tokens fresh in the background, across instances.
 *
 * @since 0.3.0
 */
export * as TokenUpkeep from "./TokenUpkeep.js"

/**
 * Versioned, compare-and-set token storage.
 *
 * @since 0.1.0
 */
export * as TokenStore from "./TokenStore.js"

/**
 * The calls of the token lifecycle as request builders and response processors.
 *
 * @since 0.1.0
 */
export * as TokenProtocol from "./TokenProtocol.js"

/**
 * The user access token model.
 *
 * @since 0.1.0
 */
export * as UserAccessToken from "./UserAccessToken.js"

/**
 * Checks the signatures of digi.me's tokens (PS512) with a key of its key set.
 *
 * @since 0.2.0
 */
export * as Verifier from "./Verifier.js"
