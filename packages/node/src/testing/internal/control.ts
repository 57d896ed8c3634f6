/**
 * The control API of the simulator served over HTTP (`{origin}/_simulator/…`, see the module header
 * of `NodeDigimeSimulator`): the checks every control request passes first (its `Host`, its
 * `Origin`, a JSON body for a POST), then the JSON routes over `DigimeSimulator.Service`, with the
 * schemas of their bodies.
 */
import * as FileProtocol from "@digime-effect/core/FileProtocol"
import * as DigimeSimulator from "@digime-effect/core/testing/DigimeSimulator"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Encoding from "effect/Encoding"
import * as Schema from "effect/Schema"
import type { Server } from "../NodeDigimeSimulator.js"
import { withProblem } from "./requestLog.js"

/** @internal */
export const controlPath = "/_simulator/"

const ContractSchema = Schema.Struct({
  contractId: Schema.String,
  publicKeyPem: Schema.String,
  accessType: Schema.optional(Schema.Literal("r", "w"))
})

const Base64 = Schema.String.pipe(
  Schema.filter((value) => /^[A-Za-z0-9+/]*={0,2}$/.test(value) && Either.isRight(Encoding.decodeBase64(value)), {
    message: () => "base64"
  })
)

const FileSchema = Schema.Struct({
  name: Schema.String,
  content: Schema.optional(Schema.String),
  contentBase64: Schema.optional(Base64),
  compressedBase64: Schema.optional(Base64),
  compression: Schema.optional(Schema.Literal("gzip", "brotli", "none")),
  metadata: Schema.optional(FileProtocol.FileMetadata),
  accountId: Schema.optional(Schema.String)
})

const FilesSchema = Schema.Struct({ digimeUserId: Schema.String, files: Schema.Array(FileSchema) })

const UserSchema = Schema.Struct({ digimeUserId: Schema.String })

const ReauthSchema = Schema.Struct({
  digimeUserId: Schema.String,
  accountId: Schema.String,
  required: Schema.optional(Schema.Boolean)
})

const bytesOf = (base64: string): Uint8Array => Either.getOrThrow(Encoding.decodeBase64(base64))

/** A file of the control API as `addFiles` takes it, or why it cannot be one. */
const toFileInput = (file: typeof FileSchema.Type): Either.Either<DigimeSimulator.FileInput, string> => {
  const { accountId, compressedBase64, compression, content, contentBase64, metadata, name } = file
  const given = [content, contentBase64, compressedBase64].filter((value) => value !== undefined).length
  if (given !== 1) return Either.left(`${name}: give exactly one of content, contentBase64 and compressedBase64`)
  const common = { name, metadata, accountId }
  if (compressedBase64 !== undefined) {
    return compression === "gzip" || compression === "brotli"
      ? Either.right({ ...common, compressed: bytesOf(compressedBase64), compression })
      : Either.left(`${name}: compressedBase64 needs compression "gzip" or "brotli"`)
  }
  if (compression === "brotli") return Either.left(`${name}: give brotli content as compressedBase64`)
  return Either.right({ ...common, content: content ?? bytesOf(contentBase64!), compression })
}

/**
 * A control API error: `{"error":{"code","message"}}`, `InvalidRequest` unless told.
 *
 * @internal
 */
export const controlError = (
  status: number,
  message: string,
  code = "InvalidRequest"
): HttpServerResponse.HttpServerResponse =>
  withProblem(HttpServerResponse.unsafeJson({ error: { code, message } }, { status }), message, code)

// `host[:port]` as a `Host` header carries it, normalised as in a URL (lower case, no `:80`); anything
// else (user info, a path, stray characters) is not a host.
const normaliseHost = (value: string): string | undefined => {
  if (!/^(?:[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::\d{1,5})?$/i.test(value)) return undefined
  try {
    return new URL(`http://${value}`).host
  } catch {
    return undefined
  }
}

const isLoopbackOrWildcard = (hostname: string): boolean =>
  hostname === "0.0.0.0" || hostname === "::" || hostname === "::1" || /^127(?:\.\d{1,3}){3}$/.test(hostname)

/**
 * The normalised `Host` values the control endpoints answer to.
 *
 * @internal
 */
export const controlHosts = (
  bound: string,
  port: number,
  requested: string | undefined,
  extra: ReadonlyArray<string>
): ReadonlySet<string> => {
  const names: Array<string> = []
  for (const name of [requested, bound]) {
    if (name !== undefined && name !== "0.0.0.0" && name !== "::") names.push(name)
  }
  if (isLoopbackOrWildcard(bound)) names.push("localhost", "127.0.0.1", "::1")
  const hosts = new Set<string>()
  for (const value of [...names.map((name) => `${name.includes(":") ? `[${name}]` : name}:${port}`), ...extra]) {
    const host = normaliseHost(value)
    if (host !== undefined) hosts.add(host)
  }
  return hosts
}

const isJson = (contentType: string | undefined): boolean =>
  contentType !== undefined && contentType.split(";")[0]!.trim().toLowerCase() === "application/json"

// Checked before routing, so a refusal tells nothing about which control endpoints exist.
const refusal = (
  request: HttpServerRequest.HttpServerRequest,
  hosts: ReadonlySet<string>
): HttpServerResponse.HttpServerResponse | undefined => {
  const requestHost = normaliseHost(request.headers.host ?? "")
  if (requestHost === undefined || !hosts.has(requestHost)) {
    return controlError(403, "the control endpoints answer only under the simulator's own host", "HostNotAllowed")
  }
  const requestOrigin = request.headers.origin
  if (requestOrigin !== undefined) {
    const originHost = requestOrigin.startsWith("http://") ? normaliseHost(requestOrigin.slice(7)) : undefined
    if (originHost === undefined || !hosts.has(originHost)) {
      return controlError(403, "the control endpoints refuse requests from other origins", "OriginNotAllowed")
    }
  }
  if (request.method === "POST" && !isJson(request.headers["content-type"])) {
    return controlError(415, "a control request's body must be application/json", "UnsupportedMediaType")
  }
  return undefined
}

/**
 * The handler of the control API (`url` under `controlPath`) for the server, answering only under
 * the `hosts` of `controlHosts`.
 *
 * @internal
 */
export const makeControl = (
  server: Server,
  hosts: ReadonlySet<string>
): (request: HttpServerRequest.HttpServerRequest, url: URL) => Effect.Effect<HttpServerResponse.HttpServerResponse> => {
  const simulator = server.simulator
  return (request, url) =>
    Effect.gen(function*() {
      const refused = refusal(request, hosts)
      if (refused !== undefined) return refused
      const route = url.pathname.slice(controlPath.length)
      switch (`${request.method} ${route}`) {
        case "GET ":
          return HttpServerResponse.unsafeJson({
            baseUrl: server.baseUrl,
            onboardUrl: server.onboardUrl,
            jwksUrl: server.jwksUrl,
            controlUrl: server.controlUrl
          })
        case "GET stats":
          return HttpServerResponse.unsafeJson(yield* simulator.stats)
        case "GET requests":
          return HttpServerResponse.unsafeJson(yield* simulator.requests)
        case "POST contracts": {
          const input = yield* Effect.either(
            Effect.flatMap(request.json, Schema.decodeUnknown(ContractSchema))
          )
          if (Either.isLeft(input)) {
            return controlError(400, "expected {\"contractId\", \"publicKeyPem\", \"accessType\"?}")
          }
          const registered = yield* Effect.either(
            simulator.registerContract(input.right.contractId, input.right.publicKeyPem, {
              accessType: input.right.accessType
            })
          )
          return Either.isLeft(registered)
            ? controlError(400, registered.left.reason)
            : HttpServerResponse.unsafeJson({ contractId: input.right.contractId }, { status: 201 })
        }
        case "POST faults": {
          const fault = yield* Effect.either(
            Effect.flatMap(request.json, Schema.decodeUnknown(DigimeSimulator.Fault))
          )
          if (Either.isLeft(fault)) return controlError(400, "expected a DigimeSimulator.Fault as JSON")
          yield* simulator.injectFault(fault.right)
          return HttpServerResponse.empty({ status: 204 })
        }
        case "POST files": {
          const input = yield* Effect.either(Effect.flatMap(request.json, Schema.decodeUnknown(FilesSchema)))
          if (Either.isLeft(input)) return controlError(400, "expected {\"digimeUserId\", \"files\": [...]}")
          const files: Array<DigimeSimulator.FileInput> = []
          for (const file of input.right.files) {
            const converted = toFileInput(file)
            if (Either.isLeft(converted)) return controlError(400, converted.left)
            files.push(converted.right)
          }
          const added = yield* Effect.either(simulator.addFiles(input.right.digimeUserId, files))
          return Either.isLeft(added)
            ? controlError(400, added.left.reason)
            : HttpServerResponse.empty({ status: 204 })
        }
        case "GET accounts": {
          const digimeUserId = url.searchParams.get("digimeUserId")
          if (digimeUserId === null) return controlError(400, "expected ?digimeUserId=…")
          const accounts = yield* Effect.either(simulator.accountsOf(digimeUserId))
          return Either.isLeft(accounts)
            ? controlError(404, accounts.left.reason, "NotFound")
            : HttpServerResponse.unsafeJson(accounts.right)
        }
        case "POST accounts": {
          const input = yield* Effect.either(Effect.flatMap(request.json, Schema.decodeUnknown(UserSchema)))
          if (Either.isLeft(input)) return controlError(400, "expected {\"digimeUserId\"}")
          const account = yield* Effect.either(simulator.addAccount(input.right.digimeUserId))
          return Either.isLeft(account)
            ? controlError(400, account.left.reason)
            : HttpServerResponse.unsafeJson(account.right, { status: 201 })
        }
        case "POST reauth": {
          const input = yield* Effect.either(Effect.flatMap(request.json, Schema.decodeUnknown(ReauthSchema)))
          if (Either.isLeft(input)) {
            return controlError(400, "expected {\"digimeUserId\", \"accountId\", \"required\"?}")
          }
          const { accountId, digimeUserId, required } = input.right
          const marked = yield* Effect.either(simulator.requireReauth(digimeUserId, accountId, required))
          return Either.isLeft(marked)
            ? controlError(400, marked.left.reason)
            : HttpServerResponse.empty({ status: 204 })
        }
        case "GET pushed": {
          const library = (yield* simulator.pushed).map(({ body, ...pushed }) => ({
            ...pushed,
            bodyBase64: Encoding.encodeBase64(body)
          }))
          return HttpServerResponse.unsafeJson({ library, provider: yield* simulator.providerPushes })
        }
        default:
          return controlError(404, `no control endpoint ${request.method} ${controlPath}${route}`)
      }
    })
}
