//! A real Kubernetes cluster on this machine, for the tests: etcd, the API server, the controller manager, the
//! scheduler, containerd, one kubelet with the CNI bridge plugin, and sigstore's policy-controller as the admission
//! webhook, with a registry on 127.0.0.1 that the node pulls from.
//!
//! The control plane and policy-controller are the builds pinned in `tools/pins.toml`; etcd, containerd, runc and
//! the CNI plugins are Debian's. Everything is written under `out/kube/` (its logs in `out/kube/logs/`), and every
//! address used is loopback, one of the pods' (in the network namespaces their CNI plugin makes), inside the network
//! namespace the cluster makes for the webhook, or the host's end of the links to those; [`host`] lists what changes
//! on the machine and undoes it.
//!
//! ```ignore
//! let programs = require("the test cluster", Programs::find(&ctx))?;  // skipped (failed under CI) when missing
//! let cluster = TestCluster::start(&ctx, programs)?;                  // as root (kube::is_root)
//! cluster.install_image_policy(Path::new("policy.yaml"))?;
//! cluster.apply(manifest)?;
//! cluster.stop()?;  // or dropped: everything stops in order, and nothing is left behind
//! ```
//!
//! There is no kube-proxy and no cluster DNS: pods reach each other by pod IP (`hostAliases` gives it a name), the
//! tests reach them the same way from the host.

mod config;
mod forward;
mod host;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use xshell::{cmd, Shell};
use xtask::context::Context;
use xtask::pinned_tools::{self, Tool};

use super::layout;
use super::registry::LocalRegistry;
use forward::Forward;
use host::Host;

/// The namespace policy-controller's configuration and webhook Service live in.
pub const POLICY_NAMESPACE: &str = "cosign-system";

/// The port policy-controller serves its webhooks on, inside its network namespace.
const WEBHOOK_PORT: u16 = 8443;

/// Namespaces the cluster makes itself and keeps when the tests' workloads are deleted.
const SYSTEM_NAMESPACES: [&str; 5] = ["default", "kube-system", "kube-public", "kube-node-lease", POLICY_NAMESPACE];

/// The order processes stop in: the pods' kubelet first, the store of everything and the runtime last (an API server
/// whose etcd is gone hangs; containerd outlives the kubelet that talks to it).
const STOP_ORDER: [&str; 7] = [
    "kubelet",
    "policy-controller",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-apiserver",
    "etcd",
    "containerd",
];

/// The programs the cluster runs, found (and the pinned ones built) before anything starts.
pub struct Programs {
    etcd: PathBuf,
    containerd: PathBuf,
    runc: PathBuf,
    cni_plugins: PathBuf,
    busybox: PathBuf,
    apiserver: PathBuf,
    controller_manager: PathBuf,
    scheduler: PathBuf,
    kubelet: PathBuf,
    kubectl: PathBuf,
    policy_controller: PathBuf,
    /// policy-controller's `config/` (its CRDs, webhook configurations and ConfigMaps), from its module.
    policy_controller_config: PathBuf,
}

impl Programs {
    /// Everything the cluster needs, or what is missing and how to get it. The pinned ones are built as the user
    /// who asks, so that a cluster started as root later (see [`is_root`]) finds them built.
    pub fn find(ctx: &Context) -> Result<Programs> {
        let debian = "(Debian: apt-get install etcd-server containerd runc containernetworking-plugins busybox-static \
                      iproute2 iptables openssl)";
        let found = |program: &str| on_path(program).with_context(|| format!("{program} is not installed {debian}"));
        for program in ["ip", "iptables", "openssl", "umount", "containerd-shim-runc-v2"] {
            found(program)?;
        }
        let cni_plugins = ["/usr/lib/cni", "/opt/cni/bin"]
            .map(PathBuf::from)
            .into_iter()
            .find(|dir| ["bridge", "host-local", "loopback"].iter().all(|plugin| dir.join(plugin).is_file()))
            .with_context(|| format!("the CNI plugins bridge, host-local and loopback are not installed {debian}"))?;
        let tool = |tool: Tool| pinned_tools::ensure(ctx, tool);
        Ok(Programs {
            etcd: found("etcd")?,
            containerd: found("containerd")?,
            runc: found("runc")?,
            cni_plugins,
            busybox: found("busybox")?,
            apiserver: tool(Tool::KubeApiserver)?,
            controller_manager: tool(Tool::KubeControllerManager)?,
            scheduler: tool(Tool::KubeScheduler)?,
            kubelet: tool(Tool::Kubelet)?,
            kubectl: tool(Tool::Kubectl)?,
            policy_controller: tool(Tool::PolicyController)?,
            policy_controller_config: policy_controller_config(ctx)?,
        })
    }
}

/// The `config/` folder of the pinned policy-controller module, from Go's module cache (downloaded and checked
/// against `tools/policy-controller/go.sum` if need be).
fn policy_controller_config(ctx: &Context) -> Result<PathBuf> {
    let sh = Shell::new()?;
    let _dir = sh.push_dir(ctx.root.join("tools/policy-controller"));
    let module = "github.com/sigstore/policy-controller";
    let json = cmd!(sh, "go mod download -json {module}")
        .env("GOFLAGS", "-mod=readonly")
        .env("GOTOOLCHAIN", "local")
        .quiet()
        .read()
        .with_context(|| format!("downloading {module} for its configuration (Go is needed)"))?;
    let described: serde_json::Value = serde_json::from_str(&json)?;
    let dir = described["Dir"].as_str().context("`go mod download` named no folder")?;
    Ok(Path::new(dir).join("config"))
}

/// Whether this process runs as root, which the cluster needs (network namespaces, cgroups, mounts).
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and has no side effects.
    unsafe { libc::geteuid() == 0 }
}

/// The first `program` in PATH, or in the sbin folders, where Debian puts runc.
fn on_path(program: &str) -> Option<PathBuf> {
    xtask::process::find_program(program).or_else(|| {
        ["/usr/sbin", "/sbin"].map(|dir| Path::new(dir).join(program)).into_iter().find(|candidate| candidate.is_file())
    })
}

/// A running component: its process, and how long it may take to stop after SIGTERM.
struct Process {
    name: &'static str,
    child: Child,
    grace: Duration,
}

/// A running cluster. Dropping it (or [`TestCluster::stop`]) deletes the tests' workloads and stops everything in
/// [`STOP_ORDER`], then removes what it made on the machine.
pub struct TestCluster {
    dir: PathBuf,
    host: Host,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    containerd_socket: PathBuf,
    processes: Vec<Process>,
    forwards: Vec<Forward>,
    registry: LocalRegistry,
    stopped: bool,
    /// Held while the cluster runs: another test cluster on this machine (of any checkout) waits for it, since the
    /// kubelet's fixed paths and the kernel settings it changes are the machine's.
    _lock: File,
}

impl TestCluster {
    pub fn start(ctx: &Context, programs: Programs) -> Result<TestCluster> {
        if !is_root() {
            bail!("the test cluster needs root (network namespaces, cgroups, mounts)");
        }
        let started = Instant::now();
        let dir = ctx.out.kube();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        let lock = lock()?;
        let containerd_socket = dir.join("containerd/containerd.sock");
        // sun_path holds 108 bytes.
        if containerd_socket.as_os_str().len() > 100 {
            bail!("{} is too long for a Unix socket: use a checkout with a shorter path", containerd_socket.display());
        }
        let sh = Shell::new()?;
        if let Some(previous) = Host::recorded(&dir) {
            eprintln!("kube: removing what an earlier cluster of this checkout left behind");
            previous.remove(&sh, &containerd_socket).context("removing what an earlier cluster left behind")?;
        }
        clear_folder(&dir, &[])?;
        for folder in ["logs", "pids", "pki", "etcd", "containerd", "kubelet", "policy-controller"] {
            std::fs::create_dir_all(dir.join(folder))?;
        }
        let host = Host::plan(&sh, &dir)?;
        let registry =
            LocalRegistry::start_in(ctx, &dir.join("registry")).context("starting the cluster's registry")?;
        record_pid(&dir, "registry", registry.pid())?;
        let mut cluster = TestCluster {
            kubectl: programs.kubectl.clone(),
            kubeconfig: dir.join("kubeconfig"),
            containerd_socket,
            dir,
            host,
            processes: Vec::new(),
            forwards: Vec::new(),
            registry,
            stopped: false,
            _lock: lock,
        };
        // Whatever fails from here on, dropping the half-started cluster stops and removes what was started.
        cluster.boot(&sh, &programs)?;
        eprintln!("figure: the test cluster started in {:.1?}", started.elapsed());
        Ok(cluster)
    }

    /// The kubeconfig of the cluster's admin (its bearer token is in the file, never on a command line).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `127.0.0.1:PORT`: the registry the node pulls from (plain HTTP).
    pub fn registry(&self) -> &str {
        &self.registry.address
    }

    /// Runs kubectl as the admin; its output, or an error holding what kubectl said (a denial's reason, say).
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.kubectl_with_input(args, "")
    }

    /// [`TestCluster::kubectl`] with `input` on its standard input (`apply -f -`), so that manifests holding secrets
    /// go through no file and no command line.
    pub fn kubectl_with_input(&self, args: &[&str], input: &str) -> Result<String> {
        let sh = Shell::new()?;
        let (kubectl, kubeconfig) = (&self.kubectl, &self.kubeconfig);
        let output = cmd!(sh, "{kubectl} --kubeconfig {kubeconfig} {args...}")
            .stdin(input)
            .quiet()
            .ignore_status()
            .output()
            .context("running kubectl")?;
        if !output.status.success() {
            bail!("kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `kubectl apply` of `manifest`, given on standard input.
    pub fn apply(&self, manifest: &str) -> Result<String> {
        self.kubectl_with_input(&["apply", "-f", "-"], manifest)
    }

    /// The IP of the (first) pod a label selector picks: reachable from the host, and from the other pods.
    pub fn pod_ip(&self, namespace: &str, selector: &str) -> Result<String> {
        let ip =
            self.kubectl(&["-n", namespace, "get", "pods", "-l", selector, "-o", "jsonpath={.items[0].status.podIP}"])?;
        if ip.trim().is_empty() {
            bail!("no pod of {namespace} with {selector} has an IP yet");
        }
        Ok(ip.trim().to_owned())
    }

    /// What a failure report needs: the pods, the recent events, and the end of each component's log.
    pub fn report(&self) -> String {
        let mut report = String::new();
        for args in [&["get", "pods", "-A", "-o", "wide"][..], &["get", "events", "-A", "--sort-by=.lastTimestamp"]] {
            report.push_str(&format!("$ kubectl {}\n", args.join(" ")));
            report.push_str(&self.kubectl(args).unwrap_or_else(|error| format!("{error:#}\n")));
        }
        for process in &self.processes {
            report.push_str(&format!(
                "--- the end of {}\n{}\n",
                self.log(process.name).display(),
                self.tail(process.name)
            ));
        }
        report
    }

    /// Deletes the tests' workloads, stops every process in order, removes what the cluster made on the machine,
    /// and fails when anything of it is still there.
    pub fn stop(mut self) -> Result<()> {
        self.shut_down()?;
        let leftovers = self.host.leftovers(&self.containerd_socket);
        if !leftovers.is_empty() {
            bail!("the test cluster left behind: {}", leftovers.join(", "));
        }
        Ok(())
    }

    fn boot(&mut self, sh: &Shell, programs: &Programs) -> Result<()> {
        self.host.create(sh)?;
        let pki = config::Pki::write(sh, &self.dir.join("pki"), &self.host)?;
        let [etcd_port, etcd_peer_port, apiserver_port] = free_ports()?;
        pki.write_kubeconfig(&self.kubeconfig, apiserver_port)?;
        let sandbox_image = self.push_sandbox_image(&programs.busybox)?;

        let etcd = &programs.etcd;
        let data = self.dir.join("etcd");
        let client = format!("http://127.0.0.1:{etcd_port}");
        let peer = format!("http://127.0.0.1:{etcd_peer_port}");
        let cluster = format!("xtask={peer}");
        // No fsync: the data lives as long as the test.
        self.spawn(
            "etcd",
            5,
            cmd!(
                sh,
                "{etcd} --name xtask --data-dir {data} --listen-client-urls {client} --advertise-client-urls {client}
                 --listen-peer-urls {peer} --initial-advertise-peer-urls {peer} --initial-cluster {cluster}
                 --unsafe-no-fsync"
            ),
        )?;
        let health = format!("{client}/health");
        let http = reqwest::blocking::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build()?;
        self.wait("etcd", "etcd to answer", 30, || {
            Ok(http.get(&health).send().is_ok_and(|response| response.status().is_success()))
        })?;

        let (apiserver, ca, ca_key) = (&programs.apiserver, &pki.ca, &pki.ca_key);
        let (cert, key, tokens) = (&pki.apiserver_cert, &pki.apiserver_key, &pki.tokens);
        let (account_key, account_public) = (&pki.service_account_key, &pki.service_account_public);
        let (node_ip, services) = (self.host.node_ip(), self.host.service_subnet());
        let port = apiserver_port.to_string();
        // The `kubernetes` service's endpoint must not be loopback: it is the node's address. Aggregator routing
        // makes the API server call a webhook at its Service's endpoint (inside the webhook's namespace) rather than
        // at a cluster IP, which nothing here routes.
        self.spawn(
            "kube-apiserver",
            10,
            cmd!(
                sh,
                "{apiserver} --etcd-servers {client} --bind-address 127.0.0.1 --secure-port {port}
                 --advertise-address {node_ip} --tls-cert-file {cert} --tls-private-key-file {key}
                 --client-ca-file {ca} --token-auth-file {tokens} --anonymous-auth=false
                 --service-account-key-file {account_public} --service-account-signing-key-file {account_key}
                 --service-account-issuer https://kubernetes.default.svc --service-cluster-ip-range {services}
                 --authorization-mode Node,RBAC
                 --enable-admission-plugins PodSecurity,MutatingAdmissionWebhook,ValidatingAdmissionWebhook
                 --enable-aggregator-routing=true --profiling=false"
            ),
        )?;
        self.wait("kube-apiserver", "the API server to be ready", 60, || {
            Ok(self.kubectl(&["get", "--raw", "/readyz"]).is_ok_and(|answer| answer.trim() == "ok"))
        })?;

        let (controller_manager, scheduler, kubeconfig) =
            (&programs.controller_manager, &programs.scheduler, &self.kubeconfig.clone());
        let plugins = self.dir.join("kubelet/volume-plugins");
        // No HTTPS port for either (--secure-port 0); the flex-volume folder is otherwise made in /usr/libexec.
        self.spawn(
            "kube-controller-manager",
            5,
            cmd!(
                sh,
                "{controller_manager} --kubeconfig {kubeconfig} --leader-elect=false --secure-port 0
                 --service-account-private-key-file {account_key} --root-ca-file {ca}
                 --cluster-signing-cert-file {ca} --cluster-signing-key-file {ca_key}
                 --use-service-account-credentials=false --flex-volume-plugin-dir {plugins}"
            ),
        )?;
        self.spawn(
            "kube-scheduler",
            5,
            cmd!(sh, "{scheduler} --kubeconfig {kubeconfig} --leader-elect=false --secure-port 0"),
        )?;

        let containerd_dir = self.dir.join("containerd");
        let containerd_config = containerd_dir.join("config.toml");
        std::fs::write(
            &containerd_config,
            config::containerd(
                &containerd_dir,
                self.registry(),
                &sandbox_image,
                &programs.runc,
                &programs.cni_plugins,
            )?,
        )?;
        std::fs::create_dir_all(containerd_dir.join("net.d"))?;
        std::fs::write(
            containerd_dir.join("net.d/10-xtask-kube.conflist"),
            config::cni_network(&self.host, &containerd_dir.join("ipam")),
        )?;
        let containerd = &programs.containerd;
        self.spawn("containerd", 10, cmd!(sh, "{containerd} --config {containerd_config}"))?;
        self.wait("containerd", "containerd to listen", 30, || Ok(self.containerd_socket.exists()))?;

        let (kubelet, node) = (&programs.kubelet, self.host.name());
        let kubelet_dir = self.dir.join("kubelet");
        let kubelet_config = kubelet_dir.join("config.yaml");
        std::fs::write(&kubelet_config, config::kubelet(&self.host, &self.containerd_socket, &kubelet_dir))?;
        // Its certificates' folder does not follow --root-dir.
        let (root, certificates) = (kubelet_dir.join("root"), kubelet_dir.join("pki"));
        self.spawn(
            "kubelet",
            10,
            cmd!(
                sh,
                "{kubelet} --config {kubelet_config} --kubeconfig {kubeconfig} --root-dir {root}
                 --cert-dir {certificates} --hostname-override {node} --node-ip {node_ip}"
            ),
        )?;
        let node_ready = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
        self.wait("kubelet", "the node to be Ready", 60, || {
            Ok(self.kubectl(&["get", "node", &node, "-o", node_ready]).is_ok_and(|status| status == "True"))
        })?;

        self.start_policy_controller(sh, programs, apiserver_port)?;
        // Pods need their namespace's `default` service account, which the controller manager makes.
        self.wait("kube-controller-manager", "the default service account", 60, || {
            Ok(self.kubectl(&["-n", "default", "get", "serviceaccount", "default"]).is_ok())
        })
    }

    /// policy-controller's CRDs, webhook configurations and ConfigMaps from its module; its Service, whose one
    /// endpoint is the webhook's address in its network namespace; the API server and the registry forwarded into
    /// that namespace; then the webhook itself, ready once it has answered an admission request.
    fn start_policy_controller(&mut self, sh: &Shell, programs: &Programs, apiserver_port: u16) -> Result<()> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&programs.policy_controller_config)
            .with_context(|| format!("reading {}", programs.policy_controller_config.display()))?
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|extension| extension == "yaml"))
            // Its kustomization, its Deployment and its Service with a pod selector: the webhook runs outside the
            // cluster here, and a selector would let the endpoint controller replace the endpoint below.
            .filter(|path| {
                !["kustomization.yaml", "webhook.yaml", "400-webhook-service.yaml"]
                    .iter()
                    .any(|skipped| path.file_name().is_some_and(|name| name == *skipped))
            })
            .collect();
        // Numbered by dependency: the namespace first, the CRDs before anything else.
        files.sort();
        let mut args = vec!["apply".to_owned()];
        for file in &files {
            args.extend(["-f".to_owned(), file.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.kubectl(&args).context("installing policy-controller's configuration")?;
        self.apply(&format!(
            "apiVersion: v1
kind: Service
metadata: {{name: webhook, namespace: {POLICY_NAMESPACE}}}
spec:
  ports: [{{port: 443, targetPort: {WEBHOOK_PORT}, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: webhook-xtask-kube
  namespace: {POLICY_NAMESPACE}
  labels: {{kubernetes.io/service-name: webhook, endpointslice.kubernetes.io/managed-by: xtask-kube}}
addressType: IPv4
ports: [{{port: {WEBHOOK_PORT}, protocol: TCP}}]
endpoints: [{{addresses: [\"{}\"], conditions: {{ready: true}}}}]
",
            self.host.webhook_ip()
        ))
        .context("creating policy-controller's Service")?;

        let netns = self.host.name();
        let registry_port: u16 = self.registry().rsplit(':').next().unwrap_or_default().parse()?;
        for port in [apiserver_port, registry_port] {
            self.forwards.push(Forward::into_netns(&netns, port)?);
        }
        let (binary, kubeconfig, home) =
            (&programs.policy_controller, &self.kubeconfig, self.dir.join("policy-controller"));
        let port = WEBHOOK_PORT.to_string();
        // The environment its Deployment gives it. TUF off: its trust roots come from the internet, and the
        // policies here name keys.
        // No grace when it stops: its webhook keeps serving for knative's lame-duck period after SIGTERM, a drain
        // that nothing here needs.
        self.spawn(
            "policy-controller",
            0,
            cmd!(sh, "ip netns exec {netns} {binary} --disable-tuf --secure-port {port}")
                .env("KUBECONFIG", kubeconfig)
                .env("HOME", &home)
                .env("SYSTEM_NAMESPACE", POLICY_NAMESPACE)
                .env("CONFIG_LOGGING_NAME", "config-logging")
                .env("METRICS_DOMAIN", "sigstore.dev/policy")
                .env("WEBHOOK_NAME", "webhook")
                .env("POD_NAME", "webhook-xtask-kube"),
        )?;
        // It fills in the rules and CA bundle of its webhook configurations once it serves; until then they match
        // nothing.
        let configurations = [
            ("mutatingwebhookconfiguration", "policy.sigstore.dev"),
            ("validatingwebhookconfiguration", "policy.sigstore.dev"),
            ("mutatingwebhookconfiguration", "defaulting.clusterimagepolicy.sigstore.dev"),
            ("validatingwebhookconfiguration", "validating.clusterimagepolicy.sigstore.dev"),
        ];
        self.wait("policy-controller", "policy-controller to configure its webhooks", 90, || {
            for (kind, name) in configurations {
                let bundle =
                    self.kubectl(&["get", kind, name, "-o", "jsonpath={.webhooks[0].clientConfig.caBundle}"])?;
                if bundle.trim().is_empty() {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        // A dry run of a policy passes policy-controller's own webhooks: the API server reached it.
        let probe = "apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata: {name: xtask-kube-probe}
spec:
  images: [{glob: \"xtask-kube.invalid/probe\"}]
  authorities: [{static: {action: pass}}]
";
        self.wait("policy-controller", "policy-controller to answer admission requests", 90, || {
            Ok(self.kubectl_with_input(&["create", "--dry-run=server", "-f", "-"], probe).is_ok())
        })
    }

    /// The sandbox ("pause") image every pod starts with: busybox sleeping as an unprivileged user, pushed to the
    /// cluster's registry. containerd stops it with SIGKILL, so it needs no signal handling.
    fn push_sandbox_image(&self, busybox: &Path) -> Result<String> {
        let program = std::fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
        let dir = self.dir.join("sandbox-image");
        let layout =
            layout::program(&dir, "bin/busybox", &program, &["/bin/busybox", "sleep", "2147483647"], "65535:65535");
        let repository = format!("{}/xtask-kube/pause", self.registry());
        xtask::registry::push_layout(&layout.dir, &repository, &["busybox".to_owned()])
            .context("pushing the sandbox image")?;
        Ok(format!("{repository}:busybox"))
    }

    /// Starts a component with its output in `out/kube/logs/NAME.log` and its pid (and start time) in
    /// `out/kube/pids/NAME`, where the next start finds it if this run is killed.
    fn spawn(&mut self, name: &'static str, grace_seconds: u64, command: xshell::Cmd) -> Result<()> {
        let log = File::create(self.log(name))?;
        let mut command = std::process::Command::from(command);
        command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let child = command.spawn().with_context(|| format!("starting {name}"))?;
        record_pid(&self.dir, name, child.id())?;
        self.processes.push(Process { name, child, grace: Duration::from_secs(grace_seconds) });
        Ok(())
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }

    fn tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.log(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Polls `ready` until it holds, failing with the end of `process`'s log when the process exits or `seconds`
    /// pass.
    fn wait(&self, process: &str, what: &str, seconds: u64, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if ready().unwrap_or(false) {
                return Ok(());
            }
            if self.has_exited(process) {
                bail!("{process} exited while waiting for {what}; the end of its log:\n{}", self.tail(process));
            }
            if Instant::now() > deadline {
                bail!("waited {seconds} s for {what}; the end of {process}'s log:\n{}", self.tail(process));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Whether the component has exited: a zombie until [`TestCluster::stop_process`] reaps it (`try_wait` would
    /// need `&mut self` in the middle of a wait that reads the cluster).
    fn has_exited(&self, name: &str) -> bool {
        let Some(process) = self.processes.iter().find(|process| process.name == name) else { return false };
        let state = std::fs::read_to_string(format!("/proc/{}/stat", process.child.id())).unwrap_or_default();
        state.rfind(')').is_none_or(|end| state[end + 1..].trim_start().starts_with('Z'))
    }

    /// Deletes the namespaces the tests made (their pods with them) and the pods of `default`, and waits until the
    /// kubelet has stopped every one.
    fn delete_workloads(&self) -> Result<()> {
        let namespaces = self.kubectl(&["get", "namespaces", "-o", "jsonpath={.items[*].metadata.name}"])?;
        for namespace in namespaces.split_whitespace().filter(|name| !SYSTEM_NAMESPACES.contains(name)) {
            self.kubectl(&["delete", "namespace", namespace, "--wait=false"])?;
        }
        self.kubectl(&["-n", "default", "delete", "deployments,pods", "--all", "--wait=false"])?;
        self.wait("kubelet", "the tests' pods to stop", 120, || {
            Ok(self.kubectl(&["get", "pods", "-A", "-o", "name"])?.trim().is_empty())
        })
    }

    fn shut_down(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let mut problems = Vec::new();
        let running = |name: &str| self.processes.iter().any(|process| process.name == name);
        if running("kubelet") && running("kube-apiserver") {
            if let Err(error) = self.delete_workloads() {
                problems.push(format!("deleting the workloads: {error:#}"));
            }
        }
        for name in STOP_ORDER {
            if let Some(position) = self.processes.iter().position(|process| process.name == name) {
                let process = self.processes.remove(position);
                self.stop_process(process);
            }
        }
        self.forwards.clear();
        let sh = Shell::new()?;
        match self.host.remove(&sh, &self.containerd_socket) {
            Ok(()) => {
                // Only the logs stay, for whoever reads a failure: the rest is big (image layers, etcd) or a secret
                // (the keys, the admin token).
                // What is left here is in the checkout's out/, not on the machine: said, and not a failure.
                if let Err(error) = clear_folder(&self.dir, &["logs"]) {
                    eprintln!("kube: {error:#}");
                }
            }
            Err(error) => problems.push(format!("removing what the cluster made on this machine: {error:#}")),
        }
        if !problems.is_empty() {
            bail!("stopping the test cluster: {}", problems.join("; "));
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL once its grace is over (at once without grace).
    fn stop_process(&self, mut process: Process) {
        if !process.grace.is_zero() {
            let pid = process.child.id() as i32;
            // SAFETY: kill(2) has no memory effects; the child is ours and not yet reaped, so the pid is still its.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + process.grace;
        while Instant::now() < deadline {
            if process.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if process.child.try_wait().ok().flatten().is_none() {
            if !process.grace.is_zero() {
                eprintln!("kube: {} did not stop within {:?} of SIGTERM: killing it", process.name, process.grace);
            }
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("pids").join(process.name));
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Err(error) = self.shut_down() {
            eprintln!("kube: {error:#}");
        }
    }
}

/// Removes everything in `dir` but the entries named in `keep`: every entry is tried, and the first failure is
/// returned.
fn clear_folder(dir: &Path, keep: &[&str]) -> Result<()> {
    let mut first_failure = Ok(());
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.flatten() {
        if keep.iter().any(|name| entry.file_name() == *name) {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        if let Err(error) = removed {
            first_failure = first_failure.and(Err(error).with_context(|| format!("removing {}", path.display())));
        }
    }
    first_failure
}

/// Writes `out/kube/pids/NAME`: the pid and start time of a process the next start kills if this run is killed.
fn record_pid(dir: &Path, name: &str, pid: u32) -> Result<()> {
    let started = host::start_time(pid).unwrap_or_default();
    std::fs::write(dir.join("pids").join(name), format!("{pid} {started}\n")).context("recording a process")
}

/// The machine's test-cluster lock, `/run/lock/xtask-kube.lock` (the file stays, as lock files do), waited for.
fn lock() -> Result<File> {
    let path = Path::new("/run/lock/xtask-kube.lock");
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let descriptor = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: flock(2) on a descriptor the File keeps open; the lock goes with it.
    if unsafe { libc::flock(descriptor, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        eprintln!("kube: another test cluster runs on this machine: waiting for it to stop ({})", path.display());
        // SAFETY: as above.
        if unsafe { libc::flock(descriptor, libc::LOCK_EX) } != 0 {
            bail!("locking {}: {}", path.display(), std::io::Error::last_os_error());
        }
    }
    Ok(file)
}

/// Ports free on 127.0.0.1 right now, distinct from each other.
fn free_ports<const N: usize>() -> Result<[u16; N]> {
    // Held together until all are picked, so that none is picked twice.
    let listeners: Vec<std::net::TcpListener> =
        (0..N).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<_>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}
