/**
 * A digi.me contract: its id and the RSA private key that signs the client assertions of every
 * call made under it.
 *
 * @since 0.1.0
 */
import type * as Redacted from "effect/Redacted"

/**
 * @since 0.1.0
 * @category models
 */
export interface Contract {
  readonly contractId: string
  /** PEM private key (PKCS#1 or PKCS#8), RSA of at least 2048 bits. */
  readonly privateKey: Redacted.Redacted<string>
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: {
  readonly contractId: string
  readonly privateKey: Redacted.Redacted<string>
}): Contract => ({ contractId: options.contractId, privateKey: options.privateKey })
