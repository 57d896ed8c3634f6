/**
 * A digi.me contract: its id and the RSA private key that signs the client assertions of every
 * call made under it.
 *
 * @since 0.1.0
 */
import * as Redacted from "effect/Redacted"

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
}): Contract => ({ contractId: options.contractId, privateKey: unescapePem(options.privateKey) })

/**
 * A PEM whose line breaks are written as the two characters `\n` (as `.env` files and some secret
 * stores hold it), with real line breaks; any other value as it is. `make` and `DigimeConfig`
 * apply it to every private key.
 *
 * @since 0.3.0
 * @category utils
 */
export const unescapePem = (pem: Redacted.Redacted<string>): Redacted.Redacted<string> => {
  const value = Redacted.value(pem)
  return value.includes("-----BEGIN") && !value.includes("\n") && value.includes("\\n")
    ? Redacted.make(value.replace(/\\r\\n|\\n/g, "\n").trim() + "\n")
    : pem
}
