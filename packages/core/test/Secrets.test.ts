import {
  AutoRefresh,
  DigimeClient,
  DigimeError,
  TokenManager,
  TokenProtocol,
  type UserAccessToken
} from "@digime-effect/core"
import { DigimeSimulator } from "@digime-effect/core/testing"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, HashMap, Inspectable, Logger, LogLevel, Redacted, TestClock, Tracer } from "effect"
import { inspect } from "node:util"
import { callbackUrl, joinAdvancing, key, stack, stored, testContract } from "./fixtures.js"

/** Every form a custom tracer or error serializer may give a value: JSON, `util.inspect`, `String`. */
const serialized = (value: unknown): Array<string> => {
  const json = (() => {
    try {
      return JSON.stringify(value, (_key, v) => typeof v === "bigint" ? v.toString() : v)
    } catch {
      return ""
    }
  })()
  return [json ?? "", inspect(value, { depth: null, showHidden: true, getters: true }), String(value)]
}

/**
 * A tracer that keeps everything it is given: the name, parent, links, attributes and events of
 * every span, and the exit it ends with (the platform's HTTP span used to end with an error whose
 * request held the client assertion), each serialized every way.
 */
const recordingTracer = (texts: Array<string>, statuses: Array<string>): Tracer.Tracer =>
  Tracer.make({
    span: (name, parent, context, links, _startTime, kind) => {
      const attributes = new Map<string, unknown>()
      const keep = (values: ReadonlyArray<string>) => {
        for (const value of values) texts.push(value)
      }
      texts.push(name)
      keep(serialized(links))
      const span: Tracer.Span = {
        _tag: "Span",
        name,
        spanId: Math.random().toString(16).slice(2),
        traceId: "trace",
        parent,
        context,
        status: { _tag: "Started", startTime: 0n },
        attributes,
        links,
        sampled: true,
        kind,
        end: (_endTime, exit) => {
          keep(serialized(exit))
          if (Exit.isFailure(exit)) {
            // What an OpenTelemetry exporter makes the span's status message of.
            statuses.push(Cause.pretty(exit.cause))
            keep(serialized(Cause.squash(exit.cause)))
          }
        },
        attribute: (key, value) => {
          attributes.set(key, value)
          statuses.push(`${key}=${Inspectable.toStringUnknown(value)}`)
          texts.push(`${key}=${Inspectable.toStringUnknown(value)}`)
          keep(serialized(value))
        },
        event: (eventName, _time, eventAttributes) => {
          texts.push(`${eventName} ${Inspectable.toStringUnknown(eventAttributes ?? {})}`)
          keep(serialized(eventAttributes))
        },
        addLinks: () => {}
      }
      return span
    },
    context: (f) => f()
  })

/**
 * Drives the token through every kind of failure while recording each log line and each error,
 * then checks that none of the secrets it handled (access and refresh tokens, codes, verifiers,
 * private key) shows up in any of them.
 */
describe("secrets", () => {
  it.effect("no token, code, verifier or key appears in errors, logs or spans", () => {
    const lines: Array<string> = []
    const spans: Array<string> = []
    const statuses: Array<string> = []
    const recorder = Logger.make(({ annotations, message }) => {
      lines.push(Inspectable.toStringUnknown(message))
      HashMap.forEach(annotations, (value, name) => lines.push(`${name}=${Inspectable.toStringUnknown(value)}`))
    })
    return Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const manager = yield* TokenManager.TokenManager
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const secrets: Array<string> = []
      const errors: Array<unknown> = []
      const keep = (token: UserAccessToken.UserAccessToken) => {
        secrets.push(Redacted.value(token.accessToken.value), Redacted.value(token.refreshToken.value))
      }
      const attempt = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        Effect.exit(effect).pipe(Effect.tap((exit) => {
          if (Exit.isFailure(exit)) {
            for (const failure of Cause.failures(exit.cause)) errors.push(failure)
            errors.push(Cause.pretty(exit.cause))
          }
        }))

      const start = yield* client.getAuthorizeUrl({ contractId: key.contractId, callbackUrl })
      secrets.push(Redacted.value(start.codeVerifier))
      const callback = yield* simulator.consent(start.url)
      const result = yield* TokenProtocol.parseCallback(callback, start.state)
      secrets.push(Redacted.value(result.code))
      yield* attempt(TokenProtocol.parseCallback(callback, "wrong-state"))
      keep(yield* manager.exchangeCodeForToken({ key, code: result.code, codeVerifier: start.codeVerifier }))
      // The code is single-use: a second exchange fails.
      yield* attempt(manager.exchangeCodeForToken({ key, code: result.code, codeVerifier: start.codeVerifier }))

      yield* simulator.injectFault({ _tag: "Status", endpoint: "token", status: 429 })
      yield* TestClock.adjust("1 hour")
      yield* attempt(AutoRefresh.withAutoRefresh(key, client.readAccounts))
      yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
      keep((yield* stored()).token)
      const rejected = new DigimeError.AccessTokenRejected({
        operation: "custom",
        contractId: key.contractId,
        status: 401,
        code: "InvalidToken"
      })
      yield* attempt(AutoRefresh.withAutoRefresh(key, () => Effect.fail(rejected)))
      keep((yield* stored()).token)
      // A data call whose connection drops: the platform's error holds the request and its headers.
      // A GET is tried three times, over about 1.5 s.
      for (let i = 0; i < 3; i++) yield* simulator.injectFault({ _tag: "DropResponse", endpoint: "accounts" })
      yield* joinAdvancing(
        yield* Effect.fork(attempt(AutoRefresh.withAutoRefresh(key, client.readAccounts))),
        "10 seconds"
      )
      // A refresh whose answer fails verification: digi.me rotated, the client refuses the token.
      yield* simulator.injectFault({ _tag: "TamperToken", tamper: "BadSignature" })
      yield* TestClock.adjust("1 hour")
      yield* attempt(AutoRefresh.withAutoRefresh(key, client.readAccounts))
      yield* simulator.injectFault({ _tag: "DropResponse", endpoint: "token" })
      yield* TestClock.adjust("1 hour")
      yield* attempt(AutoRefresh.withAutoRefresh(key, client.readAccounts))
      yield* attempt(AutoRefresh.withAutoRefresh(key, client.readAccounts)) // a replay: the family is revoked
      const accessToken = (yield* stored()).token.accessToken.value
      yield* attempt(client.readAccounts({ contractId: key.contractId, accessToken }))
      yield* TestClock.adjust("31 days")
      yield* attempt(AutoRefresh.withAutoRefresh(key, client.readAccounts))
      yield* attempt(manager.getReauthorizeUrl({ key, callbackUrl }))

      assert.isAtLeast(errors.length, 10)
      assert.isAtLeast(secrets.length, 8)
      const texts = errors.flatMap((error) =>
        typeof error === "string" ? [error] : [String(error), JSON.stringify(error), (error as Error).message ?? ""]
      )
      // A line of the private key's PEM body.
      secrets.push(Redacted.value(testContract.contract.privateKey).split("\n")[1]!)
      // Debug lines were recorded, with their annotations.
      assert.isTrue(lines.some((line) => line.includes("Refreshing the token")))
      assert.isTrue(lines.some((line) => line.startsWith("digime.key=")))
      // The spans were recorded: ours, the exchanges with digi.me among them (with the failures of
      // dropped answers), and not the platform's, whose attributes and errors held the headers.
      assert.isTrue(spans.includes("AutoRefresh.refresh"))
      assert.isTrue(spans.includes("DigimeClient.send"))
      assert.isTrue(statuses.some((text) => text.includes("RequestError") && text.includes("(Transport)")))
      assert.isFalse(spans.some((text) => text.startsWith("http.request.header.")))
      assert.isFalse(spans.some((text) => text.startsWith("http.client")))
      // Client assertions are secrets too: never in a span, a log or an error.
      for (const text of [...spans, ...lines, ...texts]) assert.notInclude(text, "Bearer ey")
      // The user id is in no message, log or span: `digime.key` is its keyed tag.
      const tags = lines.filter((line) => line.startsWith("digime.key="))
      for (const tag of tags) assert.match(tag, /^digime\.key=[0-9a-f]{16}$/)
      const messages = errors.map((error) => typeof error === "string" ? error : (error as Error).message ?? "")
      for (const text of [...messages, ...lines, ...statuses]) assert.notInclude(text, key.userId)
      for (const secret of secrets) {
        for (const text of [...texts, ...lines, ...spans, ...statuses]) assert.notInclude(text, secret)
      }
    }).pipe(
      Effect.provide(stack()),
      Effect.provide(Logger.replace(Logger.defaultLogger, recorder)),
      Logger.withMinimumLogLevel(LogLevel.All),
      Effect.withTracer(recordingTracer(spans, statuses))
    )
  })
})
