/**
 * The library's spans, made only when something receives them. With Effect's own tracer (no
 * tracer installed: no `@effect/opentelemetry`, no DevTools), a span goes nowhere and costs about
 * 16 µs to make and end; a data call makes two. With any other tracer, every span is made, without
 * a captured stack trace (it would point into the library, never at the caller's code).
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type * as Tracer from "effect/Tracer"

// What `Effect.tracer` gives a program that installed none.
const defaultTracer: Tracer.Tracer = Effect.runSync(Effect.tracer)

/**
 * A span's options, or a function that makes them: a function costs nothing when no span is made,
 * where an object (its attributes often built from the call's input) is made on every call.
 */
type Options = Tracer.SpanOptions | (() => Tracer.SpanOptions)

const spanOptions = (options: Options): Tracer.SpanOptions => ({
  ...(typeof options === "function" ? options() : options),
  captureStackTrace: false
})

/** @internal */
export const withSpan =
  (name: string, options: Options = {}) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.tracerWith((tracer) => tracer === defaultTracer ? self : Effect.withSpan(self, name, spanOptions(options)))

/**
 * Like `withSpan`, with the span given to `f`'s effect for annotations (`undefined` when no span
 * is made).
 *
 * @internal
 */
export const useSpan = <A, E, R>(
  name: string,
  options: Options,
  f: (span: Tracer.Span | undefined) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.tracerWith((tracer) => tracer === defaultTracer ? f(undefined) : Effect.useSpan(name, spanOptions(options), f))

/** `withSpan` for a stream: the span lasts while the stream runs. */
/** @internal */
export const withStreamSpan =
  (name: string, options: Options = {}) => <A, E, R>(self: Stream.Stream<A, E, R>): Stream.Stream<A, E, R> =>
    Stream.unwrap(
      Effect.tracerWith((tracer) =>
        Effect.succeed(tracer === defaultTracer ? self : Stream.withSpan(self, name, spanOptions(options)))
      )
    )

/**
 * `Effect.annotateCurrentSpan`, skipped when no span is made: without a span it would look for
 * one, and build (and discard) a `NoSuchElementException`, stack trace included.
 *
 * @internal
 */
export const annotate = (key: string, value: unknown): Effect.Effect<void> =>
  Effect.tracerWith((tracer) => tracer === defaultTracer ? Effect.void : Effect.annotateCurrentSpan(key, value))
