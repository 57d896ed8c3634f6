/**
 * What the test does in the user's (or digi.me's back office's) place, without HTTP: consent on an
 * onboarding URL, read what one asks for, grant a token outright, make a contract known: the
 * `Service` members of the same names, timed by the `Clock`. Each fails with the reason of the
 * test's misuse; the public module turns it into a `SimulatorError`.
 *
 * The pages and what Allow does:
 *
 * - `{onboard}authorize?code=…`: a code for the callback, and the reference of an account: a new one
 *   for a new user, the first one of a user who already has a library;
 * - `{onboard}user-reauth?code=…`: a code, whose exchange revokes the client's older token families;
 * - `{onboard}onboard?code=…`: one more account for the user, `success=true` (no code);
 * - `{onboard}reauthorize?code=…&accountRef=…`: the referenced account no longer needs reauthorization;
 * - `{onboard}revoke?code=…`: the account's permission is revoked (it needs reauthorization), then
 *   `result=success` (Deny: `result=failed&error_message=…`).
 *
 * Allow starts the session answered with the pre-authorization, if any.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { TokenPayload, toUserAccessToken } from "../../../internal/protocol.js"
import type { UserAccessToken } from "../../../UserAccessToken.js"
import type { AccessType, ConsentRequest, Service } from "../../DigimeSimulator.js"
import { randomId, randomToken } from "./responses.js"
import { importContractKeys } from "./signing.js"
import {
  type Account,
  accountOf,
  addAccount,
  clientIdOf,
  codeLifetimeMillis,
  contractIdOf,
  issueTokens,
  newFamily,
  type PreAuthorization,
  type State,
  userOf
} from "./state.js"

type Page = ConsentRequest["kind"]

const pages: ReadonlyArray<readonly [Page, PreAuthorization["kind"]]> = [
  ["authorize", "authorize"],
  ["reauth", "reauth"],
  ["onboard", "onboard"],
  ["reauthorize", "onboard"],
  ["revoke", "revoke"]
]

const pathOf = (page: Page): string => page === "reauth" ? "user-reauth" : page

/**
 * Whether the URL (its origin and path; the query is not read) is one of the consent pages.
 *
 * @internal
 */
export const isConsentPage = (state: State, url: URL): boolean => {
  const address = `${url.origin}${url.pathname}`
  return pages.some(([page]) => address === `${state.config.onboardUrl}${pathOf(page)}`)
}

interface Pending {
  readonly page: Page
  readonly preAuthorization: PreAuthorization
  /** The account of a `reauthorize` or `revoke` page. */
  readonly account: Account | undefined
}

/** The pending pre-authorization an onboarding URL names, if `consent` may use it at `now`. */
const pendingConsent = (state: State, onboardingUrl: string, now: number): Either.Either<Pending, string> => {
  const onboardUrl = state.config.onboardUrl
  let url: URL
  try {
    url = new URL(onboardingUrl)
  } catch {
    return Either.left("the onboarding URL is not a URL")
  }
  const address = `${url.origin}${url.pathname}`
  const found = pages.find(([page]) => address === `${onboardUrl}${pathOf(page)}`)
  if (found === undefined) {
    return Either.left(
      `the onboarding URL is none of ${pages.map(([page]) => `${onboardUrl}${pathOf(page)}`).join(", ")}`
    )
  }
  const [page, kind] = found
  const code = url.searchParams.get("code")
  const preAuthorization = code === null ? undefined : state.preAuthorizations.get(code)
  if (preAuthorization === undefined || preAuthorization.kind !== kind) {
    return Either.left("the onboarding URL carries an unknown code")
  }
  if (preAuthorization.used) return Either.left("the onboarding URL's code was already used")
  if (now >= preAuthorization.expiresAt) return Either.left("the onboarding URL's code is expired")
  let account: Account | undefined
  if (page === "reauthorize") {
    const id = url.searchParams.get("accountRef")
    const reference = id === null ? undefined : state.references.get(id)
    if (reference === undefined || reference.type !== "accountId" || now >= reference.expiresAt) {
      return Either.left("the reauthorize URL carries an unknown or expired accountRef")
    }
    if (reference.clientId !== preAuthorization.clientId) {
      return Either.left("the reauthorize URL's accountRef was made by another contract")
    }
    account = accountOf(state, preAuthorization.userId, reference.value)
    if (account === undefined) return Either.left("the reauthorize URL's account is not the user's")
  } else if (page === "revoke") {
    account = accountOf(state, preAuthorization.userId, preAuthorization.accountId ?? "")
    if (account === undefined) return Either.left("the account of the revoke URL no longer exists")
  }
  return Either.right({ page, preAuthorization, account })
}

/** @internal */
export const describeConsent = (state: State, onboardingUrl: string): Effect.Effect<ConsentRequest, string> =>
  Effect.flatMap(
    Clock.currentTimeMillis,
    (now) =>
      Either.map(pendingConsent(state, onboardingUrl, now), ({ account, page, preAuthorization }) => ({
        kind: page,
        applicationId: state.config.applicationId,
        contractId: contractIdOf(state, preAuthorization.clientId),
        redirectUri: preAuthorization.redirectUri,
        ...(account === undefined ? {} : { accountId: account.id })
      }))
  )

type ConsentOptions = Parameters<Service["consent"]>[1]

/**
 * The user answers the consent page at `now`: the callback URL digi.me redirects to.
 *
 * @internal
 */
export const answerConsent = (
  state: State,
  onboardingUrl: string,
  options: ConsentOptions,
  now: number
): Either.Either<string, string> =>
  Either.map(pendingConsent(state, onboardingUrl, now), ({ account, page, preAuthorization }) => {
    preAuthorization.used = true
    const callback = new URL(preAuthorization.redirectUri)
    const params = callback.searchParams
    const allow = options?.allow !== false
    if (page === "revoke") {
      if (allow) {
        account!.reauthRequired = true
        params.append("result", "success")
      } else {
        params.append("result", "failed")
        params.append("error_message", options?.errorCode ?? "AccessDenied")
      }
      return callback.toString()
    }
    if (!allow) {
      params.append("success", "false")
      params.append("errorCode", options?.errorCode ?? "AccessDenied")
      if (preAuthorization.state !== undefined) params.append("state", preAuthorization.state)
      return callback.toString()
    }
    const session = preAuthorization.sessionKey === undefined
      ? undefined
      : state.sessions.get(preAuthorization.sessionKey)
    if (session !== undefined) session.started = true
    params.append("success", "true")
    if (preAuthorization.state !== undefined) params.append("state", preAuthorization.state)
    switch (page) {
      case "onboard":
        addAccount(state, preAuthorization.userId, now)
        return callback.toString()
      case "reauthorize":
        account!.reauthRequired = false
        return callback.toString()
    }
    const authorizationCode = randomToken()
    state.codes.set(authorizationCode, {
      kind: page,
      clientId: preAuthorization.clientId,
      challenge: preAuthorization.challenge ?? "",
      userId: preAuthorization.userId,
      expiresAt: now + codeLifetimeMillis,
      used: false
    })
    params.append("code", authorizationCode)
    if (page === "authorize") {
      // A new user brings a new account; a user who already has a library (another contract added
      // with the user's access token) consents with the accounts it holds.
      const existing = userOf(state, preAuthorization.userId).accounts[0]
      params.append("accountReference", (existing ?? addAccount(state, preAuthorization.userId, now)).reference)
    }
    return callback.toString()
  })

/**
 * The user answers the consent page: the callback URL digi.me redirects to.
 *
 * @internal
 */
export const consent = (state: State, onboardingUrl: string, options: ConsentOptions): Effect.Effect<string, string> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => answerConsent(state, onboardingUrl, options, now))

const decodeTokenPayload = Schema.decodeUnknownSync(TokenPayload)

/**
 * A token of a new family for the contract, as a consent followed by a code exchange would leave
 * it; no request is made and no exchange counted. Without `userId`, a new user with one account.
 *
 * @internal
 */
export const grant = (
  state: State,
  contractId: string,
  userId: string | undefined
): Effect.Effect<UserAccessToken, string> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => {
    const clientId = clientIdOf(state.config, contractId)
    if (!state.contracts.has(clientId)) return Either.left(`no contract ${contractId} is known`)
    if (userId !== undefined && !state.users.has(userId)) return Either.left(`no user ${userId} is known`)
    const user = userId ?? randomId()
    if (userId === undefined) addAccount(state, user, now)
    const family = newFamily(state, user, clientId, now)
    return Either.right(toUserAccessToken(decodeTokenPayload(issueTokens(state, family, now))))
  })

/** @internal */
export const registerContract = (
  state: State,
  contractId: string,
  publicKeyPem: string,
  accessType: AccessType
): Effect.Effect<void, string> =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    if (contractId.trim() === "" || contractId !== contractId.trim()) {
      return yield* Effect.fail("a contract id must not be empty or padded")
    }
    if (accessType !== "r" && accessType !== "w") return yield* Effect.fail("accessType must be \"r\" or \"w\"")
    const keys = yield* Effect.tryPromise({
      try: () => importContractKeys(contractId, publicKeyPem),
      catch: () => `the public key of contract ${contractId} is not an RSA public PEM`
    })
    state.contracts.set(clientIdOf(state.config, contractId), { contractId, ...keys, accessType, registeredAt: now })
  })
