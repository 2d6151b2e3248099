// A supervised child process with its output in a log file; stop() ends its whole process group.
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';

export interface ManagedProcessOptions {
  name: string;
  cmd: string;
  args: string[];
  logFile: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export class ManagedProcess {
  readonly child: ChildProcess;
  exitCode: number | null = null;
  exited: Promise<void>;

  constructor(readonly opts: ManagedProcessOptions) {
    const fd = openSync(opts.logFile, 'a');
    // detached: its own process group, so stop() also reaches grandchildren.
    this.child = spawn(opts.cmd, opts.args, {
      stdio: ['ignore', fd, fd],
      detached: true,
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
    closeSync(fd);
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? 128 : 1);
        resolve();
      });
      this.child.on('error', () => {
        this.exitCode = 127;
        resolve();
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }
  get running(): boolean {
    return this.exitCode === null;
  }

  async stop(graceMs = 10000): Promise<void> {
    if (!this.running) return;
    signalGroup(this.pid, 'SIGTERM');
    const timedOut = await Promise.race([this.exited.then(() => false), sleep(graceMs).then(() => true)]);
    if (timedOut) signalGroup(this.pid, 'SIGKILL');
    await this.exited;
  }
}

export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      /* gone */
    }
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The last lines of a component's log, for an error message (a test stack's folder is gone after the run). */
export function logTail(logFile: string | undefined, lines = 8): string {
  if (!logFile) return '';
  try {
    const text = readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    return text ? `\n--- last lines of ${logFile} ---\n${text}` : '';
  } catch {
    return '';
  }
}

/** Polls check() until it returns true; fails with a message naming the component and its log (and its tail). */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  opts: { logFile?: string; proc?: ManagedProcess; intervalMs?: number } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  while (Date.now() < deadline) {
    if (opts.proc && !opts.proc.running) {
      throw new Error(
        `${what}: process exited with code ${opts.proc.exitCode} before becoming ready (log: ${opts.logFile ?? 'n/a'})` +
          logTail(opts.logFile),
      );
    }
    try {
      if (await check()) return;
    } catch (e) {
      lastError = (e as Error).message;
    }
    await sleep(opts.intervalMs ?? 250);
  }
  throw new Error(
    `${what}: not ready after ${Math.round(timeoutMs / 1000)}s${lastError ? ` (last error: ${lastError})` : ''}${opts.logFile ? ` (log: ${opts.logFile})` : ''}` +
      logTail(opts.logFile),
  );
}
