/**
 * The `TokenKey` class itself, apart from its module so that the error family can carry keys
 * while `TokenKey.decode` fails with one of those errors (no import cycle between the two).
 */
import * as Schema from "effect/Schema"

/** @internal */
export class TokenKey extends Schema.Class<TokenKey>("@digime-effect/core/TokenKey")({
  /** The application's identifier for the user (not digi.me's). */
  userId: Schema.NonEmptyTrimmedString,
  /** The digi.me contract the token belongs to. */
  contractId: Schema.NonEmptyTrimmedString
}) {}
