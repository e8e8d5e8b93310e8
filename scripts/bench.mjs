// `npm run bench [-- --json] [-- --no-peers]`: bundles scripts/bench.ts with esbuild and runs it,
// so that the figures are those of the code that ships (the per-file transform of tsx turns every
// cross-module constant into a property read and runs the interpreter several times slower).
import * as esbuild from 'esbuild';
import { spawnSync } from 'node:child_process';

// dist/ (the CLI, the adapter) is measured too: build it first
const built = spawnSync(process.execPath, ['scripts/build.mjs'], { stdio: 'inherit' });
if (built.status !== 0) process.exit(built.status ?? 1);

await esbuild.build({
  entryPoints: ['scripts/bench.ts'], bundle: true, platform: 'node', format: 'cjs', target: 'node20',
  external: ['iced-x86', '@vscode/debugadapter-testsupport'], outfile: '.build/bench.js', logLevel: 'warning',
});
const r = spawnSync(process.execPath, ['.build/bench.js', ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(r.status ?? 1);
