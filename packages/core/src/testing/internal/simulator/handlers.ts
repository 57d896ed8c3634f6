/**
 * The endpoint handlers of the token calls and the first data calls: each decodes its claim set and
 * body with the shared schemas, then applies the meaning of the call to the state: PKCE (S256, the
 * verifier's RFC 7636 format), codes (single use, expiry, client), refresh rotation with replay
 * detection, revocation, sessions, accounts. The other data calls are in `dataCalls.ts` (claims A)
 * and `catalogue.ts` (claims B).
 *
 * Applying a call is synchronous (apart from the encryption of a file), so concurrent requests
 * interleave only between requests, never inside one.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import { Assertion, AuthorizeBody, type PullOptions, TriggerBody } from "../../../internal/protocol.js"
import type { Endpoint, SimRequest, SimResponse } from "../../DigimeSimulator.js"
import { clientCall } from "./catalogue.js"
import { bodyDecoder, claimsDecoder, noBody } from "./checks.js"
import { userDataCall } from "./dataCalls.js"
import {
  invalidGrant,
  invalidToken,
  type Json,
  jsonResponse,
  randomId,
  randomToken,
  type Refusal,
  refuse,
  validation
} from "./responses.js"
import { sha256Base64url } from "./signing.js"
import {
  type Account,
  codeLifetimeMillis,
  type ConsentKind,
  issueTokens,
  newFamily,
  newSession,
  type PreAuthorization,
  revokeFamily,
  type State,
  usableAccessToken,
  userOf
} from "./state.js"

/**
 * The parameters of a request's route: the path's variable segments (percent-decoded) and the query.
 *
 * @internal
 */
export interface RouteParams {
  readonly segments: ReadonlyArray<string>
  readonly query: URLSearchParams
}

/**
 * What a processed request yields before its answer is put together: an answer, or the payload of
 * a token to sign (`mainFields`: what `MissingFields` leaves out; `session`: whether a session goes with it).
 *
 * @internal
 */
export type Outcome =
  | { readonly _tag: "Response"; readonly response: SimResponse }
  | {
    readonly _tag: "Token"
    readonly status: number
    readonly payload: Json
    readonly mainFields: ReadonlyArray<string>
    /** The session that goes with the token, if any. */
    readonly session: Json | undefined
  }

type Result = Either.Either<Outcome, Refusal>

const decodeAuthorizeClaims = claimsDecoder(Assertion.authorize)
const decodeReferenceClaims = claimsDecoder(Assertion.reference)
const decodeOnboardClaims = claimsDecoder(Assertion.onboard)
const decodeExchangeClaims = claimsDecoder(Assertion.exchange)
const decodeRefreshClaims = claimsDecoder(Assertion.refresh)
const decodeDataClaims = claimsDecoder(Assertion.data)
const decodeAuthorizeBody = bodyDecoder(AuthorizeBody)
const decodeTriggerBody = bodyDecoder(TriggerBody)

interface SessionOptions {
  readonly sourceFetch: boolean | undefined
  readonly accountIds: ReadonlyArray<string> | undefined
}

/** What a session does with the pull options of its call (already checked with the body). */
const sessionOptions = (pull: typeof PullOptions.Type | undefined): SessionOptions => ({
  sourceFetch: pull?.sourceFetch,
  accountIds: pull?.sourceFetchFilter?.account.id
})

/** RFC 7636: 43 to 128 characters of the unreserved set. */
const isVerifier = (value: string): boolean => /^[A-Za-z0-9._~-]{43,128}$/.test(value)

const tokenOutcome = (payload: Json): Outcome => ({
  _tag: "Token",
  status: 201,
  payload,
  mainFields: ["access_token"],
  session: undefined
})

const response = (status: number, body: unknown): Result =>
  Either.right({ _tag: "Response", response: jsonResponse(status, body) })

/**
 * Processes one request whose assertion is verified: claim set, body, then meaning.
 *
 * @internal
 */
export const processRequest = (
  state: State,
  endpoint: Exclude<Endpoint, "jwks">,
  request: SimRequest,
  params: RouteParams,
  claims: Json,
  clientId: string,
  now: number
): Effect.Effect<Outcome, Refusal> =>
  Effect.gen(function*() {
    switch (endpoint) {
      case "authorize": {
        const checked = yield* decodeAuthorizeClaims(claims)
        const body = yield* decodeAuthorizeBody(request)
        const options = sessionOptions(body.actions?.pull)
        return authorize(state, checked, options, clientId, now)
      }
      case "reference": {
        // Without a code challenge, the call onboards a service or reauthorizes one account (§6.1, §6.2).
        if (!Object.hasOwn(claims, "code_challenge")) {
          const checked = yield* decodeOnboardClaims(claims)
          const body = yield* decodeAuthorizeBody(request)
          const options = sessionOptions(body.actions?.pull)
          return yield* onboard(state, checked, options, clientId, now)
        }
        const checked = yield* decodeReferenceClaims(claims)
        const body = yield* decodeAuthorizeBody(request)
        const options = sessionOptions(body.actions?.pull)
        return yield* reference(state, checked, options, clientId, now)
      }
      case "token": {
        if (claims.grant_type === "refresh_token") {
          const checked = yield* decodeRefreshClaims(claims)
          yield* noBody(request)
          return yield* refresh(state, Redacted.value(checked.refresh_token), clientId, now)
        }
        const checked = yield* decodeExchangeClaims(claims)
        const verifier = Redacted.value(checked.code_verifier)
        if (!isVerifier(verifier)) return yield* Effect.fail(validation(400, "invalid claim: code_verifier"))
        yield* noBody(request)
        const challenge = yield* Effect.promise(() => sha256Base64url(verifier))
        return yield* exchange(state, Redacted.value(checked.code), challenge, clientId, now)
      }
      case "trigger": {
        const checked = yield* decodeDataClaims(claims)
        const body = yield* decodeTriggerBody(request)
        const options = sessionOptions(body)
        return yield* dataCall(state, endpoint, Redacted.value(checked.access_token), options, clientId, now)
      }
      case "accounts":
      case "deleteUser": {
        const checked = yield* decodeDataClaims(claims)
        yield* noBody(request)
        return yield* dataCall(state, endpoint, Redacted.value(checked.access_token), undefined, clientId, now)
      }
      case "fileList":
      case "file":
      case "fileMetadata":
      case "push":
      case "pushProvider":
      case "revokeAccount":
      case "deleteAccount":
      case "report": {
        const checked = yield* decodeDataClaims(claims)
        const response = yield* userDataCall(state, endpoint, request, params, checked, clientId, now)
        return { _tag: "Response", response } satisfies Outcome
      }
      case "accountReference":
      case "discovery":
      case "sampleDatasets":
      case "contract": {
        const response = yield* clientCall(state, endpoint, request, params, claims, clientId, now)
        return { _tag: "Response", response } satisfies Outcome
      }
    }
  })

/**
 * A pending pre-authorization of the user, for `consent`; answered with its code in a signed token
 * (`preauthorization_code` or `reference_code`) and a session, pending until the consent.
 */
const preAuthorize = (
  state: State,
  kind: Exclude<ConsentKind, "revoke">,
  claims: {
    readonly code_challenge?: string | undefined
    readonly redirect_uri: string
    readonly state?: string | undefined
  },
  options: SessionOptions,
  clientId: string,
  userId: string,
  now: number
): Outcome => {
  const code = randomToken()
  const session = newSession(state, { clientId, userId, started: false, ...options }, now)
  const preAuthorization: PreAuthorization = {
    kind,
    clientId,
    challenge: claims.code_challenge,
    redirectUri: claims.redirect_uri,
    state: claims.state,
    userId,
    expiresAt: now + codeLifetimeMillis,
    sessionKey: session.key,
    accountId: undefined,
    used: false
  }
  state.preAuthorizations.set(code, preAuthorization)
  const field = kind === "authorize" ? "preauthorization_code" : "reference_code"
  return { _tag: "Token", status: 201, payload: { [field]: code }, mainFields: [field], session }
}

const authorize = (
  state: State,
  claims: typeof Assertion.authorize.Type,
  options: SessionOptions,
  clientId: string,
  now: number
): Outcome => {
  const accessToken = claims.access_token === undefined ? undefined : Redacted.value(claims.access_token)
  const owner = usableAccessToken(state, accessToken, now, undefined)
  return preAuthorize(state, "authorize", claims, options, clientId, owner?.family.userId ?? randomId(), now)
}

const reference = (
  state: State,
  claims: typeof Assertion.reference.Type,
  options: SessionOptions,
  clientId: string,
  now: number
): Result => {
  const token = state.accessTokens.get(Redacted.value(claims.access_token))
  // Expired is fine here: reauthorization exists for users whose refresh token expired.
  if (token === undefined || token.revoked || token.family.revoked || token.family.clientId !== clientId) {
    return Either.left(invalidToken("access_token", "reference: access token unknown, revoked or of another client"))
  }
  return Either.right(preAuthorize(state, "reauth", claims, options, clientId, token.family.userId, now))
}

/** Onboarding a service or reauthorizing an account: the access token must be usable (the SDK refreshes first). */
const onboard = (
  state: State,
  claims: typeof Assertion.onboard.Type,
  options: SessionOptions,
  clientId: string,
  now: number
): Result => {
  const token = usableAccessToken(state, Redacted.value(claims.access_token), now, clientId)
  if (token === undefined) {
    return Either.left(
      invalidToken("access_token", "onboard: access token unknown, expired, revoked or of another app")
    )
  }
  return Either.right(preAuthorize(state, "onboard", claims, options, clientId, token.family.userId, now))
}

/** `challenge` is the S256 challenge of the presented verifier. */
const exchange = (state: State, value: string, challenge: string, clientId: string, now: number): Result => {
  const code = state.codes.get(value)
  if (code === undefined) return Either.left(invalidGrant("The authorization code is invalid"))
  if (code.used) return Either.left(invalidGrant("The authorization code has already been used"))
  code.used = true
  if (now >= code.expiresAt) return Either.left(invalidGrant("The authorization code is expired"))
  if (code.clientId !== clientId) {
    return Either.left(invalidGrant("The authorization code was issued to another client"))
  }
  if (challenge !== code.challenge) {
    return Either.left(invalidGrant("The code_verifier does not match the code_challenge"))
  }
  if (code.kind === "reauth") {
    for (const family of userOf(state, code.userId).families) {
      if (family.clientId === clientId) revokeFamily(state, family)
    }
  }
  state.counters.exchanges++
  const family = newFamily(state, code.userId, clientId, now)
  return Either.right(tokenOutcome(issueTokens(state, family, now)))
}

const refresh = (state: State, value: string, clientId: string, now: number): Result => {
  const token = state.refreshTokens.get(value)
  if (token === undefined || token.family.clientId !== clientId) {
    return Either.left(invalidToken("refresh_token", "refresh: unknown refresh token"))
  }
  if (token.family.revoked) return Either.left(invalidToken("refresh_token", "refresh: the token family is revoked"))
  if (now >= token.expiresAt) {
    return Either.left(refuse(401, "InvalidToken", "The token (refresh_token) is expired", "refresh: expired"))
  }
  if (token.rotated && state.config.strictRotation) {
    state.counters.replays++
    revokeFamily(state, token.family)
    return Either.left(invalidToken("refresh_token", "refresh: replay of a rotated refresh token; family revoked"))
  }
  token.rotated = true
  state.counters.refreshes++
  return Either.right(tokenOutcome(issueTokens(state, token.family, now)))
}

const dataCall = (
  state: State,
  endpoint: "trigger" | "accounts" | "deleteUser",
  accessToken: string,
  options: SessionOptions | undefined,
  clientId: string,
  now: number
): Result => {
  const token = usableAccessToken(state, accessToken, now, clientId)
  if (token === undefined) {
    return Either.left(
      invalidToken("access_token", `${endpoint}: access token unknown, expired, revoked or of another app`)
    )
  }
  const userId = token.family.userId
  const user = userOf(state, userId)
  switch (endpoint) {
    case "trigger":
      return response(202, {
        session: newSession(state, {
          clientId,
          userId,
          started: true,
          sourceFetch: options?.sourceFetch,
          accountIds: options?.accountIds
        }, now)
      })
    case "accounts":
      return response(202, user.accounts.map((account) => accountJson(account, now)))
    case "deleteUser":
      for (const family of user.families) revokeFamily(state, family)
      user.accounts.length = 0
      user.files.clear()
      return response(201, {})
  }
}

const accountJson = (account: Account, now: number): Json => ({
  id: account.id,
  reference: account.reference,
  type: "USER",
  createdDate: account.createdDate,
  updatedDate: now,
  serviceGroupId: 1,
  serviceGroupName: "Social",
  serviceTypeId: account.serviceNumber,
  serviceTypeName: "Simulated Service",
  serviceTypeReference: "simulated",
  sourceId: account.serviceNumber,
  accessTokenStatus: { authorized: !account.reauthRequired },
  serviceProviderName: "Simulated Provider",
  username: "simulated-user",
  sample: true
})
