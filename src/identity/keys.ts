// Workload keys: generated natively by node:crypto on libuv's thread pool (never on the event loop, never
// in JavaScript), one fresh key per certificate, as pilot-agent does. A KeyPool keeps the next key ready
// so no CSR, and so no SDS request, waits on key generation.
import { generateKeyPair, type KeyObject } from 'node:crypto';

/** RSA (WORKLOAD_RSA_KEY_SIZE bits) by default; ECDSA P-256 or P-384 with ECC_SIGNATURE_ALGORITHM=ECDSA. */
export type KeySpec = { readonly kind: 'rsa'; readonly bits: number } | { readonly kind: 'ec'; readonly curve: 'P256' | 'P384' };

export interface WorkloadKey {
  readonly spec: KeySpec;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

export function describeKeySpec(spec: KeySpec): string {
  return spec.kind === 'rsa' ? `RSA ${spec.bits}` : `ECDSA ${spec.curve === 'P384' ? 'P-384' : 'P-256'}`;
}

/** Generates a key pair off the event loop. */
export function generateWorkloadKey(spec: KeySpec): Promise<WorkloadKey> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, publicKey: KeyObject, privateKey: KeyObject): void => {
      if (err) reject(err);
      else resolve({ spec, privateKey, publicKey });
    };
    if (spec.kind === 'rsa') generateKeyPair('rsa', { modulusLength: spec.bits, publicExponent: 0x10001 }, done);
    else generateKeyPair('ec', { namedCurve: spec.curve === 'P384' ? 'P-384' : 'P-256' }, done);
  });
}

/**
 * The private key as PEM: PKCS#8 (`PRIVATE KEY`) with PKCS8_KEY=true, else PKCS#1 (`RSA PRIVATE KEY`) for
 * RSA and SEC 1 (`EC PRIVATE KEY`) for ECDSA, as pilot-agent encodes them.
 */
export function privateKeyPem(key: WorkloadKey, pkcs8: boolean): string {
  const type = pkcs8 ? 'pkcs8' : key.spec.kind === 'rsa' ? 'pkcs1' : 'sec1';
  return key.privateKey.export({ type, format: 'pem' }).toString();
}

/** A key generation started before the configuration was loaded (see `startEarlyKey`). */
export interface EarlyKey {
  readonly spec: KeySpec;
  readonly key: Promise<WorkloadKey>;
}

/**
 * Starts generating the first workload key from the raw environment, before anything else of start-up
 * (module loading, configuration) runs: the thread pool works while the main thread loads. The spec
 * follows the same variables the configuration reads (ECC_SIGNATURE_ALGORITHM, ECC_CURVE,
 * WORKLOAD_RSA_KEY_SIZE); the key is used only if the loaded configuration asks for the same spec.
 * Returns undefined when certificates come from files (FILE_MOUNTED_CERTS) or the values are not valid.
 */
export function startEarlyKey(env: Readonly<Record<string, string | undefined>>): EarlyKey | undefined {
  if (/^(1|t|true)$/i.test(env.FILE_MOUNTED_CERTS ?? '')) return undefined;
  const alg = env.ECC_SIGNATURE_ALGORITHM ?? '';
  let spec: KeySpec;
  if (alg === 'ECDSA') spec = { kind: 'ec', curve: env.ECC_CURVE === 'P384' ? 'P384' : 'P256' };
  else if (alg === '') {
    const bits = env.WORKLOAD_RSA_KEY_SIZE ? Number(env.WORKLOAD_RSA_KEY_SIZE) : 2048;
    if (!Number.isInteger(bits) || bits < 2048 || bits > 16384) return undefined;
    spec = { kind: 'rsa', bits };
  } else return undefined;
  const key = generateWorkloadKey(spec);
  key.catch(() => undefined);
  return { spec, key };
}

export function sameKeySpec(a: KeySpec, b: KeySpec): boolean {
  return a.kind === b.kind && (a.kind === 'rsa' ? a.bits === (b as { bits: number }).bits : a.curve === (b as { curve: string }).curve);
}

/**
 * Holds at most one key ahead. `take()` hands out the ready key (or waits for the one being made) and
 * leaves the pool empty; `fill()` starts making the next one. A key whose CSR failed was never certified
 * and may go back with `giveBack()`.
 */
export class KeyPool {
  private next: Promise<WorkloadKey> | undefined;

  constructor(
    readonly spec: KeySpec,
    private readonly generate: (spec: KeySpec) => Promise<WorkloadKey> = generateWorkloadKey,
    first?: Promise<WorkloadKey>,
  ) {
    this.next = first;
  }

  /** Starts generating the next key unless one is ready or on its way. */
  fill(): void {
    if (this.next) return;
    const p = this.generate(this.spec);
    // a failed generation is reported by take(); never an unhandled rejection here
    p.catch(() => undefined);
    this.next = p;
  }

  /** The next key (generated now if none is ready); the pool is then empty. */
  take(): Promise<WorkloadKey> {
    this.fill();
    const p = this.next!;
    this.next = undefined;
    return p;
  }

  giveBack(key: WorkloadKey): void {
    if (!this.next) this.next = Promise.resolve(key);
  }

  get ready(): boolean {
    return this.next !== undefined;
  }
}
