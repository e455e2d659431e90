//! Test counts, summed over the test binaries of a run and over the kernels they ran on.
//! Shared by the host run (`test.rs`) and the qemu guests (`vm.rs`), which both read
//! libtest's output.

/// Test counts, from libtest's `test result:` lines.
#[derive(Default, Clone, Copy)]
pub struct Totals {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Totals {
    /// Counts `line` if it is a libtest `test result: …` line.
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }

    /// Adds another binary's (or kernel's) counts to these.
    pub fn add(&mut self, other: Totals) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.ignored
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn libtest_result_lines() {
        let mut t = Totals::default();
        t.add_line("test result: FAILED. 7 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 3.2s");
        t.add_line("test exit_code_42 ... ok");
        t.add_line("test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 4 filtered out");
        assert_eq!((t.passed, t.failed, t.ignored), (10, 2, 1));
        assert_eq!(t.to_string(), "10 passed, 2 failed, 1 skipped");
    }
}
