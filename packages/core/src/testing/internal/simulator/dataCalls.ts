/**
 * The data calls made with the user's access token (claims A), besides trigger, accounts and
 * delete user: the file list, file downloads and their metadata, pushes, account revocation and
 * deletion, the portability report. Each checks the request's shape first, then the access token
 * (`401 InvalidToken` when unknown, expired, revoked or of another contract), then the contract's
 * access type, then the meaning.
 */
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { base64url, fromBase64url } from "../../../internal/encoding.js"
import { AbsoluteHttpUrl, type Assertion, FileDescriptor } from "../../../internal/protocol.js"
import type { AccessType, Endpoint, SimRequest, SimResponse } from "../../DigimeSimulator.js"
import { bodyDecoder, decodeSegment, noBody, valueDecoder } from "./checks.js"
import { damage, seal } from "./envelope.js"
import { strayEncryptKey, takeDownloadFaults } from "./faults.js"
import type { RouteParams } from "./handlers.js"
import { deleteAccount, poll, recordPush, syncView } from "./library.js"
import { invalidToken, isRecord, jsonResponse, randomToken, type Refusal, refuse, validation } from "./responses.js"
import { verifyPs512 } from "./signing.js"
import {
  type AccessToken,
  type Account,
  accountOf,
  codeLifetimeMillis,
  contractIdOf,
  type State,
  type StoredFile,
  type SyncSession,
  usableAccessToken,
  userOf
} from "./state.js"

/** @internal */
export type UserDataEndpoint = Extract<
  Endpoint,
  "fileList" | "file" | "fileMetadata" | "push" | "pushProvider" | "revokeAccount" | "deleteAccount" | "report"
>

const fail = (refusal: Refusal): Effect.Effect<never, Refusal> => Effect.fail(refusal)

const tokenOf = (
  state: State,
  claims: typeof Assertion.data.Type,
  endpoint: UserDataEndpoint,
  clientId: string,
  now: number
): Effect.Effect<AccessToken, Refusal> => {
  const token = usableAccessToken(state, Redacted.value(claims.access_token), now, clientId)
  return token === undefined
    ? fail(invalidToken("access_token", `${endpoint}: access token unknown, expired, revoked or of another app`))
    : Effect.succeed(token)
}

const insufficientScope = (problem: string): Refusal =>
  refuse(403, "InsufficientScope", "The request requires higher privileges than provided by the access token", problem)

/**
 * `403 InsufficientScope` unless the contract has the access type.
 *
 * @internal
 */
export const requireAccess = (
  state: State,
  clientId: string,
  accessType: AccessType,
  endpoint: Endpoint
): Effect.Effect<void, Refusal> =>
  state.contracts.get(clientId)?.accessType === accessType
    ? Effect.void
    : fail(insufficientScope(`${endpoint}: needs a ${accessType === "r" ? "read" : "write"} contract`))

const accountNotFound = (accountId: string, endpoint: Endpoint): Refusal =>
  refuse(404, "AccountNotFound", `The account (${accountId}) was not found`, `${endpoint}: not an account of the user`)

/** A header the call needs (names are lower case in `SimRequest`). */
const header = (request: SimRequest, name: string, label: string): Effect.Effect<string, Refusal> => {
  const value = request.headers[name]
  return value === undefined || value.trim() === ""
    ? fail(validation(400, `header: missing ${label}`))
    : Effect.succeed(value)
}

const userAccount = (
  state: State,
  userId: string,
  accountId: string,
  endpoint: Endpoint
): Effect.Effect<Account, Refusal> => {
  const account = accountOf(state, userId, accountId)
  return account === undefined ? fail(accountNotFound(accountId, endpoint)) : Effect.succeed(account)
}

// --- sessions and files ----------------------------------------------------------------------

const sessionOf = (
  state: State,
  key: string,
  token: AccessToken,
  endpoint: Endpoint,
  now: number
): Effect.Effect<SyncSession, Refusal> => {
  const session = state.sessions.get(key)
  if (session === undefined || session.userId !== token.family.userId || session.clientId !== token.family.clientId) {
    return fail(refuse(404, "SessionNotFound", "The session was not found", `${endpoint}: unknown or foreign session`))
  }
  if (now >= session.expiresAt) {
    return fail(refuse(410, "SessionExpired", "The session has expired", `${endpoint}: expired session`))
  }
  return Effect.succeed(session)
}

const fileOf = (
  state: State,
  session: SyncSession,
  name: string,
  endpoint: Endpoint
): Effect.Effect<StoredFile, Refusal> => {
  const file = syncView(state, session, session.polls).files.find((candidate) => candidate.name === name)
  return file === undefined
    ? fail(refuse(404, "FileNotFound", "The file was not found", `${endpoint}: not a file of the session`))
    : Effect.succeed(file)
}

const fileHeaders = (file: StoredFile): Record<string, string> => ({
  "content-type": "application/octet-stream",
  "x-metadata": base64url(
    JSON.stringify({
      metadata: file.metadata,
      ...(file.compression === undefined ? {} : { compression: file.compression })
    })
  ),
  "last-modified": new Date(file.updatedDate).toUTCString()
})

const download = (state: State, file: StoredFile, clientId: string): Effect.Effect<SimResponse> =>
  Effect.promise(async (): Promise<SimResponse> => {
    const faults = takeDownloadFaults(state, file.name)
    let key = state.contracts.get(clientId)!.encryptKey
    if (faults.envelope === "WrongKeyEnvelope") {
      key = await strayEncryptKey(state)
    }
    const sealed = await seal(key, file.bytes)
    const body = faults.envelope === undefined ? sealed : damage(sealed, faults.envelope)
    return {
      status: 200,
      headers: fileHeaders(file),
      body,
      ...(faults.dropBody === undefined
        ? {}
        : { dropBodyAfter: Math.min(faults.dropBody.after ?? Math.floor(body.length / 2), body.length) })
    }
  })

// --- pushes ----------------------------------------------------------------------------------

const decodeDescriptor = valueDecoder(FileDescriptor, "FileDescriptor")

/** The `FileDescriptor` header: a JWT signed PS512 by the contract, its payload decoded strictly. */
const descriptorOf = (
  state: State,
  request: SimRequest,
  clientId: string
): Effect.Effect<typeof FileDescriptor.Type, Refusal> =>
  Effect.gen(function*() {
    const match = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(request.headers["filedescriptor"] ?? "")
    if (match === null) return yield* fail(validation(400, "FileDescriptor: missing or not a JWT"))
    const [, encodedHeader, encodedPayload, encodedSignature] = match as unknown as [string, string, string, string]
    const jwtHeader = decodeSegment(encodedHeader)
    if (
      !isRecord(jwtHeader) || jwtHeader.alg !== "PS512" || jwtHeader.typ !== "JWT" ||
      Object.keys(jwtHeader).length !== 2
    ) {
      return yield* fail(
        validation(400, "FileDescriptor: the header is not exactly {\"alg\":\"PS512\",\"typ\":\"JWT\"}")
      )
    }
    const signature = fromBase64url(encodedSignature)
    const key = state.contracts.get(clientId)!.verifyKey
    const valid = signature !== undefined &&
      (yield* Effect.promise(() => verifyPs512(key, signature, `${encodedHeader}.${encodedPayload}`)))
    if (!valid) {
      return yield* fail(validation(400, "FileDescriptor: the signature does not verify (PS512, 64-byte salt)"))
    }
    return yield* decodeDescriptor(decodeSegment(encodedPayload))
  })

const isOctetStream = (request: SimRequest): boolean =>
  /^application\/octet-stream\s*(;|$)/i.test(request.headers["content-type"] ?? "")

const delivered = (): SimResponse => jsonResponse(201, { status: "delivered" })

const decodeProviderBody = bodyDecoder(Schema.Record({ key: Schema.String, value: Schema.Unknown }))

const providerVersions: ReadonlyArray<string> = ["stu3", "3.0.2"]

// --- the report ------------------------------------------------------------------------------

const seconds = (query: URLSearchParams, name: string): Effect.Effect<number, Refusal> => {
  const value = query.get(name)
  return value !== null && /^\d{1,12}$/.test(value)
    ? Effect.succeed(Number(value))
    : fail(validation(400, `query: ${name} is not a number of seconds`))
}

const report = (serviceType: string, from: number, to: number, accounts: ReadonlyArray<Account>): SimResponse => ({
  status: 200,
  headers: { "content-type": "application/xml" },
  body: [
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
    `<report serviceType="${serviceType}" from="${from}" to="${to}">`,
    ...accounts.map((account) => `  <account id="${account.id}" reference="${account.reference}"/>`),
    "</report>",
    ""
  ].join("\n")
})

// ---------------------------------------------------------------------------------------------

/**
 * Processes a claims-A data call whose assertion and claim set are checked.
 *
 * @internal
 */
export const userDataCall = (
  state: State,
  endpoint: UserDataEndpoint,
  request: SimRequest,
  params: RouteParams,
  claims: typeof Assertion.data.Type,
  clientId: string,
  now: number
): Effect.Effect<SimResponse, Refusal> =>
  Effect.gen(function*() {
    switch (endpoint) {
      case "fileList": {
        yield* noBody(request)
        const token = yield* tokenOf(state, claims, endpoint, clientId, now)
        yield* requireAccess(state, clientId, "r", endpoint)
        const session = yield* sessionOf(state, params.segments[0]!, token, endpoint, now)
        return jsonResponse(200, poll(state, session))
      }
      case "file":
      case "fileMetadata": {
        yield* noBody(request)
        const token = yield* tokenOf(state, claims, endpoint, clientId, now)
        yield* requireAccess(state, clientId, "r", endpoint)
        const session = yield* sessionOf(state, params.segments[0]!, token, endpoint, now)
        const file = yield* fileOf(state, session, params.segments[1]!, endpoint)
        return endpoint === "file"
          ? yield* download(state, file, clientId)
          : { status: 200, headers: fileHeaders(file), body: "" }
      }
      case "push": {
        if (!isOctetStream(request)) {
          return yield* fail(validation(400, "body: content-type is not application/octet-stream"))
        }
        const descriptor = yield* descriptorOf(state, request, clientId)
        const token = yield* tokenOf(state, claims, endpoint, clientId, now)
        yield* requireAccess(state, clientId, "w", endpoint)
        const userId = token.family.userId
        for (const { accountId } of descriptor.metadata.accounts) {
          if (accountOf(state, userId, accountId) === undefined) {
            return yield* fail(validation(400, `FileDescriptor: ${accountId} is not an account of the user`))
          }
        }
        recordPush(
          state,
          clientId,
          userOf(state, userId),
          userId,
          descriptor.metadata,
          request.body ?? new Uint8Array(),
          now
        )
        return delivered()
      }
      case "pushProvider": {
        const [standard, version] = params.segments as [string, string]
        if (standard !== "fhir" || !providerVersions.includes(version)) {
          return yield* fail(
            validation(400, `path: unsupported standard ${standard}/${version} (fhir/stu3 or fhir/3.0.2)`)
          )
        }
        const accountId = yield* header(request, "accountid", "accountId")
        const body = yield* decodeProviderBody(request)
        const token = yield* tokenOf(state, claims, endpoint, clientId, now)
        yield* requireAccess(state, clientId, "w", endpoint)
        yield* userAccount(state, token.family.userId, accountId, endpoint)
        state.providerPushes.push({
          contractId: contractIdOf(state, clientId),
          digimeUserId: token.family.userId,
          accountId,
          standard: "fhir",
          version: version as "stu3" | "3.0.2",
          body
        })
        return delivered()
      }
      case "revokeAccount": {
        yield* noBody(request)
        const accountId = yield* header(request, "accountid", "accountId")
        const redirectUri = yield* header(request, "redirecturi", "redirectUri")
        if (!Schema.is(AbsoluteHttpUrl)(redirectUri)) {
          return yield* fail(validation(400, "header: redirectUri is not an absolute http(s) URL"))
        }
        const token = yield* tokenOf(state, claims, endpoint, clientId, now)
        yield* userAccount(state, token.family.userId, accountId, endpoint)
        const code = randomToken()
        state.preAuthorizations.set(code, {
          kind: "revoke",
          clientId,
          challenge: undefined,
          redirectUri,
          state: undefined,
          userId: token.family.userId,
          expiresAt: now + codeLifetimeMillis,
          sessionKey: undefined,
          accountId,
          used: false
        })
        return jsonResponse(200, { location: `${state.config.onboardUrl}revoke?code=${code}` })
      }
      case "deleteAccount": {
        yield* noBody(request)
        const accountId = yield* header(request, "accountid", "accountId")
        const token = yield* tokenOf(state, claims, endpoint, clientId, now)
        yield* userAccount(state, token.family.userId, accountId, endpoint)
        deleteAccount(userOf(state, token.family.userId), accountId)
        return jsonResponse(201, {})
      }
      case "report": {
        yield* noBody(request)
        const serviceType = params.segments[0]!
        if (serviceType !== "medmij") return yield* fail(validation(400, "path: serviceType must be medmij"))
        if (params.query.get("format") !== "xml") return yield* fail(validation(400, "query: format must be xml"))
        const from = yield* seconds(params.query, "from")
        const to = yield* seconds(params.query, "to")
        if (from > to) return yield* fail(validation(400, "query: from is after to"))
        const token = yield* tokenOf(state, claims, endpoint, clientId, now)
        return report(serviceType, from, to, userOf(state, token.family.userId).accounts)
      }
    }
  })
