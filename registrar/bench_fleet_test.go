package registrar

// The synthetic fleet of the registrar's benchmarks (bench_test.go): a few real workload API servers
// standing in for many CAPI Clusters. Argo CD allows one cluster Secret per server URL (and fleetbridge
// refuses duplicates), so every Cluster needs its own URL: each gets its own loopback address
// 127.<10+server>.x.y on a shared port, where a TCP forwarder (a child process, see init below) passes
// the bytes on to its workload server. The TLS session is end to end between the registrar and the
// real kube-apiserver; the kubeconfig names "localhost" as tls-server-name, which envtest's serving
// certificate carries, so verification stays on.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/owned"
	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// forwarderEnv, when set in the environment of this test binary, turns it into a TCP forwarder (see
// runForwarder) before TestMain starts an API server.
const forwarderEnv = "FLEETBRIDGE_BENCH_FORWARDER"

func init() {
	if spec := os.Getenv(forwarderEnv); spec != "" {
		os.Exit(runForwarder(spec))
	}
}

// benchFleetLabel selects a benchmark fleet's Clusters.
const benchFleetLabel = "bench.fleetbridge.io/fleet"

// addressesPerOctet is how many host addresses a forwarder uses in each 127.a.b.0/24.
const addressesPerOctet = 250

// forwarderAddress is the i-th loopback address a forwarder for server s listens on.
func forwarderAddress(server, i int) string {
	return fmt.Sprintf("127.%d.%d.%d", 10+server, i/addressesPerOctet, i%addressesPerOctet+1)
}

// runForwarder listens on count loopback addresses (forwarderAddress) with one port and copies every
// connection to backend, delaying each direction by half the round-trip time rtt. It prints
// "ready <port>" once listening and exits when stdin closes, so it never outlives the benchmark. Spec:
// "<server index> <count> <backend host:port> <one-way delay in ns>".
func runForwarder(spec string) int {
	var server, count int
	var backend string
	var delay time.Duration
	if _, err := fmt.Sscanf(spec, "%d %d %s %d", &server, &count, &backend, &delay); err != nil {
		fmt.Fprintln(os.Stderr, "forwarder: bad spec:", err)
		return 2
	}
	var listeners []net.Listener
	var port int
	for attempt := 0; attempt < 10 && len(listeners) < count; attempt++ {
		for _, l := range listeners {
			_ = l.Close()
		}
		listeners = listeners[:0]
		first, err := net.Listen("tcp", net.JoinHostPort(forwarderAddress(server, 0), "0"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "forwarder:", err)
			return 1
		}
		listeners = append(listeners, first)
		port = first.Addr().(*net.TCPAddr).Port
		for i := 1; i < count; i++ {
			l, err := net.Listen("tcp", net.JoinHostPort(forwarderAddress(server, i), strconv.Itoa(port)))
			if err != nil {
				break // port taken on one address: start over with another port
			}
			listeners = append(listeners, l)
		}
	}
	if len(listeners) < count {
		fmt.Fprintf(os.Stderr, "forwarder: could listen on only %d of %d addresses\n", len(listeners), count)
		return 1
	}
	for _, l := range listeners {
		go func() {
			for {
				in, err := l.Accept()
				if err != nil {
					return
				}
				go forward(in, backend, delay)
			}
		}()
	}
	fmt.Printf("ready %d\n", port)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

func forward(in net.Conn, backend string, delay time.Duration) {
	defer in.Close()
	out, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer out.Close()
	done := make(chan struct{}, 2)
	go func() { _ = copyDelayed(out, in, delay); _ = out.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { _ = copyDelayed(in, out, delay); _ = in.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	<-done
	<-done
}

// copyDelayed copies src to dst, delivering each chunk delay after it was read (one-way latency).
func copyDelayed(dst io.Writer, src io.Reader, delay time.Duration) error {
	if delay <= 0 {
		_, err := io.Copy(dst, src)
		return err
	}
	type chunk struct {
		due  time.Time
		data []byte
	}
	chunks := make(chan chunk, 1024)
	errc := make(chan error, 1)
	go func() {
		var err error
		for c := range chunks {
			time.Sleep(time.Until(c.due))
			if err == nil {
				_, err = dst.Write(c.data)
			}
		}
		errc <- err
	}()
	buf := make([]byte, 32*1024)
	var err error
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			chunks <- chunk{due: time.Now().Add(delay), data: append([]byte(nil), buf[:n]...)}
		}
		if rerr != nil {
			if rerr != io.EOF {
				err = rerr
			}
			break
		}
	}
	close(chunks)
	if werr := <-errc; err == nil {
		err = werr
	}
	return err
}

// forwarder is a running forwarder child process.
type forwarder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	port  int
}

func startForwarder(server, count int, backend string, rtt time.Duration) (*forwarder, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d %d %s %d", forwarderEnv, server, count, backend, int64(rtt/2)))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	f := &forwarder{cmd: cmd, stdin: stdin}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if _, scanErr := fmt.Sscanf(line, "ready %d", &f.port); err != nil || scanErr != nil {
		f.stop()
		return nil, fmt.Errorf("forwarder for server %d did not start: %q %v %v", server, line, err, scanErr)
	}
	return f, nil
}

func (f *forwarder) stop() {
	_ = f.stdin.Close()
	done := make(chan struct{})
	go func() { _ = f.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = f.cmd.Process.Kill()
		<-done
	}
}

// benchWorkloadRTT is the round-trip time the forwarders add between the registrar and the workload
// servers (FLEETBRIDGE_BENCH_WORKLOAD_RTT, a Go duration; none by default): real workload clusters are
// a network away, so every sequential call of a reconcile costs at least one round trip.
func benchWorkloadRTT() time.Duration {
	d, _ := time.ParseDuration(os.Getenv("FLEETBRIDGE_BENCH_WORKLOAD_RTT"))
	return d
}

// benchFleet is a set of workload servers, their forwarders, and the CAPI Clusters published for them.
type benchFleet struct {
	name       string
	namespaces []string
	servers    []*testenv.Workload
	forwarders []*forwarder
	capacity   int // addresses each forwarder listens on
	userMu     []sync.Mutex
	published  int
	// hostCluster maps a Cluster's server host:port to its index, for per-cluster call counts.
	hostCluster sync.Map
}

// newBenchFleet starts servers workload API servers and forwarders with room for capacity Clusters in
// all. Nothing is published yet (see publish). Everything stops when tb ends.
func newBenchFleet(tb testing.TB, name string, servers, capacity int) *benchFleet {
	tb.Helper()
	f := &benchFleet{name: name, capacity: (capacity + servers - 1) / servers, userMu: make([]sync.Mutex, servers)}
	for k := 0; k < 10; k++ {
		f.namespaces = append(f.namespaces, fmt.Sprintf("%s-%d", name, k))
	}
	errs := make([]error, servers)
	f.servers = make([]*testenv.Workload, servers)
	var wg sync.WaitGroup
	for s := 0; s < servers; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.servers[s], errs[s] = testenv.StartWorkload(name, fmt.Sprintf("server-%d", s))
		}()
	}
	wg.Wait()
	tb.Cleanup(func() {
		for _, w := range f.servers {
			if w != nil {
				_ = w.Stop()
			}
		}
	})
	for _, err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
	for s, w := range f.servers {
		backend := strings.TrimPrefix(w.Server(), "https://")
		fw, err := startForwarder(s, f.capacity, backend, benchWorkloadRTT())
		if err != nil {
			tb.Fatal(err)
		}
		f.forwarders = append(f.forwarders, fw)
		tb.Cleanup(fw.stop)
	}
	tb.Cleanup(func() { f.unpublish(tb) })
	return f
}

// clusterKey is the i-th Cluster of the fleet.
func (f *benchFleet) clusterKey(i int) types.NamespacedName {
	return types.NamespacedName{Namespace: f.namespaces[i%len(f.namespaces)], Name: fmt.Sprintf("c-%05d", i)}
}

// clusterServer is the i-th Cluster's URL and the kubeconfig reaching it through a forwarder.
func (f *benchFleet) clusterServer(i int) (string, []byte, error) {
	s := i % len(f.servers)
	idx := i / len(f.servers)
	if idx >= f.capacity {
		return "", nil, fmt.Errorf("cluster %d is beyond the fleet's capacity", i)
	}
	server := fmt.Sprintf("https://%s", net.JoinHostPort(forwarderAddress(s, idx), strconv.Itoa(f.forwarders[s].port)))
	// Each Cluster gets its own admin client certificate, as each CAPI control plane issues its own:
	// the registrar then builds one TLS transport per Cluster, as it does for a real fleet.
	f.userMu[s].Lock()
	user, err := f.servers[s].Env.ControlPlane.AddUser(envtest.User{Name: fmt.Sprintf("c-%05d-admin", i), Groups: []string{"system:masters"}}, nil)
	f.userMu[s].Unlock()
	if err != nil {
		return "", nil, err
	}
	admin, err := user.KubeConfig()
	if err != nil {
		return "", nil, err
	}
	cfg, err := clientcmd.Load(admin)
	if err != nil {
		return "", nil, err
	}
	for _, c := range cfg.Clusters {
		c.Server = server
		c.TLSServerName = "localhost"
	}
	kc, err := clientcmd.Write(*cfg)
	return server, kc, err
}

// publish makes the fleet hold n Clusters (publishing those it lacks), as CAPI would.
func (f *benchFleet) publish(tb testing.TB, ctx context.Context, n int) {
	tb.Helper()
	for _, ns := range f.namespaces {
		if err := mgmt.EnsureNamespace(ctx, ns, nil); err != nil {
			tb.Fatal(err)
		}
	}
	var next atomic.Int64
	next.Store(int64(f.published))
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				server, kc, err := f.clusterServer(i)
				if err == nil {
					key := f.clusterKey(i)
					err = mgmt.PublishCluster(ctx, key.Namespace, key.Name, server, kc,
						testenv.ClusterOptions{Labels: map[string]string{benchFleetLabel: f.name}})
					for _, s := range kubeadmCertificateSecrets(key) {
						if err == nil {
							err = client.IgnoreAlreadyExists(mgmt.Client.Create(ctx, s))
						}
					}
					f.hostCluster.Store(strings.TrimPrefix(server, "https://"), i)
				}
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		tb.Fatal(firstErr)
	}
	f.published = max(f.published, n)
}

// kubeadmCertificateSecrets stand in for the other Secrets Cluster API's kubeadm control plane writes
// for a Cluster, with the same cluster-name label as its kubeconfig: the cluster CA, etcd CA,
// service-account key pair and front-proxy CA, each a certificate and a key (sizes as kubeadm's RSA
// 2048 ones; the bytes are filler). The registrar's kubeconfig Secret informer lists them too.
func kubeadmCertificateSecrets(cluster types.NamespacedName) []*corev1.Secret {
	certificate := bytes.Repeat([]byte("c"), 1150)
	key := bytes.Repeat([]byte("k"), 1700)
	var out []*corev1.Secret
	for _, purpose := range []string{"ca", "etcd", "sa", "proxy"} {
		out = append(out, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: cluster.Namespace, Name: cluster.Name + "-" + purpose,
				Labels: map[string]string{clusterv1.ClusterNameLabel: cluster.Name}},
			Type: "cluster.x-k8s.io/secret",
			Data: map[string][]byte{corev1.TLSCertKey: certificate, corev1.TLSPrivateKeyKey: key},
		})
	}
	return out
}

// unpublish deletes the fleet's Clusters and kubeconfig Secrets.
func (f *benchFleet) unpublish(tb testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, ns := range f.namespaces {
		for _, obj := range []client.Object{&clusterv1.Cluster{}, &corev1.Secret{}} {
			if err := mgmt.Client.DeleteAllOf(ctx, obj, client.InNamespace(ns)); err != nil && !apierrors.IsNotFound(err) {
				tb.Logf("cleanup of %s: %v", ns, err)
			}
		}
	}
}

// preCreateAccess creates, on every workload server, the ServiceAccount and ClusterRoleBinding a
// Registration would. In a real fleet each Cluster is its own server and the registrar creates both
// there; here a few hundred Clusters share a server, so concurrent first reconciles would race on
// one object (AlreadyExists, then a 5 s backoff) in a way a real fleet cannot.
func (f *benchFleet) preCreateAccess(tb testing.TB, ctx context.Context, reg *fleetv1.Registration) {
	tb.Helper()
	ns, name := serviceAccount(reg)
	access := workloadAccess{reg: reg, cluster: types.NamespacedName{Namespace: "bench", Name: "shared"}}
	for _, w := range f.servers {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: access.labels()}}
		crb := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: access.bindingName(), Labels: access.labels()},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole(reg)},
		}
		for _, obj := range []client.Object{sa, crb} {
			if err := w.Client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
				tb.Fatal(err)
			}
		}
	}
}

// callCounter counts the requests passing through a transport, by kind, and the successful writes of
// Secrets in one namespace, noting when the target-th distinct Secret was written.
type callCounter struct {
	mu       sync.Mutex
	calls    map[string]int // "<METHOD> <resource>" -> count
	latency  map[string]time.Duration
	perHost  map[string]int // host -> /version probes
	writes   int            // every request that is not GET or HEAD
	secretNS string
	secrets  map[string]int // Secret name in secretNS -> successful writes
	target   int
	doneAt   time.Time
	done     chan struct{}
	// secretWriteTimes are when each successful write of a Secret in secretNS returned.
	secretWriteTimes []time.Time
}

func newCallCounter(secretNS string, target int) *callCounter {
	return &callCounter{calls: map[string]int{}, latency: map[string]time.Duration{}, perHost: map[string]int{}, secretNS: secretNS,
		secrets: map[string]int{}, target: target, done: make(chan struct{})}
}

func (c *callCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		kind := req.Method + " " + resourceOf(req.URL.Path)
		write := req.Method != http.MethodGet && req.Method != http.MethodHead
		c.mu.Lock()
		c.calls[kind]++
		if write {
			c.writes++
		}
		if req.URL.Path == "/version" {
			c.perHost[req.URL.Host]++
		}
		c.mu.Unlock()
		prefix := "/api/v1/namespaces/" + c.secretNS + "/secrets/"
		name, named := strings.CutPrefix(req.URL.Path, prefix)
		if req.Method == http.MethodPost && req.URL.Path+"/" == prefix {
			name, named = createdName(req), true // a create names its Secret in the body
		}
		start := time.Now()
		resp, err := rt.RoundTrip(req)
		c.mu.Lock()
		c.latency[kind] += time.Since(start)
		c.mu.Unlock()
		if write && err == nil && resp.StatusCode < 300 && req.Method != http.MethodDelete && named {
			c.mu.Lock()
			c.secrets[name]++
			c.secretWriteTimes = append(c.secretWriteTimes, time.Now())
			if len(c.secrets) == c.target && c.secrets[name] == 1 {
				c.doneAt = time.Now()
				close(c.done)
			}
			c.mu.Unlock()
		}
		return resp, err
	})
}

// createdName is the metadata.name of the object a create request sends (JSON); the body is read and
// put back.
func createdName(req *http.Request) string {
	if req.Body == nil {
		return ""
	}
	raw, err := io.ReadAll(req.Body)
	req.Body.Close()
	req.Body = io.NopCloser(bytes.NewReader(raw))
	if err != nil {
		return ""
	}
	// JSON or protobuf, whichever the client sent.
	obj, _, err := clientgoscheme.Codecs.UniversalDeserializer().Decode(raw, nil, nil)
	if err != nil {
		return ""
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return ""
	}
	return m.GetName()
}

// resourceOf reduces an API path to its resource (and subresource), dropping namespaces and names.
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return path
	}
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) > 2 {
		parts = parts[2:]
	}
	switch len(parts) {
	case 0:
		return path
	case 1:
		return parts[0] + " (list)"
	case 3:
		return parts[0] + "/" + parts[2]
	default:
		return parts[0]
	}
}

func (c *callCounter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = map[string]int{}
	c.latency = map[string]time.Duration{}
	c.perHost = map[string]int{}
	c.writes = 0
}

func (c *callCounter) snapshot() (calls map[string]int, writes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.calls))
	for k, v := range c.calls {
		out[k] = v
	}
	return out, c.writes
}

func (c *callCounter) total() int {
	calls, _ := c.snapshot()
	n := 0
	for _, v := range calls {
		n += v
	}
	return n
}

func (c *callCounter) secretWrites() (distinct, total int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.secrets {
		total += n
	}
	return len(c.secrets), total
}

// minProbes is the fewest /version probes any of the fleet's first n Clusters received.
func (c *callCounter) minProbes(f *benchFleet, n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	lowest := -1
	seen := 0
	for host, count := range c.perHost {
		if v, ok := f.hostCluster.Load(host); ok && v.(int) < n {
			seen++
			if lowest < 0 || count < lowest {
				lowest = count
			}
		}
	}
	if seen < n {
		return 0
	}
	return lowest
}

// report lists the counted calls, most frequent first, with their count per cluster (per) and mean
// latency as this process saw it (client-side rate-limit waits included).
func (c *callCounter) report(per float64) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.calls))
	for k := range c.calls {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if c.calls[keys[i]] != c.calls[keys[j]] {
			return c.calls[keys[i]] > c.calls[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var b strings.Builder
	for _, k := range keys {
		n := c.calls[k]
		fmt.Fprintf(&b, "\n    %-44s %7d  %6.2f/cluster  mean %s", k, n, float64(n)/per, (c.latency[k] / time.Duration(n)).Round(10*time.Microsecond))
	}
	return b.String()
}

// benchRegistration creates a Registration selecting the fleet, writing Argo CD Secrets in argoNS.
func benchRegistration(tb testing.TB, ctx context.Context, f *benchFleet, name, argoNS string, mode fleetv1.CredentialsMode) *fleetv1.Registration {
	tb.Helper()
	if err := mgmt.EnsureNamespace(ctx, argoNS, nil); err != nil {
		tb.Fatal(err)
	}
	reg := &fleetv1.Registration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: fleetv1.RegistrationSpec{
			ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{benchFleetLabel: f.name}},
			ArgoCD:          &fleetv1.ArgoCDTarget{Namespace: argoNS},
			Credentials:     fleetv1.Credentials{Mode: mode},
		},
	}
	if err := mgmt.Client.Create(ctx, reg); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { dropRegistration(tb, reg, argoNS) })
	return reg
}

// dropRegistration removes a Registration without a running registrar (so without its finalizer's
// cleanup) and the Secrets written for it.
func dropRegistration(tb testing.TB, reg *fleetv1.Registration, argoNS string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cur := &fleetv1.Registration{}
	if err := mgmt.Client.Get(ctx, client.ObjectKeyFromObject(reg), cur); err == nil {
		if len(cur.Finalizers) > 0 {
			base := cur.DeepCopy()
			cur.Finalizers = nil
			if err := mgmt.Client.Patch(ctx, cur, client.MergeFrom(base)); err != nil {
				tb.Logf("cleanup: %v", err)
			}
		}
		if err := mgmt.Client.Delete(ctx, cur); err != nil && !apierrors.IsNotFound(err) {
			tb.Logf("cleanup: %v", err)
		}
	}
	if err := mgmt.Client.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(argoNS),
		client.MatchingLabels{owned.LabelRegistration: reg.Name}); err != nil {
		tb.Logf("cleanup: %v", err)
	}
}

// countSecrets counts the Secrets a Registration wrote in namespace (metadata only).
func countSecrets(ctx context.Context, namespace, registration string) (int, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	err := mgmt.Client.List(ctx, list, client.InNamespace(namespace), client.MatchingLabels{owned.LabelRegistration: registration})
	return len(list.Items), err
}

// cpuGroup is a set of processes whose CPU time a benchmark accounts for together.
type cpuGroup struct {
	name string
	pids []int
}

// cpuGroups are the processes a fleet benchmark runs: this process (the registrar, or the client of a
// floor), the management API server and its etcd, the workload API servers and their etcds, and the
// forwarders. Processes that cannot be found are left out.
func (f *benchFleet) cpuGroups() []cpuGroup {
	procs := processArgs()
	serverPids := func(host string) (apiserver, etcd []int) {
		port := host[strings.LastIndex(host, ":")+1:]
		for pid, args := range procs {
			if !slices.Contains(args, "--secure-port="+port) {
				continue
			}
			apiserver = append(apiserver, pid)
			for _, a := range args {
				if url, ok := strings.CutPrefix(a, "--etcd-servers="); ok {
					for epid, eargs := range procs {
						if slices.Contains(eargs, "--listen-client-urls="+url) {
							etcd = append(etcd, epid)
						}
					}
				}
			}
		}
		return apiserver, etcd
	}
	groups := []cpuGroup{{name: "this-process", pids: []int{os.Getpid()}}}
	a, e := serverPids(strings.TrimSuffix(mgmt.Config.Host, "/"))
	groups = append(groups, cpuGroup{"mgmt-apiserver", a}, cpuGroup{"mgmt-etcd", e})
	var wa, we, fw []int
	for _, w := range f.servers {
		a, e := serverPids(w.Server())
		wa, we = append(wa, a...), append(we, e...)
	}
	for _, x := range f.forwarders {
		fw = append(fw, x.cmd.Process.Pid)
	}
	return append(groups, cpuGroup{"workload-apiservers", wa}, cpuGroup{"workload-etcds", we}, cpuGroup{"forwarders", fw})
}

// processArgs maps every visible process to its command line.
func processArgs() map[int][]string {
	out := map[int][]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || len(data) == 0 {
			continue
		}
		out[pid] = strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
	}
	return out
}

// cpuTime is the user+system CPU time a process used so far.
func cpuTime(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndex(s, ")")+1:])
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// cpuSnapshot is the CPU time of each group at one moment.
type cpuSnapshot map[string]time.Duration

func takeCPU(groups []cpuGroup) cpuSnapshot {
	out := cpuSnapshot{}
	for _, g := range groups {
		for _, pid := range g.pids {
			out[g.name] += cpuTime(pid)
		}
	}
	return out
}

// since formats the CPU each group used since before, and returns the total.
func (s cpuSnapshot) since(groups []cpuGroup, before cpuSnapshot) (string, time.Duration) {
	var b strings.Builder
	var total time.Duration
	for _, g := range groups {
		d := s[g.name] - before[g.name]
		total += d
		fmt.Fprintf(&b, " %s %.2fs,", g.name, d.Seconds())
	}
	return strings.TrimSuffix(b.String(), ","), total
}
