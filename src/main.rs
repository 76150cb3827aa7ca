fn main() -> std::process::ExitCode {
    img::cli::main()
}
