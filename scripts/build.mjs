// Builds the bundles with esbuild: the Node extension host, the browser (web worker) extension
// host, the `avic` CLI, and the stand-alone debug adapter (dist/dap.js). iced-x86's WASM is embedded in each bundle (its glue reads
// the .wasm from disk and requires Node's `util`, neither of which works in a browser or from a
// single-file bundle).
import * as esbuild from 'esbuild';
import { chmodSync, promises as fs } from 'node:fs';
import path from 'node:path';

const production = process.argv.includes('--production');

const icedWasmInline = {
  name: 'iced-wasm-inline',
  setup(build) {
    build.onLoad({ filter: /iced-x86[\\/]iced_x86\.js$/ }, async (args) => {
      let src = await fs.readFile(args.path, 'utf8');
      const replacements = [
        ["const path = require('path').join(__dirname, 'iced_x86_bg.wasm');\nconst bytes = require('fs').readFileSync(path);",
          "const bytes = require('./iced_x86_bg.wasm');"],
        ['const { TextDecoder, TextEncoder } = require(`util`);', 'const { TextDecoder, TextEncoder } = globalThis;'],
      ];
      for (const [before, after] of replacements) {
        if (!src.includes(before)) throw new Error(`iced-x86's loader changed; update scripts/build.mjs (missing: ${before.split('\n')[0]})`);
        src = src.replace(before, after);
      }
      return { contents: src, loader: 'js', resolveDir: path.dirname(args.path) };
    });
  },
};

const common = {
  bundle: true,
  format: 'cjs',
  sourcemap: !production,
  minify: production,
  loader: { '.wasm': 'binary' },
  plugins: [icedWasmInline],
  logLevel: 'warning',
  external: ['vscode'],
};

await Promise.all([
  esbuild.build({ ...common, entryPoints: ['src/extension/extension.ts'], platform: 'node', target: 'node20', outfile: 'dist/extension.js' }),
  // the debug adapter library needs Node's `events` (the npm `events` package, its browser port, resolves it) and `url`
  esbuild.build({
    ...common, entryPoints: ['src/extension/web-extension.ts'], platform: 'browser', target: 'es2022', outfile: 'dist/web/extension.js',
    alias: { url: './src/extension/web-shims/url.ts' },
  }),
  esbuild.build({ ...common, entryPoints: ['src/cli/main.ts'], platform: 'node', target: 'node20', outfile: 'dist/cli.js' }),
  esbuild.build({ ...common, entryPoints: ['src/cli/dap-main.ts'], platform: 'node', target: 'node20', outfile: 'dist/dap.js' }),
]);
chmodSync('dist/cli.js', 0o755);
console.log('built dist/extension.js, dist/web/extension.js, dist/cli.js, dist/dap.js');
