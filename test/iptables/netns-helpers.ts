// Network-namespace fixtures for the istio-iptables tests: a "pod" namespace and a "remote" namespace
// joined by a veth pair, TCP/UDP listeners that report what reached them (including the original
// destination), and clients run as a chosen uid. Everything created is removed by `destroy()`.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AGENT_BIN } from '../helpers/peers.js';

export const POD_IP = '192.168.77.1';
export const REMOTE_IP = '192.168.77.2';
export const REMOTE_IP2 = '192.168.77.3';
export const POD_IP6 = 'fd77::1';
export const REMOTE_IP6 = 'fd77::2';

/**
 * Listener: `perl listener.pl NAME SPEC...`, SPEC = tcp:PORT | tcpt:PORT (IP_TRANSPARENT, for TPROXY) |
 * udp:PORT, IPv4 wildcard (or tcp6:/udp6: for IPv6). Replies `NAME:PORT orig=IP:PORT` and prints one JSON
 * line per connection. `orig` is SO_ORIGINAL_DST for NATed connections and the local address otherwise
 * (for TPROXY the local address is the original destination). Perl because Node can set neither
 * IP_TRANSPARENT nor read SO_ORIGINAL_DST.
 */
const LISTENER_PL = String.raw`
use strict; use warnings; use Socket qw(:all); use IO::Select;
$| = 1;
my $name = shift @ARGV;
my (%info, @socks);
for my $spec (@ARGV) {
  my ($proto, $port) = split /:/, $spec;
  my $v6 = $proto =~ /6$/;
  my $fam = $v6 ? PF_INET6 : PF_INET;
  my $s;
  if ($proto =~ /^udp/) { socket($s, $fam, SOCK_DGRAM, 0) or die "socket: $!"; }
  else { socket($s, $fam, SOCK_STREAM, 0) or die "socket: $!"; setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1); }
  if ($v6) { setsockopt($s, IPPROTO_IPV6, IPV6_V6ONLY, 1); }
  if ($proto eq 'tcpt') { setsockopt($s, IPPROTO_IP, 19, 1) or die "IP_TRANSPARENT: $!"; }
  my $addr = $v6 ? pack_sockaddr_in6($port, IN6ADDR_ANY) : pack_sockaddr_in($port, INADDR_ANY);
  bind($s, $addr) or die "bind $spec: $!";
  if ($proto !~ /^udp/) { listen($s, 64) or die "listen: $!"; }
  $info{fileno $s} = [$proto, $port, $v6];
  push @socks, $s;
}
sub addr_str { my ($sa) = @_; my ($p, $h) = sockaddr_family($sa) == AF_INET6 ? unpack_sockaddr_in6($sa) : unpack_sockaddr_in($sa); my $f = sockaddr_family($sa) == AF_INET6 ? AF_INET6 : AF_INET; return inet_ntop($f, $h) . ":$p"; }
print "ready\n";
my $sel = IO::Select->new(@socks);
while (1) {
  for my $s ($sel->can_read) {
    my ($proto, $port, $v6) = @{$info{fileno $s}};
    if ($proto =~ /^udp/) {
      my $peer = recv($s, my $buf, 512, 0);
      next unless defined $peer;
      send($s, "$name:$port\n", 0, $peer);
      print "{\"listener\":\"$name:$port\",\"proto\":\"udp\",\"peer\":\"" . addr_str($peer) . "\"}\n";
      next;
    }
    accept(my $c, $s) or next;
    my $orig = '';
    my $od = $v6 ? getsockopt($c, IPPROTO_IPV6, 80) : getsockopt($c, IPPROTO_IP, 80);
    if (defined $od && length($od) >= ($v6 ? 28 : 16)) { $orig = addr_str(substr($od, 0, $v6 ? 28 : 16)); } else { $orig = addr_str(getsockname($c)); }
    my $peer = addr_str(getpeername($c));
    syswrite($c, "$name:$port orig=$orig\n");
    close $c;
    print "{\"listener\":\"$name:$port\",\"proto\":\"tcp\",\"peer\":\"$peer\",\"orig\":\"$orig\"}\n";
  }
}
`;

/** Client: `node client.mjs tcp|udp HOST PORT` prints {ok, reply, localPort, error} as JSON. */
const CLIENT_MJS = String.raw`
import net from 'node:net';
import dgram from 'node:dgram';
const [mode, host, port] = process.argv.slice(2);
const out = (o) => { process.stdout.write(JSON.stringify(o) + '\n'); process.exit(0); };
setTimeout(() => out({ ok: false, error: 'timeout' }), 2500);
if (mode === 'udp') {
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  s.on('message', (m) => out({ ok: true, reply: m.toString().trim() }));
  s.on('error', (e) => out({ ok: false, error: e.code || e.message }));
  s.send('q', Number(port), host);
} else {
  let data = '';
  const c = net.connect({ host, port: Number(port) });
  c.on('connect', () => {});
  c.on('data', (d) => (data += d));
  c.on('end', () => out({ ok: true, reply: data.trim(), localPort: c.localPort }));
  c.on('error', (e) => out({ ok: false, error: e.code || e.message }));
}
`;

export interface ClientResult {
  ok: boolean;
  reply?: string;
  localPort?: number;
  error?: string;
}

export function sh(cmd: string, args: readonly string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'], timeout: 30_000 });
}

/** `iptables-save` (or variant) output without comments and with counters zeroed, for comparisons. */
export function normalizedSave(ns: string, bin = 'iptables-save'): string {
  return sh('ip', ['netns', 'exec', ns, bin])
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]/g, '[0:0]'))
    .join('\n');
}

export class Listener {
  readonly events: Array<Record<string, string>> = [];
  private constructor(private readonly proc: ChildProcess) {}

  static async start(ns: string, dir: string, name: string, specs: readonly string[]): Promise<Listener> {
    const proc = spawn('ip', ['netns', 'exec', ns, 'perl', join(dir, 'listener.pl'), name, ...specs], { stdio: ['ignore', 'pipe', 'pipe'] });
    const l = new Listener(proc);
    let buf = '';
    let err = '';
    proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`listener ${name} not ready: ${err}`)), 10_000);
      proc.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`listener ${name} exited (${code}): ${err}`));
      });
      proc.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (line === 'ready') {
            clearTimeout(timer);
            resolve();
          } else if (line.startsWith('{')) l.events.push(JSON.parse(line) as Record<string, string>);
        }
      });
    });
    proc.removeAllListeners('exit');
    return l;
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 5000);
      this.proc.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
      this.proc.kill('SIGKILL');
    });
  }
}

/** A pod namespace and a remote namespace on one veth link, plus a scratch directory for scripts. */
export class NetnsPair {
  readonly pod: string;
  readonly remote: string;
  readonly dir: string;
  private listeners: Listener[] = [];

  private constructor(id: string) {
    this.pod = `matest-pod-${id}`;
    this.remote = `matest-rem-${id}`;
    this.dir = mkdtempSync(join(tmpdir(), 'matest-ipt-'));
  }

  static async create(opts: { ipv6?: boolean } = {}): Promise<NetnsPair> {
    const p = new NetnsPair(randomBytes(4).toString('hex'));
    try {
      p.setup(opts.ipv6 ?? false);
    } catch (e) {
      await p.destroy();
      throw e;
    }
    return p;
  }

  private setup(ipv6: boolean): void {
    const id = this.pod.slice('matest-pod-'.length);
    chmodSync(this.dir, 0o755);
    writeFileSync(join(this.dir, 'listener.pl'), LISTENER_PL, { mode: 0o644 });
    writeFileSync(join(this.dir, 'client.mjs'), CLIENT_MJS, { mode: 0o644 });
    {
      sh('ip', ['netns', 'add', this.pod]);
      sh('ip', ['netns', 'add', this.remote]);
      const veth = `mv${id}`;
      sh('ip', ['link', 'add', `${veth}a`, 'type', 'veth', 'peer', 'name', `${veth}b`]);
      sh('ip', ['link', 'set', `${veth}a`, 'netns', this.pod, 'name', 'eth0']);
      sh('ip', ['link', 'set', `${veth}b`, 'netns', this.remote, 'name', 'eth0']);
      for (const ns of [this.pod, this.remote]) {
        sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
        sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
      }
      sh('ip', ['-n', this.pod, 'addr', 'add', `${POD_IP}/24`, 'dev', 'eth0']);
      sh('ip', ['-n', this.remote, 'addr', 'add', `${REMOTE_IP}/24`, 'dev', 'eth0']);
      sh('ip', ['-n', this.remote, 'addr', 'add', `${REMOTE_IP2}/24`, 'dev', 'eth0']);
      if (ipv6) {
        sh('ip', ['-n', this.pod, '-6', 'addr', 'add', `${POD_IP6}/64`, 'dev', 'eth0', 'nodad']);
        sh('ip', ['-n', this.remote, '-6', 'addr', 'add', `${REMOTE_IP6}/64`, 'dev', 'eth0', 'nodad']);
      }
    }
  }

  async listen(ns: string, name: string, specs: readonly string[]): Promise<Listener> {
    const l = await Listener.start(ns, this.dir, name, specs);
    this.listeners.push(l);
    return l;
  }

  async stopListeners(): Promise<void> {
    await Promise.all(this.listeners.map((l) => l.stop()));
    this.listeners = [];
  }

  /** Runs the client in `ns` as uid/gid `id` (root when id is 0). */
  client(ns: string, id: number, mode: 'tcp' | 'udp', host: string, port: number): ClientResult {
    const node = process.execPath;
    const args = ['netns', 'exec', ns, 'setpriv', `--reuid=${id}`, `--regid=${id}`, '--clear-groups', node, join(this.dir, 'client.mjs'), mode, host, String(port)];
    const out = sh('ip', args);
    return JSON.parse(out.trim().split('\n').pop()!) as ClientResult;
  }

  /** Runs `agent istio-iptables ARGS` inside `ns` (default: the pod). */
  agent(args: readonly string[], opts: { ns?: string; env?: Record<string, string>; uid?: number } = {}): { code: number; stdout: string; stderr: string } {
    const ns = opts.ns ?? this.pod;
    const pre = opts.uid !== undefined ? ['setpriv', `--reuid=${opts.uid}`, `--regid=${opts.uid}`, '--clear-groups'] : [];
    try {
      const stdout = execFileSync('ip', ['netns', 'exec', ns, ...pre, AGENT_BIN, 'istio-iptables', ...args], {
        encoding: 'utf8',
        env: { ...process.env, ...opts.env },
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 60_000,
      });
      return { code: 0, stdout, stderr: '' };
    } catch (e) {
      const err = e as { status?: number; stdout?: string; stderr?: string };
      return { code: err.status ?? -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
    }
  }

  save(bin = 'iptables-save', ns = this.pod): string {
    return normalizedSave(ns, bin);
  }

  async destroy(): Promise<void> {
    await this.stopListeners();
    try {
      // only left in the host namespace if setup failed half-way
      execFileSync('ip', ['link', 'del', `mv${this.pod.slice('matest-pod-'.length)}a`], { stdio: 'ignore' });
    } catch {
      // normally absent
    }
    for (const ns of [this.pod, this.remote]) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // not created
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
