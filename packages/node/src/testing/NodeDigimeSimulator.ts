/**
 * The simulated digi.me of `@digime-effect/core/testing` served over real HTTP on Node, so that a
 * whole user journey (a browser on the consent page, an application's own HTTP client) can run
 * against it. It listens on `127.0.0.1` and an ephemeral port by default.
 *
 * What it serves, under the origin it listens on (`{origin}` below):
 *
 * - `{origin}/v1.7/…`: the digi.me API of the protocol documents, with its real paths, statuses and
 *   error bodies (`{"error":{"code","message","reference"}}`), answered by `DigimeSimulator.handle`
 *   (see its module header for the calls and the choices it makes): the token calls, every data
 *   call (sessions, file lists, encrypted downloads and `HEAD`, pushes, account management,
 *   discovery, sample datasets, contract details, the report) and the key set `GET jwks/oauth`
 *   (every token's `jku`). Binary answers are sent as they are. Any other path answers `404` with
 *   the same error body.
 * - `{origin}/apps/saas/authorize?code=…`, `…/user-reauth?code=…`, `…/onboard?code=…`,
 *   `…/reauthorize?code=…&accountRef=…` and `…/revoke?code=…`: a small consent page ("<app> asks
 *   to read your data") with the buttons `#allow` and `#deny`. They post to
 *   `{origin}/apps/saas/consent`, which answers `303 See Other` to the application's callback
 *   (`success=true&state&code[&accountReference]`, or `success=false&errorCode[&state]`; see
 *   `DigimeSimulator.Service.consent` for the other pages). An unknown, used or expired code gives a
 *   `400` page saying so.
 * - `{origin}/_simulator/…`, to control and inspect it:
 *   - `GET _simulator/`: the URLs, as JSON;
 *   - `GET _simulator/stats`: `DigimeSimulator.Stats` as JSON;
 *   - `GET _simulator/requests`: the recorded requests (secret claims already redacted);
 *   - `POST _simulator/contracts` with `{"contractId","publicKeyPem","accessType"?}` (`"r"`, the
 *     default, or `"w"`): makes a contract known (`201`);
 *   - `POST _simulator/faults` with a `DigimeSimulator.Fault` as JSON (a `Delay`'s `delay` in
 *     milliseconds or as a duration string such as `"2 seconds"`): injects it (`204`);
 *   - `POST _simulator/files` with `{"digimeUserId","files":[{"name", one of "content" (UTF-8 text),
 *     "contentBase64" or "compressedBase64" (already compressed, with "compression": "gzip" or
 *     "brotli"), "compression"?, "metadata"?, "accountId"?}]}`: `DigimeSimulator.Service.addFiles`
 *     (`204`);
 *   - `GET _simulator/accounts?digimeUserId=…`: the user's accounts; `POST _simulator/accounts` with
 *     `{"digimeUserId"}`: one more account (`201`, the account); `POST _simulator/reauth` with
 *     `{"digimeUserId","accountId","required"?}`: marks the account as needing reauthorization, or
 *     clears the mark with `"required": false` (`204`);
 *   - `GET _simulator/pushed`: `{"library":[{contractId, digimeUserId, metadata, fileName,
 *     bodyBase64}], "provider":[{contractId, digimeUserId, accountId, standard, version, body}]}`.
 *   A malformed control request answers `400` with `{"error":{"code":"InvalidRequest","message"}}`.
 *
 *   So that a web page open in the developer's browser can neither steer it (a cross-site form or
 *   `text/plain` "simple request") nor read it (DNS rebinding), every control request, GET included,
 *   is checked before it is routed:
 *   - its `Host` must name the simulator as it listens: `host:port` of the bound address (the `host`
 *     option as given too), and, when it listens on loopback or on every interface, `localhost`,
 *     `127.0.0.1` and `[::1]` with that port; else `403` `HostNotAllowed`. A name it is reached by
 *     from elsewhere (a container's service name) goes in `allowedHosts`;
 *   - an `Origin`, when present, must be `http://` and one of those hosts; else `403`
 *     `OriginNotAllowed`;
 *   - a POST must be `content-type: application/json`; else `415` `UnsupportedMediaType`.
 *   The digi.me API and the consent pages are not checked: they answer any host, as digi.me does.
 *
 * A `DropResponse` fault (or `dropRefreshAnswers`) really cuts the connection: the request is
 * processed, then the socket is destroyed without an answer, so the client sees a transport error.
 * A `DropBody` fault sends the head (with the whole `content-length`) and the first bytes of the
 * body, then destroys the socket.
 *
 * The simulator is timed by the `Clock` of the fiber that builds the server: the live clock
 * normally, `TestClock` when built inside a test that uses it.
 *
 * `pnpm simulator` (in `packages/node`, or at the root) starts one from the command line.
 *
 * @example
 * import { NodeDigimeSimulator } from "@digime-effect/node/testing"
 * import { Console, Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const server = yield* NodeDigimeSimulator.make({ applicationId: "demo-app", contracts: [] })
 *   yield* Console.log(`digi.me API at ${server.baseUrl}, onboarding at ${server.onboardUrl}`)
 * }).pipe(Effect.scoped)
 *
 * @since 0.1.0
 */
import * as FileProtocol from "@digime-effect/core/FileProtocol"
import * as DigimeSimulator from "@digime-effect/core/testing/DigimeSimulator"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import type * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as UrlParams from "@effect/platform/UrlParams"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Encoding from "effect/Encoding"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Http from "node:http"

/**
 * The simulator's options (without its URLs, which come from the address the server listens on)
 * and the server's own.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends Omit<DigimeSimulator.Options, "baseUrl" | "onboardUrl" | "contracts"> {
  /** The contracts known from the start; more can be added with `POST _simulator/contracts`. Default none. */
  readonly contracts?: DigimeSimulator.Options["contracts"] | undefined
  /** Default `"127.0.0.1"`. */
  readonly host?: string | undefined
  /** Default `0`: an ephemeral port, read back after listening. */
  readonly port?: number | undefined
  /**
   * More `Host` header values under which the control endpoints answer, for a simulator reached by
   * another name than the one it listens on (a container's service name, a port mapping):
   * `"name:port"`, or `"name"` for port 80, as a client sends them. Default none.
   */
  readonly allowedHosts?: ReadonlyArray<string> | undefined
  /** The application name shown on the consent page; default the application id. */
  readonly appName?: string | undefined
  /**
   * Drops the answer of that many successful refreshes, one after the other: each refresh rotates
   * the refresh token, then the connection is cut before the answer is sent. Default 0.
   */
  readonly dropRefreshAnswers?: number | undefined
}

/**
 * A running server.
 *
 * @since 0.1.0
 * @category models
 */
export interface Server {
  /** `http://host:port`, without a trailing slash. */
  readonly origin: string
  /** The API base URL, `{origin}/v1.7/`: `DigimeConfig`'s `baseUrl`. */
  readonly baseUrl: string
  /** The onboarding URL, `{origin}/apps/saas/`: `DigimeConfig`'s `onboardUrl`. */
  readonly onboardUrl: string
  /** The key set, `{origin}/v1.7/jwks/oauth`. */
  readonly jwksUrl: string
  /** The control and inspection endpoints, `{origin}/_simulator/`. */
  readonly controlUrl: string
  /** The simulator behind the server, to inspect or steer it from the same process. */
  readonly simulator: DigimeSimulator.Service
}

/**
 * @since 0.1.0
 * @category services
 */
export class NodeDigimeSimulator extends Context.Tag("@digime-effect/node/testing/NodeDigimeSimulator")<
  NodeDigimeSimulator,
  Server
>() {}

// ---------------------------------------------------------------------------------------------
// internals

const encoder = new TextEncoder()

const apiPath = "/v1.7/"
const onboardPath = "/apps/saas/"
const controlPath = "/_simulator/"

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

const escapeHtml = (text: string): string =>
  text.replace(
    /[&<>"']/g,
    (char) =>
      char === "&" ? "&amp;" : char === "<" ? "&lt;" : char === ">" ? "&gt;" : char === "\"" ? "&quot;" : "&#39;"
  )

const pageHeaders = {
  "cache-control": "no-store",
  "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY"
}

const page = (status: number, title: string, body: string): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.html(
    `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>
body { font-family: system-ui, sans-serif; background: #f4f5f7; margin: 0; }
main { max-width: 28rem; margin: 4rem auto; background: #fff; padding: 2rem; border-radius: 0.5rem; }
.note { color: #555; font-size: 0.9rem; }
button { font-size: 1rem; padding: 0.5rem 1.5rem; margin-right: 0.5rem; border-radius: 0.25rem; }
button { border: 1px solid #999; }
#allow { background: #1a7f37; color: #fff; border-color: #1a7f37; }
</style>
</head>
<body>
<main>
${body}
<p class="note">Simulated digi.me: for development and tests only.</p>
</main>
</body>
</html>
`
  ).pipe(HttpServerResponse.setStatus(status), HttpServerResponse.setHeaders(pageHeaders))

const errorPage = (message: string): HttpServerResponse.HttpServerResponse =>
  page(
    400,
    "digi.me: this link cannot be used",
    `<h1 id="error">This consent link cannot be used</h1>\n<p id="reason">${escapeHtml(message)}</p>`
  )

const asksFor: Record<DigimeSimulator.ConsentRequest["kind"], string> = {
  authorize: "It asks for access to your digi.me library",
  reauth: "It asks to renew its access to your digi.me library",
  onboard: "It asks you to add a service to your digi.me library",
  reauthorize: "It asks you to reconnect one of the services of your digi.me library",
  revoke: "It asks to withdraw its permission for one of the services of your digi.me library"
}

const consentPages: ReadonlyArray<string> = ["authorize", "user-reauth", "onboard", "reauthorize", "revoke"]

const consentPage = (
  appName: string,
  onboardingUrl: string,
  request: DigimeSimulator.ConsentRequest
): HttpServerResponse.HttpServerResponse => {
  const callback = new URL(request.redirectUri)
  const asks = asksFor[request.kind]
  return page(
    200,
    `digi.me: ${appName} asks to read your data`,
    `<h1 id="prompt">${escapeHtml(appName)} asks to read your data</h1>
<p>${asks} (contract <code>${escapeHtml(request.contractId)}</code>).</p>
<p class="note">Your answer is sent to ${escapeHtml(`${callback.origin}${callback.pathname}`)}.</p>
<form method="post" action="${onboardPath}consent">
<input type="hidden" name="url" value="${escapeHtml(onboardingUrl)}">
<button id="allow" type="submit" name="choice" value="allow">Allow</button>
<button id="deny" type="submit" name="choice" value="deny">Deny</button>
</form>`
  )
}

const controlError = (
  status: number,
  message: string,
  code = "InvalidRequest"
): HttpServerResponse.HttpServerResponse => HttpServerResponse.unsafeJson({ error: { code, message } }, { status })

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

/** The normalised `Host` values the control endpoints answer to. */
const controlHosts = (
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

const headerRecord = (headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>) => {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    out[name.toLowerCase()] = typeof value === "string" ? value : value.join(", ")
  }
  return out
}

// The host to put in URLs: a wildcard address is reached on loopback, IPv6 goes in brackets.
const urlHost = (hostname: string): string =>
  hostname === "0.0.0.0"
    ? "127.0.0.1"
    : hostname === "::"
    ? "[::1]"
    : hostname.includes(":")
    ? `[${hostname}]`
    : hostname

/**
 * Listens, then makes the simulator with the URLs of the bound address, then serves it until the
 * scope closes (open connections are then cut).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Server, HttpServerError.ServeError, Scope.Scope> =>
  Effect.gen(function*() {
    const { allowedHosts, appName, contracts, dropRefreshAnswers, host, port, ...simulatorOptions } = options
    let nodeServer: Http.Server | undefined
    const httpServer = yield* NodeHttpServer.make(() => {
      nodeServer = Http.createServer()
      return nodeServer
    }, { host: host ?? "127.0.0.1", port: port ?? 0 })
    // Runs before the server's own close, which would otherwise wait for kept-alive connections.
    yield* Effect.addFinalizer(() => Effect.sync(() => nodeServer?.closeAllConnections()))
    const address = httpServer.address
    if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("NodeDigimeSimulator: expected a TCP address")
    const origin = `http://${urlHost(address.hostname)}:${address.port}`
    const hosts = controlHosts(address.hostname, address.port, host, allowedHosts ?? [])

    const simulator = yield* DigimeSimulator.make({
      ...simulatorOptions,
      contracts: contracts ?? [],
      baseUrl: `${origin}${apiPath}`,
      onboardUrl: `${origin}${onboardPath}`
    })
    for (let i = 0; i < (dropRefreshAnswers ?? 0); i++) {
      yield* simulator.injectFault({ _tag: "DropResponse", endpoint: "token", grant: "refresh_token" })
    }
    const server: Server = {
      origin,
      baseUrl: simulator.baseUrl,
      onboardUrl: simulator.onboardUrl,
      jwksUrl: simulator.jwksUrl,
      controlUrl: `${origin}${controlPath}`,
      simulator
    }
    const name = appName ?? options.applicationId

    // Checked before routing, so a refusal tells nothing about which control endpoints exist.
    const refusal = (
      request: HttpServerRequest.HttpServerRequest
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

    const api = (request: HttpServerRequest.HttpServerRequest, url: URL) =>
      Effect.gen(function*() {
        const body = new Uint8Array(yield* request.arrayBuffer)
        const response = yield* simulator.handle({
          method: request.method,
          url: url.href,
          headers: headerRecord(request.headers),
          body: body.length === 0 ? undefined : body
        })
        if (response.dropConnection === true) {
          // Cut the connection without an answer. The platform sees the response close before it
          // ended and interrupts this fiber, as for a client that went away; handlers run
          // uninterruptibly, so the wait must be made interruptible to let that happen.
          NodeHttpServerRequest.toIncomingMessage(request).socket.destroy()
          return yield* Effect.interruptible(Effect.never)
        }
        const bytes = typeof response.body === "string" ? encoder.encode(response.body) : response.body
        if (response.dropBodyAfter !== undefined && request.method !== "HEAD") {
          // Send the head and the first bytes (announcing the whole length), then cut the connection
          // once they are flushed, as above.
          const nodeResponse = NodeHttpServerRequest.toServerResponse(request)
          const socket = NodeHttpServerRequest.toIncomingMessage(request).socket
          nodeResponse.writeHead(response.status, { ...response.headers, "content-length": String(bytes.length) })
          nodeResponse.write(bytes.subarray(0, response.dropBodyAfter), () => socket.destroy())
          return yield* Effect.interruptible(Effect.never)
        }
        const init = { status: response.status, headers: response.headers }
        return request.method === "HEAD"
          ? HttpServerResponse.empty(init)
          : HttpServerResponse.uint8Array(bytes, init)
      })

    const onboarding = (request: HttpServerRequest.HttpServerRequest, url: URL) =>
      Effect.gen(function*() {
        if (request.method === "GET") {
          const described = yield* Effect.either(simulator.describeConsent(url.href))
          return Either.isLeft(described)
            ? errorPage(described.left.reason)
            : consentPage(name, url.href, described.right)
        }
        const params = yield* request.urlParamsBody
        const onboardingUrl = Option.getOrUndefined(UrlParams.getFirst(params, "url"))
        const choice = Option.getOrUndefined(UrlParams.getFirst(params, "choice"))
        if (onboardingUrl === undefined || (choice !== "allow" && choice !== "deny")) {
          return errorPage("the form needs the onboarding URL and a choice, allow or deny")
        }
        const errorCode = Option.getOrUndefined(UrlParams.getFirst(params, "errorCode"))
        const callback = yield* Effect.either(
          simulator.consent(onboardingUrl, { allow: choice === "allow", errorCode })
        )
        return Either.isLeft(callback)
          ? errorPage(callback.left.reason)
          : HttpServerResponse.redirect(callback.right, { status: 303, headers: { "cache-control": "no-store" } })
      })

    const control = (request: HttpServerRequest.HttpServerRequest, route: string, url: URL) =>
      Effect.gen(function*() {
        const refused = refusal(request)
        if (refused !== undefined) return refused
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

    const app = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const url = new URL(request.url, origin)
      const path = url.pathname
      if (consentPages.some((name) => path === `${onboardPath}${name}`)) {
        if (request.method === "GET") return yield* onboarding(request, url)
      } else if (path === `${onboardPath}consent`) {
        if (request.method === "POST") return yield* onboarding(request, url)
      } else if (path.startsWith(controlPath)) {
        return yield* control(request, path.slice(controlPath.length), url)
      }
      return yield* api(request, url)
    }).pipe(
      Effect.catchTag("RequestError", () => Effect.succeed(controlError(400, "the request could not be read")))
    )

    yield* httpServer.serve(app)
    return server
  })

/**
 * The server as a service, and its simulator as `DigimeSimulator.DigimeSimulator`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options
): Layer.Layer<NodeDigimeSimulator | DigimeSimulator.DigimeSimulator, HttpServerError.ServeError> =>
  Layer.scopedContext(
    Effect.map(
      make(options),
      (server) =>
        Context.make(NodeDigimeSimulator, server).pipe(Context.add(DigimeSimulator.DigimeSimulator, server.simulator))
    )
  )
