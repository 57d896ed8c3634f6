/**
 * `pnpm --filter @digime-effect/example-web start [--port 3000]`: the example backend and a
 * simulated digi.me, until Ctrl-C.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect } from "effect"
import { parseArgs } from "node:util"
import * as Example from "./Example.js"

const { values } = parseArgs({ options: { port: { type: "string", default: "3000" } } })

const main = Effect.gen(function*() {
  const running = yield* Example.start({ port: Number(values.port) })
  yield* Console.log(`example backend:   ${running.appUrl}/`)
  yield* Console.log(`simulated digi.me: ${running.digime.baseUrl} (consent pages under ${running.digime.onboardUrl})`)
  yield* Effect.never
})

NodeRuntime.runMain(Effect.scoped(main))
