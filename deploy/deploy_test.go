package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/internal/config"
)

// tool finds a program for a check, or skips the test: the skip names what is
// missing, and SLUICE_REQUIRE_<NAME> (set by .ci/run for the tools it
// installs) turns the skip into a failure.
func tool(t *testing.T, name string, candidates ...string) string {
	t.Helper()
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	env := "SLUICE_REQUIRE_" + strings.ToUpper(name)
	if os.Getenv(env) != "" {
		t.Fatalf("%s is required (%s is set) but none of %v runs here", name, env, candidates)
	}
	t.Skipf("no %s here (looked for %v); set %s to make this a failure", name, candidates, env)
	return ""
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// parseSluiceConfig loads a sluice config with the real loader.
func parseSluiceConfig(t *testing.T, label string, b []byte) *config.File {
	t.Helper()
	f, err := config.Parse(b)
	if err != nil {
		t.Fatalf("%s is refused by sluice's config loader: %v", label, err)
	}
	return f
}

// Every sluice config the compose cluster and the systemd units carry loads
// with sluice's own config loader (the chart's are checked where it renders).
func TestEverySluiceConfigOfTheDeployFilesParses(t *testing.T) {
	for _, p := range []string{"compose/gateway.yaml", "compose/agent.yaml", "systemd/gateway.yaml", "systemd/agent.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f := parseSluiceConfig(t, p, b)
		if f.TLS.Dir == "" || f.TLS.Name == "" {
			t.Errorf("%s names no certificate (tls.dir, tls.name)", p)
		}
		if strings.Contains(p, "gateway") && (f.Gateway.Listen == "" || f.Gateway.APIToken == "") {
			t.Errorf("%s: a gateway beyond loopback needs gateway.listen and gateway.apiToken", p)
		}
	}
}

// lines are a file's lines.
func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(b), "\n")
}

// The Dockerfile builds a static binary in a Go stage, runs it as a non-root
// user in a minimal image, and exposes each of sluice's default ports.
func TestTheDockerfileBuildsStaticRunsNonRootAndExposesEveryPort(t *testing.T) {
	var froms, exposed []string
	var user, all, workdir, cache string
	for _, l := range lines(t, "../Dockerfile") {
		f := strings.Fields(l)
		if len(f) < 2 || strings.HasPrefix(l, "#") {
			continue
		}
		all += l + "\n"
		switch f[0] {
		case "FROM":
			froms = append(froms, f[1])
		case "USER":
			user = f[1]
		case "WORKDIR":
			workdir = f[1]
		case "ENV":
			if v, ok := strings.CutPrefix(f[1], "XDG_CACHE_HOME="); ok {
				cache = v
			}
		case "EXPOSE":
			exposed = append(exposed, f[1:]...)
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[0], "golang:") || !strings.Contains(froms[len(froms)-1], "distroless/static") {
		t.Errorf("stages %v: want a golang build stage and a distroless/static final one", froms)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/sluice"} {
		if !strings.Contains(all, want) {
			t.Errorf("the build does not use %s", want)
		}
	}
	if user == "" || strings.HasPrefix(user, "0") || strings.HasPrefix(user, "root") {
		t.Errorf("USER %q: want a non-root user", user)
	}
	// The Wasm compilation cache must be writable with a read-only root: under
	// the working directory, which the chart mounts a volume on.
	if workdir != "/var/lib/sluice" || !strings.HasPrefix(cache, workdir+"/") {
		t.Errorf("WORKDIR %q, XDG_CACHE_HOME %q: want the cache under /var/lib/sluice", workdir, cache)
	}
	// gateway.listen, iceUDPPort, moq, cluster.bind (TCP and UDP), agent.api, agent.metrics.
	for _, p := range []string{"8080/tcp", "8189/udp", "4443/udp", "7946/tcp", "7946/udp", "7443/tcp", "9464/tcp"} {
		if !slices.Contains(exposed, p) {
			t.Errorf("EXPOSE lacks %s (exposed: %v)", p, exposed)
		}
	}
}

// composeFile is the part of compose.yaml the checks read.
type composeFile struct {
	Services map[string]struct {
		Command []string `yaml:"command"`
		Volumes []string `yaml:"volumes"`
		Ports   []string `yaml:"ports"`
		Image   string   `yaml:"image"`
	} `yaml:"services"`
}

// The compose cluster has two gateways and two agents from the image, a
// Prometheus that scrapes each of them, and a Grafana provisioned with the
// datasource and the dashboard directory; every file it mounts exists.
func TestTheComposeClusterScrapesEveryMemberAndProvisionsGrafana(t *testing.T) {
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	var scrape []string
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			if src, _, _ := strings.Cut(v, ":"); strings.HasPrefix(src, ".") {
				if _, err := os.Stat(src); err != nil {
					t.Errorf("%s mounts %s, which is missing", name, src)
				}
			}
		}
		if len(s.Command) > 0 && (s.Command[0] == "gateway" || s.Command[0] == "agent") {
			port := "9464"
			if s.Command[0] == "gateway" {
				port = "8080"
			}
			scrape = append(scrape, name+":"+port)
			if !slices.Contains(s.Command, "--name") {
				t.Errorf("%s has no --name: members sharing a certificate need their own names", name)
			}
		}
	}
	slices.Sort(scrape)
	if want := []string{"agent-1:9464", "agent-2:9464", "gateway-1:8080", "gateway-2:8080"}; !slices.Equal(scrape, want) {
		t.Fatalf("members %v, want %v", scrape, want)
	}
	prom, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range scrape {
		if !strings.Contains(string(prom), target) {
			t.Errorf("prometheus.yml does not scrape %s", target)
		}
	}
	for _, p := range []string{"grafana/provisioning/datasources/prometheus.yaml", "grafana/provisioning/dashboards/sluice.yaml"} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
}

// docker compose config (or docker-compose's) accepts the file.
func TestComposeConfigAcceptsTheComposeFile(t *testing.T) {
	if p, err := exec.LookPath("docker"); err == nil && exec.Command(p, "compose", "version").Run() == nil {
		run(t, p, "compose", "-f", "compose.yaml", "config", "--quiet")
		return
	}
	p := tool(t, "compose", "docker-compose")
	run(t, p, "-f", "compose.yaml", "config", "--quiet")
}

// The image builds and its binary runs, where a container daemon answers.
func TestTheImageBuildsAndRuns(t *testing.T) {
	p := tool(t, "docker", "docker")
	if out, err := exec.Command(p, "info").CombinedOutput(); err != nil {
		msg := strings.TrimSpace(string(out))
		if i := strings.LastIndex(msg, "\n"); i >= 0 {
			msg = msg[i+1:]
		}
		if os.Getenv("SLUICE_REQUIRE_DOCKER") != "" {
			t.Fatalf("docker is required but its daemon does not answer: %s", msg)
		}
		t.Skipf("no container daemon here (docker info: %s); set SLUICE_REQUIRE_DOCKER to make this a failure", msg)
	}
	run(t, p, "build", "-t", "sluice:deploy-test", "..")
	if out := run(t, p, "run", "--rm", "sluice:deploy-test", "version"); !strings.HasPrefix(out, "sluice ") {
		t.Fatalf("sluice version in the image said %q", out)
	}
}

// unit is a systemd unit's settings, by key (the last value wins, as in systemd).
func unit(t *testing.T, path string) map[string]string {
	t.Helper()
	kv := map[string]string{}
	for _, l := range lines(t, path) {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			kv[k] = v
		}
	}
	return kv
}

// The units verify with systemd-analyze (with ExecStart pointing at a binary
// that exists), run non-root and hardened, reload with SIGHUP, and give a drain
// more time than the sample configs' drainTimeout.
func TestTheSystemdUnitsVerifyAndOutwaitTheDrain(t *testing.T) {
	for _, c := range []struct{ unit, config string }{
		{"sluice-gateway.service", "systemd/gateway.yaml"},
		{"sluice-agent.service", "systemd/agent.yaml"},
	} {
		u := unit(t, filepath.Join("systemd", c.unit))
		for k, want := range map[string]string{
			"User": "sluice", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "StateDirectory": "sluice",
			"Restart": "on-failure", "ExecReload": "/bin/kill -HUP $MAINPID", "KillMode": "mixed",
		} {
			if u[k] != want {
				t.Errorf("%s: %s=%q, want %q", c.unit, k, u[k], want)
			}
		}
		if u["LimitNOFILE"] == "" || !strings.HasPrefix(u["ExecStart"], "/usr/local/bin/sluice ") {
			t.Errorf("%s: LimitNOFILE=%q ExecStart=%q", c.unit, u["LimitNOFILE"], u["ExecStart"])
		}
		stop, err := time.ParseDuration(u["TimeoutStopSec"])
		if err != nil {
			t.Fatalf("%s: TimeoutStopSec: %v", c.unit, err)
		}
		b, _ := os.ReadFile(c.config)
		f := parseSluiceConfig(t, c.config, b)
		drain := max(time.Duration(f.Gateway.DrainTimeout), time.Duration(f.Agent.DrainTimeout), 30*time.Second)
		if stop <= drain {
			t.Errorf("%s: TimeoutStopSec %s does not outwait the drain (%s)", c.unit, stop, drain)
		}
	}
	analyze := tool(t, "systemd", "systemd-analyze")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var paths []string
	for _, name := range []string{"sluice-gateway.service", "sluice-agent.service"} {
		b, _ := os.ReadFile(filepath.Join("systemd", name))
		p := filepath.Join(dir, name)
		os.WriteFile(p, bytes.ReplaceAll(b, []byte("/usr/local/bin/sluice"), []byte(exe)), 0o644)
		paths = append(paths, p)
	}
	// verify exits 0 on an unknown key or a bad value, only printing it: any
	// line about the units is a failure.
	out, err := exec.Command(analyze, append([]string{"verify"}, paths...)...).CombinedOutput()
	var mine []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "sluice-") {
			mine = append(mine, l)
		}
	}
	if err != nil || len(mine) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

var helmTool = regexp.MustCompile(`^v3\.`)

func helm(t *testing.T) string {
	t.Helper()
	cache, _ := os.UserCacheDir()
	candidates := []string{os.Getenv("SLUICE_HELM"), "helm", filepath.Join(cache, "sluice-ci", "helm-v3.22.0", "helm")}
	return tool(t, "helm", slices.DeleteFunc(candidates, func(s string) bool { return s == "" })...)
}

// object is the part of a rendered object the checks read.
type object struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		ClusterIP                string            `yaml:"clusterIP"`
		PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
		Selector                 yaml.Node         `yaml:"selector"`
		Ports                    []port            `yaml:"ports"`
		Template                 podTemplate       `yaml:"template"`
		ScaleTargetRef           map[string]string `yaml:"scaleTargetRef"`
	} `yaml:"spec"`
}

type port struct {
	Name          string `yaml:"name"`
	Port          int    `yaml:"port"`
	ContainerPort int    `yaml:"containerPort"`
	Protocol      string `yaml:"protocol"`
}

type podTemplate struct {
	Metadata struct {
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec struct {
		SecurityContext struct {
			RunAsNonRoot bool `yaml:"runAsNonRoot"`
			RunAsUser    int  `yaml:"runAsUser"`
		} `yaml:"securityContext"`
		TerminationGracePeriodSeconds int         `yaml:"terminationGracePeriodSeconds"`
		Containers                    []container `yaml:"containers"`
		Volumes                       []struct {
			Name      string `yaml:"name"`
			ConfigMap struct {
				Name string `yaml:"name"`
			} `yaml:"configMap"`
			Secret struct {
				SecretName string `yaml:"secretName"`
				Items      []struct {
					Key string `yaml:"key"`
				} `yaml:"items"`
			} `yaml:"secret"`
		} `yaml:"volumes"`
	} `yaml:"spec"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
	} `yaml:"httpGet"`
	TCPSocket map[string]any `yaml:"tcpSocket"`
}

type container struct {
	Args            []string `yaml:"args"`
	Ports           []port   `yaml:"ports"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
	} `yaml:"securityContext"`
	LivenessProbe  probe `yaml:"livenessProbe"`
	ReadinessProbe probe `yaml:"readinessProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

func render(t *testing.T, h string, set ...string) map[string]object {
	t.Helper()
	args := []string{"template", "rel", "helm/sluice"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	dec := yaml.NewDecoder(strings.NewReader(run(t, h, args...)))
	objs := map[string]object{}
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("helm template output: %v", err)
		}
		if o.Kind != "" {
			objs[o.Kind+"/"+o.Metadata.Name] = o
		}
	}
}

func hasPort(ps []port, n int, proto string) bool {
	return slices.ContainsFunc(ps, func(p port) bool { return (p.Port == n || p.ContainerPort == n) && p.Protocol == proto })
}

// The chart lints, and renders gateways as a Deployment behind a Service with
// HTTP TCP, ICE UDP and MoQ UDP, agents as a StatefulSet, a headless gossip
// Service over both, non-root pods with the PKI Secret mounted where their
// config looks for it, probes on /healthz and /readyz, configs sluice accepts,
// and the HPA when asked.
func TestTheHelmChartLintsAndRendersWhatItPromises(t *testing.T) {
	h := helm(t)
	if out := run(t, h, "version", "--short"); !helmTool.MatchString(strings.TrimSpace(out)) {
		t.Fatalf("helm version %q: want Helm 3", out)
	}
	run(t, h, "lint", "--strict", "helm/sluice")
	objs := render(t, h)
	gw, agent := objs["Deployment/rel-sluice-gateway"], objs["StatefulSet/rel-sluice-agent"]
	svc, gossip := objs["Service/rel-sluice-gateway"], objs["Service/rel-sluice-gossip"]
	cm := objs["ConfigMap/rel-sluice-config"]
	if gw.Kind == "" || agent.Kind == "" || svc.Kind == "" || gossip.Kind == "" || cm.Kind == "" {
		t.Fatalf("rendered %v; want the gateway Deployment and Service, the agent StatefulSet, the gossip Service and the ConfigMap", keys(objs))
	}
	if _, ok := objs["HorizontalPodAutoscaler/rel-sluice-agent"]; ok {
		t.Error("the HPA is rendered without agent.autoscaling.enabled")
	}
	if !hasPort(svc.Spec.Ports, 8080, "TCP") || !hasPort(svc.Spec.Ports, 8189, "UDP") || !hasPort(svc.Spec.Ports, 4443, "UDP") {
		t.Errorf("gateway Service ports %+v: want 8080/TCP, 8189/UDP, 4443/UDP", svc.Spec.Ports)
	}
	if gossip.Spec.ClusterIP != "None" || !gossip.Spec.PublishNotReadyAddresses || !hasPort(gossip.Spec.Ports, 7946, "TCP") || !hasPort(gossip.Spec.Ports, 7946, "UDP") {
		t.Errorf("gossip Service: clusterIP %q, publishNotReadyAddresses %v, ports %+v", gossip.Spec.ClusterIP, gossip.Spec.PublishNotReadyAddresses, gossip.Spec.Ports)
	}
	var sel map[string]string
	_ = gossip.Spec.Selector.Decode(&sel)
	for role, o := range map[string]object{"gateway": gw, "agent": agent} {
		checkPod(t, role, o.Spec.Template, sel, cm)
	}
	if c := gw.Spec.Template.Spec.Containers[0]; c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("gateway probes: liveness %q, readiness %q", c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path)
	}

	objs = render(t, h, "agent.autoscaling.enabled=true", "agent.autoscaling.purpose=record")
	hpa, ok := objs["HorizontalPodAutoscaler/rel-sluice-agent"]
	if !ok || hpa.Spec.ScaleTargetRef["kind"] != "StatefulSet" || hpa.Spec.ScaleTargetRef["name"] != "rel-sluice-agent" {
		t.Fatalf("with autoscaling: HPA %+v", hpa.Spec.ScaleTargetRef)
	}
	if out := run(t, h, "template", "rel", "helm/sluice", "--set", "agent.autoscaling.enabled=true", "--set", "agent.autoscaling.purpose=record"); !strings.Contains(out, "sluice_cluster_desired_agents") || !strings.Contains(out, `purpose: "record"`) {
		t.Errorf("the HPA does not follow sluice_cluster_desired_agents{purpose=record}")
	}
}

// checkPod checks one role's pod template against the chart's promises.
func checkPod(t *testing.T, role string, p podTemplate, gossipSel map[string]string, cm object) {
	t.Helper()
	for k, v := range gossipSel {
		if p.Metadata.Labels[k] != v {
			t.Errorf("%s pods are not selected by the gossip Service (%s=%q)", role, k, p.Metadata.Labels[k])
		}
	}
	s := p.Spec
	if !s.SecurityContext.RunAsNonRoot || s.SecurityContext.RunAsUser == 0 || len(s.Containers) != 1 {
		t.Fatalf("%s pod: securityContext %+v, %d containers", role, s.SecurityContext, len(s.Containers))
	}
	c := s.Containers[0]
	if c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation || !c.SecurityContext.ReadOnlyRootFilesystem {
		t.Errorf("%s container: securityContext %+v", role, c.SecurityContext)
	}
	if !hasPort(c.Ports, 7946, "TCP") || !hasPort(c.Ports, 7946, "UDP") {
		t.Errorf("%s container ports %+v: no gossip", role, c.Ports)
	}
	// The config the args name is the ConfigMap's, and loads; its tls.dir is
	// where the Secret is mounted, with the member's certificate in it.
	i := slices.Index(c.Args, "--config")
	if len(c.Args) == 0 || c.Args[0] != role || i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("%s args %v", role, c.Args)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	if mounts["state"] != "/var/lib/sluice" || mounts["tmp"] != "/tmp" {
		t.Errorf("%s: with a read-only root, /var/lib/sluice and /tmp need volumes (mounts %v)", role, mounts)
	}
	cfgPath := c.Args[i+1]
	if filepath.Dir(cfgPath) != mounts["config"] {
		t.Fatalf("%s reads %s, but the ConfigMap is mounted at %q", role, cfgPath, mounts["config"])
	}
	f := parseSluiceConfig(t, "the chart's "+filepath.Base(cfgPath), []byte(cm.Data[filepath.Base(cfgPath)]))
	if f.TLS.Dir != mounts["pki"] {
		t.Errorf("%s: tls.dir %q, but the PKI is mounted at %q", role, f.TLS.Dir, mounts["pki"])
	}
	drain := max(time.Duration(f.Gateway.DrainTimeout), time.Duration(f.Agent.DrainTimeout), 30*time.Second)
	if time.Duration(s.TerminationGracePeriodSeconds)*time.Second <= drain {
		t.Errorf("%s: terminationGracePeriodSeconds %d does not outwait the drain (%s)", role, s.TerminationGracePeriodSeconds, drain)
	}
	var secret []string
	for _, v := range s.Volumes {
		if v.Name == "pki" {
			if v.Secret.SecretName == "" {
				t.Errorf("%s: the pki volume is not a Secret", role)
			}
			for _, it := range v.Secret.Items {
				secret = append(secret, it.Key)
			}
		}
	}
	for _, want := range []string{"ca.crt", "gossip.key", f.TLS.Name + ".crt", f.TLS.Name + ".key"} {
		if !slices.Contains(secret, want) {
			t.Errorf("%s: the PKI Secret mount %v lacks %s", role, secret, want)
		}
	}
	if slices.Contains(secret, "ca.key") {
		t.Errorf("%s: the CA's private key is mounted", role)
	}
}

func keys(m map[string]object) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// flagsIn are the --flags of a command line.
func flagsIn(args []string) []string {
	var out []string
	for _, a := range args {
		if strings.HasPrefix(a, "--") {
			out = append(out, strings.TrimPrefix(a, "--"))
		}
	}
	return out
}

// Every flag the compose services, the chart's containers and the units pass
// to sluice is one its subcommand takes (what `sluice SUBCOMMAND -h` lists).
func TestEveryFlagTheDeployFilesPassIsOneSluiceTakes(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "sluice")
	run(t, "go", "build", "-o", bin, "../cmd/sluice")
	var c composeFile
	b, _ := os.ReadFile("compose.yaml")
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	lines := map[string][]string{}
	for name, s := range c.Services {
		if len(s.Command) > 0 && (s.Command[0] == "gateway" || s.Command[0] == "agent") {
			lines["compose "+name] = s.Command
		}
	}
	for _, u := range []string{"sluice-gateway.service", "sluice-agent.service"} {
		lines[u] = strings.Fields(strings.TrimPrefix(unit(t, filepath.Join("systemd", u))["ExecStart"], "/usr/local/bin/sluice "))
	}
	for _, f := range []string{"gateway-deployment.yaml", "agent-statefulset.yaml"} {
		b, _ := os.ReadFile(filepath.Join("helm/sluice/templates", f))
		m := regexp.MustCompile(`args: \[(.*)\]`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("%s has no args line", f)
		}
		var args []string
		for _, a := range strings.Split(string(m[1]), ",") {
			args = append(args, strings.Trim(strings.TrimSpace(a), `"`))
		}
		lines["chart "+f] = args
	}
	if len(lines) != 8 {
		t.Fatalf("found %d command lines, want 8 (4 compose services, 2 units, 2 chart containers): %v", len(lines), lines)
	}
	for where, args := range lines {
		out, _ := exec.Command(bin, args[0], "-h").CombinedOutput()
		for _, f := range flagsIn(args) {
			if !strings.Contains(string(out), "  -"+f+" ") && !strings.Contains(string(out), "  -"+f+"\n") {
				t.Errorf("%s passes --%s, which `sluice %s` does not take", where, f, args[0])
			}
		}
	}
}
