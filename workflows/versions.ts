// etcd upgrade-path rules (etcd.io upgrade guides; etcd-io/etcd-operator validateEtcdUpgradePath). Pure.

export interface Semver {
  major: number;
  minor: number;
  patch: number;
}

export function parseVersion(v: string): Semver | undefined {
  const m = /^v?(\d+)\.(\d+)\.(\d+)$/.exec(v.trim());
  return m ? { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]) } : undefined;
}

/** Major and minor of a version that may lack its patch ("3.5", "v3.6.14"); NaN parts when it is not one. */
export function minorVersion(v: string): { major: number; minor: number } {
  const m = /^v?(\d+)\.(\d+)(?:\.\d+)?$/.exec(v.trim());
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : { major: NaN, minor: NaN };
}

export const formatVersion = (v: Semver) => `${v.major}.${v.minor}.${v.patch}`;
export const compareVersions = (a: Semver, b: Semver) => a.major - b.major || a.minor - b.minor || a.patch - b.patch;

/** The oldest version 3.5 members must run before any of them moves to 3.6 (etcd's upgrade guide, since its
 *  July 2026 patch release: the WAL-aware v2store check and the learner/zombie-member fixes). Before the
 *  etcd-maintenance patch the floor was 3.5.26. */
export const minimum35For36 = '3.5.32';
export const previousMinimum35For36 = '3.5.26';

/**
 * Why moving members from `current` (each member's version) to `target` is refused, or undefined
 * when it is allowed. Patch changes within a minor are free; minors go up one at a time.
 */
export function upgradeRefusal(current: string[], target: string, floor35 = minimum35For36): string | undefined {
  const to = parseVersion(target);
  if (!to) return `spec.version ${target} is not a version (use e.g. 3.5.33)`;
  const from = current.map(parseVersion).filter((v): v is Semver => !!v);
  if (!from.length) return undefined;
  const oldest = from.reduce((a, b) => (compareVersions(a, b) <= 0 ? a : b));
  const newest = from.reduce((a, b) => (compareVersions(a, b) >= 0 ? a : b));
  const back = `set spec.version back to ${formatVersion(newest)}`;
  if (to.major !== oldest.major)
    return `changing the major version (${formatVersion(oldest)} → ${target}) is not supported; ${back}`;
  if (to.minor < newest.minor) return `downgrade from ${formatVersion(newest)} to ${target} is not supported; ${back}`;
  if (to.minor > oldest.minor + 1) {
    return `upgrade from ${formatVersion(oldest)} to ${target} skips a minor version; upgrade one minor at a time (first to ${oldest.major}.${oldest.minor + 1}.x)`;
  }
  if (to.minor === 6 && oldest.minor === 5 && compareVersions(oldest, parseVersion(floor35)!) < 0) {
    return (
      `upgrading to 3.6 needs every member on ${floor35} or later first (oldest runs ${formatVersion(oldest)}); ` +
      `set spec.version to the latest 3.5 patch (e.g. 3.5.33), then to ${target}`
    );
  }
  return undefined;
}
