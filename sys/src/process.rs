//! Process-level calls that are not recorded: who the caller is, its
//! session, umask, parent-death signal, standard input and terminal, the
//! allocator, and the user a child runs as. They decide nothing about what
//! is mounted, so they stay plain functions instead of [`crate::Kernel`] or
//! [`crate::Sandbox`] methods; tests run them for real (or not at all).

pub use crate::sys::{
    die_with_parent, getppid, read_secret_line, release_free_memory, run_as, setsid, stdin_writers_gone, umask,
    wait_for_stdin_writers_gone,
};

/// Is the caller root (effective user 0)?
pub fn is_root() -> bool {
    crate::sys::geteuid() == 0
}
