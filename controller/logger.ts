// pino for everything; Temporal's runtime logs are forwarded to it.
import { DefaultLogger, Runtime, type LogLevel } from '@temporalio/worker';
import { pino, type Logger } from 'pino';

/** `context` adds fields to every line (the running activity's workflow and cluster). */
export function makeLogger(name: string, context?: () => Record<string, unknown> | undefined): Logger {
  return pino({ name, level: process.env.LOG_LEVEL ?? 'info', ...(context ? { mixin: () => context() ?? {} } : {}) });
}

export function routeTemporalLogs(log: Logger): void {
  const level = (process.env.TEMPORAL_LOG_LEVEL ?? 'WARN') as LogLevel;
  Runtime.install({
    logger: new DefaultLogger(level, (entry) => {
      const fn =
        entry.level === 'ERROR'
          ? log.error
          : entry.level === 'WARN'
            ? log.warn
            : entry.level === 'INFO'
              ? log.info
              : log.debug;
      const meta: Record<string, unknown> = { ...(entry.meta ?? {}) };
      // pino serialises Errors only under "err"; Temporal puts them under "error".
      if (meta.error instanceof Error) {
        meta.err = meta.error;
        delete meta.error;
      }
      fn.call(log, meta, entry.message);
    }),
  });
}
