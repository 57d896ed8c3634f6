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

const isHttpUrl = (value: string): boolean => {
  try {
    const url = new URL(value)
    return url.protocol === "https:" || url.protocol === "http:"
  } catch {
    return false
  }
}

// ---------------------------------------------------------------------------------------------
// The client assertion: one claim set per protocol step. The client encodes the step's own claims
// with these schemas; the simulator decodes the whole assertion (`Assertion`) strictly, refusing
// excess claims. Secret values are `Redacted` on the type side, plain strings on the wire.
// ---------------------------------------------------------------------------------------------

const Secret = Schema.Redacted(Schema.NonEmptyString)

/** @internal */
export const AbsoluteHttpUrl = Schema.String.pipe(
  Schema.filter(isHttpUrl, { message: () => "an absolute http(s) URL" })
)

/** @internal */
export const CodeChallenge = Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9_-]{43}$/))

/** The claims every assertion carries: who signs, and a fresh nonce and timestamp (ms). */
/** @internal */
export const CommonClaims = Schema.Struct({
  client_id: Schema.NonEmptyString,
  nonce: Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9]{32}$/)),
  timestamp: Schema.Int.pipe(Schema.nonNegative())
})

/** `POST oauth/authorize` (WP §4.1). */
/** @internal */
export const AuthorizeClaims = Schema.Struct({
  access_token: Schema.optional(Secret),
  code_challenge: CodeChallenge,
  code_challenge_method: Schema.Literal("S256"),
  redirect_uri: AbsoluteHttpUrl,
  state: Schema.NonEmptyString,
  response_mode: Schema.Literal("query"),
  response_type: Schema.Literal("code")
})

/** `POST oauth/token`, grant `authorization_code` (WP §4.3). */
/** @internal */
export const ExchangeClaims = Schema.Struct({
  grant_type: Schema.Literal("authorization_code"),
  code: Secret,
  code_verifier: Secret
})

/** `POST oauth/token`, grant `refresh_token` (WP §4.4). */
/** @internal */
export const RefreshClaims = Schema.Struct({
  grant_type: Schema.Literal("refresh_token"),
  refresh_token: Secret
})

/** `POST oauth/token/reference` (WP §4.5). */
/** @internal */
export const ReferenceClaims = Schema.Struct({
  access_token: Secret,
  code_challenge: CodeChallenge,
  code_challenge_method: Schema.Literal("S256"),
  redirect_uri: AbsoluteHttpUrl,
  state: Schema.optional(Schema.NonEmptyString)
})

/** Every call made with the user's access token (claim set A of the data protocol). */
/** @internal */
export const DataClaims = Schema.Struct({ access_token: Secret })

/**
 * `POST oauth/token/reference` without a code challenge (data protocol §6.1, §6.2): onboarding an
 * additional service (with `state`) or reauthorizing one account (without).
 */
/** @internal */
export const OnboardClaims = Schema.Struct({
  access_token: Secret,
  redirect_uri: AbsoluteHttpUrl,
  state: Schema.optional(Schema.NonEmptyString)
})

/** The whole assertion of each step, as the server reads it. */
/** @internal */
export const Assertion = {
  authorize: Schema.extend(CommonClaims, AuthorizeClaims),
  exchange: Schema.extend(CommonClaims, ExchangeClaims),
  refresh: Schema.extend(CommonClaims, RefreshClaims),
  reference: Schema.extend(CommonClaims, ReferenceClaims),
  onboard: Schema.extend(CommonClaims, OnboardClaims),
  data: Schema.extend(CommonClaims, DataClaims),
  /** Claim set B of the data protocol: no user (discovery, sample data, contract, references). */
  client: CommonClaims
} as const

// ---------------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------------

/** `agent`: the SDK identity sent in JSON bodies (WP §4). */
/** @internal */
export const Agent = Schema.Struct({
  sdk: Schema.Struct({
    name: Schema.NonEmptyString,
    version: Schema.NonEmptyString,
    meta: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
  })
})

/**
 * `sourceFetchFilter` of the pull options (data protocol §2): only these accounts are synced.
 * digi.me's SDK checks this shape.
 */
/** @internal */
export const SourceFetchFilter = Schema.Struct({
  account: Schema.Struct({ id: Schema.Array(Schema.String) })
})

/**
 * The options of a read session (data protocol §2). The inner shapes of `limits` and `scope` are
 * digi.me's business.
 */
/** @internal */
export const PullOptions = Schema.Struct({
  limits: Schema.optional(Schema.Unknown),
  scope: Schema.optional(Schema.Unknown),
  sourceFetch: Schema.optional(Schema.Boolean),
  sourceFetchFilter: Schema.optional(SourceFetchFilter)
})

/** `POST oauth/authorize` and `POST oauth/token/reference`: `{agent, actions?}`. */
/** @internal */
export const AuthorizeBody = Schema.Struct({
  agent: Agent,
  actions: Schema.optional(Schema.Struct({ pull: Schema.optional(PullOptions) }))
})

/** `POST permission-access/trigger`: the pull options at the top level, next to `agent`. */
/** @internal */
export const TriggerBody = Schema.Struct({ ...PullOptions.fields, agent: Agent })

/** `POST reference` (data protocol §6.2, §9): an account id (or storage id) turned into a reference. */
/** @internal */
export const ReferenceBody = Schema.Struct({
  type: Schema.Literal("accountId", "cloudId"),
  value: Schema.NonEmptyString
})

/** The answer to `POST reference`. */
/** @internal */
export const ReferenceIdResponse = Schema.Struct({ id: Schema.NonEmptyString })

/**
 * The payload of the `FileDescriptor` header of a library push (data protocol §5.1): a JWT signed
 * with the contract's key whose payload is `{metadata}`.
 */
/** @internal */
export const FileDescriptor = Schema.Struct({
  metadata: Schema.Struct({
    mimeType: Schema.NonEmptyString,
    accounts: Schema.NonEmptyArray(Schema.Struct({ accountId: Schema.NonEmptyString })),
    reference: Schema.optional(Schema.Array(Schema.String)),
    tags: Schema.optional(Schema.Array(Schema.String))
  })
})

const Ids = Schema.Struct({ id: Schema.Array(Schema.Number) })

/** `POST discovery/sources` (data protocol §7.1); every field optional. */
/** @internal */
export const SourcesQuery = Schema.Struct({
  limit: Schema.optional(Schema.Int.pipe(Schema.nonNegative())),
  offset: Schema.optional(Schema.Int.pipe(Schema.nonNegative())),
  sort: Schema.optional(Schema.Struct({ name: Schema.Literal("asc", "desc") })),
  query: Schema.optional(Schema.Struct({
    search: Schema.optional(Schema.Struct({
      name: Schema.optional(Schema.String),
      abbreviation: Schema.optional(Schema.String),
      alias: Schema.optional(Schema.String),
      medicalCenter: Schema.optional(Schema.String),
      practitioner: Schema.optional(Schema.Array(Schema.String))
    })),
    queryString: Schema.optional(Schema.String),
    include: Schema.optional(Schema.Array(Schema.String)),
    filter: Schema.optional(Schema.Struct({
      id: Schema.optional(Schema.Array(Schema.Number)),
      publishedStatus: Schema.optional(
        Schema.Array(Schema.Literal("approved", "pending", "deprecated", "blocked", "sampledataonly"))
      ),
      service: Schema.optional(Ids),
      country: Schema.optional(Ids),
      category: Schema.optional(Ids),
      platform: Schema.optional(Ids),
      type: Schema.optional(Ids),
      sourceId: Schema.optional(Schema.Number),
      reference: Schema.optional(Schema.Array(Schema.String)),
      alias: Schema.optional(Schema.Array(Schema.String))
    }))
  }))
})

/** `POST discovery/countries`, `…/platforms`, `…/categories` (data protocol §7.2), or no body. */
/** @internal */
export const CatalogueQuery = Schema.Struct({
  query: Schema.optional(Schema.Struct({
    include: Schema.optional(Schema.Array(Schema.String)),
    filter: Schema.optional(Schema.Struct({ id: Schema.optional(Schema.Array(Schema.Number)) }))
  }))
})

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

/**
 * Names the fields a `ParseError` is about, never their values (which may be secrets).
 */
/** @internal */
export const describeParseError = (error: ParseResult.ParseError): string => {
  const paths = ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) =>
    issue.path.length === 0 ? "(root)" : issue.path.map(String).join(".")
  )
  return `invalid or missing field(s): ${Array.from(new Set(paths)).join(", ")}`
}

/**
 * The token of a decoded payload. The classes are built without validating their fields again:
 * `TokenPayload` has just checked each of them against the same schema (a non-empty value, a valid
 * instant, optional strings), and validating them twice cost more than a signature check.
 *
 * @internal
 */
export const toUserAccessToken = (payload: typeof TokenPayload.Type): UserAccessToken =>
  new UserAccessToken({
    accessToken: new Token({ value: payload.access_token.value, expiresAt: payload.access_token.expires_on }, true),
    refreshToken: new Token(
      { value: payload.refresh_token.value, expiresAt: payload.refresh_token.expires_on },
      true
    ),
    ...(payload.sub === undefined ? {} : { digimeUserId: payload.sub }),
    ...(payload.consentid === undefined ? {} : { consentId: payload.consentid })
  }, true)

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
