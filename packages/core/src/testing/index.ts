/**
 * A simulated digi.me API (in-memory `HttpClient`), strict about the wire protocol and timed by
 * the caller's `Clock`.
 *
 * @since 0.1.0
 */
export * as DigimeSimulator from "./DigimeSimulator.js"

/**
 * Test contracts: a fresh RSA key pair as a digi.me contract and the matching public key.
 *
 * @since 0.1.0
 */
export * as TestContract from "./TestContract.js"
