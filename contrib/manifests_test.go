package contrib

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// decodeStrict reads one YAML document into out, failing on any field the
// real type does not have (a typo in a manifest is an error, not a no-op).
func decodeStrict(t *testing.T, path string, out any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, out); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func checkKind(t *testing.T, path string, tm metav1.TypeMeta, apiVersion, kind string) {
	t.Helper()
	if tm.APIVersion != apiVersion || tm.Kind != kind {
		t.Fatalf("%s: got %s %s, want %s %s", path, tm.APIVersion, tm.Kind, apiVersion, kind)
	}
}

func TestKubernetesManifests(t *testing.T) {
	var secret corev1.Secret
	decodeStrict(t, "kubernetes/secret.yaml", &secret)
	checkKind(t, "secret.yaml", secret.TypeMeta, "v1", "Secret")
	if secret.StringData["REDIS_URL"] == "" {
		t.Error("secret.yaml: no REDIS_URL")
	}

	// The shipped placeholder must not be a token: Saga refuses to start
	// until the operator puts a real one in.
	var bootstrap corev1.Secret
	decodeStrict(t, "kubernetes/bootstrap-secret.yaml", &bootstrap)
	checkKind(t, "bootstrap-secret.yaml", bootstrap.TypeMeta, "v1", "Secret")
	placeholder, ok := bootstrap.StringData["token"]
	if !ok {
		t.Error("bootstrap-secret.yaml: no key token")
	} else if isToken(placeholder) {
		t.Error("bootstrap-secret.yaml: the placeholder is a valid token; it must not be one")
	}

	var dep appsv1.Deployment
	decodeStrict(t, "kubernetes/deployment.yaml", &dep)
	checkKind(t, "deployment.yaml", dep.TypeMeta, "apps/v1", "Deployment")
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2 {
		t.Errorf("deployment: replicas = %v, want 2", dep.Spec.Replicas)
	}
	podLabels := dep.Spec.Template.Labels
	if !matches(dep.Spec.Selector, podLabels) {
		t.Errorf("deployment: selector %v does not match the pod labels %v", dep.Spec.Selector, podLabels)
	}
	pod := dep.Spec.Template.Spec
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("deployment: pod is not runAsNonRoot")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("deployment: %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("deployment: container needs readOnlyRootFilesystem and no privilege escalation")
	}
	// With auth on, a probe gets no token: it must ask an open route.
	if p := c.StartupProbe; p != nil && !openRoutes[httpPath(p)] {
		t.Errorf("deployment: startup probe path %q needs a token", httpPath(p))
	}
	if got := httpPath(c.LivenessProbe); got != "/livez" {
		t.Errorf("deployment: liveness probe path %q, want /livez", got)
	}
	if got := httpPath(c.ReadinessProbe); got != "/readyz" {
		t.Errorf("deployment: readiness probe path %q, want /readyz", got)
	}
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[name]; !ok {
			t.Errorf("deployment: no %s request", name)
		}
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Error("deployment: no memory limit")
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "http" && p.ContainerPort == 8030 }) {
		t.Error("deployment: no port http/8030")
	}
	redisFromSecret := slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		ref := e.ValueFrom
		return e.Name == "REDIS_URL" && ref != nil && ref.SecretKeyRef != nil &&
			ref.SecretKeyRef.Name == secret.Name && ref.SecretKeyRef.Key == "REDIS_URL"
	})
	if !redisFromSecret {
		t.Errorf("deployment: REDIS_URL must come from secret %s", secret.Name)
	}
	if got := envValue(c.Env, "SAGA_AUTH_ENABLED"); got != "true" {
		t.Errorf("deployment: SAGA_AUTH_ENABLED = %q, want true", got)
	}
	checkBootstrapMount(t, pod, c, bootstrap.Name)

	var svc corev1.Service
	decodeStrict(t, "kubernetes/service.yaml", &svc)
	checkKind(t, "service.yaml", svc.TypeMeta, "v1", "Service")
	for k, v := range svc.Spec.Selector {
		if podLabels[k] != v {
			t.Errorf("service: selector %s=%s matches no pod label", k, v)
		}
	}

	var pdb policyv1.PodDisruptionBudget
	decodeStrict(t, "kubernetes/pdb.yaml", &pdb)
	checkKind(t, "pdb.yaml", pdb.TypeMeta, "policy/v1", "PodDisruptionBudget")
	if !matches(pdb.Spec.Selector, podLabels) {
		t.Error("pdb: selector does not match the pods")
	}
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 {
		t.Error("pdb: minAvailable must keep at least one pod")
	}
}

// checkBootstrapMount checks that SAGA_AUTH_BOOTSTRAP_TOKEN_FILE names the
// token key of secret, mounted read-only and readable by the pod's user
// or group only.
func checkBootstrapMount(t *testing.T, pod corev1.PodSpec, c corev1.Container, secret string) {
	t.Helper()
	file := envValue(c.Env, "SAGA_AUTH_BOOTSTRAP_TOKEN_FILE")
	dir, key := filepath.Split(file)
	var vol *corev1.Volume
	for i := range pod.Volumes {
		if s := pod.Volumes[i].Secret; s != nil && s.SecretName == secret {
			vol = &pod.Volumes[i]
		}
	}
	if vol == nil {
		t.Fatalf("deployment: no volume of secret %s", secret)
	}
	mounted := slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == vol.Name && m.ReadOnly && filepath.Clean(m.MountPath) == filepath.Clean(dir)
	})
	if !mounted || key != "token" || len(vol.Secret.Items) != 0 {
		t.Errorf("deployment: SAGA_AUTH_BOOTSTRAP_TOKEN_FILE = %q must be the key token of secret %s, mounted read-only", file, secret)
	}
	mode := int32(0o644) // Kubernetes' default
	if vol.Secret.DefaultMode != nil {
		mode = *vol.Secret.DefaultMode
	}
	switch {
	case mode != 0o400 && mode != 0o440:
		t.Errorf("deployment: secret %s mounted with mode %#o, want 0400 or 0440", secret, mode)
	case mode == 0o440 && (pod.SecurityContext == nil || pod.SecurityContext.FSGroup == nil):
		t.Errorf("deployment: secret %s is mounted 0440 but the pod has no fsGroup to read it with", secret)
	}
}

// isToken reports whether s has the form of a Saga token: saga_ and at
// least 32 bytes in unpadded URL-safe base64.
func isToken(s string) bool {
	body, ok := strings.CutPrefix(s, "saga_")
	raw, err := base64.RawURLEncoding.DecodeString(body)
	return ok && err == nil && len(raw) >= 32
}

func envValue(env []corev1.EnvVar, name string) string {
	for _, e := range env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func matches(sel *metav1.LabelSelector, labels map[string]string) bool {
	if sel == nil || len(sel.MatchLabels) == 0 {
		return false
	}
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// openRoutes answer without a token (SPEC §6).
var openRoutes = map[string]bool{"/livez": true, "/readyz": true, "/api/v1/health": true}

func httpPath(p *corev1.Probe) string {
	if p == nil || p.HTTPGet == nil {
		return ""
	}
	return p.HTTPGet.Path
}

func TestComposeFile(t *testing.T) {
	data, err := os.ReadFile("compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	// compose-go validates against the Compose specification's schema,
	// which rejects unknown keys.
	project, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  ".",
		ConfigFiles: []types.ConfigFile{{Filename: "compose.yml", Content: data}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("saga", true) })
	if err != nil {
		t.Fatalf("compose.yml: %v", err)
	}
	redis, err := project.GetService("redis")
	if err != nil {
		t.Fatal(err)
	}
	if redis.HealthCheck == nil || len(redis.HealthCheck.Test) == 0 {
		t.Error("compose: redis has no health check")
	}
	var sagas []string
	for name, svc := range project.Services {
		if !strings.HasPrefix(name, "saga") {
			continue
		}
		sagas = append(sagas, name)
		if url := svc.Environment["REDIS_URL"]; url == nil || !strings.HasPrefix(*url, "redis://redis:") {
			t.Errorf("compose: %s does not use the redis service", name)
		}
		if dep, ok := svc.DependsOn["redis"]; !ok || dep.Condition != types.ServiceConditionHealthy {
			t.Errorf("compose: %s must depend on redis being healthy", name)
		}
		if hc := svc.HealthCheck; hc == nil || !slices.Equal(hc.Test, []string{"CMD", "/usr/bin/saga", "health", "--quiet"}) {
			t.Errorf("compose: %s health check is not `saga health --quiet`", name)
		}
		if len(svc.Ports) != 1 || svc.Ports[0].Target != 8030 {
			t.Errorf("compose: %s must publish port 8030", name)
		}
		if on := svc.Environment["SAGA_AUTH_ENABLED"]; on == nil || *on != "true" {
			t.Errorf("compose: %s must set SAGA_AUTH_ENABLED: \"true\"", name)
		}
		checkComposeBootstrap(t, project, name, svc)
	}
	if len(sagas) != 2 {
		t.Errorf("compose: %d saga services (%v), want 2", len(sagas), sagas)
	}
}

// checkComposeBootstrap checks that SAGA_AUTH_BOOTSTRAP_TOKEN_FILE names
// where a file-based secret of the project is mounted.
func checkComposeBootstrap(t *testing.T, project *types.Project, name string, svc types.ServiceConfig) {
	t.Helper()
	file := svc.Environment["SAGA_AUTH_BOOTSTRAP_TOKEN_FILE"]
	if file == nil {
		t.Errorf("compose: %s has no SAGA_AUTH_BOOTSTRAP_TOKEN_FILE", name)
		return
	}
	mounted := slices.ContainsFunc(svc.Secrets, func(ref types.ServiceSecretConfig) bool {
		target := ref.Target
		if target == "" {
			target = ref.Source
		}
		if !strings.HasPrefix(target, "/") {
			target = "/run/secrets/" + target
		}
		return target == *file && project.Secrets[ref.Source].File != ""
	})
	if !mounted {
		t.Errorf("compose: %s: SAGA_AUTH_BOOTSTRAP_TOKEN_FILE = %s is not where a file secret is mounted", name, *file)
	}
}

// prometheusConfig is the part of Prometheus' configuration the example
// uses; strict decoding turns a misspelt key into an error.
type prometheusConfig struct {
	ScrapeConfigs []struct {
		JobName        string `json:"job_name"`
		MetricsPath    string `json:"metrics_path"`
		ScrapeInterval string `json:"scrape_interval,omitempty"`
		Authorization  *struct {
			Type            string `json:"type"`
			CredentialsFile string `json:"credentials_file"`
		} `json:"authorization,omitempty"`
		StaticConfigs []struct {
			Targets []string          `json:"targets"`
			Labels  map[string]string `json:"labels,omitempty"`
		} `json:"static_configs,omitempty"`
		KubernetesSDConfigs []struct {
			Role string `json:"role"`
		} `json:"kubernetes_sd_configs,omitempty"`
		RelabelConfigs []struct {
			SourceLabels []string `json:"source_labels,omitempty"`
			Regex        string   `json:"regex,omitempty"`
			Action       string   `json:"action,omitempty"`
			TargetLabel  string   `json:"target_label,omitempty"`
		} `json:"relabel_configs,omitempty"`
	} `json:"scrape_configs"`
}

func TestPrometheusScrapeConfig(t *testing.T) {
	var cfg prometheusConfig
	decodeStrict(t, "prometheus/prometheus.yml", &cfg)
	if len(cfg.ScrapeConfigs) == 0 {
		t.Fatal("prometheus: no scrape_configs")
	}
	for _, sc := range cfg.ScrapeConfigs {
		if sc.MetricsPath != "/metrics" {
			t.Errorf("prometheus: job %s scrapes %q, want /metrics", sc.JobName, sc.MetricsPath)
		}
		if len(sc.StaticConfigs) == 0 && len(sc.KubernetesSDConfigs) == 0 {
			t.Errorf("prometheus: job %s has no targets", sc.JobName)
		}
		// /metrics needs a read token when auth is on; a file keeps it
		// out of the configuration.
		if a := sc.Authorization; a == nil || a.Type != "Bearer" || a.CredentialsFile == "" {
			t.Errorf("prometheus: job %s must send a bearer token from a credentials_file", sc.JobName)
		}
	}
}

// prometheusSDConfig is the part of Prometheus' configuration that the
// discovery example uses, decoded strictly like prometheusConfig.
type prometheusSDConfig struct {
	ScrapeConfigs []struct {
		JobName       string `json:"job_name"`
		HTTPSDConfigs []struct {
			URL             string `json:"url"`
			RefreshInterval string `json:"refresh_interval"`
			Authorization   *struct {
				Type            string `json:"type"`
				CredentialsFile string `json:"credentials_file"`
			} `json:"authorization,omitempty"`
		} `json:"http_sd_configs"`
		RelabelConfigs []struct {
			SourceLabels []string `json:"source_labels,omitempty"`
			Regex        string   `json:"regex,omitempty"`
			Action       string   `json:"action,omitempty"`
			TargetLabel  string   `json:"target_label,omitempty"`
		} `json:"relabel_configs,omitempty"`
	} `json:"scrape_configs"`
}

// TestPrometheusSDConfig checks the discovery example: it points at Saga's
// HTTP SD route with a token from a file, and the real promtool accepts it.
// (cmd/saga's TestPrometheusDiscoversInstances runs it with Prometheus.)
func TestPrometheusSDConfig(t *testing.T) {
	const path = "prometheus/saga-sd.yml"
	var cfg prometheusSDConfig
	decodeStrict(t, path, &cfg)
	if len(cfg.ScrapeConfigs) == 0 {
		t.Fatalf("%s: no scrape_configs", path)
	}
	for _, sc := range cfg.ScrapeConfigs {
		if len(sc.HTTPSDConfigs) == 0 {
			t.Errorf("%s: job %s has no http_sd_configs", path, sc.JobName)
		}
		for _, sd := range sc.HTTPSDConfigs {
			if !strings.HasSuffix(sd.URL, "/api/v1/sd/prometheus") {
				t.Errorf("%s: job %s discovers from %q, not Saga's /api/v1/sd/prometheus", path, sc.JobName, sd.URL)
			}
			if a := sd.Authorization; a == nil || a.Type != "Bearer" || a.CredentialsFile == "" {
				t.Errorf("%s: job %s must send a bearer token from a credentials_file", path, sc.JobName)
			}
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed; `make package-deps` installs it (package prometheus)")
	}
	if out, err := exec.Command(promtool, "check", "config", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config %s: %v\n%s", path, err, out)
	}
}

// TestNginxConfig has the real nginx check the example with a throwaway
// certificate in place of the one an operator would configure.
func TestNginxConfig(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatal("nginx is not installed; `make package-deps` installs it")
	}
	conf, err := os.ReadFile("nginx/saga.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"proxy_buffering off", "location = /api/v1/events", "ssl_certificate "} {
		if !bytes.Contains(conf, []byte(want)) {
			t.Errorf("nginx/saga.conf lacks %q", want)
		}
	}

	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	site := strings.NewReplacer(
		"/etc/ssl/certs/saga.example.com.pem", cert,
		"/etc/ssl/private/saga.example.com.key", key,
	).Replace(string(conf))
	if err := os.WriteFile(filepath.Join(dir, "saga.conf"), []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	main := "pid " + filepath.Join(dir, "nginx.pid") + ";\n" +
		"error_log " + filepath.Join(dir, "error.log") + ";\n" +
		"events {}\n" +
		"http {\n" +
		"  access_log off;\n" +
		"  client_body_temp_path " + dir + ";\n" +
		"  include " + filepath.Join(dir, "saga.conf") + ";\n" +
		"}\n"
	mainPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(mainPath, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(nginx, "-t", "-p", dir, "-c", mainPath).CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}

func writeSelfSigned(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "saga.example.com"},
		DNSNames:     []string{"saga.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certPath = filepath.Join(dir, "cert.pem")
	keyPath = filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}
