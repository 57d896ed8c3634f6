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
