/**
 * The encrypted body of a file download (data protocol §4.3), made with Web Crypto at answer time:
 * a fresh 32-byte AES key wrapped with RSA-OAEP (SHA-1, MGF1-SHA-1, no label) to the contract's
 * public key, a fresh 16-byte IV in clear, then AES-256-CBC with PKCS#7 padding of the (already
 * compressed) content. Also the compression of file contents and the envelope faults.
 */
import { concat } from "../../../internal/der.js"
import { randomBytes } from "../../../internal/encoding.js"
import type { Fault } from "../../DigimeSimulator.js"

/** @internal */
export type EnvelopeFault = Extract<
  Fault,
  { readonly _tag: "CorruptEnvelope" | "TruncateEnvelope" | "WrongKeyEnvelope" }
>["_tag"]

/**
 * The envelope of `content` for the holder of `publicKey`'s private key.
 *
 * @internal
 */
export const seal = async (publicKey: CryptoKey, content: Uint8Array): Promise<Uint8Array<ArrayBuffer>> => {
  const subtle = globalThis.crypto.subtle
  const dataKey = randomBytes(32)
  const iv = randomBytes(16)
  const aesKey = await subtle.importKey("raw", dataKey, { name: "AES-CBC" }, false, ["encrypt"])
  const ciphertext = new Uint8Array(await subtle.encrypt({ name: "AES-CBC", iv }, aesKey, new Uint8Array(content)))
  const wrapped = new Uint8Array(await subtle.encrypt({ name: "RSA-OAEP" }, publicKey, dataKey))
  return concat(wrapped, iv, ciphertext)
}

/**
 * The envelope as a fault leaves it (a `WrongKeyEnvelope` is made by sealing to another key).
 *
 * @internal
 */
export const damage = (envelope: Uint8Array<ArrayBuffer>, fault: EnvelopeFault): Uint8Array<ArrayBuffer> => {
  switch (fault) {
    case "CorruptEnvelope": {
      // The last byte of the block before the last one (the IV when there is one block): in CBC it
      // is XORed into the last plaintext byte, the padding length, which then exceeds 16.
      const corrupted = envelope.slice()
      const at = corrupted.length - 17
      corrupted[at] = corrupted[at]! ^ 0xff
      return corrupted
    }
    case "TruncateEnvelope":
      return envelope.slice(0, envelope.length - 7)
    case "WrongKeyEnvelope":
      return envelope
  }
}

/**
 * `content` compressed with gzip (`CompressionStream`).
 *
 * @internal
 */
export const gzip = async (content: Uint8Array): Promise<Uint8Array<ArrayBuffer>> => {
  const stream = new Blob([new Uint8Array(content)]).stream().pipeThrough(new CompressionStream("gzip"))
  return new Uint8Array(await new Response(stream).arrayBuffer())
}
