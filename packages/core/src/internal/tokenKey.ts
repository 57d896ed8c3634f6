/**
 * The `TokenKey` class itself, apart from its module so that the error family can carry keys
 * while `TokenKey.decode` fails with one of those errors (no import cycle between the two).
 */
import * as Schema from "effect/Schema"

/** The longest user or contract id accepted, in UTF-16 code units. */
/** @internal */
export const maxIdLength = 1024

// With the `u` flag a well-formed pair is one code point: only a lone surrogate is in `Cs`.
const loneSurrogate = /\p{Cs}/u

/** What is wrong with an id, if anything: the reason of a refusal, never the id itself. */
/** @internal */
export const idProblem = (id: string): string | undefined =>
  id === ""
    ? "must not be empty"
    : id.trim() !== id
    ? "must not have leading or trailing spaces"
    : id.length > maxIdLength
    ? `must be at most ${maxIdLength} characters`
    : loneSurrogate.test(id)
    ? "must be well-formed Unicode (it holds a lone surrogate)"
    : undefined

const Id = Schema.String.pipe(
  Schema.filter((id) => idProblem(id) ?? true, { identifier: "TokenKeyId" })
)

/** @internal */
export class TokenKey extends Schema.Class<TokenKey>("@digime-effect/core/TokenKey")({
  /** The application's identifier for the user (not digi.me's). */
  userId: Id,
  /** The digi.me contract the token belongs to. */
  contractId: Id
}) {}
