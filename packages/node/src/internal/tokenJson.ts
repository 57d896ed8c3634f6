/**
 * The token JSON of a row, read without the schema's interpreter when it is the JSON this library
 * writes (`UserAccessTokenFromJson`): an object with `accessToken` and `refreshToken`, each a
 * non-empty `value` and an `expiresAt` that `DateTime.unsafeMake` reads, and optional string
 * `digimeUserId` and `consentId`; other fields (a newer version's) are ignored, as the schema
 * ignores them. Checked as the schema checks them, and built as it builds them (the classes
 * without validating their fields a second time), at a fraction of its cost: every read of a
 * token, and every refresh's lease, decodes one. Anything else is handed to the schema, which
 * decides (and describes the failure).
 *
 * @since 0.4.0
 */
import * as UserAccessToken from "@digime-effect/core/UserAccessToken"
import * as DateTime from "effect/DateTime"
import * as Either from "effect/Either"
import type * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"

const decodeWithSchema = Schema.decodeEither(UserAccessToken.UserAccessTokenFromJson)

/**
 * The fields the fast path reads: those of `UserAccessToken` and `Token` (a test checks that they
 * still are all of them).
 *
 * @since 0.4.0
 * @category models
 */
export const fields = {
  token: ["accessToken", "refreshToken", "digimeUserId", "consentId"],
  part: ["value", "expiresAt"]
} as const

const isObject = (value: unknown): value is Readonly<Record<string, unknown>> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const partOf = (value: unknown): UserAccessToken.Token | undefined => {
  if (!isObject(value)) return undefined
  const secret = value.value
  const expiresAt = value.expiresAt
  if (typeof secret !== "string" || secret.length === 0 || typeof expiresAt !== "string") return undefined
  let at: DateTime.DateTime
  try {
    at = DateTime.unsafeMake(expiresAt)
  } catch {
    return undefined
  }
  if (!DateTime.isUtc(at)) return undefined
  return new UserAccessToken.Token({ value: Redacted.make(secret), expiresAt: at }, true)
}

const fast = (json: string): UserAccessToken.UserAccessToken | undefined => {
  let value: unknown
  try {
    value = JSON.parse(json)
  } catch {
    return undefined
  }
  if (!isObject(value)) return undefined
  const { consentId, digimeUserId } = value
  if (
    (digimeUserId !== undefined && typeof digimeUserId !== "string") ||
    (consentId !== undefined && typeof consentId !== "string")
  ) return undefined
  const accessToken = partOf(value.accessToken)
  const refreshToken = partOf(value.refreshToken)
  if (accessToken === undefined || refreshToken === undefined) return undefined
  return new UserAccessToken.UserAccessToken({
    accessToken,
    refreshToken,
    ...(digimeUserId === undefined ? {} : { digimeUserId }),
    ...(consentId === undefined ? {} : { consentId })
  }, true)
}

/**
 * The token of `json`, as `Schema.decodeEither(UserAccessTokenFromJson)` decodes it.
 *
 * @since 0.4.0
 * @category constructors
 */
export const decode = (json: string): Either.Either<UserAccessToken.UserAccessToken, ParseResult.ParseError> => {
  const token = fast(json)
  return token === undefined ? decodeWithSchema(json) : Either.right(token)
}
