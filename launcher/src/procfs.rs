//! What the launcher reads from /proc: its own children (orphans reparented to it included), and
//! a process's parent, to tell whether a process descends from a service.
//!
//! Pids are those of the /proc mount, which for a container (or `unshare --mount-proc`) is the
//! launcher's own PID namespace, the same numbering as waitpid and SCM_CREDENTIALS use.

use std::fs;
use std::io;

use libc::pid_t;

/// How far up `is_descendant` walks: process trees are shallow, and the walk must end even if
/// pids are recycled under it.
const MAX_ANCESTRY_DEPTH: usize = 64;

/// The launcher's children: the services and steps it started that are not reaped yet, and the
/// orphans reparented to it (as PID 1, or as a child subreaper).
pub fn own_children() -> io::Result<Vec<pid_t>> {
    let own = std::process::id() as pid_t;
    // One thread, so the main thread's list is all of them. It needs CONFIG_PROC_CHILDREN
    // (enabled by the usual distribution kernels); without it, every process's parent is read.
    match fs::read_to_string(format!("/proc/self/task/{own}/children")) {
        Ok(children) => Ok(children.split_whitespace().filter_map(|pid| pid.parse().ok()).collect()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => children_by_scan(own),
        Err(err) => Err(err),
    }
}

fn children_by_scan(own: pid_t) -> io::Result<Vec<pid_t>> {
    let mut children = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|name| name.parse::<pid_t>().ok()) else { continue };
        // A process that exits while the list is read is simply not a child any more.
        if parent_of(pid).is_ok_and(|parent| parent == own) {
            children.push(pid);
        }
    }
    Ok(children)
}

/// The parent of `pid`, from /proc/PID/stat. A zombie still has its entry, and its parent.
pub fn parent_of(pid: pid_t) -> io::Result<pid_t> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_parent(&stat).ok_or_else(|| io::Error::other(format!("cannot parse /proc/{pid}/stat")))
}

/// `PID (COMM) STATE PPID ...`: COMM may hold spaces and parentheses, so fields are counted
/// from the last `)`.
fn parse_parent(stat: &str) -> Option<pid_t> {
    let after_command = &stat[stat.rfind(')')? + 1..];
    after_command.split_whitespace().nth(1)?.parse().ok()
}

/// True when `pid` is `ancestor` or one of its descendants, following parents through /proc.
/// A process that was reparented (its parent exited) no longer descends from `ancestor`, and a
/// process already gone cannot be told apart from a stranger: both are false.
pub fn is_descendant(pid: pid_t, ancestor: pid_t) -> bool {
    let mut current = pid;
    for _ in 0..MAX_ANCESTRY_DEPTH {
        if current == ancestor {
            return true;
        }
        // Pid 1 and the kernel's threads (parent 0) are the roots; nothing above them descends.
        if current <= 1 {
            return false;
        }
        match parent_of(current) {
            Ok(parent) => current = parent,
            Err(_) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_parent_after_the_command_name() {
        assert_eq!(parse_parent("42 (sh) S 7 42 42 0 -1"), Some(7));
        assert_eq!(parse_parent("42 (a) b (c) R 9 1 1"), Some(9));
        assert_eq!(parse_parent("42 (sh"), None);
    }

    #[test]
    fn the_test_process_descends_from_its_parent() {
        let own = std::process::id() as pid_t;
        // SAFETY: getppid has no preconditions.
        let parent = unsafe { libc::getppid() };
        assert_eq!(parent_of(own).unwrap(), parent);
        assert!(is_descendant(own, own));
        assert!(is_descendant(own, parent));
        assert!(!is_descendant(parent, own));
    }
}
