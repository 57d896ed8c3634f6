/**
 * Just enough DER to put a PKCS#1 RSA key into the containers Web Crypto imports (SPKI for public
 * keys, PKCS#8 for private keys). Node's `crypto` reads PKCS#1 itself; Web Crypto does not.
 */
import * as Either from "effect/Either"
import * as Encoding from "effect/Encoding"

const length = (n: number): Array<number> => {
  if (n < 0x80) return [n]
  const bytes: Array<number> = []
  for (let rest = n; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest & 0xff)
  return [0x80 | bytes.length, ...bytes]
}

const tlv = (tag: number, content: Uint8Array): Uint8Array<ArrayBuffer> => {
  const header = [tag, ...length(content.length)]
  const out = new Uint8Array(header.length + content.length)
  out.set(header, 0)
  out.set(content, header.length)
  return out
}

/** @internal */
export const concat = (...parts: ReadonlyArray<Uint8Array>): Uint8Array<ArrayBuffer> => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

// AlgorithmIdentifier { rsaEncryption (1.2.840.113549.1.1.1), NULL }
const rsaAlgorithmIdentifier = Uint8Array.of(
  0x30,
  0x0d,
  0x06,
  0x09,
  0x2a,
  0x86,
  0x48,
  0x86,
  0xf7,
  0x0d,
  0x01,
  0x01,
  0x01,
  0x05,
  0x00
)

/** @internal */
export const pkcs1PublicToSpki = (pkcs1: Uint8Array): Uint8Array<ArrayBuffer> =>
  tlv(0x30, concat(rsaAlgorithmIdentifier, tlv(0x03, concat(Uint8Array.of(0), pkcs1))))

/** @internal */
export const pkcs1PrivateToPkcs8 = (pkcs1: Uint8Array): Uint8Array<ArrayBuffer> =>
  tlv(0x30, concat(Uint8Array.of(0x02, 0x01, 0x00), rsaAlgorithmIdentifier, tlv(0x04, pkcs1)))

/** @internal */
export interface Pem {
  readonly label: string
  readonly der: Uint8Array<ArrayBuffer>
}

/** @internal */
export const parsePem = (pem: string): Pem | undefined => {
  const match = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/.exec(pem)
  if (match === null) return undefined
  const body = match[2]!.replace(/\s+/g, "")
  const der = Either.getOrUndefined(Encoding.decodeBase64(body))
  return der === undefined || der.length === 0 ? undefined : { label: match[1]!, der: new Uint8Array(der) }
}

/** @internal */
export const toPem = (label: string, der: Uint8Array): string => {
  const body = Encoding.encodeBase64(der).replace(/.{1,64}/g, "$&\n")
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`
}

/** The SPKI DER of an RSA public key given as a "PUBLIC KEY" (SPKI) or "RSA PUBLIC KEY" (PKCS#1) PEM. */
/** @internal */
export const publicPemToSpki = (pem: string): Uint8Array<ArrayBuffer> | undefined => {
  const parsed = parsePem(pem)
  return parsed === undefined
    ? undefined
    : parsed.label === "PUBLIC KEY"
    ? parsed.der
    : parsed.label === "RSA PUBLIC KEY"
    ? pkcs1PublicToSpki(parsed.der)
    : undefined
}
