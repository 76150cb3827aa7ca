//! Facts about the user img runs as.

/// The effective uid, from `/proc/self/status` (the second field of `Uid:`).
pub fn effective_uid() -> Option<u32> {
    effective_id("Uid:")
}

/// The effective gid, from `/proc/self/status` (the second field of `Gid:`).
pub fn effective_gid() -> Option<u32> {
    effective_id("Gid:")
}

fn effective_id(field: &str) -> Option<u32> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find_map(|l| l.strip_prefix(field))?.split_whitespace().nth(1)?.parse().ok()
}

/// Reads a password from standard input: on a terminal after `prompt`,
/// with the terminal's echo off (as podman and getpass read one); else the
/// first line, without its line end.
pub fn read_password(prompt: &str) -> std::io::Result<String> {
    img_sys::process::read_secret_line(prompt)
}
