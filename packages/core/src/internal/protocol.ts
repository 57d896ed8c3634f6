/**
 * digi.me's JSON, mirrored exactly (field names and optional fields as the protocol document
 * gives them). Public models are built from these by the mapping functions at the bottom.
 */
import * as DateTime from "effect/DateTime"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { Token, UserAccessToken } from "../UserAccessToken.js"

/**
 * digi.me's expiries are whole seconds since the Unix epoch. This is the one place they become
 * `DateTime.Utc`.
 */
/** @internal */
export const DateTimeUtcFromEpochSeconds = Schema.transformOrFail(
  Schema.Number.pipe(Schema.finite(), Schema.nonNegative()),
  Schema.DateTimeUtcFromSelf,
  {
    strict: true,
    decode: (seconds, _, ast) => {
      const millis = Math.round(seconds * 1000)
      // `DateTime.make` refuses instants past the last valid date (8.64e15 ms) instead of throwing.
      const dateTime = Number.isSafeInteger(millis) ? DateTime.make(millis) : Option.none()
      return Option.isSome(dateTime)
        ? ParseResult.succeed(dateTime.value)
        : ParseResult.fail(new ParseResult.Type(ast, seconds, "an expiry in seconds since the epoch"))
    },
    encode: (dateTime) => ParseResult.succeed(Math.floor(DateTime.toEpochMillis(dateTime) / 1000))
  }
).annotations({ identifier: "DateTimeUtcFromEpochSeconds" })

/** @internal */
export const ErrorBody = Schema.Union(
  Schema.Struct({
    error: Schema.Struct({
      code: Schema.String,
      message: Schema.optional(Schema.String),
      reference: Schema.optional(Schema.String)
    })
  }),
  Schema.Struct({ error: Schema.String, message: Schema.optional(Schema.String) })
)

/** @internal */
export const Session = Schema.Struct({ expiry: Schema.Number, key: Schema.String })

/** @internal */
export const TokenEnvelope = Schema.Struct({ token: Schema.String })

/** @internal */
export const TokenEnvelopeWithSession = Schema.Struct({ token: Schema.String, session: Session })

/** @internal */
export const TriggerResponse = Schema.Struct({ session: Session })

/** @internal */
export const PreauthorizationPayload = Schema.Struct({ preauthorization_code: Schema.NonEmptyString })

/** @internal */
export const ReferencePayload = Schema.Struct({ reference_code: Schema.NonEmptyString })

const WireToken = Schema.Struct({
  value: Schema.Redacted(Schema.NonEmptyString),
  expires_on: DateTimeUtcFromEpochSeconds
})

/** @internal */
export const TokenPayload = Schema.Struct({
  access_token: WireToken,
  refresh_token: WireToken,
  sub: Schema.optional(Schema.String),
  consentid: Schema.optional(Schema.String)
})

/** @internal */
export const JwksKey = Schema.Struct({
  kid: Schema.String,
  pem: Schema.optional(Schema.String),
  kty: Schema.optional(Schema.String),
  n: Schema.optional(Schema.String),
  e: Schema.optional(Schema.String)
})

/** @internal */
export const Jwks = Schema.Struct({ keys: Schema.Array(Schema.Unknown) })

/** @internal */
export const toUserAccessToken = (payload: typeof TokenPayload.Type): UserAccessToken =>
  new UserAccessToken({
    accessToken: new Token({ value: payload.access_token.value, expiresAt: payload.access_token.expires_on }),
    refreshToken: new Token({ value: payload.refresh_token.value, expiresAt: payload.refresh_token.expires_on }),
    ...(payload.sub === undefined ? {} : { digimeUserId: payload.sub }),
    ...(payload.consentid === undefined ? {} : { consentId: payload.consentid })
  })

/** @internal */
export const fromUserAccessToken = (token: UserAccessToken): typeof TokenPayload.Encoded => ({
  access_token: {
    value: Redacted.value(token.accessToken.value),
    expires_on: Math.floor(DateTime.toEpochMillis(token.accessToken.expiresAt) / 1000)
  },
  refresh_token: {
    value: Redacted.value(token.refreshToken.value),
    expires_on: Math.floor(DateTime.toEpochMillis(token.refreshToken.expiresAt) / 1000)
  },
  ...(token.digimeUserId === undefined ? {} : { sub: token.digimeUserId }),
  ...(token.consentId === undefined ? {} : { consentid: token.consentId })
})
