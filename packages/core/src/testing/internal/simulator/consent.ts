/**
 * What the test does in the user's (or digi.me's back office's) place, without HTTP: consent on an
 * onboarding URL, read what one asks for, grant a token outright, make a contract known. Each fails
 * with the reason of the test's misuse; the public module turns it into a `SimulatorError`.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { TokenPayload, toUserAccessToken } from "../../../internal/protocol.js"
import type { UserAccessToken } from "../../../UserAccessToken.js"
import type { ConsentRequest, Service } from "../../DigimeSimulator.js"
import { randomId, randomToken } from "./responses.js"
import { importVerifyKey } from "./signing.js"
import {
  addAccount,
  clientIdOf,
  codeLifetimeMillis,
  issueTokens,
  newFamily,
  type PreAuthorization,
  type State
} from "./state.js"

/** The pending pre-authorization an onboarding URL names, if `consent` may use it at `now`. */
const pendingConsent = (state: State, onboardingUrl: string, now: number): Either.Either<PreAuthorization, string> => {
  const onboardUrl = state.config.onboardUrl
  let url: URL
  try {
    url = new URL(onboardingUrl)
  } catch {
    return Either.left("the onboarding URL is not a URL")
  }
  const address = `${url.origin}${url.pathname}`
  const kind = address === `${onboardUrl}authorize`
    ? "authorize"
    : address === `${onboardUrl}user-reauth`
    ? "reauth"
    : undefined
  if (kind === undefined) {
    return Either.left(`the onboarding URL is neither ${onboardUrl}authorize nor ${onboardUrl}user-reauth`)
  }
  const code = url.searchParams.get("code")
  const preAuthorization = code === null ? undefined : state.preAuthorizations.get(code)
  if (preAuthorization === undefined || preAuthorization.kind !== kind) {
    return Either.left("the onboarding URL carries an unknown code")
  }
  if (preAuthorization.used) return Either.left("the onboarding URL's code was already used")
  if (now >= preAuthorization.expiresAt) return Either.left("the onboarding URL's code is expired")
  return Either.right(preAuthorization)
}

/** @internal */
export const describeConsent = (
  state: State,
  onboardingUrl: string,
  now: number
): Either.Either<ConsentRequest, string> =>
  Either.map(pendingConsent(state, onboardingUrl, now), (preAuthorization) => ({
    kind: preAuthorization.kind,
    applicationId: state.config.applicationId,
    contractId: preAuthorization.clientId.slice(state.config.applicationId.length + 1),
    redirectUri: preAuthorization.redirectUri
  }))

/**
 * The user answers the consent page: the callback URL digi.me redirects to.
 *
 * @internal
 */
export const consent = (
  state: State,
  onboardingUrl: string,
  options: Parameters<Service["consent"]>[1],
  now: number
): Either.Either<string, string> =>
  Either.map(pendingConsent(state, onboardingUrl, now), (preAuthorization) => {
    preAuthorization.used = true
    const callback = new URL(preAuthorization.redirectUri)
    if (options?.allow === false) {
      callback.searchParams.append("success", "false")
      callback.searchParams.append("errorCode", options.errorCode ?? "AccessDenied")
      if (preAuthorization.state !== undefined) callback.searchParams.append("state", preAuthorization.state)
      return callback.toString()
    }
    const authorizationCode = randomToken()
    state.codes.set(authorizationCode, {
      kind: preAuthorization.kind,
      clientId: preAuthorization.clientId,
      challenge: preAuthorization.challenge,
      userId: preAuthorization.userId,
      expiresAt: now + codeLifetimeMillis,
      used: false
    })
    callback.searchParams.append("success", "true")
    if (preAuthorization.state !== undefined) callback.searchParams.append("state", preAuthorization.state)
    callback.searchParams.append("code", authorizationCode)
    if (preAuthorization.kind === "authorize") {
      callback.searchParams.append("accountReference", addAccount(state, preAuthorization.userId, now).reference)
    }
    return callback.toString()
  })

const decodeTokenPayload = Schema.decodeUnknownSync(TokenPayload)

/**
 * A new user of the contract with one account, and a token of a new family, as a consent followed
 * by a code exchange would leave them; no request is made and no exchange counted.
 *
 * @internal
 */
export const grant = (state: State, contractId: string, now: number): Either.Either<UserAccessToken, string> => {
  const clientId = clientIdOf(state.config, contractId)
  if (!state.verifyKeys.has(clientId)) return Either.left(`no contract ${contractId} is known`)
  const userId = randomId()
  addAccount(state, userId, now)
  const family = newFamily(state, userId, clientId, now)
  return Either.right(toUserAccessToken(decodeTokenPayload(issueTokens(state, family, now))))
}

/** @internal */
export const registerContract = (state: State, contractId: string, publicKeyPem: string): Effect.Effect<void, string> =>
  Effect.gen(function*() {
    if (contractId.trim() === "" || contractId !== contractId.trim()) {
      return yield* Effect.fail("a contract id must not be empty or padded")
    }
    const key = yield* Effect.tryPromise({
      try: () => importVerifyKey(contractId, publicKeyPem),
      catch: () => `the public key of contract ${contractId} is not an RSA public PEM`
    })
    state.verifyKeys.set(clientIdOf(state.config, contractId), key)
  })
