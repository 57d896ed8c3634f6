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
 * The package's `digime-simulator` command (`npx digime-simulator --help`; `pnpm simulator` in
 * this repository) starts one from the command line, with `--auto-consent` and `--log`.
 *
 * With `autoConsent`, opening a consent page answers at once `302` to the callback (as Allow), for
 * headless clients. With `log`, each request is logged with the cause of each refusal, which
 * digi.me's answers do not give (a bad client assertion is only "Parameter validation errors").
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
import * as DigimeSimulator from "@digime-effect/core/testing/DigimeSimulator"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import type * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Http from "node:http"
import { isConsentPage, isConsentRequest, makeConsentPages, onboardPath } from "./internal/consentPages.js"
import { controlError, controlHosts, controlPath, makeControl } from "./internal/control.js"
import { logServed } from "./internal/requestLog.js"

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
   * Default `false`. With `true`, opening a consent page (`GET {origin}/apps/saas/authorize?code=…`
   * and the other pages) shows no page: it answers at once `302` to the application's callback, as
   * Allow would, so that a client without a browser (`fetch` with `redirect: "manual"`, a test)
   * completes the journey without reading HTML. See `DigimeSimulator.Options.autoConsent`.
   */
  readonly autoConsent?: boolean | undefined
  /**
   * Default `false`. With `true`, every request is logged at info level on the logger of the fiber
   * that built the server: the API calls as `DigimeSimulator.Options.log` says (with the cause of
   * each refusal), and the consent pages and control requests in the same format
   * (`simulator.endpoint` `consentPage` or `control`).
   */
  readonly log?: boolean | undefined
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

    const consentPages = makeConsentPages(simulator, appName ?? options.applicationId)
    const control = makeControl(server, hosts)

    const autoConsent = options.autoConsent === true
    const app = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const url = new URL(request.url, origin)
      // With autoConsent, the simulator answers the consent pages itself (a redirect, no page).
      const endpoint = autoConsent && isConsentPage(url.pathname)
        ? "api"
        : isConsentRequest(request.method, url.pathname)
        ? "consentPage"
        : url.pathname.startsWith(controlPath)
        ? "control"
        : "api"
      const answered = yield* (endpoint === "consentPage"
        ? consentPages(request, url)
        : endpoint === "control"
        ? control(request, url)
        : api(request, url)).pipe(
          Effect.map((response) => ({ response, logged: endpoint === "api" })),
          Effect.catchTag(
            "RequestError",
            () => Effect.succeed({ response: controlError(400, "the request could not be read"), logged: false })
          )
        )
      if (options.log === true && !answered.logged) {
        yield* logServed(endpoint, request.method, url, answered.response)
      }
      return answered.response
    })

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
