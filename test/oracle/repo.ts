// The repository root, found from this module's location, so that oracle code finds its sources
// (ROM sources, the KVM harness) also when it runs from a bundle in .build/ (npm run bench).

import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

let root: string | undefined;

export function repoRoot(): string {
  if (root) return root;
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg) && /"name":\s*"avic-debug"/.test(readFileSync(pkg, 'utf8'))) return (root = dir);
    if (path.dirname(dir) === dir) throw new Error(`cannot find the avic-debug repository above ${__dirname}`);
  }
}

/** A path inside the repository. */
export function repoPath(...segments: string[]): string {
  return path.join(repoRoot(), ...segments);
}
