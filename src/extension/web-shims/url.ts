// `url` for the browser bundle: @vscode/debugadapter only uses its URL class, which browsers
// have as a global (the esbuild alias in scripts/build.mjs points `url` here).

export const URL = globalThis.URL;
