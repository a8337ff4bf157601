// baton's worker runtime entry. The supervisor puts it into every Node worker with
// NODE_OPTIONS=--import=<this file's URL>, so NODE_OPTIONS also reaches every process the
// app starts: it must cost nothing and change nothing unless this process is the worker
// baton spawned. The real work lives in ./runtime.js, loaded only when it is.
//
// Only `import type` from ../protocol.js: that module loads valibot and builds the control
// schemas, which no worker needs.
import type { ENV } from '../common/protocol.js';
import type { LAUNCHED as LAUNCHED_KEY } from './launcher.js';
import type { THREAD_KEY } from './threads.js';

const LISTENERS: typeof ENV.listeners = 'BATON_LISTENERS'; // checked against protocol.ts by tsc
const THREAD: typeof THREAD_KEY = 'baton.thread';
const LAUNCHED: typeof LAUNCHED_KEY = 'BATON_LAUNCHED';

// The process baton spawned has the listeners, an IPC channel to baton, and LISTEN_PID set
// to its own pid by baton's exec wrapper. Children that inherit the environment (and
// cluster workers, which have an IPC channel too) fail the pid check. With --threads, a
// thread the runtime started for a copy of the app has no IPC channel but baton's mark in
// its workerData; threads the app starts itself have neither. A package manager baton
// spawned (`baton start -- npm start`) hands the listeners down to the app it runs instead
// (./launcher.js); the app, marked so and holding the very sockets, is then the one served.
if (process.env[LISTENERS] !== undefined) {
  if (process.env.LISTEN_PID === String(process.pid) && (typeof process.send === 'function' || (await isBatonThread()))) {
    if (process.send && isLauncher(process.argv[1])) (await import('./launcher.js')).handDown(Number(process.env.LISTEN_FDS) || 0);
    else (await import('./runtime.js')).start();
  } else if (process.env[LAUNCHED] !== undefined && process.env.NOTIFY_SOCKET) {
    const launcher = await import('./launcher.js');
    const count = Number(process.env.LISTEN_FDS) || 0;
    const ours = launcher.inodes(count) === process.env[LAUNCHED];
    // npm under npm (`"start": "npm run serve"`) hands them on; the app is the one served,
    // and what it starts itself gets neither the mark nor the sockets.
    if (ours && isLauncher(process.argv[1])) launcher.handDown(count);
    else delete process.env[LAUNCHED];
    if (ours && !isLauncher(process.argv[1])) {
      const address = process.env.NOTIFY_SOCKET;
      const [{ start }, { notifyUplink }] = await Promise.all([import('./runtime.js'), import('./uplink.js')]);
      start((drainTimeoutMs) => notifyUplink(address, drainTimeoutMs));
    }
  }
}

/**
 * The package managers whose `start` script runs the app, recognised by the script node
 * runs: their bin (`/usr/bin/npm`), or their entry inside an installed package (npm-cli.js,
 * corepack's yarn.js, pnpm.cjs); an app's own `yarn.js` is none of these.
 */
function isLauncher(script: string | undefined): boolean {
  const name = '(npm|npx|yarn|yarnpkg|pnpm|pnpx)';
  return (
    script !== undefined && (new RegExp(`(^|/)${name}$`).test(script) || new RegExp(`/(node_modules|corepack)/.*/${name}(-cli)?\\.(c?js|mjs)$`).test(script))
  );
}

async function isBatonThread(): Promise<boolean> {
  const { isMainThread, workerData } = await import('node:worker_threads');
  return !isMainThread && typeof workerData === 'object' && workerData !== null && THREAD in workerData;
}
