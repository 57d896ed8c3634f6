/**
 * `pnpm --filter @digime-effect/example-web start [--port 3000]`: the example backend and a
 * simulated digi.me, until Ctrl-C. Set `EXAMPLE_CALLBACK_URL` when the browser reaches the backend
 * by another URL than `http://127.0.0.1:<port>` (a proxy, a public name).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect } from "effect"
import { parseArgs } from "node:util"
import * as Example from "./Example.js"

const { values } = parseArgs({ options: { port: { type: "string", default: "3000" } } })

const main = Effect.gen(function*() {
  const running = yield* Example.start({ port: Number(values.port), callbackUrl: yield* Example.callbackUrlConfig })
  yield* Console.log(`example backend:   ${running.appUrl}/ (digi.me calls back ${running.callbackUrl})`)
  yield* Console.log(`simulated digi.me: ${running.digime.baseUrl} (consent pages under ${running.digime.onboardUrl})`)
  yield* Effect.never
})

NodeRuntime.runMain(Effect.scoped(main))
