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

/** etcd's 3.5 → 3.6 rule: each member's data must hold no custom v2 content (`etcdutl check v2store` from 3.5.32+,
 *  run against the member's data while it still runs 3.5): 3.6 panics replaying v2 WAL requests and refuses a v2 store
 *  with data in it. */
export function needsV2StoreCheck(from: string, to: string): boolean {
  const [f, t] = [parseVersion(from), parseVersion(to)];
  return !!f && !!t && f.major === 3 && f.minor === 5 && t.minor === 6;
}

/** `etcdutl check v2store` reads the WAL records after the last snapshot since 3.5.32 (etcd #21889); before, only the
 *  v2 store in the snapshot, so a clean result says nothing about the WAL. */
export function v2CheckReadsWal(version: string): boolean {
  const v = parseVersion(version);
  return !!v && compareVersions(v, parseVersion('3.5.32')!) >= 0;
}

/** What `etcdutl check v2store` found (3.5.33 etcdutl/check_command.go: "Error: detected custom …" and exit 1). */
export function v2StoreFindings(exitCode: number, output: string): { store: boolean; wal: boolean } {
  if (exitCode === 0) return { store: false, wal: false };
  return {
    store: /custom content in (both )?v2store|custom v2 content in both/.test(output),
    wal: /custom v2 content in (both v2store and )?WAL records/.test(output),
  };
}

/** Only v2 requests in some member's WAL (no v2 store data anywhere): a snapshot on every member clears them. */
export function v2WalOnly(results: { exitCode: number; output: string }[]): boolean {
  const found = results.map((r) => v2StoreFindings(r.exitCode, r.output));
  return found.some((f) => f.wal) && !found.some((f) => f.store);
}

/** What `etcdutl check v2store` on each member means for the upgrade: undefined when every check is clean, else why
 *  the upgrade is refused and what to do (etcd's "Upgrade etcd from 3.5 to 3.6" guide), members with the same finding
 *  named together. */
export function v2StoreRefusal(
  results: { member: string; exitCode: number; output: string }[],
  from: string,
): string | undefined {
  const parts = new Map<string, string[]>();
  for (const r of results) {
    if (r.exitCode === 0) continue; // it printed "No custom content found in both v2store and WAL records."
    const { store, wal } = v2StoreFindings(r.exitCode, r.output);
    const found = [store && 'custom content in the v2 store', wal && 'v2 requests in the WAL after its last snapshot']
      .filter(Boolean)
      .join(' and ');
    const remedies = [
      store &&
        'migrate the v2 data to v3 and delete it from the v2 store while on 3.5 (etcd 3.6 does not start on a v2 store with data)',
      wal &&
        'let the member take a snapshot past them (every --snapshot-count entries: keep writing, or wait; etcd 3.6 panics replaying them)',
    ].filter(Boolean);
    const last = r.output.trim().split('\n').pop()?.slice(0, 200) ?? '';
    const what = found
      ? `found ${found} on %: ${remedies.join('; ')}`
      : `could not check the data of % (exit ${r.exitCode}${last ? `: ${last}` : ''}); the upgrade needs a clean check`;
    parts.set(what, [...(parts.get(what) ?? []), r.member]);
  }
  if (!parts.size) return undefined;
  const said = [...parts].map(([what, members]) => what.replace('%', [...members].sort().join(', ')));
  return `etcdutl check v2store ${said.join('; ')}. The members stay on ${from} and keep serving; then change spec.version again to retry`;
}
