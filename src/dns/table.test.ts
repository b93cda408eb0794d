// The lookup table against the cases pilot-agent's own tests assert (its DNS client tests' fixture:
// proxy in ns1, domain ns1.svc.cluster.local, search ns1.svc.cluster.local svc.cluster.local cluster.local).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Answer } from 'dns-packet';
import type { NameInfo, NameTable } from './nds.js';
import { buildLookupTable, kubernetesAltHosts, lookup, nameTableJson, normaliseProxyDomain, shuffleAddresses } from './table.js';

const k8s = (ips: string[], shortname: string, namespace: string, altHosts: string[] = []): NameInfo => ({ ips, registry: 'Kubernetes', shortname, namespace, altHosts });
const ext = (ips: string[]): NameInfo => ({ ips, registry: 'External', shortname: '', namespace: '', altHosts: [] });

const fixture: NameTable = new Map<string, NameInfo>([
  ['www.google.com', ext(['1.1.1.1'])],
  ['productpage.ns1.svc.cluster.local', k8s(['9.9.9.9'], 'productpage', 'ns1')],
  ['example.ns2.svc.cluster.local', k8s(['10.10.10.10'], 'example', 'ns2')],
  ['details.ns2.svc.cluster.remote', k8s(['11.11.11.11', '12.12.12.12', '13.13.13.13', '14.14.14.14'], 'details', 'ns2')],
  ['svc-with-alt.ns1.svc.cluster.local', k8s(['15.15.15.15'], 'svc-with-alt', 'ns1', ['svc-with-alt.ns1.svc.clusterset.local'])],
  ['ipv6.localhost', ext(['2001:db8:0:0:0:ff00:42:8329'])],
  ['dual.localhost', ext(['2.2.2.2', '2001:db8:0:0:0:ff00:42:8329'])],
  ['ipv4.localhost', ext(['2.2.2.2'])],
  ['*.b.wildcard', ext(['11.11.11.11'])],
  ['*.wildcard', ext(['10.10.10.10'])],
  ['*.svc.mesh.company.net', ext(['10.1.2.3'])],
  ['example.localhost.', ext(['3.3.3.3'])],
]);
const ctx = { proxyNamespace: 'ns1', proxyDomain: 'ns1.svc.cluster.local', search: ['ns1.svc.cluster.local', 'svc.cluster.local', 'cluster.local'] };
const table = buildLookupTable(fixture, ctx);

/** [type owner data] of each answer, in order. */
const show = (qtype: string, name: string): { found: boolean; rr: string[] } => {
  const r = lookup(table, qtype, name);
  return { found: r.found, rr: r.answers.map((a) => `${a.type} ${a.name} ${dataOf(a)}`) };
};
const dataOf = (a: Answer): string => String((a as { data?: unknown }).data);
const sorted = (x: { found: boolean; rr: string[] }) => ({ found: x.found, rr: [...x.rr].sort() });

void describe('dns lookup table (pilot-agent cases)', () => {
  void it('normalises the proxy domain by dropping the namespace label', () => {
    assert.deepEqual(normaliseProxyDomain('ns1.svc.cluster.local', 'ns1'), { domain: 'svc.cluster.local', parts: ['svc', 'cluster', 'local'] });
    assert.deepEqual(normaliseProxyDomain('svc.cluster.local', 'ns1').domain, 'svc.cluster.local');
  });

  void it('generates the alternate names of each entry (TestBuildAlternateHosts)', () => {
    const { domain, parts } = normaliseProxyDomain(ctx.proxyDomain, 'ns1');
    const alt = (h: string) => {
      const ni = fixture.get(h)!;
      return ni.registry === 'Kubernetes' ? [...kubernetesAltHosts(h, ni, 'ns1', domain, parts)].sort() : [h.endsWith('.') ? h : `${h}.`];
    };
    assert.deepEqual(alt('productpage.ns1.svc.cluster.local'), ['productpage.', 'productpage.ns1.', 'productpage.ns1.svc.', 'productpage.ns1.svc.cluster.local.'].sort());
    assert.deepEqual(alt('example.ns2.svc.cluster.local'), ['example.ns2.', 'example.ns2.svc.', 'example.ns2.svc.cluster.local.'].sort());
    assert.deepEqual(alt('details.ns2.svc.cluster.remote'), ['details.ns2.svc.cluster.remote.']);
    assert.deepEqual(
      alt('svc-with-alt.ns1.svc.cluster.local'),
      ['svc-with-alt.', 'svc-with-alt.ns1.', 'svc-with-alt.ns1.svc.', 'svc-with-alt.ns1.svc.cluster.local.', 'svc-with-alt.ns1.svc.clusterset.local.'].sort(),
    );
    // a Kubernetes key with a trailing dot is ignored entirely
    assert.deepEqual(kubernetesAltHosts('x.ns1.svc.cluster.local.', k8s(['1.2.3.4'], 'x', 'ns1'), 'ns1', domain, parts).size, 0);
  });

  void it('answers the names of the table, every spelling a pod uses', () => {
    assert.deepEqual(show('A', 'www.google.com.'), { found: true, rr: ['A www.google.com. 1.1.1.1'] });
    assert.deepEqual(show('A', 'www.google.com.ns1.svc.cluster.local.'), { found: true, rr: ['CNAME www.google.com.ns1.svc.cluster.local. www.google.com.', 'A www.google.com. 1.1.1.1'] });
    for (const n of ['productpage.ns1.svc.cluster.local.', 'productpage.ns1.', 'productpage.', 'PRODUCTPAGE.Ns1.', 'productpage.ns1.svc.cluster.local']) {
      assert.deepEqual(show('A', n).rr.at(-1), `A ${n.toLowerCase().replace(/\.?$/, '.')} 9.9.9.9`, n);
    }
    assert.deepEqual(show('A', 'productpage.ns1.ns1.svc.cluster.local.'), { found: true, rr: ['CNAME productpage.ns1.ns1.svc.cluster.local. productpage.ns1.', 'A productpage.ns1. 9.9.9.9'] });
    // a CNAME whose target has no address of the family: NOERROR with nothing (the CNAME is dropped too)
    assert.deepEqual(show('AAAA', 'productpage.ns1.ns1.svc.cluster.local.'), { found: true, rr: [] });
    for (const n of ['example.ns2.', 'example.ns2.svc.cluster.local.', 'example.ns2.svc.']) assert.deepEqual(show('A', n), { found: true, rr: [`A ${n} 10.10.10.10`] });
    for (const n of ['svc-with-alt.', 'svc-with-alt.ns1.', 'svc-with-alt.ns1.svc.', 'svc-with-alt.ns1.svc.cluster.local.', 'svc-with-alt.ns1.svc.clusterset.local.']) {
      assert.deepEqual(show('A', n), { found: true, rr: [`A ${n} 15.15.15.15`] });
    }
    assert.deepEqual(sorted(show('A', 'details.ns2.svc.cluster.remote.')).rr, ['11.11.11.11', '12.12.12.12', '13.13.13.13', '14.14.14.14'].map((ip) => `A details.ns2.svc.cluster.remote. ${ip}`));
    assert.deepEqual(show('A', 'example.localhost.'), { found: true, rr: ['A example.localhost. 3.3.3.3'] });
  });

  void it('forwards what is not its own: other namespaces short names, other domains, double suffixes, other types', () => {
    for (const n of ['example.', 'details.ns2.', 'productpage.ns1.svc.cluster.local.ns1.svc.cluster.local.', 'www.bing.com.', 'wildcard.', 'productpage.ns1.svc.cluster.', 'productpage.svc.cluster.local.']) {
      assert.equal(lookup(table, 'A', n).found, false, n);
    }
    for (const t of ['MX', 'TXT', 'SRV', 'PTR', 'CNAME', 'ANY', 'HTTPS']) assert.equal(lookup(table, t, 'productpage.ns1.').found, false, t);
  });

  void it('answers each family separately, NODATA (never NXDOMAIN) for the missing one', () => {
    assert.deepEqual(show('A', 'dual.localhost.'), { found: true, rr: ['A dual.localhost. 2.2.2.2'] });
    assert.deepEqual(show('AAAA', 'dual.localhost.'), { found: true, rr: ['AAAA dual.localhost. 2001:db8:0:0:0:ff00:42:8329'] });
    assert.deepEqual(show('A', 'ipv6.localhost.'), { found: true, rr: [] });
    assert.deepEqual(show('AAAA', 'ipv4.localhost.'), { found: true, rr: [] });
  });

  void it('answers wildcards, most specific first, with the right owners', () => {
    assert.deepEqual(show('A', 'foo.wildcard.'), { found: true, rr: ['A foo.wildcard. 10.10.10.10'] });
    assert.deepEqual(show('A', 'a.b.wildcard.'), { found: true, rr: ['A a.b.wildcard. 11.11.11.11'] });
    assert.deepEqual(show('A', 'foo.wildcard.ns1.svc.cluster.local.'), { found: true, rr: ['CNAME foo.wildcard.ns1.svc.cluster.local. *.wildcard.', 'A *.wildcard. 10.10.10.10'] });
    assert.deepEqual(show('A', 'foo.svc.mesh.company.net.'), { found: true, rr: ['A foo.svc.mesh.company.net. 10.1.2.3'] });
    assert.deepEqual(show('A', 'foo.foons.svc.mesh.company.net.'), { found: true, rr: ['A foo.foons.svc.mesh.company.net. 10.1.2.3'] });
    assert.deepEqual(show('A', 'foo.svc.mesh.company.net.ns1.svc.cluster.local.'), {
      found: true,
      rr: ['CNAME foo.svc.mesh.company.net.ns1.svc.cluster.local. *.svc.mesh.company.net.', 'A *.svc.mesh.company.net. 10.1.2.3'],
    });
  });

  void it('skips entries without a usable address, and a proxy in another namespace gets no short name', () => {
    const t = buildLookupTable(new Map([['bad.example', ext(['not-an-ip', '10.0.0.0/8'])], ['reviews.default.svc.cluster.local', k8s(['10.0.0.1'], 'reviews', 'default')]]), {
      proxyNamespace: 'other',
      proxyDomain: 'other.svc.cluster.local',
      search: ['other.svc.cluster.local', 'svc.cluster.local'],
    });
    assert.equal(t.skipped, 1);
    assert.equal(lookup(t, 'A', 'bad.example.').found, false);
    assert.equal(lookup(t, 'A', 'reviews.').found, false);
    assert.deepEqual(
      lookup(t, 'A', 'reviews.default.other.svc.cluster.local.').answers.map((a) => `${a.type} ${a.name} ${dataOf(a)}`),
      ['CNAME reviews.default.other.svc.cluster.local. reviews.default.', 'A reviews.default. 10.0.0.1'],
    );
  });

  void it('shuffles only the address records, keeping the CNAME first', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const r = lookup(table, 'A', 'details.ns2.svc.cluster.remote.').answers;
      shuffleAddresses(r);
      seen.add(r.map((a) => dataOf(a)).join(','));
    }
    assert.ok(seen.size > 5, `orders seen: ${seen.size}`);
    const c = lookup(table, 'A', 'www.google.com.ns1.svc.cluster.local.').answers;
    shuffleAddresses(c);
    assert.equal(c[0]!.type, 'CNAME');
  });
});

void describe('/debug/ndsz view (nameTableJson)', () => {
  void it('istiod entries as protobuf JSON, plus each generated name with the entry addresses, IPv4 first, keys sorted', () => {
    const nt: NameTable = new Map<string, NameInfo>([
      ['productpage.ns1.svc.cluster.local', k8s(['9.9.9.9'], 'productpage', 'ns1')],
      ['dual.localhost', ext(['2001:DB8:0:0:0:ff00:42:8329', '2.2.2.2'])],
      ['bad.localhost', ext(['not-an-ip'])],
      ['v6forms.localhost', ext(['::102:304', '::FFFF:0102:0304', '::2'])],
    ]);
    const v = nameTableJson(nt, ctx);
    assert.deepEqual(Object.keys(v.table ?? {}), [
      'bad.localhost',
      'dual.localhost',
      'dual.localhost.',
      'productpage.',
      'productpage.ns1.',
      'productpage.ns1.svc.',
      'productpage.ns1.svc.cluster.local',
      'productpage.ns1.svc.cluster.local.',
      'v6forms.localhost',
      'v6forms.localhost.',
    ]);
    assert.deepEqual(v.table?.['productpage.ns1.svc.cluster.local'], { ips: ['9.9.9.9'], registry: 'Kubernetes', shortname: 'productpage', namespace: 'ns1' });
    assert.deepEqual(v.table?.['productpage.ns1.'], { ips: ['9.9.9.9'], registry: 'Kubernetes' });
    // as istiod sent it; the generated name: IPv4 first, IPv6 in its normal form
    assert.deepEqual(v.table?.['dual.localhost'], { ips: ['2001:DB8:0:0:0:ff00:42:8329', '2.2.2.2'], registry: 'External' });
    assert.deepEqual(v.table?.['dual.localhost.'], { ips: ['2.2.2.2', '2001:db8::ff00:42:8329'], registry: 'Kubernetes' });
    // as netip prints them: an IPv4 tail only for IPv4-mapped addresses
    assert.deepEqual(v.table?.['v6forms.localhost.']?.ips, ['::102:304', '::ffff:1.2.3.4', '::2']);
    // no usable address: shown, but generates nothing
    assert.deepEqual(v.table?.['bad.localhost'], { ips: ['not-an-ip'], registry: 'External' });
    assert.deepEqual(nameTableJson(new Map(), ctx), {});
  });
});
