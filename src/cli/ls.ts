// `baton ls`: the supervisors this user can reach, as `pm2 ls` lists its apps. Every control
// socket in the places a client searches (control/paths.ts) is asked for its status, all at
// once; those that do not answer (a stale socket, another user's) are left out.

import { formatDuration } from '../common/duration.js';
import { controlRequest } from '../control/control.js';
import { controlSockets } from '../control/paths.js';
import type { GroupStatus } from '../supervisor/services.js';
import type { StatusReport } from '../supervisor/supervisor.js';

/** One line of `baton ls --json`. */
export interface Listed {
  name: string;
  pid: number;
  version: string;
  control: string;
  uptimeMs: number;
  /** Each service it runs (one, unless a config file defines several): the generation serving, ready out of target workers. */
  services: { name: string; serving: number | null; ready: number; workers: number }[];
}

/** How long a socket may take to answer before it is left out. */
const ANSWER_MS = 2000;

function ask(path: string): Promise<StatusReport | GroupStatus | null> {
  const answer = controlRequest(path, { cmd: 'status' }).then(
    (r) => (r.ok ? (r.result as StatusReport | GroupStatus) : null),
    () => null,
  );
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ANSWER_MS)));
  return Promise.race([answer, late]).finally(() => clearTimeout(timer));
}

function service(s: StatusReport): Listed['services'][number] {
  const serving = s.generations.find((g) => g.number === s.serving);
  return { name: s.name, serving: s.serving, ready: serving?.ready ?? 0, workers: s.workers };
}

export async function listSupervisors(env: NodeJS.ProcessEnv = process.env): Promise<Listed[]> {
  const paths = controlSockets(env);
  const answers = await Promise.all(paths.map(ask));
  const listed = answers.flatMap((s, i): Listed[] =>
    s === null
      ? []
      : [
          {
            name: s.name,
            pid: s.pid,
            version: s.version ?? 'unknown',
            control: paths[i]!,
            uptimeMs: s.uptimeMs,
            services: 'services' in s ? s.services.map(service) : [service(s)],
          },
        ],
  );
  return listed.sort((a, b) => a.name.localeCompare(b.name) || a.control.localeCompare(b.control));
}

export function formatList(list: Listed[]): string {
  if (list.length === 0) return 'no baton supervisor found (sockets started with --control elsewhere are not searched)';
  const rows = [
    ['NAME', 'PID', 'VERSION', 'UPTIME', 'SERVICES', 'SERVING', 'CONTROL'],
    ...list.map((l) => [
      l.name,
      String(l.pid),
      l.version,
      formatDuration(l.uptimeMs),
      String(l.services.length),
      l.services.map((s) => `${l.services.length > 1 ? `${s.name}:` : ''}gen ${s.serving ?? '-'} (${s.ready}/${s.workers})`).join(' '),
      l.control,
    ]),
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]! + 2))).join('')).join('\n');
}
