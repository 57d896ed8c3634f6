/**
 * The framing of a digi.me file (data protocol §4.3), without any cryptography: bytes [0, 256) are
 * the wrapped data key, [256, 272) the IV, the rest AES-256-CBC ciphertext in 16-byte blocks.
 *
 * The reader takes the body in chunks of any size (single bytes included) and hands out the header
 * once, then the ciphertext in whole blocks, always holding back the last block seen: only at the
 * end of the body is it known to be the final block, the one whose padding is checked. It keeps at
 * most 272 bytes of its own; ciphertext it hands out is a view of the caller's chunk.
 */
import * as Either from "effect/Either"
import { FileDecryptionError } from "../DigimeError.js"

/** @internal */
export const keySlotLength = 256

/** @internal */
export const ivLength = 16

/** @internal */
export const blockLength = 16

/** @internal */
export const headerLength = keySlotLength + ivLength

/** The smallest envelope: the header and one block (an empty content, padded). @internal */
export const minimumLength = headerLength + blockLength

/** @internal */
export type Part =
  | {
    readonly _tag: "Header"
    readonly keySlot: Uint8Array<ArrayBuffer>
    readonly iv: Uint8Array<ArrayBuffer>
  }
  | {
    /** Whole blocks of ciphertext, in order, never the final block. */
    readonly _tag: "Blocks"
    readonly bytes: Uint8Array
  }

/** @internal */
export interface Reader {
  /**
   * The parts that `chunk` completes, in order; or, when a length was declared and the body has
   * gone past it, why the size is wrong.
   */
  readonly write: (chunk: Uint8Array) => Either.Either<ReadonlyArray<Part>, string>
  /** At the end of the body: its final block, or why its size cannot be an envelope's. */
  readonly end: () => Either.Either<Uint8Array<ArrayBuffer>, string>
}

/**
 * Why `length` bytes cannot be an envelope, or `undefined` when they can.
 *
 * @internal
 */
export const sizeProblem = (length: number): string | undefined =>
  length >= minimumLength && length % blockLength === 0
    ? undefined
    : `the body is ${length} bytes, and an envelope is at least ${minimumLength} bytes and a multiple of ${blockLength}`

/**
 * A reader for one body. With `declaredLength` (a `Content-Length`, say), a length that cannot be
 * an envelope fails at once, and a body that goes past it fails as soon as it does.
 *
 * @internal
 */
export const make = (declaredLength?: number | undefined): Either.Either<Reader, string> => {
  if (declaredLength !== undefined) {
    if (!Number.isSafeInteger(declaredLength) || declaredLength < 0) {
      return Either.left(`the declared length ${declaredLength} is not a byte count`)
    }
    const problem = sizeProblem(declaredLength)
    if (problem !== undefined) return Either.left(problem)
  }
  const header = new Uint8Array(headerLength)
  let headerFilled = 0
  // Ciphertext received and not handed out: the last whole block, and the bytes of an
  // incomplete block after it (fewer than 32 bytes in all).
  let held = new Uint8Array(0)
  let total = 0

  const write = (chunk: Uint8Array): Either.Either<ReadonlyArray<Part>, string> => {
    total += chunk.length
    if (declaredLength !== undefined && total > declaredLength) {
      return Either.left(`the body is longer than its declared ${declaredLength} bytes`)
    }
    const parts: Array<Part> = []
    let rest = chunk
    if (headerFilled < headerLength) {
      const taken = Math.min(headerLength - headerFilled, rest.length)
      header.set(rest.subarray(0, taken), headerFilled)
      headerFilled += taken
      rest = rest.subarray(taken)
      if (headerFilled < headerLength) return Either.right(parts)
      parts.push({ _tag: "Header", keySlot: header.slice(0, keySlotLength), iv: header.slice(keySlotLength) })
    }
    if (rest.length === 0) return Either.right(parts)
    const pending = held.length + rest.length
    // Hand out every whole block but the last one.
    const handedOut = Math.max(0, (Math.floor(pending / blockLength) - 1) * blockLength)
    if (handedOut === 0) {
      const next = new Uint8Array(pending)
      next.set(held)
      next.set(rest, held.length)
      held = next
      return Either.right(parts)
    }
    if (handedOut <= held.length) {
      // Only when `held` was a block and an incomplete one, and `rest` completes the latter.
      parts.push({ _tag: "Blocks", bytes: held.slice(0, handedOut) })
      const next = new Uint8Array(pending - handedOut)
      next.set(held.subarray(handedOut))
      next.set(rest, held.length - handedOut)
      held = next
      return Either.right(parts)
    }
    let from = 0
    if (held.length > 0) {
      // The held bytes, completed to a block boundary from `rest`: a small copy, so that the
      // remainder of `rest` can be handed out as a view.
      const aligned = Math.ceil(held.length / blockLength) * blockLength
      from = aligned - held.length
      const head = new Uint8Array(aligned)
      head.set(held)
      head.set(rest.subarray(0, from), held.length)
      parts.push({ _tag: "Blocks", bytes: head })
    }
    const to = handedOut - held.length
    if (to > from) parts.push({ _tag: "Blocks", bytes: rest.subarray(from, to) })
    // A copy: a view would keep the caller's whole chunk alive.
    held = rest.slice(to)
    return Either.right(parts)
  }

  const end = (): Either.Either<Uint8Array<ArrayBuffer>, string> => {
    if (declaredLength !== undefined && total !== declaredLength) {
      return Either.left(`the body ended after ${total} of its declared ${declaredLength} bytes`)
    }
    const problem = sizeProblem(total)
    if (problem !== undefined) return Either.left(problem)
    return Either.right(held)
  }

  return Either.right({ write, end })
}

/** A `FileDecryptionError` of the file. */
/** @internal */
export const fileError = (
  fileName: string,
  reason: FileDecryptionError["reason"],
  description: string
): FileDecryptionError => new FileDecryptionError({ fileName, reason, description })
