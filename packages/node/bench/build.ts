/**
 * Bundles the benchmark (and its child processes: section 3's first call, section 5's worker) into plain JavaScript in
 * `bench/.build/`, so that the figures are those of the library as a user runs it: `tsx`, which the
 * tests and the demo run under, compiles with esbuild's `keepNames`, and the name it attaches to
 * every function created at run time costs microseconds on the hot path, a cost a compiled
 * application does not pay. The workspace's own sources (and `jose`) are bundled; `effect`, the
 * `@effect/*` packages, `tinybench` and Node's modules stay imports, so there is one copy of each.
 */
import * as esbuild from "esbuild"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const packageDir = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..")
const external = /^(node:|effect$|effect\/|@effect\/|tinybench$)/

await esbuild.build({
  absWorkingDir: packageDir,
  entryPoints: { main: "bench/main.ts", firstCall: "bench/firstCall.ts", worker: "test/fixtures/worker.ts" },
  outdir: "bench/.build",
  outExtension: { ".js": ".mjs" },
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  keepNames: false,
  sourcemap: "linked",
  logLevel: "warning",
  plugins: [{
    name: "external-dependencies",
    setup: (build) => {
      build.onResolve({ filter: /^[^./]/ }, (args) => external.test(args.path) ? { external: true } : undefined)
    }
  }]
})
