package main

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The tests render the rules for a small cluster and run packets through them with a tiny
// evaluator of the iptables subset policyRules writes, so they check verdicts, not text.

const (
	appNS     = "app"
	otherNS   = "other"
	gatewayIP = "10.244.0.10"
	dbIP      = "10.244.0.11"
	dnsIP     = "10.244.0.2"
	fakeDNSIP = "10.244.0.12" // labelled like kube-dns, in the app's namespace
	otherIP   = "10.244.0.20"
	nodeIP    = "172.18.0.2"
	metadata  = "169.254.169.254"
)

type packet struct {
	src, dst, proto string
	port            int
	state           string // NEW unless set
}

func tcp(src, dst string, port int) packet {
	return packet{src: src, dst: dst, proto: "tcp", port: port}
}
func udp(src, dst string, port int) packet {
	return packet{src: src, dst: dst, proto: "udp", port: port}
}

type iptRule struct {
	match  map[string]string
	target string
}

// parseRules reads iptables-restore input of the form policyRules writes.
func parseRules(t *testing.T, text string) map[string][]iptRule {
	t.Helper()
	chains := map[string][]iptRule{}
	for _, line := range strings.Split(text, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "-A" {
			continue
		}
		r := iptRule{match: map[string]string{}}
		for i := 2; i < len(fields); i++ {
			switch fields[i] {
			case "-j":
				r.target = fields[i+1]
				i = len(fields)
			case "-m":
				i++ // the match module name; its options follow
			default:
				r.match[fields[i]] = fields[i+1]
				i++
			}
		}
		if r.target == "" {
			t.Fatalf("rule without a target: %q", line)
		}
		chains[fields[1]] = append(chains[fields[1]], r)
	}
	return chains
}

// verdict runs p through chain: "ACCEPT" when it falls through (back to the hook, whose
// policy accepts), else the REJECT or DROP that stopped it.
func verdict(t *testing.T, chains map[string][]iptRule, chain string, p packet) string {
	t.Helper()
	for _, r := range chains[chain] {
		if !matches(t, r.match, p) {
			continue
		}
		switch r.target {
		case "RETURN":
			return "ACCEPT"
		case "REJECT", "DROP":
			return r.target
		default:
			if v := verdict(t, chains, r.target, p); v != "ACCEPT" {
				return v
			}
		}
	}
	return "ACCEPT"
}

func matches(t *testing.T, match map[string]string, p packet) bool {
	state := p.state
	if state == "" {
		state = "NEW"
	}
	for flag, value := range match {
		var ok bool
		switch flag {
		case "-s":
			ok = inRange(t, value, p.src)
		case "-d":
			ok = inRange(t, value, p.dst)
		case "-p":
			ok = value == p.proto
		case "--dport":
			low, high, _ := strings.Cut(value, ":")
			if high == "" {
				high = low
			}
			ok = atoi(t, low) <= p.port && p.port <= atoi(t, high)
		case "--ctstate":
			ok = slices.Contains(strings.Split(value, ","), state)
		case "--reject-with":
			ok = true
		default:
			t.Fatalf("the evaluator does not know %s", flag)
		}
		if !ok {
			return false
		}
	}
	return true
}

func inRange(t *testing.T, cidr, address string) bool {
	t.Helper()
	if !strings.Contains(cidr, "/") {
		cidr += "/32"
	}
	prefix, err := netip.ParsePrefix(cidr)
	if err != nil {
		t.Fatalf("bad address in rule: %q", cidr)
	}
	return prefix.Contains(netip.MustParseAddr(address))
}

func atoi(t *testing.T, text string) int {
	n, err := strconv.Atoi(text)
	if err != nil {
		t.Fatalf("bad port %q", text)
	}
	return n
}

// --- the cluster -------------------------------------------------------------------------

func namespace(name string) *v1.Namespace {
	return &v1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: name, Labels: map[string]string{"kubernetes.io/metadata.name": name},
	}}
}

func pod(ns, name, ip string, labels map[string]string, ports ...v1.ContainerPort) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "main", Ports: ports}}},
		Status:     v1.PodStatus{Phase: v1.PodRunning, PodIP: ip},
	}
}

func cluster() ([]*v1.Pod, []*v1.Namespace) {
	pods := []*v1.Pod{
		pod(appNS, "gateway", gatewayIP, map[string]string{"name": "gateway", "part-of": "app"}),
		pod(appNS, "postgres", dbIP, map[string]string{"name": "postgres", "part-of": "app"},
			v1.ContainerPort{Name: "postgres", ContainerPort: 5432, Protocol: v1.ProtocolTCP}),
		pod(appNS, "fake-dns", fakeDNSIP, map[string]string{"k8s-app": "kube-dns"}),
		pod("kube-system", "coredns", dnsIP, map[string]string{"k8s-app": "kube-dns"}),
		pod(otherNS, "web", otherIP, map[string]string{"name": "web"}),
	}
	return pods, []*v1.Namespace{namespace(appNS), namespace("kube-system"), namespace(otherNS)}
}

func selector(labels map[string]string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: labels}
}

func port(protocol v1.Protocol, value intstr.IntOrString) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &protocol, Port: &value}
}

func policy(name string, podSelector map[string]string, types ...networkingv1.PolicyType) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: name},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: *selector(podSelector), PolicyTypes: types},
	}
}

// appPolicies are manifests/base/networkpolicy.yaml in this test's labels.
func appPolicies() []*networkingv1.NetworkPolicy {
	denyIngress := policy("deny-ingress", map[string]string{"part-of": "app"}, networkingv1.PolicyTypeIngress)
	denyEgress := policy("deny-egress", map[string]string{"part-of": "app"}, networkingv1.PolicyTypeEgress)
	dbIngress := policy("postgres-ingress", map[string]string{"name": "postgres"}, networkingv1.PolicyTypeIngress)
	dbIngress.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
		From:  []networkingv1.NetworkPolicyPeer{{PodSelector: selector(map[string]string{"name": "gateway"})}},
		Ports: []networkingv1.NetworkPolicyPort{port(v1.ProtocolTCP, intstr.FromInt32(5432))},
	}}
	gatewayEgress := policy("gateway-egress", map[string]string{"name": "gateway"}, networkingv1.PolicyTypeEgress)
	gatewayEgress.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{
		{
			To: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: selector(map[string]string{"kubernetes.io/metadata.name": "kube-system"}),
				PodSelector:       selector(map[string]string{"k8s-app": "kube-dns"}),
			}},
			Ports: []networkingv1.NetworkPolicyPort{
				port(v1.ProtocolUDP, intstr.FromInt32(53)), port(v1.ProtocolTCP, intstr.FromInt32(53)),
			},
		},
		{
			To:    []networkingv1.NetworkPolicyPeer{{PodSelector: selector(map[string]string{"name": "postgres"})}},
			Ports: []networkingv1.NetworkPolicyPort{port(v1.ProtocolTCP, intstr.FromString("postgres"))},
		},
	}
	return []*networkingv1.NetworkPolicy{denyIngress, denyEgress, dbIngress, gatewayEgress}
}

type expectation struct {
	packet
	want string
}

func checkAll(t *testing.T, policies []*networkingv1.NetworkPolicy, cases []expectation) {
	t.Helper()
	pods, namespaces := cluster()
	rules := policyRules(policies, pods, namespaces)
	chains := parseRules(t, rules)
	for _, c := range cases {
		if got := verdict(t, chains, policyChain, c.packet); got != c.want {
			t.Errorf("%+v: got %s, want %s\nrules:\n%s", c.packet, got, c.want, rules)
		}
	}
}

// --- the tests ---------------------------------------------------------------------------

func TestNoPolicyAllowsEverything(t *testing.T) {
	checkAll(t, nil, []expectation{
		{tcp(gatewayIP, otherIP, 80), "ACCEPT"},
		{tcp(gatewayIP, metadata, 80), "ACCEPT"},
		{udp(otherIP, dbIP, 5432), "ACCEPT"},
	})
}

func TestAppPoliciesAllowExactlyDNSAndPostgres(t *testing.T) {
	checkAll(t, appPolicies(), []expectation{
		// what the gateway needs
		{udp(gatewayIP, dnsIP, 53), "ACCEPT"},
		{tcp(gatewayIP, dnsIP, 53), "ACCEPT"},
		{tcp(gatewayIP, dbIP, 5432), "ACCEPT"}, // a named port, resolved on the destination
		// everything else it might try
		{udp(gatewayIP, fakeDNSIP, 53), "DROP"}, // kube-dns labels, wrong namespace
		{tcp(gatewayIP, dnsIP, 8080), "REJECT"},
		{tcp(gatewayIP, dbIP, 5433), "REJECT"},
		{tcp(gatewayIP, otherIP, 80), "REJECT"}, // another namespace's Service endpoint
		{tcp(gatewayIP, nodeIP, 10250), "REJECT"},
		{tcp(gatewayIP, metadata, 80), "REJECT"},
		{udp(gatewayIP, "8.8.8.8", 53), "DROP"},
		// PostgreSQL sends nothing first, and admits only the gateway
		{udp(dbIP, dnsIP, 53), "DROP"},
		{tcp(dbIP, otherIP, 80), "REJECT"},
		{tcp(otherIP, dbIP, 5432), "REJECT"},
		// replies of allowed connections pass both ways
		{packet{src: dbIP, dst: gatewayIP, proto: "tcp", port: 40000, state: "ESTABLISHED"}, "ACCEPT"},
		{packet{src: dnsIP, dst: gatewayIP, proto: "udp", port: 40000, state: "ESTABLISHED"}, "ACCEPT"},
		// pods no policy selects are untouched
		{tcp(otherIP, metadata, 80), "ACCEPT"},
		{tcp(otherIP, gatewayIP, 5000), "REJECT"}, // the gateway's ingress is denied here
	})
}

func TestEgressNeedsBothEndsToAllow(t *testing.T) {
	open := policy("gateway-egress-anywhere", map[string]string{"name": "gateway"}, networkingv1.PolicyTypeEgress)
	open.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{}} // no peers, no ports: anything
	denyIngress := policy("deny-ingress", map[string]string{"part-of": "app"}, networkingv1.PolicyTypeIngress)
	checkAll(t, []*networkingv1.NetworkPolicy{open, denyIngress}, []expectation{
		{tcp(gatewayIP, metadata, 80), "ACCEPT"},
		{tcp(gatewayIP, dbIP, 5432), "REJECT"}, // PostgreSQL's ingress still says no
	})
}

func TestPolicyTypesDefaultToEgressWhenEgressRulesExist(t *testing.T) {
	implicit := policy("implicit", map[string]string{"name": "gateway"})
	implicit.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{
		Ports: []networkingv1.NetworkPolicyPort{port(v1.ProtocolTCP, intstr.FromInt32(443))},
	}}
	checkAll(t, []*networkingv1.NetworkPolicy{implicit}, []expectation{
		{tcp(gatewayIP, otherIP, 443), "ACCEPT"}, // no `to`: any destination on that port
		{tcp(gatewayIP, otherIP, 80), "REJECT"},
		{tcp(otherIP, gatewayIP, 5000), "REJECT"}, // and Ingress, always
	})
}

func TestIPBlockWithExcept(t *testing.T) {
	blocks := policy("blocks", map[string]string{"name": "gateway"}, networkingv1.PolicyTypeEgress)
	blocks.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{
		{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{"169.254.0.0/16", "10.0.0.0/8"}}},
		{IPBlock: &networkingv1.IPBlock{CIDR: "2001:db8::/32"}}, // IPv6: allows nothing, breaks nothing
	}}}
	checkAll(t, []*networkingv1.NetworkPolicy{blocks}, []expectation{
		{tcp(gatewayIP, nodeIP, 10250), "ACCEPT"},
		{tcp(gatewayIP, "8.8.8.8", 443), "ACCEPT"},
		{tcp(gatewayIP, "169.254.255.255", 80), "REJECT"},
		{tcp(gatewayIP, metadata, 80), "REJECT"},
		{tcp(gatewayIP, otherIP, 80), "REJECT"},
		{tcp(gatewayIP, "169.253.255.255", 80), "ACCEPT"},
		{tcp(gatewayIP, "169.255.0.0", 80), "ACCEPT"},
		{tcp(gatewayIP, "11.0.0.0", 80), "ACCEPT"},
	})
	pods, namespaces := cluster()
	if rules := policyRules([]*networkingv1.NetworkPolicy{blocks}, pods, namespaces); strings.Contains(rules, "::") {
		t.Errorf("an IPv6 range reached the IPv4 rules:\n%s", rules)
	}
}

func TestIPBlockRanges(t *testing.T) {
	cases := []struct {
		cidr   string
		except []string
		want   []string
	}{
		{"10.0.0.0/8", nil, []string{"10.0.0.0/8"}},
		{"10.1.2.3/8", nil, []string{"10.0.0.0/8"}}, // masked
		{"10.0.0.0/8", []string{"10.0.0.0/8"}, nil},
		{"10.0.0.0/8", []string{"0.0.0.0/0"}, nil},
		{"10.0.0.0/8", []string{"192.168.0.0/16"}, []string{"10.0.0.0/8"}},
		{"10.0.0.0/30", []string{"10.0.0.1/32"}, []string{"10.0.0.2/31", "10.0.0.0/32"}},
		{"10.0.0.0/24", []string{"10.0.0.0/26", "10.0.0.128/25"}, []string{"10.0.0.64/26"}},
		{"fd00::/8", nil, nil},
		{"not-a-cidr", nil, nil},
	}
	for _, c := range cases {
		var got []string
		for _, r := range ipBlockRanges(&networkingv1.IPBlock{CIDR: c.cidr, Except: c.except}) {
			got = append(got, r.String())
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s except %v: got %v, want %v", c.cidr, c.except, got, c.want)
		}
	}
}

func TestEveryRangeLeftIsCoveredOnce(t *testing.T) {
	ranges := ipBlockRanges(&networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{"169.254.169.254/32"}})
	if len(ranges) != 32 {
		t.Fatalf("want 32 prefixes around one address, got %d: %v", len(ranges), ranges)
	}
	for _, probe := range []string{"0.0.0.0", "169.254.169.253", "169.254.169.255", "255.255.255.255", metadata} {
		covering := 0
		for _, r := range ranges {
			if r.Contains(netip.MustParseAddr(probe)) {
				covering++
			}
		}
		want := 1
		if probe == metadata {
			want = 0
		}
		if covering != want {
			t.Errorf("%s is in %d of the ranges, want %d", probe, covering, want)
		}
	}
}

func TestPoliciesOfOtherNamespacesAndFinishedPodsDoNotApply(t *testing.T) {
	elsewhere := policy("elsewhere", map[string]string{"name": "gateway"}, networkingv1.PolicyTypeEgress)
	elsewhere.Namespace = otherNS
	pods, namespaces := cluster()
	pods[0].Status.Phase = v1.PodSucceeded
	rules := policyRules(append(appPolicies(), elsewhere), pods, namespaces)
	if strings.Contains(rules, gatewayIP) {
		t.Errorf("rules name a finished pod:\n%s", rules)
	}
	checkAll(t, []*networkingv1.NetworkPolicy{elsewhere}, []expectation{
		{tcp(gatewayIP, metadata, 80), "ACCEPT"},
	})
}
