// Build identity. `ISTIO_VERSION` is the Istio release whose agent behaviour we reproduce; istiod reads it
// from the node metadata to decide which features the proxy supports.
export const AGENT_NAME = 'meshagent';
export const AGENT_VERSION = '0.1.0';
export const ISTIO_VERSION = '1.30.3';
export const ISTIO_GIT_REVISION = '56df41f63e513f834c9a3af33d8aed82d1d961f2';
