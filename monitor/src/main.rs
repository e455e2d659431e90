//! The `claude-monitor` binary: everything is in the library (`claude_monitor::app`).

fn main() -> std::process::ExitCode {
    claude_monitor::app::main()
}
