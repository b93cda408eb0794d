// istiod-local runs the real istiod (istio.io/istio/pilot/pkg/bootstrap.Server) on one machine
// without a Kubernetes API server: configuration comes from a directory of Istio YAML files and
// the server is handed Istio's in-memory fake Kubernetes client in place of a real one.
//
// Plain pilot-discovery 1.30 panics when it has no Kubernetes client (the service-entry
// controller asks a nil multicluster controller for namespaces), so this launcher exists for
// tests only. See docs/real-peers.md.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"reflect"
	"syscall"
	"time"
	"unsafe"

	"github.com/spf13/cobra"

	"istio.io/istio/pilot/pkg/bootstrap"
	"istio.io/istio/pkg/cluster"
	"istio.io/istio/pkg/kube"
	"istio.io/istio/pkg/log"
	"istio.io/istio/pkg/version"
)

type launchFlags struct {
	configDir, meshConfig, networksConfig              string
	httpAddr, grpcAddr, secureGRPCAddr, monitoringAddr string
	domain, clusterID                                  string
	shutdown                                           time.Duration
}

func main() {
	logOpts := log.DefaultOptions()
	var f launchFlags
	root := &cobra.Command{
		Use:          "istiod-local",
		Short:        "Runs istiod with file-based config and an in-memory Kubernetes client (tests only)",
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(*cobra.Command, []string) error {
			if err := log.Configure(logOpts); err != nil {
				return err
			}
			return run(f)
		},
	}
	fl := root.Flags()
	fl.StringVar(&f.configDir, "configDir", "./config", "directory of Istio YAML (ServiceEntry, WorkloadEntry, ...) watched for changes")
	fl.StringVar(&f.meshConfig, "meshConfig", "./etc/istio/config/mesh", "mesh config file")
	fl.StringVar(&f.networksConfig, "networksConfig", "./etc/istio/config/meshNetworks", "mesh networks file")
	fl.StringVar(&f.httpAddr, "httpAddr", "127.0.0.1:8080", "HTTP address (/ready, /debug)")
	fl.StringVar(&f.grpcAddr, "grpcAddr", "127.0.0.1:15010", "plaintext xDS address")
	fl.StringVar(&f.secureGRPCAddr, "secureGRPCAddr", "127.0.0.1:15012", "TLS xDS + CA address")
	fl.StringVar(&f.monitoringAddr, "monitoringAddr", "127.0.0.1:15014", "monitoring address (/metrics)")
	fl.StringVar(&f.domain, "domain", "cluster.local", "DNS domain suffix")
	fl.StringVar(&f.clusterID, "clusterID", "Kubernetes", "cluster id (pilot-discovery's default)")
	fl.DurationVar(&f.shutdown, "shutdownDuration", time.Second, "graceful shutdown duration")
	logOpts.AttachCobraFlags(root)
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Prints the Istio build this launcher was compiled from",
		Run:   func(c *cobra.Command, _ []string) { fmt.Fprintln(c.OutOrStdout(), version.Info.LongForm()) },
	})
	if err := root.Execute(); err != nil {
		os.Exit(1)
	}
}

// refuseCrashTraps fails fast on inputs known to crash or mislead istiod in this mode.
func refuseCrashTraps() error {
	for _, name := range []string{"KUBERNETES_SERVICE_HOST", "TOKEN_ISSUER"} {
		if os.Getenv(name) != "" {
			return fmt.Errorf("%s must not be set for istiod-local", name)
		}
	}
	if v := os.Getenv("PILOT_ENABLE_AGENTGATEWAY"); v != "" && v != "false" {
		return fmt.Errorf("PILOT_ENABLE_AGENTGATEWAY=%s is not supported: this build has no agentgateway controller", v)
	}
	return nil
}

func run(f launchFlags) error {
	if err := refuseCrashTraps(); err != nil {
		return err
	}
	args := bootstrap.NewPilotArgs(func(p *bootstrap.PilotArgs) {
		// p.Namespace defaults to POD_NAMESPACE, else istio-system (as in pilot-discovery)
		p.ServerOptions = bootstrap.DiscoveryServerOptions{
			HTTPAddr:       f.httpAddr,
			GRPCAddr:       f.grpcAddr,
			SecureGRPCAddr: f.secureGRPCAddr,
			MonitoringAddr: f.monitoringAddr,
			TLSOptions:     bootstrap.TLSOptions{TLSMinVersion: bootstrap.TLSMinVersion1_2},
		}
		p.RegistryOptions.FileDir = f.configDir
		p.RegistryOptions.KubeOptions.DomainSuffix = f.domain
		p.RegistryOptions.KubeOptions.ClusterID = cluster.ID(f.clusterID)
		p.MeshConfigFile = f.meshConfig
		p.NetworksConfigFile = f.networksConfig
		p.ShutdownDuration = f.shutdown
		p.CtrlZOptions = nil
	})
	if err := args.Complete(); err != nil {
		return err
	}
	var hookErr error
	server, err := bootstrap.NewServer(args, func(s *bootstrap.Server) {
		hookErr = setUnexported(s, "kubeClient", kube.NewFakeClient())
	})
	if hookErr != nil {
		return hookErr
	}
	if err != nil {
		return fmt.Errorf("creating istiod: %w", err)
	}
	stop := make(chan struct{})
	if err := server.Start(stop); err != nil {
		return fmt.Errorf("starting istiod: %w", err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	<-sigs
	close(stop)
	server.WaitUntilCompletion()
	return nil
}

// setUnexported assigns value to the unexported field name of *target; it fails loudly when a
// future Istio renames the field or changes its type.
func setUnexported(target any, name string, value any) error {
	obj := reflect.ValueOf(target).Elem()
	field := obj.FieldByName(name)
	if !field.IsValid() {
		return fmt.Errorf("%s has no field %q: update istiod-local for this Istio version", obj.Type(), name)
	}
	v := reflect.ValueOf(value)
	if !v.Type().AssignableTo(field.Type()) {
		return fmt.Errorf("%s.%s has type %s, cannot hold %s", obj.Type(), name, field.Type(), v.Type())
	}
	reflect.NewAt(field.Type(), unsafe.Pointer(field.UnsafeAddr())).Elem().Set(v)
	return nil
}
