/**
 * A contract's private key, as every key-using service needs it: prepared once per contract (and
 * again only when its `privateKey` changes), and imported into Web Crypto from a PKCS#1 or PKCS#8
 * PEM with the checks every use shares (readable, RSA, at least 2048 bits).
 */
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import type { Contract } from "../Contract.js"
import { InvalidContractKey } from "../DigimeError.js"
import { parsePem, pkcs1PrivateToPkcs8 } from "./der.js"

/**
 * `prepare` run once per contract, on first use. Concurrent first uses share one preparation
 * (`Effect.cached`); its outcome is then kept as it is, so that every later use skips the cache's
 * own bookkeeping. A key that cannot be prepared fails every time with the same error.
 *
 * @internal
 */
export const preparedPerContract = <A>(
  prepare: (contract: Contract) => Effect.Effect<A, InvalidContractKey>
): (contract: Contract) => Effect.Effect<A, InvalidContractKey> => {
  const prepared = new Map<string, {
    readonly privateKey: Redacted.Redacted<string>
    readonly value: Effect.Effect<A, InvalidContractKey>
  }>()
  return (contract) => {
    const entry = prepared.get(contract.contractId)
    if (entry !== undefined && entry.privateKey === contract.privateKey) return entry.value
    const shared = Effect.runSync(Effect.cached(prepare(contract)))
    let outcome: Exit.Exit<A, InvalidContractKey> | undefined
    const value = Effect.suspend(() =>
      outcome ?? Effect.flatten(Effect.tap(Effect.exit(shared), (exit) => {
        outcome = exit
      }))
    )
    prepared.set(contract.contractId, { privateKey: contract.privateKey, value })
    return value
  }
}

/**
 * The contract's private key imported into Web Crypto for `algorithm` and `usages`: an unreadable
 * PEM is `Unreadable`, a key that is not RSA `NotRsa`, one under 2048 bits `TooShort`.
 *
 * @internal
 */
export const importWebKey = (
  contract: Contract,
  algorithm: RsaHashedImportParams,
  usages: ReadonlyArray<KeyUsage>
): Effect.Effect<CryptoKey, InvalidContractKey> =>
  Effect.gen(function*() {
    const fail = (reason: InvalidContractKey["reason"]) =>
      new InvalidContractKey({ contractId: contract.contractId, reason })
    const pem = parsePem(Redacted.value(contract.privateKey))
    if (pem === undefined) return yield* fail("Unreadable")
    const pkcs8 = pem.label === "RSA PRIVATE KEY"
      ? pkcs1PrivateToPkcs8(pem.der)
      : pem.label === "PRIVATE KEY"
      ? pem.der
      : undefined
    if (pkcs8 === undefined) return yield* fail(pem.label.includes("PRIVATE") ? "NotRsa" : "Unreadable")
    const key = yield* Effect.tryPromise({
      try: () => globalThis.crypto.subtle.importKey("pkcs8", pkcs8, algorithm, false, usages),
      catch: () => fail("NotRsa")
    })
    if ((key.algorithm as RsaHashedKeyAlgorithm).modulusLength < 2048) return yield* fail("TooShort")
    return key
  })
