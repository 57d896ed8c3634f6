/**
 * A token digi.me signed, verified with the `KeySet` and its payload decoded with the step's
 * schema: a payload that does not match is `VerificationError` (`InvalidClaims`) naming the
 * claims, never their values.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { VerificationError } from "../DigimeError.js"
import { KeySet } from "../KeySet.js"
import { describeParseError } from "./protocol.js"

/** @internal */
export const verified = <A, I>(
  operation: string,
  token: string,
  schema: Schema.Schema<A, I>
): Effect.Effect<A, VerificationError, KeySet> =>
  KeySet.pipe(
    Effect.flatMap((keySet) => keySet.verify(operation, token)),
    Effect.flatMap((payload) =>
      Effect.mapError(Schema.decodeUnknown(schema)(payload), (error) =>
        new VerificationError({ operation, reason: "InvalidClaims", description: describeParseError(error) }))
    )
  )
