/**
 * A tiny DER reader: just enough to take the PKCS#1 key out of the containers Web Crypto exports
 * (the OCTET STRING of a PKCS#8 PrivateKeyInfo, the BIT STRING of a SubjectPublicKeyInfo).
 */

interface Element {
  readonly tag: number
  readonly content: Uint8Array
  readonly end: number
}

const readElement = (der: Uint8Array, offset: number): Element | undefined => {
  if (offset + 2 > der.length) return undefined
  const tag = der[offset]!
  let length = der[offset + 1]!
  let position = offset + 2
  if (length & 0x80) {
    const octets = length & 0x7f
    if (octets === 0 || octets > 4 || position + octets > der.length) return undefined
    length = 0
    for (let i = 0; i < octets; i++) length = length * 256 + der[position++]!
  }
  if (position + length > der.length) return undefined
  return { tag, content: der.subarray(position, position + length), end: position + length }
}

const readSequence = (der: Uint8Array): ReadonlyArray<Element> | undefined => {
  const outer = readElement(der, 0)
  if (outer === undefined || outer.tag !== 0x30 || outer.end !== der.length) return undefined
  const elements: Array<Element> = []
  let offset = 0
  while (offset < outer.content.length) {
    const element = readElement(outer.content, offset)
    if (element === undefined) return undefined
    elements.push(element)
    offset = element.end
  }
  return elements
}

/** The PKCS#1 RSAPrivateKey inside a PKCS#8 PrivateKeyInfo. */
/** @internal */
export const pkcs8ToPkcs1Private = (pkcs8: Uint8Array): Uint8Array<ArrayBuffer> | undefined => {
  const elements = readSequence(pkcs8)
  if (elements === undefined || elements.length < 3) return undefined
  const [version, algorithm, privateKey] = elements as [Element, Element, Element]
  if (version.tag !== 0x02 || algorithm.tag !== 0x30 || privateKey.tag !== 0x04) return undefined
  return privateKey.content.slice()
}

/** The PKCS#1 RSAPublicKey inside a SubjectPublicKeyInfo. */
/** @internal */
export const spkiToPkcs1Public = (spki: Uint8Array): Uint8Array<ArrayBuffer> | undefined => {
  const elements = readSequence(spki)
  if (elements === undefined || elements.length !== 2) return undefined
  const [algorithm, publicKey] = elements as [Element, Element]
  // A BIT STRING starts with the number of unused bits, 0 for a whole key.
  if (algorithm.tag !== 0x30 || publicKey.tag !== 0x03 || publicKey.content[0] !== 0) return undefined
  return publicKey.content.slice(1)
}
