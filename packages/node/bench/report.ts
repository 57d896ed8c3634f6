/**
 * The figures of a benchmark run: each one a value, the floor (or baseline) it is compared with,
 * measured in the same run on the same machine, their ratio, and the target. A missed target is
 * reported as a miss, never thrown: benchmarks inform, tests decide.
 */
import * as Os from "node:os"

export interface Figure {
  /** The section of `BENCHMARKS.md` the figure belongs to, e.g. `"1 hot path"`. */
  readonly section: string
  readonly name: string
  readonly value: number
  readonly unit: string
  /** The floor or baseline, measured in the same run; absent for a count. */
  readonly floor?: number | undefined
  readonly floorName?: string | undefined
  /** `value / floor`; for a count, the count itself compared with its target. */
  readonly ratio?: number | undefined
  /** The target, in words; absent for a figure given for context only. */
  readonly target?: string | undefined
  /** Whether the target was met; absent when there is no target. */
  readonly pass?: boolean | undefined
  /** What else helps to read the figure: sample sizes, counts, spread. */
  readonly details?: Readonly<Record<string, unknown>> | undefined
}

export interface Report {
  readonly figures: Array<Figure>
  readonly record: (figure: Figure) => void
}

export const makeReport = (): Report => {
  const figures: Array<Figure> = []
  return {
    figures,
    record: (figure) => {
      figures.push(figure)
      process.stdout.write(`  ${line(figure)}\n`)
    }
  }
}

const format = (n: number | undefined): string => {
  if (n === undefined || !Number.isFinite(n)) return "-"
  const abs = Math.abs(n)
  if (abs === 0) return "0"
  if (abs >= 1e6) return `${(n / 1e6).toFixed(2)}M`
  if (abs >= 1e4) return n.toFixed(0)
  if (abs >= 100) return n.toFixed(1)
  if (abs >= 1) return n.toFixed(2)
  return n.toPrecision(3)
}

const outcome = (figure: Figure): string => figure.pass === undefined ? "context" : figure.pass ? "met" : "MISSED"

const cells = (figure: Figure): ReadonlyArray<string> => [
  figure.section,
  figure.name,
  `${format(figure.value)} ${figure.unit}`.trim(),
  figure.floor === undefined ? "-" : `${format(figure.floor)} ${figure.floorName ?? ""}`.trim(),
  figure.ratio === undefined ? "-" : `${format(figure.ratio)}×`,
  figure.target ?? "-",
  outcome(figure)
]

const line = (figure: Figure): string => {
  const [, name, value, floor, ratio, target, result] = cells(figure)
  return `${name}: ${value} | floor ${floor} | ratio ${ratio} | target ${target} | ${result}`
}

const header = ["section", "figure", "value", "floor / baseline", "ratio", "target", "result"]

/** A plain-text table for the terminal. */
export const table = (figures: ReadonlyArray<Figure>): string => {
  const rows = figures.map(cells)
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]!.length)))
  const render = (row: ReadonlyArray<string>) => row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ")
  return [render(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(render)].join("\n")
}

/** The same table in Markdown, for `BENCHMARKS.md`. */
export const markdown = (figures: ReadonlyArray<Figure>): string =>
  [
    `| ${header.join(" | ")} |`,
    `| ${header.map(() => "---").join(" | ")} |`,
    ...figures.map((figure) => `| ${cells(figure).map((cell) => cell.replaceAll("|", "\\|")).join(" | ")} |`)
  ].join("\n")

/** What the figures were measured on. */
export const machine = () => {
  const cpus = Os.cpus()
  return {
    cpuModel: cpus[0]?.model ?? "unknown",
    cpus: cpus.length,
    memoryGiB: Math.round(Os.totalmem() / 2 ** 30),
    platform: `${Os.type()} ${Os.release()} ${Os.arch()}`,
    node: process.version
  }
}
