// Probation: for a while after a handoff (or while a canary serves) baton watches the new
// generation, and rolls back by itself if a worker dies or too many answers are 5xx. The
// counts come from baton's Node runtime (runtime/stats.ts); for other programs only deaths
// count, since baton never sees their answers.
import type { Generation } from './generation.js';
import type { Worker } from './worker.js';

export interface ProbationRules {
  probationMs: number;
  /** Highest share of 5xx answers, 0-1. */
  maxErrorRate: number;
  /** Answers needed before the share counts: one 500 among the first three answers is no verdict. */
  minRequests: number;
}

/**
 * Watch `g` (serving) for `rules.probationMs`. The verdict is null if it passed, else why not;
 * abort() ends the watch at once with the reason given (a rollback asked for by a person).
 */
export function watchProbation(g: Generation, rules: ProbationRules): { verdict: Promise<string | null>; abort(reason: string): void } {
  let settle: (reason: string | null) => void = () => {};
  const verdict = new Promise<string | null>((resolve) => (settle = resolve));
  const start = Date.now();
  // Totals of workers replaced or gone, so a death does not reset the count.
  let gone = { requests: 0, errors: 0 };
  const timer = setTimeout(() => end(null), rules.probationMs);

  const onStats = (): void => {
    let requests = gone.requests;
    let errors = gone.errors;
    for (const w of g.workers) {
      requests += w.requests;
      errors += w.errors;
    }
    if (requests < rules.minRequests || errors / requests <= rules.maxErrorRate) return;
    end(`${errors} of ${requests} answers were 5xx (${pct(errors / requests)}, limit ${pct(rules.maxErrorRate)})`);
  };
  const watchWorker = (w: Worker): void => void w.on('stats', onStats);
  const onExit = (w: Worker, unexpected: boolean): void => {
    gone = { requests: gone.requests + w.requests, errors: gone.errors + w.errors };
    w.off('stats', onStats);
    if (unexpected) end(`worker ${g.number}.${w.index} ${w.describeExit()} ${((Date.now() - start) / 1000).toFixed(1)} s into probation`);
  };
  for (const w of g.workers) watchWorker(w);
  g.on('worker-start', watchWorker);
  g.on('worker-exit', onExit);

  function end(reason: string | null): void {
    clearTimeout(timer);
    g.off('worker-start', watchWorker);
    g.off('worker-exit', onExit);
    for (const w of g.workers) w.off('stats', onStats);
    settle(reason);
  }
  return { verdict, abort: (reason) => end(reason) };
}

function pct(x: number): string {
  return `${Math.round(x * 1000) / 10}%`;
}
