// What a test needs from the machine that the product does not control. Each check returns
// false when the prerequisite holds, or the reason it does not: pass it as node:test's
// `skip` option, so the test is reported as skipped with that reason (listed at the end of
// the run by test/helpers/skip-reporter.ts), never passed or failed for a reason outside baton.
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import { ROOT } from './baton.js';

function sysctl(name: string): string | null {
  try {
    return readFileSync(`/proc/sys/${name.replace(/\./g, '/')}`, 'utf8').trim();
  } catch {
    return null;
  }
}

export function noIPv6Loopback(): string | false {
  const has = Object.values(networkInterfaces())
    .flat()
    .some((a) => a?.address === '::1');
  return !has && '::1 is not configured on any interface (IPv6 loopback missing)';
}

export function noCommand(cmd: string, pkg: string): string | false {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0 && `the command ${cmd} is not installed (Debian package ${pkg})`;
}

/** Binding an address no interface has succeeds when ip_nonlocal_bind is on. */
export function nonlocalBind(): string | false {
  const v = sysctl('net.ipv4.ip_nonlocal_bind');
  return v !== '0' && `net.ipv4.ip_nonlocal_bind=${v ?? 'unreadable'}: the kernel lets any address be bound, so EADDRNOTAVAIL cannot be seen`;
}

export function abortOnOverflow(): string | false {
  const v = sysctl('net.ipv4.tcp_abort_on_overflow');
  return v !== '0' && `net.ipv4.tcp_abort_on_overflow=${v ?? 'unreadable'}: the kernel resets connections past the backlog instead of dropping them`;
}

export function v6only(): string | false {
  const v = sysctl('net.ipv6.bindv6only');
  return v !== '0' && `net.ipv6.bindv6only=${v ?? 'unreadable'}: [::] does not take IPv4 clients here`;
}

export function notRoot(): string | false {
  return process.getuid?.() !== 0 && `needs root (running as uid ${process.getuid?.()})`;
}

/** Workers run as another user must read the app and baton's runtime: every directory up to the checkout must let others in. */
export function checkoutClosedToOthers(): string | false {
  for (let dir = ROOT; ; dir = dirname(dir)) {
    const mode = statSync(dir).mode;
    if ((mode & 0o001) === 0)
      return `${dir} is mode 0${(mode & 0o777).toString(8)}: other users cannot reach the checkout (${ROOT}), so a worker run with --user cannot load the app`;
    if (dirname(dir) === dir) break;
  }
  for (const file of [join(ROOT, 'examples/hello/v1.js'), join(ROOT, 'dist/src/runtime/preload.js')]) {
    const mode = statSync(file).mode;
    if ((mode & 0o004) === 0) return `${file} is mode 0${(mode & 0o777).toString(8)}: other users cannot read it`;
  }
  return false;
}

/** The first reason of several, or false when all hold. */
export function anyOf(...reasons: (string | false)[]): string | false {
  return reasons.find((r) => r !== false) ?? false;
}
