/**
 * Faults: the one-shot faults a test injects (`Status`, `DropResponse`, `Delay`, `TamperToken`, and
 * the download faults `CorruptEnvelope`, `TruncateEnvelope`, `WrongKeyEnvelope`, `DropBody`), each
 * taken by the first request it matches, and the periodic `failEvery` answers.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { Endpoint, Fault } from "../../DigimeSimulator.js"
import { type Refusal, refuse } from "./responses.js"
import { generateStrayEncryptKey } from "./signing.js"
import type { State } from "./state.js"

/**
 * A `Delay`'s duration: anything `Duration.decode` reads (over JSON: milliseconds or a string such as
 * "2 seconds"), except a negative number of milliseconds.
 *
 * @internal
 */
export const DelayInput: Schema.declare<Duration.DurationInput> = Schema.declare(
  (input: unknown): input is Duration.DurationInput =>
    (typeof input !== "number" || input >= 0) && Option.isSome(Duration.decodeUnknown(input)),
  { identifier: "DurationInput", description: "milliseconds, or a duration such as \"2 seconds\"" }
)

type FaultOf<T extends Fault["_tag"]> = Extract<Fault, { readonly _tag: T }>

const takeFault = <F extends Fault>(state: State, matches: (fault: Fault) => fault is F): F | undefined => {
  const index = state.faults.findIndex(matches)
  return index < 0 ? undefined : state.faults.splice(index, 1)[0] as F
}

/**
 * The fault that applies to this request as a whole: a `Status`, `Delay` or `DropResponse` of
 * its endpoint (a `DropResponse` with a `grant` waits for a successful answer of that grant instead).
 *
 * @internal
 */
export const takeRequestFault = (
  state: State,
  endpoint: Endpoint
): FaultOf<"Status" | "Delay" | "DropResponse"> | undefined =>
  takeFault(
    state,
    (fault): fault is FaultOf<"Status" | "Delay" | "DropResponse"> =>
      (fault._tag === "Status" || fault._tag === "Delay" || fault._tag === "DropResponse") &&
      fault.endpoint === endpoint && !(fault._tag === "DropResponse" && fault.grant !== undefined)
  )

type EnvelopeFaultOf = FaultOf<"CorruptEnvelope" | "TruncateEnvelope" | "WrongKeyEnvelope">

/**
 * The faults a successful download of `fileName` takes: the first pending envelope fault and the
 * first pending `DropBody` that name this file or no file.
 *
 * @internal
 */
export const takeDownloadFaults = (
  state: State,
  fileName: string
): { readonly envelope: EnvelopeFaultOf["_tag"] | undefined; readonly dropBody: FaultOf<"DropBody"> | undefined } => {
  const forFile = (fault: { readonly fileName?: string | undefined }): boolean =>
    fault.fileName === undefined || fault.fileName === fileName
  const envelope = takeFault(
    state,
    (fault): fault is EnvelopeFaultOf =>
      (fault._tag === "CorruptEnvelope" || fault._tag === "TruncateEnvelope" || fault._tag === "WrongKeyEnvelope") &&
      forFile(fault)
  )
  const dropBody = takeFault(
    state,
    (fault): fault is FaultOf<"DropBody"> => fault._tag === "DropBody" && forFile(fault)
  )
  return { envelope: envelope?._tag, dropBody }
}

/**
 * The tampering of the next answer that carries a token, if one is pending.
 *
 * @internal
 */
export const takeTamper = (state: State): FaultOf<"TamperToken">["tamper"] | undefined =>
  takeFault(state, (fault): fault is FaultOf<"TamperToken"> => fault._tag === "TamperToken")?.tamper

/**
 * Whether a `DropResponse` fault waits for this successful answer of the token endpoint (and takes it).
 *
 * @internal
 */
export const takeGrantDrop = (state: State, grant: unknown): boolean =>
  takeFault(
    state,
    (fault): fault is FaultOf<"DropResponse"> =>
      fault._tag === "DropResponse" && fault.endpoint === "token" && fault.grant !== undefined && fault.grant === grant
  ) !== undefined

/**
 * The answer of a `Status` fault, given without processing the request.
 *
 * @internal
 */
export const statusRefusal = (fault: FaultOf<"Status">): Refusal =>
  refuse(
    fault.status,
    fault.code ?? "SimulatedFault",
    fault.message ?? `Simulated ${fault.status} answer`,
    "injected Status fault"
  )

/**
 * The `failEvery` answer when this API request (counted in `state.apiRequests`) is an nth one.
 *
 * @internal
 */
export const failEveryRefusal = (state: State): Refusal | undefined => {
  const failEvery = state.config.failEvery
  if (failEvery === undefined || state.apiRequests % failEvery.nth !== 0) return undefined
  return refuse(
    failEvery.status,
    "SimulatedFault",
    `Simulated ${failEvery.status} answer`,
    `failEvery: request ${state.apiRequests}`
  )
}

/**
 * `Service.injectFault`: the fault waits for the first request it matches. A `WrongKeyEnvelope`
 * makes its stray key here, not in the download it damages: generating an RSA key takes real time
 * (up to seconds on a loaded machine), during which a test's `TestClock` may pass a request's
 * timeout, which would turn the fault into another one.
 *
 * @internal
 */
export const injectFault = (state: State, fault: Fault): Effect.Effect<void> =>
  Effect.suspend(() => {
    // In the queue at once, in the order of the calls; a download that takes it before the key is
    // ready waits for the key.
    state.faults.push(fault)
    if (fault._tag !== "WrongKeyEnvelope") return Effect.void
    const stray = strayEncryptKey(state)
    return Effect.promise(() => stray).pipe(Effect.asVoid)
  })

/**
 * The key a `WrongKeyEnvelope` seals to, made once per simulator (made again if making it failed).
 *
 * @internal
 */
export const strayEncryptKey = (state: State): Promise<CryptoKey> =>
  state.strayEncryptKey ??= generateStrayEncryptKey().catch((error: unknown) => {
    state.strayEncryptKey = undefined
    throw error
  })
