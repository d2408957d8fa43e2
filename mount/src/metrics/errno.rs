//! Linux errno names, for the `errno` label: a number means little on a
//! dashboard. Taken from the kernel's asm-generic/errno{-base,}.h (the
//! numbers every Linux architecture but alpha, mips, parisc and sparc
//! uses); the two unassigned numbers read `E41` and `E58`.

/// `NAMES[e]` names errno `e`; slot 0 collects every errno outside
/// `1..=ERRNO_MAX` (none the daemon sends today).
const NAMES: [&str; ERRNO_MAX + 1] = [
    "unknown", "EPERM", "ENOENT", "ESRCH", "EINTR", "EIO", "ENXIO", "E2BIG", "ENOEXEC", "EBADF", "ECHILD", "EAGAIN",
    "ENOMEM", "EACCES", "EFAULT", "ENOTBLK", "EBUSY", "EEXIST", "EXDEV", "ENODEV", "ENOTDIR", "EISDIR",
    "EINVAL", "ENFILE", "EMFILE", "ENOTTY", "ETXTBSY", "EFBIG", "ENOSPC", "ESPIPE", "EROFS", "EMLINK",
    "EPIPE", "EDOM", "ERANGE", "EDEADLK", "ENAMETOOLONG", "ENOLCK", "ENOSYS", "ENOTEMPTY", "ELOOP", "E41",
    "ENOMSG", "EIDRM", "ECHRNG", "EL2NSYNC", "EL3HLT", "EL3RST", "ELNRNG", "EUNATCH", "ENOCSI", "EL2HLT",
    "EBADE", "EBADR", "EXFULL", "ENOANO", "EBADRQC", "EBADSLT", "E58", "EBFONT", "ENOSTR", "ENODATA", "ETIME",
    "ENOSR", "ENONET", "ENOPKG", "EREMOTE", "ENOLINK", "EADV", "ESRMNT", "ECOMM", "EPROTO", "EMULTIHOP",
    "EDOTDOT", "EBADMSG", "EOVERFLOW", "ENOTUNIQ", "EBADFD", "EREMCHG", "ELIBACC", "ELIBBAD", "ELIBSCN",
    "ELIBMAX", "ELIBEXEC", "EILSEQ", "ERESTART", "ESTRPIPE", "EUSERS", "ENOTSOCK", "EDESTADDRREQ", "EMSGSIZE",
    "EPROTOTYPE", "ENOPROTOOPT", "EPROTONOSUPPORT", "ESOCKTNOSUPPORT", "EOPNOTSUPP", "EPFNOSUPPORT",
    "EAFNOSUPPORT", "EADDRINUSE", "EADDRNOTAVAIL", "ENETDOWN", "ENETUNREACH", "ENETRESET", "ECONNABORTED",
    "ECONNRESET", "ENOBUFS", "EISCONN", "ENOTCONN", "ESHUTDOWN", "ETOOMANYREFS", "ETIMEDOUT", "ECONNREFUSED",
    "EHOSTDOWN", "EHOSTUNREACH", "EALREADY", "EINPROGRESS", "ESTALE", "EUCLEAN", "ENOTNAM", "ENAVAIL",
    "EISNAM", "EREMOTEIO", "EDQUOT", "ENOMEDIUM", "EMEDIUMTYPE", "ECANCELED", "ENOKEY", "EKEYEXPIRED",
    "EKEYREVOKED", "EKEYREJECTED", "EOWNERDEAD", "ENOTRECOVERABLE", "ERFKILL", "EHWPOISON",
];

/// The largest errno with a name of its own.
pub const ERRNO_MAX: usize = 133;

/// Where errno `e` is counted: itself if named, else slot 0.
pub fn slot(errno: i32) -> usize {
    usize::try_from(errno).ok().filter(|e| (1..=ERRNO_MAX).contains(e)).unwrap_or(0)
}

/// The name of slot `slot` (see [`slot`]).
pub fn name(slot: usize) -> &'static str {
    NAMES.get(slot).copied().unwrap_or(NAMES[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sit_at_their_numbers() {
        let known = [
            (libc::EPERM, "EPERM"),
            (libc::ENOENT, "ENOENT"),
            (libc::ENOSYS, "ENOSYS"),
            (libc::ENOTEMPTY, "ENOTEMPTY"),
            (libc::ENODATA, "ENODATA"),
            (libc::EOPNOTSUPP, "EOPNOTSUPP"),
            (libc::ENOTCONN, "ENOTCONN"),
            (libc::EDQUOT, "EDQUOT"),
            (libc::EHWPOISON, "EHWPOISON"),
        ];
        for (errno, want) in known {
            assert_eq!(name(slot(errno)), want);
        }
        assert_eq!(libc::EHWPOISON as usize, ERRNO_MAX);
    }

    #[test]
    fn errnos_out_of_range_share_slot_zero() {
        for e in [0, -1, ERRNO_MAX as i32 + 1, i32::MAX] {
            assert_eq!(slot(e), 0);
        }
        assert_eq!(name(0), "unknown");
    }
}
