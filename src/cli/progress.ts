// What `baton reload` shows while a handoff runs. On a terminal: each step as it completes,
// under it a spinner line with the current state and the time so far, redrawn in place.
// Elsewhere (a pipe, a CI log): one plain `[state] message` line per step, nothing redrawn.
import { formatDuration } from '../common/duration.js';

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const TICK_MS = 80;

export class ReloadView {
  private readonly t0 = Date.now();
  private state = 'requested';
  /** The latest in-flight count of the old generation, shown on the spinner line. */
  private detail = '';
  private frame = 0;
  private readonly timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly tty = out.isTTY === true,
  ) {
    if (!tty) return;
    this.timer = setInterval(() => this.draw(), TICK_MS);
    this.draw();
  }

  /** `state` is the handoff's, or 'hint': advice about the reload that changes no state. */
  step(state: string, message: string): void {
    if (!this.tty) {
      this.out.write(`[${state}] ${message}\n`);
      return;
    }
    this.out.write('\r\x1b[K');
    if (state === 'hint') {
      this.out.write(`! ${message}\n`);
      return this.draw();
    }
    // Drain counts change many times a second: they update the spinner line, only the first is kept.
    if (state === 'draining' && this.state === 'draining') this.detail = message;
    else this.out.write(`${state === 'failed' || state === 'rolling-back' ? '✗' : '✓'} ${message}\n`);
    this.state = state;
    this.draw();
  }

  /** The reply came: stop redrawing and leave the line clean for the result. */
  end(): void {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.out.write('\r\x1b[K');
  }

  private draw(): void {
    const spin = FRAMES[this.frame++ % FRAMES.length];
    const line = `${spin} ${this.state}${this.detail ? `: ${this.detail}` : ''}  ${formatDuration(Date.now() - this.t0)}`;
    const width = (this.out.columns || 100) - 1;
    this.out.write(`\r\x1b[K${line.length > width ? line.slice(0, width) : line}`);
  }
}
