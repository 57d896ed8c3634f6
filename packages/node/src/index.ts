/**
 * The Node signer and HTTP wiring.
 *
 * @since 0.1.0
 */
export * as NodeDigime from "./NodeDigime.js"

/**
 * The `Signer` on `node:crypto`.
 *
 * @since 0.1.0
 */
export * as NodeSigner from "./NodeSigner.js"

/**
 * The simulated digi.me served over real HTTP on Node: the API, the key set, consent pages and
 * control endpoints, for whole user journeys and for pointing an application at it.
 *
 * @since 0.1.0
 */
export * as NodeDigimeSimulator from "./NodeDigimeSimulator.js"

/**
 * A `TokenStore` and `PendingAuthorizations` in PostgreSQL or SQLite, through `@effect/sql`.
 *
 * @since 0.1.0
 */
export * as SqlTokenStore from "./SqlTokenStore.js"
