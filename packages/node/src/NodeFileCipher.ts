/**
 * The `FileCipher` on `node:crypto` and `node:zlib`: each contract's key is parsed once into a
 * `KeyObject`; each file costs one RSA-OAEP unwrap (SHA-1) and an AES-256-CBC decipher fed chunk by
 * chunk, then gunzip or brotli decompression, all streaming with bounded memory: the decompressor
 * is fed only as fast as its output is pulled.
 *
 * @since 0.2.0
 */
import type { Contract } from "@digime-effect/core/Contract"
import type { InvalidContractKey } from "@digime-effect/core/DigimeError"
import { FileDecryptionError } from "@digime-effect/core/DigimeError"
import * as FileCipher from "@digime-effect/core/FileCipher"
import * as Channel from "effect/Channel"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as NodeBuffer from "node:buffer"
import * as Crypto from "node:crypto"
import * as Zlib from "node:zlib"
import { rsaPrivateKey } from "./internal/contractKey.js"

const keySlotLength = 256

const fileError = (fileName: string, reason: FileDecryptionError["reason"], description: string) =>
  new FileDecryptionError({ fileName, reason, description })

const invalidPadding = "the padding of the last block is wrong (a truncated or corrupted file)"

// The padding is checked here, on the final block alone, rather than by OpenSSL, which would hold
// back the last two blocks: the content comes out block for block as with the Web Crypto cipher,
// so that both report the same error for the same damaged file.
const unpad = (block: Buffer): Buffer | undefined => {
  const padding = block[block.length - 1]!
  let bad = padding === 0 || padding > 16 ? 1 : 0
  for (let i = 1; i <= 16; i++) bad |= i <= padding && block[block.length - i] !== padding ? 1 : 0
  return bad === 0 ? block.subarray(0, block.length - padding) : undefined
}

const decipherOf = (fileName: string, decipher: Crypto.Decipher): FileCipher.Decipher => {
  const updateSync = (blocks: ReadonlyArray<Uint8Array>): ReadonlyArray<Uint8Array> =>
    blocks.length === 1 ? [decipher.update(blocks[0]!)] : blocks.map((block) => decipher.update(block))
  return {
    update: (blocks) => Effect.sync(() => updateSync(blocks)),
    updateSync,
    final: (block) =>
      Effect.suspend(() => {
        const plain = unpad(decipher.update(block))
        decipher.final()
        return plain === undefined
          ? Effect.fail(fileError(fileName, "InvalidPadding", invalidPadding))
          : Effect.succeed(plain)
      })
  }
}

const prepareKey = (contract: Contract): Effect.Effect<FileCipher.PreparedKey, InvalidContractKey> =>
  Effect.gen(function*() {
    const { bits, key } = yield* rsaPrivateKey(contract)
    const oaep: Crypto.RsaPrivateKey = { key, padding: Crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1" }
    return {
      open: (fileName, keySlot, iv) =>
        Effect.suspend(() => {
          const unwrapFailed = (description: string) => Effect.fail(fileError(fileName, "KeyUnwrap", description))
          if (bits !== 2048) {
            return unwrapFailed(
              `the contract's key is ${bits} bits, and the ${keySlotLength}-byte key slot is unwrapped by ` +
                "2048-bit keys only"
            )
          }
          let dataKey: Buffer
          try {
            dataKey = Crypto.privateDecrypt(oaep, keySlot)
          } catch {
            return unwrapFailed(
              "the contract's private key does not unwrap the file's data key " +
                "(a file for another contract, or a corrupted key slot)"
            )
          }
          if (dataKey.length !== 32) return unwrapFailed(`the unwrapped data key is ${dataKey.length} bytes, not 32`)
          const decipher = Crypto.createDecipheriv("aes-256-cbc", dataKey, iv).setAutoPadding(false)
          dataKey.fill(0)
          return Effect.succeed(decipherOf(fileName, decipher))
        })
    }
  })

// zlib's output buffers, and how much output may wait to be read: a few threadpool round trips
// per megabyte rather than one per 16 KiB (the defaults), still a bounded amount of memory.
const zlibOptions = { chunkSize: 64 * 1024, readableHighWaterMark: 256 * 1024 }

/**
 * A `zlib` stream driven by pulls: each input chunk is written, then its output read as it comes
 * and handed on only when the consumer asks for more; the next chunk is written once `zlib` has
 * taken the previous one. `zlib` itself stops producing while its output is not read, so at most
 * its buffers and one input chunk are in memory, whatever the compression ratio.
 */
class Inflater {
  error: unknown = undefined
  ended = false
  finishing = false
  pendingWrites = 0
  private wake: (() => void) | undefined = undefined

  constructor(readonly zlib: Zlib.Gunzip | Zlib.BrotliDecompress) {
    // Output wakes the reader only once zlib has stopped for it (its buffer is full) or at the
    // end; otherwise the reader waits for zlib to have taken its input.
    zlib.on("readable", () => {
      if (this.finishing || zlib.readableLength >= zlib.readableHighWaterMark) this.signal()
    })
    zlib.on("end", () => {
      this.ended = true
      this.signal()
    })
    zlib.on("error", (error) => {
      this.error = error
      this.signal()
    })
  }

  private readonly signal = (): void => {
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }

  private readonly written = (error?: Error | null): void => {
    if (error !== undefined && error !== null && this.error === undefined) this.error = error
    this.pendingWrites--
    this.signal()
  }

  write(chunk: Chunk.Chunk<Uint8Array>): void {
    for (const bytes of chunk) {
      if (bytes.length === 0) continue
      this.pendingWrites++
      this.zlib.write(bytes, this.written)
    }
  }

  end(): void {
    this.finishing = true
    this.zlib.end()
  }

  /** Everything `zlib` has output so far. */
  take(): Array<Uint8Array> {
    const out: Array<Uint8Array> = []
    for (let bytes = this.zlib.read() as Buffer | null; bytes !== null; bytes = this.zlib.read() as Buffer | null) {
      out.push(bytes)
    }
    return out
  }

  /** Whether the reader has something to do: an error, `done`, or output zlib is waiting on. */
  ready(done: () => boolean): boolean {
    const buffered = this.zlib.readableLength
    return this.error !== undefined || done() ||
      buffered >= this.zlib.readableHighWaterMark || (this.finishing && buffered > 0)
  }

  /** Waits until `ready`. */
  wait(done: () => boolean): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      if (this.ready(done)) return resume(Effect.void)
      this.wake = () => resume(Effect.void)
      return Effect.sync(() => {
        this.wake = undefined
      })
    })
  }
}

const zlibDecompress = (
  format: "gzip" | "brotli",
  fileName: string
): FileCipher.Decompress =>
<E, R>(plain: Stream.Stream<Uint8Array, E, R>): Stream.Stream<Uint8Array, E | FileDecryptionError, R> => {
  const failed = () => fileError(fileName, "Decompression", `the decrypted content is not valid ${format} data`)
  const channel = Channel.unwrapScoped(Effect.map(
    Effect.acquireRelease(
      Effect.sync(() =>
        new Inflater(format === "gzip" ? Zlib.createGunzip(zlibOptions) : Zlib.createBrotliDecompress(zlibOptions))
      ),
      (inflater) => Effect.sync(() => inflater.zlib.destroy())
    ),
    (inflater) => {
      // Hands out the output until `done`; fails as soon as zlib reports an error.
      const drain = (
        done: () => boolean
      ): Channel.Channel<Chunk.Chunk<Uint8Array>, unknown, FileDecryptionError, unknown, void, unknown> =>
        Channel.suspend(() => {
          if (inflater.error !== undefined) return Channel.fail(failed())
          const out = inflater.take()
          if (out.length > 0) return Channel.zipRight(Channel.write(Chunk.unsafeFromArray(out)), drain(done))
          if (done()) return Channel.void
          return Channel.zipRight(Channel.fromEffect(inflater.wait(done)), drain(done))
        })
      const written = () => inflater.pendingWrites === 0
      const ended = () => inflater.ended
      const loop: Channel.Channel<
        Chunk.Chunk<Uint8Array>,
        Chunk.Chunk<Uint8Array>,
        E | FileDecryptionError,
        E,
        void,
        unknown
      > = Channel.readWithCause({
        onInput: (chunk: Chunk.Chunk<Uint8Array>) => {
          inflater.write(chunk)
          return Channel.zipRight(drain(written), loop)
        },
        onFailure: Channel.failCause,
        onDone: () => {
          inflater.end()
          return drain(ended)
        }
      })
      return loop
    }
  ))
  return Stream.pipeThroughChannel(plain, channel)
}

// A whole content in one go, on the threadpool: zlib stops as soon as the output would pass
// `maxBytes` (its `maxOutputLength`), so a small body that inflates without end costs no more.
const zlibDecompressBytes =
  (format: "gzip" | "brotli", fileName: string): FileCipher.DecompressBytes => (content, maxBytes) =>
    Effect.async<Uint8Array, FileDecryptionError | FileCipher.ContentTooLarge>((resume) => {
      const options = {
        chunkSize: zlibOptions.chunkSize,
        maxOutputLength: Math.min(Math.max(1, Math.floor(maxBytes)), NodeBuffer.constants.MAX_LENGTH)
      }
      const done = (error: Error | null, output: Buffer) => {
        if (error === null && output.length <= maxBytes) return resume(Effect.succeed(output))
        resume(Effect.fail(
          error === null || (error as { readonly code?: unknown }).code === "ERR_BUFFER_TOO_LARGE"
            ? new FileCipher.ContentTooLarge({ fileName, limit: maxBytes })
            : fileError(fileName, "Decompression", `the decrypted content is not valid ${format} data`)
        ))
      }
      if (format === "gzip") Zlib.gunzip(content, options, done)
      else Zlib.brotliDecompress(content, options, done)
    })

const implementation: FileCipher.Implementation = {
  prepareKey,
  decompressor: (compression, fileName) => Either.right(zlibDecompress(compression, fileName)),
  decompressBytes: zlibDecompressBytes
}

/**
 * @since 0.2.0
 * @category constructors
 */
export const make: Effect.Effect<FileCipher.Service> = FileCipher.make(implementation)

/**
 * @since 0.2.0
 * @category layers
 */
export const layer: Layer.Layer<FileCipher.FileCipher> = Layer.effect(FileCipher.FileCipher, make)
