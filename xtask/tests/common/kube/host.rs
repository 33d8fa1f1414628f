//! What the test cluster changes on this machine outside `out/kube/`, and how every piece of it is undone.
//!
//! Each change is written down in `out/kube/host.json` before it is made, so that the next start (after a run that
//! was killed) and the end of a run remove exactly what this checkout's cluster made, and nothing of anyone else's:
//!
//! - a network namespace for the admission webhook and the veth pair into it (`198.19.N.0/30`), which the API server
//!   calls because it refuses loopback endpoints; nothing else in it is reachable from outside the machine;
//! - the pods' bridge (`198.18.N.0/24`, its first address the node's), and one iptables rule that lets traffic
//!   between the pods on it through the FORWARD chain (Docker sets that chain's policy to DROP, and with
//!   `br_netfilter` even traffic between two ports of one bridge passes it);
//! - one cgroup per hierarchy, the kubelet's cgroup root, with every container's cgroup under it;
//! - the kernel settings the kubelet raises when it starts (it insists), restored to what they were;
//! - the folders the kubelet and the CNI library create at fixed places (`/var/lib/kubelet`, `/var/log/containers`,
//!   `/var/lib/cni`) when they did not exist before;
//! - the processes (recorded under `out/kube/pids/`), the containers' processes (found by their cgroups), and the
//!   mounts under `out/kube/` (container root filesystems, the pods' network namespaces, volumes).
//!
//! Addresses are in 198.18.0.0/15, the range set aside for testing network equipment (RFC 2544); N comes from the
//! checkout's path and moves on when another cluster (another checkout) already uses it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use xshell::{cmd, Shell};

/// The kernel settings the kubelet sets when they differ (`setupKernelTunables`), and IP forwarding, which the CNI
/// bridge plugin turns on for a gateway bridge.
const SYSCTLS: [&str; 7] = [
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
];

/// Folders the kubelet (device plugins' socket, container log links) and the CNI library (its result cache) create
/// at fixed paths whatever they are told.
const FIXED_FOLDERS: [&str; 3] = ["/var/lib/kubelet", "/var/log/containers", "/var/lib/cni"];

/// The names and addresses of one checkout's cluster, and what it found on the machine before it changed anything.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Host {
    /// Six hex digits of the hash of `out/kube/`'s path: every name the cluster gives a host resource carries it.
    pub id: String,
    /// N in the cluster's subnets.
    pub subnet: u8,
    /// The folder everything else lives in (`out/kube/`, its path resolved).
    pub root: PathBuf,
    /// Each of [`SYSCTLS`] as it was before the cluster started.
    sysctls: BTreeMap<String, String>,
    /// Which of [`FIXED_FOLDERS`] did not exist before the cluster started (and are removed at its end).
    created_folders: Vec<PathBuf>,
}

impl Host {
    /// Picks names and a free subnet for the cluster of `root`, records the machine's current settings and saves
    /// all of it to `host.json` before anything is changed.
    pub fn plan(sh: &Shell, root: &Path) -> Result<Host> {
        let id = hex::encode(&Sha256::digest(root.as_os_str().as_encoded_bytes())[..3]);
        let in_use = cmd!(sh, "ip -4 -o addr show").quiet().read()? + &cmd!(sh, "ip -4 route show").quiet().read()?;
        let first = u8::from_str_radix(&id[..2], 16)? % 128;
        let subnet = (0..128)
            .map(|offset| (first + offset) % 128)
            .find(|&n| {
                [format!("198.18.{n}."), format!("198.18.{}.", n + 128), format!("198.19.{n}.")]
                    .iter()
                    .all(|prefix| !in_use.contains(prefix.as_str()))
            })
            .context("every subnet 198.18.N.0/24 (N < 128) is in use on this machine")?;
        let mut sysctls = BTreeMap::new();
        for name in SYSCTLS {
            sysctls.insert(name.to_owned(), read_sysctl(name)?);
        }
        let created_folders = FIXED_FOLDERS.iter().map(PathBuf::from).filter(|folder| !folder.exists()).collect();
        let host = Host { id, subnet, root: root.to_owned(), sysctls, created_folders };
        std::fs::write(root.join("host.json"), serde_json::to_vec_pretty(&host)?)
            .context("writing out/kube/host.json")?;
        Ok(host)
    }

    /// What an earlier run in this checkout recorded, if it left anything behind.
    pub fn recorded(root: &Path) -> Option<Host> {
        serde_json::from_slice(&std::fs::read(root.join("host.json")).ok()?).ok()
    }

    /// One name for everything the run creates once per host: the network namespace, the CNI network (which also
    /// prefixes the CNI library's cache entries and comments the iptables rule), the kubelet's cgroup root (one
    /// folder in each cgroup hierarchy) and the node.
    pub fn name(&self) -> String {
        format!("xtask-kube-{}", self.id)
    }

    fn veth_host(&self) -> String {
        format!("xk{}h", self.id)
    }

    fn veth_webhook(&self) -> String {
        format!("xk{}w", self.id)
    }

    pub fn bridge(&self) -> String {
        format!("xk{}br", self.id)
    }

    /// The node's address: the bridge's, the pods' gateway.
    pub fn node_ip(&self) -> String {
        format!("198.18.{}.1", self.subnet)
    }

    pub fn pod_subnet(&self) -> String {
        format!("198.18.{}.0/24", self.subnet)
    }

    /// Cluster IPs are only allocated (there is no kube-proxy): a range no interface has.
    pub fn service_subnet(&self) -> String {
        format!("198.18.{}.0/24", u16::from(self.subnet) + 128)
    }

    /// The first address of the service range: the `kubernetes` service's, which the API server's certificate names.
    pub fn kubernetes_service_ip(&self) -> String {
        format!("198.18.{}.1", u16::from(self.subnet) + 128)
    }

    /// Where the admission webhook listens, inside its network namespace.
    pub fn webhook_ip(&self) -> String {
        format!("198.19.{}.2", self.subnet)
    }

    fn iptables_rule(&self) -> [String; 11] {
        let bridge = self.bridge();
        ["FORWARD", "-i", &bridge, "-o", &bridge, "-m", "comment", "--comment", &self.name(), "-j", "ACCEPT"]
            .map(str::to_owned)
    }

    /// Every cgroup hierarchy's folder of the cluster: one per controller on cgroup v1, one on v2.
    fn cgroup_folders(&self) -> Vec<PathBuf> {
        let base = Path::new("/sys/fs/cgroup");
        if base.join("cgroup.controllers").exists() {
            return vec![base.join(self.name())];
        }
        let mut folders: Vec<PathBuf> = std::fs::read_dir(base)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|hierarchy| hierarchy.join("cgroup.procs").exists())
            .map(|hierarchy| hierarchy.join(self.name()))
            .collect();
        folders.sort();
        folders
    }

    /// The webhook's network namespace with the veth pair into it, the pods' bridge and its FORWARD rule, and the
    /// kubelet's cgroup root.
    pub fn create(&self, sh: &Shell) -> Result<()> {
        let (netns, host_end, webhook_end, bridge) =
            (self.name(), self.veth_host(), self.veth_webhook(), self.bridge());
        let n = self.subnet;
        let (host_address, webhook_address, node_address) =
            (format!("198.19.{n}.1/30"), format!("{}/30", self.webhook_ip()), format!("{}/24", self.node_ip()));
        let steps = [
            cmd!(sh, "ip netns add {netns}"),
            cmd!(sh, "ip -n {netns} link set lo up"),
            cmd!(sh, "ip link add {host_end} type veth peer name {webhook_end} netns {netns}"),
            cmd!(sh, "ip addr add {host_address} dev {host_end}"),
            cmd!(sh, "ip link set {host_end} up"),
            cmd!(sh, "ip -n {netns} addr add {webhook_address} dev {webhook_end}"),
            cmd!(sh, "ip -n {netns} link set {webhook_end} up"),
            cmd!(sh, "ip link add {bridge} type bridge"),
            cmd!(sh, "ip addr add {node_address} dev {bridge}"),
            cmd!(sh, "ip link set {bridge} up"),
        ];
        for step in steps {
            let shown = step.to_string();
            step.quiet().run().with_context(|| format!("setting up the cluster's network: `{shown}`"))?;
        }
        let rule = self.iptables_rule();
        cmd!(sh, "iptables -I {rule...}").quiet().run().context("letting the pods' traffic through iptables")?;
        for folder in self.cgroup_folders() {
            std::fs::create_dir_all(&folder).with_context(|| format!("creating the cgroup {}", folder.display()))?;
            // cpuset v1 starts a new cgroup with no CPU and no memory node: nothing could run in it.
            for file in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(parent) = std::fs::read_to_string(folder.parent().unwrap().join(file)) {
                    std::fs::write(folder.join(file), parent.trim())
                        .with_context(|| format!("writing {}", folder.join(file).display()))?;
                }
            }
        }
        Ok(())
    }

    /// Removes everything [`Host::create`] and the cluster's processes made, in the order that lets each go: the
    /// processes, the mounts under `out/kube/`, the network, the cgroups, the kernel settings and the fixed folders.
    /// `containerd_socket` identifies the containerd shims of this cluster.
    pub fn remove(&self, sh: &Shell, containerd_socket: &Path) -> Result<()> {
        kill_recorded(&self.root.join("pids"));
        self.kill_containers(containerd_socket);
        unmount_under(sh, &self.root)?;
        let netns = self.name();
        if Path::new("/run/netns").join(&netns).exists() {
            cmd!(sh, "ip netns delete {netns}").quiet().run().context("deleting the webhook's network namespace")?;
        }
        // Deleting the namespace deletes the veth pair with it, a moment later.
        for link in [self.veth_host(), self.bridge()] {
            let exists = || Path::new("/sys/class/net").join(&link).exists();
            if exists() && cmd!(sh, "ip link delete {link}").quiet().ignore_stderr().run().is_err() && exists() {
                bail!("the link {link} could not be deleted");
            }
        }
        let rule = &self.iptables_rule();
        while cmd!(sh, "iptables -C {rule...}").quiet().ignore_stderr().run().is_ok() {
            cmd!(sh, "iptables -D {rule...}").quiet().run().context("removing the pods' iptables rule")?;
        }
        for folder in self.cgroup_folders() {
            remove_cgroup(&folder)?;
        }
        for (name, value) in &self.sysctls {
            if read_sysctl(name)? != *value {
                std::fs::write(sysctl_path(name), value).with_context(|| format!("restoring {name} to {value}"))?;
            }
        }
        self.remove_fixed_folders()
    }

    /// What the kubelet and the CNI library left at their fixed paths: the folders themselves when they are this
    /// cluster's, else only the entries that point into `out/kube/` or name its network.
    fn remove_fixed_folders(&self) -> Result<()> {
        for folder in &self.created_folders {
            xtask::files::remove_dir_if_present(folder)?;
        }
        let sandboxes = self.root.join("containerd/state/io.containerd.grpc.v1.cri/sandboxes");
        let sandboxes: Vec<String> = std::fs::read_dir(sandboxes)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        for entry in std::fs::read_dir("/var/lib/cni/results").into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{}-", self.name())) || sandboxes.iter().any(|id| name.contains(id.as_str())) {
                std::fs::remove_file(entry.path())?;
            }
        }
        for entry in std::fs::read_dir("/var/log/containers").into_iter().flatten().flatten() {
            if std::fs::read_link(entry.path()).is_ok_and(|target| target.starts_with(&self.root)) {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// SIGKILLs every process in the cluster's cgroups (the containers) and every containerd shim serving the
    /// cluster's containerd, until none is left.
    fn kill_containers(&self, containerd_socket: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut pids = Vec::new();
            for folder in self.cgroup_folders() {
                collect_cgroup_processes(&folder, &mut pids);
            }
            pids.extend(shims_of(containerd_socket));
            if pids.is_empty() || Instant::now() > deadline {
                return;
            }
            for pid in pids {
                // SAFETY: kill(2) has no memory effects; these processes are this cluster's containers and shims.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What is still there of the cluster: empty when [`Host::remove`] did its work.
    pub fn leftovers(&self, containerd_socket: &Path) -> Vec<String> {
        let mut found = Vec::new();
        if Path::new("/run/netns").join(self.name()).exists() {
            found.push(format!("the network namespace {}", self.name()));
        }
        for link in [self.veth_host(), self.bridge()] {
            if Path::new("/sys/class/net").join(&link).exists() {
                found.push(format!("the link {link}"));
            }
        }
        let iptables = Shell::new().ok().and_then(|sh| cmd!(sh, "iptables -S FORWARD").quiet().read().ok());
        if iptables.is_some_and(|rules| rules.contains(&self.name())) {
            found.push(format!("the iptables rule {}", self.name()));
        }
        found.extend(
            self.cgroup_folders()
                .into_iter()
                .filter(|folder| folder.exists())
                .map(|folder| format!("the cgroup {}", folder.display())),
        );
        found.extend(mounts_under(&self.root).into_iter().map(|mount| format!("the mount {}", mount.display())));
        found.extend(shims_of(containerd_socket).into_iter().map(|pid| format!("the containerd shim {pid}")));
        found.extend(
            recorded_processes(&self.root.join("pids")).into_iter().map(|(name, pid)| format!("{name} ({pid})")),
        );
        for (name, value) in &self.sysctls {
            match read_sysctl(name) {
                Ok(now) if now == *value => {}
                Ok(now) => found.push(format!("{name} = {now} (was {value})")),
                Err(error) => found.push(format!("{name}: {error:#}")),
            }
        }
        found.extend(
            self.created_folders.iter().filter(|folder| folder.exists()).map(|folder| folder.display().to_string()),
        );
        found
    }
}

fn sysctl_path(name: &str) -> PathBuf {
    Path::new("/proc/sys").join(name.replace('.', "/"))
}

fn read_sysctl(name: &str) -> Result<String> {
    Ok(std::fs::read_to_string(sysctl_path(name)).with_context(|| format!("reading {name}"))?.trim().to_owned())
}

/// A process's start time (field 22 of `/proc/PID/stat`): with the pid, it names a process that cannot be confused
/// with a later one that got the same pid.
pub fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19).map(str::to_owned)
}

/// The processes recorded in `pids/` (one file per process: `PID START-TIME`) that are still those processes.
fn recorded_processes(folder: &Path) -> Vec<(String, i32)> {
    let mut alive = Vec::new();
    for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
        let Some((pid, started)) = text.trim().split_once(' ') else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if start_time(pid).as_deref() == Some(started) {
            alive.push((entry.file_name().to_string_lossy().into_owned(), pid as i32));
        }
    }
    alive
}

/// SIGKILLs the processes an earlier run recorded and never stopped, and forgets them.
fn kill_recorded(folder: &Path) {
    for (_, pid) in recorded_processes(folder) {
        // SAFETY: kill(2) has no memory effects; the pid and its start time name a process this checkout started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = std::fs::remove_dir_all(folder);
}

fn collect_cgroup_processes(folder: &Path, pids: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(folder.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|line| line.trim().parse::<i32>().ok()));
    }
    for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            collect_cgroup_processes(&entry.path(), pids);
        }
    }
}

/// The containerd shims that serve the containerd listening on `socket`: their command line names it.
fn shims_of(socket: &Path) -> Vec<i32> {
    let wanted = socket.as_os_str().as_encoded_bytes();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(command) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let mut words = command.split(|&byte| byte == 0);
        let is_shim = words.next().is_some_and(|program| program.ends_with(b"containerd-shim-runc-v2"));
        if is_shim && words.any(|word| word == wanted) {
            pids.push(pid);
        }
    }
    pids
}

/// The mount points at or under `root`, deepest (latest) first.
fn mounts_under(root: &Path) -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        // mountinfo escapes spaces and a few other bytes as octal.
        .map(|point| PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| point.starts_with(root))
        .collect();
    mounts.reverse();
    mounts
}

fn unmount_under(sh: &Shell, root: &Path) -> Result<()> {
    // A mount may hide another at the same point: go again until none is left.
    for _ in 0..10 {
        let mounts = mounts_under(root);
        if mounts.is_empty() {
            return Ok(());
        }
        for mount in mounts {
            // Detached: a process that still has a file open there no longer keeps the mount in the way.
            cmd!(sh, "umount --lazy {mount}").quiet().ignore_stderr().run().ok();
        }
    }
    bail!("mounts under {} would not go: {:?}", root.display(), mounts_under(root))
}

/// Removes a cgroup and the ones under it, deepest first; a cgroup whose processes just died can stay busy for a
/// moment.
fn remove_cgroup(folder: &Path) -> Result<()> {
    if !folder.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(folder)?.flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            remove_cgroup(&entry.path())?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::remove_dir(folder) {
            Ok(()) => return Ok(()),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(error) => return Err(error).with_context(|| format!("removing the cgroup {}", folder.display())),
        }
    }
}
