// Loads the vendored protos (protos/, see protos/PROTOS.md) with @grpc/proto-loader.
// Field names stay snake_case (keepCase), as in Envoy's JSON/YAML and Istio's bootstrap. Exception: the
// well-known google/protobuf/* types come from protobufjs's built-in descriptors, whose names are camelCase
// (Struct/Value: `{ fields: { K: { stringValue: 'v' } } }`; Any keeps `type_url`/`value`, Duration `seconds`/`nanos`).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSync, type Options, type PackageDefinition } from '@grpc/proto-loader';

/** The repository's protos/ directory (found from this module, in src/ or build/src/). */
export function protoDir(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(d, 'protos');
    if (existsSync(join(d, 'package.json')) && existsSync(candidate)) return candidate;
    const up = dirname(d);
    if (up === d) throw new Error('protos/ directory not found above ' + fileURLToPath(import.meta.url));
    d = up;
  }
}

export const PROTO_LOADER_OPTIONS: Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
};

/** Loads `files` (paths relative to protos/) and their imports. */
export function loadProtos(files: readonly string[], options: Options = {}): PackageDefinition {
  return loadSync([...files], { ...PROTO_LOADER_OPTIONS, ...options, includeDirs: [protoDir()] });
}

/** serialize/deserialize of one message type of a loaded package definition. */
export interface MessageCodec<T = Record<string, unknown>> {
  encode(obj: T): Buffer;
  decode(buf: Buffer): T;
}

export function messageCodec<T = Record<string, unknown>>(pkg: PackageDefinition, fullName: string): MessageCodec<T> {
  const def = pkg[fullName] as { serialize?: (v: T) => Buffer; deserialize?: (b: Buffer) => T } | undefined;
  if (!def?.serialize || !def.deserialize) throw new Error(`message type ${fullName} is not in the loaded protos`);
  const { serialize, deserialize } = def;
  return { encode: (obj) => serialize(obj), decode: (buf) => deserialize(buf) };
}
