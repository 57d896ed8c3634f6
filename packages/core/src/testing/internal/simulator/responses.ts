/**
 * The simulated digi.me's answers: JSON bodies, digi.me's error body (also sent as `X-Error-*`
 * headers, as the SDK's test helpers do), the refusals of a request with the reason recorded, and
 * the random values (token values, ids) the simulator hands out.
 */
import { base64url, randomBytes } from "../../../internal/encoding.js"
import type { SimResponse } from "../../DigimeSimulator.js"

/** @internal */
export type Json = Record<string, unknown>

/** @internal */
export const isRecord = (value: unknown): value is Json =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** @internal */
export const randomToken = (): string => base64url(randomBytes(32))

/** @internal */
export const randomId = (): string => base64url(randomBytes(12))

/** @internal */
export const jsonResponse = (status: number, body: unknown): SimResponse => ({
  status,
  headers: { "content-type": "application/json" },
  body: JSON.stringify(body)
})

// Header values must be printable ASCII; claims quoted in messages may hold anything.
const headerSafe = (value: string): string => value.replace(/[^\x20-\x7e]/g, "?")

const errorResponse = (status: number, code: string, message: string): SimResponse => {
  const reference = randomId()
  return {
    status,
    headers: {
      "content-type": "application/json",
      "x-error-code": headerSafe(code),
      "x-error-message": headerSafe(message),
      "x-error-reference": reference
    },
    body: JSON.stringify({ error: { code, message, reference } })
  }
}

/**
 * A refusal: the answer to send, and why (for `RecordedRequest.problem`).
 *
 * @internal
 */
export interface Refusal {
  readonly response: SimResponse
  readonly problem: string
}

/** @internal */
export const refuse = (status: number, code: string, message: string, problem: string): Refusal => ({
  response: errorResponse(status, code, message),
  problem
})

/** @internal */
export const validation = (status: 400 | 406, problem: string): Refusal =>
  refuse(status, "ValidationErrors", "Parameter validation errors", problem)

/** @internal */
export const invalidToken = (kind: "access_token" | "refresh_token", problem: string): Refusal =>
  refuse(401, "InvalidToken", `The token (${kind}) is invalid`, problem)

/** @internal */
export const invalidGrant = (message: string): Refusal => refuse(400, "InvalidGrant", message, message)
