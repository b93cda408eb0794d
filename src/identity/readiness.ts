// The workload-certificate readiness blocker: Envoy asked for the workload certificate over SDS and has
// not been served one (the CA has not signed it yet). Envoy cannot go LIVE then (its listeners wait for the
// secret), so this names the cause behind "server is not live". It never blocks a proxy whose
// configuration needs no workload certificate (Envoy never asks), nor one served before.
import { WORKLOAD_RESOURCE } from './resources.js';
import type { IdentityStatus } from './cache.js';
import type { SdsStatus } from './sds-server.js';

export type IdentityReadinessInput =
  | (Pick<IdentityStatus, 'state' | 'lastError' | 'timings'> & { readonly certificate?: object | undefined; readonly sds: Pick<SdsStatus, 'streams'> | null })
  | null;

/** The reason the workload certificate blocks readiness, or undefined. */
export function workloadCertificateBlocker(st: IdentityReadinessInput): string | undefined {
  if (!st || !st.sds) return undefined;
  const asked = st.sds.streams.filter((s) => s.resources.includes(WORKLOAD_RESOURCE));
  if (!asked.length) return undefined;
  if (st.certificate && asked.some((s) => s.responses > 0)) return undefined;
  if (st.certificate && st.timings.firstServedMs !== undefined) return undefined;
  const ca = st.lastError ? `; last CA error: ${st.lastError.message}` : '';
  if (!st.certificate) return `workload certificate requested by Envoy but not yet issued by the CA (state ${st.state})${ca}`;
  return `workload certificate requested by Envoy but not yet served${ca}`;
}
