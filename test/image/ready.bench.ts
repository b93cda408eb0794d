// Start-up to ready of the istio-proxy container vs the agent as a process, on the mesh of
// test/helpers/mesh.ts (real istiod, one pod, capture by istio-init): from the spawn of `podman run`
// (or of the agent) to :15020/healthz/ready answering 200. A measurement, not a test (not in the suite).
//   node build/test/image/ready.bench.js image|ours|go [runs]     (root; inside a network namespace is fine)
import { ensureImage, podmanUnavailable } from '../helpers/image.js';
import { startMesh, type AgentKind } from '../helpers/mesh.js';

const kind = (process.argv[2] ?? 'image') as AgentKind;
const runs = Number(process.argv[3] ?? 5);
if (kind === 'image') {
  const why = podmanUnavailable();
  if (why) throw new Error(why);
  ensureImage();
}
const times: number[] = [];
for (let i = 0; i < runs; i++) {
  const mesh = await startMesh({ pods: [{ name: 'p', agent: kind }] });
  try {
    // startMesh returns once the agent (or `podman run`) has been spawned
    const t0 = performance.now();
    const pod = mesh.pod('p');
    for (;;) {
      const r = await pod.status('/healthz/ready').catch(() => undefined);
      if (r?.status === 200) break;
      await new Promise((res) => setTimeout(res, 20));
    }
    times.push(Math.round(performance.now() - t0));
  } finally {
    await mesh.stop();
  }
}
const sorted = [...times].sort((a, b) => a - b);
console.log(`${kind}: spawn -> :15020/healthz/ready ${times.join(', ')} ms; median ${sorted[Math.floor(sorted.length / 2)]} ms`);
