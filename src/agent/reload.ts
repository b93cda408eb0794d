// Which configuration changes a hot restart cannot apply (the agent's own listeners and sockets are
// bound to them): such a reload is rejected and the running configuration kept.
import type { AgentConfig } from '../config/agent-config.js';

export function changesNeedingPodRestart(cur: AgentConfig, next: AgentConfig): string[] {
  const out: string[] = [];
  const pairs: Array<[string, unknown, unknown]> = [
    ['statusPort', cur.proxy.statusPort, next.proxy.statusPort],
    ['proxyAdminPort', cur.proxy.proxyAdminPort, next.proxy.proxyAdminPort],
    ['configPath', cur.proxy.configPath, next.proxy.configPath],
    ['discoveryAddress', cur.proxy.discoveryAddress, next.proxy.discoveryAddress],
    ['controlPlaneAuthPolicy', cur.proxy.controlPlaneAuthPolicy, next.proxy.controlPlaneAuthPolicy],
  ];
  for (const [name, a, b] of pairs) if (a !== b) out.push(`${name} (${String(a)} -> ${String(b)})`);
  return out;
}
