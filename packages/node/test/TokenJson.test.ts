import { UserAccessToken } from "@digime-effect/core"
import { assert, describe, it } from "@effect/vitest"
import { DateTime, Either, Redacted, Schema } from "effect"
import * as fc from "fast-check"
import * as TokenJson from "../src/internal/tokenJson.js"

const encode = Schema.encodeSync(UserAccessToken.UserAccessTokenFromJson)
const decodeWithSchema = Schema.decodeEither(UserAccessToken.UserAccessTokenFromJson)

// What a decoded token holds, in plain values.
const plain = (token: UserAccessToken.UserAccessToken) => ({
  access: [Redacted.value(token.accessToken.value), DateTime.toEpochMillis(token.accessToken.expiresAt)],
  refresh: [Redacted.value(token.refreshToken.value), DateTime.toEpochMillis(token.refreshToken.expiresAt)],
  digimeUserId: token.digimeUserId,
  consentId: token.consentId,
  keys: Object.keys(token).sort()
})

// The same decision as the schema's, and the same token.
const sameAsSchema = (json: string) => {
  const fast = TokenJson.decode(json)
  const schema = decodeWithSchema(json)
  assert.strictEqual(Either.isRight(fast), Either.isRight(schema), json)
  if (Either.isRight(fast) && Either.isRight(schema)) {
    assert.deepStrictEqual(plain(fast.right), plain(schema.right))
    assert.instanceOf(fast.right, UserAccessToken.UserAccessToken)
    assert.instanceOf(fast.right.accessToken, UserAccessToken.Token)
  }
}

const instant = fc.integer({ min: -8_000_000_000_000_000, max: 8_000_000_000_000_000 })
const part = fc.record({ value: fc.string({ minLength: 1, maxLength: 40 }), at: instant })

describe("the token JSON of a row", () => {
  it("reads every field of UserAccessToken and Token: a new field must be read too", () => {
    assert.deepStrictEqual(
      Object.keys(UserAccessToken.UserAccessToken.fields).sort(),
      [...TokenJson.fields.token].sort()
    )
    assert.deepStrictEqual(Object.keys(UserAccessToken.Token.fields).sort(), [...TokenJson.fields.part].sort())
  })

  it("decodes what the schema encodes, to the same token", () => {
    fc.assert(fc.property(
      part,
      part,
      fc.option(fc.string(), { nil: undefined }),
      fc.option(fc.string(), { nil: undefined }),
      (access, refresh, digimeUserId, consentId) => {
        const token = new UserAccessToken.UserAccessToken({
          accessToken: new UserAccessToken.Token({
            value: Redacted.make(access.value),
            expiresAt: DateTime.unsafeMake(access.at)
          }),
          refreshToken: new UserAccessToken.Token({
            value: Redacted.make(refresh.value),
            expiresAt: DateTime.unsafeMake(refresh.at)
          }),
          ...(digimeUserId === undefined ? {} : { digimeUserId }),
          ...(consentId === undefined ? {} : { consentId })
        })
        sameAsSchema(encode(token))
      }
    ))
  })

  it("decides as the schema does on JSON it did not write: other types, missing or extra fields, bad dates", () => {
    const field = fc.oneof(
      fc.string(),
      fc.constant(""),
      fc.integer(),
      fc.constant(null),
      fc.constant("2024-01-01T00:00:00.000Z"),
      fc.constant("2024-01-01T00:00:00"),
      fc.constant("2024-01-01T00:00:00+02:00"),
      fc.constant("not a date"),
      fc.constant("2024-01-01T00:00:00Z[Europe/Paris]"),
      fc.array(fc.string(), { maxLength: 2 })
    )
    const partJson = fc.oneof(
      fc.record({ value: field, expiresAt: field }, { requiredKeys: [] }),
      fc.record({ value: field, expiresAt: field, extra: field }),
      field
    )
    fc.assert(
      fc.property(
        fc.record(
          { accessToken: partJson, refreshToken: partJson, digimeUserId: field, consentId: field, newer: field },
          { requiredKeys: [] }
        ),
        (value) => sameAsSchema(JSON.stringify(value))
      ),
      { numRuns: 2_000 }
    )
    for (const json of ["", "null", "[]", "{", "\"text\"", "42", "{}"]) sameAsSchema(json)
  })
})
