// Package agentgateway stands in for istio.io/istio/pilot/pkg/config/kube/agentgateway when
// istiod-local is built: scripts/peers.sh builds istiod-local against a copy of the istio.io/istio
// module in which this file replaces that package's sources. The real package needs
// github.com/agentgateway/agentgateway/api, which the Go module proxy does not serve.
//
// istiod only creates the agentgateway controller when PILOT_ENABLE_AGENTGATEWAY=true (default
// false), and istiod-local refuses to start with it enabled, so the real controller is never
// reached; this stand-in only has to satisfy the compiler.
package agentgateway

import (
	"k8s.io/apimachinery/pkg/runtime/schema"

	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/pkg/serviceregistry/kube/controller"
	"istio.io/istio/pilot/pkg/status"
	"istio.io/istio/pilot/pkg/xds"
	"istio.io/istio/pkg/kube"
)

// Controller has the surface istiod's bootstrap uses; the embedded interface is always nil.
type Controller struct {
	model.AgentgatewayController
	Registrations []xds.Registration
}

// NewAgwController is unreachable in istiod-local (PILOT_ENABLE_AGENTGATEWAY must stay false).
func NewAgwController(
	_ kube.Client,
	_ func(class schema.GroupVersionResource, stop <-chan struct{}) bool,
	_ controller.Options,
) *Controller {
	panic("istiod-local: built without the agentgateway controller; unset PILOT_ENABLE_AGENTGATEWAY")
}

// SetStatusWrite does nothing: there is never an agentgateway controller to write status for.
func (c *Controller) SetStatusWrite(bool, *status.Manager) {}
