/** The slice of pino's interface the inner layers log through, so they do not depend on fastify. */
export interface LogFn {
  (obj: object, msg?: string): void;
  (msg: string): void;
}

export interface Log {
  error: LogFn;
  warn: LogFn;
  info: LogFn;
  debug: LogFn;
  child(bindings: Record<string, unknown>): Log;
}

export const silentLog: Log = {
  error() {},
  warn() {},
  info() {},
  debug() {},
  child() {
    return silentLog;
  },
};
