/**
 * A simulated digi.me API (in-memory `HttpClient`), strict about the wire protocol and timed by
 * the caller's `Clock`.
 *
 * @since 0.1.0
 */
export * as DigimeSimulator from "./DigimeSimulator.js"

/**
 * The whole library on a simulated digi.me, for tests: one layer, and helpers that authorize a
 * user or seed a stored token.
 *
 * @since 0.1.0
 */
export * as DigimeTest from "./DigimeTest.js"

/**
 * Test contracts: a fresh RSA key pair as a digi.me contract and the matching public key.
 *
 * @since 0.1.0
 */
export * as TestContract from "./TestContract.js"
