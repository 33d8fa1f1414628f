//! Steps and services start with default dispositions for every signal and an empty mask, even
//! when the launcher's own parent ignored and blocked signals (`nohup`, a shell's background job,
//! a careless supervisor): what they inherit would otherwise survive exec.

mod common;

use std::os::unix::process::CommandExt;

use common::{argv, Mode, Scratch};

in_both_modes!(children_get_default_dispositions_and_an_empty_mask_whatever_the_launcher_inherited);

/// Runs in the launcher's parent-to-be after fork: ignores every signal that can be ignored
/// (SIGCHLD included when `ignore_sigchld`) and blocks them all. The raw syscalls reach the
/// real-time signals that libc keeps for itself too. Only async-signal-safe calls.
fn ignore_and_block_everything(ignore_sigchld: bool) -> std::io::Result<()> {
    // The kernel's struct sigaction starts with the handler on x86_64 and aarch64: SIG_IGN, no
    // flags, an empty mask. Larger than the kernel reads.
    let mut ignore = [0u64; 8];
    ignore[0] = libc::SIG_IGN as u64;
    let last = libc::SIGRTMAX();
    let sigset_bytes = (last as usize).div_ceil(8);
    for signal in 1..=last {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP || (signal == libc::SIGCHLD && !ignore_sigchld) {
            continue;
        }
        // SAFETY: `ignore` is larger than the kernel's struct sigaction.
        unsafe { signal_syscall(libc::SYS_rt_sigaction, signal, &ignore, sigset_bytes)? };
    }
    // SAFETY: the all-ones mask (16 bytes) is at least `sigset_bytes` long.
    unsafe { signal_syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &[u64::MAX; 2], sigset_bytes) }
}

/// rt_sigaction(first, input, NULL, sigset_bytes) or rt_sigprocmask(first, input, NULL,
/// sigset_bytes): the kernel reads `input` (an action, or a mask) and writes nothing back.
///
/// # Safety
/// `input` must be at least as long as what the kernel reads for `number`.
unsafe fn signal_syscall(
    number: libc::c_long,
    first: libc::c_int,
    input: &[u64],
    sigset_bytes: usize,
) -> std::io::Result<()> {
    // SAFETY: the caller vouches for the length of `input`; the old value is not asked for.
    let result =
        unsafe { libc::syscall(number, first, input.as_ptr(), std::ptr::null_mut::<libc::c_void>(), sigset_bytes) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A step and a service print their SigBlk and SigIgn lines of /proc/self/status (grep, started
/// directly, so that no shell stands in between): all zeroes. The launcher reaps them and exits
/// 0 although it inherited SIGCHLD ignored (which lets the kernel reap children on its own).
fn children_get_default_dispositions_and_an_empty_mask_whatever_the_launcher_inherited(mode: Mode) {
    let scratch = Scratch::new("dispositions");
    let grep = argv(&["grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"]);
    let mut command =
        scratch.launcher_command_in(mode, scratch.config().setup("step", &grep).service("service", &grep));
    // As PID 1 the launcher's parent is unshare, which must keep SIGCHLD to wait for it: there
    // the launcher inherits every other signal ignored.
    let ignore_sigchld = mode == Mode::Subreaper;
    // SAFETY: ignore_and_block_everything only makes async-signal-safe calls.
    unsafe {
        command.pre_exec(move || ignore_and_block_everything(ignore_sigchld));
    }
    let status = scratch.spawn_in(mode, command).wait();

    let stderr = scratch.assert_exited(status, 0, &["launcher: setup step `step` done"]);
    let clean = "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n";
    assert_eq!(scratch.stdout(), clean.repeat(2), "{stderr}");
}
