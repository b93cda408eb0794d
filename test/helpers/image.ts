// The container image (Dockerfile, built by scripts/image.sh) run with podman as Kubernetes runs
// Istio's proxyv2 image in a pod: the `istio-init` and `istio-proxy` containers with the injector's
// args, env, security context and volume mounts, joined to the pod's network namespace.
//
// podman on these machines: the default runtime (crun) refuses this kernel's hybrid cgroup mounts, so
// runc; a container may not raise its rlimits here, so explicit ones. `ip netns exec` (the suite runs
// inside a network namespace) gives its processes a fresh /sys without the cgroup mounts runc needs:
// ensurePodman() mounts the process's own cgroup hierarchies there, in that private mount namespace only.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './peers.js';

/** The image under test: MESHAGENT_IMAGE as is (e.g. built by scripts/test.sh), else built here. */
export const IMAGE = process.env.MESHAGENT_IMAGE ?? 'localhost/meshagent:latest';

/** Options every `podman run` needs on these machines (see above). */
export const PODMAN_RUN_OPTS: readonly string[] = ['--runtime', 'runc', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=4096:4096'];

/** The injector's security context of istio-init: root, NET_ADMIN and NET_RAW only, no privilege escalation. */
export const INIT_SECURITY: readonly string[] = ['--user', '0:0', '--cap-drop', 'ALL', '--cap-add', 'NET_ADMIN,NET_RAW', '--security-opt', 'no-new-privileges'];

/** The injector's security context of istio-proxy: uid/gid 1337, no capabilities, no privilege escalation, read-only root. */
export const PROXY_SECURITY: readonly string[] = ['--user', '1337:1337', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges', '--read-only', '--read-only-tmpfs=false'];

const CGROUP_MOUNT_SCRIPT = String.raw`
set -e
mount -t tmpfs -o mode=755 cgroup-root /sys/fs/cgroup
while IFS=: read -r id ctrls _; do
  if [ "$id" = 0 ]; then d=unified; o=; t=cgroup2
  else case "$ctrls" in name=*) d=${'$'}{ctrls#name=}; o=none,$ctrls ;; *) d=$ctrls; o=$ctrls ;; esac; t=cgroup; fi
  mkdir -p "/sys/fs/cgroup/$d"
  if [ -n "$o" ]; then mount -t "$t" -o "$o" "$t" "/sys/fs/cgroup/$d"; else mount -t "$t" "$t" "/sys/fs/cgroup/$d"; fi
done < /proc/self/cgroup
`;

let checked: string | undefined | null = null;

/**
 * Why podman cannot run containers here (a message for the test's skip), or undefined when it can.
 * Makes the cgroup mounts runc needs visible first (see above).
 */
export function podmanUnavailable(): string | undefined {
  if (checked !== null) return checked;
  checked = probe();
  return checked;
}

function probe(): string | undefined {
  if (process.getuid?.() !== 0) return 'the container tests need root (podman, network namespaces)';
  const v = spawnSync('podman', ['--version'], { encoding: 'utf8' });
  if (v.status !== 0) return `podman is not installed (apt-get install podman runc debootstrap): ${v.error?.message ?? v.stderr.trim()}`;
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
  if (!/ \/sys\/fs\/cgroup(\/\S*)? .* - cgroup2? /.test(mounts)) {
    const r = spawnSync('sh', ['-c', CGROUP_MOUNT_SCRIPT], { encoding: 'utf8' });
    if (r.status !== 0) return `no cgroup mounts under /sys/fs/cgroup and mounting them failed: ${r.stderr.trim()}`;
  }
  // a container from any image at hand with /bin/true (none yet on a fresh machine: the build tells)
  const img = [IMAGE, 'localhost/meshagent-base/debian:bookworm-minbase'].find((i) => spawnSync('podman', ['image', 'exists', i]).status === 0);
  if (img) {
    const t = spawnSync('podman', ['run', '--rm', ...PODMAN_RUN_OPTS, '--network=none', '--pull=never', '--entrypoint', '/bin/true', img], { encoding: 'utf8', timeout: 120_000 });
    if (t.status !== 0) return `podman cannot run a container here: ${(t.stderr || String(t.error ?? '')).trim().split('\n').slice(-3).join(' | ')}`;
  } else {
    const i = spawnSync('podman', ['info'], { encoding: 'utf8', timeout: 60_000 });
    if (i.status !== 0) return `podman info failed: ${(i.stderr || String(i.error ?? '')).trim().split('\n').slice(-3).join(' | ')}`;
  }
  return undefined;
}

/**
 * The image, current with the tree: built by scripts/image.sh (podman's layer cache makes an
 * unchanged rebuild take seconds) unless MESHAGENT_IMAGE names one built elsewhere.
 */
export function ensureImage(): void {
  if (process.env.MESHAGENT_IMAGE) {
    if (spawnSync('podman', ['image', 'exists', IMAGE]).status !== 0) throw new Error(`MESHAGENT_IMAGE=${IMAGE} is not in podman's image store`);
    return;
  }
  try {
    execFileSync('bash', [join(REPO_ROOT, 'scripts', 'image.sh'), '--tag', IMAGE], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 30 * 60_000 });
  } catch (e) {
    // inside a network namespace the build steps that download (npm ci, apt-get, pip) have no network
    throw new Error(`scripts/image.sh failed (${(e as Error).message.split('\n')[0]}); where the tests run in a network namespace, build the image outside it first (bash scripts/image.sh) or set MESHAGENT_IMAGE`);
  }
}

/** `podman run` args of the istio-init container in the pod's network namespace. */
export function initContainerArgs(netns: string, args: readonly string[], env: Readonly<Record<string, string>> = {}): string[] {
  const envArgs = Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
  return ['run', '--rm', ...PODMAN_RUN_OPTS, '--pull=never', `--network=ns:/run/netns/${netns}`, ...INIT_SECURITY, ...envArgs, IMAGE, 'istio-iptables', ...args];
}

export interface ProxyContainer {
  /** Container name (unique: derived from the pod's network namespace). */
  readonly name: string;
  readonly netns: string;
  /** The pod's directory laid out as the container's volumes (test/helpers/pod.ts). */
  readonly podDir: string;
  /** The injector's env (PATH and HOME are the image's own). */
  readonly env: Record<string, string>;
  readonly args: readonly string[];
}

export const containerName = (netns: string): string => `meshagent-${netns}`;

/**
 * `podman run` args of the istio-proxy container: the injector's volumes, as bind mounts of the pod's
 * directory (emptyDirs the test reads: /etc/istio/proxy, the SDS socket's directory) or read-only
 * (configMap, projected token, downward API), and tmpfs for the emptyDirs nobody else reads.
 */
export function proxyContainerArgs(c: ProxyContainer): string[] {
  const v = (sub: string, target: string, ro = false): string[] => ['-v', `${join(c.podDir, sub)}:${target}${ro ? ':ro' : ''}`];
  const envArgs = Object.entries(c.env)
    .filter(([k]) => k !== 'PATH' && k !== 'HOME')
    .flatMap(([k, val]) => ['--env', `${k}=${val}`]);
  return [
    'run', '--name', c.name, ...PODMAN_RUN_OPTS, '--pull=never', `--network=ns:/run/netns/${c.netns}`, ...PROXY_SECURITY,
    '--workdir', '/', '--stop-timeout', '30',
    ...v('etc/istio/proxy', '/etc/istio/proxy'),
    ...v('var/run/secrets/workload-spiffe-uds', '/var/run/secrets/workload-spiffe-uds'),
    ...v('var/run/secrets/istio', '/var/run/secrets/istio', true),
    ...v('var/run/secrets/tokens', '/var/run/secrets/tokens', true),
    ...v('etc/istio/pod', '/etc/istio/pod', true),
    '--tmpfs', '/var/lib/istio/data:rw,mode=0777',
    '--tmpfs', '/var/run/secrets/credential-uds:rw,mode=0777',
    '--tmpfs', '/var/run/secrets/workload-spiffe-credentials:rw,mode=0777',
    ...envArgs,
    IMAGE, ...c.args,
  ];
}

/** `podman <args>` to completion; stdout, or an error with stderr. */
export function podman(args: readonly string[], timeoutMs = 60_000): string {
  const r = spawnSync('podman', args, { encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) throw new Error(`podman ${args.join(' ')} failed (exit ${r.status}): ${(r.stderr || String(r.error ?? '')).trim()}`);
  return r.stdout;
}

/** Removes a container (stopping it first if it still runs); no error if it is gone. */
export function removeContainer(name: string): void {
  spawnSync('podman', ['rm', '-f', '-t', '5', name], { encoding: 'utf8', timeout: 60_000 });
}
