package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

const (
	policyChain  = "KINDNET-NP"
	ingressChain = "KINDNET-NP-INGRESS"
	egressChain  = "KINDNET-NP-EGRESS"
)

// policyHooks are the filter chains whose traffic meets the policy chain first. Both run
// after kube-proxy's DNAT (nat PREROUTING), so a connection to a Service ClusterIP is
// matched on the endpoint it was sent to, as NetworkPolicy peers name pods, not Services:
//   - FORWARD: pod to pod, and pod to anywhere off the node (a link-local metadata address);
//   - INPUT: pod to the node itself (its addresses, the pods' gateway address, and
//     ClusterIPs of host-network endpoints such as the API server).
//
// OUTPUT is not hooked: traffic from the node to its pods (kubelet probes) is always
// allowed, and its replies pass as ESTABLISHED. Kubernetes leaves pod-to-own-node traffic
// to the implementation; like Calico and Cilium, this one treats it as the pod's egress, so
// a pod whose egress is restricted cannot reach the node's own services (kubelet, a
// metadata proxy) unless a rule allows it.
var policyHooks = []string{"FORWARD", "INPUT"}

// peer is one address a rule allows: a pod (for named ports) or an ipBlock CIDR.
type peer struct {
	address string
	pod     *v1.Pod
}

// direction renders one side of the policy: ingress matches traffic to the
// selected pod (-d), egress traffic from it (-s).
type direction struct {
	chain     string
	selfFlag  string
	peerFlag  string
	policyFor networkingv1.PolicyType
}

var (
	ingress = direction{ingressChain, "-d", "-s", networkingv1.PolicyTypeIngress}
	egress  = direction{egressChain, "-s", "-d", networkingv1.PolicyTypeEgress}
)

// policyRules renders the whole filter-table state as iptables-restore input.
// Allowed flows RETURN to the hook (policyHooks); the rest of an isolated pod's traffic is
// rejected (TCP, with a reset) or dropped.
func policyRules(policies []*networkingv1.NetworkPolicy, pods []*v1.Pod, namespaces []*v1.Namespace) string {
	var b strings.Builder
	b.WriteString("*filter\n")
	for _, chain := range []string{policyChain, ingressChain, egressChain} {
		fmt.Fprintf(&b, ":%s - [0:0]\n", chain)
	}
	fmt.Fprintf(&b, "-A %s -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN\n", policyChain)
	fmt.Fprintf(&b, "-A %s -j %s\n", policyChain, egressChain)
	fmt.Fprintf(&b, "-A %s -j %s\n", policyChain, ingressChain)
	for _, pod := range pods {
		if !routable(pod) {
			continue
		}
		for _, dir := range []direction{ingress, egress} {
			writePodRules(&b, dir, pod, policies, pods, namespaces)
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

func applyPolicyRules(rules string) error {
	if err := restore(rules); err != nil {
		return err
	}
	for _, hook := range policyHooks {
		if err := ensureJump("filter", hook, policyChain); err != nil {
			return err
		}
	}
	return nil
}

func routable(pod *v1.Pod) bool {
	done := pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed
	return pod.Status.PodIP != "" && !pod.Spec.HostNetwork && !done
}

func writePodRules(b *strings.Builder, dir direction, pod *v1.Pod, policies []*networkingv1.NetworkPolicy,
	pods []*v1.Pod, namespaces []*v1.Namespace) {
	isolated := false
	self := fmt.Sprintf("-A %s %s %s", dir.chain, dir.selfFlag, pod.Status.PodIP)
	for _, policy := range policies {
		if policy.Namespace != pod.Namespace || !selects(&policy.Spec.PodSelector, pod.Labels) || !hasType(policy, dir.policyFor) {
			continue
		}
		isolated = true
		for _, rule := range rulesOf(policy, dir) {
			peers, anyPeer := resolvePeers(rule.peers, policy.Namespace, pods, namespaces)
			if anyPeer {
				peers = []peer{{}}
			}
			for _, p := range peers {
				destination := pod
				if dir.policyFor == networkingv1.PolicyTypeEgress {
					destination = p.pod
				}
				other := ""
				if p.address != "" {
					other = fmt.Sprintf(" %s %s", dir.peerFlag, p.address)
				}
				for _, port := range portMatches(rule.ports, destination) {
					fmt.Fprintf(b, "%s%s%s -j RETURN\n", self, other, port)
				}
			}
		}
	}
	if isolated {
		fmt.Fprintf(b, "%s -p tcp -j REJECT --reject-with tcp-reset\n", self)
		fmt.Fprintf(b, "%s -j DROP\n", self)
	}
}

type rule struct {
	peers []networkingv1.NetworkPolicyPeer
	ports []networkingv1.NetworkPolicyPort
}

func rulesOf(policy *networkingv1.NetworkPolicy, dir direction) []rule {
	var rules []rule
	if dir.policyFor == networkingv1.PolicyTypeIngress {
		for _, r := range policy.Spec.Ingress {
			rules = append(rules, rule{r.From, r.Ports})
		}
		return rules
	}
	for _, r := range policy.Spec.Egress {
		rules = append(rules, rule{r.To, r.Ports})
	}
	return rules
}

func hasType(policy *networkingv1.NetworkPolicy, want networkingv1.PolicyType) bool {
	types := policy.Spec.PolicyTypes
	if len(types) == 0 {
		// API default: Ingress always, Egress when egress rules exist.
		return want == networkingv1.PolicyTypeIngress || len(policy.Spec.Egress) > 0
	}
	for _, t := range types {
		if t == want {
			return true
		}
	}
	return false
}

func selects(selector *metav1.LabelSelector, podLabels map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(selector)
	return err == nil && s.Matches(labels.Set(podLabels))
}

// resolvePeers turns a rule's peers into addresses; no peers means any address.
func resolvePeers(policyPeers []networkingv1.NetworkPolicyPeer, namespace string, pods []*v1.Pod,
	namespaces []*v1.Namespace) ([]peer, bool) {
	if len(policyPeers) == 0 {
		return nil, true
	}
	nsLabels := map[string]labels.Set{}
	for _, ns := range namespaces {
		nsLabels[ns.Name] = labels.Set(ns.Labels)
	}
	var peers []peer
	for _, pp := range policyPeers {
		if pp.IPBlock != nil {
			for _, block := range ipBlockRanges(pp.IPBlock) {
				peers = append(peers, peer{address: block.String()})
			}
			continue
		}
		for _, pod := range pods {
			if !routable(pod) {
				continue
			}
			inNamespace := pod.Namespace == namespace
			if pp.NamespaceSelector != nil {
				s, err := metav1.LabelSelectorAsSelector(pp.NamespaceSelector)
				inNamespace = err == nil && s.Matches(nsLabels[pod.Namespace])
			}
			podMatches := pp.PodSelector == nil || selects(pp.PodSelector, pod.Labels)
			if inNamespace && podMatches {
				peers = append(peers, peer{address: pod.Status.PodIP, pod: pod})
			}
		}
	}
	return peers, false
}

// ipBlockRanges is an ipBlock as plain CIDRs: its cidr minus every except range, split
// into the prefixes that cover what is left. The cluster is IPv4 only (iptables, not
// ip6tables), so an IPv6 block allows nothing here rather than break the whole ruleset.
func ipBlockRanges(block *networkingv1.IPBlock) []netip.Prefix {
	cidr, err := netip.ParsePrefix(block.CIDR)
	if err != nil || !cidr.Addr().Is4() {
		return nil
	}
	ranges := []netip.Prefix{cidr.Masked()}
	for _, text := range block.Except {
		hole, err := netip.ParsePrefix(text)
		if err != nil || !hole.Addr().Is4() {
			continue
		}
		var left []netip.Prefix
		for _, r := range ranges {
			left = append(left, without(r, hole.Masked())...)
		}
		ranges = left
	}
	return ranges
}

// without is block minus hole, as the fewest prefixes: halve the block, keep the half the
// hole is not in, and go on into the other half until the hole itself is reached.
func without(block, hole netip.Prefix) []netip.Prefix {
	if hole.Bits() <= block.Bits() && hole.Contains(block.Addr()) {
		return nil // the hole covers the whole block
	}
	if !block.Contains(hole.Addr()) {
		return []netip.Prefix{block} // disjoint
	}
	low := netip.PrefixFrom(block.Addr(), block.Bits()+1)
	start := block.Addr().As4()
	binary.BigEndian.PutUint32(start[:], binary.BigEndian.Uint32(start[:])|1<<(31-block.Bits()))
	high := netip.PrefixFrom(netip.AddrFrom4(start), block.Bits()+1)
	if low.Contains(hole.Addr()) {
		return append([]netip.Prefix{high}, without(low, hole)...)
	}
	return append([]netip.Prefix{low}, without(high, hole)...)
}

// portMatches renders a rule's ports as iptables matches; no ports means every port.
func portMatches(ports []networkingv1.NetworkPolicyPort, destination *v1.Pod) []string {
	if len(ports) == 0 {
		return []string{""}
	}
	var matches []string
	for _, port := range ports {
		protocol := v1.ProtocolTCP
		if port.Protocol != nil {
			protocol = *port.Protocol
		}
		proto := strings.ToLower(string(protocol))
		if port.Port == nil {
			matches = append(matches, " -p "+proto)
			continue
		}
		number := port.Port.IntValue()
		if number == 0 {
			number = namedPort(destination, port.Port.StrVal, protocol)
		}
		if number == 0 {
			continue // a named port the destination does not have allows nothing
		}
		portRange := fmt.Sprint(number)
		if port.EndPort != nil {
			portRange = fmt.Sprintf("%d:%d", number, *port.EndPort)
		}
		matches = append(matches, fmt.Sprintf(" -p %s --dport %s", proto, portRange))
	}
	return matches
}

func namedPort(pod *v1.Pod, name string, protocol v1.Protocol) int {
	if pod == nil {
		return 0
	}
	for _, container := range pod.Spec.Containers {
		for _, port := range container.Ports {
			if port.Name == name && port.Protocol == protocol {
				return int(port.ContainerPort)
			}
		}
	}
	return 0
}
