package main

import (
	"fmt"
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
// Allowed flows RETURN to FORWARD; the rest of an isolated pod's traffic is rejected.
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
	return ensureJump("filter", "FORWARD", policyChain)
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
				source := ""
				if p.address != "" {
					source = fmt.Sprintf(" %s %s", dir.peerFlag, p.address)
				}
				for _, port := range portMatches(rule.ports, destination) {
					fmt.Fprintf(b, "%s%s%s -j RETURN\n", self, source, port)
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
// ipBlock "except" ranges are not supported by this stand-in.
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
			peers = append(peers, peer{address: pp.IPBlock.CIDR})
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
