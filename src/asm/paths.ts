// Path helpers for `%include` resolution. The assembler must not import Node built-ins (it also
// runs in VS Code for the Web), so it handles '/' and '\' separated paths itself.

export function dirname(path: string): string {
  const i = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
  if (i < 0) return '.';
  if (i === 0) return path[0];
  return path.slice(0, i);
}

export function isAbsolute(path: string): boolean {
  return path.startsWith('/') || path.startsWith('\\') || /^[A-Za-z]:[\\/]/.test(path);
}

export function join(dir: string, name: string): string {
  if (isAbsolute(name)) return name;
  if (dir === '' || dir === '.') return name;
  const sep = dir.includes('\\') && !dir.includes('/') ? '\\' : '/';
  return dir.endsWith('/') || dir.endsWith('\\') ? dir + name : dir + sep + name;
}
