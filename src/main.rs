/// The one real kernel: everything below `main` mounts and unshares
/// through the `&dyn Kernel` it is handed, so that tests can record instead.
static KERNEL: img_sys::RealKernel = img_sys::RealKernel;

fn main() -> std::process::ExitCode {
    img::cli::main(&KERNEL)
}
