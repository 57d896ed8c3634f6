/** @internal */
export const toSearchParams = (
  query: string | URL | URLSearchParams | Readonly<Record<string, string | undefined>>
): URLSearchParams => {
  if (query instanceof URL) return query.searchParams
  if (query instanceof URLSearchParams) return query
  if (typeof query === "string") {
    const questionMark = query.indexOf("?")
    return new URLSearchParams(questionMark >= 0 ? query.slice(questionMark + 1) : query)
  }
  const params = new URLSearchParams()
  for (const [name, value] of Object.entries(query)) if (typeof value === "string") params.set(name, value)
  return params
}
