/**
 * `FileCipher`'s platform-agnostic implementation on Web Crypto: RSA-OAEP (SHA-1) unwrap of the
 * data key, AES-CBC decrypted chunk by chunk (Web Crypto checks the padding on every call, so a
 * chunk that is not the last one gets one extra block that decrypts to a full padding block), and
 * decompression through the platform's `DecompressionStream` (gzip; brotli only where the
 * platform has it).
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { Contract } from "../Contract.js"
import type { FileDecryptionError, InvalidContractKey } from "../DigimeError.js"
import type { Decipher, Decompress, Implementation, PreparedKey } from "../FileCipher.js"
import { importWebKey } from "./contractKey.js"
import * as Envelope from "./envelope.js"
import { fileError } from "./envelope.js"

const keyUnwrapFailed = "the contract's private key does not unwrap the file's data key " +
  "(a file for another contract, or a corrupted key slot)"

const wrongDataKeyLength = (length: number): string => `the unwrapped data key is ${length} bytes, not 32`

const wrongKeySize = (bits: number): string =>
  `the contract's key is ${bits} bits, and the ${Envelope.keySlotLength}-byte key slot is unwrapped by 2048-bit keys only`

const invalidPadding = "the padding of the last block is wrong (a truncated or corrupted file)"

const webDecipher = (fileName: string, key: CryptoKey, iv: Uint8Array<ArrayBuffer>): Decipher => {
  let previous = iv
  const noBytes = new Uint8Array(0)
  return {
    // Web Crypto checks the padding on every call: after the blocks comes one more, the encryption
    // of an empty content chained on their last block, which decrypts to a full padding block.
    update: (blocks) =>
      Effect.tryPromise({
        try: async () => {
          const length = blocks.reduce((n, b) => n + b.length, 0)
          const input = new Uint8Array(length + Envelope.blockLength)
          let offset = 0
          for (const b of blocks) {
            input.set(b, offset)
            offset += b.length
          }
          const last = input.slice(length - Envelope.blockLength, length)
          const padding = await globalThis.crypto.subtle.encrypt({ name: "AES-CBC", iv: last }, key, noBytes)
          input.set(new Uint8Array(padding, 0, Envelope.blockLength), length)
          const plain = await globalThis.crypto.subtle.decrypt({ name: "AES-CBC", iv: previous }, key, input)
          previous = last
          return [new Uint8Array(plain)]
        },
        catch: () => fileError(fileName, "InvalidPadding", invalidPadding)
      }),
    final: (block) =>
      Effect.tryPromise({
        try: async () =>
          new Uint8Array(await globalThis.crypto.subtle.decrypt({ name: "AES-CBC", iv: previous }, key, block)),
        catch: () => fileError(fileName, "InvalidPadding", invalidPadding)
      })
  }
}

const webPrepareKey = (contract: Contract): Effect.Effect<PreparedKey, InvalidContractKey> =>
  Effect.gen(function*() {
    const privateKey = yield* importWebKey(contract, { name: "RSA-OAEP", hash: "SHA-1" }, ["decrypt"])
    const bits = (privateKey.algorithm as RsaHashedKeyAlgorithm).modulusLength
    return {
      open: (fileName, keySlot, iv) =>
        Effect.gen(function*() {
          if (bits !== 2048) return yield* Effect.fail(fileError(fileName, "KeyUnwrap", wrongKeySize(bits)))
          const dataKey = yield* Effect.tryPromise({
            try: () => globalThis.crypto.subtle.decrypt({ name: "RSA-OAEP" }, privateKey, keySlot),
            catch: () => fileError(fileName, "KeyUnwrap", keyUnwrapFailed)
          })
          if (dataKey.byteLength !== 32) {
            return yield* Effect.fail(fileError(fileName, "KeyUnwrap", wrongDataKeyLength(dataKey.byteLength)))
          }
          const key = yield* Effect.tryPromise({
            try: () =>
              globalThis.crypto.subtle.importKey("raw", dataKey, { name: "AES-CBC" }, false, ["encrypt", "decrypt"]),
            catch: () => fileError(fileName, "KeyUnwrap", keyUnwrapFailed)
          }).pipe(Effect.ensuring(Effect.sync(() => new Uint8Array(dataKey).fill(0))))
          return webDecipher(fileName, key, iv)
        })
    }
  })

const decompressionFailed = (fileName: string, format: string) =>
  fileError(fileName, "Decompression", `the decrypted content is not valid ${format} data`)

const webDecompress = (format: "gzip" | "brotli", fileName: string): Decompress =>
<E, R>(
  plain: Stream.Stream<Uint8Array, E, R>
): Stream.Stream<Uint8Array, E | FileDecryptionError, R> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const transform = new DecompressionStream(format as CompressionFormat)
    const writer = transform.writable.getWriter()
    const reader = transform.readable.getReader()
    yield* Effect.addFinalizer(() =>
      Effect.promise(() => Promise.allSettled([reader.cancel(), writer.abort()]).then(() => undefined))
    )
    // Writing runs beside reading, one chunk at a time, each write awaited: a full transform holds
    // the writer back until the reader takes its output. How the writing ended is kept, so that a
    // failure of the content stream surfaces as itself, not as the decompressor it aborts.
    const written = yield* Deferred.make<void, E | FileDecryptionError>()
    yield* plain.pipe(
      Stream.runForEach((bytes) =>
        Effect.tryPromise({
          try: () =>
            writer.write(bytes.buffer instanceof ArrayBuffer ? bytes as Uint8Array<ArrayBuffer> : bytes.slice()),
          catch: () => decompressionFailed(fileName, format)
        })
      ),
      Effect.zipRight(
        Effect.tryPromise({ try: () => writer.close(), catch: () => decompressionFailed(fileName, format) })
      ),
      // On a failure (or the consumer stopping), the transform is aborted without waiting: a write
      // still pending waits for the reader, so awaiting the abort before the reader is cancelled
      // (by the finalizer, after this fiber ends) would never end.
      Effect.onExit((exit) =>
        Effect.zipRight(
          Deferred.done(written, exit),
          Effect.sync(() => {
            if (exit._tag === "Failure") writer.abort().catch(() => undefined)
          })
        )
      ),
      Effect.forkScoped
    )
    const whyFailed = Effect.flatMap(
      Deferred.poll(written),
      Option.match({
        onNone: () => Effect.fail(decompressionFailed(fileName, format)),
        onSome: (outcome) => Effect.zipRight(outcome, Effect.fail(decompressionFailed(fileName, format)))
      })
    )
    return Stream.repeatEffectOption(
      Effect.tryPromise({ try: () => reader.read(), catch: () => undefined }).pipe(
        Effect.matchEffect({
          onFailure: () => Effect.mapError(whyFailed, Option.some),
          onSuccess: (result) =>
            result.done
              ? Effect.zipRight(Effect.mapError(Deferred.await(written), Option.some), Effect.fail(Option.none()))
              : Effect.succeed(result.value)
        })
      )
    )
  }))

const platformDecompresses = (format: string): boolean => {
  try {
    new DecompressionStream(format as CompressionFormat)
    return true
  } catch {
    return false
  }
}

const supported = new Map<string, boolean>()

/** @internal */
export const webImplementation: Implementation = {
  prepareKey: webPrepareKey,
  decompressor: (compression, fileName) => {
    let available = supported.get(compression)
    if (available === undefined) {
      available = typeof DecompressionStream === "function" && platformDecompresses(compression)
      supported.set(compression, available)
    }
    return available
      ? Either.right(webDecompress(compression, fileName))
      : Either.left(
        fileError(
          fileName,
          "UnsupportedCompression",
          `this platform's DecompressionStream has no ${compression}: ` +
            "decrypt with NodeFileCipher from @digime-effect/node"
        )
      )
  }
}
