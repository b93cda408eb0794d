import assert from 'node:assert/strict';
import { it } from 'node:test';
import { DEFAULT_CONFIG, type IptablesConfig } from './config.js';
import { planNftRules, renderNftTransaction } from './nft.js';

const cfg = (over: Partial<IptablesConfig>): IptablesConfig => ({ ...DEFAULT_CONFIG, proxyUID: '1337', proxyGID: '1337', ...over });

void it('renders an nft transaction: only chains with rules, inserts into empty chains become appends', () => {
  const tx = renderNftTransaction(planNftRules(cfg({ rerouteVirtualInterfaces: 'eth1,eth2', outboundIPRangesInclude: '*' })), false).split('\n');
  assert.deepEqual(tx.slice(0, 4), [
    'add table inet istio-proxy-nat',
    'flush table inet istio-proxy-nat',
    'add chain inet istio-proxy-nat prerouting { type nat hook prerouting priority -100 ; }',
    'add chain inet istio-proxy-nat output { type nat hook output priority -100 ; }',
  ]);
  assert.ok(!tx.includes('add chain inet istio-proxy-nat istio-output-dns'), 'no empty chains');
  assert.ok(!tx.some((l) => l.includes('istio-proxy-mangle')), 'no empty tables');
  assert.ok(tx.includes('add rule inet istio-proxy-nat prerouting iifname eth1 counter return'));
  assert.ok(tx.includes('insert rule inet istio-proxy-nat prerouting index 0 iifname eth2 counter return'));
  assert.ok(tx.includes('insert rule inet istio-proxy-nat prerouting index 0 iifname eth2 counter jump istio-redirect'));
});

void it('uses one inet table for both families and deletes all three tables on cleanup', () => {
  const tx = renderNftTransaction(planNftRules(cfg({ enableIPv6: true, inboundInterceptionMode: 'TPROXY', inboundPortsInclude: '*' })), false);
  assert.match(tx, /add rule inet istio-proxy-mangle istio-tproxy meta l4proto tcp ip6 daddr != ::1\/128 tproxy ip6 to :15006 meta mark set 1337 counter accept\n/);
  assert.match(tx, /insert rule inet istio-proxy-mangle istio-inbound index 1 iifname lo meta l4proto tcp ip6 saddr ::6\/128 counter return\n/);
  assert.equal(
    renderNftTransaction(planNftRules(cfg({ cleanupOnly: true })), true),
    ['nat', 'mangle', 'raw'].map((t) => `add table inet istio-proxy-${t}\ndelete table inet istio-proxy-${t}\n`).join(''),
  );
});
