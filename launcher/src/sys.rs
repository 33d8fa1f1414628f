//! The error convention of libc calls, shared by the modules that make them: a negative result
//! means failure, and errno says why.

use std::io;

use libc::c_int;

/// `result` when it is not negative, else the error in errno. Call it on the libc call's result
/// directly, before anything else can change errno.
pub fn check(result: c_int) -> io::Result<c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}
