/**
 * The library's spans are made only when a tracer other than Effect's own is installed: with none,
 * nothing would receive them, and each costs about 16 µs. With one, they are made, without a
 * captured stack trace (which would point into the library).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Stream } from "effect"
import * as Tracing from "../src/internal/tracing.js"
import { recordingTracer } from "./fixtures.js"

const spanName = Effect.map(Effect.option(Effect.currentSpan), Option.map((span) => span.name))

describe("Tracing", () => {
  it.effect("with no tracer installed, withSpan and useSpan make no span", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* spanName.pipe(Tracing.withSpan("Library.call")), Option.none())
      const given = yield* Tracing.useSpan("Library.send", {}, (span) => Effect.succeed(span))
      assert.isUndefined(given)
      // No span to annotate, and none looked for: the application's span is left alone.
      const annotated = yield* Effect.withSpan(
        Effect.zipRight(Tracing.annotate("digime.outcome", "refreshed"), Effect.currentSpan),
        "app"
      )
      assert.isFalse(annotated.attributes.has("digime.outcome"))
      // Inside a span of the application's: that one stays the current span.
      assert.deepStrictEqual(
        yield* spanName.pipe(Tracing.withSpan("Library.call"), Effect.withSpan("app")),
        Option.some("app")
      )
    }))

  it.effect("with a tracer installed, the spans are made, with their attributes and no stack trace", () => {
    const names: Array<string> = []
    const attributes: Array<string> = []
    return Effect.gen(function*() {
      assert.deepStrictEqual(
        yield* spanName.pipe(Tracing.withSpan("Library.call", { attributes: { "digime.contract_id": "c" } })),
        Option.some("Library.call")
      )
      yield* Tracing.annotate("digime.outcome", "refreshed").pipe(Tracing.withSpan("Library.refresh"))
      const status = yield* Tracing.useSpan("Library.send", {}, (span) => {
        span?.attribute("http.response.status_code", 200)
        return Effect.succeed(span?.name)
      })
      assert.strictEqual(status, "Library.send")
      const streamed = yield* Stream.runCollect(
        Stream.fromEffect(spanName).pipe(Tracing.withStreamSpan("Library.stream"))
      )
      assert.deepStrictEqual([...streamed], [Option.some("Library.stream")])
      // A span that fails would carry `code.stacktrace` had its stack been captured.
      yield* Effect.flip(Effect.fail("refused").pipe(Tracing.withSpan("Library.failed")))
      assert.deepStrictEqual(names, [
        "Library.call",
        "Library.refresh",
        "Library.send",
        "Library.stream",
        "Library.failed"
      ])
      assert.includeMembers(attributes, ["digime.contract_id", "digime.outcome", "http.response.status_code"])
      assert.notInclude(attributes, "code.stacktrace")
    }).pipe(Effect.withTracer(recordingTracer(names, attributes)))
  })

  it.effect("options given as a function are made only when a span is, and then apply", () => {
    let made = 0
    const options = () => {
      made++
      return { attributes: { "digime.operation": "readAccounts" } }
    }
    // Each span's value of the attribute, or none when no span is made.
    const operation = Effect.map(
      Effect.option(Effect.currentSpan),
      Option.map((span) => span.attributes.get("digime.operation"))
    )
    const names: Array<string> = []
    const attributes: Array<string> = []
    const calls = Effect.all([
      operation.pipe(Tracing.withSpan("Library.call", options)),
      Tracing.useSpan("Library.send", options, (span) =>
        Effect.succeed(
          span === undefined ? Option.none() : Option.some(span.attributes.get("digime.operation"))
        )),
      Stream.runHead(Stream.fromEffect(operation).pipe(Tracing.withStreamSpan("Library.stream", options))).pipe(
        Effect.map(Option.flatten)
      )
    ])
    return Effect.gen(function*() {
      assert.deepStrictEqual(yield* calls, [Option.none(), Option.none(), Option.none()])
      assert.strictEqual(made, 0)
      const traced = yield* Effect.withTracer(calls, recordingTracer(names, attributes))
      assert.strictEqual(made, 3)
      assert.deepStrictEqual(names, ["Library.call", "Library.send", "Library.stream"])
      assert.deepStrictEqual(traced, [
        Option.some("readAccounts"),
        Option.some("readAccounts"),
        Option.some("readAccounts")
      ])
    })
  })
})
