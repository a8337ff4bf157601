// Whether the user workers run as (--user) can reach a file: every directory on the way
// searchable, the file itself readable or executable. Checked from the mode bits as root
// sees them, before any worker starts, so that a path the user cannot reach is named in one
// line instead of surfacing as a worker's ERR_MODULE_NOT_FOUND or EACCES.
//
// The worker gets the uid and gid and no supplementary groups (libuv drops them), so those
// two ids are the whole identity here. ACLs are not read: a file that only an ACL opens up
// is reported as blocked.
import { realpathSync, type Stats, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';

export interface Identity {
  uid: number;
  gid: number;
}

const R = 4;
const X = 1;

/** What the owner, group or other bits of `st` grant `who` (r=4, w=2, x=1), as the kernel decides. */
function granted(st: Stats, who: Identity): number {
  if (who.uid === 0) return R | 2 | (st.isDirectory() || st.mode & 0o111 ? X : 0);
  const shift = st.uid === who.uid ? 6 : st.gid === who.gid ? 3 : 0;
  return (st.mode >> shift) & 7;
}

function describe(st: Stats): string {
  const type = st.isDirectory() ? 'd' : '-';
  const bits = [6, 3, 0].map((s) => ['r', 'w', 'x'].map((c, i) => ((st.mode >> (s + 2 - i)) & 1 ? c : '-')).join('')).join('');
  return `${type}${bits} uid ${st.uid} gid ${st.gid}`;
}

/** The directories a lookup of `path` passes through, outermost first, and the path itself. */
function steps(path: string): string[] {
  const out: string[] = [];
  for (let p = path; ; p = dirname(p)) {
    out.unshift(p);
    if (dirname(p) === p) return out;
  }
}

/**
 * Why `who` cannot open `path` for reading (`'read'`) or run it (`'exec'`), naming the first
 * thing in the way; null when nothing is (or when the path does not exist: that error is the
 * program's to report). The path as given and its real path (past symlinks) are both walked.
 */
export function blocked(path: string, who: Identity, need: 'read' | 'exec'): string | null {
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    return null;
  }
  const seen = new Set<string>();
  for (const full of [resolve(path), real]) {
    const chain = steps(full);
    for (const [i, p] of chain.entries()) {
      if (seen.has(p)) continue;
      seen.add(p);
      const st = statSync(p);
      const last = i === chain.length - 1;
      const bit = !last ? X : need === 'read' ? R : X;
      if (granted(st, who) & bit) continue;
      if (!last) return `directory ${p} is not searchable (${describe(st)})`;
      return `${p} is not ${need === 'read' ? 'readable' : 'executable'} (${describe(st)})`;
    }
  }
  return null;
}

/** Where `sh` finds `command` (as `exec` does: a name with a slash is a path), or null. */
export function findCommand(command: string, pathVar: string | undefined, cwd: string): string | null {
  if (command.includes('/')) return isAbsolute(command) ? command : join(cwd, command);
  for (const dir of (pathVar ?? '/usr/local/bin:/usr/bin:/bin').split(':')) {
    const candidate = join(resolve(cwd, dir || '.'), command);
    try {
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not in this one
    }
  }
  return null;
}
