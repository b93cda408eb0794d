// prom-client's process collectors one by one (the package's typings cover only its entry): each module
// exports a function that registers its metric families on a registry. Private paths of the package, so
// package.json pins its version: a release that moved them fails the build (src/lib/process-metrics.ts).
declare module 'prom-client/lib/metrics/*.js' {
  import type { Registry } from 'prom-client';
  const register: (registry: Registry, config?: { prefix?: string }) => void;
  export default register;
}
