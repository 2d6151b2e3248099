// Numbers read from a process's environment (the controller's, the backup tool's): a bad value stops the process at
// start with a message that names the variable, instead of running with NaN.

/** An integer in [min, max] from `env[name]`, else `fallback` when unset or empty; anything else throws. */
export function intEnv(
  env: Record<string, string | undefined>,
  name: string,
  fallback: number,
  { min = 1, max = Number.MAX_SAFE_INTEGER }: { min?: number; max?: number } = {},
): number {
  const v = env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `an integer ≥ ${min}` : `an integer from ${min} to ${max}`;
    throw new Error(`${name} must be ${range}, not ${JSON.stringify(v)}`);
  }
  return n;
}
