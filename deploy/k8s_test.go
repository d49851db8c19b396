package deploy

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/wxpush/wxpush/service/wxpushd"
)

const (
	k8sDir            = "k8s"
	kustomizationFile = "kustomization.yaml"
	// secretExample is decoded and checked like the others but is not a
	// kustomization resource: its values are ${VAR} placeholders.
	secretExample = "secret.example.yaml"
)

// kustomization is the part of kustomize's Kustomization the manifests
// use; decoding it strictly refuses any other field.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
	} `json:"labels"`
	Resources []string `json:"resources"`
	Images    []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// newObject returns the API type a manifest's apiVersion and kind decode
// into, or nil for one the manifests are not meant to hold.
func newObject(tm metav1.TypeMeta) any {
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}
	case "v1 Service":
		return &corev1.Service{}
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Secret":
		return &corev1.Secret{}
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	case "batch/v1 Job":
		return &batchv1.Job{}
	case "v1 PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}
	}
	return nil
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// decodeManifest decodes every YAML document of raw strictly: an unknown
// field, a wrong type or an unknown kind is an error.
func decodeManifest(raw []byte) ([]any, error) {
	var objs []any
	for i, doc := range docSeparator.Split(string(raw), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		obj := newObject(tm)
		if obj == nil {
			return nil, fmt.Errorf("document %d: unexpected apiVersion %q kind %q", i+1, tm.APIVersion, tm.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i+1, tm.Kind, err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// TestDecodeManifestStrict: the decoder the manifest test relies on
// refuses unknown fields, misplaced fields, wrong types and unknown kinds.
func TestDecodeManifestStrict(t *testing.T) {
	for _, tc := range []struct {
		name, doc, err string
	}{
		{"good", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n", ""},
		{"unknown field", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80, targetPorts: 8080}]}\n", "unknown field"},
		{"misplaced field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec: {template: {spec: {readinessProbe: {}}}}\n", "unknown field"},
		{"wrong type", "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: a}\nspec: {minAvailable: [1]}\n", "minAvailable"},
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n", "unexpected apiVersion"},
		{"wrong version", "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: a}\n", "unexpected apiVersion"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeManifest([]byte(tc.doc))
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
		})
	}
}

// manifests holds the decoded objects of deploy/k8s.
type manifests struct {
	deployment *appsv1.Deployment
	service    *corev1.Service
	pdb        *policyv1.PodDisruptionBudget
	hpa        *autoscalingv2.HorizontalPodAutoscaler
	configMaps map[string]*corev1.ConfigMap
	secret     *corev1.Secret
}

// loadManifests decodes every manifest of deploy/k8s strictly and checks
// the kustomization lists each of them but the Secret example.
func loadManifests(t *testing.T) manifests {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(k8sDir, kustomizationFile))
	require.NoError(t, err)
	var k kustomization
	require.NoError(t, yaml.UnmarshalStrict(raw, &k), kustomizationFile)
	assert.Equal(t, "kustomize.config.k8s.io/v1beta1", k.APIVersion)
	assert.Equal(t, "Kustomization", k.Kind)

	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	require.NoError(t, err)
	m := manifests{configMaps: map[string]*corev1.ConfigMap{}}
	var listed []string
	for _, f := range files {
		base := filepath.Base(f)
		if base == kustomizationFile {
			continue
		}
		if base != secretExample {
			listed = append(listed, base)
		}
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		objs, err := decodeManifest(raw)
		require.NoError(t, err, "%s does not decode strictly into the Kubernetes API types", f)
		for _, o := range objs {
			switch o := o.(type) {
			case *appsv1.Deployment:
				require.Nil(t, m.deployment, "one Deployment")
				m.deployment = o
			case *corev1.Service:
				m.service = o
			case *policyv1.PodDisruptionBudget:
				m.pdb = o
			case *autoscalingv2.HorizontalPodAutoscaler:
				m.hpa = o
			case *corev1.ConfigMap:
				m.configMaps[o.Name] = o
			case *corev1.Secret:
				require.Equal(t, secretExample, base, "secrets only in the example")
				m.secret = o
			}
		}
	}
	slices.Sort(listed)
	resources := slices.Clone(k.Resources)
	slices.Sort(resources)
	assert.Equal(t, listed, resources, "the kustomization lists every manifest but %s", secretExample)
	for _, o := range []any{m.deployment, m.service, m.pdb, m.hpa, m.secret} {
		require.NotNil(t, o, "a Deployment, Service, PodDisruptionBudget, HorizontalPodAutoscaler and Secret example")
	}
	require.NotEmpty(t, m.configMaps)
	return m
}

// TestKubernetesManifests decodes the manifests strictly and checks what
// running wxpushd needs of them; the container's settings are loaded with
// wxpushd's own LoadConfig, the ConfigMap's apps file included.
func TestKubernetesManifests(t *testing.T) {
	m := loadManifests(t)
	d := m.deployment
	pod := d.Spec.Template.Spec
	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	podLabels := labels.Set(d.Spec.Template.Labels)

	t.Run("probes", func(t *testing.T) {
		require.NotNil(t, c.ReadinessProbe)
		require.NotNil(t, c.ReadinessProbe.HTTPGet)
		assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
		require.NotNil(t, c.LivenessProbe)
		require.NotNil(t, c.LivenessProbe.HTTPGet)
		assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
		for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
			port := p.HTTPGet.Port.String()
			assert.True(t, slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool {
				return cp.Name == port || fmt.Sprint(cp.ContainerPort) == port
			}), "probe port %s is a container port", port)
		}
	})

	t.Run("resources", func(t *testing.T) {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, ok := c.Resources.Requests[r]
			assert.True(t, ok && !req.IsZero(), "%s request", r)
			lim, ok := c.Resources.Limits[r]
			assert.True(t, ok && lim.Cmp(req) >= 0, "%s limit at least the request", r)
		}
	})

	t.Run("security", func(t *testing.T) {
		psc := pod.SecurityContext
		require.NotNil(t, psc)
		require.NotNil(t, psc.RunAsNonRoot)
		assert.True(t, *psc.RunAsNonRoot, "runAsNonRoot")
		require.NotNil(t, psc.RunAsUser)
		assert.NotZero(t, *psc.RunAsUser, "runAsUser is not root")
		sc := c.SecurityContext
		require.NotNil(t, sc)
		require.NotNil(t, sc.ReadOnlyRootFilesystem)
		assert.True(t, *sc.ReadOnlyRootFilesystem, "read-only root filesystem")
		require.NotNil(t, sc.AllowPrivilegeEscalation)
		assert.False(t, *sc.AllowPrivilegeEscalation)
		require.NotNil(t, sc.Capabilities)
		assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
	})

	// The container's environment as wxpushd would see it.
	cfg := loadContainerConfig(t, m, c)

	t.Run("graceful termination", func(t *testing.T) {
		require.NotNil(t, pod.TerminationGracePeriodSeconds)
		grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
		var preStop time.Duration
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		}
		assert.Greater(t, grace, preStop+cfg.ShutdownTimeout,
			"terminationGracePeriodSeconds (%s) must exceed the preStop pause (%s) plus WXPUSH_SHUTDOWN_TIMEOUT (%s), else the kubelet kills wxpushd mid-drain", grace, preStop, cfg.ShutdownTimeout)
	})

	t.Run("service, disruption budget, autoscaler", func(t *testing.T) {
		sel := labels.SelectorFromSet(m.service.Spec.Selector)
		assert.False(t, sel.Empty())
		assert.True(t, sel.Matches(podLabels), "the Service selects the pods")
		require.NotEmpty(t, m.service.Spec.Ports)
		for _, p := range m.service.Spec.Ports {
			assert.True(t, slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool {
				return cp.Name == p.TargetPort.String() || fmt.Sprint(cp.ContainerPort) == p.TargetPort.String()
			}), "service targetPort %s is a container port", p.TargetPort.String())
		}
		pdbSel, err := metav1.LabelSelectorAsSelector(m.pdb.Spec.Selector)
		require.NoError(t, err)
		assert.True(t, pdbSel.Matches(podLabels), "the PodDisruptionBudget selects the pods")
		require.NotNil(t, m.pdb.Spec.MinAvailable)
		depSel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		require.NoError(t, err)
		assert.True(t, depSel.Matches(podLabels), "the Deployment selects its own pods")

		assert.Equal(t, "Deployment", m.hpa.Spec.ScaleTargetRef.Kind)
		assert.Equal(t, d.Name, m.hpa.Spec.ScaleTargetRef.Name)
		require.NotNil(t, m.hpa.Spec.MinReplicas)
		assert.GreaterOrEqual(t, *m.hpa.Spec.MinReplicas, int32(2), "at least two replicas, so the disruption budget can let one go")
		assert.Greater(t, m.hpa.Spec.MaxReplicas, *m.hpa.Spec.MinReplicas)
		assert.Nil(t, d.Spec.Replicas, "the autoscaler owns the replica count")
		assert.Equal(t, "/metrics", d.Spec.Template.Annotations["prometheus.io/path"])
	})

	t.Run("apps", func(t *testing.T) {
		require.NotEmpty(t, cfg.Apps)
		for _, a := range cfg.Apps {
			assert.NotEmpty(t, a.CallbackToken, "app %s takes delivery reports", a.Name)
		}
	})
}

// secretTestValues stands in for what secret.example.yaml's ${VAR}
// references are filled with: values of the right shape.
var secretTestValues = map[string]string{
	"WXPUSH_API_KEYS":       "k8s-test-api-key-0123456789abcdef",
	"WXPUSH_REDIS_URL":      "redis://:password@redis.example.com:6379/0",
	"SHOP_APPID":            "wx0123456789abcdef",
	"SHOP_APPSECRET":        "0123456789abcdef0123456789abcdef",
	"SHOP_CALLBACK_TOKEN":   "k8stesttoken",
	"SHOP_ENCODING_AES_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
}

var secretRef = regexp.MustCompile(`^\$\{([A-Z_][A-Z0-9_]*)\}$`)

// loadContainerConfig builds the container's environment from the
// Deployment (values, the pod name, the Secret example's keys, the
// ConfigMap mounted where WXPUSH_CONFIG points) and runs wxpushd's
// LoadConfig on it with the container's args.
func loadContainerConfig(t *testing.T, m manifests, c corev1.Container) wxpushd.Config {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		require.NotNil(t, from.SecretRef, "envFrom: only the Secret")
		require.Equal(t, m.secret.Name, from.SecretRef.Name)
		for k, v := range m.secret.StringData {
			ref := secretRef.FindStringSubmatch(v)
			require.NotNil(t, ref, "%s: the example holds ${VAR} references, never a value: %s", secretExample, k)
			val, ok := secretTestValues[ref[1]]
			require.True(t, ok, "%s: no test value for ${%s}", secretExample, ref[1])
			env[k] = val
		}
		assert.Empty(t, m.secret.Data, "%s: stringData only", secretExample)
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env[e.Name] = "wxpushd-5d8c7b9f6-x2x7q"
		default:
			t.Fatalf("env %s: unexpected source", e.Name)
		}
	}
	assert.NotEmpty(t, env["WXPUSH_INSTANCE"], "each replica names itself (consumer group)")

	// Mount the ConfigMaps where the container sees them.
	pod := m.deployment.Spec.Template.Spec
	mounts := map[string]string{} // container path -> local dir
	for _, vm := range c.VolumeMounts {
		i := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
		require.GreaterOrEqual(t, i, 0, "volume %s", vm.Name)
		v := pod.Volumes[i]
		if v.ConfigMap == nil {
			continue
		}
		cm := m.configMaps[v.ConfigMap.Name]
		require.NotNil(t, cm, "ConfigMap %s", v.ConfigMap.Name)
		dir := t.TempDir()
		for k, data := range cm.Data {
			require.NoError(t, os.WriteFile(filepath.Join(dir, k), []byte(data), 0o600))
		}
		mounts[vm.MountPath] = dir
	}
	path := env[wxpushd.EnvConfig]
	require.NotEmpty(t, path, "the apps come from a file")
	dir, ok := mounts[filepath.Dir(path)]
	require.True(t, ok, "%s=%s is in a mounted ConfigMap", wxpushd.EnvConfig, path)
	env[wxpushd.EnvConfig] = filepath.Join(dir, filepath.Base(path))

	var out bytes.Buffer
	cfg, err := wxpushd.LoadConfig(c.Args, func(k string) string { return env[k] }, io.MultiWriter(&out))
	require.NoError(t, err, "wxpushd refuses the manifest's settings: %s", out.String())
	return cfg
}

// wxloadShardsJob is the example of a load run over several generators:
// not a kustomization resource.
const wxloadShardsJob = "examples/wxload-shards-job.yaml"

// TestWxloadShardsJobExample decodes the example strictly and checks that
// its indexed Job runs one wxload shard per completion index, all of one
// run (the Job's uid), each writing its own directory on the shared
// volume, never retried.
func TestWxloadShardsJobExample(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(k8sDir, wxloadShardsJob))
	require.NoError(t, err)
	objs, err := decodeManifest(raw)
	require.NoError(t, err, "%s does not decode strictly into the Kubernetes API types", wxloadShardsJob)
	var job *batchv1.Job
	var pvc *corev1.PersistentVolumeClaim
	for _, o := range objs {
		switch o := o.(type) {
		case *batchv1.Job:
			job = o
		case *corev1.PersistentVolumeClaim:
			pvc = o
		default:
			t.Errorf("unexpected %T", o)
		}
	}
	require.NotNil(t, job, "a Job")
	require.NotNil(t, pvc, "the shared volume's claim")

	k, err := os.ReadFile(filepath.Join(k8sDir, kustomizationFile))
	require.NoError(t, err)
	assert.NotContains(t, string(k), "examples/", "the example is not deployed with the service")

	spec := job.Spec
	require.NotNil(t, spec.CompletionMode)
	assert.Equal(t, batchv1.IndexedCompletion, *spec.CompletionMode)
	require.NotNil(t, spec.Completions)
	require.NotNil(t, spec.Parallelism)
	n := int(*spec.Completions)
	assert.Equal(t, n, int(*spec.Parallelism), "every shard runs at once")
	require.NotNil(t, spec.BackoffLimitPerIndex)
	assert.Zero(t, *spec.BackoffLimitPerIndex, "a shard is not retried")
	assert.Equal(t, corev1.RestartPolicyNever, spec.Template.Spec.RestartPolicy)

	require.Len(t, spec.Template.Spec.Containers, 1)
	c := spec.Template.Spec.Containers[0]
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	require.Contains(t, env, "SHARD")
	require.NotNil(t, env["SHARD"].ValueFrom)
	assert.Equal(t, "metadata.annotations['batch.kubernetes.io/job-completion-index']", env["SHARD"].ValueFrom.FieldRef.FieldPath)
	require.Contains(t, env, "RUN_ID")
	require.NotNil(t, env["RUN_ID"].ValueFrom)
	assert.Equal(t, "metadata.labels['batch.kubernetes.io/controller-uid']", env["RUN_ID"].ValueFrom.FieldRef.FieldPath)
	require.Contains(t, env, "WXLOAD_API_KEY")
	require.NotNil(t, env["WXLOAD_API_KEY"].ValueFrom.SecretKeyRef, "the API key from a Secret")

	args := c.Args
	require.NotEmpty(t, args)
	assert.Equal(t, "run", args[0])
	flag := func(name string) string {
		i := slices.Index(args, name)
		require.GreaterOrEqual(t, i, 0, "the shards run with %s", name)
		require.Less(t, i+1, len(args), name)
		return args[i+1]
	}
	assert.Equal(t, fmt.Sprintf("$(SHARD)/%d", n), flag("--shard"), "shard I of the Job's completions")
	assert.Equal(t, "$(RUN_ID)", flag("--run-id"))
	assert.NotEmpty(t, flag("--service"))
	assert.NotEmpty(t, flag("--mock"))
	out := flag("--out")
	assert.Contains(t, out, "$(RUN_ID)", "each run its own directory")
	assert.Contains(t, out, "$(SHARD)", "each shard its own directory")

	require.Len(t, c.VolumeMounts, 1)
	assert.True(t, strings.HasPrefix(out, c.VolumeMounts[0].MountPath+"/"), "--out %s on the shared volume", out)
	require.Len(t, spec.Template.Spec.Volumes, 1)
	v := spec.Template.Spec.Volumes[0]
	assert.Equal(t, c.VolumeMounts[0].Name, v.Name)
	require.NotNil(t, v.PersistentVolumeClaim)
	assert.Equal(t, pvc.Name, v.PersistentVolumeClaim.ClaimName)
	assert.Contains(t, pvc.Spec.AccessModes, corev1.ReadWriteMany, "every shard's pod writes to it")

	// The comment's merge names every shard's directory.
	for i := range n {
		assert.Contains(t, string(raw), fmt.Sprintf("/runs/'$RUN'/shard-%d", i), "the merge command names shard %d", i)
	}
	assert.Contains(t, string(raw), `"merge"`)
}
