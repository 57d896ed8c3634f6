/**
 * The Node signer and HTTP wiring.
 *
 * @since 0.1.0
 */
export * as NodeDigime from "./NodeDigime.js"

/**
 * The `FileCipher` on `node:crypto` and `node:zlib`: digi.me files decrypted and decompressed
 * (gzip, brotli) as they stream.
 *
 * @since 0.2.0
 */
export * as NodeFileCipher from "./NodeFileCipher.js"

/**
 * The `Signer` on `node:crypto`.
 *
 * @since 0.1.0
 */
export * as NodeSigner from "./NodeSigner.js"

/**
 * The `Verifier` on `node:crypto`.
 *
 * @since 0.2.0
 */
export * as NodeVerifier from "./NodeVerifier.js"

/**
 * `PendingAuthorizations` in PostgreSQL or SQLite, through `@effect/sql`, so that the callback may
 * reach another process than the one that started the authorization.
 *
 * @since 0.1.0
 */
export * as SqlPendingAuthorizations from "./SqlPendingAuthorizations.js"

/**
 * A `TokenStore` in PostgreSQL or SQLite, through `@effect/sql`, with a lock per key shared by
 * every process.
 *
 * @since 0.1.0
 */
export * as SqlTokenStore from "./SqlTokenStore.js"
