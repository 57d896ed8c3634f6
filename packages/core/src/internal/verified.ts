/**
 * A token digi.me signed, verified with the `KeySet` and its payload decoded with the step's
 * schema: a payload that does not match is `VerificationError` (`InvalidClaims`) naming the
 * claims, never their values.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Schema from "effect/Schema"
import { VerificationError } from "../DigimeError.js"
import { KeySet } from "../KeySet.js"
import { decoderOf } from "./calls.js"
import { describeParseError } from "./protocol.js"

/** @internal */
export const verified = <A, I>(
  operation: string,
  token: string,
  schema: Schema.Schema<A, I>
): Effect.Effect<A, VerificationError, KeySet> =>
  KeySet.pipe(
    Effect.flatMap((keySet) => keySet.verify(operation, token)),
    // The schema's decoder is made once (the payload schemas decode synchronously).
    Effect.flatMap((payload) =>
      Either.match(decoderOf(schema)(payload), {
        onLeft: (error) =>
          Effect.fail(
            new VerificationError({ operation, reason: "InvalidClaims", description: describeParseError(error) })
          ),
        onRight: Effect.succeed
      })
    )
  )
