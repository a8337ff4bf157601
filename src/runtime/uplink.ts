// How one copy of the app talks to whoever runs it. A worker process talks to baton over
// its IPC channel (ipcUplink), an app under npm over NOTIFY_SOCKET (notifyUplink); with --threads, each thread's copy talks to the process's
// main thread over a MessagePort, and the main thread speaks for all of them (./threads.ts).
// The runtime (./runtime.ts) and the drain (./drain.ts) only ever see this interface.
import { createRequire } from 'node:module';
import type { FromWorker } from '../common/protocol.js';

export interface Uplink {
  /** `done` always runs: once the message is out, or at once if it cannot be sent. */
  send(msg: FromWorker, done?: () => void): void;
  /**
   * `onMessage` gets every message (with the handle passed along, if any); `onGone` runs
   * once nobody can tell this copy to drain any more.
   */
  receive(onMessage: (msg: unknown, handle: unknown) => void, onGone: () => void): void;
  /** Round-robin: keep this copy alive while a server waits for connections from the uplink. */
  hold(on: boolean): void;
  /** This copy has drained: it leaves. */
  exit(): void;
}

/** The worker process baton spawned: its IPC channel. */
export function ipcUplink(): Uplink {
  const rawSend = process.send!;
  return {
    // Always with a callback: without one, a send on a closing channel emits 'error' on
    // process, which would crash an app that has no handler for it.
    send(msg, done) {
      if (!process.connected) return done?.();
      try {
        Reflect.apply(rawSend, process, [msg, undefined, undefined, () => done?.()]);
      } catch {
        done?.();
      }
    },
    receive(onMessage, onGone) {
      process.on('message', onMessage);
      // The channel closes when baton dies: nobody will say drain, and a worker left serving
      // outside baton would hold connections no reload can reach. Leave on our own.
      process.on('disconnect', onGone);
      // Listening for 'message'/'disconnect' refs the channel; it must not keep an app alive
      // that would otherwise exit.
      process.channel?.unref();
    },
    hold: (on) => (on ? process.channel?.ref() : process.channel?.unref()),
    exit: () => process.exit(0),
  };
}

/**
 * An app baton did not spawn itself (under npm: launcher.ts) has no IPC channel to baton:
 * it speaks the systemd notify protocol on NOTIFY_SOCKET, which baton reads for every worker
 * and whichever process of it sends, and is told to drain by the signal npm passes on.
 */
export function notifyUplink(address: string, drainTimeoutMs: number): Uplink {
  // libc through koffi (../os/sockets.js), loaded only here: an app under a launcher.
  const sys = createRequire(import.meta.url)('../os/sockets.js') as typeof import('../os/sockets.js');
  const say = (text: string): void => {
    try {
      sys.sendDatagram(address, text);
    } catch (e) {
      process.stderr.write(`baton: cannot reach NOTIFY_SOCKET ${address}: ${(e as Error).message}\n`);
    }
  };
  return {
    send(msg, done) {
      if (msg.type === 'ready') say(`READY=1\nMAINPID=${process.pid}`);
      else if (msg.type === 'accepting-stopped') say('STOPPING=1');
      else if (msg.type === 'drain-progress') say(`STATUS=draining: ${msg.connections} connection(s) open`);
      done?.();
    },
    receive(onMessage) {
      // npm passes SIGTERM and SIGINT on to the script it runs; either means drain.
      const drain = (): void => onMessage({ baton: 1, type: 'drain', timeoutMs: drainTimeoutMs }, undefined);
      process.on('SIGTERM', drain);
      process.on('SIGINT', drain);
    },
    hold: () => {},
    exit: () => process.exit(0),
  };
}
