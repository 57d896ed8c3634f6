/**
 * A contract's private key as a `node:crypto` `KeyObject`, with the checks every use shares:
 * a readable PEM (`Unreadable`), an RSA key (`NotRsa`) of at least 2048 bits (`TooShort`).
 */
import type { Contract } from "@digime-effect/core/Contract"
import { InvalidContractKey } from "@digime-effect/core/DigimeError"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Crypto from "node:crypto"

/** @internal */
export const rsaPrivateKey = (
  contract: Contract
): Effect.Effect<{ readonly key: Crypto.KeyObject; readonly bits: number }, InvalidContractKey> =>
  Effect.gen(function*() {
    const fail = (reason: InvalidContractKey["reason"]) =>
      new InvalidContractKey({ contractId: contract.contractId, reason })
    const key = yield* Effect.try({
      try: () => Crypto.createPrivateKey({ key: Redacted.value(contract.privateKey), format: "pem" }),
      catch: () => fail("Unreadable")
    })
    if (key.asymmetricKeyType !== "rsa") return yield* fail("NotRsa")
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0
    if (bits < 2048) return yield* fail("TooShort")
    return { key, bits }
  })
