// node-forge's ASN.1 module on its own (the package's typings cover only the whole bundle); the module
// exports the `asn1` namespace itself.
declare module 'node-forge/lib/asn1.js' {
  import type { asn1 } from 'node-forge';
  const asn1Module: typeof asn1;
  export default asn1Module;
}
