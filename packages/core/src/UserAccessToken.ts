/**
 * The user access token digi.me grants for one user and one contract: an access token and a
 * refresh token, each with its expiry.
 *
 * @since 0.1.0
 */
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Schema from "effect/Schema"

/**
 * One token value and the instant it expires. The value is `Redacted`.
 *
 * @since 0.1.0
 * @category models
 */
export class Token extends Schema.Class<Token>("@digime-effect/core/UserAccessToken/Token")({
  value: Schema.Redacted(Schema.NonEmptyString),
  expiresAt: Schema.DateTimeUtc
}) {}

/**
 * @since 0.1.0
 * @category models
 */
export class UserAccessToken extends Schema.Class<UserAccessToken>("@digime-effect/core/UserAccessToken")({
  accessToken: Token,
  refreshToken: Token,
  /** digi.me's user id (`sub`), when digi.me sent one. */
  digimeUserId: Schema.optional(Schema.String),
  /** digi.me's consent id (`consentid`), when digi.me sent one. */
  consentId: Schema.optional(Schema.String)
}) {}

/**
 * The JSON form of a token, for stores that persist it. Token values appear in clear in the
 * encoded form: encode only at the storage boundary.
 *
 * @since 0.1.0
 * @category schemas
 */
export const UserAccessTokenFromJson: Schema.Schema<UserAccessToken, string> = Schema.parseJson(UserAccessToken)

/**
 * Whether the access token expires within `leadTime` of `now` (or has expired).
 *
 * @since 0.1.0
 * @category guards
 */
export const accessTokenExpiresWithin = (
  token: UserAccessToken,
  now: DateTime.Utc,
  leadTime: Duration.DurationInput
): boolean =>
  DateTime.toEpochMillis(token.accessToken.expiresAt) - DateTime.toEpochMillis(now) <=
    Duration.toMillis(Duration.decode(leadTime))

/**
 * Whether the refresh token has expired at `now`.
 *
 * @since 0.1.0
 * @category guards
 */
export const isRefreshTokenExpired = (token: UserAccessToken, now: DateTime.Utc): boolean =>
  DateTime.toEpochMillis(token.refreshToken.expiresAt) <= DateTime.toEpochMillis(now)
