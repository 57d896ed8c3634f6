/**
 * Type tests of the public signatures whose error channels matter most. Checked by `tsc -b`
 * (a wrong type fails the build); never executed.
 */
import type { DataProtocol, DigimeClient, TokenKey, TokenManager } from "@digime-effect/core"
import { AutoRefresh, DigimeError } from "@digime-effect/core"
import { Data, Effect, pipe } from "effect"
import { expectTypeOf } from "vitest"

declare const key: TokenKey.TokenKey
declare const client: DigimeClient.Service

class AppError extends Data.TaggedError("AppError")<{}> {}

// The wrapped effect's errors pass through; AccessTokenRejected is absorbed; the token-state errors are added.
const wrapped = AutoRefresh.withAutoRefresh(
  key,
  (_credentials) => Effect.fail(new AppError()) as Effect.Effect<number, AppError | DigimeError.AccessTokenRejected>
)
expectTypeOf(wrapped).toEqualTypeOf<
  Effect.Effect<number, AppError | AutoRefresh.AutoRefreshError, TokenManager.TokenManager>
>()

// The pipeable form has the same type.
const piped = pipe(
  (_credentials: AutoRefresh.KeyedCredentials) =>
    Effect.fail(new AppError()) as Effect.Effect<number, AppError | DigimeError.AccessTokenRejected>,
  AutoRefresh.withAutoRefresh(key)
)
expectTypeOf(piped).toEqualTypeOf<typeof wrapped>()

// A data call of the client, wrapped: its AccessTokenRejected is gone.
const accounts = AutoRefresh.withAutoRefresh(key, client.readAccounts)
expectTypeOf(accounts).toEqualTypeOf<
  Effect.Effect<
    ReadonlyArray<DataProtocol.Account>,
    | DigimeClient.RequestFailure
    | DigimeError.InvalidOptions
    | AutoRefresh.AutoRefreshError,
    TokenManager.TokenManager
  >
>()
type AccountsError = Effect.Effect.Error<typeof accounts>
expectTypeOf<Extract<AccountsError, DigimeError.AccessTokenRejected>>().toEqualTypeOf<never>()

// The three token-state errors are distinguishable by tag.
expectTypeOf<AutoRefresh.AutoRefreshError["_tag"]>().toEqualTypeOf<
  | "InvalidAccessToken"
  | "RefreshTokenExpired"
  | "ReauthRequired"
  | "RequestError"
  | "ApiError"
  | "ResponseError"
  | "InvalidContractKey"
  | "UnknownContract"
  | "VerificationError"
  | "TokenStoreError"
>()

// nextStep takes only the token-state errors.
// @ts-expect-error an ApiError has no next step
AutoRefresh.nextStep(new DigimeError.ApiError({ operation: "x", status: 500, code: "c", description: "" }), {
  callbackUrl: "https://app.example/cb"
})
