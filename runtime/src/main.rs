//! The `stepbox` command.

fn main() -> std::process::ExitCode {
    stepbox::cli::main()
}
