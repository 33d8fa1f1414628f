//! The files the cluster's components start from: certificates and the admin token, the kubeconfig, and the
//! configuration of containerd, the CNI network and the kubelet. Each names only loopback, the cluster's own
//! subnets and folders under `out/kube/`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use xshell::{cmd, Shell};

use super::host::Host;

/// The certificate authority, the API server's serving certificate and the service-account signing key, made with
/// openssl; and the admin's bearer token, which the API server reads from a file and clients from the kubeconfig.
pub struct Pki {
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub apiserver_cert: PathBuf,
    pub apiserver_key: PathBuf,
    pub service_account_key: PathBuf,
    pub service_account_public: PathBuf,
    pub tokens: PathBuf,
    token: String,
}

impl Pki {
    pub fn write(sh: &Shell, dir: &Path, host: &Host) -> Result<Pki> {
        std::fs::create_dir_all(dir)?;
        let file = |name: &str| dir.join(name);
        let pki = Pki {
            ca: file("ca.crt"),
            ca_key: file("ca.key"),
            apiserver_cert: file("apiserver.crt"),
            apiserver_key: file("apiserver.key"),
            service_account_key: file("service-account.key"),
            service_account_public: file("service-account.pub"),
            tokens: file("tokens.csv"),
            token: xtask::stack::random_hex(32)?,
        };
        let (ca, ca_key) = (&pki.ca, &pki.ca_key);
        // EC P-256 throughout: generated in milliseconds, and accepted by every component.
        let curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        cmd!(
            sh,
            "openssl req -x509 {curve...} -keyout {ca_key} -out {ca} -days 2 -subj /CN=xtask-kube-ca
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
        )
        .quiet()
        .ignore_stderr()
        .run()
        .context("making the cluster's certificate authority")?;

        let (cert, key, request, extensions) =
            (&pki.apiserver_cert, &pki.apiserver_key, file("apiserver.csr"), file("apiserver.ext"));
        // The names clients use: loopback on the host and inside the webhook's namespace (through the forward), and
        // the `kubernetes` service.
        std::fs::write(
            &extensions,
            format!(
                "subjectAltName=IP:127.0.0.1,IP:{},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,\
                 DNS:kubernetes.default.svc\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
                host.kubernetes_service_ip()
            ),
        )?;
        cmd!(sh, "openssl req {curve...} -keyout {key} -out {request} -subj /CN=kube-apiserver")
            .quiet()
            .ignore_stderr()
            .run()
            .context("making the API server's key")?;
        cmd!(
            sh,
            "openssl x509 -req -in {request} -CA {ca} -CAkey {ca_key} -CAcreateserial -days 2 -extfile {extensions}
             -out {cert}"
        )
        .quiet()
        .ignore_stderr()
        .run()
        .context("signing the API server's certificate")?;

        let (account_key, account_public) = (&pki.service_account_key, &pki.service_account_public);
        cmd!(sh, "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {account_key}")
            .quiet()
            .run()
            .context("making the service-account signing key")?;
        cmd!(sh, "openssl pkey -in {account_key} -pubout -out {account_public}")
            .quiet()
            .run()
            .context("deriving the service-account public key")?;

        // One user in system:masters, which every component and the tests act as.
        write_private(&pki.tokens, &format!("{},xtask-admin,xtask-admin,system:masters\n", pki.token))?;
        Ok(pki)
    }

    /// A kubeconfig for the admin token against the API server on 127.0.0.1:`port`.
    pub fn write_kubeconfig(&self, path: &Path, port: u16) -> Result<()> {
        let text = format!(
            "apiVersion: v1
kind: Config
clusters:
- name: xtask-kube
  cluster: {{server: \"https://127.0.0.1:{port}\", certificate-authority: \"{ca}\"}}
users:
- name: xtask-admin
  user: {{token: \"{token}\"}}
contexts:
- name: xtask-kube
  context: {{cluster: xtask-kube, user: xtask-admin}}
current-context: xtask-kube
",
            ca = self.ca.display(),
            token = self.token,
        );
        write_private(path, &text)
    }
}

/// Readable by root only: the file holds the admin token.
fn write_private(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// containerd with its own root, state, socket and runc state; its CRI plugin pulls from the test registry over
/// plain HTTP and runs `sandbox_image` as every pod's sandbox.
pub fn containerd(dir: &Path, registry: &str, sandbox_image: &str, runc: &Path, cni_plugins: &Path) -> Result<String> {
    let hosts = dir.join("certs.d").join(registry);
    std::fs::create_dir_all(&hosts)?;
    std::fs::write(
        hosts.join("hosts.toml"),
        format!(
            "server = \"http://{registry}\"\n[host.\"http://{registry}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        ),
    )?;
    let d = dir.display();
    Ok(format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
# Snapshotters this machine may lack, and tracing: each would only log that it cannot start.
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{d}/containerd.sock"

# Its default is /opt/containerd.
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # Without CAP_SYS_RESOURCE (this machine), runc cannot lower the OOM score below its own and fails with
  # "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  # The pods' network namespaces under the state folder, not in the machine's /var/run/netns.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{d}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni}"
    conf_dir = "{d}/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{d}/certs.d"
"#,
        runc = runc.display(),
        cni = cni_plugins.display(),
    ))
}

/// One bridge network: the pods' veths on the cluster's bridge, addresses from its /24 (the host-local allocator's
/// state under `out/kube/`), the bridge's own address as their gateway. No masquerading: pods talk to each other
/// and to the host only.
pub fn cni_network(host: &Host, ipam_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": host.name(),
        "plugins": [{
            "type": "bridge",
            "bridge": host.bridge(),
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": host.pod_subnet(), "gateway": host.node_ip() }]],
                "dataDir": ipam_dir,
            },
        }],
    })
    .to_string()
}

/// The kubelet: cgroupfs under the cluster's cgroup root, no HTTPS server of its own (nothing here needs logs or
/// exec through the API server), no iptables chains, and no eviction or image garbage collection driven by the
/// machine's disk, which the cluster shares with everything else on it.
pub fn kubelet(host: &Host, containerd_socket: &Path, dir: &Path) -> String {
    let d = dir.display();
    format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
enableServer: false
readOnlyPort: 0
healthzPort: 0
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup}
failSwapOn: false
containerRuntimeEndpoint: unix://{socket}
podLogsDir: {d}/pod-logs
volumePluginDir: {d}/volume-plugins
makeIPTablesUtilChains: false
evictionHard:
  memory.available: \"0%\"
  nodefs.available: \"0%\"
  nodefs.inodesFree: \"0%\"
  imagefs.available: \"0%\"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
authorization: {{mode: AlwaysAllow}}
",
        cgroup = host.name(),
        socket = containerd_socket.display(),
    )
}
