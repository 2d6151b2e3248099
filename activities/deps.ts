// What every activity is given (samples-typescript activities-dependency-injection): the Kubernetes layer and a
// logger. Each activity is a plain named function taking them first; index.ts binds them once for the worker.
import type { Logger } from 'pino';
import type { Kube } from './kube.js';

export interface Deps {
  kube: Kube;
  log: Logger;
  /** Where the controller's own pods run (POD_NAMESPACE): members' NetworkPolicies admit them. */
  controllerNamespace?: string;
}

type Step = (d: Deps, ...args: never[]) => Promise<unknown>;

/** The activities as the worker registers them: each step without its deps. */
export type Bound<T extends Record<string, Step>> = {
  [K in keyof T]: T[K] extends (d: Deps, ...args: infer A) => infer R ? (...args: A) => R : never;
};

/** Binds the deps into every step; the object's keys are the registered activity names. */
export function bind<T extends Record<string, Step>>(d: Deps, steps: T): Bound<T> {
  return Object.fromEntries(
    Object.entries(steps).map(([name, step]) => [name, (...args: never[]) => step(d, ...args)]),
  ) as Bound<T>;
}
