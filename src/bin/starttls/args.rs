//! Command-line arguments: a small parser for `--flag`, `--option VALUE` and positionals.

/// Arguments after the subcommand, consumed as they are asked for.
pub struct Args {
    items: Vec<String>,
}

impl Args {
    pub fn new(items: Vec<String>) -> Args {
        Args { items }
    }

    /// Removes `--name` (or one of its aliases) and tells whether it was there.
    pub fn flag(&mut self, names: &[&str]) -> bool {
        let before = self.items.len();
        self.items.retain(|a| !names.contains(&a.as_str()));
        before != self.items.len()
    }

    /// Removes every `--name` and `--name=...` and tells whether there was one (the value is
    /// never looked at: for options that must not be given at all).
    pub fn flag_or_assignment(&mut self, name: &str) -> bool {
        let prefix = format!("{name}=");
        let before = self.items.len();
        self.items
            .retain(|a| a.as_str() != name && !a.starts_with(&prefix));
        before != self.items.len()
    }

    /// Removes `--name VALUE` or `--name=VALUE` and returns VALUE.
    pub fn value(&mut self, name: &str) -> Result<Option<String>, String> {
        let prefix = format!("{name}=");
        if let Some(i) = self.items.iter().position(|a| a.starts_with(&prefix)) {
            let v = self.items.remove(i)[prefix.len()..].to_owned();
            return Ok(Some(v));
        }
        let Some(i) = self.items.iter().position(|a| a == name) else {
            return Ok(None);
        };
        if i + 1 >= self.items.len() {
            return Err(format!("{name} needs a value"));
        }
        self.items.remove(i);
        Ok(Some(self.items.remove(i)))
    }

    /// What is left: positionals. Anything that looks like an option is an error.
    pub fn positionals(self) -> Result<Vec<String>, String> {
        if let Some(unknown) = self
            .items
            .iter()
            .find(|a| a.starts_with('-') && a.len() > 1)
        {
            // Only the name: a value glued on with `=` may be a secret (`--passwd=...`).
            let name = unknown.split_once('=').map_or(unknown.as_str(), |(n, _)| n);
            return Err(format!("unknown option {name}"));
        }
        Ok(self.items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Args {
        Args::new(s.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn parses_flags_values_and_positionals() {
        let mut a = args(&["--json", "--timeout", "5", "smtp://x", "--ca-file=ca.pem"]);
        assert!(a.flag(&["--json"]));
        assert!(!a.flag(&["-v"]));
        assert_eq!(a.value("--timeout").unwrap().as_deref(), Some("5"));
        assert_eq!(a.value("--ca-file").unwrap().as_deref(), Some("ca.pem"));
        assert_eq!(a.positionals().unwrap(), vec!["smtp://x"]);
    }

    #[test]
    fn missing_values_and_unknown_options_are_errors() {
        assert!(args(&["--timeout"]).value("--timeout").is_err());
        assert!(args(&["--bogus", "x"]).positionals().is_err());
    }
}
