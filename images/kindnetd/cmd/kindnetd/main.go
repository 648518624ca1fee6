// Command kindnetd is an offline stand-in for kind's kindnetd: kind's own
// sources live in a nested module the Go module proxy does not serve.
//
// It does the same three jobs on each node, driven by kind's unmodified
// default CNI manifest (env POD_SUBNET, hostNetwork, NET_ADMIN):
//   - writes the CNI config (ptp + host-local for the node's podCIDR, portmap),
//   - routes other nodes' podCIDRs and masquerades pod traffic leaving the pod subnet,
//   - enforces NetworkPolicy, ingress and egress, with iptables chains hooked into
//     FORWARD and INPUT (policy.go says why both).
//
// NetworkPolicy enforcement here uses plain iptables because the CI kernels
// lack nft_queue, which upstream's nfqueue-based enforcement needs.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

const (
	cniConfigPath = "/etc/cni/net.d/10-kindnet.conflist"
	resyncPeriod  = 30 * time.Second
)

func main() {
	podSubnet := os.Getenv("POD_SUBNET")
	if podSubnet == "" {
		log.Fatal("POD_SUBNET is not set")
	}
	nodeName, err := os.Hostname()
	if err != nil {
		log.Fatalf("hostname: %v", err)
	}
	config, err := rest.InClusterConfig()
	if err != nil {
		log.Fatalf("in-cluster config: %v", err)
	}
	client := kubernetes.NewForConfigOrDie(config)
	ctx := context.Background()

	factory := informers.NewSharedInformerFactory(client, resyncPeriod)
	nodes := factory.Core().V1().Nodes()
	pods := factory.Core().V1().Pods()
	namespaces := factory.Core().V1().Namespaces()
	policies := factory.Networking().V1().NetworkPolicies()

	changed := make(chan struct{}, 1)
	notify := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { signal(changed) },
		UpdateFunc: func(any, any) { signal(changed) },
		DeleteFunc: func(any) { signal(changed) },
	}
	for _, informer := range []cache.SharedIndexInformer{
		nodes.Informer(), pods.Informer(), namespaces.Informer(), policies.Informer(),
	} {
		if _, err := informer.AddEventHandler(notify); err != nil {
			log.Fatalf("event handler: %v", err)
		}
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	log.Printf("kindnetd stand-in running on node %s, pod subnet %s", nodeName, podSubnet)

	ticker := time.NewTicker(resyncPeriod)
	defer ticker.Stop()
	for {
		allNodes, _ := nodes.Lister().List(labels.Everything())
		if err := syncNetwork(nodeName, podSubnet, allNodes); err != nil {
			log.Printf("network sync: %v", err)
		}
		allPods, _ := pods.Lister().List(labels.Everything())
		allNamespaces, _ := namespaces.Lister().List(labels.Everything())
		allPolicies, _ := policies.Lister().List(labels.Everything())
		rules := policyRules(allPolicies, allPods, allNamespaces)
		if err := applyPolicyRules(rules); err != nil {
			log.Printf("network policy sync: %v", err)
		}
		select {
		case <-changed:
			time.Sleep(200 * time.Millisecond) // let a burst of events settle
		case <-ticker.C:
		}
	}
}

func signal(changed chan<- struct{}) {
	select {
	case changed <- struct{}{}:
	default:
	}
}

// syncNetwork writes the CNI config for this node and keeps routes and masquerading right.
func syncNetwork(nodeName, podSubnet string, nodes []*v1.Node) error {
	for _, node := range nodes {
		cidr := node.Spec.PodCIDR
		if cidr == "" {
			continue
		}
		if node.Name == nodeName {
			if err := writeCNIConfig(cidr); err != nil {
				return err
			}
			continue
		}
		if ip := internalIP(node); ip != "" {
			if err := run("ip", "route", "replace", cidr, "via", ip); err != nil {
				return err
			}
		}
	}
	return ensureMasquerade(podSubnet)
}

func internalIP(node *v1.Node) string {
	for _, address := range node.Status.Addresses {
		if address.Type == v1.NodeInternalIP && !strings.Contains(address.Address, ":") {
			return address.Address
		}
	}
	return ""
}

func writeCNIConfig(podCIDR string) error {
	config := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "kindnet",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": false,
      "mtu": 1500,
      "ipam": {
        "type": "host-local",
        "dataDir": "/run/cni-ipam-state",
        "routes": [{"dst": "0.0.0.0/0"}],
        "ranges": [[{"subnet": %q}]]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, podCIDR)
	if current, err := os.ReadFile(cniConfigPath); err == nil && string(current) == config {
		return nil
	}
	tmp := cniConfigPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(config), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, cniConfigPath)
}

func ensureMasquerade(podSubnet string) error {
	rules := fmt.Sprintf(`*nat
:KINDNET-MASQ - [0:0]
-A KINDNET-MASQ -d %[1]s -j RETURN
-A KINDNET-MASQ -m addrtype --dst-type LOCAL -j RETURN
-A KINDNET-MASQ -s %[1]s -j MASQUERADE
COMMIT
`, podSubnet)
	if err := restore(rules); err != nil {
		return err
	}
	return ensureJump("nat", "POSTROUTING", "KINDNET-MASQ")
}

// ensureJump keeps "-j target" the first rule of chain: kube-proxy's own
// rules (FORWARD accepts NodePort traffic) must not decide before NetworkPolicy.
func ensureJump(table, chain, target string) error {
	out, err := exec.Command("iptables", "-t", table, "-S", chain).Output()
	if err != nil {
		return fmt.Errorf("iptables -S %s: %v", chain, err)
	}
	jump := fmt.Sprintf("-A %s -j %s", chain, target)
	rules := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(rules) > 1 && rules[1] == jump {
		return nil
	}
	for run("iptables", "-t", table, "-D", chain, "-j", target) == nil {
	}
	return run("iptables", "-t", table, "-I", chain, "1", "-j", target)
}

func restore(rules string) error {
	cmd := exec.Command("iptables-restore", "--noflush", "--wait")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore: %v: %s", err, out)
	}
	return nil
}

func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}
